#!/usr/bin/env bash
# Checks that the kernel module's Rust static library has only relocations FreeBSD's amd64
# kernel linker can apply, and prints their counts by type.
#
#   platform-freebsd/check-relocs.sh path/to/libhydranet_platform_freebsd.a   (or an object)
#
# An amd64 .ko is an ET_REL object (`ld -r` of the shim and this archive's members), loaded by
# sys/kern/link_elf_obj.c. That loader reads only the relocation sections whose target section
# is SHF_ALLOC (code and data; the .debug_* ones are skipped), maps the module above KERNBASE
# (the top 2 GiB, the kernel code model's range), and applies each relocation with
# elf_reloc_internal() of sys/amd64/amd64/elf_machdep.c, which knows R_X86_64_NONE, 64, PC32,
# PLT32 (resolved as PC32 to the symbol itself: there is no PLT), 32S, and the dynamic GLOB_DAT,
# JMP_SLOT, RELATIVE and IRELATIVE that `ld -r` never emits. Anything else (GOTPCREL,
# GOTPCRELX, REX_GOTPCRELX: the loader builds no GOT; R_X86_64_32, zero-extended, cannot hold
# an address in the top 2 GiB; TLS and GOTOFF types) fails kldload with "unexpected relocation
# type". So, in the relocations of allocated sections, only NONE, 64, PC32, PLT32 and 32S pass.
# Relocations of non-allocated sections are counted and shown but not judged.
set -euo pipefail
lib=${1:?usage: check-relocs.sh ARCHIVE}
[ -f "$lib" ] || { echo "check-relocs: no such file: $lib" >&2; exit 2; }

readelf -SrW "$lib" | awk -v lib="$lib" '
BEGIN {
    ok["R_X86_64_NONE"] = 1; ok["R_X86_64_64"] = 1; ok["R_X86_64_PC32"] = 1
    ok["R_X86_64_PLT32"] = 1; ok["R_X86_64_32S"] = 1
    member = lib
}
/^File: / {
    member = $2; sub(/^[^(]*\(/, "", member); sub(/\)$/, "", member)
    next
}
/^Section Headers:/ { delete flags; delete target; members++; next }
# A section header: "[Nr] Name Type Address Off Size ES [Flg] Lk Inf Al" (Flg may be empty).
/^ *\[ *[0-9]+\] / {
    line = $0; sub(/^ *\[ */, "", line)
    idx = line; sub(/\].*/, "", idx)
    sub(/^[0-9]+\] +/, "", line)
    n = split(line, f, / +/)
    if (n < 9) next
    fl = (n >= 10) ? f[7] : ""
    flags[idx + 0] = fl
    if (f[2] == "RELA" || f[2] == "REL") target[f[1]] = target[f[1]] " " f[n - 1]
    next
}
/^Relocation section / {
    sec = $3; gsub(/\047/, "", sec)
    # Allocated if any section of that name (names may repeat) applies to an SHF_ALLOC one.
    alloc = 0
    m = split(target[sec], t, " ")
    for (i = 1; i <= m; i++) if (flags[t[i] + 0] ~ /A/) alloc = 1
    if (m == 0) alloc = 1   # unknown target: judge it
    next
}
$3 ~ /^R_X86_64_/ {
    type = $3
    if (alloc) {
        loaded[type]++
        if (!(type in ok)) {
            bad[type]++
            if (shown++ < 10) printf "  forbidden %s in %s, section %s, symbol %s\n", type, member, sec, $5
        }
    } else {
        debug[type]++
    }
    seen[type] = 1
}
function row(ty) {
    printf "%-24s %12d %12d%s\n", ty, loaded[ty], debug[ty], (ty in bad) ? "  FORBIDDEN" : ""
}
END {
    if (members == 0) { print "check-relocs: no object files in " lib; exit 2 }
    printf "%-24s %12s %12s\n", "relocations by type", "loaded", "not loaded"
    # The usual types first, in a fixed order, then any other.
    nord = split("NONE 64 PC32 PLT32 32S 32 GOTPCREL GOTPCRELX REX_GOTPCRELX", ord, " ")
    for (i = 1; i <= nord; i++) {
        ty = "R_X86_64_" ord[i]
        if (ty in seen) { row(ty); delete seen[ty] }
    }
    for (ty in seen) row(ty)
    nbad = 0; for (ty in bad) nbad += bad[ty]
    if (nbad > 0) {
        printf "check-relocs: %d relocation(s) in allocated sections that FreeBSD'"'"'s amd64 kernel linker refuses\n", nbad
        exit 1
    }
    printf "check-relocs: %d object files; only NONE/64/PC32/PLT32/32S in allocated sections\n", members
}'

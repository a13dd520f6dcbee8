#!/usr/bin/env bash
# Instructions per segment of HydraNet-FT's core and of smoltcp on the same in-memory bulk
# transfer (core/examples/segcount.rs), counted by callgrind.
#
#   scripts/callgrind.sh [BYTES] [OUT_DIR]      (defaults: 16777216, target/callgrind)
#
# Each stack runs twice under `valgrind --tool=callgrind`: BYTES one way, and 0 bytes (same
# binary, same set-up, no transfer). The difference of the two total instruction counts (Ir)
# is the transfer's cost, divided by the segments both stacks emitted (both directions), by
# the data segments, and by the KiB moved. Instruction counts do not depend on the machine's
# load, so unlike the timing benches this needs no interleaving; the workload has fixed seeds
# and virtual time, so a second run prints the same figures.
#
# Writes OUT_DIR/callgrind.csv, the callgrind files, and per stack the top functions by
# exclusive Ir (callgrind_annotate) of the full run. Needs valgrind (3.19 here).
set -euo pipefail
cd "$(dirname "$0")/.."

bytes=${1:-16777216}
out=${2:-target/callgrind}
target=${CARGO_TARGET_DIR:-target}
# Bounds every valgrind run; 16 MiB takes a few seconds.
limit=${CALLGRIND_TIMEOUT:-600}

case $bytes in '' | *[!0-9]*) echo "callgrind.sh: BYTES must be a number, not '$bytes'" >&2; exit 2 ;; esac
if [ "$bytes" -eq 0 ]; then
    echo "callgrind.sh: BYTES must be more than 0 (0 is the baseline)" >&2
    exit 2
fi
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind not installed" >&2; exit 1; }

cargo build -q --release -p hydranet-core --example segcount
bin=$target/release/examples/segcount
mkdir -p "$out"

# total Ir of a callgrind output file (its `summary:` line, `totals:` in older versions)
ir_of() {
    awk '/^(summary|totals):/ { print $2; found = 1; exit } END { if (!found) exit 1 }' "$1"
}

# the value of key=... in the first line of a segcount output
field() {
    tr ' ' '\n' <"$1" | awk -F= -v k="$2" '$1 == k { print $2; exit }'
}

csv=$out/callgrind.csv
echo "stack,bytes,segments,data_segments,control_segments,ir_run,ir_baseline,ir_transfer,ir_per_segment,ir_per_data_segment,ir_per_kib" >"$csv"
declare -A per_seg per_kib
for stack in hydranet smoltcp; do
    for n in 0 "$bytes"; do
        timeout "$limit" valgrind --tool=callgrind --callgrind-out-file="$out/$stack-$n.callgrind" \
            "$bin" "$stack" "$n" >"$out/$stack-$n.txt" 2>"$out/$stack-$n.valgrind.log" || {
            echo "callgrind.sh: $stack $n bytes failed; see $out/$stack-$n.valgrind.log" >&2
            exit 1
        }
    done
    run=$(ir_of "$out/$stack-$bytes.callgrind")
    base=$(ir_of "$out/$stack-0.callgrind")
    f=$out/$stack-$bytes.txt
    segs=$(field "$f" segments)
    data=$(field "$f" data_segments)
    ctrl=$(field "$f" control_segments)
    line=$(awk -v s="$stack" -v b="$bytes" -v seg="$segs" -v d="$data" -v c="$ctrl" -v r="$run" -v z="$base" 'BEGIN {
        t = r - z
        printf "%s,%d,%d,%d,%d,%d,%d,%d,%.1f,%.1f,%.1f", s, b, seg, d, c, r, z, t, t / seg, t / d, t / (b / 1024)
    }')
    echo "$line" >>"$csv"
    per_seg[$stack]=$(cut -d, -f9 <<<"$line")
    per_kib[$stack]=$(cut -d, -f11 <<<"$line")
    callgrind_annotate --threshold=90 "$out/$stack-$bytes.callgrind" >"$out/$stack-annotate.txt" 2>/dev/null || true
done

echo "in-memory bulk transfer, $bytes bytes one way, MTU 1500, 64 KiB buffers, software checksums"
echo "(instructions of the transfer = Ir(run) - Ir(0-byte run); segments = both directions)"
column -s, -t <"$csv" | cut -c1-200
awk -v a="${per_seg[hydranet]}" -v b="${per_seg[smoltcp]}" -v c="${per_kib[hydranet]}" -v d="${per_kib[smoltcp]}" 'BEGIN {
    printf "ratio hydranet/smoltcp: %.3f per segment, %.3f per KiB\n", a / b, c / d
}'
sed -n 2p "$out/hydranet-$bytes.txt"
echo "top functions (exclusive Ir): $out/hydranet-annotate.txt, $out/smoltcp-annotate.txt"
echo "wrote $csv"

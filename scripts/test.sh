#!/usr/bin/env bash
# The project's whole test run (what CI runs): set-up, format and lint checks, the no_std
# builds, the FreeBSD tcp-testsuite through the conformance runner (with a pass floor), and
# every workspace test. The last thing printed is the test runner's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

suite=${HYDRANET_TCP_TESTSUITE:-$(cd .. && pwd)/shared/tcp-testsuite}

echo "== format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --features hydranet-core/sim -- -D warnings

echo "== no_std builds of the core"
cargo build -q -p hydranet-core --no-default-features
cargo build -q -p hydranet-core --no-default-features --target x86_64-unknown-none
cargo build -q -p hydranet-core --no-default-features --features defmt

echo "== FreeBSD build checks (the kernel module's Rust library; the FreeBSD syscalls backend)"
# The static library the module links: no_std, the kernel's code model, the entry points the C
# shim calls, built as kmod/Makefile builds it. Its own target folder, so these RUSTFLAGS do not
# invalidate the main build cache. core, alloc and compiler_builtins are compiled here with the
# same flags (-Zbuild-std; the prebuilt ones are position-independent), and -Zplt=yes keeps
# LLVM's calls to memcpy and the soft-float helpers off the GOT; check-relocs.sh then refuses
# any relocation FreeBSD's kernel linker cannot apply. The -Z flags take a nightly toolchain if
# there is one, else stable told it is bootstrapping the compiler (as fuzz/smoke.sh does).
if cargo +nightly --version >/dev/null 2>&1; then
    kmod_toolchain=nightly
else
    kmod_toolchain=$(rustup show active-toolchain | cut -d' ' -f1)
fi
rustup component list --installed --toolchain "$kmod_toolchain" | grep -qx 'rust-src' ||
    rustup component add rust-src --toolchain "$kmod_toolchain"
RUSTC_BOOTSTRAP=1 \
    RUSTFLAGS="-C code-model=kernel -C relocation-model=static -C no-redzone=yes -Z plt=yes" \
    CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/kmod" \
    cargo "+$kmod_toolchain" rustc -q -p hydranet-platform-freebsd --lib --release --features kmod \
    --target x86_64-unknown-none --crate-type staticlib -Zbuild-std=core,alloc,compiler_builtins
platform-freebsd/check-relocs.sh \
    "${CARGO_TARGET_DIR:-target}/kmod/x86_64-unknown-none/release/libhydranet_platform_freebsd.a"
RUSTFLAGS="-C code-model=kernel -C relocation-model=static -C no-redzone=yes" \
    CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/kmod" \
    cargo clippy -q -p hydranet-platform-freebsd --lib --features kmod \
    --target x86_64-unknown-none -- -D warnings
cargo check -q -p hydranet-syscalls --target x86_64-unknown-freebsd --all-targets
cargo clippy -q -p hydranet-syscalls --target x86_64-unknown-freebsd --all-targets -- -D warnings
# The C shim against declarations of the FreeBSD KPIs it uses (no FreeBSD headers here).
platform-freebsd/kmod/test-stubs/check.sh

echo "== FreeBSD tcp-testsuite (IPv4 scripts; floor in conformance/FLOOR)"
cargo build -q --release -p hydranet-conformance
# Failures and the summary are printed; passes and skipped IPv6 scripts are only counted.
"${CARGO_TARGET_DIR:-target}"/release/hydranet-conformance --floor "$(cat conformance/FLOOR)" "$suite" \
    | grep -v -e '^PASS ' -e '^UNSUPPORTED '

echo "== fuzz regression inputs (every saved crash input replayed)"
(cd fuzz && cargo test -q --release)

# Every cargo-fuzz target briefly (8 s each, about 75 s for the nine, plus the build), failing
# on any crash; HYDRANET_FUZZ_SMOKE_SECS=0 skips it. Its own target directory: the fuzz build's
# sanitizer flags would otherwise invalidate the workspace's artifacts.
smoke_secs=${HYDRANET_FUZZ_SMOKE_SECS:-8}
if [ "$smoke_secs" != 0 ]; then
    echo "== fuzz smoke (${smoke_secs}s per target)"
    if [ -n "${CARGO_TARGET_DIR:-}" ]; then
        export FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-$CARGO_TARGET_DIR-fuzz}
    fi
    fuzz/smoke.sh "$smoke_secs"
fi

echo "== doc tests"
cargo test -q --workspace --doc

echo "== tests"
cargo nextest run --workspace --features hydranet-core/sim --no-fail-fast

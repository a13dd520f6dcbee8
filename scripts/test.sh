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

echo "== FreeBSD tcp-testsuite (IPv4 scripts; floor in conformance/FLOOR)"
cargo build -q --release -p hydranet-conformance
# Failures and the summary are printed; passes and skipped IPv6 scripts are only counted.
"${CARGO_TARGET_DIR:-target}"/release/hydranet-conformance --floor "$(cat conformance/FLOOR)" "$suite" \
    | grep -v -e '^PASS ' -e '^UNSUPPORTED '

echo "== fuzz regression inputs (every saved crash input replayed)"
(cd fuzz && cargo test -q --release)

echo "== doc tests"
cargo test -q --workspace --doc

echo "== tests"
cargo nextest run --workspace --features hydranet-core/sim --no-fail-fast

#!/usr/bin/env bash
# The main job: set-up, build, then `hydranet demo` (arguments are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build -q --release -p hydranet-platform-linux-tun -p hydranet-conformance
exec "${CARGO_TARGET_DIR:-target}"/release/hydranet demo "$@"

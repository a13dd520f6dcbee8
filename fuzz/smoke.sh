#!/usr/bin/env bash
# Fuzz smoke test: builds every target and runs each for a short while (15 s by default),
# failing on any crash; prints executions and coverage per target. Then replays the saved
# regression inputs.
#
#   fuzz/smoke.sh [SECONDS]
#
# Environment:
#   HYDRANET_FUZZ_AVOID_KNOWN  1 (default here): the harnesses steer around the known core
#                              bugs (regressions/README.md) so that a smoke run looks for new
#                              ones; bugs:1,4 steers around those only; 0 around none.
#   FUZZ_SANITIZER             none (default: the core is #![forbid(unsafe_code)], so the Rust
#                              checks catch what ASan would, at ~20x the speed) or address.
#   FUZZ_TARGET_DIR            where to build (default fuzz/target; not CARGO_TARGET_DIR, which
#                              usually names the main workspace's, whose artifacts the fuzz
#                              flags would invalidate).
#   HYDRANET_FUZZ_FT_INVARIANTS  1: ft_group fails on a violated FT invariant (default: prints
#                              the first violation of each invariant and goes on; see README).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-15}
export HYDRANET_FUZZ_AVOID_KNOWN=${HYDRANET_FUZZ_AVOID_KNOWN:-1}
sanitizer=${FUZZ_SANITIZER:-none}
target_dir=${FUZZ_TARGET_DIR:-$PWD/target}
targets=(wire_ipv4 wire_tcp stack_input two_stacks ackchan_frames ipip_redirector ctl_protocol ft_group
    pkt_script)

# cargo-fuzz drives libFuzzer through nightly-only rustc flags.
if cargo +nightly --version >/dev/null 2>&1; then
    toolchain=(+nightly)
else
    # No nightly on this machine (none can be fetched here): stable accepts the -Z flags when
    # told it is bootstrapping the compiler.
    echo "smoke: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1"
    export RUSTC_BOOTSTRAP=1
    toolchain=()
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

python3 make-seeds.py
fuzz=(cargo "${toolchain[@]}" fuzz)
start=$(date +%s)
"${fuzz[@]}" build -s "$sanitizer" --target-dir "$target_dir" >/dev/null
echo "smoke: built in $(($(date +%s) - start)) s"

failed=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log=$(mktemp)
    echo "== $t (${secs}s)"
    if "${fuzz[@]}" run -s "$sanitizer" --target-dir "$target_dir" "$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=30 -print_final_stats=1 >"$log" 2>&1; then
        status=ok
    else
        status=CRASH
        failed=1
        grep -E -A3 "panicked|ERROR: libFuzzer|Test unit written" "$log" | head -20 || true
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\) .*/\1/p' <<<"$last")
    summary+=("$(printf '%-16s %-6s %10s execs  cov %-6s ft %s' "$t" "$status" "${runs:-?}" "${cov:-?}" "${ft:-?}")")
    rm -f "$log"
done

echo "== regressions (known unfixed core bugs are listed in regressions/KNOWN)"
for t in "${targets[@]}"; do
    [ -d "regressions/$t" ] || continue
    for f in "regressions/$t"/*; do
        [ -f "$f" ] || continue
        name="$t/$(basename "$f")"
        if HYDRANET_FUZZ_AVOID_KNOWN=0 "${fuzz[@]}" run -s "$sanitizer" --target-dir "$target_dir" \
            "$t" "$f" -- -runs=1 >/dev/null 2>&1; then
            if grep -qx "$name" regressions/KNOWN 2>/dev/null; then
                echo "fixed?     $name passes now: take it off regressions/KNOWN"
            else
                echo "ok         $name"
            fi
        elif grep -qx "$name" regressions/KNOWN 2>/dev/null; then
            echo "known bug  $name still crashes"
        else
            echo "REGRESSION $name crashes"
            failed=1
        fi
    done
done

echo "== summary ($(($(date +%s) - start)) s with the build)"
printf '%s\n' "${summary[@]}"
exit "$failed"

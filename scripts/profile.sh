#!/usr/bin/env bash
# Profiles of one scheme under load (`hydranet bench load`): the daemons with `perf record`
# (cpu-clock, DWARF call graphs), the whole machine, and the daemons' system calls.
#
#   sudo scripts/profile.sh NAME SCHEME DIR [bench load flags...]
#   e.g. scripts/profile.sh ft3-up ft3 upload;  scripts/profile.sh stack-down stack download
#
# Timeline: the load runs 28 s after a 1 s warm-up; from 2 s into it, `perf record -p` on the
# daemons for 10 s; then `perf record -a` (frame-pointer call graphs) for 5 s; then
# `perf stat` of write/read/poll/accept4 and context switches per thread for 4 s. This VM
# has no hardware counters, hence the software cpu-clock event at 999 Hz.
#
# Writes into ${PROFILE_OUT:-target/profiles}/NAME: load.txt (the bench's rate, per-process
# CPU, daemon counters), daemons.data and all.data (perf), stat.txt, stacks.txt (perf script),
# stages.txt (scripts/perf-stages.py), top-daemons.txt and top-all.txt (perf report --sort
# dso,symbol), all-pid.txt (the machine's samples by process).
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n 2,5p "$0" >&2; exit 2; }
name=$1 scheme=$2 dir=$3
shift 3
bin=${HYDRANET:-${CARGO_TARGET_DIR:-target}/release/hydranet}
out=${PROFILE_OUT:-target/profiles}/$name
command -v perf >/dev/null || { echo "profile.sh: perf not installed" >&2; exit 1; }
mkdir -p "$out"
timeout 200 "$bin" bench load --scheme "$scheme" --dir "$dir" --secs 28 --warmup 1 "$@" \
    >"$out/load.txt" 2>&1 &
bench=$!
for _ in $(seq 1 300); do grep -q "^load start" "$out/load.txt" 2>/dev/null && break; sleep 0.1; done
pids() { grep "^pids:" "$out/load.txt" | tr ' ' '\n' | grep = | grep -v "${1:-^$}" | cut -d= -f2 | paste -sd,; }
daemons=$(pids "client(bench)")
sleep 2
if [ -n "$daemons" ]; then
    timeout 30 perf record -o "$out/daemons.data" -e cpu-clock -F 999 --call-graph dwarf,16384 \
        -p "$daemons" -- sleep 10 >"$out/perf-daemons.txt" 2>&1
else
    sleep 10
fi
sleep 1
timeout 30 perf record -o "$out/all.data" -e cpu-clock -F 999 -g -a -- sleep 5 >"$out/perf-all.txt" 2>&1
timeout 30 perf stat --per-thread -p "$(pids)" -e syscalls:sys_enter_write,syscalls:sys_enter_read \
    -e syscalls:sys_enter_poll,syscalls:sys_enter_accept4,context-switches -- sleep 4 \
    >"$out/stat.txt" 2>&1
wait $bench
cat "$out/load.txt"
if [ -f "$out/daemons.data" ]; then
    perf script -i "$out/daemons.data" -F pid,ip,sym,dso --no-inline 2>/dev/null >"$out/stacks.txt"
    python3 scripts/perf-stages.py "$out/stacks.txt" "$out/load.txt" | tee "$out/stages.txt"
    perf report -i "$out/daemons.data" --no-children --sort dso,symbol --stdio -g none \
        --percent-limit 0.8 2>/dev/null | grep "%" | cut -c1-130 >"$out/top-daemons.txt"
fi
perf report -i "$out/all.data" --no-children --sort pid --stdio -g none 2>/dev/null |
    grep "%" | head -15 >"$out/all-pid.txt"
perf report -i "$out/all.data" --no-children --sort dso,symbol --stdio -g none \
    --percent-limit 0.8 2>/dev/null | grep "%" | cut -c1-130 >"$out/top-all.txt"

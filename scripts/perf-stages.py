#!/usr/bin/env python3
"""Where a daemon's CPU samples go, from `perf script -F pid,ip,sym,dso --no-inline`.

    scripts/perf-stages.py STACKS LOAD_TXT

LOAD_TXT is `hydranet bench load`'s output; its `pids:` line names the processes. For each
process two splits of its samples, both summing to 100 %:

* by system call: user space; write(2) (the writer carries the packet through the kernel's
  forwarding to the next reader); read(2); poll(2), with or without a context switch in it;
  accept4(2); other kernel time (mostly being switched back in after a preemption);
* by stage of the packet path: the innermost kernel frame that matches a stage decides
  (a wake-up inside the forwarding counts as a wake-up, the client's TCP code run in softirq
  as the client's TCP, and so on).
"""
import collections
import re
import sys

STAGES = [
    ("wake-up of a reader", lambda s: s in (
        "sock_def_readable", "try_to_wake_up", "__wake_up", "__wake_up_common",
        "__wake_up_sync_key", "ep_poll_callback", "pollwake")),
    ("Linux client TCP (in softirq or its own calls)", lambda s: s.startswith(("tcp_", "__tcp"))
        or s in ("inet_recvmsg", "sock_recvmsg", "skb_copy_datagram_iter")),
    ("IP forwarding + routing", lambda s: s.startswith((
        "ip_forward", "ip_route", "fib_", "ip_rcv", "ip_output", "ip_finish_output", "neigh"))
        or s == "ip_local_deliver"),
    ("veth, backlog, device queue, GSO", lambda s: s.startswith("veth") or s in (
        "enqueue_to_backlog", "process_backlog", "__dev_queue_xmit", "dev_hard_start_xmit",
        "netif_rx_internal", "__netif_rx", "__netif_receive_skb_one_core",
        "__netif_receive_skb_core.constprop.0", "netif_receive_skb", "validate_xmit_skb",
        "sch_direct_xmit", "__qdisc_run", "net_rx_action", "skb_segment", "__skb_gso_segment")),
    ("TUN queue to its reader", lambda s: s == "tun_net_xmit"),
    ("TUN write (copy in, skb)", lambda s: s in ("tun_get_user", "tun_chr_write_iter")),
    ("TUN read (copy out)", lambda s: s in ("tun_do_read", "tun_chr_read_iter", "tun_put_user")),
    ("poll(2)", lambda s: s in ("do_sys_poll", "tun_chr_poll", "__x64_sys_poll")
        or s.startswith(("sock_poll", "unix_poll"))),
    ("scheduler, context switch", lambda s: s in (
        "__schedule", "schedule", "finish_task_switch.isra.0", "schedule_hrtimeout_range_clock")),
    ("syscall entry/exit, irq return", lambda s: s in (
        "do_syscall_64", "entry_SYSCALL_64_after_hwframe", "irqentry_exit_to_user_mode",
        "syscall_exit_to_user_mode")),
    ("accept4 (control socket)", lambda s: s.startswith("__sys_accept") or s == "__x64_sys_accept4"),
]
SOFTIRQ = {"do_softirq.part.0", "net_rx_action", "handle_softirqs", "__do_softirq"}


def by_syscall(frames):
    if frames[0][1] != "[kernel.kallsyms]":
        return "user space (own code, libc)"
    s = {f for f, _ in frames}
    if "ksys_write" in s:
        return "write(2)"
    if "ksys_read" in s:
        return "read(2)"
    if "__x64_sys_poll" in s:
        return "poll(2), switched out in it" if "__schedule" in s else "poll(2)"
    if "__x64_sys_accept4" in s:
        return "accept4(2)"
    if s & SOFTIRQ:
        return "softirq on irq exit"
    return "other kernel (mostly switched back in after a preemption)"


def by_stage(frames):
    if frames[0][1] != "[kernel.kallsyms]":
        return "user space (own code, libc)"
    for sym, dso in frames:
        if dso != "[kernel.kallsyms]":
            break
        for name, match in STAGES:
            if match(sym):
                return name
    return "other kernel"


def samples(path):
    cur = None
    for line in open(path):
        if not line.strip():
            if cur and cur[1]:
                yield cur
            cur = None
        elif not line.startswith("\t"):
            cur = (line.split()[0], [])
        else:
            m = re.match(r"\s*[0-9a-f]+ (.*) \((.*)\)$", line.rstrip())
            if m and cur is not None:
                cur[1].append((m.group(1), m.group(2)))
    if cur and cur[1]:
        yield cur


def main():
    stacks, load = sys.argv[1], sys.argv[2]
    names = {}
    for line in open(load):
        if line.startswith("pids:"):
            for kv in line.split()[1:]:
                k, v = kv.split("=")
                names[v] = k
    sc = collections.defaultdict(collections.Counter)
    st = collections.defaultdict(collections.Counter)
    leaf = collections.defaultdict(collections.Counter)
    for pid, frames in samples(stacks):
        sc[pid][by_syscall(frames)] += 1
        st[pid][by_stage(frames)] += 1
        if frames[0][1] != "[kernel.kallsyms]":
            leaf[pid][frames[0][0]] += 1
    total = sum(sum(c.values()) for c in sc.values())
    print(f"{total} samples")
    for pid in sorted(sc, key=lambda p: names.get(p, p)):
        n = sum(sc[pid].values())
        print(f"== {names.get(pid, pid)} (pid {pid}): {n} samples, {100 * n / total:.1f} % of all")
        print("   by system call:")
        for k, v in sc[pid].most_common():
            print(f"     {100 * v / n:5.1f} %  {k}")
        print("   by stage:")
        for k, v in st[pid].most_common():
            print(f"     {100 * v / n:5.1f} %  {k}")
        print("   top user-space functions (self):")
        for k, v in leaf[pid].most_common(6):
            print(f"     {100 * v / n:5.1f} %  {k[:90]}")


if __name__ == "__main__":
    main()

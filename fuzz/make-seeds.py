#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, from the packetdrill scripts of the FreeBSD tcp-testsuite.

    fuzz/make-seeds.py [--suite PATH] [--out PATH]

Every inbound packet (`<` line) of every script becomes a raw IPv4/TCP packet (198.51.100.2 ->
192.0.2.1, both checksums right) in corpus/wire_tcp and corpus/wire_ipv4. Every script becomes
one stack_input input: its inbound packets as RawTcp operations (acks relative to the stack's
ISS, as packetdrill makes them relative to the kernel's ISN), its time steps as Step operations,
and the socket calls and sysctls the harness models (connect, accept, read, write, shutdown,
close, a few `sysctl -w`). The format is documented in src/stack_input.rs; the TAG_* numbers and
the SYSCTLS table below must match it.

For the newer targets (input formats in src/ackchan.rs, src/ipip.rs, src/ft_group.rs): every
script's text is a pkt_script seed; its inbound packets, re-addressed to a routed origin, are
ipip_redirector seeds (to the redirector and through a host's tunnel); ctl_protocol gets the
requests and responses of the protocol's documentation; ackchan_frames and ft_group get a few
hand-made schedules (ack-channel frames sealed here with the harness's key).

The suite defaults to $HYDRANET_TCP_TESTSUITE, else ../shared/tcp-testsuite beside the
workspace (this file is in <workspace>/fuzz). Files are named by the SHA-1 of their content, as
libFuzzer names its corpus, so re-running adds nothing twice.
"""

import argparse
import hashlib
import hmac
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

LOCAL = bytes([192, 0, 2, 1])
PEER = bytes([198, 51, 100, 2])
LISTEN_PORT = 80
CONNECT_PEER_PORT = 8080

# Operation tags of src/stack_input.rs.
TAG_RAW_TCP = 2
TAG_STEP = 3
TAG_RUN_TIMERS = 4
TAG_ACCEPT = 5
TAG_SEND = 6
TAG_RECV = 7
TAG_SHUTDOWN = 8
TAG_CLOSE = 9
TAG_CONNECT = 10
TAG_SYSCTL = 12
TAG_TOGGLE_LISTENER = 13
MODE_REL_ACK = 1
MODE_CONNECT_PORT = 2
LATEST = 0xFF

# SYSCTLS of src/stack_input.rs, in order.
SYSCTLS = [
    "net.inet.tcp.syncookies",
    "net.inet.tcp.syncookies_only",
    "net.inet.tcp.insecure_rst",
    "net.inet.tcp.insecure_syn",
    "net.inet.tcp.blackhole",
    "net.inet.tcp.drop_synfin",
    "net.inet.tcp.ecn.enable",
    "net.inet.tcp.sack.enable",
    "net.inet.tcp.rfc1323",
    "net.inet.tcp.tolerate_missing_ts",
    "net.inet.tcp.delayed_ack",
    "net.inet.tcp.cc.algorithm",
    "net.inet.tcp.rexmit_drop_options",
    "net.inet.tcp.path_mtu_discovery",
    "net.inet.tcp.recvspace",
    "net.inet.tcp.sendspace",
]

FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, ".": 0x10, "U": 0x20, "E": 0x40, "W": 0x80}
ECN_TOS = {"noecn": 0, "ect1": 1, "ect0": 2, "ce": 3, "ect01": 2}


def csum(data, acc=0):
    if len(data) % 2:
        data += b"\0"
    for i in range(0, len(data), 2):
        acc += (data[i] << 8) | data[i + 1]
    while acc > 0xFFFF:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return (~acc) & 0xFFFF


def tcp_checksum(src, dst, seg):
    pseudo = src + dst + bytes([0, 6]) + struct.pack(">H", len(seg))
    acc = 0
    for i in range(0, len(pseudo), 2):
        acc += (pseudo[i] << 8) | pseudo[i + 1]
    return csum(seg, acc)


def options_bytes(text):
    """packetdrill's option list -> bytes, padded to whole words with EOL."""
    out = bytearray()
    for item in [s.strip() for s in text.split(",") if s.strip()]:
        words = item.split()
        name = words[0]
        if name == "nop":
            out.append(1)
        elif name == "eol":
            out.append(0)
        elif name == "mss":
            out += struct.pack(">BBH", 2, 4, int(words[1]))
        elif name == "wscale":
            out += bytes([3, 3, int(words[1]) & 0xFF])
        elif name == "sackOK":
            out += bytes([4, 2])
        elif name == "TS":
            # TS val N ecr M
            val = int(words[words.index("val") + 1])
            ecr = int(words[words.index("ecr") + 1])
            out += struct.pack(">BBII", 8, 10, val & 0xFFFFFFFF, ecr & 0xFFFFFFFF)
        elif name == "sack":
            blocks = [w.split(":") for w in words[1:]]
            out += bytes([5, 2 + 8 * len(blocks)])
            for left, right in blocks:
                out += struct.pack(">II", int(left) & 0xFFFFFFFF, int(right) & 0xFFFFFFFF)
        # Anything else (`...`, fast open, md5) is left out.
    out = out[:40]
    while len(out) % 4:
        out.append(0)
    return bytes(out)


INBOUND = re.compile(
    r"^(?:\[(?P<ecn>\w+)\]\s*)?(?P<flags>[FSRPUEW.]+)\s+(?P<seq>\d+):(?P<end>\d+)\((?P<len>\d+)\)"
    r"(?P<rest>.*)$"
)


def tcp_segment(line, sport, dport):
    """An inbound packetdrill segment -> (tos, TCP segment bytes), or None."""
    m = INBOUND.match(line.strip())
    if not m:
        return None
    flags = 0
    for c in m.group("flags"):
        flags |= FLAG_BITS[c]
    rest = m.group("rest")
    opts = b""
    om = re.search(r"<(.*)>", rest)
    if om:
        opts = options_bytes(om.group(1))
        rest = rest[: om.start()]

    def field(name):
        fm = re.search(r"\b" + name + r"\s+(\d+)", rest)
        return int(fm.group(1)) if fm else 0

    ack, win, urg = field("ack"), field("win"), field("urg")
    payload = bytes(int(m.group("len")))
    hlen = 20 + len(opts)
    seg = struct.pack(
        ">HHIIBBHHH",
        sport,
        dport,
        int(m.group("seq")) & 0xFFFFFFFF,
        ack & 0xFFFFFFFF,
        (hlen // 4) << 4,
        flags,
        win & 0xFFFF,
        0,
        urg & 0xFFFF,
    )
    seg += opts + payload
    tos = ECN_TOS.get((m.group("ecn") or "noecn").lower(), 0)
    return tos, seg


def ipv4_packet(tos, seg, src=PEER, dst=LOCAL):
    seg = bytearray(seg)
    seg[16:18] = struct.pack(">H", tcp_checksum(src, dst, bytes(seg)))
    hdr = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, tos, 20 + len(seg), 0, 0x4000, 64, 6, 0, src, dst))
    hdr[10:12] = struct.pack(">H", csum(bytes(hdr)))
    return bytes(hdr) + bytes(seg)


def resolve_ifdefs(lines, defines=("FreeBSD",)):
    """Keeps the lines of the branches taken with `defines` defined."""
    out, stack = [], []
    for line in lines:
        s = line.strip()
        if s.startswith("#ifdef") or s.startswith("#ifndef"):
            name = s.split()[1] if len(s.split()) > 1 else ""
            taken = (name in defines) == s.startswith("#ifdef")
            stack.append(taken)
        elif s.startswith("#else"):
            if stack:
                stack[-1] = not stack[-1]
        elif s.startswith("#endif"):
            if stack:
                stack.pop()
        elif all(stack):
            out.append(line)
    return out


TIME = re.compile(r"^\s*(\+)?(\d+(?:\.\d+)?|\*)(?:\s*(?:\.\.\.|~)\s*\+?\d+(?:\.\d+)?)?\s+(.*)$")


def step_ops(ms):
    ops = bytearray()
    while ms > 0:
        if ms <= 0x7FFF:
            ops += bytes([TAG_STEP]) + struct.pack("<H", ms)
            ms = 0
        else:
            hundreds = min(ms // 100, 0x7FFF)
            ops += bytes([TAG_STEP]) + struct.pack("<H", 0x8000 | hundreds)
            ms -= hundreds * 100
    return bytes(ops)


def convert(text, index):
    """One script -> (list of IPv4 packets, stack_input bytes)."""
    lines = resolve_ifdefs(text.splitlines())
    body = "\n".join(lines)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    body = re.sub(r"%\{.*?\}%", "", body, flags=re.S)
    client = False
    # Client mode when the script connects before it receives anything.
    for line in body.splitlines():
        line = line.split("//")[0]
        if "connect(" in line:
            client = True
            break
        if re.search(r"\s<\s", " " + line + " "):
            break
    sport = CONNECT_PEER_PORT if client else 50000 + index % 10000
    mode = MODE_REL_ACK | (MODE_CONNECT_PORT if client else 0)
    packets, ops = [], bytearray()
    clock_ms, listen_fd = 0, None
    for raw in body.splitlines():
        line = raw.split("//")[0].rstrip()
        m = TIME.match(line)
        if not m:
            continue
        rel, t, what = m.group(1), m.group(2), m.group(3).strip()
        if t != "*":
            ms = int(round(float(t) * 1000))
            new_clock = clock_ms + ms if rel else ms
            if new_clock > clock_ms:
                ops += step_ops(new_clock - clock_ms)
            clock_ms = max(clock_ms, new_clock)
        if what.startswith("<"):
            seg = tcp_segment(what[1:], sport, LISTEN_PORT)
            if seg is None:
                continue
            tos, tcp = seg
            packets.append(ipv4_packet(tos, tcp))
            ops += bytes([TAG_RAW_TCP, mode]) + struct.pack("<H", len(tcp)) + tcp
        elif what.startswith("`"):
            sm = re.search(r"sysctl\s+-w\s+([\w.]+)=(\w+)", what)
            if sm and sm.group(1) in SYSCTLS:
                which = SYSCTLS.index(sm.group(1))
                value = sm.group(2)
                if value.isdigit():
                    v = int(value)
                    if sm.group(1).endswith("space"):
                        v = max(0, min(255, v // 1024 - 1))
                    v &= 0xFF
                else:
                    v = 1 if value == "cubic" else 0
                ops += bytes([TAG_SYSCTL, which, v])
        else:
            cm = re.match(r"(\w+)\((.*)\)", what)
            if not cm:
                continue
            call, args = cm.group(1), [a.strip() for a in cm.group(2).split(",")]
            if call == "listen":
                listen_fd = args[0]
            elif call == "connect":
                ops += bytes([TAG_CONNECT]) + struct.pack("<H", CONNECT_PEER_PORT)
            elif call == "accept":
                ops += bytes([TAG_ACCEPT])
            elif call in ("write", "send") and len(args) >= 3 and args[2].isdigit():
                ops += bytes([TAG_SEND, LATEST]) + struct.pack("<H", min(int(args[2]), 0xFFFF))
            elif call in ("read", "recv") and len(args) >= 3 and args[2].isdigit():
                ops += bytes([TAG_RECV, LATEST]) + struct.pack("<H", min(int(args[2]), 0xFFFF)) + b"\0"
            elif call == "shutdown" and len(args) >= 2:
                how = {"SHUT_RD": 0, "SHUT_WR": 1, "SHUT_RDWR": 2}.get(args[1], 2)
                ops += bytes([TAG_SHUTDOWN, LATEST, how])
            elif call == "close":
                if args[0] == listen_fd:
                    ops += bytes([TAG_TOGGLE_LISTENER])
                else:
                    ops += bytes([TAG_CLOSE, LATEST])
    ops += bytes([TAG_RUN_TIMERS, 7])
    return packets, bytes(ops)


# --- seeds of the newer targets -----------------------------------------------------------

ORIGIN = bytes([192, 0, 2, 80])

CTL_LINES = [
    "v_host 192.0.2.80",
    "setportopt 192.0.2.80 80 primary 2 1000 10 30",
    "setportopt 192.0.2.80 80 normal 0 0 0 0",
    "setportopt 192.0.2.80 80 backup 0 0 10 30",
    "group 192.0.2.80 80 7 0 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f "
    "0@198.51.100.1,1@198.51.100.2",
    "redirector 198.51.100.1",
    "serve 192.0.2.80 80 bulk:8388608",
    "serve 192.0.2.80 6379 relay:127.0.0.1:6379",
    "route add 192.0.2.80 80 198.51.100.11,198.51.100.12",
    "route del 192.0.2.80 80",
    "replica add 192.0.2.80 80 198.51.100.13",
    "replica del 192.0.2.80 80 198.51.100.13\r\n",
    "status\n",
    "counters",
    "shutdown",
    "ok",
    "ok vhosts=1 groups=1 connections=0",
    "err EINVAL setportopt: heartbeat_timeout_ms must exceed heartbeat_interval_ms",
    "err ENOENT",
    "err ENOSPC table full\n",
]


def ipip_seeds(packets):
    """The scripts' inbound packets to the redirector (origin 192.0.2.80:80 routed to three
    hosts, 192.0.2.81:443 routed to none) and through a host's tunnel."""
    head = struct.pack("<H", 1500) + bytes([2]) + bytes([0]) + struct.pack("<H", 80) + bytes([3])
    head += bytes([1]) + struct.pack("<H", 443) + bytes([4])
    seeds = []
    for i, p in enumerate(packets[:300]):
        p = bytearray(p)
        p[16:20] = ORIGIN
        blob = struct.pack("<H", len(p)) + bytes(p)
        ops = bytes([0, 2, i % 3]) + blob + bytes([2, 2]) + blob
        seeds.append(head + ops)
    # Built packets: with and without DF, IP options, fragments, a small MTU.
    for df, opts, frag in ((1, 0, 0), (0, 3, 0), (3, 0, 0x2000), (3, 0, 0x0010), (1, 10, 0)):
        ops = bytes([1, 0, df]) + struct.pack("<H", 1480) + bytes([opts]) + struct.pack("<H", frag)
        seeds.append(head + ops)
        seeds.append(struct.pack("<H", 576) + head[2:] + ops + bytes([4]) + struct.pack("<H", 68) + ops)
    return seeds


ACK_KEY = bytes(((i * 37) & 0xFF) ^ 0xA5 for i in range(32))
GROUP = 7


def frame(kind, src, dst, epoch, src_sess, dst_sess, number, aux, payload, group=GROUP, key=ACK_KEY):
    body = bytes([1, kind, src, dst]) + struct.pack(
        ">IIQQQQH", group, epoch, src_sess, dst_sess, number, aux, len(payload)
    ) + payload
    return body + hmac.new(key, body, hashlib.sha256).digest()[:16]


def ackchan_seeds():
    """Channel harness: `b` (2, incarnation 5) talks to `a` (1, incarnation 1); each has its
    peer entry of generation 1. Host harness: the fuzzer's peer has incarnation 3."""
    a_sess, b_sess = (1 << 32) | 1, (5 << 32) | 1
    blob = lambda f: struct.pack("<H", len(f)) + f
    seeds = []
    # Channel: b's next DATA (sequence 2, payload counter 2), then replays, flips, truncation.
    data2 = frame(1, 2, 1, 0, b_sess, a_sess, 2, 9, struct.pack(">Q", 2) + b"seed")
    hb = frame(3, 2, 1, 0, b_sess, a_sess, 1, 0, b"\x01\x01")
    ack = frame(2, 2, 1, 0, b_sess, a_sess, 0, 0, b"")
    seeds.append(bytes([0, 0]) + blob(data2) + bytes([0]) + blob(data2) + bytes([0]) + blob(hb) + bytes([0]) + blob(ack))
    seeds.append(bytes([0, 0]) + blob(frame(1, 2, 1, 0, b_sess, a_sess, 2, 9, b"x" * 8, group=8)))
    seeds.append(bytes([0, 0]) + blob(data2[:-1]) + bytes([0]) + blob(data2 + b"\0"))
    ops = bytes([5]) + struct.pack("<H", 100) + bytes([5]) + struct.pack("<H", 1024) + bytes([4, 0x02])
    ops += bytes([3, 0, 3, 1, 1, 0, 2]) + struct.pack("<HB", 30, 0x40)
    ops += bytes([2, 0, 4]) + struct.pack("<Q", 2) + bytes([2, 1, 7]) + struct.pack("<Q", 0)
    ops += bytes([10, 0]) + struct.pack("<H", 40) + bytes([11, 0]) + struct.pack("<H", 3) + b"abc"
    ops += bytes([12, 0, 5, 8, 3, 4, 0, 6, 10, 4, 0, 7]) + struct.pack("<H", 500) + bytes([4, 0, 13]) + struct.pack("<H", 64) + bytes([4, 0])
    seeds.append(bytes([0]) + ops)
    for field in range(12):
        seeds.append(bytes([0, 5]) + struct.pack("<H", 40) + bytes([4, 1, 2, 0xFF, field]) + struct.pack("<Q", 1 << 1) + bytes([4, 0]))
    # Host: as primary (rank 0, the peer is the backup 1) and as backup (rank 1).
    for local in (0, 1):
        p = 1 - local
        ops = bytes([1, local])
        ops += bytes([3, p, 1 if p == 0 else 0, 5, 0])  # peer heartbeat, exchange
        ops += bytes([7, 0, 0x02]) + struct.pack("<I", 1000) + bytes([1]) + struct.pack("<I", 0) + struct.pack("<H", 0)
        ops += bytes([6]) + struct.pack("<H", 5)
        ops += bytes([7, 0, 0x10]) + struct.pack("<I", 1001) + bytes([0]) + struct.pack("<I", 0) + struct.pack("<H", 100)
        msgs = bytes([1]) + bytes([0x81, 0]) + struct.pack("<II", 1101, 60000) + bytes([2, 0]) + struct.pack("<II", 1101, 0)
        ops += bytes([2]) + msgs
        ops += bytes([6]) + struct.pack("<H", 40) + bytes([9, 0, 10, 0, 4]) + struct.pack("<Q", 5 << 1 | 1)
        ops += bytes([0]) + blob(b"\x01\x01" + bytes(60)) + bytes([1]) + blob(bytes(62)) + bytes([11]) + blob(bytes(70))
        ops += bytes([4]) + struct.pack("<I", 17) + bytes([3, p, 1, 6]) + struct.pack("<H", 100)
        seeds.append(ops)
    return seeds


def ft_group_seeds():
    seeds = []
    for workload in range(4):
        for replicas in (0, 1):
            head = bytes([replicas, workload, 40, workload + 1, 0, 0])
            ops = bytes([0, 63, 0, 63])
            ops += bytes([3, 1, 0]) + struct.pack("<H", 62) + bytes(62)          # garbage from a member
            ops += bytes([4, 0, 1]) + struct.pack("<H", 0)                      # replay
            ops += bytes([4, 3, 2]) + struct.pack("<H", 0x0105)                 # re-addressed, flipped
            ops += bytes([5, 1]) + struct.pack("<H", 40) + bytes(40)            # stranger tunnel
            ops += bytes([0, 30, 1, 0, 6]) + struct.pack("<H", 1500)            # crash the primary
            ops += bytes([2, 0, 1]) + struct.pack("<H", 20) + bytes([6]) + struct.pack("<H", 2000)
            seeds.append(head + ops)
    return seeds


def write_unique(folder, data):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, hashlib.sha1(data).hexdigest())
    if os.path.exists(path):
        return False
    with open(path, "wb") as f:
        f.write(data)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_suite = os.environ.get("HYDRANET_TCP_TESTSUITE") or os.path.join(
        HERE, "..", "..", "shared", "tcp-testsuite"
    )
    ap.add_argument("--suite", default=default_suite)
    ap.add_argument("--out", default=os.path.join(HERE, "corpus"))
    args = ap.parse_args()
    if not os.path.isdir(args.suite):
        sys.exit(f"make-seeds: tcp-testsuite folder {args.suite} not found (--suite or HYDRANET_TCP_TESTSUITE)")
    scripts = []
    for root, _, files in os.walk(args.suite):
        scripts += [os.path.join(root, f) for f in files if f.endswith(".pkt")]
    scripts.sort()
    counts = {
        t: 0
        for t in (
            "wire_tcp", "wire_ipv4", "stack_input", "pkt_script", "ipip_redirector",
            "ctl_protocol", "ackchan_frames", "ft_group",
        )
    }

    def add(target, data):
        counts[target] += write_unique(os.path.join(args.out, target), data)

    all_packets = []
    for i, path in enumerate(scripts):
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        packets, ops = convert(text, i)
        add("pkt_script", text.encode())
        for p in packets:
            for target in ("wire_tcp", "wire_ipv4"):
                add(target, p)
        all_packets += packets
        if packets:
            add("stack_input", ops)
    for seed in ipip_seeds(sorted(set(all_packets))):
        add("ipip_redirector", seed)
    for line in CTL_LINES:
        add("ctl_protocol", line.encode())
    add("ctl_protocol", "\n".join(CTL_LINES).encode())
    for seed in ackchan_seeds():
        add("ackchan_frames", seed)
    for seed in ft_group_seeds():
        add("ft_group", seed)
    print(
        f"make-seeds: {len(scripts)} scripts -> "
        + ", ".join(f"{n} new in corpus/{t}" for t, n in counts.items())
    )


if __name__ == "__main__":
    main()

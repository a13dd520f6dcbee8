//! Property tests over random operation sequences.
//!
//! 1. Two stacks connected in memory through a link the test drives op by op: application
//!    sends, reads and half-closes, time steps, and link faults (drop, duplicate, reorder,
//!    corrupt, blind injection). After every operation the tcpcb invariants visible through the
//!    public API are checked; once the faults stop, every byte must arrive, byte-exact, and both
//!    connections must close cleanly.
//! 2. One stack and a scripted peer sending arbitrary segments around the window edges: the
//!    stack must never panic, never acknowledge sequence space the peer did not send, never
//!    deliver a byte that differs from what was sent, and never send beyond what it was given.
//!
//! Case counts are modest so the suite stays well under a minute in debug builds; set
//! PROPTEST_CASES to raise them.

mod common;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

use common::*;
use hydranet_core::netinet::tcp_fsm::TcpState;
use hydranet_core::netinet::tcp_usrreq::{OptName, OptValue, Shutdown, SockOpt};
use hydranet_core::stack::{SocketHandle, Stack};
use hydranet_core::wire::ipv4::Ipv4Header;
use hydranet_core::wire::tcp::{self, TcpFlags};
use hydranet_core::{Duration, Errno, Instant};
use proptest::prelude::*;

const A_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const B_PORT: u16 = 80;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The byte stream each side writes: byte `i` of side `s`.
fn pattern(s: u8, i: usize) -> u8 {
    ((i as u64).wrapping_mul(2_654_435_761) >> 13) as u8 ^ s.wrapping_mul(0x5b)
}

/// `a - b` in sequence space.
fn sdiff(a: u32, b: u32) -> i64 {
    a.wrapping_sub(b) as i32 as i64
}

// ================================================================ two stacks

#[derive(Clone, Debug)]
enum Op {
    Send(bool, usize),
    Recv(bool, usize),
    Shutdown(bool),
    Step(u32),
    Deliver(bool),
    Drop(bool),
    Dup(bool),
    Reorder(bool),
    Corrupt(bool, usize, u8),
    /// A valid segment with the connection's 4-tuple but sequence and acknowledgment numbers
    /// far outside the windows (a blind injection), with the given flags, length and options.
    Blind(bool, u8, u16, Vec<u8>),
    /// Random bytes handed to a stack as an IPv4 packet.
    Noise(bool, Vec<u8>),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<bool>(), 1usize..20_000).prop_map(|(s, n)| Op::Send(s, n)),
        4 => (any::<bool>(), 1usize..70_000).prop_map(|(s, n)| Op::Recv(s, n)),
        1 => any::<bool>().prop_map(Op::Shutdown),
        8 => (0u32..3_000).prop_map(Op::Step),
        6 => any::<bool>().prop_map(Op::Deliver),
        3 => any::<bool>().prop_map(Op::Drop),
        2 => any::<bool>().prop_map(Op::Dup),
        2 => any::<bool>().prop_map(Op::Reorder),
        2 => (any::<bool>(), any::<usize>(), 1u8..=255).prop_map(|(d, i, m)| Op::Corrupt(d, i, m)),
        2 => (any::<bool>(), any::<u8>(), 0u16..1500, prop::collection::vec(any::<u8>(), 0..12))
            .prop_map(|(d, f, l, o)| Op::Blind(d, f, l, o)),
        1 => (any::<bool>(), prop::collection::vec(any::<u8>(), 0..80))
            .prop_map(|(d, b)| Op::Noise(d, b)),
    ]
}

#[derive(Clone, Copy, Debug)]
struct Config {
    sack: bool,
    rfc1323: u8,
    delayed_ack: bool,
    rcvbuf: u32,
    sndbuf: u32,
    mtu: u32,
}

fn config_strategy(sack: Option<bool>) -> impl Strategy<Value = Config> {
    (
        match sack {
            Some(v) => Just(v).boxed(),
            None => any::<bool>().boxed(),
        },
        prop_oneof![Just(0u8), Just(1), Just(2), Just(3)],
        any::<bool>(),
        prop_oneof![Just(3_000u32), Just(16_384), Just(65_536), Just(300_000)],
        prop_oneof![Just(2_000u32), Just(32_768), Just(200_000)],
        prop_oneof![Just(576u32), Just(1_500), Just(9_000)],
    )
        .prop_map(|(sack, rfc1323, delayed_ack, rcvbuf, sndbuf, mtu)| Config {
            sack,
            rfc1323,
            delayed_ack,
            rcvbuf,
            sndbuf,
            mtu,
        })
}

struct Side {
    stack: Stack<'static>,
    id: u8,
    h: Option<SocketHandle>,
    sent: usize,
    read: Vec<u8>,
    shut: bool,
    eof: bool,
    iss: Option<u32>,
    errors: Vec<Errno>,
    scratch: Vec<u8>,
}

impl Side {
    fn new(id: u8, addr: Ipv4Addr, c: &Config) -> Side {
        let mut seed = [0u8; 16];
        seed[0] = id;
        seed[5] = 0x77;
        let mut stack = Stack::new_alloc(seed);
        stack.add_address(addr).unwrap();
        stack.set_mtu(c.mtu);
        stack.sysctl.sack_enable = c.sack;
        stack.sysctl.rfc1323 = c.rfc1323;
        stack.sysctl.delayed_ack = c.delayed_ack;
        Side {
            stack,
            id,
            h: None,
            sent: 0,
            read: Vec::new(),
            shut: false,
            eof: false,
            iss: None,
            errors: Vec::new(),
            scratch: vec![0u8; 65_536],
        }
    }

    fn state(&self) -> Option<TcpState> {
        self.h.and_then(|h| self.stack.state(h).ok())
    }

    fn int_opt(&mut self, n: OptName) -> i64 {
        match self.stack.getsockopt(self.h.unwrap(), n).unwrap() {
            OptValue::Int(v) => v,
            v => panic!("getsockopt {n:?} = {v:?}"),
        }
    }

    fn send(&mut self, now: Instant, n: usize) {
        let Some(h) = self.h else { return };
        if self.shut {
            return;
        }
        let data: Vec<u8> = (self.sent..self.sent + n)
            .map(|i| pattern(self.id, i))
            .collect();
        match self.stack.send(now, h, &data, 0) {
            Ok(k) => {
                assert!(k <= n);
                self.sent += k;
            }
            Err(Errno::EWOULDBLOCK) => {}
            Err(e) => self.errors.push(e),
        }
    }

    /// Reads up to `max` bytes, checking them against what the peer wrote.
    fn recv(&mut self, now: Instant, max: usize, peer_id: u8) {
        let Some(h) = self.h else { return };
        let mut buf = std::mem::take(&mut self.scratch);
        let mut left = max;
        while left > 0 {
            let want = left.min(buf.len());
            match self.stack.recv(now, h, &mut buf[..want], 0) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(k) => {
                    assert!(k <= want);
                    for (j, &b) in buf[..k].iter().enumerate() {
                        let i = self.read.len() + j;
                        assert_eq!(
                            b,
                            pattern(peer_id, i),
                            "side {} read a wrong byte at stream offset {i}",
                            self.id
                        );
                    }
                    self.read.extend_from_slice(&buf[..k]);
                    left -= k;
                }
                Err(Errno::EWOULDBLOCK) => break,
                Err(e) => {
                    self.errors.push(e);
                    break;
                }
            }
        }
        self.scratch = buf;
    }
}

struct World {
    a: Side,
    b: Side,
    ab: VecDeque<Vec<u8>>,
    ba: VecDeque<Vec<u8>>,
    now: Instant,
    buf: Vec<u8>,
    drops: usize,
    listener: SocketHandle,
}

impl World {
    fn new(c: Config) -> World {
        let mut a = Side::new(1, A_ADDR, &c);
        let mut b = Side::new(2, B_ADDR, &c);
        let l = b.stack.socket().unwrap();
        b.stack.setsockopt(l, SockOpt::RcvBuf(c.rcvbuf)).unwrap();
        b.stack.setsockopt(l, SockOpt::SndBuf(c.sndbuf)).unwrap();
        b.stack.bind(l, SocketAddrV4::new(B_ADDR, B_PORT)).unwrap();
        b.stack.listen(l, 4).unwrap();
        let s = a.stack.socket().unwrap();
        a.stack.setsockopt(s, SockOpt::RcvBuf(c.rcvbuf)).unwrap();
        a.stack.setsockopt(s, SockOpt::SndBuf(c.sndbuf)).unwrap();
        let now = Instant::from_millis(10);
        assert_eq!(
            a.stack.connect(now, s, SocketAddrV4::new(B_ADDR, B_PORT)),
            Err(Errno::EINPROGRESS)
        );
        a.h = Some(s);
        let mut w = World {
            a,
            b,
            ab: VecDeque::new(),
            ba: VecDeque::new(),
            now,
            buf: vec![0u8; 70_000],
            drops: 0,
            listener: l,
        };
        // A clean handshake.
        for _ in 0..10 {
            w.flush();
            w.deliver_all();
            if w.b.h.is_none() {
                if let Ok((h, _)) = w.b.stack.accept(l) {
                    w.b.h = Some(h);
                }
            }
        }
        w.flush();
        assert_eq!(w.a.state(), Some(TcpState::Established));
        assert_eq!(w.b.state(), Some(TcpState::Established));
        assert!(w.ab.is_empty() && w.ba.is_empty());
        w
    }

    fn side(&mut self, a: bool) -> (&mut Side, &mut Side) {
        if a {
            (&mut self.a, &mut self.b)
        } else {
            (&mut self.b, &mut self.a)
        }
    }

    /// Moves everything both stacks want to send onto the link.
    fn flush(&mut self) {
        for from_a in [true, false] {
            for _ in 0..100_000 {
                let (s, q) = if from_a {
                    (&mut self.a, &mut self.ab)
                } else {
                    (&mut self.b, &mut self.ba)
                };
                let Some(n) = s.stack.poll_transmit(self.now, &mut self.buf) else {
                    break;
                };
                let pkt = self.buf[..n].to_vec();
                let seg = parse_out(self.now, &pkt);
                if std::env::var_os("TCP_TRACE").is_some() {
                    eprintln!(
                        "{:>8} {} {:>3} seq {} ack {} win {} len {} {:?}",
                        self.now.total_millis(),
                        if from_a { "A>" } else { "B>" },
                        seg.flags.to_string(),
                        seg.seq,
                        seg.ack,
                        seg.win,
                        seg.len(),
                        seg.opts
                    );
                }
                // The connection's ISS: its first SYN (later ones belong to new attempts).
                if seg.flags.contains(TcpFlags::SYN) && s.iss.is_none() {
                    s.iss = Some(seg.seq);
                }
                q.push_back(pkt);
            }
        }
    }

    fn queue(&mut self, from_a: bool) -> &mut VecDeque<Vec<u8>> {
        if from_a {
            &mut self.ab
        } else {
            &mut self.ba
        }
    }

    /// Hands the next packet of one direction to its receiver, then drains both stacks'
    /// output (`poll_transmit` after every `handle_*`, as the stack's API asks).
    fn deliver_one(&mut self, from_a: bool) {
        if let Some(p) = self.queue(from_a).pop_front() {
            let now = self.now;
            let (_, to) = self.side(from_a);
            to.stack.handle_packet(now, &p);
            self.flush();
        }
    }

    /// Delivers what is on the link now (not what the deliveries provoke).
    fn deliver_all(&mut self) {
        let n_ab = self.ab.len();
        let n_ba = self.ba.len();
        for _ in 0..n_ab {
            self.deliver_one(true);
        }
        for _ in 0..n_ba {
            self.deliver_one(false);
        }
    }

    fn advance(&mut self, ms: u64) {
        let target = self.now + Duration::from_millis(ms);
        for _ in 0..10_000 {
            self.flush();
            let next = [self.a.stack.poll_timeout(), self.b.stack.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= target => {
                    self.now = self.now.max(t);
                    self.a.stack.handle_timeout(self.now);
                    self.b.stack.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = self.now.max(target);
        self.flush();
    }

    fn apply(&mut self, op: &Op) {
        let now = self.now;
        if std::env::var_os("TCP_TRACE").is_some() {
            eprintln!("{:>8} op {op:?}", now.total_millis());
        }
        match op {
            Op::Send(a, n) => self.side(*a).0.send(now, *n),
            Op::Recv(a, n) => {
                let peer = if *a { 2 } else { 1 };
                self.side(*a).0.recv(now, *n, peer);
            }
            Op::Shutdown(a) => {
                let (s, _) = self.side(*a);
                if let (Some(h), false) = (s.h, s.shut) {
                    match s.stack.shutdown(now, h, Shutdown::Write) {
                        Ok(()) => s.shut = true,
                        Err(e) => s.errors.push(e),
                    }
                }
            }
            Op::Step(ms) => {
                self.deliver_all();
                self.advance(*ms as u64);
            }
            Op::Deliver(a) => self.deliver_one(*a),
            Op::Drop(a) => {
                if self.queue(*a).pop_front().is_some() {
                    self.drops += 1;
                }
            }
            Op::Dup(a) => {
                let q = self.queue(*a);
                if let Some(p) = q.front().cloned() {
                    q.push_back(p);
                }
            }
            Op::Reorder(a) => {
                let q = self.queue(*a);
                if q.len() >= 2 {
                    q.swap(0, 1);
                }
            }
            Op::Corrupt(a, i, m) => {
                let q = self.queue(*a);
                if let Some(p) = q.front_mut() {
                    let k = i % p.len();
                    p[k] ^= m;
                }
            }
            Op::Blind(to_a, flags, len, opts) => self.blind(*to_a, *flags, *len, opts),
            Op::Noise(to_a, bytes) => {
                let (_, to) = self.side(!*to_a);
                to.stack.handle_packet(now, bytes);
            }
        }
        self.flush();
    }

    /// A well-formed segment on the connection's 4-tuple whose sequence number lies 1-2 GiB
    /// behind the receiver's rcv_nxt and whose ACK lies 1 GiB behind its snd_nxt: RFC 793 and
    /// RFC 5961 say it must change nothing (at most it is answered with an ACK).
    fn blind(&mut self, to_a: bool, flags: u8, len: u16, opts: &[u8]) {
        let now = self.now;
        let Some(ah) = self.a.h else { return };
        let Ok(local) = self.a.stack.local_addr(ah) else {
            return;
        };
        let (src, dst, sport, dport) = if to_a {
            (B_ADDR, A_ADDR, B_PORT, local.port())
        } else {
            (A_ADDR, B_ADDR, local.port(), B_PORT)
        };
        let (target, _) = self.side(to_a);
        let Some(h) = target.h else { return };
        let Ok(info) = target.stack.tcp_info(h) else {
            return;
        };
        let seq = info
            .tcpi_rcv_nxt
            .wrapping_sub(0x4000_0000)
            .wrapping_sub((len as u32) << 10);
        let ack = info.tcpi_snd_nxt.wrapping_sub(0x4000_0000);
        let mut o = opts.to_vec();
        o.truncate(40);
        let pkt = build_packet(
            src,
            dst,
            sport,
            dport,
            TcpFlags((flags as u16) & 0x3f),
            seq,
            ack,
            0x1234,
            &o,
            &vec![0xeeu8; len as usize],
        );
        target.stack.handle_packet(now, &pkt);
    }

    /// tcpcb invariants visible through the public API, for both sides.
    fn check(&mut self) {
        self.check_side(true);
        self.check_side(false);
    }

    fn check_side(&mut self, is_a: bool) {
        let (me, peer) = if is_a {
            (&mut self.a, &mut self.b)
        } else {
            (&mut self.b, &mut self.a)
        };
        let Some(h) = me.h else { return };
        let st = me.stack.state(h).expect("a live handle has a state");
        // pcblist agrees with the handle's state.
        let pcb = me
            .stack
            .pcblist()
            .find(|p| p.handle == Some(h))
            .expect("a live handle is listed by pcblist");
        assert_eq!(pcb.state, st);

        let rcvbuf = me.int_opt(OptName::RcvBuf) as usize;
        let sndbuf = me.int_opt(OptName::SndBuf) as usize;
        let (readable, space) = me.stack.readiness(h).unwrap();
        let queued = me.stack.send_queue(h).unwrap();
        assert!(
            readable <= rcvbuf,
            "readable {readable} > SO_RCVBUF {rcvbuf}"
        );
        assert!(queued <= sndbuf, "send queue {queued} > SO_SNDBUF {sndbuf}");
        assert!(
            queued + space <= sndbuf,
            "queued {queued} + space {space} > SO_SNDBUF {sndbuf}"
        );
        assert!(queued <= me.sent, "more queued than ever sent");
        // The receiver never holds more than the sender wrote.
        assert!(
            me.read.len() + readable <= peer.sent,
            "side {} has {} read + {} readable, peer wrote {}",
            me.id,
            me.read.len(),
            readable,
            peer.sent
        );

        let info = me.stack.tcp_info(h).unwrap();
        let rto_ms = info.tcpi_rto / 1000;
        assert!(
            (1..=64_000).contains(&rto_ms),
            "RTO {rto_ms} ms out of range"
        );
        if !st.have_established() {
            return;
        }
        let (Some(iss), Some(irs)) = (me.iss, peer.iss) else {
            return;
        };
        let acked = (me.sent - queued) as i64;
        let snd_nxt = sdiff(info.tcpi_snd_nxt, iss);
        let rcv_nxt = sdiff(info.tcpi_rcv_nxt, irs);
        // snd_una (1 + acked) <= snd_nxt <= 1 + written (+1 for our FIN).
        assert!(
            acked < snd_nxt || st == TcpState::Closed,
            "side {}: snd_una {} > snd_nxt {snd_nxt} ({st:?})",
            me.id,
            1 + acked
        );
        assert!(
            snd_nxt <= 1 + me.sent as i64 + me.shut as i64,
            "side {}: snd_nxt {snd_nxt} beyond what was written ({} + FIN {})",
            me.id,
            me.sent,
            me.shut
        );
        // rcv_nxt <= what the peer wrote (+1 for its FIN).
        assert!(
            (1..=1 + peer.sent as i64 + peer.shut as i64).contains(&rcv_nxt),
            "side {}: rcv_nxt {rcv_nxt} outside 1..={} ",
            me.id,
            1 + peer.sent + peer.shut as usize
        );
        // Everything below rcv_nxt was handed to the socket buffer: read or readable.
        if st != TcpState::Closed {
            let fin = st.have_rcvd_fin() as i64;
            assert_eq!(
                rcv_nxt - 1 - fin,
                (me.read.len() + readable) as i64,
                "side {}: rcv_nxt {rcv_nxt} ({st:?}) but {} read + {readable} readable",
                me.id,
                me.read.len()
            );
        }
        // Our acknowledged bytes really reached the peer.
        if let Some(ph) = peer.h {
            if let Ok(pi) = peer.stack.tcp_info(ph) {
                let peer_rcv = sdiff(pi.tcpi_rcv_nxt, iss);
                assert!(
                    acked < peer_rcv,
                    "side {}: {acked} bytes acknowledged but the peer's rcv_nxt is {peer_rcv}",
                    me.id
                );
            }
        }
        // Liveness: unacknowledged data always has a timer to bring it back.
        if queued > 0
            && matches!(
                st,
                TcpState::Established
                    | TcpState::CloseWait
                    | TcpState::FinWait1
                    | TcpState::Closing
                    | TcpState::LastAck
            )
        {
            assert!(
                me.stack.poll_timeout().is_some(),
                "side {}: {queued} bytes queued in {st:?} and no timer armed",
                me.id
            );
        }
    }

    /// No more faults: run until both byte streams are complete (or give up after 30 minutes
    /// of virtual time).
    fn heal(&mut self, want_eof: bool) {
        let deadline = self.now + Duration::from_secs(30 * 60);
        for _ in 0..200_000 {
            self.flush();
            let now = self.now;
            self.a.recv(now, 1 << 20, 2);
            self.b.recv(now, 1 << 20, 1);
            self.flush();
            self.check();
            let done = self.a.read.len() == self.b.sent
                && self.b.read.len() == self.a.sent
                && (!want_eof || (self.a.eof && self.b.eof))
                && self.ab.is_empty()
                && self.ba.is_empty();
            if done || self.now >= deadline {
                return;
            }
            if !self.ab.is_empty() || !self.ba.is_empty() {
                // One millisecond of link delay; timers due meanwhile fire too.
                self.now += Duration::from_millis(1);
                self.a.stack.handle_timeout(self.now);
                self.b.stack.handle_timeout(self.now);
                self.flush();
                self.deliver_all();
                continue;
            }
            let next = [self.a.stack.poll_timeout(), self.b.stack.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= deadline => {
                    self.now = self.now.max(t);
                    self.a.stack.handle_timeout(self.now);
                    self.b.stack.handle_timeout(self.now);
                }
                _ => return,
            }
        }
    }
}

fn run_two_stacks(c: Config, ops: &[Op]) {
    let mut w = World::new(c);
    w.check();
    for op in ops {
        w.apply(op);
        w.check();
    }
    // Faults stop here.
    w.heal(false);
    let tolerated = |e: &Errno, drops: usize| *e == Errno::ETIMEDOUT && drops >= 10;
    let drops = w.drops;
    let bad: Vec<_> =
        w.a.errors
            .iter()
            .chain(&w.b.errors)
            .filter(|e| !tolerated(e, drops))
            .collect();
    assert!(bad.is_empty(), "socket errors {bad:?}");
    if !w.a.errors.is_empty() || !w.b.errors.is_empty() {
        return;
    }
    assert_eq!(w.b.read.len(), w.a.sent, "A -> B stream incomplete");
    assert_eq!(w.a.read.len(), w.b.sent, "B -> A stream incomplete");
    // Both close their sending side; both see EOF; both connections end.
    for is_a in [true, false] {
        if !w.side(is_a).0.shut {
            w.apply(&Op::Shutdown(is_a));
        }
    }
    w.heal(true);
    assert!(
        w.a.eof && w.b.eof,
        "EOF not seen (a {}, b {})",
        w.a.eof,
        w.b.eof
    );
    w.advance(3 * 60 * 1000);
    w.heal(true);
    w.advance(3 * 60 * 1000);
    assert_eq!(w.a.state(), Some(TcpState::Closed));
    assert_eq!(w.b.state(), Some(TcpState::Closed));
    let l = w.listener;
    assert_eq!(w.b.stack.state(l), Ok(TcpState::Listen));
}

fn config(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(n),
        // Failures are turned into named regression tests instead of seed files.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// The full configuration space. With SACK negotiated the core stalls (see the ignored
    /// regression tests below and in tcp_states::from_proptest), so this runs on request;
    /// the SACK-free variant below runs by default.
    #[test]
    fn two_stacks_keep_invariants_and_deliver_everything(
        c in config_strategy(None),
        ops in prop::collection::vec(op_strategy(), 1..120),
    ) {
        run_two_stacks(c, &ops);
    }

    #[test]
    fn two_stacks_without_sack_keep_invariants_and_deliver_everything(
        c in config_strategy(Some(false)),
        ops in prop::collection::vec(op_strategy(), 1..120),
    ) {
        run_two_stacks(c, &ops);
    }
}

#[test]
fn two_stacks_clean_transfer_smoke() {
    let c = Config {
        sack: true,
        rfc1323: 1,
        delayed_ack: true,
        rcvbuf: 65_536,
        sndbuf: 32_768,
        mtu: 1_500,
    };
    let mut ops = Vec::new();
    for _ in 0..20 {
        ops.push(Op::Send(true, 10_000));
        ops.push(Op::Send(false, 7_000));
        ops.push(Op::Step(50));
        ops.push(Op::Recv(true, 100_000));
        ops.push(Op::Recv(false, 100_000));
    }
    run_two_stacks(c, &ops);
}

#[test]
fn two_stacks_lossy_transfer_smoke() {
    let c = Config {
        sack: true,
        rfc1323: 1,
        delayed_ack: true,
        rcvbuf: 16_384,
        sndbuf: 32_768,
        mtu: 1_500,
    };
    let mut ops = Vec::new();
    for i in 0..40 {
        ops.push(Op::Send(i % 2 == 0, 5_000));
        ops.push(Op::Drop(true));
        ops.push(Op::Reorder(false));
        ops.push(Op::Dup(true));
        ops.push(Op::Step(300));
        ops.push(Op::Recv(false, 100_000));
        ops.push(Op::Recv(true, 3_000));
    }
    run_two_stacks(c, &ops);
}

// ================================================================ one stack, scripted peer

#[derive(Clone, Debug)]
enum PeerOp {
    /// flags (low 6 bits), sequence offset choice, ack offset choice, length, options choice
    Seg(u8, SeqPick, AckPick, u16, OptPick),
    AppSend(usize),
    AppRecv(usize),
    AppShutdown,
    Wait(u32),
}

#[derive(Clone, Copy, Debug)]
enum SeqPick {
    /// Relative to the stack's rcv_nxt.
    Near(i32),
    RightEdge(i32),
    Far(u32),
}

#[derive(Clone, Copy, Debug)]
enum AckPick {
    /// Relative to the stack's snd_nxt.
    Near(i32),
    Far(u32),
}

#[derive(Clone, Debug)]
enum OptPick {
    None,
    Ts,
    Sack(Vec<(i32, u16)>),
    Raw(Vec<u8>),
}

fn peer_op_strategy() -> impl Strategy<Value = PeerOp> {
    let seq = prop_oneof![
        6 => (-3000i32..3000).prop_map(SeqPick::Near),
        2 => (-3000i32..3000).prop_map(SeqPick::RightEdge),
        1 => any::<u32>().prop_map(SeqPick::Far),
    ];
    let ack = prop_oneof![
        6 => (-3000i32..100).prop_map(AckPick::Near),
        1 => any::<u32>().prop_map(AckPick::Far),
    ];
    let opts = prop_oneof![
        4 => Just(OptPick::None),
        2 => Just(OptPick::Ts),
        2 => prop::collection::vec((-5000i32..5000, 1u16..3000), 1..4).prop_map(OptPick::Sack),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(OptPick::Raw),
    ];
    prop_oneof![
        10 => (0u8..64, seq, ack, prop_oneof![3 => Just(0u16), 5 => 1u16..1500, 1 => 1500u16..4000], opts)
            .prop_map(|(f, s, a, l, o)| PeerOp::Seg(f, s, a, l, o)),
        2 => (1usize..20_000).prop_map(PeerOp::AppSend),
        2 => (1usize..70_000).prop_map(PeerOp::AppRecv),
        1 => Just(PeerOp::AppShutdown),
        3 => (0u32..5_000).prop_map(PeerOp::Wait),
    ]
}

/// The peer's byte for absolute sequence number `seq` (consistent across retransmissions).
fn peer_byte(seq: u32) -> u8 {
    (seq.wrapping_mul(0x9e37_79b1) >> 24) as u8
}

fn run_scripted(start: TcpState, full: bool, ops: &[PeerOp]) {
    let mut h = in_state_with(
        start,
        if full {
            PeerOpts::full()
        } else {
            PeerOpts::basic()
        },
    );
    h.out.clear();
    let hd = h.h();
    let mut app_sent: usize = 0;
    let mut shut = h.state().fin_sent();
    let mut read: Vec<u8> = Vec::new();
    // Furthest relative sequence number the peer has covered (data and FIN).
    let mut peer_max_end: i64 = sdiff(h.stack.tcp_info(hd).unwrap().tcpi_rcv_nxt, h.irs);
    let mut checked = 0usize;
    for op in ops {
        if h.stack.state(hd).is_err() {
            break;
        }
        let info = h.stack.tcp_info(hd).unwrap();
        match op {
            PeerOp::Seg(flags, sp, ap, len, op) => {
                let seq = match *sp {
                    SeqPick::Near(d) => info.tcpi_rcv_nxt.wrapping_add(d as u32),
                    SeqPick::RightEdge(d) => info
                        .tcpi_rcv_nxt
                        .wrapping_add(info.tcpi_rcv_space)
                        .wrapping_add(d as u32),
                    SeqPick::Far(x) => x,
                };
                let ack = match *ap {
                    AckPick::Near(d) => info.tcpi_snd_nxt.wrapping_add(d as u32),
                    AckPick::Far(x) => x,
                };
                let f = TcpFlags((*flags & 0x3f) as u16);
                let payload: Vec<u8> = (0..*len as u32)
                    .map(|i| {
                        peer_byte(
                            seq.wrapping_add(i)
                                .wrapping_add(f.contains(TcpFlags::SYN) as u32),
                        )
                    })
                    .collect();
                let end = sdiff(seq, h.irs)
                    + *len as i64
                    + f.contains(TcpFlags::SYN) as i64
                    + f.contains(TcpFlags::FIN) as i64;
                if sdiff(seq, h.irs).abs() < 1 << 30 {
                    peer_max_end = peer_max_end.max(end);
                }
                let opts = match op {
                    OptPick::None => Vec::new(),
                    OptPick::Ts => {
                        let mut o = opt::nop();
                        o.extend(opt::nop());
                        o.extend(opt::ts(h.peer_tsval(), h.ts_recent));
                        o
                    }
                    OptPick::Sack(bl) => {
                        let blocks: Vec<(u32, u32)> = bl
                            .iter()
                            .map(|(o, l)| {
                                let s = info.tcpi_snd_nxt.wrapping_add(*o as u32);
                                (s, s.wrapping_add(*l as u32))
                            })
                            .collect();
                        let mut o = opt::nop();
                        o.extend(opt::nop());
                        o.extend(opt::sack(&blocks));
                        o
                    }
                    OptPick::Raw(r) => r.clone(),
                };
                let mut o = opts;
                o.truncate(40);
                let pkt = build_packet(
                    PEER, LOCAL, PPORT, LPORT, f, seq, ack, PEER_WIN, &o, &payload,
                );
                h.inject_raw(&pkt);
            }
            PeerOp::AppSend(n) => {
                if !shut {
                    let data: Vec<u8> = (app_sent..app_sent + n).map(|i| pattern(1, i)).collect();
                    if let Ok(k) = h.stack.send(h.now, hd, &data, 0) {
                        app_sent += k;
                    }
                    h.pull();
                }
            }
            PeerOp::AppRecv(n) => {
                let mut buf = vec![0u8; *n];
                if let Ok(k) = h.stack.recv(h.now, hd, &mut buf, 0) {
                    read.extend_from_slice(&buf[..k]);
                }
                h.pull();
            }
            PeerOp::AppShutdown => {
                if h.stack.shutdown(h.now, hd, Shutdown::Write).is_ok() {
                    shut = true;
                }
                h.pull();
            }
            PeerOp::Wait(ms) => h.advance(*ms as u64),
        }
        // Every byte handed to the application is the peer's byte at that sequence number.
        for (i, &b) in read.iter().enumerate().skip(checked) {
            assert_eq!(
                b,
                peer_byte(h.irs.wrapping_add(1 + i as u32)),
                "delivered byte {i} differs from what the peer sent"
            );
        }
        checked = read.len();
        // Nothing the stack sent acknowledges unsent sequence space or carries unwritten data.
        while let Some(s) = h.out.pop_front() {
            // (A RST's acknowledgment covers the offending segment, not accepted data.)
            if s.flags.contains(TcpFlags::ACK) && !s.flags.contains(TcpFlags::RST) {
                let ack_rel = sdiff(s.ack, h.irs);
                assert!(
                    ack_rel <= peer_max_end.max(1),
                    "stack acknowledged {ack_rel}, peer only sent up to {peer_max_end}: {}",
                    h.show(&s)
                );
            }
            if !s.flags.contains(TcpFlags::RST) {
                let end =
                    sdiff(s.seq, h.iss) + s.len() as i64 + s.flags.contains(TcpFlags::FIN) as i64;
                assert!(
                    end <= 1 + app_sent as i64 + shut as i64,
                    "stack sent sequence space up to {end} but was given {app_sent} bytes (+FIN {shut}): {}",
                    h.show(&s)
                );
                for (i, &b) in s.payload.iter().enumerate() {
                    let off = sdiff(s.seq, h.iss) - 1 + i as i64;
                    assert!(
                        off >= 0,
                        "payload before the first data byte: {}",
                        h.show(&s)
                    );
                    assert_eq!(b, pattern(1, off as usize), "wrong payload byte at {off}");
                }
            }
        }
        if let Ok(st) = h.stack.state(hd) {
            let (readable, _) = h.stack.readiness(hd).unwrap();
            let rcvbuf = match h.stack.getsockopt(hd, OptName::RcvBuf).unwrap() {
                OptValue::Int(v) => v as usize,
                _ => unreachable!(),
            };
            assert!(readable <= rcvbuf);
            let rcv = sdiff(h.stack.tcp_info(hd).unwrap().tcpi_rcv_nxt, h.irs);
            assert!(
                rcv <= peer_max_end.max(1),
                "rcv_nxt {rcv} beyond what the peer sent ({peer_max_end}) in {st:?}"
            );
        }
    }
}

fn start_state() -> impl Strategy<Value = TcpState> {
    prop_oneof![
        6 => Just(TcpState::Established),
        1 => Just(TcpState::SynReceived),
        1 => Just(TcpState::FinWait1),
        1 => Just(TcpState::FinWait2),
        1 => Just(TcpState::CloseWait),
        1 => Just(TcpState::LastAck),
        1 => Just(TcpState::Closing),
        1 => Just(TcpState::TimeWait),
    ]
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn scripted_peer_cannot_break_invariants(
        start in start_state(),
        full in any::<bool>(),
        ops in prop::collection::vec(peer_op_strategy(), 1..80),
    ) {
        run_scripted(start, full, &ops);
    }

    /// Arbitrary bytes, and arbitrary TCP headers with valid checksums, never panic a stack
    /// in any state, and whatever it sends back is well formed (parse_out checks).
    #[test]
    fn arbitrary_packets_never_panic(
        start in start_state(),
        pkts in prop::collection::vec(
            (any::<bool>(), prop::collection::vec(any::<u8>(), 0..120)), 1..40),
    ) {
        let mut h = in_state(start);
        for (as_tcp, bytes) in pkts {
            if as_tcp && bytes.len() >= 20 {
                // Keep the 4-tuple so the bytes reach the connection; the rest is arbitrary,
                // the checksum made valid.
                let mut seg = bytes.clone();
                seg[0..2].copy_from_slice(&PPORT.to_be_bytes());
                seg[2..4].copy_from_slice(&LPORT.to_be_bytes());
                let mut pkt = vec![0u8; 20 + seg.len()];
                Ipv4Header::new(PEER, LOCAL, 6, seg.len(), 64).emit(&mut pkt[..20]).unwrap();
                pkt[20..].copy_from_slice(&seg);
                fix_checksum(&mut pkt);
                h.inject_raw(&pkt);
            } else {
                h.inject_raw(&bytes);
            }
            h.advance(7);
            h.out.clear();
        }
    }
}

/// Recomputes the TCP checksum of an IPv4 packet from PEER to LOCAL.
fn fix_checksum(pkt: &mut [u8]) {
    use hydranet_core::wire::checksum;
    let seg = &mut pkt[20..];
    seg[16] = 0;
    seg[17] = 0;
    let sum = checksum::combine(
        checksum::pseudo_header(PEER, LOCAL, 6, seg.len() as u32),
        checksum::sum(seg),
    );
    seg[16..18].copy_from_slice(&checksum::finish(sum).to_be_bytes());
    // The segment must still parse as TCP from here on, or it is counted, not processed.
    let _ = tcp::parse_segment(seg, PEER, LOCAL, true);
}

/// Found by the property test (a harness bug then): both sides send FIN while each misses
/// data from the other; the out-of-order FINs are ACKed with FIN-carrying ACKs back and forth
/// until the retransmission timers repair the holes.
#[test]
fn fins_crossing_over_holes_recover() {
    use Op::*;
    let c = Config {
        sack: false,
        rfc1323: 2,
        delayed_ack: true,
        rcvbuf: 65536,
        sndbuf: 32768,
        mtu: 1500,
    };
    let ops = [
        Send(true, 1),
        Send(false, 4853),
        Step(1000),
        Drop(false),
        Drop(false),
        Deliver(false),
        Step(11),
        Deliver(true),
        Drop(true),
        Step(218),
        Drop(false),
        Send(true, 8945),
        Shutdown(true),
        Send(false, 7363),
        Deliver(false),
        Deliver(true),
        Drop(true),
        Drop(true),
        Step(1358),
        Deliver(true),
        Step(532),
        Deliver(false),
        Step(1269),
        Send(false, 9233),
        Step(921),
        Dup(true),
        Drop(true),
        Corrupt(true, 13762323769372332736, 26),
        Step(993),
        Corrupt(false, 4327077023232313673, 241),
        Shutdown(false),
    ];
    run_two_stacks(c, &ops);
}

/// Found by the property test with a driver that handled several packets before polling
/// output: a lost data byte behind crossing FINs (A in CLOSING). Delivered one packet at a time
/// it recovers; the batched variant is `tcp_states::from_proptest::batched_dupacks_*`.
#[test]
fn lost_byte_behind_crossing_fins_recovers() {
    use Op::*;
    let c = Config {
        sack: false,
        rfc1323: 1,
        delayed_ack: false,
        rcvbuf: 16384,
        sndbuf: 2000,
        mtu: 576,
    };
    let ops = [
        Send(true, 1),
        Step(170),
        Step(0),
        Send(true, 525),
        Step(1668),
        Deliver(true),
        Step(304),
        Send(false, 525),
        Step(185),
        Step(184),
        Step(0),
        Shutdown(false),
        Send(true, 1),
        Shutdown(true),
        Corrupt(true, 0, 1),
        Step(751),
        Deliver(false),
        Deliver(false),
        Deliver(true),
        Dup(false),
    ];
    run_two_stacks(c, &ops);
}

/// Found by the property test (SACK on, timestamps on): A's 1-byte tail is retransmitted
/// spuriously, B answers each copy with a duplicate ACK (no SACK blocks: nothing is out of
/// order), A takes the third for a loss signal and enters SACK recovery with an empty
/// scoreboard; the byte is then dropped and never retransmitted (no timer left).
#[test]
fn sack_connection_spurious_dupacks_then_loss_stalls() {
    use Op::*;
    let c = Config {
        sack: true,
        rfc1323: 3,
        delayed_ack: false,
        rcvbuf: 3000,
        sndbuf: 2000,
        mtu: 1500,
    };
    let ops = [
        Send(false, 1),
        Send(false, 2896),
        Step(0),
        Recv(false, 1),
        Step(0),
        Send(true, 1449),
        Step(1250),
        Dup(false),
        Deliver(true),
        Step(0),
        Drop(true),
    ];
    run_two_stacks(c, &ops);
}

/// Found by the property test (SACK on): after an RTO the sender goes back to snd_una and
/// resends data the receiver already has; the receiver's duplicate ACKs carry no D-SACK, the
/// sender enters SACK recovery on them, and a later lost segment (SACKed around by the
/// receiver) is never retransmitted.
#[test]
fn sack_connection_go_back_n_then_loss_stalls() {
    use Op::*;
    let c = Config {
        sack: true,
        rfc1323: 0,
        delayed_ack: false,
        rcvbuf: 16384,
        sndbuf: 32768,
        mtu: 576,
    };
    let ops = [
        Recv(false, 1),
        Step(0),
        Send(false, 13400),
        Step(1000),
        Step(0),
        Deliver(false),
        Step(0),
        Step(0),
        Deliver(false),
        Step(461),
        Step(0),
        Deliver(true),
        Drop(false),
        Step(0),
        Deliver(true),
        Drop(false),
    ];
    run_two_stacks(c, &ops);
}

//! The body of the `two_stacks` target: a client stack (198.51.100.2) connects to a server
//! stack (192.0.2.1:80) over an in-memory link the fuzzer controls packet by packet (deliver
//! any queued packet, drop it, duplicate it), while both applications send, receive, shut down
//! and close, and time moves.
//!
//! Checked throughout: every byte an application reads is the next byte of what the other
//! application sent (received bytes are always a prefix of sent bytes); end of stream is
//! reported only after the whole stream, unless an error or a local shutdown explains it;
//! nothing is read after end of stream; every packet either stack sends is well formed.
//! Checked at the end: once the link is made perfect and time runs on, a connection neither
//! application closed or reset delivers every byte in both directions.

use std::collections::VecDeque;
use std::hint::black_box;
use std::net::SocketAddrV4;

use arbitrary::Arbitrary;
use hydranet_core::netinet::tcp_fsm::TcpState;
use hydranet_core::netinet::tcp_usrreq::{OptName, OptValue, Shutdown, SockOpt};
use hydranet_core::stack::{SocketHandle, Stack};
use hydranet_core::{Duration, Errno, Instant};

use crate::net::{self, LOCAL, PEER};

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client, 198.51.100.2.
    A,
    /// The server, 192.0.2.1:80.
    B,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum AppOpt {
    NoDelay(bool),
    NoPush(bool),
    /// `SO_RCVBUF` of `4096 + 64 * n` bytes.
    RcvBuf(u16),
    /// `SO_SNDBUF` of `4096 + 64 * n` bytes.
    SndBuf(u16),
}

/// One step of the schedule.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum NetOp {
    Send {
        side: Side,
        len: u16,
    },
    Recv {
        side: Side,
        len: u16,
    },
    ShutdownWrite(Side),
    ShutdownRead(Side),
    Close(Side),
    /// Delivers the queued packet `idx % len` of the link towards `to` (out of order if not 0).
    Deliver {
        to: Side,
        idx: u8,
    },
    /// Delivers everything queued, in order, both ways, as bursts (every packet queued in one
    /// direction goes in before the stacks' output is drained), until the link is quiet.
    DeliverAll,
    Drop {
        to: Side,
        idx: u8,
    },
    Dup {
        to: Side,
        idx: u8,
    },
    /// Advances time by `ms` milliseconds and fires due timers.
    Step(u16),
    /// Jumps to the next timer of either stack.
    RunTimers,
    SetOpt {
        side: Side,
        opt: AppOpt,
    },
}

const MAX_OPS: usize = 500;
const MAX_QUEUE: usize = 256;
const MAX_DRAIN: usize = 20_000;

/// The byte at offset `i` of the stream `side`'s application sends.
pub fn pattern(side: Side, i: u64) -> u8 {
    let salt = if side == Side::A { 0 } else { 0x5bd1_e995 };
    ((i ^ salt).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
}

/// One endpoint: its stack, its application's socket and what the application has done.
struct End {
    stack: Stack<'static>,
    sock: Option<SocketHandle>,
    listener: Option<SocketHandle>,
    /// Bytes the application queued with `send`.
    sent: u64,
    /// Bytes the application read.
    got: u64,
    wrote_shut: bool,
    read_shut: bool,
    closed: bool,
    /// An error was reported (send, recv, connect).
    err: bool,
    eof: bool,
    /// The link towards this end.
    inbox: VecDeque<Vec<u8>>,
}

impl End {
    fn new(seed: u8, addr: std::net::Ipv4Addr) -> End {
        let mut stack = Stack::new_alloc([seed; 16]);
        stack.add_address(addr).unwrap();
        End {
            stack,
            sock: None,
            listener: None,
            sent: 0,
            got: 0,
            wrote_shut: false,
            read_shut: false,
            closed: false,
            err: false,
            eof: false,
            inbox: VecDeque::new(),
        }
    }
}

pub struct Net {
    a: End,
    b: End,
    now: Instant,
    buf: Vec<u8>,
    scratch: Vec<u8>,
}

impl Default for Net {
    fn default() -> Self {
        Self::new()
    }
}

impl Net {
    pub fn new() -> Net {
        let mut a = End::new(1, PEER);
        let mut b = End::new(2, LOCAL);
        if crate::avoid(4) {
            // Known bug 4 (regressions/README.md): a stale ACK revives a closed connection
            // through a syncookie, and the two stacks then ACK each other forever.
            b.stack.sysctl.syncookies = false;
        }
        let l = b.stack.socket().unwrap();
        b.stack.bind(l, SocketAddrV4::new(LOCAL, 80)).unwrap();
        b.stack.listen(l, 4).unwrap();
        b.listener = Some(l);
        let c = a.stack.socket().unwrap();
        let now = Instant::from_millis(1000);
        assert_eq!(
            a.stack.connect(now, c, SocketAddrV4::new(LOCAL, 80)),
            Err(Errno::EINPROGRESS)
        );
        a.sock = Some(c);
        let mut n = Net {
            a,
            b,
            now,
            buf: vec![0u8; 70_000],
            scratch: vec![0u8; 70_000],
        };
        n.flush();
        n
    }

    /// Bytes (sent by A, read by B, sent by B, read by A).
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        (self.a.sent, self.b.got, self.b.sent, self.a.got)
    }

    fn end(&mut self, side: Side) -> (&mut End, &mut End) {
        match side {
            Side::A => (&mut self.a, &mut self.b),
            Side::B => (&mut self.b, &mut self.a),
        }
    }

    /// Moves every packet each stack has to send onto the link.
    fn flush(&mut self) {
        for side in [Side::A, Side::B] {
            let now = self.now;
            let buf = &mut self.buf;
            let (me, other) = match side {
                Side::A => (&mut self.a, &mut self.b),
                Side::B => (&mut self.b, &mut self.a),
            };
            let mut drained = false;
            for _ in 0..MAX_DRAIN {
                let Some(n) = me.stack.poll_transmit(now, buf) else {
                    drained = true;
                    break;
                };
                net::check_sent(&buf[..n], me.stack.addresses(), me.stack.mtu());
                if other.inbox.len() >= MAX_QUEUE {
                    other.inbox.pop_front();
                }
                other.inbox.push_back(buf[..n].to_vec());
            }
            assert!(drained, "poll_transmit never ran dry (livelock)");
        }
        // The server application accepts as soon as it can.
        if self.b.sock.is_none() && !self.b.closed {
            if let Some(l) = self.b.listener {
                match self.b.stack.accept(l) {
                    Ok((h, _)) => self.b.sock = Some(h),
                    Err(Errno::EWOULDBLOCK) => {}
                    Err(_) => self.b.err = true,
                }
            }
        }
    }

    fn deliver(&mut self, to: Side, idx: usize) {
        let now = self.now;
        let (me, _) = self.end(to);
        if let Some(p) = me.inbox.remove(idx) {
            crate::trace(now, if to == Side::A { "B>A" } else { "A>B" }, &p);
            me.stack.handle_packet(now, black_box(&p));
        }
    }

    /// Delivers everything queued both ways, in order, and the replies, until the link is
    /// quiet. The first rounds take no time; after that each round trip costs 10 ms of virtual
    /// time (timers fire), as a real link's latency would: two BSD stacks each holding the
    /// other's FIN beyond a hole answer every FIN with a FIN-carrying duplicate ACK until the
    /// retransmission timer fills the hole. An exchange that still does not fall quiet is a
    /// packet storm (an endless ACK war, say).
    fn deliver_all(&mut self) {
        const STORM: usize = 20_000;
        const INSTANT_ROUNDS: usize = 64;
        let mut delivered = 0usize;
        let mut rounds = 0usize;
        while !self.a.inbox.is_empty() || !self.b.inbox.is_empty() {
            delivered += self.a.inbox.len() + self.b.inbox.len();
            assert!(
                delivered <= STORM,
                "packet storm: over {STORM} packets exchanged from {:?} on without the link \
                 falling quiet",
                self.now
            );
            rounds += 1;
            if rounds > INSTANT_ROUNDS {
                self.now += Duration::from_millis(10);
                self.fire();
            }
            // A burst: everything queued goes in, alternately, before the output is drained,
            // as a driver that reads several packets per wake-up does (replies due per segment,
            // duplicate ACKs say, then coalesce, as a peer with ACK coalescing would send them).
            while !self.a.inbox.is_empty() || !self.b.inbox.is_empty() {
                self.deliver(Side::A, 0);
                self.deliver(Side::B, 0);
            }
            self.flush();
        }
    }

    fn fire(&mut self) {
        self.a.stack.handle_timeout(self.now);
        self.b.stack.handle_timeout(self.now);
    }

    fn recv(&mut self, side: Side, len: usize) {
        let now = self.now;
        let scratch = &mut self.scratch;
        let (me, other) = match side {
            Side::A => (&mut self.a, &mut self.b),
            Side::B => (&mut self.b, &mut self.a),
        };
        let Some(h) = me.sock.filter(|_| !me.closed) else {
            return;
        };
        let len = len.clamp(1, scratch.len());
        match me.stack.recv(now, h, &mut scratch[..len], 0) {
            Ok(0) => {
                if !me.err && !me.read_shut {
                    assert!(
                        other.wrote_shut,
                        "{side:?} read end of stream the other side never sent ({} of {} bytes read)",
                        me.got,
                        other.sent
                    );
                    assert_eq!(
                        me.got, other.sent,
                        "{side:?} read end of stream after {} of {} bytes",
                        me.got, other.sent
                    );
                }
                me.eof = true;
            }
            Ok(_) if crate::avoid(3) && me.read_shut => {
                // Known bug 3 (regressions/README.md): after a local shutdown of the receive
                // side, reassembled data still reaches the receive buffer, stale bytes too.
            }
            Ok(n) => {
                assert!(!me.eof, "{side:?} read {n} bytes after end of stream");
                assert!(
                    me.got + n as u64 <= other.sent,
                    "{side:?} read {} bytes, but only {} were sent",
                    me.got + n as u64,
                    other.sent
                );
                let from = other_side(side);
                for (k, &byte) in scratch[..n].iter().enumerate() {
                    let at = me.got + k as u64;
                    assert_eq!(
                        byte,
                        pattern(from, at),
                        "{side:?} read a wrong byte at stream offset {at}"
                    );
                }
                me.got += n as u64;
            }
            Err(Errno::EWOULDBLOCK) => {}
            Err(Errno::ENOTCONN) => {}
            Err(e) => {
                assert_ne!(e, Errno::EBADF, "recv on an open handle");
                me.err = true;
            }
        }
    }

    fn send(&mut self, side: Side, len: usize) {
        let now = self.now;
        let scratch = &mut self.scratch;
        let me = match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        };
        let Some(h) = me.sock.filter(|_| !me.closed) else {
            return;
        };
        let len = len.min(scratch.len());
        for (k, b) in scratch[..len].iter_mut().enumerate() {
            *b = pattern(side, me.sent + k as u64);
        }
        match me.stack.send(now, h, &scratch[..len], 0) {
            Ok(n) => {
                assert!(n <= len);
                me.sent += n as u64;
            }
            Err(Errno::EWOULDBLOCK | Errno::ENOTCONN) => {}
            Err(Errno::EPIPE) if me.wrote_shut => {}
            Err(e) => {
                assert_ne!(e, Errno::EBADF, "send on an open handle");
                me.err = true;
            }
        }
    }

    pub fn apply(&mut self, op: NetOp) {
        let now = self.now;
        match op {
            NetOp::Send { side, len } => self.send(side, usize::from(len)),
            NetOp::Recv { side, len } => self.recv(side, usize::from(len)),
            NetOp::ShutdownWrite(side) | NetOp::ShutdownRead(side) => {
                let (me, _) = self.end(side);
                if let Some(h) = me.sock.filter(|_| !me.closed) {
                    if matches!(op, NetOp::ShutdownWrite(_))
                        && crate::known_shutdown_in_syn_sent(&me.stack, h)
                    {
                        return;
                    }
                    let how = if matches!(op, NetOp::ShutdownWrite(_)) {
                        Shutdown::Write
                    } else {
                        Shutdown::Read
                    };
                    // FreeBSD's tcp_usrclosed() calls soisdisconnected() when the state is
                    // already FIN_WAIT_2 or later (a second shutdown): receiving ends too.
                    let late = me.stack.state(h).is_ok_and(|s| s >= TcpState::FinWait2);
                    match me.stack.shutdown(now, h, how) {
                        Ok(()) => {
                            if how == Shutdown::Write {
                                me.wrote_shut = true;
                                me.read_shut |= late;
                            } else {
                                me.read_shut = true;
                            }
                        }
                        Err(Errno::ENOTCONN) => {}
                        Err(e) => panic!("shutdown: {e}"),
                    }
                }
            }
            NetOp::Close(side) => {
                let (me, _) = self.end(side);
                if let Some(h) = me.sock.filter(|_| !me.closed) {
                    me.stack.close(now, h).unwrap();
                    me.closed = true;
                    me.wrote_shut = true;
                    assert_eq!(me.stack.state(h), Err(Errno::EBADF));
                }
            }
            NetOp::Deliver { to, idx } => {
                let (me, _) = self.end(to);
                if !me.inbox.is_empty() {
                    let i = usize::from(idx) % me.inbox.len();
                    self.deliver(to, i);
                }
            }
            NetOp::DeliverAll => {
                // Until the link is quiet, replies included (bounded: a ping-pong would be
                // caught by the settle phase's deadline instead).
                self.deliver_all();
            }
            NetOp::Drop { to, idx } => {
                let (me, _) = self.end(to);
                if !me.inbox.is_empty() {
                    let i = usize::from(idx) % me.inbox.len();
                    me.inbox.remove(i);
                }
            }
            NetOp::Dup { to, idx } => {
                let (me, _) = self.end(to);
                if !me.inbox.is_empty() && me.inbox.len() < MAX_QUEUE {
                    let i = usize::from(idx) % me.inbox.len();
                    let p = me.inbox[i].clone();
                    me.inbox.push_back(p);
                }
            }
            NetOp::Step(ms) => {
                self.now += Duration::from_millis(u64::from(ms));
                self.fire();
            }
            NetOp::RunTimers => {
                let next = [self.a.stack.poll_timeout(), self.b.stack.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                if let Some(t) = next {
                    self.now = self.now.max(t);
                    self.fire();
                }
            }
            NetOp::SetOpt { side, opt } => {
                let (me, _) = self.end(side);
                if let Some(h) = me.sock.filter(|_| !me.closed) {
                    let o = match opt {
                        AppOpt::NoDelay(b) => SockOpt::NoDelay(b),
                        AppOpt::NoPush(b) => SockOpt::NoPush(b),
                        AppOpt::RcvBuf(n) => {
                            let n = 4096 + 64 * u32::from(n);
                            let cur = me.stack.getsockopt(h, OptName::RcvBuf);
                            if crate::avoid(5)
                                && matches!(cur, Ok(OptValue::Int(c)) if i64::from(n) < c)
                            {
                                // Known bug 5 (regressions/README.md): lowering SO_RCVBUF
                                // under queued out-of-order data loses acknowledged bytes.
                                return;
                            }
                            SockOpt::RcvBuf(n)
                        }
                        AppOpt::SndBuf(n) => SockOpt::SndBuf(4096 + 64 * u32::from(n)),
                    };
                    let _ = black_box(me.stack.setsockopt(h, o));
                }
            }
        }
        self.flush();
        self.check();
    }

    fn check(&mut self) {
        for side in [Side::A, Side::B] {
            let (me, _) = self.end(side);
            crate::check_no_spurious_cookie(&me.stack);
            if let Some(h) = me.sock.filter(|_| !me.closed) {
                let info = me
                    .stack
                    .tcp_info(h)
                    .unwrap_or_else(|e| panic!("{side:?}: tcp_info on an open handle: {e}"));
                assert!(info.tcpi_state <= TcpState::TimeWait as u8);
            }
        }
    }

    /// A perfect link from now on; time runs until both streams are complete or ten virtual
    /// minutes pass (two hours with `HYDRANET_FUZZ_AVOID_KNOWN`). A connection that no application closed, shut for reading or saw fail must
    /// by then have delivered every byte both ways.
    pub fn settle(&mut self) {
        for side in [Side::A, Side::B] {
            let (me, _) = self.end(side);
            if let Some(h) = me.sock.filter(|_| !me.closed) {
                // TCP_NOPUSH may hold a last partial segment back for good; that is its job.
                let _ = me.stack.setsockopt(h, SockOpt::NoPush(false));
            }
        }
        self.flush();
        // Known bug 6 (regressions/README.md): after a long stall, RTO recovery can fall to one
        // segment per (backed-off) RTO; steering gives it two virtual hours instead of ten
        // minutes.
        let budget = if crate::avoid(6) { 7200 } else { 600 };
        let deadline = self.now + Duration::from_secs(budget);
        let clean = |e: &End| e.sock.is_some() && !e.closed && !e.read_shut && !e.err;
        for round in 0..20_000 {
            self.deliver_all();
            for side in [Side::A, Side::B] {
                for _ in 0..64 {
                    let before = self.end(side).0.got;
                    self.recv(side, 65536);
                    if self.end(side).0.got == before {
                        break;
                    }
                }
            }
            self.flush();
            self.check();
            if self.a.inbox.is_empty() && self.b.inbox.is_empty() {
                let done = self.a.got == self.b.sent && self.b.got == self.a.sent;
                // Only a clean connection is worth the full ten minutes.
                let both_clean = clean(&self.a) && clean(&self.b);
                if done || self.now >= deadline || (!both_clean && round >= 50) {
                    break;
                }
                let next = [self.a.stack.poll_timeout(), self.b.stack.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                let Some(t) = next else { break };
                self.now = self.now.max(t).min(deadline);
                self.fire();
                self.flush();
            }
        }
        if clean(&self.a) && clean(&self.b) {
            let a = self.a.sock.unwrap();
            let b = self.b.sock.unwrap();
            let sa = self.a.stack.state(a).unwrap();
            let sb = self.b.stack.state(b).unwrap();
            let alive = |s: TcpState| s.have_established();
            if alive(sa) && alive(sb) {
                let (ia, ib) = (self.a.stack.tcp_info(a), self.b.stack.tcp_info(b));
                assert_eq!(
                    self.b.got, self.a.sent,
                    "A->B: {} of {} bytes arrived on a clean connection ({sa:?}/{sb:?})\n\
                     A (sender) {ia:?}\nB {ib:?}",
                    self.b.got, self.a.sent
                );
                assert_eq!(
                    self.a.got, self.b.sent,
                    "B->A: {} of {} bytes arrived on a clean connection ({sa:?}/{sb:?})\n\
                     B (sender) {ib:?}\nA {ia:?}",
                    self.a.got, self.b.sent
                );
            }
        }
    }
}

fn other_side(s: Side) -> Side {
    match s {
        Side::A => Side::B,
        Side::B => Side::A,
    }
}

/// Runs one schedule; returns the network for a test to inspect.
pub fn run(ops: &[NetOp]) -> Net {
    let mut n = Net::new();
    for op in ops.iter().take(MAX_OPS) {
        n.apply(*op);
    }
    n.settle();
    n
}

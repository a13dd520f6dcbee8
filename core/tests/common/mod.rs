//! A scripted peer for segment-level tests (in the spirit of smoltcp's socket tests and
//! packetdrill): one `Stack` under test at 192.0.2.1, and the test playing the remote host
//! 198.51.100.1 by crafting IPv4/TCP packets and asserting on the exact segments the stack
//! answers with.
//!
//! Sequence numbers in the helpers are *relative*, as packetdrill writes them: the stack's own
//! sequence numbers count from its ISS (learnt from its SYN or SYN-ACK) and the peer's from
//! the peer's ISN (`irs`).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use hydranet_core::netinet::tcp_fsm::TcpState;
use hydranet_core::netinet::tcp_sysctl::TcpSysctl;
use hydranet_core::netinet::tcp_usrreq::{OptName, OptValue, Shutdown, SockOpt};
use hydranet_core::stack::{PcbEntry, SocketHandle, Stack};
use hydranet_core::wire::ipv4::{self, Ipv4Header};
use hydranet_core::wire::tcp::{self, TcpFlags, TcpHeader, TcpOption};
use hydranet_core::{Duration, Errno, Instant};

/// The stack under test.
pub const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The scripted peer.
pub const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The stack's port, for active and passive opens alike.
pub const LPORT: u16 = 8080;
/// The peer's port.
pub const PPORT: u16 = 40000;
/// The peer's initial sequence number; close enough to the wrap that a connection crosses it.
pub const PEER_ISN: u32 = 0xffff_ff00;
/// The window the peer advertises unless a test says otherwise.
pub const PEER_WIN: u16 = 32767;

/// Flags from packetdrill's notation: `S`, `S.`, `.`, `P.`, `F.`, `R`, `R.`, `SF`, ...
pub fn fl(s: &str) -> TcpFlags {
    let mut f = TcpFlags::empty();
    for c in s.chars() {
        f |= match c {
            'S' => TcpFlags::SYN,
            'F' => TcpFlags::FIN,
            'R' => TcpFlags::RST,
            'P' => TcpFlags::PSH,
            '.' => TcpFlags::ACK,
            'U' => TcpFlags::URG,
            'E' => TcpFlags::ECE,
            'W' => TcpFlags::CWR,
            ' ' => TcpFlags::empty(),
            _ => panic!("unknown flag {c:?} in {s:?}"),
        };
    }
    f
}

/// A TCP option, owned, as the stack emitted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opt {
    Eol,
    Nop,
    Mss(u16),
    WScale(u8),
    SackOk,
    Sack(Vec<(u32, u32)>),
    Ts(u32, u32),
    Other(u8),
}

/// Option-kind skeleton of an option list (timestamps and SACK blocks without their values), so a
/// test can compare layouts such as `mss 1460,nop,wscale 6,sackOK,TS`.
pub fn layout(opts: &[Opt]) -> Vec<Opt> {
    opts.iter()
        .map(|o| match o {
            Opt::Ts(..) => Opt::Ts(0, 0),
            Opt::Sack(_) => Opt::Sack(Vec::new()),
            o => o.clone(),
        })
        .collect()
}

/// One segment the stack sent, parsed.
#[derive(Clone, Debug)]
pub struct Seg {
    pub at: Instant,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub flags: TcpFlags,
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    pub opts: Vec<Opt>,
    pub payload: Vec<u8>,
    pub ttl: u8,
    pub df: bool,
    pub tos: u8,
}

impl Seg {
    pub fn len(&self) -> usize {
        self.payload.len()
    }
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }
    pub fn ts(&self) -> Option<(u32, u32)> {
        self.opts.iter().find_map(|o| match o {
            Opt::Ts(v, e) => Some((*v, *e)),
            _ => None,
        })
    }
    pub fn sack_blocks(&self) -> Vec<(u32, u32)> {
        self.opts
            .iter()
            .find_map(|o| match o {
                Opt::Sack(b) => Some(b.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }
    pub fn mss(&self) -> Option<u16> {
        self.opts.iter().find_map(|o| match o {
            Opt::Mss(m) => Some(*m),
            _ => None,
        })
    }
    pub fn wscale(&self) -> Option<u8> {
        self.opts.iter().find_map(|o| match o {
            Opt::WScale(m) => Some(*m),
            _ => None,
        })
    }
}

impl fmt::Display for Seg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "@{}ms {}:{} > {}:{} [{}] seq {} ack {} win {} len {} opts {:?}",
            self.at.total_millis(),
            self.src,
            self.sport,
            self.dst,
            self.dport,
            self.flags,
            self.seq,
            self.ack,
            self.win,
            self.payload.len(),
            self.opts
        )
    }
}

/// Parses one packet the stack emitted; panics on anything malformed (the stack must never
/// emit a bad checksum or a bad header).
pub fn parse_out(at: Instant, pkt: &[u8]) -> Seg {
    let (ip, payload) = Ipv4Header::parse(pkt).expect("stack emitted a bad IPv4 header");
    assert_eq!(
        ip.protocol,
        ipv4::PROTO_TCP,
        "stack emitted a non-TCP packet"
    );
    assert_eq!(
        usize::from(ip.total_len),
        pkt.len(),
        "IPv4 total length disagrees with the packet"
    );
    let t = tcp::parse_segment(payload, ip.src, ip.dst, true)
        .expect("stack emitted a bad TCP segment (checksum or offset)");
    let mut opts = Vec::new();
    for o in tcp::options(t.options) {
        let o = o.expect("stack emitted malformed TCP options");
        opts.push(match o {
            TcpOption::Eol => Opt::Eol,
            TcpOption::Nop => Opt::Nop,
            TcpOption::Mss(m) => Opt::Mss(m),
            TcpOption::WindowScale(s) => Opt::WScale(s),
            TcpOption::SackPermitted => Opt::SackOk,
            TcpOption::Sack(b) => Opt::Sack(b.iter().collect()),
            TcpOption::Timestamp { tsval, tsecr } => Opt::Ts(tsval, tsecr),
            TcpOption::Unknown { kind, .. } => Opt::Other(kind),
        });
    }
    Seg {
        at,
        src: ip.src,
        dst: ip.dst,
        sport: t.header.src_port,
        dport: t.header.dst_port,
        flags: t.header.flags,
        seq: t.header.seq,
        ack: t.header.ack,
        win: t.header.window,
        opts,
        payload: t.payload.to_vec(),
        ttl: ip.ttl,
        df: ip.dont_frag,
        tos: ip.tos,
    }
}

/// Builds an IPv4 packet carrying one TCP segment with a correct checksum.
#[allow(clippy::too_many_arguments)]
pub fn build_packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: TcpFlags,
    seq: u32,
    ack: u32,
    win: u16,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut o = opts.to_vec();
    while o.len() & 3 != 0 {
        o.push(tcp::TCPOPT_EOL);
    }
    let hdr = TcpHeader {
        src_port: sport,
        dst_port: dport,
        seq,
        ack,
        data_offset: 0,
        flags,
        window: win,
        checksum: 0,
        urgent: 0,
    };
    let tcp_len = tcp::HEADER_LEN + o.len() + payload.len();
    let mut buf = vec![0u8; ipv4::HEADER_LEN + tcp_len];
    let ip = Ipv4Header::new(src, dst, ipv4::PROTO_TCP, tcp_len, 64);
    ip.emit(&mut buf[..ipv4::HEADER_LEN]).unwrap();
    tcp::emit_segment(&hdr, &o, payload, src, dst, &mut buf[ipv4::HEADER_LEN..]).unwrap();
    buf
}

/// Raw option bytes.
pub mod opt {
    pub fn mss(v: u16) -> Vec<u8> {
        vec![2, 4, (v >> 8) as u8, v as u8]
    }
    pub fn nop() -> Vec<u8> {
        vec![1]
    }
    pub fn eol() -> Vec<u8> {
        vec![0]
    }
    pub fn wscale(s: u8) -> Vec<u8> {
        vec![3, 3, s]
    }
    pub fn sack_ok() -> Vec<u8> {
        vec![4, 2]
    }
    pub fn ts(val: u32, ecr: u32) -> Vec<u8> {
        let mut v = vec![8, 10];
        v.extend_from_slice(&val.to_be_bytes());
        v.extend_from_slice(&ecr.to_be_bytes());
        v
    }
    pub fn sack(blocks: &[(u32, u32)]) -> Vec<u8> {
        let mut v = vec![5, (2 + 8 * blocks.len()) as u8];
        for (l, r) in blocks {
            v.extend_from_slice(&l.to_be_bytes());
            v.extend_from_slice(&r.to_be_bytes());
        }
        v
    }
}

/// What the peer offers on its SYN (or SYN-ACK).
#[derive(Clone, Copy, Debug)]
pub struct PeerOpts {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack: bool,
    pub ts: bool,
}

impl PeerOpts {
    /// packetdrill's usual `<mss 1460,sackOK,eol,eol>`.
    pub const fn basic() -> PeerOpts {
        PeerOpts {
            mss: Some(1460),
            wscale: None,
            sack: true,
            ts: false,
        }
    }
    /// A modern peer: `<mss 1460,nop,wscale 7,sackOK,TS val .. ecr ..>`.
    pub const fn full() -> PeerOpts {
        PeerOpts {
            mss: Some(1460),
            wscale: Some(7),
            sack: true,
            ts: true,
        }
    }
    /// `<mss 1460>` only: no SACK, no scaling, no timestamps.
    pub const fn mss_only() -> PeerOpts {
        PeerOpts {
            mss: Some(1460),
            wscale: None,
            sack: false,
            ts: false,
        }
    }
}

/// A segment the peer sends; `seq` counts from the peer's ISN and `ack` from the stack's ISS
/// unless `absolute` is set.
#[derive(Clone, Debug)]
pub struct PeerSeg {
    pub flags: TcpFlags,
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    pub opts: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub absolute: bool,
    pub with_ts: bool,
    pub ts_val: Option<u32>,
    pub sport: u16,
    /// An absolute acknowledgment number (the sequence number stays relative).
    pub ack_abs: Option<u32>,
}

impl PeerSeg {
    pub fn new(flags: &str, seq: u32, ack: u32) -> PeerSeg {
        PeerSeg {
            flags: fl(flags),
            seq,
            ack,
            win: PEER_WIN,
            opts: None,
            payload: Vec::new(),
            absolute: false,
            with_ts: true,
            ts_val: None,
            sport: PPORT,
            ack_abs: None,
        }
    }
    pub fn win(mut self, w: u16) -> Self {
        self.win = w;
        self
    }
    pub fn data(mut self, d: &[u8]) -> Self {
        self.payload = d.to_vec();
        self
    }
    pub fn len(mut self, n: usize) -> Self {
        self.payload = (0..n).map(|i| (i % 251) as u8).collect();
        self
    }
    /// Raw option bytes, replacing the automatic timestamp.
    pub fn opts(mut self, o: Vec<u8>) -> Self {
        self.opts = Some(o);
        self
    }
    pub fn absolute(mut self) -> Self {
        self.absolute = true;
        self
    }
    pub fn no_ts(mut self) -> Self {
        self.with_ts = false;
        self
    }
    pub fn ts_val(mut self, v: u32) -> Self {
        self.ts_val = Some(v);
        self
    }
    pub fn sport(mut self, p: u16) -> Self {
        self.sport = p;
        self
    }
    pub fn ack_abs(mut self, a: u32) -> Self {
        self.ack_abs = Some(a);
        self
    }
}

/// The stack under test with its scripted peer, in virtual time.
pub struct Harness {
    pub stack: Stack<'static>,
    pub now: Instant,
    /// The connection's socket handle, once there is one.
    pub sock: Option<SocketHandle>,
    pub listener: Option<SocketHandle>,
    /// The stack's ISS (learnt from its SYN or SYN-ACK).
    pub iss: u32,
    /// The peer's ISN.
    pub irs: u32,
    pub peer: PeerOpts,
    /// Timestamps in use on this connection (both sides offered them).
    pub ts_on: bool,
    /// The last TSval the stack sent, echoed by the peer.
    pub ts_recent: u32,
    /// Added to the virtual clock to form the peer's TSval.
    pub peer_ts_base: u32,
    pub out: VecDeque<Seg>,
    /// Every segment the stack sent, for tests that look back.
    pub log: Vec<Seg>,
    buf: Vec<u8>,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_sysctl(|_| {})
    }

    pub fn with_sysctl(f: impl FnOnce(&mut TcpSysctl)) -> Harness {
        let mut stack = Stack::new_alloc([7; 16]);
        stack.add_address(LOCAL).unwrap();
        f(&mut stack.sysctl);
        Harness {
            stack,
            // Start away from zero so that "time 0" bugs cannot hide.
            now: Instant::from_millis(1_000),
            sock: None,
            listener: None,
            iss: 0,
            irs: PEER_ISN,
            peer: PeerOpts::basic(),
            ts_on: false,
            ts_recent: 0,
            peer_ts_base: 5_000_000,
            out: VecDeque::new(),
            log: Vec::new(),
            buf: vec![0u8; 70_000],
        }
    }

    pub fn peer_opts(mut self, p: PeerOpts) -> Self {
        self.peer = p;
        self
    }

    pub fn h(&self) -> SocketHandle {
        self.sock.expect("no connection socket")
    }

    // ------------------------------------------------------------ time and I/O

    /// Drains everything the stack wants to send now into `out`.
    pub fn pull(&mut self) {
        for _ in 0..100_000 {
            let Some(n) = self.stack.poll_transmit(self.now, &mut self.buf) else {
                return;
            };
            let s = parse_out(self.now, &self.buf[..n]);
            if let Some((val, _)) = s.ts() {
                self.ts_recent = val;
            }
            self.log.push(s.clone());
            self.out.push_back(s);
        }
        panic!("poll_transmit never returned None");
    }

    /// Moves virtual time to `t`, firing every timer at its own deadline on the way.
    pub fn advance_to(&mut self, t: Instant) {
        self.pull();
        for _ in 0..1_000_000 {
            match self.stack.poll_timeout() {
                Some(d) if d <= t => {
                    self.now = self.now.max(d);
                    self.stack.handle_timeout(self.now);
                    self.pull();
                }
                _ => {
                    self.now = self.now.max(t);
                    self.pull();
                    return;
                }
            }
        }
        panic!("timers kept firing without time advancing");
    }

    pub fn advance(&mut self, ms: u64) {
        let t = self.now + Duration::from_millis(ms);
        self.advance_to(t);
    }

    pub fn advance_us(&mut self, us: u64) {
        let t = self.now + Duration::from_micros(us);
        self.advance_to(t);
    }

    /// Milliseconds since `t0`.
    pub fn since(&self, t0: Instant) -> u64 {
        (self.now - t0).total_millis()
    }

    /// The peer's TSval now.
    pub fn peer_tsval(&self) -> u32 {
        self.peer_ts_base.wrapping_add(self.now.ticks())
    }

    /// Sends a raw IPv4 packet to the stack.
    pub fn inject_raw(&mut self, pkt: &[u8]) {
        self.stack.handle_packet(self.now, pkt);
        self.pull();
    }

    /// Sends a segment from the peer.
    pub fn send(&mut self, s: PeerSeg) {
        let pkt = self.build(s);
        self.inject_raw(&pkt);
    }

    /// Hands several segments to the stack before draining its output once (a driver that
    /// batches its receive path).
    pub fn send_batch(&mut self, segs: Vec<PeerSeg>) {
        for s in segs {
            let pkt = self.build(s);
            self.stack.handle_packet(self.now, &pkt);
        }
        self.pull();
    }

    /// The IPv4 packet for a peer segment.
    pub fn build(&self, s: PeerSeg) -> Vec<u8> {
        let (seq, ack) = if s.absolute {
            (s.seq, s.ack)
        } else {
            (self.irs.wrapping_add(s.seq), self.iss.wrapping_add(s.ack))
        };
        let ack = s.ack_abs.unwrap_or(ack);
        let ack = if s.flags.contains(TcpFlags::ACK) || s.absolute || s.ack_abs.is_some() {
            ack
        } else {
            0
        };
        let opts = match s.opts {
            Some(o) => o,
            None if self.ts_on && s.with_ts => {
                let mut o = opt::nop();
                o.extend(opt::nop());
                o.extend(opt::ts(
                    s.ts_val.unwrap_or_else(|| self.peer_tsval()),
                    self.ts_recent,
                ));
                o
            }
            None => Vec::new(),
        };
        build_packet(
            PEER, LOCAL, s.sport, LPORT, s.flags, seq, ack, s.win, &opts, &s.payload,
        )
    }

    /// The options the peer puts on its SYN or SYN-ACK, per `self.peer`.
    pub fn peer_syn_opts(&self, ecr: u32) -> Vec<u8> {
        let p = self.peer;
        let mut o = Vec::new();
        if let Some(m) = p.mss {
            o.extend(opt::mss(m));
        }
        if let Some(w) = p.wscale {
            o.extend(opt::nop());
            o.extend(opt::wscale(w));
        }
        if p.sack {
            if p.ts {
                o.extend(opt::sack_ok());
            } else {
                o.extend(opt::sack_ok());
                o.extend(opt::eol());
                o.extend(opt::eol());
            }
        }
        if p.ts {
            if !p.sack {
                o.extend(opt::nop());
                o.extend(opt::nop());
            }
            o.extend(opt::ts(self.peer_tsval(), ecr));
        }
        o
    }

    // ------------------------------------------------------------ expectations

    /// The next segment the stack sent, or a panic naming what was expected.
    pub fn next(&mut self) -> Seg {
        self.pull();
        match self.out.pop_front() {
            Some(s) => s,
            None => panic!(
                "expected a segment at {}ms, the stack sent nothing",
                self.now.total_millis()
            ),
        }
    }

    /// Relative sequence number of one of the stack's segments.
    pub fn rseq(&self, s: &Seg) -> u32 {
        s.seq.wrapping_sub(self.iss)
    }
    /// Relative acknowledgment number of one of the stack's segments.
    pub fn rack(&self, s: &Seg) -> u32 {
        s.ack.wrapping_sub(self.irs)
    }

    /// Describes a segment with relative numbers, packetdrill style.
    pub fn show(&self, s: &Seg) -> String {
        format!(
            "{} {}:{}({}) ack {} win {} <{:?}> @{}ms",
            s.flags,
            self.rseq(s),
            self.rseq(s).wrapping_add(s.len() as u32),
            s.len(),
            self.rack(s),
            s.win,
            s.opts,
            s.at.total_millis()
        )
    }

    /// Takes the next segment and checks its flags and relative seq/ack.
    #[track_caller]
    pub fn expect(&mut self, flags: &str, seq: u32, ack: u32) -> Seg {
        let s = self.next();
        let want = fl(flags);
        let ok = s.flags == want
            && self.rseq(&s) == seq
            && (!want.contains(TcpFlags::ACK) || self.rack(&s) == ack);
        assert!(
            ok,
            "expected `{flags} {seq}:{seq}(..) ack {ack}`, got `{}`",
            self.show(&s)
        );
        assert_eq!(s.src, LOCAL);
        assert_eq!(s.dst, PEER);
        s
    }

    /// Like [`expect`](Self::expect), and nothing else follows.
    #[track_caller]
    pub fn expect_only(&mut self, flags: &str, seq: u32, ack: u32) -> Seg {
        let s = self.expect(flags, seq, ack);
        self.expect_silence();
        s
    }

    /// Nothing is waiting to be sent.
    #[track_caller]
    pub fn expect_silence(&mut self) {
        self.pull();
        if let Some(s) = self.out.front() {
            let shown = self.show(s);
            panic!("expected no segment, the stack sent `{shown}`");
        }
    }

    /// Nothing is sent for `ms` milliseconds (timers included).
    #[track_caller]
    pub fn expect_silence_for(&mut self, ms: u64) {
        self.expect_silence();
        self.advance(ms);
        self.expect_silence();
    }

    // ------------------------------------------------------------ socket helpers

    pub fn state(&self) -> TcpState {
        self.stack.state(self.h()).expect("socket handle is gone")
    }

    /// The socket's entry in `pcblist` for the peer's 4-tuple.
    pub fn pcb(&self) -> Option<PcbEntry> {
        self.stack
            .pcblist()
            .find(|p| p.lport == LPORT && p.fport == PPORT && p.faddr == PEER)
    }

    pub fn pcb_state(&self) -> Option<TcpState> {
        self.pcb().map(|p| p.state)
    }

    /// `getsockopt(SO_ERROR)`, which clears it.
    pub fn so_error(&mut self) -> Option<Errno> {
        let h = self.h();
        match self.stack.getsockopt(h, OptName::Error).unwrap() {
            OptValue::Error(e) => e,
            v => panic!("SO_ERROR returned {v:?}"),
        }
    }

    pub fn set(&mut self, o: SockOpt) {
        let h = self.h();
        self.stack.setsockopt(h, o).unwrap();
    }

    /// `send(2)`; the bytes accepted.
    pub fn app_send(&mut self, data: &[u8]) -> usize {
        let h = self.h();
        let n = self.stack.send(self.now, h, data, 0).expect("send failed");
        self.pull();
        n
    }

    /// `recv(2)` of everything readable now.
    pub fn app_recv(&mut self) -> Vec<u8> {
        let h = self.h();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 100_000];
        loop {
            match self.stack.recv(self.now, h, &mut buf, 0) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(Errno::EWOULDBLOCK) => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        self.pull();
        out
    }

    /// Bytes waiting to be read.
    pub fn readable(&self) -> usize {
        self.stack.readiness(self.h()).unwrap().0
    }

    pub fn shutdown_wr(&mut self) {
        let h = self.h();
        self.stack.shutdown(self.now, h, Shutdown::Write).unwrap();
        self.pull();
    }

    /// `close(2)`; the handle is gone afterwards.
    pub fn close(&mut self) {
        let h = self.h();
        self.stack.close(self.now, h).unwrap();
        self.sock = None;
        self.pull();
    }

    // ------------------------------------------------------------ reaching each state

    /// LISTEN on LOCAL:LPORT (backlog 8).
    pub fn do_listen(&mut self) {
        let l = self.stack.socket().unwrap();
        self.stack.setsockopt(l, SockOpt::ReuseAddr(true)).unwrap();
        self.stack.bind(l, SocketAddrV4::new(LOCAL, LPORT)).unwrap();
        self.stack.listen(l, 8).unwrap();
        self.listener = Some(l);
        self.expect_silence();
    }

    /// `connect()`: SYN_SENT, having checked the SYN itself.
    pub fn do_connect(&mut self) -> Seg {
        let s = self.stack.socket().unwrap();
        self.stack.bind(s, SocketAddrV4::new(LOCAL, LPORT)).unwrap();
        assert_eq!(
            self.stack
                .connect(self.now, s, SocketAddrV4::new(PEER, PPORT)),
            Err(Errno::EINPROGRESS)
        );
        self.sock = Some(s);
        let syn = self.next();
        assert_eq!(syn.flags, fl("S"), "connect sent {syn}");
        assert_eq!((syn.sport, syn.dport), (LPORT, PPORT));
        self.iss = syn.seq;
        assert_eq!(self.state(), TcpState::SynSent);
        self.expect_silence();
        syn
    }

    /// The peer's SYN-ACK to our SYN: ESTABLISHED, and our ACK checked.
    pub fn do_synack(&mut self) {
        let o = self.peer_syn_opts(self.ts_recent);
        self.ts_on = self.peer.ts;
        self.send(PeerSeg::new("S.", 0, 1).opts(o));
        self.expect_only(".", 1, 1);
        assert_eq!(self.state(), TcpState::Established);
    }

    /// Active open to ESTABLISHED.
    pub fn do_establish_active(&mut self) {
        self.do_connect();
        self.do_synack();
    }

    /// The peer's SYN to our listener; returns the SYN-ACK (the syncache's entry is SYN_RCVD).
    pub fn do_peer_syn(&mut self) -> Seg {
        let o = self.peer_syn_opts(0);
        self.send(PeerSeg::new("S", 0, 0).opts(o));
        let sa = self.next();
        assert_eq!(sa.flags, fl("S."), "SYN to listener answered with {sa}");
        assert_eq!(sa.ack, self.irs.wrapping_add(1));
        self.iss = sa.seq;
        self.ts_on = self.peer.ts;
        self.expect_silence();
        sa
    }

    /// Passive open to ESTABLISHED (accepted).
    pub fn do_establish_passive(&mut self) {
        self.do_listen();
        self.do_peer_syn();
        self.send(PeerSeg::new(".", 1, 1));
        self.expect_silence();
        let l = self.listener.unwrap();
        let (h, addr) = self.stack.accept(l).expect("accept");
        assert_eq!(addr, SocketAddrV4::new(PEER, PPORT));
        self.sock = Some(h);
        assert_eq!(self.state(), TcpState::Established);
    }

    /// Simultaneous open: SYN_SENT, then the peer's bare SYN. SYN_RECEIVED, our SYN-ACK checked.
    pub fn do_simultaneous_open(&mut self) -> Seg {
        self.do_connect();
        let o = self.peer_syn_opts(0);
        self.ts_on = self.peer.ts;
        self.send(PeerSeg::new("S", 0, 0).opts(o));
        let sa = self.expect("S.", 0, 1);
        self.expect_silence();
        assert_eq!(self.state(), TcpState::SynReceived);
        sa
    }

    /// ESTABLISHED, then `shutdown(SHUT_WR)`: FIN_WAIT_1.
    pub fn do_fin_wait_1(&mut self) {
        self.do_establish_active();
        self.shutdown_wr();
        self.expect_only("F.", 1, 1);
        assert_eq!(self.state(), TcpState::FinWait1);
    }

    /// FIN_WAIT_1, the peer ACKs our FIN: FIN_WAIT_2.
    pub fn do_fin_wait_2(&mut self) {
        self.do_fin_wait_1();
        self.send(PeerSeg::new(".", 1, 2));
        self.expect_silence();
        assert_eq!(self.state(), TcpState::FinWait2);
    }

    /// FIN_WAIT_1, the peer's FIN crosses ours: CLOSING (our FIN is re-sent with the ACK).
    pub fn do_closing(&mut self) {
        self.do_fin_wait_1();
        self.send(PeerSeg::new("F.", 1, 1));
        self.expect_only("F.", 1, 2);
        assert_eq!(self.state(), TcpState::Closing);
    }

    /// FIN_WAIT_2, the peer's FIN: TIME_WAIT.
    pub fn do_time_wait(&mut self) {
        self.do_fin_wait_2();
        self.send(PeerSeg::new("F.", 1, 2));
        self.expect_only(".", 2, 2);
        assert_eq!(self.state(), TcpState::TimeWait);
    }

    /// ESTABLISHED, the peer's FIN: CLOSE_WAIT.
    pub fn do_close_wait(&mut self) {
        self.do_establish_active();
        self.send(PeerSeg::new("F.", 1, 1));
        self.expect_only(".", 1, 2);
        assert_eq!(self.state(), TcpState::CloseWait);
    }

    /// CLOSE_WAIT, then `shutdown(SHUT_WR)`: LAST_ACK.
    pub fn do_last_ack(&mut self) {
        self.do_close_wait();
        self.shutdown_wr();
        self.expect_only("F.", 1, 2);
        assert_eq!(self.state(), TcpState::LastAck);
    }

    /// LAST_ACK, the peer ACKs our FIN: CLOSED (the handle stays valid).
    pub fn do_closed_via_last_ack(&mut self) {
        self.do_last_ack();
        self.send(PeerSeg::new(".", 2, 2));
        self.expect_silence();
        assert_eq!(self.state(), TcpState::Closed);
    }
}

/// A fresh harness in a named state, with the default (packetdrill-like) peer.
pub fn in_state(st: TcpState) -> Harness {
    in_state_with(st, PeerOpts::basic())
}

/// A fresh harness in a named state with the given peer options. SYN_RECEIVED is reached by
/// simultaneous open (it has a socket handle); LISTEN has only a listener.
pub fn in_state_with(st: TcpState, p: PeerOpts) -> Harness {
    let mut h = Harness::new().peer_opts(p);
    match st {
        TcpState::Listen => h.do_listen(),
        TcpState::SynSent => {
            h.do_connect();
        }
        TcpState::SynReceived => {
            h.do_simultaneous_open();
        }
        TcpState::Established => h.do_establish_active(),
        TcpState::FinWait1 => h.do_fin_wait_1(),
        TcpState::FinWait2 => h.do_fin_wait_2(),
        TcpState::Closing => h.do_closing(),
        TcpState::TimeWait => h.do_time_wait(),
        TcpState::CloseWait => h.do_close_wait(),
        TcpState::LastAck => h.do_last_ack(),
        TcpState::Closed => h.do_closed_via_last_ack(),
    }
    h
}

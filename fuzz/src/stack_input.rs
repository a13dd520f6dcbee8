//! The body of the `stack_input` target: one stack, a listener on 192.0.2.1:80 and one
//! established connection (from 198.51.100.2:40000), then a fuzzed schedule of packets, time
//! steps and socket calls, with the invariants checked after every step.
//!
//! # Input format
//!
//! The input is a sequence of operations, each decoded from the front of the remaining bytes
//! by [`Op`]'s `Arbitrary` impl: one tag byte (`tag % OP_COUNT` picks the operation), then its
//! fields. Multi-byte integers written by hand below are little-endian; `Segment`'s body is a
//! derived-`Arbitrary` [`SegSpec`]. `fuzz/make-seeds.py` writes seeds in this format using only
//! the hand-written operations (their tags are the `TAG_*` constants):
//!
//! | tag | operation | fields |
//! |-----|-----------|--------|
//! | 0 | `Segment` | a derived [`SegSpec`] |
//! | 1 | `RawIp` | `len: u16`, then `len` bytes fed as an IPv4 packet |
//! | 2 | `RawTcp` | `mode: u8`, `len: u16`, then `len` bytes of TCP segment (see [`RawTcpMode`]) |
//! | 3 | `Step` | `ms: u16` (values with the top bit set are `(ms & 0x7fff) * 100`) |
//! | 4 | `RunTimers` | `n: u8` (jumps to the next timer `n % 8 + 1` times) |
//! | 5 | `Accept` | |
//! | 6 | `Send` | `conn: u8`, `len: u16` |
//! | 7 | `Recv` | `conn: u8`, `len: u16`, `peek: u8` (bit 0) |
//! | 8 | `Shutdown` | `conn: u8`, `how: u8` (`% 3`: read, write, both) |
//! | 9 | `Close` | `conn: u8` |
//! | 10 | `Connect` | `port: u16` (connects a new socket to 198.51.100.2:`port`) |
//! | 11 | `SetSockOpt` | `conn: u8`, then a derived [`OptSpec`] |
//! | 12 | `Sysctl` | `which: u8`, `value: u8` (see [`SYSCTLS`]) |
//! | 13 | `ToggleListener` | (closes the listener on port 80, or opens it again) |
//! | 14 | `DropState` | `state: u8` (`tcpdrop -s`, `% 11`) |
//! | 15 | `Mtu` | `mtu: u16` |
//!
//! `conn` picks a socket the harness holds: `0xff` the most recent one, `0xfe` the listener,
//! otherwise `conn % count` (index 0 is the established connection until it is closed).

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

use arbitrary::{Arbitrary, Result, Unstructured};
use hydranet_core::netinet::tcp_fsm::TcpState;
use hydranet_core::netinet::tcp_sysctl::CcKind;
use hydranet_core::netinet::tcp_usrreq::{msg, OptName, OptValue, Shutdown, SockOpt};
use hydranet_core::stack::{SocketHandle, Stack};
use hydranet_core::{Errno, Instant};

use crate::net::{self, Seg, Sent, ACK, FIN, LOCAL, PEER, PEER2, SYN};

pub const TAG_SEGMENT: u8 = 0;
pub const TAG_RAW_IP: u8 = 1;
pub const TAG_RAW_TCP: u8 = 2;
pub const TAG_STEP: u8 = 3;
pub const TAG_RUN_TIMERS: u8 = 4;
pub const TAG_ACCEPT: u8 = 5;
pub const TAG_SEND: u8 = 6;
pub const TAG_RECV: u8 = 7;
pub const TAG_SHUTDOWN: u8 = 8;
pub const TAG_CLOSE: u8 = 9;
pub const TAG_CONNECT: u8 = 10;
pub const TAG_SETSOCKOPT: u8 = 11;
pub const TAG_SYSCTL: u8 = 12;
pub const TAG_TOGGLE_LISTENER: u8 = 13;
pub const TAG_DROP_STATE: u8 = 14;
pub const TAG_MTU: u8 = 15;
pub const OP_COUNT: u8 = 16;

/// The sysctls `Sysctl { which, value }` sets, in `which % len` order.
pub const SYSCTLS: [&str; 16] = [
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
];

/// The port the listener uses.
pub const LISTEN_PORT: u16 = 80;
/// The peer port of the connection established before the schedule starts.
pub const EST_PEER_PORT: u16 = 40000;

/// Most operations one input runs.
const MAX_OPS: usize = 400;
/// Most sockets the harness holds at once.
const MAX_HANDLES: usize = 24;
/// A `poll_transmit` drain longer than this is a livelock.
const MAX_DRAIN: usize = 20_000;

/// How a `RawTcp` segment is adjusted before it is wrapped in IPv4 (from the peer to us) and
/// its checksum is fixed: bits of `mode`.
pub struct RawTcpMode;
impl RawTcpMode {
    /// The ACK field is relative: the stack's ISS for this 4-tuple is added (as packetdrill adds
    /// the kernel's ISN to an inbound ack).
    pub const REL_ACK: u8 = 1;
    /// The destination port is replaced by the local port of the latest `Connect`.
    pub const CONNECT_PORT: u8 = 2;
    /// The source is 198.51.100.3 instead of 198.51.100.2.
    pub const PEER2: u8 = 4;
    /// Leave the checksum as given.
    pub const KEEP_CHECKSUM: u8 = 8;
}

/// Which 4-tuple a structured segment uses.
#[derive(Arbitrary, Debug, Clone)]
pub enum TargetSel {
    /// A 4-tuple the stack has sent on (by index), else the established connection's.
    Known(u8),
    /// The established connection's.
    Established,
    /// A new client of the listener: peer port 41000 + n % 32.
    NewPeer(u8),
    /// A port nobody listens on.
    ClosedPort(u8),
    /// The latest `Connect`'s 4-tuple.
    Connected,
    /// Anything.
    Wild {
        src: SrcSel,
        to_us: bool,
        sport: u16,
        dport: u16,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum SrcSel {
    Peer,
    Peer2,
    Ourselves,
    Broadcast,
    Multicast,
    Any(u32),
}

/// A sequence number: relative to what the peer has sent on the 4-tuple, or absolute.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum SeqSel {
    Next(i16),
    Abs(u32),
}

/// An acknowledgement number: relative to what the stack has sent, to its ISS, or absolute.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum AckSel {
    Next(i16),
    Iss(i16),
    Abs(u32),
}

/// A timestamp: TSval on the peer's clock (virtual milliseconds) or absolute; TSecr relative
/// to the stack's last TSval or absolute.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum TsValSel {
    Clock(i16),
    Abs(u32),
}
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum TsEcrSel {
    Last(i16),
    Abs(u32),
}

/// One TCP option to put on a structured segment.
#[derive(Arbitrary, Debug, Clone)]
pub enum OptSpec {
    Nop,
    Eol,
    Mss(u16),
    WindowScale(u8),
    SackPermitted,
    Timestamp {
        val: TsValSel,
        ecr: TsEcrSel,
    },
    /// Blocks relative to the segment's ACK: (start offset, length).
    SackRel(Vec<(u16, u16)>),
    SackAbs(Vec<(u32, u32)>),
    Unknown {
        kind: u8,
        data: Vec<u8>,
    },
    Bytes(Vec<u8>),
}

/// A structured segment from the peer, built with correct checksums.
#[derive(Arbitrary, Debug, Clone)]
pub struct SegSpec {
    pub target: TargetSel,
    pub seq: SeqSel,
    pub ack: AckSel,
    /// The 12-bit flag field (higher bits ignored).
    pub flags: u16,
    pub window: u16,
    pub urgent: u16,
    /// IP TOS byte (its low two bits are ECN).
    pub tos: u8,
    pub options: Vec<OptSpec>,
    /// Payload length, `% 3000`.
    pub payload_len: u16,
    pub payload_fill: u8,
}

/// A socket option to set.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum SockOptSpec {
    RcvBuf(u32),
    SndBuf(u32),
    ReuseAddr(bool),
    KeepAlive(bool),
    Linger(Option<u8>),
    NoDelay(bool),
    NoOpt(bool),
    NoPush(bool),
    MaxSeg(u16),
    KeepInit(u8),
    KeepIdle(u16),
    KeepIntvl(u8),
    KeepCnt(u8),
}

/// One step of the schedule.
#[derive(Debug, Clone)]
pub enum Op {
    Segment(Box<SegSpec>),
    RawIp(Vec<u8>),
    RawTcp { mode: u8, bytes: Vec<u8> },
    Step(u32),
    RunTimers(u8),
    Accept,
    Send { conn: u8, len: u16 },
    Recv { conn: u8, len: u16, peek: bool },
    Shutdown { conn: u8, how: u8 },
    Close { conn: u8 },
    Connect { port: u16 },
    SetSockOpt { conn: u8, opt: SockOptSpec },
    Sysctl { which: u8, value: u8 },
    ToggleListener,
    DropState(u8),
    Mtu(u16),
}

fn byte(u: &mut Unstructured<'_>) -> Result<u8> {
    Ok(u.bytes(1)?[0])
}
fn le16(u: &mut Unstructured<'_>) -> Result<u16> {
    let b = u.bytes(2)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}
fn blob(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let len = usize::from(le16(u)?).min(u.len());
    Ok(u.bytes(len)?.to_vec())
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let tag = byte(u)? % OP_COUNT;
        Ok(match tag {
            TAG_SEGMENT => Op::Segment(Box::new(SegSpec::arbitrary(u)?)),
            TAG_RAW_IP => Op::RawIp(blob(u)?),
            TAG_RAW_TCP => Op::RawTcp {
                mode: byte(u)?,
                bytes: blob(u)?,
            },
            TAG_STEP => {
                let v = le16(u)?;
                Op::Step(if v & 0x8000 != 0 {
                    u32::from(v & 0x7fff) * 100
                } else {
                    u32::from(v)
                })
            }
            TAG_RUN_TIMERS => Op::RunTimers(byte(u)?),
            TAG_ACCEPT => Op::Accept,
            TAG_SEND => Op::Send {
                conn: byte(u)?,
                len: le16(u)?,
            },
            TAG_RECV => Op::Recv {
                conn: byte(u)?,
                len: le16(u)?,
                peek: byte(u)? & 1 != 0,
            },
            TAG_SHUTDOWN => Op::Shutdown {
                conn: byte(u)?,
                how: byte(u)?,
            },
            TAG_CLOSE => Op::Close { conn: byte(u)? },
            TAG_CONNECT => Op::Connect { port: le16(u)? },
            TAG_SETSOCKOPT => Op::SetSockOpt {
                conn: byte(u)?,
                opt: SockOptSpec::arbitrary(u)?,
            },
            TAG_SYSCTL => Op::Sysctl {
                which: byte(u)?,
                value: byte(u)?,
            },
            TAG_TOGGLE_LISTENER => Op::ToggleListener,
            TAG_DROP_STATE => Op::DropState(byte(u)?),
            _ => Op::Mtu(le16(u)?),
        })
    }
}

/// What the harness learnt about one 4-tuple (local port, peer address, peer port).
#[derive(Clone, Copy, Debug, Default)]
struct Track {
    /// The stack's ISS, from its SYN or SYN-ACK.
    iss: Option<u32>,
    /// The highest sequence number (end of a segment) the stack has sent.
    snd_max: Option<u32>,
    /// The latest TSval the stack sent.
    tsval: Option<u32>,
    /// The highest sequence number (end) the peer has sent.
    peer_max: Option<u32>,
}

type Key = (u16, Ipv4Addr, u16);

pub struct Harness {
    pub stack: Stack<'static>,
    pub now: Instant,
    listener: Option<SocketHandle>,
    /// Sockets the application holds, oldest first.
    handles: Vec<SocketHandle>,
    /// Handles the application closed: they must stay invalid.
    closed: Vec<SocketHandle>,
    track: BTreeMap<Key, Track>,
    /// Tuples in the order first seen.
    keys: Vec<Key>,
    /// The latest connect: (local port, peer port).
    connected: Option<(u16, u16)>,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    /// The largest MTU set so far (an established connection keeps its MSS when the MTU
    /// drops: `set_mtu` only governs the MSS of new connections).
    max_mtu: u32,
    /// The largest receive and send buffer limits each handle has had (lowering a limit keeps
    /// the bytes already queued).
    max_buf: HashMap<SocketHandle, (u64, u64)>,
    /// Packets sent, for the tests.
    pub sent: Vec<Sent>,
    pub record: bool,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// A stack with the listener and one established connection.
    pub fn new() -> Self {
        let mut stack = Stack::new_alloc([7; 16]);
        stack.add_address(LOCAL).unwrap();
        let mut h = Harness {
            stack,
            now: Instant::from_millis(1000),
            listener: None,
            handles: Vec::new(),
            closed: Vec::new(),
            track: BTreeMap::new(),
            keys: Vec::new(),
            connected: None,
            buf: vec![0u8; 70_000],
            scratch: vec![0u8; 70_000],
            max_mtu: 0,
            max_buf: HashMap::new(),
            sent: Vec::new(),
            record: false,
        };
        h.max_mtu = h.stack.mtu();
        h.open_listener();
        // The handshake, by hand: SYN with the usual options, then the ACK of the SYN-ACK.
        let ts = h.now.total_millis() as u32;
        let mut syn_opts = vec![2, 4, 0x05, 0xb4, 4, 2, 8, 10];
        syn_opts.extend_from_slice(&ts.to_be_bytes());
        syn_opts.extend_from_slice(&[0, 0, 0, 0, 1, 3, 3, 7]);
        let syn = Seg {
            sport: EST_PEER_PORT,
            dport: LISTEN_PORT,
            seq: 1000,
            flags: SYN,
            win: 65535,
            ..Seg::default()
        };
        h.inject(net::packet(PEER, LOCAL, 0, &syn, &syn_opts, &[]));
        h.drain();
        let key = (LISTEN_PORT, PEER, EST_PEER_PORT);
        let t = h.track[&key];
        let iss = t.iss.expect("no SYN-ACK to the setup SYN");
        let mut ack_opts = vec![1, 1, 8, 10];
        ack_opts.extend_from_slice(&ts.to_be_bytes());
        ack_opts.extend_from_slice(&t.tsval.unwrap_or(0).to_be_bytes());
        let ack = Seg {
            sport: EST_PEER_PORT,
            dport: LISTEN_PORT,
            seq: 1001,
            ack: iss.wrapping_add(1),
            flags: ACK,
            win: 1024,
            ..Seg::default()
        };
        h.inject(net::packet(PEER, LOCAL, 0, &ack, &ack_opts, &[]));
        h.drain();
        let (c, _) = h
            .stack
            .accept(h.listener.unwrap())
            .expect("setup handshake did not complete");
        assert_eq!(h.stack.state(c), Ok(TcpState::Established));
        h.handles.push(c);
        h.check();
        h
    }

    fn open_listener(&mut self) {
        let l = self.stack.socket().unwrap();
        self.stack.setsockopt(l, SockOpt::ReuseAddr(true)).unwrap();
        self.stack
            .bind(l, SocketAddrV4::new(LOCAL, LISTEN_PORT))
            .unwrap();
        self.stack.listen(l, 8).unwrap();
        self.listener = Some(l);
    }

    fn key_track(&mut self, key: Key) -> &mut Track {
        if !self.track.contains_key(&key) {
            self.keys.push(key);
        }
        self.track.entry(key).or_default()
    }

    /// Feeds one packet from the network, remembering what the peer has sent on its tuple.
    pub fn inject(&mut self, pkt: Vec<u8>) {
        if let Some((key, seq, len)) = peer_seg(&pkt) {
            if self.stack.is_local(key.1) {
                // Not a peer: our own address spoofed.
            } else {
                let t = self.key_track(key);
                let end = seq.wrapping_add(len);
                t.peer_max = Some(t.peer_max.map_or(end, |m| net::seq_max(m, end)));
            }
        }
        self.stack.handle_packet(self.now, black_box(&pkt));
    }

    /// Sends out everything the stack has queued, checking each packet.
    pub fn drain(&mut self) {
        for _ in 0..MAX_DRAIN {
            let Some(n) = self.stack.poll_transmit(self.now, &mut self.buf) else {
                return;
            };
            assert!(n <= self.buf.len());
            let s = net::check_sent(&self.buf[..n], self.stack.addresses(), self.max_mtu);
            let key = (s.sport, s.dst, s.dport);
            let t = self.key_track(key);
            if s.flags & SYN != 0 {
                t.iss = Some(s.seq);
            }
            if s.flags & net::RST == 0 {
                let end = s.seq.wrapping_add(s.seq_len());
                t.snd_max = Some(t.snd_max.map_or(end, |m| net::seq_max(m, end)));
            }
            if let Some(v) = s.tsval {
                t.tsval = Some(v);
            }
            if self.record {
                self.sent.push(s);
            }
        }
        if std::env::var_os("HYDRANET_FUZZ_TRACE").is_some() {
            for _ in 0..4 {
                if let Some(n) = self.stack.poll_transmit(self.now, &mut self.buf) {
                    let s = net::check_sent(&self.buf[..n], self.stack.addresses(), self.max_mtu);
                    eprintln!("livelock packet: {s:?}");
                }
            }
            for p in self.stack.pcblist() {
                eprintln!("pcb: {p:?}");
            }
        }
        panic!("poll_transmit still had packets after {MAX_DRAIN} calls (livelock)");
    }

    /// The invariants, checked after every step.
    pub fn check(&mut self) {
        crate::check_no_spurious_cookie(&self.stack);
        let pcbs: Vec<_> = self.stack.pcblist().collect();
        // One connection per 4-tuple.
        let mut seen = std::collections::BTreeSet::new();
        for p in &pcbs {
            if matches!(p.state, TcpState::Closed | TcpState::Listen) {
                continue;
            }
            assert!(
                seen.insert((p.laddr, p.lport, p.faddr, p.fport)),
                "two live endpoints for {}:{} <-> {}:{} ({:?})",
                p.laddr,
                p.lport,
                p.faddr,
                p.fport,
                pcbs
            );
        }
        for &h in &self.closed {
            assert_eq!(
                self.stack.state(h),
                Err(Errno::EBADF),
                "a closed handle still works"
            );
        }
        if let Some(l) = self.listener {
            assert_eq!(self.stack.state(l), Ok(TcpState::Listen));
        }
        for &h in &self.handles {
            let info = self
                .stack
                .tcp_info(h)
                .unwrap_or_else(|e| panic!("tcp_info on an open handle: {e}"));
            assert!(info.tcpi_state <= TcpState::TimeWait as u8);
            let state = self.stack.state(h).unwrap();
            assert_eq!(state as u8, info.tcpi_state);
            assert!(info.tcpi_snd_mss > 0, "MSS 0");
            if let Ok(peer) = self.stack.peer_addr(h) {
                let local = self.stack.local_addr(h).unwrap();
                let key = (local.port(), *peer.ip(), peer.port());
                if let Some(t) = self.track.get(&key) {
                    if let (Some(max), true) = (t.snd_max, state != TcpState::Closed) {
                        assert!(
                            net::seq_leq(info.tcpi_snd_nxt, max),
                            "snd_nxt {} beyond the highest sequence number sent, {} ({state:?})",
                            info.tcpi_snd_nxt,
                            max
                        );
                    }
                    if let (Some(iss), Some(max)) = (t.iss, t.snd_max) {
                        assert!(
                            net::seq_leq(iss, info.tcpi_snd_nxt) || state == TcpState::Closed,
                            "snd_nxt {} before the ISS {iss} (max sent {max})",
                            info.tcpi_snd_nxt
                        );
                    }
                }
            }
            let queued = self.stack.send_queue(h).unwrap();
            let (readable, room) = self.stack.readiness(h).unwrap();
            let rcvbuf = int(self.stack.getsockopt(h, OptName::RcvBuf).unwrap());
            let sndbuf = int(self.stack.getsockopt(h, OptName::SndBuf).unwrap());
            let m = self.max_buf.entry(h).or_insert((0, 0));
            *m = (m.0.max(rcvbuf), m.1.max(sndbuf));
            let (rcvmax, sndmax) = *m;
            assert!(
                queued as u64 <= sndmax,
                "{queued} bytes queued in a send buffer never larger than {sndmax}"
            );
            assert!(
                readable as u64 <= rcvmax,
                "{readable} bytes readable in a receive buffer never larger than {rcvmax}"
            );
            assert!(
                room as u64 <= sndbuf,
                "{room} bytes of room in a {sndbuf}-byte send buffer"
            );
        }
    }

    fn pick(&self, conn: u8) -> Option<SocketHandle> {
        match conn {
            0xfe => self.listener,
            _ if self.handles.is_empty() => None,
            0xff => self.handles.last().copied(),
            c => Some(self.handles[usize::from(c) % self.handles.len()]),
        }
    }

    fn fire_timers(&mut self) {
        self.stack.handle_timeout(self.now);
        // A timer still due right after handle_timeout would make a driver spin.
        for _ in 0..3 {
            match self.stack.poll_timeout() {
                Some(t) if t <= self.now => {
                    self.drain();
                    self.stack.handle_timeout(self.now);
                }
                _ => return,
            }
        }
        if let Some(t) = self.stack.poll_timeout() {
            assert!(
                t > self.now,
                "poll_timeout() = {t:?} is still due after handle_timeout({:?}) (a driver would spin)",
                self.now
            );
        }
    }

    /// Runs one operation, then drains the output and checks the invariants.
    pub fn apply(&mut self, op: Op) {
        match op {
            Op::Segment(spec) => {
                let pkt = self.build(&spec);
                self.inject(pkt);
            }
            Op::RawIp(bytes) => self.inject(bytes),
            Op::RawTcp { mode, mut bytes } => {
                let src = if mode & RawTcpMode::PEER2 != 0 {
                    PEER2
                } else {
                    PEER
                };
                if bytes.len() >= 20 {
                    if mode & RawTcpMode::CONNECT_PORT != 0 {
                        if let Some((lport, _)) = self.connected {
                            bytes[2..4].copy_from_slice(&lport.to_be_bytes());
                        }
                    }
                    if mode & RawTcpMode::REL_ACK != 0 {
                        let sport = u16::from_be_bytes([bytes[0], bytes[1]]);
                        let dport = u16::from_be_bytes([bytes[2], bytes[3]]);
                        let iss = self
                            .track
                            .get(&(dport, src, sport))
                            .and_then(|t| t.iss)
                            .unwrap_or(0);
                        let ack = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
                        bytes[8..12].copy_from_slice(&ack.wrapping_add(iss).to_be_bytes());
                    }
                }
                if mode & RawTcpMode::KEEP_CHECKSUM == 0 {
                    net::fix_tcp_checksum(src, LOCAL, &mut bytes);
                }
                let pkt = net::ipv4(src, LOCAL, 0, &bytes);
                self.inject(pkt);
            }
            Op::Step(ms) => {
                self.now += hydranet_core::Duration::from_millis(u64::from(ms));
                self.fire_timers();
            }
            Op::RunTimers(n) => {
                for _ in 0..n % 8 + 1 {
                    let Some(t) = self.stack.poll_timeout() else {
                        break;
                    };
                    self.now = self.now.max(t);
                    self.fire_timers();
                    self.drain();
                }
            }
            Op::Accept => {
                if let Some(l) = self.listener {
                    match self.stack.accept(l) {
                        Ok((h, from)) => {
                            assert_eq!(self.stack.peer_addr(h), Ok(from));
                            self.adopt(h);
                        }
                        Err(Errno::EWOULDBLOCK | Errno::ECONNABORTED) => {}
                        Err(e) => panic!("accept: {e}"),
                    }
                }
            }
            Op::Send { conn, len } => {
                if let Some(h) = self.pick(conn) {
                    let len = usize::from(len);
                    for (i, b) in self.scratch[..len].iter_mut().enumerate() {
                        *b = i as u8;
                    }
                    match self.stack.send(self.now, h, &self.scratch[..len], 0) {
                        Ok(n) => assert!(n <= len),
                        Err(e) => assert_ne!(e, Errno::EBADF, "send on an open handle"),
                    }
                }
            }
            Op::Recv { conn, len, peek } => {
                if let Some(h) = self.pick(conn) {
                    let before = self.stack.readiness(h).map(|r| r.0);
                    let flags = if peek { msg::PEEK } else { 0 };
                    let len = usize::from(len);
                    match self
                        .stack
                        .recv(self.now, h, &mut self.scratch[..len], flags)
                    {
                        Ok(n) => {
                            assert!(n <= len);
                            if let Ok(b) = before {
                                assert!(n <= b, "recv returned {n} of {b} readable bytes");
                            }
                        }
                        Err(e) => assert_ne!(e, Errno::EBADF, "recv on an open handle"),
                    }
                }
            }
            Op::Shutdown { conn, how } => {
                if let Some(h) = self.pick(conn) {
                    let how =
                        [Shutdown::Read, Shutdown::Write, Shutdown::Both][usize::from(how % 3)];
                    if how != Shutdown::Read && crate::known_shutdown_in_syn_sent(&self.stack, h) {
                        return;
                    }
                    let r = self.stack.shutdown(self.now, h, how);
                    assert_ne!(r, Err(Errno::EBADF), "shutdown on an open handle");
                }
            }
            Op::Close { conn } => {
                if let Some(h) = self.pick(conn) {
                    assert_eq!(self.stack.close(self.now, h), Ok(()));
                    if Some(h) == self.listener {
                        self.listener = None;
                    } else {
                        self.handles.retain(|x| *x != h);
                    }
                    self.closed.push(h);
                }
            }
            Op::Connect { port } => {
                if self.handles.len() < MAX_HANDLES {
                    if let Ok(h) = self.stack.socket() {
                        let to = SocketAddrV4::new(PEER, port);
                        match self.stack.connect(self.now, h, to) {
                            Err(Errno::EINPROGRESS) => {
                                let local = self.stack.local_addr(h).unwrap();
                                self.connected = Some((local.port(), port));
                            }
                            Err(Errno::EADDRNOTAVAIL) => assert_eq!(port, 0),
                            r => panic!("connect to {to}: {r:?}"),
                        }
                        self.handles.push(h);
                    }
                }
            }
            Op::SetSockOpt { conn, opt } => {
                if let Some(h) = self.pick(conn) {
                    let _ = black_box(self.stack.setsockopt(h, sockopt(opt)));
                }
            }
            Op::Sysctl { which, value } => self.sysctl(which, value),
            Op::ToggleListener => match self.listener.take() {
                Some(l) => {
                    self.stack.close(self.now, l).unwrap();
                    self.closed.push(l);
                }
                None => {
                    if self.handles.len() < MAX_HANDLES {
                        self.open_listener();
                    }
                }
            },
            Op::DropState(s) => {
                let state = TcpState::ALL[usize::from(s) % TcpState::ALL.len()];
                if state != TcpState::Listen && state != TcpState::Closed {
                    black_box(self.stack.drop_state(self.now, state));
                }
            }
            Op::Mtu(m) => {
                self.stack.set_mtu(u32::from(m));
                self.max_mtu = self.max_mtu.max(self.stack.mtu());
            }
        }
        self.drain();
        self.check();
    }

    fn adopt(&mut self, h: SocketHandle) {
        if self.handles.len() >= MAX_HANDLES {
            let old = self.handles.remove(0);
            self.stack.close(self.now, old).unwrap();
            self.closed.push(old);
        }
        self.handles.push(h);
    }

    fn sysctl(&mut self, which: u8, v: u8) {
        let c = &mut self.stack.sysctl;
        let on = v & 1 != 0;
        match usize::from(which) % SYSCTLS.len() {
            0 => c.syncookies = on,
            1 => c.syncookies_only = on,
            2 => c.insecure_rst = on,
            3 => c.insecure_syn = on,
            4 => c.blackhole = v % 3,
            5 => c.drop_synfin = on,
            6 => c.ecn_enable = v % 3,
            7 => c.sack_enable = on,
            8 => c.rfc1323 = v % 4,
            9 => c.tolerate_missing_ts = on,
            10 => c.delayed_ack = on,
            11 => c.cc_algorithm = if on { CcKind::Cubic } else { CcKind::NewReno },
            12 => c.rexmit_drop_options = on,
            13 => c.path_mtu_discovery = on,
            14 => c.recvspace = 1024 * (u32::from(v) + 1),
            _ => c.sendspace = 1024 * (u32::from(v) + 1),
        }
    }

    /// The packet a structured segment describes.
    fn build(&mut self, s: &SegSpec) -> Vec<u8> {
        let est = (LISTEN_PORT, PEER, EST_PEER_PORT);
        let (src, dst, sport, dport) = match s.target {
            TargetSel::Known(i) => {
                let k = if self.keys.is_empty() {
                    est
                } else {
                    self.keys[usize::from(i) % self.keys.len()]
                };
                (k.1, LOCAL, k.2, k.0)
            }
            TargetSel::Established => (PEER, LOCAL, EST_PEER_PORT, LISTEN_PORT),
            TargetSel::NewPeer(n) => (PEER, LOCAL, 41000 + u16::from(n % 32), LISTEN_PORT),
            TargetSel::ClosedPort(n) => {
                (PEER, LOCAL, 42000 + u16::from(n % 4), 81 + u16::from(n % 3))
            }
            TargetSel::Connected => match self.connected {
                Some((l, p)) => (PEER, LOCAL, p, l),
                None => (PEER, LOCAL, EST_PEER_PORT, LISTEN_PORT),
            },
            TargetSel::Wild {
                src,
                to_us,
                sport,
                dport,
            } => {
                let src = match src {
                    SrcSel::Peer => PEER,
                    SrcSel::Peer2 => PEER2,
                    SrcSel::Ourselves => LOCAL,
                    SrcSel::Broadcast => Ipv4Addr::BROADCAST,
                    SrcSel::Multicast => Ipv4Addr::new(224, 0, 0, 1),
                    SrcSel::Any(a) => Ipv4Addr::from(a),
                };
                let dst = if to_us {
                    LOCAL
                } else {
                    Ipv4Addr::new(192, 0, 2, 99)
                };
                (src, dst, sport, dport)
            }
        };
        let t = self
            .track
            .get(&(dport, src, sport))
            .copied()
            .unwrap_or_default();
        let seq = match s.seq {
            SeqSel::Next(o) => t.peer_max.unwrap_or(1000).wrapping_add(o as i32 as u32),
            SeqSel::Abs(v) => v,
        };
        let ack = match s.ack {
            AckSel::Next(o) => t.snd_max.unwrap_or(0).wrapping_add(o as i32 as u32),
            AckSel::Iss(o) => t
                .iss
                .unwrap_or(0)
                .wrapping_add(1)
                .wrapping_add(o as i32 as u32),
            AckSel::Abs(v) => v,
        };
        let mut opts = Vec::new();
        for o in &s.options {
            if opts.len() >= 40 {
                break;
            }
            match o {
                OptSpec::Nop => opts.push(1),
                OptSpec::Eol => opts.push(0),
                OptSpec::Mss(m) => {
                    opts.extend_from_slice(&[2, 4]);
                    opts.extend_from_slice(&m.to_be_bytes());
                }
                OptSpec::WindowScale(w) => opts.extend_from_slice(&[3, 3, *w]),
                OptSpec::SackPermitted => opts.extend_from_slice(&[4, 2]),
                OptSpec::Timestamp { val, ecr } => {
                    let val = match val {
                        TsValSel::Clock(o) => {
                            (self.now.total_millis() as u32).wrapping_add(*o as i32 as u32)
                        }
                        TsValSel::Abs(v) => *v,
                    };
                    let ecr = match ecr {
                        TsEcrSel::Last(o) => t.tsval.unwrap_or(0).wrapping_add(*o as i32 as u32),
                        // Known bug 7 (regressions/README.md): an echo far in the past
                        // overflows the RTO computation; steering keeps echoes near the
                        // stack's clock.
                        TsEcrSel::Abs(v) if crate::avoid(7) => {
                            t.tsval.unwrap_or(0).wrapping_sub(*v % 60_000)
                        }
                        TsEcrSel::Abs(v) => *v,
                    };
                    opts.extend_from_slice(&[8, 10]);
                    opts.extend_from_slice(&val.to_be_bytes());
                    opts.extend_from_slice(&ecr.to_be_bytes());
                }
                OptSpec::SackRel(blocks) => {
                    let blocks: Vec<(u32, u32)> = blocks
                        .iter()
                        .take(4)
                        .map(|&(o, l)| {
                            let left = ack.wrapping_add(u32::from(o));
                            (left, left.wrapping_add(u32::from(l)))
                        })
                        .collect();
                    push_sack(&mut opts, &blocks);
                }
                OptSpec::SackAbs(blocks) => {
                    push_sack(&mut opts, &blocks[..blocks.len().min(4)]);
                }
                OptSpec::Unknown { kind, data } => {
                    let data = &data[..data.len().min(38)];
                    opts.push(*kind);
                    opts.push(2 + data.len() as u8);
                    opts.extend_from_slice(data);
                }
                OptSpec::Bytes(b) => opts.extend_from_slice(&b[..b.len().min(40)]),
            }
        }
        let len = usize::from(s.payload_len % 3000);
        let payload: Vec<u8> = (0..len)
            .map(|i| s.payload_fill.wrapping_add(i as u8))
            .collect();
        let seg = Seg {
            sport,
            dport,
            seq,
            ack,
            flags: s.flags,
            win: s.window,
            urg: s.urgent,
        };
        net::packet(src, dst, s.tos, &seg, &opts, &payload)
    }

    /// Closes every socket and lets the timers run out, checking as it goes.
    pub fn finish(&mut self) {
        for h in std::mem::take(&mut self.handles) {
            self.stack.close(self.now, h).unwrap();
            self.closed.push(h);
        }
        self.drain();
        self.check();
        for _ in 0..64 {
            let Some(t) = self.stack.poll_timeout() else {
                break;
            };
            self.now = self.now.max(t);
            self.fire_timers();
            self.drain();
            self.check();
        }
    }
}

fn push_sack(opts: &mut Vec<u8>, blocks: &[(u32, u32)]) {
    if blocks.is_empty() {
        return;
    }
    opts.extend_from_slice(&[5, 2 + 8 * blocks.len() as u8]);
    for (l, r) in blocks {
        opts.extend_from_slice(&l.to_be_bytes());
        opts.extend_from_slice(&r.to_be_bytes());
    }
}

fn int(v: OptValue) -> u64 {
    match v {
        OptValue::Int(i) => i as u64,
        v => panic!("unexpected option value {v:?}"),
    }
}

fn sockopt(o: SockOptSpec) -> SockOpt {
    match o {
        SockOptSpec::RcvBuf(n) => SockOpt::RcvBuf(n % 600_000),
        SockOptSpec::SndBuf(n) => SockOpt::SndBuf(n % 600_000),
        SockOptSpec::ReuseAddr(b) => SockOpt::ReuseAddr(b),
        SockOptSpec::KeepAlive(b) => SockOpt::KeepAlive(b),
        SockOptSpec::Linger(l) => SockOpt::Linger(l.map(u32::from)),
        SockOptSpec::NoDelay(b) => SockOpt::NoDelay(b),
        SockOptSpec::NoOpt(b) => SockOpt::NoOpt(b),
        SockOptSpec::NoPush(b) => SockOpt::NoPush(b),
        SockOptSpec::MaxSeg(m) => SockOpt::MaxSeg(u32::from(m)),
        SockOptSpec::KeepInit(v) => SockOpt::KeepInit(u32::from(v)),
        SockOptSpec::KeepIdle(v) => SockOpt::KeepIdle(u32::from(v)),
        SockOptSpec::KeepIntvl(v) => SockOpt::KeepIntvl(u32::from(v)),
        SockOptSpec::KeepCnt(v) => SockOpt::KeepCnt(u32::from(v)),
    }
}

/// For a well-formed IPv4/TCP packet: its tuple as the stack sees it (local port, peer
/// address, peer port), its sequence number and the sequence space it occupies.
fn peer_seg(pkt: &[u8]) -> Option<(Key, u32, u32)> {
    if pkt.len() < 40 || pkt[0] >> 4 != 4 || pkt[9] != 6 {
        return None;
    }
    let hl = usize::from(pkt[0] & 15) * 4;
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]])).min(pkt.len());
    let seg = pkt.get(hl..total)?;
    if seg.len() < 20 {
        return None;
    }
    let doff = usize::from(seg[12] >> 4) * 4;
    let data = seg.len().checked_sub(doff)? as u32;
    let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    let sport = u16::from_be_bytes([seg[0], seg[1]]);
    let dport = u16::from_be_bytes([seg[2], seg[3]]);
    let seq = u32::from_be_bytes([seg[4], seg[5], seg[6], seg[7]]);
    let flags = u16::from(seg[13]);
    let len = data + u32::from(flags & SYN != 0) + u32::from(flags & FIN != 0);
    Some(((dport, src, sport), seq, len))
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut h = Harness::new();
    let mut u = Unstructured::new(data);
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = Op::arbitrary(&mut u) else { break };
        if std::env::var_os("HYDRANET_FUZZ_TRACE").is_some() {
            eprintln!("op @{:?}: {op:?}", h.now);
        }
        h.apply(op);
    }
    h.finish();
}

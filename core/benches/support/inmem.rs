//! Bulk transfer between two stacks of one kind in memory — HydraNet-FT's core or smoltcp —
//! shared by the `bulk` bench (speed) and the `segcount` example (instructions per segment
//! under callgrind), so both measure the very same workload.
//!
//! Both transfers run under the same conditions: an IPv4 link of MTU 1500 that neither loses
//! nor delays packets, 64 KiB send and receive buffers on every socket, the same amount of
//! data copied in from and out to user buffers of the same size, checksums computed and
//! verified in software as each stack does by default, and virtual time that only moves when
//! both stacks are idle (to the earlier of their next timers). Nothing depends on the clock or
//! on randomness (both stacks get fixed seeds), so a run is repeatable instruction for
//! instruction.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

use hydranet_core::netinet::tcp_usrreq::{OptName, OptValue};
use hydranet_core::stack::Stack;
use hydranet_core::{Errno, Instant};

use smoltcp::iface::{Config as SmolConfig, Interface, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp as smol_tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

/// IP MTU of the link, both stacks.
pub const MTU: usize = 1500;
/// Send and receive buffer size of every socket, both stacks.
pub const SOCKBUF: usize = 64 * 1024;
/// The user buffer each `send`/`recv` call copies from or to.
const USER_CHUNK: usize = 16 * 1024;
/// Length of the repeating data pattern (a prime, so it never lines up with chunk or segment
/// sizes).
const PATTERN_PERIOD: usize = 65_521;

// Documentation addresses only, as everywhere in the project (RFC 5737).
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const PORT: u16 = 5001;
const CLIENT_PORT: u16 = 49_152;

/// Safety net: a transfer needing this many rounds without finishing is stuck.
const MAX_ROUNDS: u64 = 1 << 32;

fn pattern_byte(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 11) as u8
}

/// The source data: `PATTERN_PERIOD` pattern bytes followed by the first `USER_CHUNK` again,
/// so that the chunk starting at any stream offset is one contiguous slice.
pub struct Source {
    bytes: Vec<u8>,
}

impl Source {
    pub fn new() -> Self {
        let bytes = (0..PATTERN_PERIOD + USER_CHUNK)
            .map(|i| pattern_byte(i % PATTERN_PERIOD))
            .collect();
        Source { bytes }
    }
    /// The user buffer for stream offset `off`, at most `len` bytes.
    pub fn chunk(&self, off: usize, len: usize) -> &[u8] {
        let start = off % PATTERN_PERIOD;
        &self.bytes[start..start + len.min(USER_CHUNK)]
    }
}

/// What one transfer did, for sanity checks and the summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    pub bytes: usize,
    /// Loop rounds (application step plus network exchange).
    pub rounds: u64,
    /// Rounds where nothing moved and virtual time had to jump to a timer.
    pub time_jumps: u64,
    /// Segments carried in both directions.
    pub segs: SegTally,
    /// Virtual time the transfer took, in microseconds.
    pub virtual_us: u64,
    /// Receiver's receive buffer and sender's send buffer limits once connected (the stack
    /// may round the configured size, e.g. FreeBSD's `tcp_mss` rounds to whole segments).
    pub bufs: (usize, usize),
}

/// Segments counted as the stacks emit them, by whether they carry data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegTally {
    /// Every packet, both directions.
    pub packets: u64,
    /// Segments with a TCP payload.
    pub data: u64,
    /// Their payload bytes (retransmissions counted again).
    pub payload: u64,
}

impl SegTally {
    pub fn count(&mut self, pkt: &[u8]) {
        self.packets += 1;
        if let Some(n) = tcp_payload_len(pkt).filter(|&n| n > 0) {
            self.data += 1;
            self.payload += n as u64;
        }
    }
    /// Segments without payload: pure ACKs, window updates, SYN/FIN-only.
    pub fn control(&self) -> u64 {
        self.packets - self.data
    }
}

/// TCP payload length of an IPv4 packet (no options checked beyond the header lengths);
/// `None` when it is not a well-formed IPv4/TCP packet.
pub fn tcp_payload_len(pkt: &[u8]) -> Option<usize> {
    let first = *pkt.first()?;
    if first >> 4 != 4 || *pkt.get(9)? != 6 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*pkt.get(2)?, *pkt.get(3)?]));
    let doff = usize::from(*pkt.get(ihl + 12)? >> 4) * 4;
    if ihl < 20 || doff < 20 || total > pkt.len() {
        return None;
    }
    total.checked_sub(ihl + doff)
}

// ------------------------------------------------------------------------------------------
// HydraNet-FT core

fn hydranet_stack(addr: Ipv4Addr, seed: u8) -> Stack<'static> {
    let mut s = Stack::new_alloc([seed; 16]);
    s.sysctl.recvspace = SOCKBUF as u32;
    s.sysctl.sendspace = SOCKBUF as u32;
    s.set_mtu(MTU as u32);
    s.add_address(addr).expect("address");
    s
}

/// Moves `total` bytes from a client to a server socket; checks every byte when `verify`.
pub fn hydranet_transfer(src: &Source, total: usize, verify: bool) -> Outcome {
    let mut client = hydranet_stack(CLIENT, 1);
    let mut server = hydranet_stack(SERVER, 2);
    let mut now = Instant::ZERO;
    let mut pkt = vec![0u8; MTU];
    let mut dst = vec![0u8; USER_CHUNK];
    let mut out = Outcome::default();

    let ls = server.socket().expect("socket");
    server
        .bind(ls, SocketAddrV4::new(SERVER, PORT))
        .expect("bind");
    server.listen(ls, 1).expect("listen");
    let c = client.socket().expect("socket");
    client
        .bind(c, SocketAddrV4::new(CLIENT, CLIENT_PORT))
        .expect("bind");
    match client.connect(now, c, SocketAddrV4::new(SERVER, PORT)) {
        Err(Errno::EINPROGRESS) | Ok(()) => {}
        Err(e) => panic!("connect: {e:?}"),
    }
    let mut accepted = None;
    let (mut sent, mut got) = (0usize, 0usize);
    let buf_limit = |stack: &mut Stack<'static>, h, name| match stack.getsockopt(h, name) {
        Ok(OptValue::Int(n)) => n as usize,
        other => panic!("getsockopt: {other:?}"),
    };

    while got < total {
        out.rounds += 1;
        assert!(out.rounds < MAX_ROUNDS, "hydranet transfer stuck");
        let mut progress = false;

        // Application: fill the sender, drain the receiver.
        if accepted.is_none() {
            if let Ok((h, _)) = server.accept(ls) {
                accepted = Some(h);
                progress = true;
                out.bufs = (
                    buf_limit(&mut server, h, OptName::RcvBuf),
                    buf_limit(&mut client, c, OptName::SndBuf),
                );
            }
        }
        while sent < total {
            match client.send(now, c, src.chunk(sent, total - sent), 0) {
                Ok(n) => {
                    sent += n;
                    progress = true;
                }
                Err(Errno::EWOULDBLOCK | Errno::ENOTCONN) => break,
                Err(e) => panic!("send: {e:?}"),
            }
        }
        if let Some(s) = accepted {
            loop {
                match server.recv(now, s, &mut dst, 0) {
                    Ok(0) => panic!("unexpected end of stream"),
                    Ok(n) => {
                        if verify {
                            assert_eq!(&dst[..n], src.chunk(got, n), "hydranet: corrupted");
                        }
                        black_box(&dst[..n]);
                        got += n;
                        progress = true;
                    }
                    Err(Errno::EWOULDBLOCK) => break,
                    Err(e) => panic!("recv: {e:?}"),
                }
            }
        }

        // Network: every packet goes straight from one stack's output to the other's input.
        while let Some(n) = client.poll_transmit(now, &mut pkt) {
            out.segs.count(&pkt[..n]);
            server.handle_packet(now, &pkt[..n]);
            progress = true;
        }
        while let Some(n) = server.poll_transmit(now, &mut pkt) {
            out.segs.count(&pkt[..n]);
            client.handle_packet(now, &pkt[..n]);
            progress = true;
        }

        if !progress {
            let next = [client.poll_timeout(), server.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .expect("both stacks idle with the transfer unfinished");
            // At least one microsecond, so a timer already due cannot stall the loop.
            now = next.max(Instant::from_micros(now.total_micros() + 1));
            client.handle_timeout(now);
            server.handle_timeout(now);
            out.time_jumps += 1;
        }
    }
    out.bytes = got;
    out.virtual_us = now.total_micros();
    out
}

// ------------------------------------------------------------------------------------------
// smoltcp

/// A packet in flight: a full-MTU buffer (reused, never re-zeroed) and the length used.
type Frame = (Vec<u8>, usize);

/// Both directions of an in-memory IP link, and spare packet buffers.
#[derive(Default)]
struct Link {
    to_server: VecDeque<Frame>,
    to_client: VecDeque<Frame>,
    spare: Vec<Vec<u8>>,
    /// Every packet either interface emitted.
    segs: SegTally,
}

impl Link {
    fn queue(&mut self, to_server: bool) -> &mut VecDeque<Frame> {
        if to_server {
            &mut self.to_server
        } else {
            &mut self.to_client
        }
    }
}

/// One end of the link as a smoltcp `Device` of medium IP.
struct LinkEnd<'l> {
    link: &'l RefCell<Link>,
    is_client: bool,
}

struct LinkRx<'l> {
    link: &'l RefCell<Link>,
    frame: Frame,
}

struct LinkTx<'l> {
    link: &'l RefCell<Link>,
    to_server: bool,
}

impl smoltcp::phy::RxToken for LinkRx<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let (buf, len) = self.frame;
        let r = f(&buf[..len]);
        self.link.borrow_mut().spare.push(buf);
        r
    }
}

impl smoltcp::phy::TxToken for LinkTx<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let spare = self.link.borrow_mut().spare.pop();
        let mut buf = spare.unwrap_or_else(|| vec![0u8; MTU]);
        let r = f(&mut buf[..len]);
        let mut link = self.link.borrow_mut();
        link.segs.count(&buf[..len]);
        link.queue(self.to_server).push_back((buf, len));
        r
    }
}

impl Device for LinkEnd<'_> {
    type RxToken<'a>
        = LinkRx<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = LinkTx<'a>
    where
        Self: 'a;

    fn receive(&mut self, _now: SmolInstant) -> Option<(LinkRx<'_>, LinkTx<'_>)> {
        // A client receives what travels towards it, i.e. not towards the server.
        let frame = self.link.borrow_mut().queue(!self.is_client).pop_front()?;
        Some((
            LinkRx {
                link: self.link,
                frame,
            },
            LinkTx {
                link: self.link,
                to_server: self.is_client,
            },
        ))
    }

    fn transmit(&mut self, _now: SmolInstant) -> Option<LinkTx<'_>> {
        Some(LinkTx {
            link: self.link,
            to_server: self.is_client,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = MTU;
        // `checksum` stays at its default: computed on transmit, verified on receive.
        caps
    }
}

fn smol_addr(a: Ipv4Addr) -> IpAddress {
    IpAddress::Ipv4(a)
}

fn smol_iface(dev: &mut LinkEnd<'_>, addr: Ipv4Addr, seed: u64) -> Interface {
    let mut cfg = SmolConfig::new(HardwareAddress::Ip);
    cfg.random_seed = seed;
    let mut iface = Interface::new(cfg, dev, SmolInstant::ZERO);
    iface.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::new(smol_addr(addr), 24))
            .expect("address");
    });
    iface
}

fn smol_socket() -> smol_tcp::Socket<'static> {
    smol_tcp::Socket::new(
        smol_tcp::SocketBuffer::new(vec![0u8; SOCKBUF]),
        smol_tcp::SocketBuffer::new(vec![0u8; SOCKBUF]),
    )
}

fn smol_now(us: u64) -> SmolInstant {
    SmolInstant::from_micros(us as i64)
}

/// The same transfer through two smoltcp interfaces.
pub fn smoltcp_transfer(src: &Source, total: usize, verify: bool) -> Outcome {
    let link = RefCell::new(Link::default());
    let mut cdev = LinkEnd {
        link: &link,
        is_client: true,
    };
    let mut sdev = LinkEnd {
        link: &link,
        is_client: false,
    };
    let mut ciface = smol_iface(&mut cdev, CLIENT, 1);
    let mut siface = smol_iface(&mut sdev, SERVER, 2);
    let mut csockets = SocketSet::new(vec![]);
    let mut ssockets = SocketSet::new(vec![]);
    let ch = csockets.add(smol_socket());
    let sh = ssockets.add(smol_socket());
    ssockets
        .get_mut::<smol_tcp::Socket>(sh)
        .listen(PORT)
        .expect("listen");
    csockets
        .get_mut::<smol_tcp::Socket>(ch)
        .connect(ciface.context(), (smol_addr(SERVER), PORT), CLIENT_PORT)
        .expect("connect");

    let mut now_us = 0u64;
    let mut dst = vec![0u8; USER_CHUNK];
    let mut out = Outcome {
        bufs: (
            ssockets.get::<smol_tcp::Socket>(sh).recv_capacity(),
            csockets.get::<smol_tcp::Socket>(ch).send_capacity(),
        ),
        ..Outcome::default()
    };
    let (mut sent, mut got) = (0usize, 0usize);

    while got < total {
        out.rounds += 1;
        assert!(out.rounds < MAX_ROUNDS, "smoltcp transfer stuck");
        let mut progress = false;
        let now = smol_now(now_us);

        {
            let cs = csockets.get_mut::<smol_tcp::Socket>(ch);
            while sent < total && cs.can_send() {
                match cs.send_slice(src.chunk(sent, total - sent)) {
                    Ok(0) => break,
                    Ok(n) => {
                        sent += n;
                        progress = true;
                    }
                    Err(e) => panic!("send: {e:?}"),
                }
            }
        }
        {
            let ss = ssockets.get_mut::<smol_tcp::Socket>(sh);
            while ss.can_recv() {
                match ss.recv_slice(&mut dst) {
                    Ok(0) => break,
                    Ok(n) => {
                        if verify {
                            assert_eq!(&dst[..n], src.chunk(got, n), "smoltcp: corrupted");
                        }
                        black_box(&dst[..n]);
                        got += n;
                        progress = true;
                    }
                    Err(e) => panic!("recv: {e:?}"),
                }
            }
        }

        // Network: the client's interface emits into the link, the server's consumes that and
        // answers, and the client takes the answers on its next round.
        let emitted = link.borrow().segs.packets;
        ciface.poll(now, &mut cdev, &mut csockets);
        siface.poll(now, &mut sdev, &mut ssockets);
        if link.borrow().segs.packets != emitted {
            progress = true;
        }

        if !progress {
            // `poll_at` reports "now" as time zero; treat anything due as due now.
            let next = [
                ciface.poll_at(now, &csockets),
                siface.poll_at(now, &ssockets),
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("both interfaces idle with the transfer unfinished");
            now_us = (next.total_micros().max(0) as u64).max(now_us + 1);
            out.time_jumps += 1;
        }
    }
    out.bytes = got;
    out.segs = link.borrow().segs;
    out.virtual_us = now_us;
    out
}

//! The body of the `ackchan_frames` target: arbitrary and mutated ack-channel frames into an
//! [`AckChannel`] and, as UDP to port 7407, into a [`Host`].
//!
//! # Input format
//!
//! Byte 0 picks the harness (`% 2`): 0 the bare channel, 1 a host. Then operations, each a tag
//! byte (`% count`) and its fields ([`Rd`]: little-endian, blobs as a `u16` length and bytes).
//!
//! Channel (`a` is replica 1 with peers 2 and 3, `b` is replica 2; `b` has already sent `a`
//! one payload, so both know each other's session; "captured" frames are `b`'s frames to `a`):
//!
//! | tag | operation | fields |
//! |-----|-----------|--------|
//! | 0 | raw frame to `a` | blob |
//! | 1 | a captured frame with bytes flipped | `idx: u8`, `n: u8`, `n % 4 + 1` × (`pos: u16`, `xor: u8`) |
//! | 2 | a captured frame with a field changed and the MAC made right again | `idx: u8`, `field: u8`, `value: u64` |
//! | 3 | a captured frame again | `idx: u8` |
//! | 4 | exchange `b` → `a` and `a` → `b` | `mask: u8` (bit `i % 8` set: `b`'s `i`-th frame is lost) |
//! | 5 | `b` queues a payload for `a` | `len: u16` |
//! | 6 | `b` heartbeats | `len: u8` |
//! | 7 | time passes | `ms: u16` |
//! | 8 | `a` raises its epoch | `e: u8` |
//! | 9 | `b` raises its epoch | `e: u8` |
//! | 10 | a captured frame cut short | `idx: u8`, `len: u16` |
//! | 11 | a captured frame with bytes appended | `idx: u8`, blob |
//! | 12 | a captured frame re-MACed with another key | `idx: u8`, `key: u8` |
//! | 13 | `a` queues a payload for `b` | `len: u16` |
//!
//! Host (rank `local` = byte 1 `% 2`; the fuzzer's peer channel `p` is the other of ranks 0 and
//! 1; rank 2 is a member that never speaks; the host serves 192.0.2.80:80 for client
//! 203.0.113.10 through redirector 198.51.100.1):
//!
//! | tag | operation | fields |
//! |-----|-----------|--------|
//! | 0 | raw UDP payload to port 7407 from `p`'s address | blob |
//! | 1 | the same from an address that is no member | blob |
//! | 2 | `p` sends FT messages | `n: u8`, `n % 8 + 1` × (`kind: u8`, `conn: u8`, `a: u32`, `b: u32`) |
//! | 3 | `p` heartbeats | `rank: u8`, `flags: u8` |
//! | 4 | `p` raises its epoch | `e: u32` |
//! | 5 | exchange `p` ↔ host | `mask: u8` |
//! | 6 | time passes (the host's timers run) | `ms: u16` |
//! | 7 | a client segment, tunnelled by the redirector | `port: u8`, `flags: u8`, `seq: u32`, `ack: u8`, `ackv: u32`, `len: u16` |
//! | 8 | a raw IPv4 packet to the host | blob |
//! | 9 | a captured frame of `p` again | `idx: u8` |
//! | 10 | a captured frame with a field changed and the MAC made right again | `idx: u8`, `field: u8`, `value: u64` |
//! | 11 | UDP to port 7407 from `p` with a wrong UDP checksum | blob |
//!
//! # What is checked
//!
//! No panic. Every frame counts once in `frames_in` and at most once in the drop counters;
//! a frame that an independent check finds malformed, of another group or with a bad MAC
//! (HMAC-SHA256 computed here with the `hmac` crate) is counted as exactly that and delivers
//! nothing; what is delivered is the frame's own payload, from its sender, in its epoch;
//! without frames the harness forged with the key, `b`'s payloads arrive in order, none
//! twice and (unless `a`'s epoch was raised past `b`'s, which consumes frames) none missing,
//! and heartbeat counters only grow. Every frame a channel emits verifies independently.
//! `poll_transmit` runs dry within a bound. For the host: every UDP datagram to 7407 counts
//! in `chan_in`, and in the group channel's `frames_in` when it comes from a member (in
//! `chan_malformed` otherwise); one that does not authenticate changes neither role, epoch
//! nor any FT message counter; a backup sends nothing to the client.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::Ipv4Addr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use hydranet_core::ft::ackchan::{
    AckChanConfig, AckChanStats, AckChannel, GroupKey, Received, MAX_FRAME_LEN,
    MAX_HEARTBEAT_PAYLOAD, MAX_PAYLOAD, SEND_WINDOW,
};
use hydranet_core::ft::host::{listen_on, GroupConfig, Host, Member, Role, ACKCHAN_PORT};
use hydranet_core::ft::params::{DetectorParams, PortMode};
use hydranet_core::stack::Stack;
use hydranet_core::wire::{ipip, ipv4, tcp, udp};
use hydranet_core::{Duration, Instant};

use crate::rd::Rd;

pub const GROUP: u32 = 7;
pub const HEADER_LEN: usize = 46;
pub const MAC_LEN: usize = 16;

pub fn key() -> GroupKey {
    core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xa5)
}

// --------------------------------------------------------------------------------------------
// Frames, read and written independently of the core (the table in ft/ackchan.rs).

/// A frame's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub src: u8,
    pub dst: u8,
    pub group: u32,
    pub epoch: u32,
    pub src_sess: u64,
    pub dst_sess: u64,
    pub number: u64,
    pub aux: u64,
    pub payload: Vec<u8>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// The length, version, kind and payload-length rules.
pub fn well_formed(f: &[u8]) -> bool {
    if f.len() < HEADER_LEN + MAC_LEN || f.len() > MAX_FRAME_LEN || f[0] != 1 {
        return false;
    }
    let len = usize::from(u16::from_be_bytes([f[44], f[45]]));
    let max = match f[1] {
        1 => MAX_PAYLOAD,
        2 => 0,
        3 => MAX_HEARTBEAT_PAYLOAD,
        _ => return false,
    };
    len <= max && f.len() == HEADER_LEN + MAC_LEN + len
}

pub fn decode(f: &[u8]) -> Option<Frame> {
    if !well_formed(f) {
        return None;
    }
    Some(Frame {
        kind: f[1],
        src: f[2],
        dst: f[3],
        group: be32(f, 4),
        epoch: be32(f, 8),
        src_sess: be64(f, 12),
        dst_sess: be64(f, 20),
        number: be64(f, 28),
        aux: be64(f, 36),
        payload: f[HEADER_LEN..f.len() - MAC_LEN].to_vec(),
    })
}

fn tag(key: &GroupKey, body: &[u8]) -> [u8; MAC_LEN] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    m.update(body);
    m.finalize().into_bytes()[..MAC_LEN].try_into().unwrap()
}

/// Whether the frame's last 16 bytes are the truncated HMAC of everything before them.
pub fn mac_ok(key: &GroupKey, f: &[u8]) -> bool {
    f.len() >= MAC_LEN && tag(key, &f[..f.len() - MAC_LEN]) == f[f.len() - MAC_LEN..]
}

/// Header, payload and MAC; the length field is the payload's (so a kind/length mismatch can
/// still be written by the caller changing `kind`).
pub fn seal(key: &GroupKey, fr: &Frame) -> Vec<u8> {
    let mut f = vec![1, fr.kind, fr.src, fr.dst];
    f.extend_from_slice(&fr.group.to_be_bytes());
    f.extend_from_slice(&fr.epoch.to_be_bytes());
    f.extend_from_slice(&fr.src_sess.to_be_bytes());
    f.extend_from_slice(&fr.dst_sess.to_be_bytes());
    f.extend_from_slice(&fr.number.to_be_bytes());
    f.extend_from_slice(&fr.aux.to_be_bytes());
    f.extend_from_slice(&(fr.payload.len().min(0xffff) as u16).to_be_bytes());
    f.extend_from_slice(&fr.payload);
    let t = tag(key, &f);
    f.extend_from_slice(&t);
    f
}

/// `field % 12` of `fr` set from `v` (small values near the current one are as likely as
/// arbitrary ones: the interesting cases are off by one).
pub fn mutate(fr: &mut Frame, field: u8, v: u64) {
    let near = |cur: u64| -> u64 {
        if v & 1 == 0 {
            cur.wrapping_add(((v >> 1) as i8) as u64)
        } else {
            v >> 1
        }
    };
    match field % 12 {
        0 => fr.kind = v as u8,
        1 => fr.src = v as u8,
        2 => fr.dst = v as u8,
        3 => fr.group = near(u64::from(fr.group)) as u32,
        4 => fr.epoch = near(u64::from(fr.epoch)) as u32,
        5 => fr.src_sess = near(fr.src_sess),
        6 => fr.dst_sess = near(fr.dst_sess),
        7 => fr.number = near(fr.number),
        8 => fr.aux = near(fr.aux),
        9 => fr.payload.truncate(v as usize % (fr.payload.len() + 1)),
        10 => fr
            .payload
            .extend((0..(v % 80) as usize).map(|i| (i as u8) ^ (v >> 8) as u8)),
        _ => {
            // Two fields at once: sessions and numbers move together in a real restart.
            fr.src_sess = near(fr.src_sess);
            fr.number = (v >> 16) % 64;
        }
    }
}

fn drops(s: &AckChanStats) -> [u64; 8] {
    [
        s.forged,
        s.replayed,
        s.stale_epoch,
        s.malformed,
        s.wrong_group,
        s.unknown_peer,
        s.duplicates,
        s.out_of_order,
    ]
}

/// What a frame delivered, owned.
#[derive(Debug)]
enum Got {
    /// Not known: the host took the frame (its counters are still checked).
    Unknown,
    Nothing,
    Data(u8, u32, Vec<u8>),
    Heartbeat(u8, u32, Vec<u8>),
}

/// `chan.handle_frame` with the per-frame accounting checks; returns what it delivered.
fn feed(chan: &mut AckChannel, now: Instant, frame: &[u8]) -> Got {
    let before = chan.stats().clone();
    let got = match chan.handle_frame(now, frame) {
        None => Got::Nothing,
        Some(Received::Data {
            from,
            epoch,
            payload,
        }) => Got::Data(from, epoch, payload.to_vec()),
        Some(Received::Heartbeat {
            from,
            epoch,
            payload,
        }) => Got::Heartbeat(from, epoch, payload.to_vec()),
    };
    let after = chan.stats().clone();
    check_accounting(&before, &after, frame, &got);
    got
}

fn check_accounting(before: &AckChanStats, after: &AckChanStats, frame: &[u8], got: &Got) {
    assert_eq!(after.frames_in, before.frames_in + 1, "frames_in");
    let d: Vec<u64> = drops(after)
        .iter()
        .zip(drops(before))
        .map(|(a, b)| a - b)
        .collect();
    let dropped: u64 = d.iter().sum();
    let delivered = after.delivered - before.delivered;
    assert!(dropped <= 1, "one frame counted {dropped} times: {d:?}");
    assert!(delivered <= 1);
    assert!(
        dropped + delivered <= 1,
        "a frame delivered and counted as dropped: {d:?}"
    );
    if !matches!(got, Got::Unknown) {
        assert_eq!(
            delivered == 1,
            matches!(got, Got::Data(..)),
            "delivered counter and result disagree"
        );
    }
    if !matches!(got, Got::Nothing | Got::Unknown) {
        assert_eq!(
            dropped, 0,
            "a frame delivered and counted as dropped: {d:?}"
        );
    }
    // Independently: what can be rejected before the MAC is rejected as exactly that.
    let [forged, _, _, malformed, wrong_group, ..] = d[..] else {
        unreachable!()
    };
    let key = key();
    let fr = decode(frame);
    match &fr {
        None => assert_eq!((malformed, dropped), (1, 1), "malformed frame: {d:?}"),
        Some(f) if f.group != GROUP => assert_eq!((wrong_group, dropped), (1, 1)),
        Some(_) if !mac_ok(&key, frame) => assert_eq!((forged, dropped), (1, 1), "{d:?}"),
        Some(_) => assert_eq!(
            malformed + wrong_group + forged,
            0,
            "authentic frame: {d:?}"
        ),
    }
    if delivered == 1 {
        assert!(
            fr.as_ref().is_some_and(|f| f.kind == 1) && mac_ok(&key, frame),
            "delivered a frame that is no authentic DATA frame"
        );
    }
    match got {
        Got::Nothing | Got::Unknown => {}
        Got::Data(from, epoch, payload) | Got::Heartbeat(from, epoch, payload) => {
            let f = fr.expect("a malformed frame delivered something");
            assert!(mac_ok(&key, frame), "an unauthenticated frame delivered");
            let kind = if matches!(got, Got::Data(..)) { 1 } else { 3 };
            assert_eq!(f.kind, kind);
            assert_eq!((f.src, f.epoch), (*from, *epoch));
            assert_eq!(&f.payload, payload);
        }
    }
}

/// Every frame a channel emits, checked independently: well formed, our group, right MAC,
/// from the channel's own id to the peer it names.
fn check_emitted(frame: &[u8], from: u8, to: u8) {
    let f = decode(frame).expect("the channel emitted a malformed frame");
    assert!(
        mac_ok(&key(), frame),
        "the channel emitted a frame with a bad MAC"
    );
    assert_eq!((f.group, f.src, f.dst), (GROUP, from, to));
}

/// Bound on what `poll_transmit` may emit without input or time passing: per peer an ACK, a
/// window of DATA and a heartbeat.
const DRAIN_BOUND: usize = 8 * (SEND_WINDOW + 2);

// --------------------------------------------------------------------------------------------
// The bare channel.

struct Chan {
    a: Box<AckChannel>,
    b: Box<AckChannel>,
    now: Instant,
    /// `b`'s frames to `a` (the last 64).
    captured: Vec<Vec<u8>>,
    /// Payloads `b` queued for `a`, by the counter in their first 8 bytes.
    sent: BTreeMap<u64, Vec<u8>>,
    /// `b`'s epoch when it queued each payload (the epoch its frames carry).
    sent_epoch: BTreeMap<u64, u32>,
    next_counter: u64,
    last_delivered: u64,
    last_hb: Option<u64>,
    /// The harness fed `a` frames it sealed with the key: `a` may rightly act on them.
    forged_with_key: bool,
    /// `a`'s epoch went above that of `b` or of a payload `b` had queued and `a` had not yet
    /// received: `a` consumes (acknowledges without delivering) such frames.
    skewed: bool,
    buf: Vec<u8>,
}

impl Chan {
    fn new() -> Chan {
        let mut a = Box::new(AckChannel::new(
            1,
            GROUP,
            key(),
            1,
            AckChanConfig::default(),
        ));
        a.add_peer(2).unwrap();
        a.add_peer(3).unwrap();
        let mut b = Box::new(AckChannel::new(
            2,
            GROUP,
            key(),
            5,
            AckChanConfig::default(),
        ));
        b.add_peer(1).unwrap();
        let mut c = Chan {
            a,
            b,
            now: Instant::from_millis(1),
            captured: Vec::new(),
            sent: BTreeMap::new(),
            sent_epoch: BTreeMap::new(),
            next_counter: 1,
            last_delivered: 0,
            last_hb: None,
            forged_with_key: false,
            skewed: false,
            buf: vec![0; MAX_FRAME_LEN],
        };
        c.b_send(12);
        for _ in 0..4 {
            c.exchange(0);
        }
        c
    }

    fn b_send(&mut self, len: usize) {
        let len = len.clamp(8, MAX_PAYLOAD);
        let counter = self.next_counter;
        let mut p = counter.to_be_bytes().to_vec();
        p.extend((8..len).map(|i| (i as u8) ^ (counter as u8)));
        if self.b.send(self.now, 1, &p).is_ok() {
            self.sent.insert(counter, p);
            self.sent_epoch.insert(counter, self.b.epoch());
            self.next_counter += 1;
        }
    }

    fn deliver_to_a(&mut self, frame: &[u8]) {
        // A frame sealed with the key that `b` did not send (the fuzzer's or a seed's) is
        // authentic: `a` may rightly deliver it, so the stream checks end here.
        if mac_ok(&key(), frame) && !self.captured.iter().any(|c| c == frame) {
            self.forged_with_key = true;
        }
        let got = feed(&mut self.a, self.now, frame);
        if self.forged_with_key {
            return;
        }
        match got {
            Got::Nothing | Got::Unknown => {}
            Got::Data(from, _, payload) => {
                assert_eq!(from, 2, "data from a replica that sent none");
                let counter = u64::from_be_bytes(payload[..8].try_into().unwrap());
                assert_eq!(self.sent.get(&counter), Some(&payload), "not what b sent");
                assert!(
                    counter > self.last_delivered,
                    "payload {counter} delivered again or out of order (last {})",
                    self.last_delivered
                );
                if !self.skewed {
                    assert_eq!(counter, self.last_delivered + 1, "a payload went missing");
                }
                self.last_delivered = counter;
            }
            Got::Heartbeat(from, _, _) => {
                assert_eq!(from, 2);
                let n = be64(frame, 28);
                assert!(self.last_hb.is_none_or(|l| n > l), "heartbeat {n} again");
                self.last_hb = Some(n);
            }
        }
    }

    fn captured(&self, idx: u8) -> Option<Vec<u8>> {
        if self.captured.is_empty() {
            return None;
        }
        Some(self.captured[usize::from(idx) % self.captured.len()].clone())
    }

    fn exchange(&mut self, mask: u8) {
        let mut n = 0;
        while let Some((dst, len)) = self.b.poll_transmit(self.now, &mut self.buf) {
            assert!(n < DRAIN_BOUND, "b's poll_transmit does not run dry");
            let f = self.buf[..len].to_vec();
            check_emitted(&f, 2, dst);
            assert_eq!(dst, 1);
            if self.captured.len() == 64 {
                self.captured.remove(0);
            }
            self.captured.push(f.clone());
            if mask & (1 << (n % 8)) == 0 {
                self.deliver_to_a(&f);
            }
            n += 1;
        }
        let mut n = 0;
        while let Some((dst, len)) = self.a.poll_transmit(self.now, &mut self.buf) {
            assert!(n < DRAIN_BOUND, "a's poll_transmit does not run dry");
            let f = self.buf[..len].to_vec();
            check_emitted(&f, 1, dst);
            if dst == 2 {
                let _ = feed(&mut self.b, self.now, &f);
            }
            n += 1;
        }
    }

    fn apply(&mut self, tag: u8, r: &mut Rd<'_>) -> Option<()> {
        match tag % 14 {
            0 => {
                let f = r.blob(MAX_FRAME_LEN + 64)?;
                self.deliver_to_a(f);
            }
            1 => {
                let idx = r.u8()?;
                let n = r.u8()? % 4 + 1;
                let mut f = self.captured(idx)?;
                for _ in 0..n {
                    let pos = usize::from(r.u16()?) % f.len();
                    f[pos] ^= r.u8()?;
                }
                self.deliver_to_a(&f);
            }
            2 => {
                let (idx, field, v) = (r.u8()?, r.u8()?, r.u64()?);
                let mut fr = decode(&self.captured(idx)?)?;
                mutate(&mut fr, field, v);
                let f = seal(&key(), &fr);
                self.forged_with_key = true;
                self.deliver_to_a(&f);
            }
            3 => {
                let f = self.captured(r.u8()?)?;
                self.deliver_to_a(&f);
            }
            4 => self.exchange(r.u8()?),
            5 => self.b_send(usize::from(r.u16()?)),
            6 => {
                let len = usize::from(r.u8()?) % (MAX_HEARTBEAT_PAYLOAD + 8);
                let p: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let ok = self.b.heartbeat(self.now, &p).is_ok();
                assert_eq!(ok, len <= MAX_HEARTBEAT_PAYLOAD);
            }
            7 => self.now += Duration::from_millis(u64::from(r.u16()?)),
            8 => {
                let e = self.a.epoch().max(u32::from(r.u8()?));
                self.a.set_epoch(e);
                self.skewed |= e > self.b.epoch()
                    || self
                        .sent_epoch
                        .range(self.last_delivered + 1..)
                        .any(|(_, &q)| q < e);
            }
            9 => {
                let e = self.b.epoch().max(u32::from(r.u8()?));
                self.b.set_epoch(e);
            }
            10 => {
                let idx = r.u8()?;
                let f = self.captured(idx)?;
                let k = usize::from(r.u16()?) % f.len();
                self.deliver_to_a(&f[..k]);
            }
            11 => {
                let mut f = self.captured(r.u8()?)?;
                f.extend_from_slice(r.blob(256)?);
                self.deliver_to_a(&f);
            }
            12 => {
                let f = self.captured(r.u8()?)?;
                let mut other = key();
                other[usize::from(r.u8()?) % 32] ^= 0x80;
                let fr = decode(&f)?;
                let g = seal(&other, &fr);
                self.deliver_to_a(&g);
            }
            _ => {
                let len = usize::from(r.u16()?) % (MAX_PAYLOAD + 1);
                let _ = self.a.send(self.now, 2, &vec![0x5c; len]);
            }
        }
        Some(())
    }
}

pub fn channel(r: &mut Rd<'_>) {
    let mut c = Chan::new();
    while let Some(t) = r.u8() {
        if c.apply(t, r).is_none() {
            break;
        }
    }
    c.exchange(0);
    black_box(c.a.stats());
}

// --------------------------------------------------------------------------------------------
// A host server.

pub const ORIGIN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const REDIRECTOR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const STRANGER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 99);
pub const PORT: u16 = 80;

pub fn member_addr(rank: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 10 + rank)
}

/// A host server that is replica `local` of a three-member group, serving `ORIGIN:80` behind
/// `REDIRECTOR`, with a listener.
pub fn make_host(local: u8, seed: u8) -> Host<'static> {
    let members: Vec<Member> = (0..3)
        .map(|rank| Member {
            rank,
            addr: member_addr(rank),
        })
        .collect();
    let mut s = [0u8; 16];
    s[0] = seed;
    s[15] = local + 1;
    let mut host = Host::new(Stack::new_alloc(s), member_addr(local)).unwrap();
    host.v_host(ORIGIN).unwrap();
    host.add_redirector(REDIRECTOR).unwrap();
    host.ft_group(
        ORIGIN,
        PORT,
        &GroupConfig {
            group_id: GROUP,
            local_rank: local,
            members: &members,
            key: key(),
            incarnation: 1,
        },
    )
    .unwrap();
    let mode = if local == 0 {
        PortMode::Primary
    } else {
        PortMode::Backup
    };
    host.setportopt(ORIGIN, PORT, mode, DetectorParams::default())
        .unwrap();
    listen_on(&mut host.stack, ORIGIN, PORT, 16).unwrap();
    host
}

/// An IPv4/UDP packet (checksums right).
pub fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; payload.len() + 28];
    let n = udp::emit_ipv4_udp(src, dst, dport, dport, payload, 64, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// The FT layer's counters that only authenticated input may move.
fn ft_state(h: &Host<'_>) -> impl PartialEq + std::fmt::Debug {
    let s = &h.stats;
    (
        h.role(ORIGIN, PORT),
        h.epoch(ORIGIN, PORT),
        s.progress_rcvd,
        s.deliver_rcvd,
        s.missing_rcvd,
        s.chan_msgs_bad,
        s.step_downs,
    )
}

/// Known bug 8 (regressions/README.md): a takeover after an epoch within 16 of `u32::MAX`
/// overflows in `takeover_epoch`. Steering: the peer's epochs stay below that.
fn cap_epoch(e: u32) -> u32 {
    if crate::avoid(8) {
        e.min(u32::MAX - 64)
    } else {
        e
    }
}

struct HostH {
    host: Host<'static>,
    local: u8,
    /// The fuzzer's replica: rank `p`.
    peer: Box<AckChannel>,
    p: u8,
    now: Instant,
    captured: Vec<Vec<u8>>,
    /// The host's ISS toward each client port, from its SYN-ACKs.
    iss: BTreeMap<u16, u32>,
    buf: Vec<u8>,
}

impl HostH {
    fn new(local: u8, seed: u8) -> HostH {
        let p = 1 - local;
        let mut peer = Box::new(AckChannel::new(
            p,
            GROUP,
            key(),
            3,
            AckChanConfig::default(),
        ));
        peer.add_peer(local).unwrap();
        HostH {
            host: make_host(local, seed),
            local,
            peer,
            p,
            now: Instant::from_millis(1),
            captured: Vec::new(),
            iss: BTreeMap::new(),
            buf: vec![0; 70_000],
        }
    }

    /// A UDP datagram to the ack-channel port, with the accounting checks.
    fn chan_udp(&mut self, from: Ipv4Addr, frame: &[u8]) {
        let member = (0..3).any(|r| member_addr(r) == from);
        let before = self.host.stats.clone();
        let chan_before = self.host.chan_stats(ORIGIN, PORT).unwrap().clone();
        let state = ft_state(&self.host);
        let pkt = udp_packet(from, self.host.addr, ACKCHAN_PORT, frame);
        self.host.handle_packet(self.now, &pkt);
        let after = &self.host.stats;
        let chan_after = self.host.chan_stats(ORIGIN, PORT).unwrap();
        assert_eq!(after.chan_in, before.chan_in + 1, "chan_in");
        if member {
            assert_eq!(chan_after.frames_in, chan_before.frames_in + 1);
            assert_eq!(after.chan_malformed, before.chan_malformed);
            check_accounting(&chan_before, chan_after, frame, &Got::Unknown);
        } else {
            assert_eq!(chan_after.frames_in, chan_before.frames_in);
            assert_eq!(after.chan_malformed, before.chan_malformed + 1);
        }
        let authentic = decode(frame).is_some_and(|f| f.group == GROUP) && mac_ok(&key(), frame);
        if !(member && authentic) {
            assert_eq!(
                ft_state(&self.host),
                state,
                "an unauthenticated datagram changed the FT state"
            );
        }
    }

    fn drain_host(&mut self, mask: u8) {
        let mut n = 0;
        while let Some(len) = self.host.poll_transmit(self.now, &mut self.buf) {
            n += 1;
            assert!(n < 10_000, "the host's poll_transmit does not run dry");
            let pkt = self.buf[..len].to_vec();
            let (ip, payload) = ipv4::Ipv4Header::parse(&pkt).expect("the host sent a bad packet");
            if ip.dst == CLIENT {
                assert_ne!(
                    self.host.role(ORIGIN, PORT),
                    Some(Role::Backup),
                    "a backup sent a segment to the client"
                );
                let seg = tcp::parse_segment(payload, ip.src, ip.dst, true)
                    .expect("the host sent a bad segment");
                let h = seg.header;
                if h.flags.contains(tcp::TcpFlags::SYN) {
                    self.iss.insert(h.dst_port, h.seq);
                }
            } else if ip.dst == member_addr(self.p) && ip.protocol == ipv4::PROTO_UDP {
                let (uh, frame) = udp::parse_datagram(payload, ip.src, ip.dst, true)
                    .expect("the host sent a bad datagram");
                assert_eq!(uh.dst_port, ACKCHAN_PORT);
                check_emitted(frame, self.local, self.p);
                if mask & (1 << (n % 8)) == 0 {
                    let _ = feed(&mut self.peer, self.now, frame);
                }
            }
        }
    }

    fn exchange(&mut self, mask: u8) {
        let mut n = 0;
        while let Some((dst, len)) = self.peer.poll_transmit(self.now, &mut self.buf) {
            assert!(n < DRAIN_BOUND);
            let f = self.buf[..len].to_vec();
            check_emitted(&f, self.p, dst);
            if self.captured.len() == 64 {
                self.captured.remove(0);
            }
            self.captured.push(f.clone());
            if mask & (1 << (n % 8)) == 0 {
                self.chan_udp(member_addr(self.p), &f);
            }
            n += 1;
        }
        self.drain_host(mask.rotate_left(3));
    }

    fn captured(&self, idx: u8) -> Option<Vec<u8>> {
        if self.captured.is_empty() {
            return None;
        }
        Some(self.captured[usize::from(idx) % self.captured.len()].clone())
    }

    fn apply(&mut self, tag: u8, r: &mut Rd<'_>) -> Option<()> {
        match tag % 12 {
            0 => {
                let f = r.blob(MAX_FRAME_LEN + 64)?;
                self.chan_udp(member_addr(self.p), f);
            }
            1 => {
                let f = r.blob(MAX_FRAME_LEN + 64)?;
                self.chan_udp(STRANGER, f);
            }
            2 => {
                let n = r.u8()? % 8 + 1;
                let mut payload = Vec::new();
                for _ in 0..n {
                    let kind = r.u8()?;
                    let conn = r.u8()?;
                    let (a, b) = (r.u32()?, r.u32()?);
                    let port = 40000 + u16::from(conn % 4);
                    let a = match self.iss.get(&port) {
                        // Near what the host really has: rcv_nxt/upto around its peer's ISS.
                        Some(_) if kind & 0x80 != 0 => a % 4096,
                        _ => a,
                    };
                    payload.push(if kind & 0x40 != 0 { kind } else { kind % 3 + 1 });
                    let addr = if conn & 0x80 != 0 { STRANGER } else { CLIENT };
                    payload.extend_from_slice(&addr.octets());
                    payload.extend_from_slice(&port.to_be_bytes());
                    payload.extend_from_slice(&a.to_be_bytes());
                    payload.extend_from_slice(&b.to_be_bytes());
                }
                let _ = self.peer.send(self.now, self.local, &payload);
                self.exchange(0);
            }
            3 => {
                let (rank, flags) = (r.u8()?, r.u8()?);
                let _ = self.peer.heartbeat(self.now, &[rank, flags]);
                self.exchange(0);
            }
            4 => {
                let e = cap_epoch(r.u32()?);
                self.peer.set_epoch(self.peer.epoch().max(e));
            }
            5 => self.exchange(r.u8()?),
            6 => {
                self.now += Duration::from_millis(u64::from(r.u16()?));
                self.host.handle_timeout(self.now);
                self.drain_host(0);
            }
            7 => {
                let port = 40000 + u16::from(r.u8()? % 4);
                let flags = r.u8()?;
                let seq = r.u32()?;
                let ack_sel = r.u8()?;
                let ackv = r.u32()?;
                let len = usize::from(r.u16()?) % 1400;
                let ack = match self.iss.get(&port) {
                    Some(&iss) if ack_sel & 1 == 0 => iss.wrapping_add(1).wrapping_add(ackv % 64),
                    _ => ackv,
                };
                let th = tcp::TcpHeader {
                    src_port: port,
                    dst_port: PORT,
                    seq,
                    ack,
                    flags: tcp::TcpFlags(u16::from(flags)),
                    window: 65535,
                    ..tcp::TcpHeader::default()
                };
                let payload = vec![0x61; len];
                let mut seg = vec![0u8; 20 + len];
                let n = tcp::emit_segment(&th, &[], &payload, CLIENT, ORIGIN, &mut seg).ok()?;
                let mut inner = vec![0u8; 20 + n];
                ipv4::Ipv4Header::new(CLIENT, ORIGIN, ipv4::PROTO_TCP, n, 64)
                    .emit(&mut inner)
                    .ok()?;
                inner[20..].copy_from_slice(&seg[..n]);
                let mut outer = vec![0u8; inner.len() + 20];
                let m =
                    ipip::encapsulate(REDIRECTOR, self.host.addr, &inner, 64, &mut outer).ok()?;
                let before = self.host.stats.tunneled_in;
                self.host.handle_packet(self.now, &outer[..m]);
                assert_eq!(self.host.stats.tunneled_in, before + 1);
                self.drain_host(0);
            }
            8 => {
                let p = r.blob(1600)?;
                self.host.handle_packet(self.now, p);
                self.drain_host(0);
            }
            9 => {
                let f = self.captured(r.u8()?)?;
                self.chan_udp(member_addr(self.p), &f);
            }
            10 => {
                let (idx, field, v) = (r.u8()?, r.u8()?, r.u64()?);
                let mut fr = decode(&self.captured(idx)?)?;
                mutate(&mut fr, field, v);
                fr.epoch = cap_epoch(fr.epoch);
                let f = seal(&key(), &fr);
                self.chan_udp(member_addr(self.p), &f);
                self.drain_host(0);
            }
            _ => {
                let f = r.blob(MAX_FRAME_LEN)?;
                let mut pkt = udp_packet(member_addr(self.p), self.host.addr, ACKCHAN_PORT, f);
                // A non-zero wrong checksum (0 would mean "none").
                pkt[26] ^= 0x01;
                if pkt[26] == 0 && pkt[27] == 0 {
                    pkt[27] = 1;
                }
                let before = self.host.stats.chan_in;
                self.host.handle_packet(self.now, &pkt);
                assert_eq!(self.host.stats.chan_in, before, "bad UDP checksum accepted");
            }
        }
        Some(())
    }
}

pub fn host(r: &mut Rd<'_>) {
    let local = r.u8().unwrap_or(0) % 2;
    let mut h = HostH::new(local, 1);
    while let Some(t) = r.u8() {
        if h.apply(t, r).is_none() {
            break;
        }
    }
    h.exchange(0);
    black_box(&h.host.stats);
}

pub fn run(data: &[u8]) {
    let mut r = Rd(data);
    match r.u8() {
        Some(m) if m % 2 == 1 => host(&mut r),
        _ => channel(&mut r),
    }
}

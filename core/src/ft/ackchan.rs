//! The acknowledgement channel: a reliable, ordered, authenticated datagram channel between the
//! replicas of one HydraNet-FT group (DESIGN.md section 4).
//!
//! The channel is sans-IO like the rest of the core. The caller carries its frames in UDP
//! payloads: [`AckChannel::poll_transmit`] writes the next frame into a buffer and names the
//! peer it is for, [`AckChannel::handle_frame`] takes a received UDP payload, and
//! [`AckChannel::poll_timeout`] says when to call `poll_transmit` again if nothing arrives.
//! It allocates nothing, never panics on any input and uses no floating point.
//!
//! # Frame format, version 1
//!
//! Every frame is one UDP payload. Integers are big-endian (network order).
//!
//! | offset | size | field             | meaning                                                      |
//! |--------|------|-------------------|--------------------------------------------------------------|
//! | 0      | 1    | `version`         | [`ACKCHAN_VERSION`] (1)                                      |
//! | 1      | 1    | `kind`            | 1 DATA, 2 ACK, 3 HEARTBEAT (others: malformed)               |
//! | 2      | 1    | `src`             | sender's replica id                                          |
//! | 3      | 1    | `dst`             | receiver's replica id                                        |
//! | 4      | 4    | `group`           | replica group id                                             |
//! | 8      | 4    | `epoch`           | view number (see *Epochs*)                                   |
//! | 12     | 4    | `src_incarnation` | sender's incarnation                                         |
//! | 16     | 4    | `src_generation`  | sender's generation for this peer (*Sessions*)               |
//! | 20     | 4    | `dst_incarnation` | receiver's incarnation as known to the sender, 0 = unknown   |
//! | 24     | 4    | `dst_generation`  | receiver's generation as known to the sender, 0 = unknown    |
//! | 28     | 8    | `number`          | DATA: sequence no.; ACK: cumulative ack; HEARTBEAT: counter  |
//! | 36     | 8    | `tx`              | DATA: transmission no.; ACK: negative-ack echo; HEARTBEAT: 0 |
//! | 44     | 2    | `length`          | payload length `n`                                           |
//! | 46     | n    | `payload`         | DATA: 0..=1024 bytes; ACK: none; HEARTBEAT: 0..=64 bytes     |
//! | 46 + n | 16   | `mac`             | HMAC-SHA256(group key, bytes 0..46+n), first 16 bytes        |
//!
//! - `number`: a DATA sequence number counts from 1 in each session pairing; an ACK's is the
//!   highest sequence number the receiver has received in order (0 = none); a HEARTBEAT's is
//!   the sender's heartbeat counter, which grows by one with every [`AckChannel::heartbeat`]
//!   call of its incarnation. All three are 64-bit and never wrap.
//! - `tx`: a DATA frame's counts every DATA frame sent to that peer, retransmissions included
//!   (from 1). An ACK's is the highest `tx` of the DATA frames the receiver dropped beyond a gap
//!   since its previous ACK, or 0: non-zero makes the ACK a negative acknowledgement.
//!
//! A frame is therefore 62 ([`MIN_FRAME_LEN`]) to 1086 ([`MAX_FRAME_LEN`]) bytes long, and its
//! length must be exactly `62 + length`. The MAC always closes the frame and always covers
//! everything before it, whatever the version.
//!
//! # Sessions: incarnations and generations
//!
//! `(incarnation, generation)`, compared as one 64-bit number (incarnation in the high half),
//! is a *session*. A replica has one session per peer entry: its incarnation, which the caller
//! must raise on every restart (a persisted boot counter or a clock in seconds), and a
//! generation that grows each time [`AckChannel::add_peer`] creates an entry. Every frame
//! names the sender's session (`src_*`) and the session of the receiver that it is meant for
//! (`dst_*`). A receiver:
//!
//! - drops a frame whose `src` session is older than the newest it has seen from that peer
//!   (`replayed`): frames from before a peer's restart are never acted on;
//! - on a newer `src` session, resets that peer's receive state (DATA sequence, heartbeat
//!   counter) and renumbers its own send stream to the peer from 1: everything the peer has
//!   not acknowledged is sent again, in order, to the new session (a restarted replica gets
//!   the not-yet-acknowledged suffix, never a gap or a duplicate within its session; the FT
//!   layer that wants a clean slate removes and re-adds the peer);
//! - acts on a frame only if its `dst` session is its own current session. Otherwise (the
//!   sender has not learned it yet, or the frame predates the receiver's restart) the frame is
//!   dropped — counted `replayed` unless `dst` is 0, which is a first contact — and the
//!   receiver answers with an ACK, which teaches the sender its session.
//!
//! So a frame recorded before either end restarted or re-added the other can never be
//! delivered again, and sequence numbers and heartbeat counters (64-bit, never wrapping)
//! protect within a session. A frame addressed to another replica (`dst` is not the local id,
//! e.g. a frame reflected back to its sender) counts as `replayed` too.
//!
//! Until a sender knows the receiver's session it keeps one DATA frame in flight (a probe that
//! the receiver answers with its session but does not deliver), so the first heartbeat to a
//! new peer is not delivered either: it is sent again once the answer teaches the session
//! (with periodic heartbeats off, a single heartbeat may be what announces a new view).
//!
//! # Reliability: go-back-N
//!
//! DATA is numbered from 1 in each (sender session, receiver session) pairing. The receiver
//! delivers only the next sequence number and drops everything else: no reassembly buffer, so
//! each [`AckChannel::handle_frame`] call delivers at most the frame it was given, and a frame
//! dropped out of order is delivered when it is sent again. Every in-order DATA frame calls for
//! a cumulative ACK; the ACKs that a burst of frames calls for between two `poll_transmit`
//! calls go out as one. A DATA frame dropped beyond a gap makes the ACK a negative one (`tx`
//! not 0), and the sender, having at least `ack + 1` outstanding, goes back to it at once:
//! `poll_transmit` sends everything from the gap on again, oldest first. A negative ACK counts
//! only if it echoes a later transmission than any before it, so a replayed one cannot make
//! the sender resend a window (no amplification by an on-path replayer). Otherwise the
//! retransmission timer does the same (it starts at `rto` and doubles while nothing is
//! acknowledged, up to `max_rto`). At most [`SEND_WINDOW`] frames are in flight. Frames are
//! sealed when (re)transmitted, so a retransmission carries the current sessions.
//!
//! Go-back-N suits the API (one delivery per incoming frame, nothing held back, so nothing can
//! wait for a call that never comes) and a replica LAN where reordering is rare. On a link
//! that reorders heavily it pays in bandwidth: frames that overtake a missing one are sent
//! again. In virtual time (core/tests/ackchan.rs), one payload a millisecond over a 200 µs
//! link with 5 % loss and 1 ms of jitter arrives with a median latency under 1 ms and a 99th
//! percentile around 4 ms.
//!
//! Each peer has a send queue of at most [`SEND_WINDOW`] + [`SEND_BACKLOG`] payloads and
//! [`SEND_BUFFER_BYTES`] bytes (enough for a full window of maximum-size payloads plus a
//! backlog); [`AckChannel::send`] returns [`ChanError::QueueFull`] beyond that, and the queue
//! drains as the peer acknowledges. Nothing ever grows.
//!
//! # Epochs
//!
//! Every frame carries an epoch: a DATA frame the sender's epoch when the payload was queued
//! (so a payload queued in an old view is never relabelled with a newer one), ACK and
//! HEARTBEAT frames the sender's epoch when they were produced. A receiver drops any DATA or
//! HEARTBEAT frame whose epoch is lower than its own (`stale_epoch`). A stale DATA frame that
//! is the next in order is still *consumed* (acknowledged, never delivered) so that the stream
//! does not stall behind it; out of order or replayed, it is simply dropped. ACKs are taken
//! whatever their epoch: they carry no view, only the channel's own state, and a replica that
//! has just taken over must learn the session of a peer still in the old view from that
//! peer's ACK — dropping it would leave the two unable to talk. Authenticated frames of a higher
//! epoch are accepted, and [`AckChannel::highest_epoch_seen`] reports the highest so that the
//! FT layer can step down; the channel itself never changes its epoch.
//!
//! # Checks on a received frame, in order
//!
//! 1. length, version, kind and payload length consistent → else `malformed`;
//! 2. `group` is ours → else `wrong_group` (checked before the MAC so that traffic of another
//!    group, with another key, is told apart from forgeries; the frame is only dropped);
//! 3. MAC (constant-time, the `hmac` crate's verify) → else `forged`; nothing below trusts an
//!    unauthenticated byte;
//! 4. `dst` is the local id → else `replayed`; the frame's epoch now counts for
//!    `highest_epoch_seen`;
//! 5. `src` is a peer → else `unknown_peer`;
//! 6. DATA and HEARTBEAT: epoch not lower than ours → else `stale_epoch` (the next in-order
//!    DATA frame is still consumed, see *Epochs*);
//! 7. sessions as above → else `replayed` (or, for a first contact, answered and not counted);
//! 8. per kind: DATA in order is delivered (`delivered`), an already received sequence number
//!    is a `duplicate` (within one window of the last delivered one, as a retransmission can
//!    be) or `replayed` (older), a gap is `out_of_order`; an ACK beyond anything sent is
//!    `replayed`, an old one is harmless, a fresh negative one makes the sender go back; a
//!    HEARTBEAT whose counter does not increase is `replayed`.

// No panic on any input: no indexing, no unchecked arithmetic, no unwrap in this module.
#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use core::fmt;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::store::{BoundedVec, FixedBuf};
use crate::time::{Duration, Instant};

/// The wire format version this module speaks.
pub const ACKCHAN_VERSION: u8 = 1;
/// Peers per channel (the other replicas of the group).
pub const MAX_PEERS: usize = 8;
/// Largest DATA payload.
pub const MAX_PAYLOAD: usize = 1024;
/// Largest HEARTBEAT payload.
pub const MAX_HEARTBEAT_PAYLOAD: usize = 64;
/// DATA frames in flight per peer (go-back-N).
pub const SEND_WINDOW: usize = 32;
/// Payloads queued per peer beyond the window.
pub const SEND_BACKLOG: usize = 64;
/// Payload bytes queued per peer (window and backlog together).
pub const SEND_BUFFER_BYTES: usize = 48 * 1024;
/// The fixed header before the payload.
pub const HEADER_LEN: usize = 46;
/// The truncated HMAC-SHA256 tag that closes every frame.
pub const MAC_LEN: usize = 16;
/// The shortest frame (an ACK).
pub const MIN_FRAME_LEN: usize = HEADER_LEN + MAC_LEN;
/// The longest frame; `poll_transmit` needs a buffer this large to be sure to make progress.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_PAYLOAD + MAC_LEN;

/// The group's shared HMAC-SHA256 key.
pub type GroupKey = [u8; 32];

const KIND_DATA: u8 = 1;
const KIND_ACK: u8 = 2;
const KIND_HEARTBEAT: u8 = 3;

const QUEUE_FRAMES: usize = SEND_WINDOW + SEND_BACKLOG;
const WINDOW: u64 = SEND_WINDOW as u64;

type HmacSha256 = Hmac<Sha256>;

/// Timers of the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AckChanConfig {
    /// Retransmission timeout (default 20 ms; at least 1 µs is used).
    pub rto: Duration,
    /// Cap of the exponential backoff (default 200 ms; never below `rto`).
    pub max_rto: Duration,
}

impl Default for AckChanConfig {
    fn default() -> Self {
        AckChanConfig {
            rto: Duration::from_millis(20),
            max_rto: Duration::from_millis(200),
        }
    }
}

/// Why a call on the channel failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ChanError {
    /// Not a peer of this channel (or the local id itself).
    UnknownPeer,
    /// The peer's send queue is full: it is slow or dead.
    QueueFull,
    /// The payload is longer than [`MAX_PAYLOAD`] (DATA) or [`MAX_HEARTBEAT_PAYLOAD`].
    TooLarge,
    /// [`MAX_PEERS`] peers already, or the generation counter is spent.
    PeerTableFull,
}

impl fmt::Display for ChanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChanError::UnknownPeer => "unknown peer",
            ChanError::QueueFull => "send queue full",
            ChanError::TooLarge => "payload too large",
            ChanError::PeerTableFull => "peer table full",
        })
    }
}

/// What an incoming frame delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Received<'a> {
    /// The next payload of `from`'s reliable stream, queued by it in `epoch`.
    Data {
        from: u8,
        epoch: u32,
        payload: &'a [u8],
    },
    /// A fresh heartbeat of `from`, sent in `epoch`.
    Heartbeat {
        from: u8,
        epoch: u32,
        payload: &'a [u8],
    },
}

/// Counters of the channel. Every frame given to `handle_frame` counts in `frames_in`; a
/// rejected one counts in exactly one of the drop counters (`forged` to `out_of_order`). A
/// first-contact frame (destination session 0) is answered, not delivered, and counts in none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AckChanStats {
    pub frames_in: u64,
    pub frames_out: u64,
    /// Bad MAC.
    pub forged: u64,
    /// Authentic but not fresh: old session, old sequence number or heartbeat counter, an ACK
    /// beyond what was sent, a frame meant for another replica or another session.
    pub replayed: u64,
    pub stale_epoch: u64,
    pub malformed: u64,
    pub wrong_group: u64,
    pub unknown_peer: u64,
    /// DATA already delivered, within a window of the last delivered (retransmissions).
    pub duplicates: u64,
    /// DATA beyond the next expected sequence number (dropped: go-back-N).
    pub out_of_order: u64,
    /// DATA frames transmitted again.
    pub retransmits: u64,
    /// DATA payloads delivered.
    pub delivered: u64,
}

/// `now + d`, saturating (as `Instant`'s `Add` is).
#[allow(clippy::arithmetic_side_effects)]
fn later(now: Instant, d: Duration) -> Instant {
    now + d
}

fn bump(counter: &mut u64) {
    *counter = counter.saturating_add(1);
}

/// A session as one ordered number: incarnation in the high half, generation in the low half.
fn session(incarnation: u32, generation: u32) -> u64 {
    (u64::from(incarnation) << 32) | u64::from(generation)
}

// ---------------------------------------------------------------------------------------------
// Frame header

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    kind: u8,
    src: u8,
    dst: u8,
    group: u32,
    epoch: u32,
    src_sess: u64,
    dst_sess: u64,
    number: u64,
    aux: u64,
    len: u16,
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(at..at.saturating_add(2)) {
        a.copy_from_slice(s);
    }
    u16::from_be_bytes(a)
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at.saturating_add(4)) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at.saturating_add(8)) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

fn write(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(d) = b.get_mut(at..at.saturating_add(v.len())) {
        d.copy_from_slice(v);
    }
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        write(&mut b, 0, &[ACKCHAN_VERSION, self.kind, self.src, self.dst]);
        write(&mut b, 4, &self.group.to_be_bytes());
        write(&mut b, 8, &self.epoch.to_be_bytes());
        write(&mut b, 12, &self.src_sess.to_be_bytes());
        write(&mut b, 20, &self.dst_sess.to_be_bytes());
        write(&mut b, 28, &self.number.to_be_bytes());
        write(&mut b, 36, &self.aux.to_be_bytes());
        write(&mut b, 44, &self.len.to_be_bytes());
        b
    }

    /// Structural checks only: nothing here is authenticated yet.
    fn decode(frame: &[u8]) -> Option<Header> {
        if frame.len() < MIN_FRAME_LEN || frame.len() > MAX_FRAME_LEN {
            return None;
        }
        let (version, kind) = match frame {
            [v, k, ..] => (*v, *k),
            _ => return None,
        };
        if version != ACKCHAN_VERSION {
            return None;
        }
        let len = read_u16(frame, 44);
        let max = match kind {
            KIND_DATA => MAX_PAYLOAD,
            KIND_ACK => 0,
            KIND_HEARTBEAT => MAX_HEARTBEAT_PAYLOAD,
            _ => return None,
        };
        if usize::from(len) > max || frame.len() != MIN_FRAME_LEN.saturating_add(usize::from(len)) {
            return None;
        }
        Some(Header {
            kind,
            src: frame.get(2).copied().unwrap_or(0),
            dst: frame.get(3).copied().unwrap_or(0),
            group: read_u32(frame, 4),
            epoch: read_u32(frame, 8),
            src_sess: read_u64(frame, 12),
            dst_sess: read_u64(frame, 20),
            number: read_u64(frame, 28),
            aux: read_u64(frame, 36),
            len,
        })
    }
}

/// Writes header, payload (given in up to two pieces, as it sits in a ring) and MAC into
/// `buf`; returns the frame length, or `None` if `buf` is too small.
fn seal(mac: &HmacSha256, buf: &mut [u8], h: &Header, p1: &[u8], p2: &[u8]) -> Option<usize> {
    let n = p1.len().saturating_add(p2.len());
    let body_len = HEADER_LEN.saturating_add(n);
    let total = body_len.saturating_add(MAC_LEN);
    let out = buf.get_mut(..total)?;
    write(out, 0, &h.encode());
    write(out, HEADER_LEN, p1);
    write(out, HEADER_LEN.saturating_add(p1.len()), p2);
    let (body, tag) = out.split_at_mut_checked(body_len)?;
    let mut m = mac.clone();
    m.update(body);
    let full = m.finalize().into_bytes();
    tag.copy_from_slice(full.get(..MAC_LEN)?);
    Some(total)
}

// ---------------------------------------------------------------------------------------------
// Per-peer send queue: a ring of entries over a ring of payload bytes, both fixed (inline
// without `alloc`; with it on the heap, made at the first push: see `crate::store`).

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    /// Start of the payload in the byte ring.
    off: usize,
    len: usize,
    /// The local epoch when the payload was queued.
    epoch: u32,
}

struct SendQueue {
    entries: FixedBuf<Entry, QUEUE_FRAMES>,
    head: usize,
    count: usize,
    bytes: FixedBuf<u8, SEND_BUFFER_BYTES>,
    byte_head: usize,
    byte_used: usize,
}

/// `(a + b) mod cap` for `a, b < cap`.
fn ring_add(a: usize, b: usize, cap: usize) -> usize {
    let s = a.saturating_add(b);
    if s >= cap {
        s.saturating_sub(cap)
    } else {
        s
    }
}

impl SendQueue {
    fn new() -> Self {
        SendQueue {
            entries: FixedBuf::new(),
            head: 0,
            count: 0,
            bytes: FixedBuf::new(),
            byte_head: 0,
            byte_used: 0,
        }
    }

    fn len(&self) -> usize {
        self.count
    }

    fn clear(&mut self) {
        self.head = 0;
        self.count = 0;
        self.byte_head = 0;
        self.byte_used = 0;
    }

    fn push(&mut self, epoch: u32, payload: &[u8]) -> Result<(), ChanError> {
        let free = SEND_BUFFER_BYTES.saturating_sub(self.byte_used);
        if self.count >= QUEUE_FRAMES || payload.len() > free {
            return Err(ChanError::QueueFull);
        }
        // With `alloc`, the first push allocates the rings; no memory is a full queue.
        let (Some(bytes), Some(entries)) = (self.bytes.get_mut(), self.entries.get_mut()) else {
            return Err(ChanError::QueueFull);
        };
        let off = ring_add(self.byte_head, self.byte_used, SEND_BUFFER_BYTES);
        let first = payload.len().min(SEND_BUFFER_BYTES.saturating_sub(off));
        let (a, b) = payload.split_at(first);
        write(bytes, off, a);
        write(bytes, 0, b);
        let slot = ring_add(self.head, self.count, QUEUE_FRAMES);
        if let Some(e) = entries.get_mut(slot) {
            *e = Entry {
                off,
                len: payload.len(),
                epoch,
            };
        }
        self.count = self.count.saturating_add(1);
        self.byte_used = self.byte_used.saturating_add(payload.len());
        Ok(())
    }

    fn pop_front(&mut self) {
        if self.count == 0 {
            return;
        }
        let len = self.entries.as_slice().get(self.head).map_or(0, |e| e.len);
        self.head = ring_add(self.head, 1, QUEUE_FRAMES);
        self.count = self.count.saturating_sub(1);
        self.byte_head = ring_add(self.byte_head, len, SEND_BUFFER_BYTES);
        self.byte_used = self.byte_used.saturating_sub(len);
        if self.count == 0 {
            self.clear();
        }
    }

    /// The `i`th queued payload (0 = oldest), as its epoch and up to two pieces.
    fn get(&self, i: usize) -> Option<(u32, &[u8], &[u8])> {
        if i >= self.count {
            return None;
        }
        let e = self
            .entries
            .as_slice()
            .get(ring_add(self.head, i, QUEUE_FRAMES))?;
        let first = e.len.min(SEND_BUFFER_BYTES.saturating_sub(e.off));
        let bytes = self.bytes.as_slice();
        let a = bytes.get(e.off..e.off.saturating_add(first))?;
        let b = bytes.get(..e.len.saturating_sub(first))?;
        Some((e.epoch, a, b))
    }
}

// ---------------------------------------------------------------------------------------------
// Peers

struct Peer {
    id: u8,
    /// Our session for this peer entry.
    local_sess: u64,
    /// The newest session of the peer seen in an authenticated frame; 0 = none yet.
    remote_sess: u64,

    // Receive side.
    /// Highest DATA sequence number received in order (0 = none).
    rcv_next: u64,
    /// Highest heartbeat counter accepted.
    hb_last: u64,
    ack_pending: bool,
    /// Highest transmission number of the DATA frames dropped beyond a gap since the last ACK
    /// sent (0: none).
    ack_echo: u64,
    hb_pending: bool,
    /// The last heartbeat went out before the peer's session was known, so the peer dropped
    /// it: send it again when the session is learned.
    hb_unheard: bool,

    // Send side (go-back-N). Queue entry `i` carries sequence number `snd_una + 1 + i`.
    queue: SendQueue,
    /// Highest sequence number acknowledged.
    snd_una: u64,
    /// Next sequence number to (re)transmit.
    snd_nxt: u64,
    /// Highest sequence number transmitted so far.
    snd_max: u64,
    rto: Duration,
    rto_at: Option<Instant>,
    /// Transmission number of the last DATA frame sent (retransmissions count too).
    tx_count: u64,
    /// Highest transmission number a negative ACK has echoed.
    nack_tx: u64,
}

impl Peer {
    fn new(id: u8, local_sess: u64, rto: Duration) -> Self {
        Peer {
            id,
            local_sess,
            remote_sess: 0,
            rcv_next: 0,
            hb_last: 0,
            ack_pending: false,
            hb_pending: false,
            hb_unheard: false,
            queue: SendQueue::new(),
            snd_una: 0,
            snd_nxt: 1,
            snd_max: 0,
            rto,
            rto_at: None,
            ack_echo: 0,
            tx_count: 0,
            nack_tx: 0,
        }
    }

    /// Frames sent (or being sent again) ahead of the oldest unacknowledged one.
    fn in_flight(&self) -> u64 {
        self.snd_nxt.saturating_sub(self.snd_una).saturating_sub(1)
    }

    fn outstanding(&self) -> u64 {
        self.snd_max.saturating_sub(self.snd_una)
    }

    fn window(&self) -> u64 {
        if self.remote_sess == 0 {
            1
        } else {
            WINDOW
        }
    }

    /// The sequence number `poll_transmit` may send now, if any.
    fn sendable(&self) -> Option<u64> {
        let queued_end = self.snd_una.saturating_add(self.queue.len() as u64);
        (self.snd_nxt <= queued_end && self.in_flight() < self.window()).then_some(self.snd_nxt)
    }

    /// The peer has a new session: its state for us is gone. Receive afresh and send the
    /// whole unacknowledged queue again, numbered from 1.
    fn new_remote_session(&mut self, sess: u64, cfg: &AckChanConfig) {
        self.remote_sess = sess;
        self.rcv_next = 0;
        self.hb_last = 0;
        self.snd_una = 0;
        self.snd_nxt = 1;
        self.snd_max = 0;
        self.rto = cfg.rto;
        self.rto_at = None;
        self.ack_echo = 0;
        if self.hb_unheard {
            self.hb_unheard = false;
            self.hb_pending = true;
        }
    }

    /// Go back to the oldest unacknowledged frame.
    fn go_back(&mut self) {
        self.snd_nxt = self.snd_una.saturating_add(1);
    }

    /// DATA arrived beyond a gap and was dropped: ACK at once, echoing its transmission
    /// number, which tells the sender to go back.
    fn beyond_gap(&mut self, tx: u64) {
        self.ack_pending = true;
        self.ack_echo = self.ack_echo.max(tx);
    }

    /// A cumulative ACK, echoing the transmission number of the newest DATA frame the receiver
    /// dropped beyond a gap (0: none); `false` if it acknowledges something never sent.
    fn on_ack(&mut self, ack: u64, echo: u64, now: Instant, cfg: &AckChanConfig) -> bool {
        if ack > self.snd_max {
            return false;
        }
        if ack > self.snd_una {
            let n = ack.saturating_sub(self.snd_una);
            for _ in 0..n {
                self.queue.pop_front();
            }
            self.snd_una = ack;
            if self.snd_nxt <= ack {
                self.snd_nxt = ack.saturating_add(1);
            }
            self.rto = cfg.rto;
            self.rto_at = (self.outstanding() > 0).then(|| later(now, cfg.rto));
        }
        // A negative acknowledgement: the receiver dropped a frame beyond the gap at
        // `ack + 1` (go-back-N keeps nothing out of order), so everything from the gap on
        // must be sent again; do it now rather than at the timeout. Only news counts: an old
        // ACK, or one echoing no later transmission than an earlier one did (a replay, which
        // must not make us resend a window), is ignored.
        if echo > self.nack_tx
            && echo <= self.tx_count
            && ack == self.snd_una
            && self.outstanding() > 0
        {
            self.nack_tx = echo;
            self.go_back();
        }
        true
    }

    fn on_timer(&mut self, now: Instant, cfg: &AckChanConfig) {
        match self.rto_at {
            Some(at) if now >= at => {}
            _ => return,
        }
        if self.outstanding() == 0 {
            self.rto_at = None;
            return;
        }
        self.go_back();
        self.rto =
            Duration::from_micros(self.rto.total_micros().saturating_mul(2)).min(cfg.max_rto);
        self.rto_at = Some(later(now, self.rto));
    }
}

// ---------------------------------------------------------------------------------------------
// The channel

/// One replica's end of its group's acknowledgement channel. See the module documentation.
///
/// Without `alloc` it holds every buffer inline (about 405 KiB: [`MAX_PEERS`] send queues of
/// [`SEND_BUFFER_BYTES`]): keep it in a static rather than on a small stack. With `alloc` the
/// peers and their queues are on the heap (a queue's rings from its first frame on) and the
/// channel itself is under 2 KiB.
pub struct AckChannel {
    local_id: u8,
    group_id: u32,
    incarnation: u32,
    config: AckChanConfig,
    mac: HmacSha256,
    epoch: u32,
    highest_epoch: u32,
    /// Generation of the next peer entry.
    next_generation: u32,
    peers: BoundedVec<Peer, MAX_PEERS>,
    /// Where `poll_transmit` starts looking, for fairness between peers.
    cursor: usize,
    hb_counter: u64,
    hb_epoch: u32,
    hb_len: usize,
    hb_payload: [u8; MAX_HEARTBEAT_PAYLOAD],
    rx_buf: [u8; MAX_PAYLOAD],
    stats: AckChanStats,
}

impl fmt::Debug for AckChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of it.
        f.debug_struct("AckChannel")
            .field("local_id", &self.local_id)
            .field("group_id", &self.group_id)
            .field("incarnation", &self.incarnation)
            .field("epoch", &self.epoch)
            .field("highest_epoch_seen", &self.highest_epoch)
            .field(
                "peers",
                &self
                    .peers
                    .iter()
                    .map(|p| p.id)
                    .collect::<heapless::Vec<u8, MAX_PEERS>>(),
            )
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// What `receive` decided, before the payload is lent out.
enum Outcome {
    Dropped,
    Data { from: u8, epoch: u32, len: usize },
    Heartbeat { from: u8, epoch: u32, len: usize },
}

/// What `poll_transmit` picked.
enum Pick {
    Ack,
    Data(u64),
    Heartbeat,
}

impl AckChannel {
    /// A channel for replica `local_id` of group `group_id`. `incarnation` must be higher than
    /// that of any earlier run of this replica with the same key.
    pub fn new(
        local_id: u8,
        group_id: u32,
        key: GroupKey,
        incarnation: u32,
        config: AckChanConfig,
    ) -> Self {
        let rto = config.rto.max(Duration::from_micros(1));
        let config = AckChanConfig {
            rto,
            max_rto: config.max_rto.max(rto),
        };
        // RFC 2104 pads a key shorter than the hash block with zeros: a 32-byte key and the
        // same key padded to SHA-256's 64-byte block are one and the same HMAC key.
        let mut block = [0u8; 64];
        write(&mut block, 0, &key);
        let mac = <HmacSha256 as KeyInit>::new(&block.into());
        AckChannel {
            local_id,
            group_id,
            incarnation,
            config,
            mac,
            epoch: 0,
            highest_epoch: 0,
            next_generation: 1,
            peers: BoundedVec::new(),
            cursor: 0,
            hb_counter: 0,
            hb_epoch: 0,
            hb_len: 0,
            hb_payload: [0; MAX_HEARTBEAT_PAYLOAD],
            rx_buf: [0; MAX_PAYLOAD],
            stats: AckChanStats::default(),
        }
    }

    /// Adds a peer (no-op if it is one already).
    pub fn add_peer(&mut self, id: u8) -> Result<(), ChanError> {
        if id == self.local_id {
            return Err(ChanError::UnknownPeer);
        }
        if self.peers.iter().any(|p| p.id == id) {
            return Ok(());
        }
        if self.peers.is_full() {
            return Err(ChanError::PeerTableFull);
        }
        let generation = self.next_generation;
        self.next_generation = generation.checked_add(1).ok_or(ChanError::PeerTableFull)?;
        let peer = Peer::new(id, session(self.incarnation, generation), self.config.rto);
        self.peers.push(peer).map_err(|_| ChanError::PeerTableFull)
    }

    /// Removes a peer and drops its queues. Adding it again starts a new session with it.
    pub fn remove_peer(&mut self, id: u8) {
        self.peers.retain(|p| p.id != id);
        self.cursor = 0;
    }

    /// The ids of the peers, in the order they were added.
    pub fn peers(&self) -> impl Iterator<Item = u8> + '_ {
        self.peers.iter().map(|p| p.id)
    }

    /// The local epoch (view number).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Sets the local epoch; frames of lower epochs are dropped from now on.
    pub fn set_epoch(&mut self, epoch: u32) {
        self.epoch = epoch;
    }

    /// Queue `payload` for reliable, ordered delivery to `to`.
    pub fn send(&mut self, now: Instant, to: u8, payload: &[u8]) -> Result<(), ChanError> {
        let _ = now;
        let epoch = self.epoch;
        let peer = self
            .peers
            .iter_mut()
            .find(|p| p.id == to)
            .ok_or(ChanError::UnknownPeer)?;
        if payload.len() > MAX_PAYLOAD {
            return Err(ChanError::TooLarge);
        }
        peer.queue.push(epoch, payload)
    }

    /// Best-effort heartbeat to every peer. A heartbeat not yet transmitted is replaced.
    pub fn heartbeat(&mut self, now: Instant, payload: &[u8]) -> Result<(), ChanError> {
        let _ = now;
        let dst = self
            .hb_payload
            .get_mut(..payload.len())
            .ok_or(ChanError::TooLarge)?;
        dst.copy_from_slice(payload);
        self.hb_len = payload.len();
        self.hb_counter = self.hb_counter.saturating_add(1);
        self.hb_epoch = self.epoch;
        for p in self.peers.iter_mut() {
            p.hb_pending = true;
        }
        Ok(())
    }

    /// Best-effort heartbeat to one peer only (a probe, or the answer to one). It replaces a
    /// heartbeat not yet transmitted, to that peer and to any other still waiting.
    pub fn heartbeat_to(&mut self, now: Instant, to: u8, payload: &[u8]) -> Result<(), ChanError> {
        let _ = now;
        if !self.peers.iter().any(|p| p.id == to) {
            return Err(ChanError::UnknownPeer);
        }
        let dst = self
            .hb_payload
            .get_mut(..payload.len())
            .ok_or(ChanError::TooLarge)?;
        dst.copy_from_slice(payload);
        self.hb_len = payload.len();
        self.hb_counter = self.hb_counter.saturating_add(1);
        self.hb_epoch = self.epoch;
        for p in self.peers.iter_mut().filter(|p| p.id == to) {
            p.hb_pending = true;
        }
        Ok(())
    }

    /// An incoming frame (a UDP payload). Returns what it delivers, if anything: at most one
    /// DATA payload, the next in order. Everything else is dropped and counted.
    pub fn handle_frame<'s>(&'s mut self, now: Instant, frame: &[u8]) -> Option<Received<'s>> {
        bump(&mut self.stats.frames_in);
        match self.receive(now, frame) {
            Outcome::Dropped => None,
            Outcome::Data { from, epoch, len } => Some(Received::Data {
                from,
                epoch,
                payload: self.rx_buf.get(..len)?,
            }),
            Outcome::Heartbeat { from, epoch, len } => Some(Received::Heartbeat {
                from,
                epoch,
                payload: self.rx_buf.get(..len)?,
            }),
        }
    }

    fn receive(&mut self, now: Instant, frame: &[u8]) -> Outcome {
        let stats = &mut self.stats;
        let Some(h) = Header::decode(frame) else {
            bump(&mut stats.malformed);
            return Outcome::Dropped;
        };
        if h.group != self.group_id {
            bump(&mut stats.wrong_group);
            return Outcome::Dropped;
        }
        let Some((body, tag)) = frame.split_at_checked(frame.len().saturating_sub(MAC_LEN)) else {
            bump(&mut stats.malformed);
            return Outcome::Dropped;
        };
        let mut m = self.mac.clone();
        m.update(body);
        if m.verify_truncated_left(tag).is_err() {
            bump(&mut stats.forged);
            return Outcome::Dropped;
        }
        // Authenticated from here on.
        if h.dst != self.local_id {
            bump(&mut stats.replayed);
            return Outcome::Dropped;
        }
        self.highest_epoch = self.highest_epoch.max(h.epoch);
        let Some(p) = self.peers.iter_mut().find(|p| p.id == h.src) else {
            bump(&mut stats.unknown_peer);
            return Outcome::Dropped;
        };
        let fresh_pairing =
            p.remote_sess != 0 && h.src_sess == p.remote_sess && h.dst_sess == p.local_sess;

        if h.epoch < self.epoch && h.kind != KIND_ACK {
            bump(&mut stats.stale_epoch);
            // Consume the next DATA frame of an old view, so the stream does not stall.
            if h.kind == KIND_DATA && fresh_pairing && h.number == p.rcv_next.saturating_add(1) {
                p.rcv_next = h.number;
                p.ack_pending = true;
            }
            return Outcome::Dropped;
        }

        if h.src_sess < p.remote_sess {
            bump(&mut stats.replayed);
            return Outcome::Dropped;
        }
        if h.src_sess > p.remote_sess {
            p.new_remote_session(h.src_sess, &self.config);
        }
        if h.dst_sess != p.local_sess {
            // Meant for an older session of ours, or the peer does not know ours yet
            // (dst 0): answer with an ACK, which tells it.
            if h.dst_sess != 0 {
                bump(&mut stats.replayed);
            }
            p.ack_pending = true;
            return Outcome::Dropped;
        }

        let payload = frame
            .get(HEADER_LEN..HEADER_LEN.saturating_add(usize::from(h.len)))
            .unwrap_or(&[]);
        match h.kind {
            KIND_DATA => {
                let next = p.rcv_next.saturating_add(1);
                if h.number == next {
                    let Some(dst) = self.rx_buf.get_mut(..payload.len()) else {
                        bump(&mut stats.malformed);
                        return Outcome::Dropped;
                    };
                    dst.copy_from_slice(payload);
                    p.rcv_next = next;
                    p.ack_pending = true;
                    bump(&mut stats.delivered);
                    Outcome::Data {
                        from: h.src,
                        epoch: h.epoch,
                        len: payload.len(),
                    }
                } else if h.number > next {
                    bump(&mut stats.out_of_order);
                    p.beyond_gap(h.aux);
                    Outcome::Dropped
                } else if h.number > p.rcv_next.saturating_sub(WINDOW) {
                    // Could be a retransmission after a lost ACK: acknowledge again.
                    bump(&mut stats.duplicates);
                    p.ack_pending = true;
                    Outcome::Dropped
                } else {
                    // No sender can still have this in flight.
                    bump(&mut stats.replayed);
                    Outcome::Dropped
                }
            }
            KIND_ACK => {
                if !p.on_ack(h.number, h.aux, now, &self.config) {
                    bump(&mut stats.replayed);
                }
                Outcome::Dropped
            }
            _ => {
                if h.number <= p.hb_last {
                    bump(&mut stats.replayed);
                    return Outcome::Dropped;
                }
                let Some(dst) = self.rx_buf.get_mut(..payload.len()) else {
                    bump(&mut stats.malformed);
                    return Outcome::Dropped;
                };
                dst.copy_from_slice(payload);
                p.hb_last = h.number;
                Outcome::Heartbeat {
                    from: h.src,
                    epoch: h.epoch,
                    len: payload.len(),
                }
            }
        }
    }

    /// Next frame to transmit (ACKs first, then retransmissions, then new DATA, then
    /// heartbeats): (destination peer id, length written into `buf`). `buf` should hold
    /// [`MAX_FRAME_LEN`] bytes; if the chosen frame does not fit, nothing is sent and `None` is
    /// returned.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<(u8, usize)> {
        for p in self.peers.iter_mut() {
            p.on_timer(now, &self.config);
        }
        let (idx, pick) = self.pick()?;
        let local_id = self.local_id;
        let group = self.group_id;
        let epoch = self.epoch;
        let p = self.peers.get_mut(idx)?;
        let mut h = Header {
            kind: KIND_ACK,
            src: local_id,
            dst: p.id,
            group,
            epoch,
            src_sess: p.local_sess,
            dst_sess: p.remote_sess,
            number: p.rcv_next,
            aux: p.ack_echo,
            len: 0,
        };
        let n = match pick {
            Pick::Ack => {
                let n = seal(&self.mac, buf, &h, &[], &[])?;
                p.ack_pending = false;
                p.ack_echo = 0;
                n
            }
            Pick::Data(seq) => {
                let i = seq.saturating_sub(p.snd_una).saturating_sub(1);
                let (q_epoch, a, b) = p.queue.get(usize::try_from(i).ok()?)?;
                h.kind = KIND_DATA;
                h.epoch = q_epoch;
                h.number = seq;
                h.aux = p.tx_count.saturating_add(1);
                h.len = u16::try_from(a.len().saturating_add(b.len())).ok()?;
                let n = seal(&self.mac, buf, &h, a, b)?;
                p.tx_count = h.aux;
                if seq <= p.snd_max {
                    bump(&mut self.stats.retransmits);
                }
                p.snd_max = p.snd_max.max(seq);
                p.snd_nxt = seq.saturating_add(1);
                if p.rto_at.is_none() {
                    p.rto_at = Some(later(now, p.rto));
                }
                n
            }
            Pick::Heartbeat => {
                let payload = self.hb_payload.get(..self.hb_len)?;
                h.kind = KIND_HEARTBEAT;
                h.epoch = self.hb_epoch;
                h.number = self.hb_counter;
                h.aux = 0;
                h.len = u16::try_from(payload.len()).ok()?;
                let n = seal(&self.mac, buf, &h, payload, &[])?;
                p.hb_pending = false;
                p.hb_unheard = p.remote_sess == 0;
                n
            }
        };
        self.cursor = idx.saturating_add(1);
        bump(&mut self.stats.frames_out);
        Some((h.dst, n))
    }

    /// The most urgent frame to send, round-robin between peers within each class.
    fn pick(&self) -> Option<(usize, Pick)> {
        let n = self.peers.len();
        let order = || (0..n).map(move |k| ring_add(self.cursor.checked_rem(n).unwrap_or(0), k, n));
        let peer = |i: usize| self.peers.get(i);
        if let Some(i) = order().find(|&i| peer(i).is_some_and(|p| p.ack_pending)) {
            return Some((i, Pick::Ack));
        }
        let resend = order().find_map(|i| {
            let p = peer(i)?;
            p.sendable()
                .filter(|&s| s <= p.snd_max)
                .map(|s| (i, Pick::Data(s)))
        });
        if resend.is_some() {
            return resend;
        }
        let fresh = order().find_map(|i| {
            let p = peer(i)?;
            p.sendable()
                .filter(|&s| s > p.snd_max)
                .map(|s| (i, Pick::Data(s)))
        });
        if fresh.is_some() {
            return fresh;
        }
        order()
            .find(|&i| peer(i).is_some_and(|p| p.hb_pending))
            .map(|i| (i, Pick::Heartbeat))
    }

    /// When `poll_transmit` must be called next if no frame arrives (a retransmission timer).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers.iter().filter_map(|p| p.rto_at).min()
    }

    /// DATA frames queued for `peer` and not yet acknowledged by it (0 for an unknown peer).
    pub fn unacked(&self, peer: u8) -> usize {
        self.peers
            .iter()
            .find(|p| p.id == peer)
            .map_or(0, |p| p.queue.len())
    }

    /// The sequence number of the last DATA frame queued for `peer` (0: none yet).
    pub fn last_queued(&self, peer: u8) -> Option<u64> {
        self.peers
            .iter()
            .find(|p| p.id == peer)
            .map(|p| p.snd_una.saturating_add(p.queue.len() as u64))
    }

    /// The highest DATA sequence number `peer` has acknowledged.
    pub fn acked(&self, peer: u8) -> Option<u64> {
        self.peers.iter().find(|p| p.id == peer).map(|p| p.snd_una)
    }

    pub fn stats(&self) -> &AckChanStats {
        &self.stats
    }

    /// The highest epoch seen in any authenticated frame addressed to this replica (so the FT
    /// layer can step down).
    pub fn highest_epoch_seen(&self) -> u32 {
        self.highest_epoch
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    fn mac_of(key: &GroupKey, msg: &[u8]) -> [u8; 32] {
        let ch = AckChannel::new(1, 1, *key, 1, AckChanConfig::default());
        let mut m = ch.mac.clone();
        m.update(msg);
        m.finalize().into_bytes().into()
    }

    #[test]
    fn mac_is_rfc_hmac_sha256_with_the_32_byte_key() {
        // RFC 4231 test case 2: key "Jefe" (zero-padded, which HMAC does anyway).
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let expect = [
            0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
            0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9,
            0x64, 0xec, 0x38, 0x43,
        ];
        assert_eq!(mac_of(&key, b"what do ya want for nothing?"), expect);
        // And a full 32-byte key agrees with the crate's own keying.
        let key: GroupKey = core::array::from_fn(|i| (i * 7 + 3) as u8);
        let mut m = <HmacSha256 as Mac>::new_from_slice(&key).unwrap();
        m.update(b"frame bytes");
        let direct: [u8; 32] = m.finalize().into_bytes().into();
        assert_eq!(mac_of(&key, b"frame bytes"), direct);
    }

    #[test]
    fn header_round_trips() {
        let h = Header {
            kind: KIND_DATA,
            src: 3,
            dst: 250,
            group: 0xdead_beef,
            epoch: 77,
            src_sess: session(9, 2),
            dst_sess: session(0xffff_ffff, 0xffff_ffff),
            number: u64::MAX - 1,
            aux: 12345,
            len: 3,
        };
        let mac = AckChannel::new(1, 1, [1; 32], 1, AckChanConfig::default()).mac;
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = seal(&mac, &mut buf, &h, b"ab", b"c").unwrap();
        assert_eq!(n, MIN_FRAME_LEN + 3);
        assert_eq!(Header::decode(&buf[..n]), Some(h));
        assert_eq!(&buf[HEADER_LEN..HEADER_LEN + 3], b"abc");
        // Too small a buffer: nothing written past it, no frame.
        let mut small = [0u8; MIN_FRAME_LEN + 2];
        assert_eq!(seal(&mac, &mut small, &h, b"ab", b"c"), None);
    }

    #[test]
    fn decode_rejects_inconsistent_lengths() {
        let mut f = [0u8; MIN_FRAME_LEN];
        f[0] = ACKCHAN_VERSION;
        f[1] = KIND_ACK;
        assert!(Header::decode(&f).is_some());
        f[45] = 1; // an ACK with a payload length
        assert!(Header::decode(&f).is_none());
        f[45] = 0;
        f[1] = 0;
        assert!(Header::decode(&f).is_none());
        f[1] = KIND_HEARTBEAT;
        assert!(Header::decode(&f).is_some());
        assert!(Header::decode(&f[..MIN_FRAME_LEN - 1]).is_none());
    }

    #[test]
    fn send_queue_wraps_and_keeps_its_limits() {
        let mut q = SendQueue::new();
        let mut model: std::collections::VecDeque<Vec<u8>> = Default::default();
        let mut x = 1u32;
        for round in 0..5_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let len = (x as usize) % (MAX_PAYLOAD + 1);
            if !x.is_multiple_of(3) {
                let p: Vec<u8> = (0..len).map(|i| (i as u32 ^ round) as u8).collect();
                let fits = model.len() < QUEUE_FRAMES
                    && model.iter().map(Vec::len).sum::<usize>() + len <= SEND_BUFFER_BYTES;
                assert_eq!(q.push(round, &p).is_ok(), fits);
                if fits {
                    model.push_back(p);
                }
            } else {
                q.pop_front();
                model.pop_front();
            }
            assert_eq!(q.len(), model.len());
            for (i, m) in model.iter().enumerate() {
                let (_, a, b) = q.get(i).unwrap();
                assert_eq!([a, b].concat(), *m);
            }
            assert!(q.get(model.len()).is_none());
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(MIN_FRAME_LEN, 62);
        assert_eq!(MAX_FRAME_LEN, 1086);
        const { assert!(SEND_BUFFER_BYTES >= SEND_WINDOW * MAX_PAYLOAD) };
        const { assert!(SEND_BUFFER_BYTES < 1 << 20) };
    }
}

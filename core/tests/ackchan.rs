//! The acknowledgement channel between replicas (`hydranet_core::ft::ackchan`), driven through a
//! simulated link in virtual time: loss, duplication, reordering, replay, forgery, restarts.

use std::collections::{BTreeMap, VecDeque};

use hydranet_core::ft::ackchan::{
    AckChanConfig, AckChanStats, AckChannel, ChanError, GroupKey, Received, HEADER_LEN,
    MAX_FRAME_LEN, MAX_HEARTBEAT_PAYLOAD, MAX_PAYLOAD, MAX_PEERS, MIN_FRAME_LEN, SEND_BACKLOG,
    SEND_BUFFER_BYTES, SEND_WINDOW,
};
use hydranet_core::time::Instant;
use proptest::prelude::*;

const KEY: GroupKey = [0x5a; 32];
const GROUP: u32 = 0x4859_4452;

fn chan(id: u8, incarnation: u32, peers: &[u8]) -> Box<AckChannel> {
    chan_with(id, GROUP, KEY, incarnation, peers)
}

fn chan_with(id: u8, group: u32, key: GroupKey, incarnation: u32, peers: &[u8]) -> Box<AckChannel> {
    let mut c = Box::new(AckChannel::new(
        id,
        group,
        key,
        incarnation,
        AckChanConfig::default(),
    ));
    for &p in peers {
        if p != id {
            c.add_peer(p).unwrap();
        }
    }
    c
}

fn at(us: u64) -> Instant {
    Instant::from_micros(us)
}

/// Deterministic xorshift64* generator for the link.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn percent(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// What the link does to each frame.
#[derive(Clone, Copy, Debug)]
struct Faults {
    /// Percent of frames lost.
    loss: u64,
    /// Percent of frames duplicated.
    dup: u64,
    /// One-way delay, microseconds.
    delay: u64,
    /// Extra random delay (reorders frames), microseconds.
    jitter: u64,
}

const PERFECT: Faults = Faults {
    loss: 0,
    dup: 0,
    delay: 100,
    jitter: 0,
};

/// What happens to one frame, from a scripted fault schedule.
#[derive(Clone, Copy, Debug)]
enum Fate {
    Deliver { delay: u64 },
    Drop,
    Duplicate { delay: u64, delay2: u64 },
}

struct Packet {
    at: u64,
    order: u64,
    from: u8,
    to: u8,
    bytes: Vec<u8>,
}

struct Node {
    id: u8,
    ch: Box<AckChannel>,
    /// Payloads the application still has to hand to `send`, per peer.
    outbox: BTreeMap<u8, VecDeque<Vec<u8>>>,
    /// Payloads delivered, per sender.
    got: BTreeMap<u8, Vec<Vec<u8>>>,
    /// When each payload was delivered, per sender.
    got_at: BTreeMap<u8, Vec<u64>>,
    /// Heartbeat payloads delivered, per sender.
    heartbeats: BTreeMap<u8, Vec<Vec<u8>>>,
    /// Whether the node takes part (a crashed node sends and receives nothing).
    up: bool,
}

struct Net {
    now: u64,
    nodes: Vec<Node>,
    wire: Vec<Packet>,
    order: u64,
    rng: Rng,
    faults: Faults,
    /// A scripted fault per frame; once used up, `faults` applies.
    schedule: VecDeque<Fate>,
    /// Every frame put on the wire, as sent.
    tap: Vec<(u8, u8, Vec<u8>)>,
    /// Heartbeat period (0 = none).
    hb_every: u64,
    next_hb: u64,
    hb_seq: u64,
}

impl Net {
    fn new(ids: &[u8], seed: u64, faults: Faults) -> Net {
        let nodes = ids
            .iter()
            .map(|&id| Node {
                id,
                ch: chan(id, 1, ids),
                outbox: BTreeMap::new(),
                got: BTreeMap::new(),
                got_at: BTreeMap::new(),
                heartbeats: BTreeMap::new(),
                up: true,
            })
            .collect();
        Net {
            now: 0,
            nodes,
            wire: Vec::new(),
            order: 0,
            rng: Rng::new(seed),
            faults,
            schedule: VecDeque::new(),
            tap: Vec::new(),
            hb_every: 0,
            next_hb: 0,
            hb_seq: 0,
        }
    }

    fn node(&mut self, id: u8) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap()
    }

    fn queue(&mut self, from: u8, to: u8, payloads: impl IntoIterator<Item = Vec<u8>>) {
        self.node(from)
            .outbox
            .entry(to)
            .or_default()
            .extend(payloads);
    }

    fn got(&self, at: u8, from: u8) -> &[Vec<u8>] {
        self.nodes
            .iter()
            .find(|n| n.id == at)
            .and_then(|n| n.got.get(&from))
            .map_or(&[], |v| v.as_slice())
    }

    fn fate(&mut self) -> Fate {
        if let Some(f) = self.schedule.pop_front() {
            return f;
        }
        let f = self.faults;
        if self.rng.percent(f.loss) {
            return Fate::Drop;
        }
        let delay = f.delay + self.rng.below(f.jitter + 1);
        if self.rng.percent(f.dup) {
            let delay2 = f.delay + self.rng.below(f.jitter + 1);
            Fate::Duplicate { delay, delay2 }
        } else {
            Fate::Deliver { delay }
        }
    }

    fn put(&mut self, from: u8, to: u8, bytes: Vec<u8>, delay: u64) {
        self.order += 1;
        self.wire.push(Packet {
            at: self.now + delay.max(1),
            order: self.order,
            from,
            to,
            bytes,
        });
    }

    /// Hands queued payloads to the channels and puts every frame they produce on the wire.
    fn transmit(&mut self) {
        let now = at(self.now);
        let mut out = Vec::new();
        for n in self.nodes.iter_mut().filter(|n| n.up) {
            for (&peer, q) in n.outbox.iter_mut() {
                while let Some(p) = q.front() {
                    match n.ch.send(now, peer, p) {
                        Ok(()) => {
                            q.pop_front();
                        }
                        Err(ChanError::QueueFull) => break,
                        Err(e) => panic!("send to {peer}: {e:?}"),
                    }
                }
            }
            let mut buf = [0u8; MAX_FRAME_LEN];
            while let Some((to, len)) = n.ch.poll_transmit(now, &mut buf) {
                assert!((MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&len));
                assert_eq!(buf[2], n.id, "src field");
                assert_eq!(buf[3], to, "dst field");
                out.push((n.id, to, buf[..len].to_vec()));
                assert!(out.len() < 1_000_000, "poll_transmit never ends");
            }
        }
        for (from, to, bytes) in out {
            self.tap.push((from, to, bytes.clone()));
            match self.fate() {
                Fate::Drop => {}
                Fate::Deliver { delay } => self.put(from, to, bytes, delay),
                Fate::Duplicate { delay, delay2 } => {
                    self.put(from, to, bytes.clone(), delay);
                    self.put(from, to, bytes, delay2);
                }
            }
        }
    }

    /// Delivers every frame due now; true if there was one.
    fn deliver(&mut self) -> bool {
        let now = self.now;
        let mut due: Vec<Packet> = Vec::new();
        let mut i = 0;
        while i < self.wire.len() {
            if self.wire[i].at <= now {
                due.push(self.wire.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|p| (p.at, p.order));
        let any = !due.is_empty();
        for p in due {
            let node = self.node(p.to);
            if !node.up {
                continue;
            }
            match node.ch.handle_frame(at(now), &p.bytes) {
                None => {}
                Some(Received::Data {
                    from,
                    epoch: _,
                    payload,
                }) => {
                    assert_eq!(from, p.from, "delivered under another sender's id");
                    let payload = payload.to_vec();
                    node.got.entry(from).or_default().push(payload);
                    node.got_at.entry(from).or_default().push(now);
                }
                Some(Received::Heartbeat {
                    from,
                    epoch: _,
                    payload,
                }) => {
                    assert_eq!(from, p.from);
                    let payload = payload.to_vec();
                    let seen = node.heartbeats.entry(from).or_default();
                    if let Some(last) = seen.last() {
                        assert!(payload > *last, "heartbeats go backwards");
                    }
                    seen.push(payload);
                }
            }
        }
        any
    }

    fn heartbeats(&mut self) {
        if self.hb_every == 0 || self.now < self.next_hb {
            return;
        }
        self.next_hb = self.now + self.hb_every;
        self.hb_seq += 1;
        let payload = self.hb_seq.to_be_bytes();
        let now = at(self.now);
        for n in self.nodes.iter_mut().filter(|n| n.up) {
            n.ch.heartbeat(now, &payload).unwrap();
        }
    }

    /// Runs the network in virtual time until `done` holds (true) or `limit` microseconds
    /// have passed (false).
    fn run_until(&mut self, limit: u64, done: impl Fn(&Net) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            self.heartbeats();
            self.transmit();
            if done(self) {
                return true;
            }
            if self.deliver() {
                continue;
            }
            let mut next = self.wire.iter().map(|p| p.at).min();
            for n in self.nodes.iter().filter(|n| n.up) {
                if let Some(t) = n.ch.poll_timeout() {
                    let t = t.total_micros().max(self.now + 1);
                    next = Some(next.map_or(t, |x: u64| x.min(t)));
                }
            }
            if self.hb_every > 0 {
                next = Some(next.map_or(self.next_hb, |x| x.min(self.next_hb)));
            }
            match next {
                Some(t) if t <= end => self.now = t.max(self.now),
                _ => {
                    self.now = end;
                    return done(self);
                }
            }
        }
    }

    fn run(&mut self, limit: u64) -> bool {
        self.run_until(limit, |net| net.settled())
    }

    /// Every application payload handed over, acknowledged and delivered.
    fn settled(&self) -> bool {
        self.nodes.iter().filter(|n| n.up).all(|n| {
            n.outbox.values().all(VecDeque::is_empty) && n.ch.peers().all(|p| n.ch.unacked(p) == 0)
        })
    }

    fn stats(&self, id: u8) -> AckChanStats {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap()
            .ch
            .stats()
            .clone()
    }
}

/// Distinct payloads of varied sizes (0 to MAX_PAYLOAD) from `from` to `to`.
fn payloads(from: u8, to: u8, count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed ^ (u64::from(from) << 8) ^ u64::from(to));
    (0..count)
        .map(|i| {
            let len = match rng.below(10) {
                0 => 0,
                1 => MAX_PAYLOAD,
                2..=4 => rng.below(MAX_PAYLOAD as u64 + 1) as usize,
                _ => rng.below(64) as usize,
            };
            let mut p = format!("{from}>{to}#{i};").into_bytes();
            if len == 0 {
                p.clear();
            } else {
                p.resize(len.max(p.len()).min(MAX_PAYLOAD), (i % 251) as u8);
            }
            p
        })
        .collect()
}

/// Sends `count` payloads between every ordered pair and checks each arrives exactly once, in
/// order.
fn all_pairs(ids: &[u8], count: usize, seed: u64, faults: Faults, limit: u64) -> Net {
    let mut net = Net::new(ids, seed, faults);
    net.hb_every = 5_000;
    let mut expect = BTreeMap::new();
    for &a in ids {
        for &b in ids {
            if a != b {
                // Empty payloads are legal but indistinguishable; number them instead.
                let ps: Vec<Vec<u8>> = payloads(a, b, count, seed)
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut p)| {
                        if p.is_empty() {
                            p = format!("{a}>{b}#{i};").into_bytes();
                        }
                        p
                    })
                    .collect();
                expect.insert((a, b), ps.clone());
                net.queue(a, b, ps);
            }
        }
    }
    assert!(net.run(limit), "did not settle within {limit} us");
    for ((a, b), ps) in &expect {
        assert_eq!(net.got(*b, *a).len(), ps.len(), "{a}->{b} count");
        assert!(net.got(*b, *a) == ps.as_slice(), "{a}->{b} order/content");
    }
    for &id in ids {
        let s = net.stats(id);
        assert_eq!(s.forged, 0);
        assert_eq!(s.malformed, 0);
        assert_eq!(s.stale_epoch, 0);
        assert_eq!(
            s.delivered,
            (count * (ids.len() - 1)) as u64,
            "delivered at {id}"
        );
    }
    net
}

#[test]
fn size_of_channel() {
    let size = std::mem::size_of::<AckChannel>();
    assert!(size < 512 * 1024, "AckChannel is {size} bytes");
}

#[test]
fn two_channels_perfect_link() {
    let net = all_pairs(&[1, 2], 300, 1, PERFECT, 10_000_000);
    let s = net.stats(1);
    assert_eq!(s.retransmits, 0);
    assert_eq!(s.duplicates, 0);
    assert_eq!(s.out_of_order, 0);
}

#[test]
fn two_channels_lossy_duplicating_reordering_link() {
    let faults = Faults {
        loss: 25,
        dup: 20,
        delay: 200,
        jitter: 3_000,
    };
    let net = all_pairs(&[1, 2], 400, 7, faults, 600_000_000);
    let s = net.stats(2);
    assert!(
        s.retransmits > 0 && s.duplicates > 0 && s.out_of_order > 0,
        "{s:?}"
    );
}

#[test]
fn three_channels_lossy_duplicating_reordering_link() {
    let faults = Faults {
        loss: 20,
        dup: 15,
        delay: 150,
        jitter: 2_000,
    };
    for seed in 0..3 {
        all_pairs(&[1, 2, 3], 150, seed, faults, 600_000_000);
    }
}

#[test]
fn heartbeats_arrive_and_never_go_backwards() {
    let faults = Faults {
        loss: 10,
        dup: 30,
        delay: 100,
        jitter: 8_000,
    };
    let mut net = Net::new(&[1, 2, 3], 3, faults);
    net.hb_every = 1_000;
    net.run_until(500_000, |_| false);
    for n in &net.nodes {
        for p in n.ch.peers() {
            let hbs = n.heartbeats.get(&p).map_or(0, Vec::len);
            assert!(hbs > 100, "node {} got {hbs} heartbeats from {p}", n.id);
        }
        // Duplicates and reordered heartbeats are dropped as not fresh.
        assert!(n.ch.stats().replayed > 0);
    }
}

/// Two channels that know each other's sessions, with one payload exchanged each way.
fn connected() -> Net {
    let mut net = Net::new(&[1, 2], 11, PERFECT);
    net.queue(1, 2, [b"hello 2".to_vec()]);
    net.queue(2, 1, [b"hello 1".to_vec()]);
    assert!(net.run(1_000_000));
    net
}

/// The next DATA frame from 1 to 2, taken off the wire unsent.
fn next_data_frame(net: &mut Net, payload: &[u8]) -> Vec<u8> {
    let now = at(net.now);
    let c = &mut net.node(1).ch;
    c.send(now, 2, payload).unwrap();
    let mut buf = [0u8; MAX_FRAME_LEN];
    let (to, len) = c.poll_transmit(now, &mut buf).unwrap();
    assert_eq!(to, 2);
    assert_eq!(buf[1], 1, "a DATA frame");
    buf[..len].to_vec()
}

fn rejected(s: &AckChanStats) -> u64 {
    s.forged
        + s.replayed
        + s.stale_epoch
        + s.malformed
        + s.wrong_group
        + s.unknown_peer
        + s.duplicates
        + s.out_of_order
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let mut net = connected();
    let frame = next_data_frame(&mut net, b"the real one");
    let now = at(net.now);
    let b = &mut net.node(2).ch;
    let before = b.stats().clone();
    for bit in 0..frame.len() * 8 {
        let mut f = frame.clone();
        f[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            b.handle_frame(now, &f),
            None,
            "bit {bit} flipped was accepted"
        );
    }
    let after = b.stats().clone();
    let flips = (frame.len() * 8) as u64;
    assert_eq!(rejected(&after) - rejected(&before), flips);
    assert_eq!(after.delivered, before.delivered);
    // Header fields that are checked before the MAC (version, kind, length, group) count as
    // malformed or wrong_group; everything else is a forgery.
    assert!(after.forged - before.forged >= ((frame.len() - 8) * 8) as u64);
    // The genuine frame still goes through: the forgeries changed nothing.
    assert_eq!(
        b.handle_frame(now, &frame),
        Some(Received::Data {
            from: 1,
            epoch: 0,
            payload: b"the real one"
        })
    );
}

#[test]
fn random_frames_and_wrong_keys_deliver_nothing() {
    let mut net = connected();
    let now = at(net.now);
    let mut rng = Rng::new(99);
    let template = next_data_frame(&mut net, b"template");
    let b = &mut net.node(2).ch;
    let before = b.stats().clone();
    let mut n = 0u64;
    for i in 0..20_000 {
        let mut f: Vec<u8> = if i % 2 == 0 {
            let len = rng.below(MAX_FRAME_LEN as u64 + 64) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            // Well formed up to the MAC: header of a real frame, random payload and tag.
            let mut f = template.clone();
            for x in &mut f[HEADER_LEN..] {
                *x = rng.next() as u8;
            }
            f
        };
        if i % 7 == 0 && f.len() >= 36 {
            f[28..36].copy_from_slice(&rng.next().to_be_bytes());
        }
        assert_eq!(b.handle_frame(now, &f), None);
        n += 1;
    }
    let after = b.stats().clone();
    assert_eq!(rejected(&after) - rejected(&before), n);
    assert_eq!(after.delivered, before.delivered);

    // A replica with another key (same group, same ids) gets nothing delivered.
    let mut mallory = chan_with(1, GROUP, [0xa5; 32], 1_000, &[2]);
    mallory.send(now, 2, b"evil").unwrap();
    mallory.heartbeat(now, b"evil").unwrap();
    let mut buf = [0u8; MAX_FRAME_LEN];
    let forged_before = b.stats().forged;
    let mut sent = 0;
    while let Some((_, len)) = mallory.poll_transmit(now, &mut buf) {
        assert_eq!(b.handle_frame(now, &buf[..len]), None);
        sent += 1;
    }
    assert_eq!(sent, 2);
    assert_eq!(b.stats().forged - forged_before, 2);

    // Another group is told apart (and dropped) whatever its key.
    let mut other = chan_with(1, GROUP + 1, KEY, 1, &[2]);
    other.heartbeat(now, b"x").unwrap();
    let (_, len) = other.poll_transmit(now, &mut buf).unwrap();
    let wrong_group = b.stats().wrong_group;
    assert_eq!(b.handle_frame(now, &buf[..len]), None);
    assert_eq!(b.stats().wrong_group, wrong_group + 1);
}

#[test]
fn truncated_and_oversized_frames_are_malformed() {
    let mut net = connected();
    let frame = next_data_frame(&mut net, &[0x42; 300]);
    let now = at(net.now);
    let b = &mut net.node(2).ch;
    let m0 = b.stats().malformed;
    for len in 0..frame.len() {
        assert_eq!(b.handle_frame(now, &frame[..len]), None);
    }
    assert_eq!(b.stats().malformed - m0, frame.len() as u64);
    let mut longer = frame.clone();
    longer.push(0);
    assert_eq!(b.handle_frame(now, &longer), None);
    assert_eq!(b.handle_frame(now, &vec![1u8; MAX_FRAME_LEN + 1]), None);
    assert_eq!(b.handle_frame(now, &vec![1u8; 65_536]), None);
    // A DATA payload longer than MAX_PAYLOAD, a HEARTBEAT longer than its limit, an ACK with
    // a payload, an unknown kind, another version.
    let mut f = frame.clone();
    f[44..46].copy_from_slice(&((MAX_PAYLOAD + 1) as u16).to_be_bytes());
    f.resize(MIN_FRAME_LEN + MAX_PAYLOAD + 1, 0);
    assert_eq!(b.handle_frame(now, &f), None);
    let mut f = frame.clone();
    f[1] = 3;
    assert_eq!(b.handle_frame(now, &f), None);
    let mut f = frame.clone();
    f[1] = 2;
    assert_eq!(b.handle_frame(now, &f), None);
    let mut f = frame.clone();
    f[1] = 9;
    assert_eq!(b.handle_frame(now, &f), None);
    let mut f = frame.clone();
    f[0] = 2;
    assert_eq!(b.handle_frame(now, &f), None);
    assert_eq!(b.stats().malformed - m0, frame.len() as u64 + 3 + 5);
    assert_eq!(b.stats().forged, 0);
    assert!(b.handle_frame(now, &frame).is_some());
}

fn kind(frame: &[u8]) -> u8 {
    frame[1]
}

fn dst_session(frame: &[u8]) -> u64 {
    u64::from_be_bytes(frame[20..28].try_into().unwrap())
}

#[test]
fn replayed_frames_are_never_delivered_twice() {
    let mut net = Net::new(&[1, 2], 5, PERFECT);
    net.hb_every = 2_000;
    net.queue(1, 2, payloads(1, 2, 10, 5));
    assert!(net.run_until(1_000_000, |n| n.got(2, 1).len() == 10
        && n.nodes[1].heartbeats.get(&1).is_some_and(|h| h.len() >= 3)));
    assert!(net.run(1_000_000));
    let early: Vec<Vec<u8>> = net
        .tap
        .iter()
        .filter(|(f, t, bytes)| *f == 1 && *t == 2 && kind(bytes) != 2 && dst_session(bytes) != 0)
        .map(|(_, _, b)| b.clone())
        .collect();
    assert!(early.iter().filter(|f| kind(f) == 1).count() >= 10);
    assert!(early.iter().filter(|f| kind(f) == 3).count() >= 3);

    let replay = |net: &mut Net, frames: &[Vec<u8>]| {
        let now = at(net.now);
        let b = &mut net.node(2).ch;
        let s0 = b.stats().clone();
        for f in frames {
            assert_eq!(b.handle_frame(now, f), None, "a replay was delivered");
        }
        let s1 = b.stats().clone();
        assert_eq!(
            (s1.replayed + s1.duplicates) - (s0.replayed + s0.duplicates),
            frames.len() as u64
        );
        (s0, s1)
    };
    // Right away: DATA within the last window are duplicates, heartbeats are replays.
    replay(&mut net, &early);

    // After the stream has moved on by more than a window, old DATA are plain replays.
    net.queue(1, 2, payloads(1, 2, 3 * SEND_WINDOW, 6));
    assert!(net.run(1_000_000));
    let (s0, s1) = replay(&mut net, &early);
    assert_eq!(s1.replayed - s0.replayed, early.len() as u64);

    // Replaying everything ever sent, in any order, any number of times.
    let all: Vec<Vec<u8>> = net.tap.iter().map(|(_, _, b)| b.clone()).collect();
    let delivered = net.stats(2).delivered;
    for _ in 0..3 {
        for f in all.iter().rev() {
            let now = at(net.now);
            for id in [1, 2] {
                let got = net.node(id).ch.handle_frame(now, f);
                assert_eq!(got, None);
            }
        }
    }
    assert_eq!(net.stats(2).delivered, delivered);
    // And nothing is left to do: the replayed ACKs acknowledged nothing new.
    assert!(net.run(1_000_000));
    assert_eq!(net.got(2, 1).len(), 10 + 3 * SEND_WINDOW);
}

#[test]
fn frames_for_another_replica_or_reflected_are_replays() {
    let mut net = Net::new(&[1, 2, 3], 8, PERFECT);
    net.queue(1, 2, [b"for two".to_vec()]);
    net.queue(1, 3, [b"for three".to_vec()]);
    assert!(net.run(1_000_000));
    let to2: Vec<Vec<u8>> = net
        .tap
        .iter()
        .filter(|(f, t, _)| *f == 1 && *t == 2)
        .map(|(_, _, b)| b.clone())
        .collect();
    let now = at(net.now);
    for f in &to2 {
        assert_eq!(net.node(3).ch.handle_frame(now, f), None);
        assert_eq!(net.node(1).ch.handle_frame(now, f), None);
    }
    assert_eq!(net.stats(3).replayed, to2.len() as u64);
    assert_eq!(net.stats(1).replayed, to2.len() as u64);
}

#[test]
fn stale_epochs_are_dropped_and_higher_ones_seen() {
    let mut net = connected();
    net.node(2).ch.set_epoch(5);
    net.node(1).ch.set_epoch(3);
    // Queued in epoch 3: consumed by 2 (in epoch 5) but never delivered.
    net.queue(1, 2, [b"old view".to_vec()]);
    let now = at(net.now);
    net.node(1).ch.heartbeat(now, b"old hb").unwrap();
    assert!(net.run(1_000_000));
    assert_eq!(net.got(2, 1), [b"hello 2".to_vec()]);
    assert!(!net.nodes[1].heartbeats.contains_key(&1));
    let s = net.stats(2);
    assert_eq!(s.stale_epoch, 2, "{s:?}");
    // 1 learnt of epoch 5 from 2's ACKs.
    assert_eq!(net.node(1).ch.highest_epoch_seen(), 5);
    assert_eq!(net.node(2).ch.highest_epoch_seen(), 3);

    // 1 steps up; the stream goes on.
    net.node(1).ch.set_epoch(5);
    net.queue(1, 2, [b"new view".to_vec()]);
    assert!(net.run(1_000_000));
    assert_eq!(net.got(2, 1), [b"hello 2".to_vec(), b"new view".to_vec()]);

    // 1 moves on to epoch 7 and 2 lags behind in 5: 2's payload of epoch 5 is consumed by 1
    // but not delivered, and 2 sees epoch 7 in 1's ACK.
    net.node(1).ch.set_epoch(7);
    let st = net.stats(1).stale_epoch;
    net.queue(2, 1, [b"from five".to_vec()]);
    assert!(net.run(1_000_000));
    assert_eq!(net.stats(1).stale_epoch, st + 1);
    assert_eq!(net.got(1, 2), [b"hello 1".to_vec()]);
    assert_eq!(net.node(2).ch.highest_epoch_seen(), 7);
    // 1's payloads of epoch 7 reach the laggard once, and its ACKs (epoch 5) count: an ACK
    // carries no view, so nothing is retransmitted while 2 catches up.
    net.queue(1, 2, [b"to the laggard".to_vec()]);
    assert!(net.run(300_000), "the laggard's ACKs are taken");
    assert_eq!(net.stats(1).stale_epoch, st + 1);
    assert_eq!(net.stats(1).retransmits, 0);
    assert_eq!(net.got(2, 1).last().unwrap(), b"to the laggard");
    assert_eq!(net.got(2, 1).len(), 3);
    assert_eq!(net.node(1).ch.unacked(2), 0);
    net.node(2).ch.set_epoch(7);
    net.queue(2, 1, [b"from seven".to_vec()]);
    assert!(net.run(2_000_000));
    assert_eq!(net.got(1, 2), [b"hello 1".to_vec(), b"from seven".to_vec()]);
    assert_eq!(net.got(2, 1).len(), 3);
}

/// A replica that takes over (a higher epoch) and a peer still in the old view that it never
/// talked to: the peer answers the first contact with an ACK of its old epoch, which must
/// teach the new primary its session, or neither could ever reach the other.
#[test]
fn a_new_view_reaches_a_peer_never_talked_to() {
    let mut net = Net::new(&[1, 2], 31, PERFECT);
    net.node(1).ch.set_epoch(33);
    net.node(2).ch.set_epoch(1);
    net.queue(1, 2, [b"new view".to_vec(), b"deliver".to_vec()]);
    assert!(net.run(1_000_000), "the first contact's answer is taken");
    assert_eq!(net.got(2, 1), [b"new view".to_vec(), b"deliver".to_vec()]);
    assert_eq!(net.stats(1).stale_epoch, 0);
    assert_eq!(net.node(2).ch.highest_epoch_seen(), 33);
}

/// With periodic heartbeats off, a single heartbeat may announce a view. Sent before the
/// peer's session is known, it is dropped by the peer (first contact); it must go out again
/// once the peer's answer teaches the session, and then be delivered.
#[test]
fn a_first_contact_heartbeat_is_sent_again_once_the_session_is_known() {
    let mut net = Net::new(&[1, 2], 32, PERFECT);
    net.node(1).ch.set_epoch(49);
    let now = at(net.now);
    net.node(1).ch.heartbeat(now, b"primary").unwrap();
    assert!(net
        .run_until(1_000_000, |n| n.nodes.iter().any(
            |x| x.id == 2 && x.heartbeats.get(&1).is_some_and(|h| !h.is_empty())
        )));
    assert_eq!(net.nodes[1].heartbeats[&1], [b"primary".to_vec()]);
    assert!(net.stats(1).frames_out >= 2, "{:?}", net.stats(1));
}

#[test]
fn restarted_peer_resyncs_and_its_old_frames_are_replays() {
    let mut net = Net::new(&[1, 2], 21, PERFECT);
    net.queue(1, 2, payloads(1, 2, 20, 1));
    net.queue(2, 1, payloads(2, 1, 20, 2));
    assert!(net.run(1_000_000));
    let old_from_1: Vec<Vec<u8>> = net
        .tap
        .iter()
        .filter(|(f, _, _)| *f == 1)
        .map(|(_, _, b)| b.clone())
        .collect();

    // 1 restarts with a higher incarnation; 2 keeps going.
    net.node(1).ch = chan(1, 2, &[2]);
    net.node(1).got.clear();
    net.queue(1, 2, [b"after restart".to_vec()]);
    net.queue(2, 1, [b"welcome back".to_vec()]);
    assert!(net.run(1_000_000));
    assert_eq!(net.got(2, 1).len(), 21);
    assert_eq!(net.got(2, 1)[20], b"after restart");
    assert_eq!(net.got(1, 2), [b"welcome back".to_vec()]);

    // Frames of the old incarnation are replays now, for both.
    let now = at(net.now);
    let r0 = net.stats(2).replayed;
    for f in &old_from_1 {
        assert_eq!(net.node(2).ch.handle_frame(now, f), None);
    }
    assert_eq!(net.stats(2).replayed - r0, old_from_1.len() as u64);

    // A lower incarnation is a replay.
    let mut ghost = chan(1, 1, &[2]);
    ghost.heartbeat(now, b"boo").unwrap();
    let mut buf = [0u8; MAX_FRAME_LEN];
    let (_, len) = ghost.poll_transmit(now, &mut buf).unwrap();
    let r0 = net.stats(2).replayed;
    assert_eq!(net.node(2).ch.handle_frame(now, &buf[..len]), None);
    assert_eq!(net.stats(2).replayed, r0 + 1);
}

#[test]
fn restarted_receiver_gets_everything_not_yet_acknowledged() {
    let mut net = Net::new(&[1, 2], 22, PERFECT);
    net.queue(1, 2, payloads(1, 2, 10, 3));
    assert!(net.run(1_000_000));
    // 2 goes down; 1 queues 50 more, which pile up unacknowledged.
    net.node(2).up = false;
    let more = payloads(1, 2, 50, 4);
    net.queue(1, 2, more.clone());
    assert!(!net.run(500_000));
    assert_eq!(net.node(1).ch.unacked(2), 50);
    // 2 comes back as a new incarnation and receives all 50, in order, once.
    let n2 = net.node(2);
    n2.ch = chan(2, 2, &[1]);
    n2.got.clear();
    n2.up = true;
    assert!(net.run(5_000_000));
    assert!(net.got(2, 1) == more.as_slice());
    assert_eq!(net.stats(2).delivered, 50);
}

#[test]
fn removing_and_adding_a_peer_starts_a_new_session() {
    let mut net = Net::new(&[1, 2], 23, PERFECT);
    net.queue(1, 2, payloads(1, 2, 5, 1));
    net.queue(2, 1, payloads(2, 1, 5, 2));
    assert!(net.run(1_000_000));
    let old: Vec<Vec<u8>> = net
        .tap
        .iter()
        .filter(|(f, _, _)| *f == 2)
        .map(|(_, _, b)| b.clone())
        .collect();
    let c = &mut net.node(1).ch;
    c.remove_peer(2);
    assert_eq!(c.peers().count(), 0);
    assert_eq!(c.unacked(2), 0);
    c.add_peer(2).unwrap();
    // 2's old frames (its stream from before) are not delivered again to the new entry.
    let now = at(net.now);
    for f in &old {
        assert_eq!(net.node(1).ch.handle_frame(now, f), None);
    }
    assert_eq!(net.got(1, 2).len(), 5);
    net.queue(1, 2, [b"again".to_vec()]);
    net.queue(2, 1, [b"again too".to_vec()]);
    assert!(net.run(1_000_000));
    assert_eq!(net.got(2, 1).len(), 6);
    assert_eq!(net.got(1, 2).len(), 6);
    assert_eq!(net.got(1, 2)[5], b"again too");
}

#[test]
fn capacity_exhaustion_returns_queue_full_and_recovers() {
    let mut net = Net::new(&[1, 2], 24, PERFECT);
    net.node(2).up = false;
    let now = at(0);
    // Small payloads: the window plus the backlog.
    let c = &mut net.node(1).ch;
    let mut n = 0;
    while c.send(now, 2, &[n as u8; 10]).is_ok() {
        n += 1;
        assert!(n <= SEND_WINDOW + SEND_BACKLOG);
    }
    assert_eq!(n, SEND_WINDOW + SEND_BACKLOG);
    assert_eq!(c.send(now, 2, b"x"), Err(ChanError::QueueFull));
    assert_eq!(c.unacked(2), n);
    assert!(!net.run(1_000_000));
    assert_eq!(net.node(1).ch.send(now, 2, b"x"), Err(ChanError::QueueFull));
    // Once acknowledged, room again.
    net.node(2).up = true;
    assert!(net.run(5_000_000));
    assert_eq!(net.got(2, 1).len(), n);
    assert_eq!(net.node(1).ch.unacked(2), 0);

    // Large payloads: the byte budget.
    net.node(2).up = false;
    let now = at(net.now);
    let c = &mut net.node(1).ch;
    let mut m = 0;
    while c.send(now, 2, &[0xee; MAX_PAYLOAD]).is_ok() {
        m += 1;
    }
    assert_eq!(m, SEND_BUFFER_BYTES / MAX_PAYLOAD);
    net.node(2).up = true;
    assert!(net.run(5_000_000));
    assert_eq!(net.got(2, 1).len(), n + m);
    assert!(net.node(1).ch.send(now, 2, &[0; MAX_PAYLOAD]).is_ok());
}

#[test]
fn api_errors() {
    let now = at(0);
    let mut c = chan(1, 1, &[]);
    assert_eq!(c.add_peer(1), Err(ChanError::UnknownPeer));
    for id in 2..2 + MAX_PEERS as u8 {
        c.add_peer(id).unwrap();
    }
    assert_eq!(c.add_peer(2), Ok(()));
    assert_eq!(c.add_peer(100), Err(ChanError::PeerTableFull));
    assert_eq!(c.peers().count(), MAX_PEERS);
    assert_eq!(c.send(now, 100, b"x"), Err(ChanError::UnknownPeer));
    assert_eq!(c.send(now, 1, b"x"), Err(ChanError::UnknownPeer));
    assert_eq!(
        c.send(now, 2, &[0; MAX_PAYLOAD + 1]),
        Err(ChanError::TooLarge)
    );
    assert_eq!(c.send(now, 2, &[0; MAX_PAYLOAD]), Ok(()));
    assert_eq!(
        c.heartbeat(now, &[0; MAX_HEARTBEAT_PAYLOAD + 1]),
        Err(ChanError::TooLarge)
    );
    assert_eq!(c.heartbeat(now, &[0; MAX_HEARTBEAT_PAYLOAD]), Ok(()));
    assert_eq!(c.unacked(2), 1);
    assert_eq!(c.unacked(100), 0);
    c.remove_peer(2);
    c.remove_peer(100);
    assert_eq!(c.peers().count(), MAX_PEERS - 1);
    assert_eq!(c.add_peer(100), Ok(()));
    // A buffer too small for the next frame: nothing is sent, nothing is lost.
    let mut small = [0u8; MIN_FRAME_LEN + 10];
    assert_eq!(c.poll_transmit(now, &mut small), None);
    let mut buf = [0u8; MAX_FRAME_LEN];
    let mut kinds = Vec::new();
    while let Some((_, len)) = c.poll_transmit(now, &mut buf) {
        assert!(len <= MAX_FRAME_LEN);
        kinds.push(buf[1]);
    }
    // Heartbeats to every peer there was when `heartbeat` was called, but 2.
    assert_eq!(kinds.iter().filter(|&&k| k == 3).count(), MAX_PEERS - 1);
    assert_eq!(c.stats().frames_out, MAX_PEERS as u64 - 1);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn retransmission_backs_off_to_the_cap() {
    let mut c = chan(1, 1, &[2]);
    let mut now = at(0);
    c.send(now, 2, b"into the void").unwrap();
    let mut buf = [0u8; MAX_FRAME_LEN];
    assert!(c.poll_transmit(now, &mut buf).is_some());
    assert_eq!(c.poll_transmit(now, &mut buf), None);
    let mut gaps = Vec::new();
    for _ in 0..8 {
        let t = c.poll_timeout().unwrap();
        gaps.push((t - now).total_millis());
        now = t;
        assert!(c.poll_transmit(now, &mut buf).is_some());
        assert_eq!(c.poll_transmit(now, &mut buf), None);
    }
    assert_eq!(gaps, [20, 40, 80, 160, 200, 200, 200, 200]);
    assert_eq!(c.stats().retransmits, 8);
}

/// A scripted fault for each frame, then a healed link.
fn fate_strategy() -> impl Strategy<Value = Fate> {
    prop_oneof![
        5 => (1u64..3_000).prop_map(|delay| Fate::Deliver { delay }),
        3 => Just(Fate::Drop),
        2 => (1u64..3_000, 1u64..6_000).prop_map(|(delay, delay2)| Fate::Duplicate { delay, delay2 }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn exactly_once_in_order_under_any_fault_schedule(
        schedule in proptest::collection::vec(fate_strategy(), 0..1_500),
        three in any::<bool>(),
        count in 1usize..40,
        seed in any::<u64>(),
    ) {
        let ids: &[u8] = if three { &[1, 2, 3] } else { &[4, 9] };
        let mut net = Net::new(ids, seed, PERFECT);
        net.schedule = schedule.into();
        net.hb_every = 7_000;
        let mut expect = Vec::new();
        for &a in ids {
            for &b in ids {
                if a != b {
                    let ps: Vec<Vec<u8>> = (0..count)
                        .map(|i| {
                            let mut p = format!("{a}>{b}#{i};").into_bytes();
                            p.resize(p.len() + (seed as usize ^ (i * 37)) % 700, i as u8);
                            p
                        })
                        .collect();
                    net.queue(a, b, ps.clone());
                    expect.push((a, b, ps));
                }
            }
        }
        prop_assert!(net.run(3_600_000_000), "did not settle");
        for (a, b, ps) in &expect {
            prop_assert!(net.got(*b, *a) == ps.as_slice(), "{}->{} not exactly once in order", a, b);
        }
        for &id in ids {
            let s = net.stats(id);
            prop_assert_eq!(s.forged + s.malformed + s.stale_epoch + s.unknown_peer + s.wrong_group, 0);
        }
    }
}

/// One payload a millisecond over a link with light loss and reordering: every payload
/// arrives, and none waits long (go-back-N recovers within a few round trips, not timeouts).
#[test]
fn latency_stays_low_under_light_faults() {
    for (loss, dup, jitter) in [(2, 1, 200), (5, 0, 1_000), (10, 0, 0)] {
        let faults = Faults {
            loss,
            dup,
            delay: 200,
            jitter,
        };
        let mut net = Net::new(&[1, 2], 3, faults);
        net.hb_every = 5_000;
        let mut sent = Vec::new();
        for i in 0..1_000u64 {
            sent.push(net.now);
            net.queue(1, 2, [i.to_be_bytes().to_vec()]);
            net.run_until(1_000, |_| false);
        }
        assert!(net.run(10_000_000));
        let got: Vec<u64> = net
            .got(2, 1)
            .iter()
            .map(|p| u64::from_be_bytes(p[..].try_into().unwrap()))
            .collect();
        assert_eq!(got, (0..1_000).collect::<Vec<u64>>());
        let mut lat: Vec<u64> = net.nodes[1].got_at[&1]
            .iter()
            .zip(&sent)
            .map(|(a, s)| a - s)
            .collect();
        lat.sort_unstable();
        let (p50, p99) = (lat[500], lat[990]);
        assert!(
            p50 <= 1_000 && p99 <= 20_000,
            "loss {loss}% dup {dup}% jitter {jitter} us: p50 {p50} us, p99 {p99} us"
        );
    }
}

/// A frame dropped beyond a gap makes the receiver's ACK negative, and the sender resends
/// from the gap at once; the same negative ACK replayed does not make it resend again.
#[test]
fn negative_ack_goes_back_at_once_and_replays_do_not() {
    let mut net = connected();
    let now = at(net.now);
    let mut buf = [0u8; MAX_FRAME_LEN];
    let mut frames = Vec::new();
    for p in [b"one", b"two", b"thr"] {
        net.node(1).ch.send(now, 2, p).unwrap();
    }
    while let Some((to, len)) = net.node(1).ch.poll_transmit(now, &mut buf) {
        assert_eq!(to, 2);
        frames.push(buf[..len].to_vec());
    }
    assert_eq!(frames.len(), 3);
    // "two" is lost: "thr" is dropped beyond the gap.
    let b = &mut net.node(2).ch;
    assert!(matches!(
        b.handle_frame(now, &frames[0]),
        Some(Received::Data {
            payload: b"one",
            ..
        })
    ));
    assert_eq!(b.handle_frame(now, &frames[2]), None);
    assert_eq!(b.stats().out_of_order, 1);
    let (_, len) = b.poll_transmit(now, &mut buf).unwrap();
    let nack = buf[..len].to_vec();
    assert_eq!(kind(&nack), 2);
    assert_ne!(
        u64::from_be_bytes(nack[36..44].try_into().unwrap()),
        0,
        "a negative ACK"
    );
    assert_eq!(b.poll_transmit(now, &mut buf), None);

    // The sender goes back to "two" before any timer fires.
    let a = &mut net.node(1).ch;
    assert_eq!(a.handle_frame(now, &nack), None);
    assert_eq!(a.unacked(2), 2);
    let mut resent = Vec::new();
    while let Some((_, len)) = a.poll_transmit(now, &mut buf) {
        resent.push(buf[..len].to_vec());
    }
    assert_eq!(resent.len(), 2);
    assert_eq!(a.stats().retransmits, 2);
    // A replay of the negative ACK changes nothing.
    for _ in 0..10 {
        assert_eq!(a.handle_frame(now, &nack), None);
        assert_eq!(a.poll_transmit(now, &mut buf), None);
    }
    assert_eq!(a.stats().retransmits, 2);
    let b = &mut net.node(2).ch;
    assert!(matches!(
        b.handle_frame(now, &resent[0]),
        Some(Received::Data {
            payload: b"two",
            ..
        })
    ));
    assert!(matches!(
        b.handle_frame(now, &resent[1]),
        Some(Received::Data {
            payload: b"thr",
            ..
        })
    ));
    assert!(net.run(1_000_000));
}

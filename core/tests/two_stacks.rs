//! Two cores connected back to back in virtual time: handshake, bulk transfer both ways and
//! close, through a link that can lose, duplicate and reorder packets. Integrity is checked
//! byte for byte.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

use hydranet_core::netinet::tcp_fsm::TcpState;
use hydranet_core::stack::{SocketHandle, Stack};
use hydranet_core::{Duration, Errno, Instant};

const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// A deterministic faulty link, one direction.
struct Link {
    queue: VecDeque<(Instant, Vec<u8>)>,
    rng: u64,
    loss_pct: u64,
    dup_pct: u64,
    reorder_pct: u64,
    delay: Duration,
}

impl Link {
    fn new(seed: u64, loss_pct: u64, dup_pct: u64, reorder_pct: u64) -> Self {
        Link {
            queue: VecDeque::new(),
            rng: seed | 1,
            loss_pct,
            dup_pct,
            reorder_pct,
            delay: Duration::from_millis(5),
        }
    }
    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 100
    }
    fn send(&mut self, now: Instant, pkt: Vec<u8>) {
        if self.rand() < self.loss_pct {
            return;
        }
        let mut at = now + self.delay;
        if self.rand() < self.reorder_pct {
            at += Duration::from_millis(3);
        }
        if self.rand() < self.dup_pct {
            self.queue.push_back((at, pkt.clone()));
        }
        self.queue.push_back((at, pkt));
    }
    fn next_due(&self) -> Option<Instant> {
        self.queue.iter().map(|(t, _)| *t).min()
    }
    fn take_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        let i = self.queue.iter().position(|(t, _)| *t <= now)?;
        self.queue.remove(i).map(|(_, p)| p)
    }
}

struct Net {
    a: Stack<'static>,
    b: Stack<'static>,
    ab: Link,
    ba: Link,
    now: Instant,
    buf: Vec<u8>,
}

impl Net {
    fn new(seed: u64, loss: u64, dup: u64, reorder: u64) -> Self {
        let mut a = Stack::new_alloc([1; 16]);
        let mut b = Stack::new_alloc([2; 16]);
        a.add_address(A).unwrap();
        b.add_address(B).unwrap();
        Net {
            a,
            b,
            ab: Link::new(seed, loss, dup, reorder),
            ba: Link::new(seed.wrapping_mul(31) + 7, loss, dup, reorder),
            now: Instant::ZERO,
            buf: vec![0; 2048],
        }
    }

    fn flush(&mut self) {
        while let Some(n) = self.a.poll_transmit(self.now, &mut self.buf) {
            trace("A>", self.now, &self.buf[..n]);
            self.ab.send(self.now, self.buf[..n].to_vec());
        }
        while let Some(n) = self.b.poll_transmit(self.now, &mut self.buf) {
            trace("B>", self.now, &self.buf[..n]);
            self.ba.send(self.now, self.buf[..n].to_vec());
        }
    }

    /// Moves time to the next event (packet arrival or timer) and processes it.
    fn step(&mut self) -> bool {
        self.flush();
        let next = [
            self.ab.next_due(),
            self.ba.next_due(),
            self.a.poll_timeout(),
            self.b.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(t) = next else { return false };
        self.now = self.now.max(t);
        while let Some(p) = self.ab.take_due(self.now) {
            self.b.handle_packet(self.now, &p);
        }
        while let Some(p) = self.ba.take_due(self.now) {
            self.a.handle_packet(self.now, &p);
        }
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        self.flush();
        true
    }
}

/// With HYDRANET_TRACE set, prints a tcpdump-like line per packet.
fn trace(dir: &str, now: Instant, pkt: &[u8]) {
    if std::env::var_os("HYDRANET_TRACE").is_none() {
        return;
    }
    use hydranet_core::wire::{ipv4::Ipv4Header, tcp};
    if let Ok((ip, p)) = Ipv4Header::parse(pkt) {
        if let Ok(t) = tcp::parse_segment(p, ip.src, ip.dst, false) {
            eprintln!(
                "{:>10} {dir} {} seq {} ack {} win {} len {}",
                now.total_micros(),
                t.header.flags,
                t.header.seq,
                t.header.ack,
                t.header.window,
                t.payload.len()
            );
        }
    }
}

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

fn transfer(seed: u64, loss: u64, dup: u64, reorder: u64, size: usize) {
    let mut net = Net::new(seed, loss, dup, reorder);
    let ls = net.b.socket().unwrap();
    net.b.bind(ls, SocketAddrV4::new(B, 80)).unwrap();
    net.b.listen(ls, 8).unwrap();
    let c = net.a.socket().unwrap();
    assert_eq!(
        net.a.connect(net.now, c, SocketAddrV4::new(B, 80)),
        Err(Errno::EINPROGRESS)
    );
    let mut server: Option<SocketHandle> = None;
    let (mut sent_a, mut got_b) = (0usize, Vec::with_capacity(size));
    let (mut sent_b, mut got_a) = (0usize, Vec::with_capacity(size));
    let mut closed_a = false;
    let mut closed_b = false;
    let mut eof_a = false;
    let mut eof_b = false;
    let mut chunk = vec![0u8; 8192];
    let mut steps = 0u64;
    while !(eof_a && eof_b) {
        steps += 1;
        assert!(steps < 5_000_000, "transfer did not finish (seed {seed})");
        assert!(
            net.now < Instant::from_millis(600_000),
            "transfer took too long in virtual time (seed {seed})"
        );
        if server.is_none() {
            if let Ok((h, _)) = net.b.accept(ls) {
                server = Some(h);
            }
        }
        let connected = net
            .a
            .state(c)
            .map(|s| s.have_established())
            .unwrap_or(false);
        if connected {
            while sent_a < size {
                let end = (sent_a + 8192).min(size);
                let data: Vec<u8> = (sent_a..end).map(pattern).collect();
                match net.a.send(net.now, c, &data, 0) {
                    Ok(n) => sent_a += n,
                    Err(Errno::EWOULDBLOCK) => break,
                    Err(e) => panic!("send: {e}"),
                }
            }
            if sent_a == size && !closed_a {
                net.a
                    .shutdown(
                        net.now,
                        c,
                        hydranet_core::netinet::tcp_usrreq::Shutdown::Write,
                    )
                    .unwrap();
                closed_a = true;
            }
            loop {
                match net.a.recv(net.now, c, &mut chunk, 0) {
                    Ok(0) => {
                        eof_a = true;
                        break;
                    }
                    Ok(n) => got_a.extend_from_slice(&chunk[..n]),
                    Err(Errno::EWOULDBLOCK) => break,
                    Err(e) => panic!("recv a: {e}"),
                }
            }
        }
        if let Some(s) = server {
            while sent_b < size {
                let end = (sent_b + 8192).min(size);
                let data: Vec<u8> = (sent_b..end).map(|i| pattern(i ^ 0x55)).collect();
                match net.b.send(net.now, s, &data, 0) {
                    Ok(n) => sent_b += n,
                    Err(Errno::EWOULDBLOCK) => break,
                    Err(e) => panic!("send b: {e}"),
                }
            }
            if sent_b == size && !closed_b {
                net.b
                    .shutdown(
                        net.now,
                        s,
                        hydranet_core::netinet::tcp_usrreq::Shutdown::Write,
                    )
                    .unwrap();
                closed_b = true;
            }
            loop {
                match net.b.recv(net.now, s, &mut chunk, 0) {
                    Ok(0) => {
                        eof_b = true;
                        break;
                    }
                    Ok(n) => got_b.extend_from_slice(&chunk[..n]),
                    Err(Errno::EWOULDBLOCK) => break,
                    Err(e) => panic!("recv b: {e}"),
                }
            }
        }
        if !net.step() && (!eof_a || !eof_b) {
            panic!("network went idle before the transfer finished (seed {seed})");
        }
    }
    assert_eq!(got_b.len(), size, "seed {seed}");
    assert!(
        got_b.iter().enumerate().all(|(i, &x)| x == pattern(i)),
        "a->b corrupted, seed {seed}"
    );
    assert_eq!(got_a.len(), size, "seed {seed}");
    assert!(
        got_a
            .iter()
            .enumerate()
            .all(|(i, &x)| x == pattern(i ^ 0x55)),
        "b->a corrupted, seed {seed}"
    );
    // Both sides close; the active closer ends in TIME_WAIT, then everything drains.
    net.a.close(net.now, c).unwrap();
    net.b.close(net.now, server.unwrap()).unwrap();
    for _ in 0..100_000 {
        if !net.step() {
            break;
        }
    }
    assert_eq!(
        net.a
            .pcblist()
            .filter(|p| p.state != TcpState::Listen)
            .count(),
        0
    );
    assert_eq!(
        net.b
            .pcblist()
            .filter(|p| p.state != TcpState::Listen)
            .count(),
        0
    );
}

#[test]
fn clean_link_one_megabyte_each_way() {
    transfer(1, 0, 0, 0, 1 << 20);
}

#[test]
fn lossy_link_keeps_every_byte() {
    for seed in 1..=4 {
        transfer(seed, 3, 0, 0, 512 << 10);
    }
}

#[test]
fn duplicating_and_reordering_link_keeps_every_byte() {
    for seed in 1..=4 {
        transfer(seed * 7, 0, 5, 10, 512 << 10);
    }
}

#[test]
fn everything_at_once() {
    for seed in 10..=13 {
        transfer(seed, 2, 2, 5, 2 << 20);
    }
}

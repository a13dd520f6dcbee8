//! A deterministic simulator of a HydraNet-FT deployment in virtual time (feature `sim`).
//!
//! One client, one redirector and N replica host servers. The client's packets to the origin
//! go to the redirector, which tunnels them (IP-in-IP) to every replica; replicas answer the
//! client directly; replicas talk to each other over the acknowledgement channel. Every link
//! can lose, duplicate, reorder and delay packets, hosts can crash at any step, and the ack
//! channel can be partitioned. After every step the five invariants of DESIGN.md section 4
//! are checked (see [`Sim::check`]).

pub mod schedule;
pub mod service;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::vec::Vec;

use crate::ft::host::{GroupConfig, Host, Member, Role};
use crate::ft::params::{DetectorParams, PortMode};
use crate::ft::redirector::{Decision, Redirector};
use crate::netinet::tcp_fsm::TcpState;
use crate::netinet::tcp_seq::{seq_gt, Seq};
use crate::stack::{SocketHandle, Stack};
use crate::time::{Duration, Instant};
use crate::wire::{ipv4, tcp as wtcp};
use crate::Errno;

pub use service::{Service, ServiceKind};

/// Addresses (documentation ranges only).
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const ORIGIN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
pub const SERVICE_PORT: u16 = 80;
pub const REDIRECTOR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub fn host_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 10 + i as u8)
}

/// Where a packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    Client,
    Redirector,
    Host(usize),
}

/// Fault settings for one kind of link, in percent (0..=100) and microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkFaults {
    pub loss_pct: u8,
    pub dup_pct: u8,
    pub reorder_pct: u8,
    /// Extra delay added to reordered packets.
    pub reorder_delay_us: u64,
    /// Every packet is delayed by a further uniform 0..=`jitter_us` (0: none).
    pub jitter_us: u64,
}

/// The simulated network's settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub replicas: usize,
    pub seed: u64,
    pub service: ServiceKind,
    pub detector: DetectorParams,
    /// One-way delays (client to redirector, redirector to host, host to client, host to
    /// host): the defaults give a 10 ms client RTT.
    pub d_client_redir: Duration,
    pub d_redir_host: Duration,
    pub d_host_client: Duration,
    pub d_host_host: Duration,
    pub client_links: LinkFaults,
    pub chan_links: LinkFaults,
    pub tunnel_links: LinkFaults,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            replicas: 3,
            seed: 1,
            service: ServiceKind::Echo,
            detector: DetectorParams::default(),
            d_client_redir: Duration::from_micros(2500),
            d_redir_host: Duration::from_micros(2500),
            d_host_client: Duration::from_micros(5000),
            d_host_host: Duration::from_micros(500),
            client_links: LinkFaults::default(),
            chan_links: LinkFaults::default(),
            tunnel_links: LinkFaults::default(),
        }
    }
}

/// A replica host server with its service.
pub struct SimHost {
    pub host: Host<'static>,
    pub alive: bool,
    pub service: Service,
    listener: SocketHandle,
}

struct InFlight {
    at: Instant,
    order: u64,
    to: Node,
    from: Node,
    pkt: Vec<u8>,
}

/// An invariant that failed, with when and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub at: Instant,
    pub invariant: u8,
    pub what: String,
}

/// The simulation.
pub struct Sim {
    pub cfg: SimConfig,
    pub now: Instant,
    pub client: Stack<'static>,
    pub redirector: Redirector,
    pub hosts: Vec<SimHost>,
    inflight: Vec<InFlight>,
    order: u64,
    rng: u64,
    /// Ack channel cut between these hosts until the instant.
    partitions: Vec<(usize, usize, Instant)>,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    pub violations: Vec<Violation>,
    /// Last time each host transmitted a TCP segment to the client.
    last_client_tx: Vec<Option<Instant>>,
    /// The last view change anywhere (for "after the view change has settled").
    last_view_change: Instant,
    epochs: Vec<u32>,
    /// Segments the client received with RST.
    pub client_resets: u64,
    pub steps: u64,
    /// When set, the client is not `self.client` but an external TCP (e.g. smoltcp) driven
    /// by the test: packets for the client collect in `client_inbox`, the test injects the
    /// client's packets with [`Sim::inject_from_client`] and names its next timer in
    /// `client_wakeup`.
    pub external_client: bool,
    pub client_inbox: Vec<Vec<u8>>,
    pub client_wakeup: Option<Instant>,
    /// Per host pair (lower index first), the end of the latest ack-channel partition.
    partition_end: Vec<Instant>,
    /// When set, every ack-channel packet a host emits is copied here as
    /// (from, to, IPv4 packet): what an eavesdropper on that link sees.
    pub tap_chan: bool,
    pub chan_tap: Vec<(usize, usize, Vec<u8>)>,
    /// When set, every segment a host sends the client is copied here as (host, IPv4 packet).
    pub tap_client: bool,
    pub client_tap: Vec<(usize, Vec<u8>)>,
    /// Tests' loss of chosen packets: called with the host and the client's packet as the
    /// redirector tunnels it there; `true` drops that copy.
    #[allow(clippy::type_complexity)]
    pub tunnel_drop: Option<Box<dyn FnMut(usize, &[u8]) -> bool>>,
    /// Tests' loss of chosen ack-channel frames: called with the sending and the receiving
    /// host and the time; `true` drops the frame (unlike a partition, the invariant checks
    /// do not know).
    #[allow(clippy::type_complexity)]
    pub chan_drop: Option<Box<dyn FnMut(usize, usize, Instant) -> bool>>,
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        let mut seed16 = [0u8; 16];
        seed16[..8].copy_from_slice(&cfg.seed.to_le_bytes());
        let mut client = Stack::new_alloc(seed16);
        client.add_address(CLIENT).expect("fresh stack");
        let replicas: Vec<Ipv4Addr> = (0..cfg.replicas).map(host_addr).collect();
        let mut redirector = Redirector::new(REDIRECTOR, 1500);
        redirector
            .add_route(ORIGIN, SERVICE_PORT, &replicas)
            .expect("a fresh redirector takes a route");
        let members: Vec<Member> = (0..cfg.replicas)
            .map(|i| Member {
                rank: i as u8,
                addr: host_addr(i),
            })
            .collect();
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = (cfg.seed as u8).wrapping_mul(31).wrapping_add(i as u8);
        }
        let mut hosts = Vec::new();
        for i in 0..cfg.replicas {
            let mut s16 = seed16;
            s16[15] = i as u8 + 1;
            let stack = Stack::new_alloc(s16);
            let mut host = Host::new(stack, host_addr(i)).expect("fresh host");
            host.v_host(ORIGIN).expect("v_host");
            host.add_redirector(REDIRECTOR).expect("redirector");
            host.ft_group(
                ORIGIN,
                SERVICE_PORT,
                &GroupConfig {
                    group_id: 7,
                    local_rank: i as u8,
                    members: &members,
                    key,
                    incarnation: 1,
                },
            )
            .expect("ft_group");
            let mode = if i == 0 {
                PortMode::Primary
            } else {
                PortMode::Backup
            };
            host.setportopt(ORIGIN, SERVICE_PORT, mode, cfg.detector)
                .expect("setportopt");
            let listener = crate::ft::host::listen_on(&mut host.stack, ORIGIN, SERVICE_PORT, 64)
                .expect("listen");
            hosts.push(SimHost {
                host,
                alive: true,
                service: Service::new(cfg.service.clone()),
                listener,
            });
        }
        let n = hosts.len();
        Sim {
            rng: cfg.seed | 1,
            cfg,
            now: Instant::ZERO,
            client,
            redirector,
            hosts,
            inflight: Vec::new(),
            order: 0,
            partitions: Vec::new(),
            buf: vec![0; 70_000],
            scratch: vec![0; 70_000],
            violations: Vec::new(),
            last_client_tx: vec![None; n],
            last_view_change: Instant::ZERO,
            epochs: vec![0; n],
            client_resets: 0,
            steps: 0,
            external_client: false,
            client_inbox: Vec::new(),
            client_wakeup: None,
            partition_end: vec![Instant::ZERO; n * n],
            tap_chan: false,
            chan_tap: Vec::new(),
            tap_client: false,
            client_tap: Vec::new(),
            tunnel_drop: None,
            chan_drop: None,
        }
    }

    /// An attacker on the network hands host `to` an arbitrary IPv4 packet now.
    pub fn inject_to_host(&mut self, to: usize, pkt: Vec<u8>) {
        self.order += 1;
        self.inflight.push(InFlight {
            at: self.now,
            order: self.order,
            to: Node::Host(to),
            from: Node::Redirector,
            pkt,
        });
    }

    /// A packet the external client sends (see [`Sim::external_client`]).
    pub fn inject_from_client(&mut self, pkt: Vec<u8>) {
        self.emit(Node::Client, pkt);
    }

    /// Whether any ack-channel partition is in force or healed less than `settle` ago.
    pub fn partition_recent(&self, settle: Duration) -> bool {
        self.partition_end
            .iter()
            .any(|&e| e != Instant::ZERO && self.now < e + settle)
    }

    /// Whether hosts `a` and `b` were cut from each other less than `settle` ago.
    fn pair_partition_recent(&self, a: usize, b: usize, settle: Duration) -> bool {
        let n = self.hosts.len();
        let e = self.partition_end[a.min(b) * n + a.max(b)];
        e != Instant::ZERO && self.now < e + settle
    }

    /// The time after a view change (or a healed partition) within which two replicas may
    /// still both transmit: the detector's reaction time plus a round trip on the channel.
    pub fn settle_time(&self) -> Duration {
        let d = &self.cfg.detector;
        let hb = if d.heartbeat_interval_ms > 0 {
            d.heartbeat_timeout() + d.heartbeat_interval()
        } else {
            Duration::ZERO
        };
        let rx = if d.retransmit_threshold > 0 {
            d.retransmit_window()
        } else {
            Duration::ZERO
        };
        hb.max(rx) + self.cfg.d_host_host + self.cfg.d_host_host + Duration::from_millis(10)
    }

    fn rand_pct(&mut self) -> u8 {
        (xorshift(&mut self.rng) % 100) as u8
    }

    /// Kills host `i` (as `kill -9`): it neither receives nor sends again.
    pub fn crash(&mut self, i: usize) {
        if let Some(h) = self.hosts.get_mut(i) {
            h.alive = false;
        }
    }

    /// Cuts the ack channel between hosts `a` and `b` for `d`.
    /// The cut heals by itself when `d` has passed; frames sent meanwhile are lost (the
    /// channel's retransmissions repair that after the heal).
    pub fn partition(&mut self, a: usize, b: usize, d: Duration) {
        let until = self.now + d;
        self.partitions.push((a, b, until));
        let n = self.hosts.len();
        if a < n && b < n {
            let e = &mut self.partition_end[a.min(b) * n + a.max(b)];
            *e = (*e).max(until);
        }
    }

    /// The host currently acting as primary (the live one with the highest epoch claiming it).
    pub fn primary(&self) -> Option<usize> {
        self.hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.alive && h.host.role(ORIGIN, SERVICE_PORT) == Some(Role::Primary))
            .max_by_key(|(_, h)| h.host.epoch(ORIGIN, SERVICE_PORT))
            .map(|(i, _)| i)
    }

    fn send(&mut self, from: Node, to: Node, delay: Duration, faults: LinkFaults, pkt: &[u8]) {
        if self.rand_pct() < faults.loss_pct {
            if std::env::var_os("HYDRANET_TRACE_PACKETS").is_some() {
                std::eprintln!(
                    "{:>9} lost {:?} -> {:?}: {}",
                    self.now.total_micros(),
                    from,
                    to,
                    summary(pkt)
                );
            }
            return;
        }
        let copies = if self.rand_pct() < faults.dup_pct {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = self.now + delay;
            if faults.jitter_us > 0 {
                let j = xorshift(&mut self.rng) % (faults.jitter_us + 1);
                at += Duration::from_micros(j);
            }
            if self.rand_pct() < faults.reorder_pct {
                at += Duration::from_micros(faults.reorder_delay_us.max(1));
            }
            self.order += 1;
            self.inflight.push(InFlight {
                at,
                order: self.order,
                to,
                from,
                pkt: pkt.to_vec(),
            });
        }
    }

    fn partitioned(&mut self, a: usize, b: usize) -> bool {
        let now = self.now;
        self.partitions.retain(|p| now < p.2);
        self.partitions
            .iter()
            .any(|&(x, y, until)| ((x, y) == (a, b) || (x, y) == (b, a)) && self.now < until)
    }

    /// Routes a packet a node emitted.
    fn emit(&mut self, from: Node, pkt: Vec<u8>) {
        if std::env::var_os("HYDRANET_TRACE_PACKETS").is_some() {
            std::eprintln!(
                "{:>9} {:?} emits {}",
                self.now.total_micros(),
                from,
                summary(&pkt)
            );
        }
        let Ok((ip, _)) = ipv4::Ipv4Header::parse(&pkt) else {
            return;
        };
        match from {
            Node::Client => {
                let d = self.cfg.d_client_redir;
                let f = self.cfg.client_links;
                self.send(from, Node::Redirector, d, f, &pkt);
            }
            Node::Host(i) => {
                if ip.dst == CLIENT {
                    self.record_client_tx(i, &pkt);
                    let d = self.cfg.d_host_client;
                    let f = self.cfg.client_links;
                    self.send(from, Node::Client, d, f, &pkt);
                } else if let Some(j) = (0..self.hosts.len()).find(|&j| host_addr(j) == ip.dst) {
                    if self.tap_chan {
                        self.chan_tap.push((i, j, pkt.clone()));
                    }
                    if self.partitioned(i, j) {
                        return;
                    }
                    let now = self.now;
                    if let Some(f) = self.chan_drop.as_mut() {
                        if f(i, j, now) {
                            return;
                        }
                    }
                    let d = self.cfg.d_host_host;
                    let f = self.cfg.chan_links;
                    self.send(from, Node::Host(j), d, f, &pkt);
                }
            }
            Node::Redirector => {}
        }
    }

    fn record_client_tx(&mut self, i: usize, pkt: &[u8]) {
        self.last_client_tx[i] = Some(self.now);
        if self.tap_client {
            self.client_tap.push((i, pkt.to_vec()));
        }
        // Invariant 5: a backup transmits nothing to the client.
        if self.hosts[i].host.role(ORIGIN, SERVICE_PORT) == Some(Role::Backup) {
            let what = format!(
                "backup host {i} sent a segment to the client: {}",
                summary(pkt)
            );
            self.violate(5, what);
        }
        // Invariant 1, as the segment leaves: its acknowledgement is held by every live
        // replica that has the connection, and its window reaches no further than any of
        // their buffers (a replica cut from the sender by a partition is not live to it).
        let settle = self.settle_time();
        if let Ok((ip, seg)) = ipv4::Ipv4Header::parse(pkt) {
            if let Ok(t) = wtcp::parse_segment(seg, ip.src, ip.dst, false) {
                let h = &t.header;
                if h.flags.contains(wtcp::TcpFlags::ACK) && !h.flags.contains(wtcp::TcpFlags::RST) {
                    let ack = Seq(h.ack);
                    let syn = h.flags.contains(wtcp::TcpFlags::SYN);
                    let scale = self.hosts[i]
                        .host
                        .stack
                        .sockets
                        .iter()
                        .find(|s| s.in_use && s.inp.faddr == CLIENT && s.inp.fport == h.dst_port)
                        .map_or(0, |s| s.tp.rcv_scale);
                    let wnd = if syn {
                        h.window as u32
                    } else {
                        (h.window as u32) << scale
                    };
                    let mut found = Vec::new();
                    for (j, hj) in self.hosts.iter().enumerate() {
                        if j == i || !hj.alive || self.pair_partition_recent(i, j, settle) {
                            continue;
                        }
                        for s in hj.host.stack.sockets.iter() {
                            if !(s.in_use
                                && s.inp.faddr == CLIENT
                                && s.inp.fport == h.dst_port
                                && s.inp.lport == SERVICE_PORT
                                && s.tp.t_state.have_rcvd_syn())
                            {
                                continue;
                            }
                            if seq_gt(ack, s.tp.rcv_nxt) {
                                found.push(format!(
                                    "host {i} acks {} to client port {} but live host {j} holds only {}",
                                    ack.0, h.dst_port, s.tp.rcv_nxt.0
                                ));
                            }
                            let edge = s.tp.rcv_nxt + s.so_rcv.space() as u32;
                            if !syn && seq_gt(ack + wnd, edge) {
                                found.push(format!(
                                    "host {i} advertises edge {} to client port {} beyond host {j}'s {}",
                                    (ack + wnd).0, h.dst_port, edge.0
                                ));
                            }
                        }
                    }
                    for f in found {
                        self.violate(1, f);
                    }
                }
            }
        }
        // Invariant 4: after a view change settles, only one replica transmits.
        if self.now > self.last_view_change + settle && !self.partition_recent(settle) {
            let window = self
                .cfg
                .detector
                .heartbeat_interval()
                .max(Duration::from_millis(1));
            let mut both = Vec::new();
            for (j, t) in self.last_client_tx.iter().enumerate() {
                if j != i && self.hosts[j].alive {
                    if let Some(t) = t {
                        if self.now.saturating_duration_since(*t) < window
                            && *t > self.last_view_change + settle
                        {
                            both.push(j);
                        }
                    }
                }
            }
            for j in both {
                let what = format!("hosts {i} and {j} both transmit to the client");
                self.violate(4, what);
            }
        }
    }

    fn violate(&mut self, invariant: u8, what: String) {
        if self.violations.len() < 32 {
            self.violations.push(Violation {
                at: self.now,
                invariant,
                what,
            });
        }
    }

    /// Delivers everything due now and lets every node react; advances time to the next event.
    /// Returns false when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        self.steps += 1;
        self.flush_all();
        let mut next: Option<Instant> = self.inflight.iter().map(|p| p.at).min();
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if self.external_client {
            consider(self.client_wakeup.take());
        } else {
            consider(self.client.poll_timeout());
        }
        for h in self.hosts.iter().filter(|h| h.alive) {
            consider(h.host.poll_timeout());
        }
        let Some(t) = next else { return false };
        self.now = self.now.max(t);
        // Packets due now, in the order they were sent.
        let mut due: Vec<InFlight> = Vec::new();
        let mut i = 0;
        while i < self.inflight.len() {
            if self.inflight[i].at <= self.now {
                due.push(self.inflight.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|p| (p.at, p.order));
        for p in due {
            self.deliver(p);
        }
        let now = self.now;
        if !self.external_client {
            self.client.handle_timeout(now);
        }
        for h in self.hosts.iter_mut().filter(|h| h.alive) {
            h.host.handle_timeout(now);
        }
        self.run_services();
        self.flush_all();
        self.check();
        true
    }

    fn deliver(&mut self, p: InFlight) {
        let now = self.now;
        let _ = p.from;
        match p.to {
            Node::Client => {
                if let Ok((ip, seg)) = ipv4::Ipv4Header::parse(&p.pkt) {
                    if let Ok(t) = wtcp::parse_segment(seg, ip.src, ip.dst, false) {
                        // A RST answering a duplicate ACK after the connection finished (the
                        // client sits in TIME_WAIT, or already closed it) is ordinary TCP and
                        // harmless (RFC 1337): only a RST that reaches a live connection counts.
                        let live = self.client.sockets.iter().any(|s| {
                            s.in_use
                                && s.inp.lport == t.header.dst_port
                                && s.inp.fport == t.header.src_port
                                && !matches!(s.tp.t_state, TcpState::TimeWait | TcpState::Closed)
                        });
                        if t.header.flags.contains(wtcp::TcpFlags::RST) && live {
                            self.client_resets += 1;
                            if self.client_resets <= 4 {
                                let what = format!(
                                    "client got a reset at {} us from {:?}: {}",
                                    self.now.total_micros(),
                                    p.from,
                                    summary(&p.pkt)
                                );
                                self.violate(2, what);
                            }
                        }
                    }
                }
                if self.external_client {
                    self.client_inbox.push(p.pkt);
                } else {
                    self.client.handle_packet(now, &p.pkt);
                }
            }
            Node::Redirector => {
                let mut copies: Vec<(Ipv4Addr, Vec<u8>)> = Vec::new();
                let mut scratch = std::mem::take(&mut self.scratch);
                let d = self.redirector.route(&p.pkt, &mut scratch, |dst, bytes| {
                    copies.push((dst, bytes.to_vec()))
                });
                self.scratch = scratch;
                if let Decision::Tunneled { .. } = d {
                    for (dst, bytes) in copies {
                        if let Some(j) = (0..self.hosts.len()).find(|&j| host_addr(j) == dst) {
                            if let Some(f) = self.tunnel_drop.as_mut() {
                                if f(j, &p.pkt) {
                                    continue;
                                }
                            }
                            let dl = self.cfg.d_redir_host;
                            let f = self.cfg.tunnel_links;
                            self.send(Node::Redirector, Node::Host(j), dl, f, &bytes);
                        }
                    }
                }
            }
            Node::Host(j) => {
                if self.hosts[j].alive {
                    self.hosts[j].host.handle_packet(now, &p.pkt);
                }
            }
        }
    }

    fn flush_all(&mut self) {
        let now = self.now;
        let mut out: Vec<(Node, Vec<u8>)> = Vec::new();
        let mut buf = std::mem::take(&mut self.buf);
        while !self.external_client {
            let Some(n) = self.client.poll_transmit(now, &mut buf) else {
                break;
            };
            out.push((Node::Client, buf[..n].to_vec()));
        }
        for (i, h) in self.hosts.iter_mut().enumerate() {
            if !h.alive {
                continue;
            }
            while let Some(n) = h.host.poll_transmit(now, &mut buf) {
                out.push((Node::Host(i), buf[..n].to_vec()));
            }
        }
        self.buf = buf;
        for (from, pkt) in out {
            self.emit(from, pkt);
        }
        // Track view changes for invariant 4.
        for (i, h) in self.hosts.iter().enumerate() {
            let e = h.host.epoch(ORIGIN, SERVICE_PORT).unwrap_or(0);
            if e != self.epochs[i] {
                if std::env::var_os("HYDRANET_TRACE_PACKETS").is_some() {
                    std::eprintln!(
                        "{:>9} view: host {i} epoch {} -> {e}, role {:?}, alive {}, stats {:?}",
                        now.total_micros(),
                        self.epochs[i],
                        h.host.role(ORIGIN, SERVICE_PORT),
                        h.alive,
                        h.host.stats
                    );
                }
                self.epochs[i] = e;
                self.last_view_change = now;
            }
        }
    }

    fn run_services(&mut self) {
        let now = self.now;
        for h in self.hosts.iter_mut().filter(|h| h.alive) {
            h.service.run(now, &mut h.host, h.listener);
        }
    }

    /// Runs until `until` or until nothing is left to do.
    pub fn run_until(&mut self, until: Instant) {
        while self.now < until {
            if !self.step() {
                break;
            }
        }
    }

    /// Invariants 1 and 3 (2 is judged by the client application, 4 and 5 as packets leave).
    pub fn check(&mut self) {
        // 1: every byte the client had acknowledged is held by every live replica that has
        //    the connection.
        let mut found = Vec::new();
        let recent = self.partition_recent(self.settle_time());
        for s in self
            .client
            .sockets
            .iter()
            .filter(|_| !self.external_client && !recent)
        {
            if !s.in_use || s.inp.fport != SERVICE_PORT || !s.tp.t_state.have_established() {
                continue;
            }
            let acked = s.tp.snd_una;
            for (i, h) in self.hosts.iter().enumerate() {
                if !h.alive {
                    continue;
                }
                for hs in h.host.stack.sockets.iter() {
                    if hs.in_use
                        && hs.inp.faddr == CLIENT
                        && hs.inp.fport == s.inp.lport
                        && hs.inp.lport == SERVICE_PORT
                        && hs.tp.t_state.have_established()
                        && seq_gt(acked, hs.tp.rcv_nxt)
                    {
                        found.push(format!(
                            "client acked {} but live host {i} holds only {} (port {})",
                            acked.0, hs.tp.rcv_nxt.0, s.inp.lport
                        ));
                    }
                }
            }
        }
        for f in found {
            self.violate(1, f);
        }
        // 3: every two live replicas read the same client bytes in the same order across
        //    connections: one's history is a prefix of the other's.
        let mut bad = Vec::new();
        for i in 0..self.hosts.len() {
            for j in i + 1..self.hosts.len() {
                if !self.hosts[i].alive || !self.hosts[j].alive {
                    continue;
                }
                if !service::histories_agree(
                    &self.hosts[i].service.history,
                    &self.hosts[j].service.history,
                ) {
                    bad.push(format!(
                        "hosts {i} and {j} read client data in different orders"
                    ));
                }
            }
        }
        if let Some(b) = bad.into_iter().next() {
            self.violate(3, b);
        }
    }

    /// Opens a client connection to the service.
    pub fn connect(&mut self) -> Result<SocketHandle, Errno> {
        let h = self.client.socket()?;
        match self
            .client
            .connect(self.now, h, SocketAddrV4::new(ORIGIN, SERVICE_PORT))
        {
            Err(Errno::EINPROGRESS) | Ok(()) => Ok(h),
            Err(e) => Err(e),
        }
    }

    pub fn client_state(&self, h: SocketHandle) -> Option<TcpState> {
        self.client.state(h).ok()
    }

    /// The highest sequence the client has had acknowledged on `h` (for tests).
    pub fn client_snd_una(&self, h: SocketHandle) -> Option<Seq> {
        self.client.sock(h).ok().map(|s| s.tp.snd_una)
    }
}

/// tcpdump-like one-line summary of an IPv4/TCP packet.
pub fn summary(pkt: &[u8]) -> String {
    let Ok((ip, seg)) = ipv4::Ipv4Header::parse(pkt) else {
        return "malformed".into();
    };
    if ip.protocol == ipv4::PROTO_IPIP {
        return match crate::wire::ipip::decapsulate(pkt) {
            Ok((_, inner)) => format!("{} > {} ipip [{}]", ip.src, ip.dst, summary(inner)),
            Err(_) => format!("{} > {} ipip malformed", ip.src, ip.dst),
        };
    }
    if ip.protocol != ipv4::PROTO_TCP {
        return format!("{} > {} proto {}", ip.src, ip.dst, ip.protocol);
    }
    match wtcp::parse_segment(seg, ip.src, ip.dst, false) {
        Ok(t) => format!(
            "{}:{} > {}:{} {} seq {} ack {} win {} len {}",
            ip.src,
            t.header.src_port,
            ip.dst,
            t.header.dst_port,
            t.header.flags,
            t.header.seq,
            t.header.ack,
            t.header.window,
            t.payload.len()
        ),
        Err(_) => format!("{} > {} proto {}", ip.src, ip.dst, ip.protocol),
    }
}

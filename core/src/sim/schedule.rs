//! Seeded random schedules of traffic and faults, replayable exactly from their seed, and the
//! client application that runs them and judges invariant 2.
//!
//! A [`Schedule`] names a workload (echo upload, bulk download, key-value requests, or the
//! sequencer over 2-3 concurrent connections), link faults for the three kinds of link
//! (client, tunnel, ack channel), crashes of hosts at chosen moments (any step, during the
//! handshake, while closing, right after a takeover, the last backup) and ack-channel
//! partitions that heal. [`Schedule::run`] plays it in a [`Sim`] and returns every invariant
//! violation: 1, 3, 4 and 5 from the simulator's checks after every step, 2 from the client,
//! which compares every byte it receives with the service's expected output.

use std::collections::BTreeSet;
use std::vec::Vec;

use super::service::bulk_byte;
use super::{LinkFaults, ServiceKind, Sim, SimConfig, Violation};
use crate::ft::host::Role;
use crate::ft::params::DetectorParams;
use crate::netinet::tcp_fsm::TcpState;
use crate::netinet::tcp_usrreq::Shutdown;
use crate::stack::SocketHandle;
use crate::time::{Duration, Instant};
use crate::Errno;

/// What the client does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Sends `bytes` to the echo service and reads them back.
    Upload { bytes: usize },
    /// Only receives `bytes` from the bulk service.
    Download { bytes: usize },
    /// `requests` SET/GET lines to the key-value service.
    KeyValue { requests: usize },
    /// `conns` concurrent connections each sending `lines` lines to the sequencer, whose
    /// replies number lines across connections in the order the service read them.
    Sequencer { conns: usize, lines: usize },
}

/// When a crash happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// At simulation step `n`.
    Step(u64),
    /// `n` steps after the client's first connect (during the handshake for small `n`).
    Handshake(u64),
    /// When the client has received this per mille of its expected bytes.
    Progress(u16),
    /// `n` steps after the client starts closing (its shutdown or the server's FIN).
    Close(u64),
    /// `n` steps after a takeover happened anywhere.
    Takeover(u64),
}

/// Which host a crash kills (resolved when it fires).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Primary,
    /// The live backup with the highest rank (the last backup when only one is left).
    LastBackup,
    Host(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crash {
    pub trigger: Trigger,
    pub target: Target,
}

/// An ack-channel cut between hosts `a` and `b` from `at_ms` for `dur_ms`, then healed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionSpec {
    pub at_ms: u64,
    pub a: usize,
    pub b: usize,
    pub dur_ms: u64,
}

/// One seeded scenario.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub seed: u64,
    pub replicas: usize,
    pub workload: Workload,
    pub detector: DetectorParams,
    pub client_links: LinkFaults,
    pub tunnel_links: LinkFaults,
    pub chan_links: LinkFaults,
    pub crashes: Vec<Crash>,
    pub partitions: Vec<PartitionSpec>,
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub violations: Vec<Violation>,
    pub steps: u64,
    pub end: Instant,
    pub crashed: Vec<usize>,
    pub client_resets: u64,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// splitmix64: a good spread even from small consecutive seeds.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

fn faults(r: &mut Rng, max_loss: u64) -> LinkFaults {
    if r.chance(30) {
        return LinkFaults::default();
    }
    LinkFaults {
        loss_pct: r.range(0, max_loss) as u8,
        dup_pct: r.range(0, 3) as u8,
        reorder_pct: r.range(0, 5) as u8,
        reorder_delay_us: r.range(100, 3000),
        jitter_us: if r.chance(30) { r.range(0, 1500) } else { 0 },
    }
}

/// Upload pattern byte `i`.
pub fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(7919) >> 3) as u8
}

impl Schedule {
    /// The schedule of `seed`: the same seed always gives the same schedule and, since the
    /// simulator is deterministic, the same run.
    pub fn random(seed: u64) -> Schedule {
        let mut r = Rng(seed);
        let replicas = r.range(2, 4) as usize;
        let workload = match r.below(4) {
            0 => Workload::Upload {
                bytes: r.range(1, 150_000) as usize,
            },
            1 => Workload::Download {
                bytes: r.range(1, 250_000) as usize,
            },
            2 => Workload::KeyValue {
                requests: r.range(1, 150) as usize,
            },
            _ => Workload::Sequencer {
                conns: r.range(2, 3) as usize,
                lines: r.range(1, 50) as usize,
            },
        };
        let detector = if r.chance(25) {
            DetectorParams {
                retransmit_threshold: 0,
                ..DetectorParams::default()
            }
        } else {
            DetectorParams::default()
        };
        let client_links = faults(&mut r, 3);
        let tunnel_links = faults(&mut r, 3);
        let chan_links = faults(&mut r, 2);
        let mut crashes = Vec::new();
        let n_crash = r.below(replicas as u64) as usize; // at most replicas - 1
        for _ in 0..n_crash {
            let trigger = match r.below(5) {
                0 => Trigger::Step(r.range(1, 3000)),
                1 => Trigger::Handshake(r.range(0, 8)),
                2 => Trigger::Progress(r.range(0, 1000) as u16),
                3 => Trigger::Close(r.range(0, 10)),
                _ => Trigger::Takeover(r.range(0, 30)),
            };
            let target = match r.below(4) {
                0 | 1 => Target::Primary,
                2 => Target::LastBackup,
                _ => Target::Host(r.below(replicas as u64) as usize),
            };
            crashes.push(Crash { trigger, target });
        }
        let mut partitions = Vec::new();
        if r.chance(30) {
            for _ in 0..r.range(1, 3) {
                let a = r.below(replicas as u64) as usize;
                let b = (a + 1 + r.below(replicas as u64 - 1) as usize) % replicas;
                // Shorter than the heartbeat timeout less an interval: the cut must stay
                // invisible (no suspicion), and the channel repairs the loss after the heal.
                partitions.push(PartitionSpec {
                    at_ms: r.range(0, 1500),
                    a,
                    b,
                    dur_ms: r.range(1, 15),
                });
            }
        }
        Schedule {
            seed,
            replicas,
            workload,
            detector,
            client_links,
            tunnel_links,
            chan_links,
            crashes,
            partitions,
        }
    }

    fn service(&self) -> ServiceKind {
        match self.workload {
            Workload::Upload { .. } => ServiceKind::Echo,
            Workload::Download { bytes } => ServiceKind::Bulk { bytes },
            Workload::KeyValue { .. } => ServiceKind::KeyValue,
            Workload::Sequencer { .. } => ServiceKind::Sequencer,
        }
    }

    /// The simulator this schedule runs in.
    pub fn sim(&self) -> Sim {
        Sim::new(SimConfig {
            replicas: self.replicas,
            seed: self.seed,
            service: self.service(),
            detector: self.detector,
            client_links: self.client_links,
            tunnel_links: self.tunnel_links,
            chan_links: self.chan_links,
            ..SimConfig::default()
        })
    }

    /// Plays the schedule; every invariant violation is in the outcome.
    pub fn run(&self) -> Outcome {
        let mut sim = self.sim();
        let mut app = ClientApp::new(&self.workload, &mut sim);
        let mut pending: Vec<Crash> = self.crashes.clone();
        let mut parts: Vec<PartitionSpec> = self.partitions.clone();
        let mut crashed: Vec<usize> = Vec::new();
        let mut close_step: Option<u64> = None;
        let mut takeover_step: Option<u64> = None;
        let mut takeovers = 0u64;
        let deadline = Instant::from_millis(120_000);
        let mut done_at: Option<Instant> = None;
        let trace = std::env::var_os("HYDRANET_TRACE").is_some();
        let trace_every: u64 = std::env::var("HYDRANET_TRACE_EVERY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        loop {
            // Faults due now.
            parts.retain(|p| {
                if sim.now >= Instant::from_millis(p.at_ms) {
                    sim.partition(p.a, p.b, Duration::from_millis(p.dur_ms));
                    false
                } else {
                    true
                }
            });
            let t: u64 = sim.hosts.iter().map(|h| h.host.stats.takeovers).sum();
            if t > takeovers {
                takeovers = t;
                takeover_step = Some(sim.steps);
            }
            if close_step.is_none() && app.closing() {
                close_step = Some(sim.steps);
            }
            let frac = app.progress_per_mille();
            let mut i = 0;
            while i < pending.len() {
                let c = pending[i];
                let fire = match c.trigger {
                    Trigger::Step(n) => sim.steps >= n,
                    Trigger::Handshake(n) => sim.steps >= n,
                    Trigger::Progress(pm) => frac >= pm,
                    Trigger::Close(n) => close_step.is_some_and(|s| sim.steps >= s + n),
                    Trigger::Takeover(n) => takeover_step.is_some_and(|s| sim.steps >= s + n),
                };
                if !fire {
                    i += 1;
                    continue;
                }
                pending.remove(i);
                let alive: Vec<usize> = (0..sim.hosts.len())
                    .filter(|&h| sim.hosts[h].alive)
                    .collect();
                if alive.len() <= 1 {
                    continue; // one replica always survives
                }
                let victim = match c.target {
                    Target::Primary => sim.primary(),
                    Target::LastBackup => alive.iter().rev().copied().find(|&h| {
                        sim.hosts[h].host.role(super::ORIGIN, super::SERVICE_PORT)
                            == Some(Role::Backup)
                    }),
                    Target::Host(h) => Some(h),
                };
                if let Some(v) = victim.filter(|v| sim.hosts[*v].alive) {
                    sim.crash(v);
                    crashed.push(v);
                }
            }
            if let Err(e) = app.pump(&mut sim) {
                sim.violations.push(Violation {
                    at: sim.now,
                    invariant: 2,
                    what: e,
                });
                break;
            }
            if app.done() && done_at.is_none() {
                done_at = Some(sim.now);
            }
            // Once the client is done, run on a while: closes finish, late resets show.
            if let Some(d) = done_at {
                // Crashes still pending by then wait on an event that did not happen (a
                // takeover that never came): the run is over without them.
                if sim.now >= d + Duration::from_millis(3000) {
                    break;
                }
            }
            if sim.now >= deadline {
                let what = format!(
                    "no progress: client not done by {} ms ({})",
                    deadline.total_millis(),
                    app.status()
                );
                sim.violations.push(Violation {
                    at: sim.now,
                    invariant: 2,
                    what,
                });
                break;
            }
            if trace && sim.steps.is_multiple_of(trace_every) {
                eprintln!(
                    "step {} t={}us primary {:?} alive {:?} {}",
                    sim.steps,
                    sim.now.total_micros(),
                    sim.primary(),
                    sim.hosts.iter().map(|h| h.alive).collect::<Vec<_>>(),
                    app.status()
                );
                let socks = sim
                    .hosts
                    .iter()
                    .enumerate()
                    .flat_map(|(i, h)| {
                        h.host
                            .stack
                            .sockets
                            .iter()
                            .filter(|s| s.in_use && !s.is_listening())
                            .map(move |s| (format!("host {i}"), s))
                    })
                    .chain(
                        sim.client
                            .sockets
                            .iter()
                            .filter(|s| s.in_use)
                            .map(|s| ("client".to_string(), s)),
                    );
                for (who, so) in socks {
                    eprintln!(
                        "  {who} :{} {:?} snd_una {} snd_nxt {} snd_max {} snd_wnd {} cwnd {} \
                         rxtshift {} rcv_nxt {} rexmt {:?} persist {:?}",
                        so.inp.fport.max(so.inp.lport),
                        so.tp.t_state,
                        so.tp.snd_una.0,
                        so.tp.snd_nxt.0,
                        so.tp.snd_max.0,
                        so.tp.snd_wnd,
                        so.tp.snd_cwnd,
                        so.tp.t_rxtshift,
                        so.tp.rcv_nxt.0,
                        so.tp
                            .t_timers
                            .deadline(crate::netinet::tcp_timer::TimerKind::Rexmt)
                            .map(|t| t.total_micros()),
                        so.tp
                            .t_timers
                            .deadline(crate::netinet::tcp_timer::TimerKind::Persist)
                            .map(|t| t.total_micros())
                    );
                }
            }
            if !sim.step() {
                if !app.done() {
                    let what = format!(
                        "simulation idle before the client is done ({})",
                        app.status()
                    );
                    sim.violations.push(Violation {
                        at: sim.now,
                        invariant: 2,
                        what,
                    });
                }
                break;
            }
        }
        if sim.client_resets > 0 {
            let what = format!("the client received {} RST segments", sim.client_resets);
            sim.violations.push(Violation {
                at: sim.now,
                invariant: 2,
                what,
            });
        }
        if let Err(e) = app.finish() {
            sim.violations.push(Violation {
                at: sim.now,
                invariant: 2,
                what: e,
            });
        }
        if trace {
            for (i, h) in sim.hosts.iter().enumerate() {
                eprintln!(
                    "host {i} alive {} role {:?} {:?}",
                    h.alive,
                    h.host.role(super::ORIGIN, super::SERVICE_PORT),
                    h.host.stats
                );
                for so in h.host.stack.sockets.iter().filter(|s| s.in_use) {
                    eprintln!(
                        "  {}:{} {:?} rcv_nxt {} ack_limit {:?} read_limit {:?} muted {} sbrcv {}",
                        so.inp.faddr,
                        so.inp.fport,
                        so.tp.t_state,
                        so.tp.rcv_nxt.0,
                        so.tp.ft.ack_limit.map(|x| x.0),
                        so.tp.ft.read_limit.map(|x| x.0),
                        so.tp.ft.muted,
                        so.so_rcv.len()
                    );
                }
                eprintln!("  syncache {}", h.host.stack.syncache.entries.len());
            }
        }
        Outcome {
            violations: sim.violations.clone(),
            steps: sim.steps,
            end: sim.now,
            crashed,
            client_resets: sim.client_resets,
        }
    }
}

/// What one client connection expects to read.
enum Expect {
    /// Exactly these bytes, then end of stream.
    Bytes(Vec<u8>),
    /// Sequencer replies `<n> <line>` to these lines, in order.
    Lines(Vec<Vec<u8>>),
}

struct ClientConn {
    h: SocketHandle,
    out: Vec<u8>,
    sent: usize,
    expect: Expect,
    got: Vec<u8>,
    lines_seen: usize,
    last_n: u64,
    eof: bool,
    shut: bool,
    closed: bool,
    /// Shut down writing only after the whole reply arrived (a download).
    shut_after_reply: bool,
}

/// The client application: drives the workload's connections through the simulator's
/// client stack and checks invariant 2 byte by byte.
pub struct ClientApp {
    conns: Vec<ClientConn>,
    numbers: BTreeSet<u64>,
    total_lines: usize,
    buf: Vec<u8>,
}

fn kv_requests(n: usize) -> (Vec<u8>, Vec<u8>) {
    let mut model = std::collections::BTreeMap::<Vec<u8>, Vec<u8>>::new();
    let mut out = Vec::new();
    let mut exp = Vec::new();
    for i in 0..n {
        let key = format!("k{}", (i * 7) % 11).into_bytes();
        if i % 3 == 2 {
            out.extend_from_slice(b"GET ");
            out.extend_from_slice(&key);
            out.push(b'\n');
            match model.get(&key) {
                Some(v) => {
                    exp.extend_from_slice(v);
                    exp.push(b'\n');
                }
                None => exp.extend_from_slice(b"NIL\n"),
            }
        } else {
            let val = format!("v{i}-{}", "x".repeat(i % 40)).into_bytes();
            out.extend_from_slice(b"SET ");
            out.extend_from_slice(&key);
            out.push(b' ');
            out.extend_from_slice(&val);
            out.push(b'\n');
            model.insert(key, val);
            exp.extend_from_slice(b"OK\n");
        }
    }
    (out, exp)
}

impl ClientApp {
    /// Opens the workload's connections.
    pub fn new(w: &Workload, sim: &mut Sim) -> ClientApp {
        let mut specs: Vec<(Vec<u8>, Expect, bool)> = Vec::new();
        let mut total_lines = 0;
        match *w {
            Workload::Upload { bytes } => {
                let data: Vec<u8> = (0..bytes).map(pattern).collect();
                specs.push((data.clone(), Expect::Bytes(data), false));
            }
            Workload::Download { bytes } => {
                specs.push((
                    Vec::new(),
                    Expect::Bytes((0..bytes).map(bulk_byte).collect()),
                    true,
                ));
            }
            Workload::KeyValue { requests } => {
                let (out, exp) = kv_requests(requests);
                specs.push((out, Expect::Bytes(exp), false));
            }
            Workload::Sequencer { conns, lines } => {
                for k in 0..conns {
                    let ls: Vec<Vec<u8>> = (0..lines)
                        .map(|j| format!("c{k} {j}").into_bytes())
                        .collect();
                    let mut out = Vec::new();
                    for l in &ls {
                        out.extend_from_slice(l);
                        out.push(b'\n');
                    }
                    total_lines += lines;
                    specs.push((out, Expect::Lines(ls), false));
                }
            }
        }
        let conns = specs
            .into_iter()
            .map(|(out, expect, shut_after_reply)| ClientConn {
                h: sim.connect().expect("client socket"),
                out,
                sent: 0,
                expect,
                got: Vec::new(),
                lines_seen: 0,
                last_n: 0,
                eof: false,
                shut: false,
                closed: false,
                shut_after_reply,
            })
            .collect();
        ClientApp {
            conns,
            numbers: BTreeSet::new(),
            total_lines,
            buf: vec![0; 16384],
        }
    }

    fn expected_len(c: &ClientConn) -> Option<usize> {
        match &c.expect {
            Expect::Bytes(b) => Some(b.len()),
            Expect::Lines(_) => None,
        }
    }

    /// Per mille of the expected bytes received so far (over all connections).
    pub fn progress_per_mille(&self) -> u16 {
        let mut num = 0usize;
        let mut den = 0usize;
        for c in &self.conns {
            match &c.expect {
                Expect::Bytes(b) => {
                    num += c.got.len();
                    den += b.len();
                }
                Expect::Lines(l) => {
                    num += c.lines_seen;
                    den += l.len();
                }
            }
        }
        (num * 1000).checked_div(den).map_or(1000, |v| v as u16)
    }

    pub fn closing(&self) -> bool {
        self.conns.iter().any(|c| c.shut || c.eof)
    }

    pub fn done(&self) -> bool {
        self.conns.iter().all(|c| c.eof && c.closed)
    }

    pub fn status(&self) -> String {
        self.conns
            .iter()
            .map(|c| {
                format!(
                    "[sent {}/{} got {} lines {} eof {} shut {}]",
                    c.sent,
                    c.out.len(),
                    c.got.len(),
                    c.lines_seen,
                    c.eof,
                    c.shut
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Sends what it can, reads what arrived and checks it.
    pub fn pump(&mut self, sim: &mut Sim) -> Result<(), String> {
        let now = sim.now;
        for (k, c) in self.conns.iter_mut().enumerate() {
            if c.closed {
                continue;
            }
            while c.sent < c.out.len() {
                let end = (c.sent + 8192).min(c.out.len());
                match sim.client.send(now, c.h, &c.out[c.sent..end], 0) {
                    Ok(n) => c.sent += n,
                    Err(Errno::EWOULDBLOCK) | Err(Errno::ENOTCONN) => break,
                    Err(e) => return Err(format!("conn {k}: send: {e}")),
                }
            }
            let reply_done = match &c.expect {
                Expect::Bytes(b) => c.got.len() == b.len(),
                Expect::Lines(l) => c.lines_seen == l.len(),
            };
            if !c.shut && c.sent == c.out.len() && (!c.shut_after_reply || reply_done) {
                match sim.client.shutdown(now, c.h, Shutdown::Write) {
                    Ok(()) => c.shut = true,
                    Err(Errno::ENOTCONN) => {}
                    Err(e) => return Err(format!("conn {k}: shutdown: {e}")),
                }
            }
            loop {
                match sim.client.recv(now, c.h, &mut self.buf, 0) {
                    Ok(0) => {
                        if !c.eof {
                            let full = match &c.expect {
                                Expect::Bytes(b) => c.got.len() == b.len(),
                                Expect::Lines(l) => c.lines_seen == l.len(),
                            };
                            if !full {
                                return Err(format!(
                                    "conn {k}: end of stream early after {} bytes",
                                    c.got.len()
                                ));
                            }
                            c.eof = true;
                        }
                        break;
                    }
                    Ok(n) => {
                        if c.eof {
                            return Err(format!("conn {k}: data after end of stream"));
                        }
                        let at = c.got.len();
                        c.got.extend_from_slice(&self.buf[..n]);
                        match &c.expect {
                            Expect::Bytes(b) => {
                                if c.got.len() > b.len() {
                                    return Err(format!(
                                        "conn {k}: {} bytes received, {} expected",
                                        c.got.len(),
                                        b.len()
                                    ));
                                }
                                if let Some(off) = (at..c.got.len()).find(|&i| c.got[i] != b[i]) {
                                    return Err(format!(
                                        "conn {k}: byte {off} is {} not {}",
                                        c.got[off], b[off]
                                    ));
                                }
                            }
                            Expect::Lines(ls) => {
                                // Complete lines only.
                                while let Some(nl) = c.got.iter().position(|&b| b == b'\n') {
                                    let line: Vec<u8> = c.got.drain(..=nl).collect();
                                    let line = &line[..line.len() - 1];
                                    let sp =
                                        line.iter().position(|&b| b == b' ').ok_or_else(|| {
                                            format!("conn {k}: malformed reply {line:?}")
                                        })?;
                                    let num: u64 = std::str::from_utf8(&line[..sp])
                                        .ok()
                                        .and_then(|s| s.parse().ok())
                                        .ok_or_else(|| {
                                            format!("conn {k}: malformed reply {line:?}")
                                        })?;
                                    let want = ls.get(c.lines_seen).ok_or_else(|| {
                                        format!("conn {k}: more replies than lines")
                                    })?;
                                    if &line[sp + 1..] != want.as_slice() {
                                        return Err(format!(
                                            "conn {k}: reply {} echoes {:?} not {:?}",
                                            c.lines_seen,
                                            String::from_utf8_lossy(&line[sp + 1..]),
                                            String::from_utf8_lossy(want)
                                        ));
                                    }
                                    if num <= c.last_n || !self.numbers.insert(num) {
                                        return Err(format!(
                                            "conn {k}: number {num} out of order or repeated"
                                        ));
                                    }
                                    c.last_n = num;
                                    c.lines_seen += 1;
                                }
                            }
                        }
                    }
                    Err(Errno::EWOULDBLOCK) | Err(Errno::ENOTCONN) => break,
                    Err(e) => return Err(format!("conn {k}: recv: {e}")),
                }
            }
            if c.eof && c.shut && !c.closed {
                let _ = sim.client.close(now, c.h);
                c.closed = true;
            }
            if !c.closed {
                if let Ok(TcpState::Closed) = sim.client.state(c.h) {
                    return Err(format!("conn {k}: connection closed under the client"));
                }
            }
        }
        Ok(())
    }

    /// Final checks once the run ends.
    pub fn finish(&self) -> Result<(), String> {
        if self.total_lines > 0 && self.done() {
            let want: BTreeSet<u64> = (1..=self.total_lines as u64).collect();
            if self.numbers != want {
                return Err(format!(
                    "sequencer numbers are not 1..={}: {:?}",
                    self.total_lines, self.numbers
                ));
            }
        }
        for (k, c) in self.conns.iter().enumerate() {
            if let Some(n) = Self::expected_len(c) {
                if c.eof && c.got.len() != n {
                    return Err(format!("conn {k}: {} of {n} bytes", c.got.len()));
                }
            }
        }
        Ok(())
    }
}

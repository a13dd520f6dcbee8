//! The body of the `ft_group` target: a replica group in the simulator (`hydranet_core::sim`)
//! under a fuzzed schedule of client traffic, crashes, ack-channel partitions and hostile
//! packets (garbage on the ack-channel port, replayed or bit-flipped ack-channel frames,
//! tunnels from strangers).
//!
//! # Input format ([`Rd`])
//!
//! A header of six bytes: `replicas` (`% 2 + 2`), `workload` (`% 4`: upload, download,
//! key-value, sequencer), `size`, `seed`, `detector` (bit 0: no retransmission detector),
//! `faults` (bits 0–1 loss % on the ack channel, bits 2–3 on the tunnel, bits 4–5 on the
//! client links). Then operations, a tag byte (`% 7`) and fields:
//!
//! | tag | operation | fields |
//! |-----|-----------|--------|
//! | 0 | run steps (the client application pumped after each) | `n: u8` (`% 64 + 1`) |
//! | 1 | crash a host (never the last live one) | `who: u8` (`% 4`: primary, last backup, host 0, host 1) |
//! | 2 | cut the ack channel between two hosts | `a: u8`, `b: u8`, `ms: u16` (`% 15 + 1`: shorter than the heartbeat timeout) |
//! | 3 | a UDP datagram to a host's ack-channel port | `to: u8`, `from: u8` (a member, or a stranger when `>= replicas`), blob |
//! | 4 | an ack-channel frame the hosts sent earlier, again | `idx: u8`, `to: u8`, `flip: u16` (0: unchanged; else byte `flip % len` xor `flip >> 8 \| 1`) |
//! | 5 | an IP-in-IP packet to a host from a stranger | `to: u8`, blob |
//! | 6 | run for a while | `ms: u16` (`% 5000`; at most 4000 steps) |
//!
//! Then up to 3000 more steps (fewer once the client is done).
//!
//! # What is checked
//!
//! No panic anywhere, always. The simulator's invariant checks (DESIGN.md section 4: 1, 3, 4,
//! 5 after every step) and the client's (2, byte by byte) record violations; the open issue 3
//! (long-run failures) means some schedules still violate them, so by default a violation is
//! only printed (once per invariant per process) and the run goes on. With
//! `HYDRANET_FUZZ_FT_INVARIANTS=1` a violation fails the input.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::Mutex;

use hydranet_core::ft::host::{Role, ACKCHAN_PORT};
use hydranet_core::ft::params::DetectorParams;
use hydranet_core::sim::schedule::{ClientApp, Schedule, Workload};
use hydranet_core::sim::{host_addr, LinkFaults, Sim, Violation, ORIGIN, SERVICE_PORT};
use hydranet_core::wire::ipv4::{Ipv4Header, PROTO_IPIP};
use hydranet_core::Duration;

use crate::ackchan::{udp_packet, STRANGER};
use crate::rd::Rd;

fn strict() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("HYDRANET_FUZZ_FT_INVARIANTS").is_ok_and(|v| !v.is_empty() && v != "0")
    })
}

/// Violations seen in this process, by invariant: printed once each.
static SEEN: Mutex<BTreeSet<u8>> = Mutex::new(BTreeSet::new());

struct G {
    sim: Sim,
    app: ClientApp,
    reported: usize,
}

impl G {
    fn judge(&mut self) {
        if self.sim.violations.len() == self.reported {
            return;
        }
        let new: Vec<Violation> = self.sim.violations[self.reported..].to_vec();
        self.reported = self.sim.violations.len();
        for v in new {
            if strict() {
                panic!(
                    "invariant {} violated at {} us: {}",
                    v.invariant,
                    v.at.total_micros(),
                    v.what
                );
            }
            if SEEN.lock().unwrap().insert(v.invariant) {
                eprintln!(
                    "ft_group: invariant {} violated (not failing the input without \
                     HYDRANET_FUZZ_FT_INVARIANTS=1): {}",
                    v.invariant, v.what
                );
            }
        }
    }

    fn step(&mut self) -> bool {
        if let Err(e) = self.app.pump(&mut self.sim) {
            let at = self.sim.now;
            self.sim.violations.push(Violation {
                at,
                invariant: 2,
                what: e,
            });
        }
        let more = self.sim.step();
        self.judge();
        more
    }

    fn alive(&self) -> Vec<usize> {
        (0..self.sim.hosts.len())
            .filter(|&i| self.sim.hosts[i].alive)
            .collect()
    }

    fn host(&self, sel: u8) -> usize {
        usize::from(sel) % self.sim.hosts.len()
    }

    fn apply(&mut self, tag: u8, r: &mut Rd<'_>) -> Option<()> {
        match tag % 7 {
            0 => {
                for _ in 0..r.u8()? % 64 + 1 {
                    if !self.step() {
                        break;
                    }
                }
            }
            1 => {
                let alive = self.alive();
                if alive.len() <= 1 {
                    return Some(());
                }
                let victim = match r.u8()? % 4 {
                    0 => self.sim.primary(),
                    1 => alive.iter().rev().copied().find(|&h| {
                        self.sim.hosts[h].host.role(ORIGIN, SERVICE_PORT) == Some(Role::Backup)
                    }),
                    k => Some(usize::from(k - 2)),
                };
                if let Some(v) = victim.filter(|&v| v < self.sim.hosts.len()) {
                    self.sim.crash(v);
                }
            }
            2 => {
                let (a, b) = (self.host(r.u8()?), self.host(r.u8()?));
                // Shorter than the heartbeat timeout less an interval, as the random schedules
                // of core/src/sim/schedule.rs: a longer cut is a split brain, which the design
                // does not defend (SECURITY.md), and every such input would be a "finding".
                let ms = u64::from(r.u16()? % 15 + 1);
                if a != b {
                    self.sim.partition(a, b, Duration::from_millis(ms));
                }
            }
            3 => {
                let to = self.host(r.u8()?);
                let from = usize::from(r.u8()?);
                let frame = r.blob(1200)?;
                let src = if from < self.sim.hosts.len() {
                    host_addr(from)
                } else {
                    STRANGER
                };
                let pkt = udp_packet(src, host_addr(to), ACKCHAN_PORT, frame);
                self.sim.inject_to_host(to, pkt);
            }
            4 => {
                let (idx, to, flip) = (r.u8()?, r.u8()?, r.u16()?);
                let to = self.host(to);
                let n = self.sim.chan_tap.len();
                if n == 0 {
                    return Some(());
                }
                let (_, orig_to, mut pkt) = self.sim.chan_tap[usize::from(idx) % n].clone();
                if to != orig_to {
                    // Re-addressed to another member: IPv4 header rewritten, UDP checksum
                    // cleared (0 is "none" over IPv4), the frame untouched.
                    pkt[16..20].copy_from_slice(&host_addr(to).octets());
                    pkt[26] = 0;
                    pkt[27] = 0;
                    fix_ip_checksum(&mut pkt);
                }
                if flip != 0 && pkt.len() > 28 {
                    let pos = 28 + usize::from(flip) % (pkt.len() - 28);
                    pkt[pos] ^= (flip >> 8) as u8 | 1;
                    pkt[26] = 0;
                    pkt[27] = 0;
                }
                self.sim.inject_to_host(to, pkt);
            }
            5 => {
                let to = self.host(r.u8()?);
                let inner = r.blob(1500)?;
                let mut p = vec![0u8; 20];
                Ipv4Header::new(STRANGER, host_addr(to), PROTO_IPIP, inner.len(), 64)
                    .emit(&mut p)
                    .ok()?;
                p.extend_from_slice(inner);
                self.sim.inject_to_host(to, p);
            }
            _ => {
                let until = self.sim.now + Duration::from_millis(u64::from(r.u16()? % 5000));
                for _ in 0..4000 {
                    if self.sim.now >= until || !self.step() {
                        break;
                    }
                }
            }
        }
        Some(())
    }
}

fn fix_ip_checksum(p: &mut [u8]) {
    p[10] = 0;
    p[11] = 0;
    let c = crate::net::finish(crate::net::sum(&p[..20], 0));
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

fn loss(bits: u8) -> LinkFaults {
    LinkFaults {
        loss_pct: bits & 3,
        ..LinkFaults::default()
    }
}

pub fn run(data: &[u8]) {
    let mut r = Rd(data);
    let Some(head) = r.bytes(6) else { return };
    let replicas = usize::from(head[0] % 2) + 2;
    let size = usize::from(head[2]);
    let workload = match head[1] % 4 {
        0 => Workload::Upload {
            bytes: size * 97 + 1,
        },
        1 => Workload::Download {
            bytes: size * 197 + 1,
        },
        2 => Workload::KeyValue {
            requests: size % 40 + 1,
        },
        _ => Workload::Sequencer {
            conns: 2,
            lines: size % 20 + 1,
        },
    };
    let detector = if head[4] & 1 != 0 {
        DetectorParams {
            retransmit_threshold: 0,
            ..DetectorParams::default()
        }
    } else {
        DetectorParams::default()
    };
    let schedule = Schedule {
        seed: u64::from(head[3]) + 1,
        replicas,
        workload: workload.clone(),
        detector,
        client_links: loss(head[5] >> 4),
        tunnel_links: loss(head[5] >> 2),
        chan_links: loss(head[5]),
        crashes: Vec::new(),
        partitions: Vec::new(),
    };
    let mut sim = schedule.sim();
    sim.tap_chan = true;
    let app = ClientApp::new(&workload, &mut sim);
    let mut g = G {
        sim,
        app,
        reported: 0,
    };
    while let Some(t) = r.u8() {
        if g.apply(t, &mut r).is_none() {
            break;
        }
        // The tap is for replays; keep it from growing without bound.
        if g.sim.chan_tap.len() > 256 {
            g.sim.chan_tap.drain(..128);
        }
    }
    let mut done_for = 0;
    for _ in 0..3000 {
        if !g.step() {
            break;
        }
        if g.app.done() {
            done_for += 1;
            if done_for > 200 {
                break;
            }
        }
    }
    black_box(g.sim.steps);
}

//! `hydranet redirector`: the redirector role on a TUN device.
//!
//! Linux routes the origin prefix into the device; the daemon reads each packet, and the
//! core's [`Redirector`] either tunnels it (IP-in-IP) to every replica of its service — the
//! copies are written back into the device and Linux forwards them to the host servers — or
//! leaves it alone. The table changes at run time through the control socket.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use hydranet_core::ft::redirector::{Decision, DropReason, Redirector};
use hydranet_syscalls::ctl::{CtlListener, Request, Response};
use serde::Deserialize;

use crate::daemon::{debug_fields, errno_answer, install_stop_handler, stop_requested, Capture};
use crate::tun::Tun;

/// Packets handled per wake-up before the control socket gets a look.
const BATCH: usize = 256;

/// The redirector's configuration file (TOML); applied as control requests.
///
/// ```toml
/// tun = "hn1rt"
/// addr = "198.51.100.1"        # tunnel source (host servers accept tunnels from it)
/// ctl = "/run/hydranet/r.sock"
/// mtu = 1500                   # of the path to the host servers (default: the device's)
///
/// [[route]]
/// origin = "192.0.2.80"
/// port = 80
/// replicas = ["198.51.100.10", "198.51.100.11", "198.51.100.12"]
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectorConfig {
    pub tun: String,
    pub addr: Ipv4Addr,
    pub ctl: PathBuf,
    #[serde(default)]
    pub pcap: Option<PathBuf>,
    #[serde(default)]
    pub mtu: Option<u16>,
    #[serde(default)]
    pub route: Vec<RouteSection>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub origin: Ipv4Addr,
    pub port: u16,
    pub replicas: Vec<Ipv4Addr>,
}

impl RedirectorConfig {
    pub fn load(path: &std::path::Path) -> Result<RedirectorConfig, String> {
        crate::daemon::load_config(path)
    }

    pub fn requests(&self) -> Vec<String> {
        self.route
            .iter()
            .map(|r| {
                let reps: Vec<String> = r.replicas.iter().map(|a| a.to_string()).collect();
                format!("route add {} {} {}", r.origin, r.port, reps.join(","))
            })
            .collect()
    }
}

/// What happened to packets beyond the core's own counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Copies the device refused (its queue full) or failed to take: counted, never silent.
    pub tx_refused: u64,
    /// Packets routed into the device that name no service in the table: the origin server
    /// itself is not on this network, so there is nowhere to forward them.
    pub no_route: u64,
    pub icmp_sent: u64,
}

pub struct RedirectorDaemon {
    pub redirector: Redirector,
    pub dev: DeviceStats,
}

impl RedirectorDaemon {
    pub fn new(addr: Ipv4Addr, mtu: u16) -> Self {
        RedirectorDaemon {
            redirector: Redirector::new(addr, mtu),
            dev: DeviceStats::default(),
        }
    }

    pub fn apply(&mut self, req: Request) -> Response {
        let r = &mut self.redirector;
        match req {
            Request::RouteAdd {
                origin,
                port,
                hosts,
            } => match r.add_route(origin, port, &hosts) {
                Ok(()) => Response::ok(),
                Err(e) => errno_answer(e, "route add"),
            },
            Request::RouteDel { origin, port } => match r.remove_route(origin, port) {
                Ok(()) => Response::ok(),
                Err(e) => errno_answer(e, "route del"),
            },
            Request::ReplicaAdd { origin, port, host } => match r.add_replica(origin, port, host) {
                Ok(()) => Response::ok(),
                Err(e) => errno_answer(e, "replica add"),
            },
            Request::ReplicaDel { origin, port, host } => {
                match r.remove_replica(origin, port, host) {
                    Ok(()) => Response::ok(),
                    Err(e) => errno_answer(e, "replica del"),
                }
            }
            Request::Status => Response::Ok(self.status()),
            Request::Counters => Response::Ok(self.counters()),
            Request::Shutdown => {
                crate::daemon::request_stop();
                Response::ok()
            }
            other => Response::Err(
                hydranet_syscalls::Errno::EINVAL,
                format!("not a redirector request: {other}"),
            ),
        }
    }

    /// `status`: the table, one `route=origin:port>a,b,c` item per entry.
    pub fn status(&self) -> String {
        let mut f = vec![
            "daemon=redirector".to_string(),
            format!("addr={}", self.redirector.tunnel_src()),
            format!("mtu={}", self.redirector.tunnel_mtu()),
            format!("pid={}", std::process::id()),
        ];
        for r in self.redirector.routes() {
            let reps: Vec<String> = r.replicas.iter().map(|a| a.to_string()).collect();
            f.push(format!("route={}:{}>{}", r.origin, r.port, reps.join(",")));
        }
        f.join(" ")
    }

    pub fn counters(&self) -> String {
        let mut f = debug_fields("redir.", &format!("{:?}", self.redirector.stats()));
        f.extend(debug_fields("dev.", &format!("{:?}", self.dev)));
        f.join(" ")
    }

    /// One packet from the device.
    pub fn handle(&mut self, tun: &Tun, pkt: &[u8], scratch: &mut [u8], cap: Option<&Capture>) {
        self.dev.rx_packets += 1;
        let dev = &mut self.dev;
        let decision = self.redirector.route(pkt, scratch, |_, copy| {
            if let Some(c) = cap {
                c.write(copy);
            }
            match tun.send(copy) {
                Ok(true) => dev.tx_packets += 1,
                _ => dev.tx_refused += 1,
            }
        });
        match decision {
            Decision::Forward => self.dev.no_route += 1,
            Decision::Dropped(DropReason::TooBig) => {
                let mut icmp = [0u8; 128];
                if let Some(n) = self.redirector.icmp_frag_needed(pkt, &mut icmp) {
                    match tun.send(&icmp[..n]) {
                        Ok(true) => self.dev.icmp_sent += 1,
                        _ => self.dev.tx_refused += 1,
                    }
                }
            }
            Decision::Tunneled { .. } | Decision::Dropped(_) => {}
        }
    }
}

/// Runs the redirector until SIGTERM/SIGINT or a `shutdown` request.
pub fn run(cfg: &RedirectorConfig) -> Result<(), String> {
    install_stop_handler();
    let tun = Tun::open(&cfg.tun).map_err(|e| format!("TUN device {}: {e}", cfg.tun))?;
    let mtu = cfg
        .mtu
        .unwrap_or(u16::try_from(tun.mtu()).unwrap_or(u16::MAX));
    let mut d = RedirectorDaemon::new(cfg.addr, mtu);
    let capture = match &cfg.pcap {
        Some(dir) => Some(
            Capture::create(dir, &cfg.tun)
                .map_err(|e| format!("pcap in {}: {e}", dir.display()))?,
        ),
        None => None,
    };
    let mut ctl = CtlListener::bind(&cfg.ctl)
        .map_err(|e| format!("control socket {}: {e}", cfg.ctl.display()))?;
    for line in cfg.requests() {
        let req = Request::parse(&line).map_err(|e| format!("config: {line}: {e}"))?;
        if let Response::Err(e, what) = d.apply(req) {
            return Err(format!("config: {line}: {e} ({what})"));
        }
    }
    eprintln!(
        "hydranet redirector: {} on {} (tunnel mtu {mtu}), control {}",
        cfg.addr,
        cfg.tun,
        cfg.ctl.display()
    );
    let mut pkt = vec![0u8; 65536];
    let mut scratch = vec![0u8; 65536 + 20];
    while !stop_requested() {
        let mut fds: Vec<RawFd> = vec![tun.as_raw_fd()];
        fds.extend(ctl.fds());
        crate::tun::wait_readable(&fds, Some(Duration::from_millis(100)))
            .map_err(|e| format!("poll: {e}"))?;
        ctl.poll(&mut |req| d.apply(req));
        for _ in 0..BATCH {
            match tun.recv(&mut pkt) {
                Ok(Some(n)) => {
                    if let Some(c) = &capture {
                        c.write(&pkt[..n]);
                    }
                    d.handle(&tun, &pkt[..n], &mut scratch, capture.as_ref());
                }
                Ok(None) => break,
                Err(e) => {
                    eprintln!("hydranet redirector: read {}: {e}", cfg.tun);
                    break;
                }
            }
        }
        if let Some(c) = &capture {
            c.tick();
        }
    }
    if let Some(c) = &capture {
        c.flush();
    }
    Ok(())
}

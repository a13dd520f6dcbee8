//! `hydranet host`: a host server. The core ([`Host`]: TCP plus the FT layer) owns a TUN device
//! in the host's namespace; its services run on the core's sockets; the control socket takes
//! the same requests as `hydranet ctl` and the `v_host`/`setportopt` library calls.
//!
//! One thread, one loop: wait (poll(2)) on the TUN device, the control socket and the relays'
//! server connections, for no longer than the core's next timer; then pump the device, run
//! the services and pump again so their output leaves in the same turn.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::task::{Context, Waker};
use std::time::Duration;

use hydranet_core::driver::poll_device;
use hydranet_core::ft::host::{GroupConfig, Host, Member};
use hydranet_core::ft::params::{DetectorParams, PortMode};
use hydranet_core::stack::Stack;
use hydranet_syscalls::ctl::{CtlListener, Request, Response};
use serde::Deserialize;

use crate::daemon::{
    debug_fields, errno_answer, install_stop_handler, stop_requested, Capture, Clock,
};
use crate::services::{ServiceSpec, ServiceTable};
use crate::tun::{Tun, TunDriver};

/// How long the loop sleeps at most when the core has no timer due.
const IDLE_WAKE: Duration = Duration::from_millis(100);
/// Pump rounds per wake-up before the loop looks at the control socket again.
const MAX_ROUNDS: usize = 64;

/// A host server's configuration file (TOML). Everything in it can also be done at run time
/// through the control socket; the file is applied as that sequence of control requests.
///
/// ```toml
/// tun = "hn1t0"                 # the TUN device (created by `hydranet topology up`)
/// addr = "198.51.100.10"        # this host server's own address (ack channel, tunnels)
/// ctl = "/run/hydranet/h0.sock" # control socket
/// redirectors = ["198.51.100.1"]
/// vhosts = ["192.0.2.80"]
/// sysctl = { "net.inet.tcp.recvspace" = 262144 }   # optional TCP tunables
///
/// [[group]]
/// vip = "192.0.2.80"
/// port = 80
/// id = 7
/// rank = 0
/// key = "<64 hex digits, the same on every member>"
/// members = ["0@198.51.100.10", "1@198.51.100.11", "2@198.51.100.12"]
/// mode = "primary"              # setportopt: primary | backup | normal
/// retransmit_threshold = 2      # detector: client retransmissions ...
/// retransmit_window_ms = 1000   # ... within this window
/// heartbeat_interval_ms = 10
/// heartbeat_timeout_ms = 30
///
/// [[serve]]
/// vip = "192.0.2.80"
/// port = 80
/// service = "http:/srv/www"     # echo | discard | kv | digest | bulk:BYTES | http:DIR | relay:IP:PORT | stream:BYTES:FPS:FRAMES
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    pub tun: String,
    pub addr: Ipv4Addr,
    pub ctl: PathBuf,
    #[serde(default)]
    pub pcap: Option<PathBuf>,
    /// TCP tunables by their FreeBSD sysctl names (`net.inet.tcp.recvspace = 262144`),
    /// applied before anything is served.
    #[serde(default)]
    pub sysctl: std::collections::BTreeMap<String, i64>,
    #[serde(default)]
    pub redirectors: Vec<Ipv4Addr>,
    #[serde(default)]
    pub vhosts: Vec<Ipv4Addr>,
    #[serde(default)]
    pub group: Vec<GroupSection>,
    #[serde(default)]
    pub serve: Vec<ServeSection>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSection {
    pub vip: Ipv4Addr,
    pub port: u16,
    pub id: u32,
    pub rank: u8,
    pub key: String,
    pub members: Vec<String>,
    pub mode: String,
    #[serde(default = "default_threshold")]
    pub retransmit_threshold: u32,
    #[serde(default = "default_window")]
    pub retransmit_window_ms: u32,
    #[serde(default = "default_interval")]
    pub heartbeat_interval_ms: u32,
    #[serde(default = "default_timeout")]
    pub heartbeat_timeout_ms: u32,
}

fn default_threshold() -> u32 {
    DetectorParams::default().retransmit_threshold
}
fn default_window() -> u32 {
    DetectorParams::default().retransmit_window_ms
}
fn default_interval() -> u32 {
    DetectorParams::default().heartbeat_interval_ms
}
fn default_timeout() -> u32 {
    DetectorParams::default().heartbeat_timeout_ms
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSection {
    pub vip: Ipv4Addr,
    pub port: u16,
    pub service: String,
}

impl HostConfig {
    pub fn load(path: &std::path::Path) -> Result<HostConfig, String> {
        crate::daemon::load_config(path)
    }

    /// The configuration as the control requests that establish it, in the order they must
    /// be applied (a group needs its virtual host; setportopt needs its group).
    pub fn requests(&self) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for r in &self.redirectors {
            out.push(format!("redirector {r}"));
        }
        for v in &self.vhosts {
            out.push(format!("v_host {v}"));
        }
        for g in &self.group {
            out.push(format!(
                "group {} {} {} {} {} {}",
                g.vip,
                g.port,
                g.id,
                g.rank,
                g.key,
                g.members.join(",")
            ));
            out.push(format!(
                "setportopt {} {} {} {} {} {} {}",
                g.vip,
                g.port,
                g.mode,
                g.retransmit_threshold,
                g.retransmit_window_ms,
                g.heartbeat_interval_ms,
                g.heartbeat_timeout_ms
            ));
        }
        for s in &self.serve {
            out.push(format!("serve {} {} {}", s.vip, s.port, s.service));
        }
        Ok(out)
    }
}

/// A seed for the core's keyed hashes (ISNs, ephemeral ports, syncookies) that nobody can
/// predict: the kernel's randomness. Fault-tolerant ports key their ISNs with the group key
/// instead, which is what makes replicas agree.
fn random_seed() -> [u8; 16] {
    use std::io::Read;
    let mut seed = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        seed.copy_from_slice(&(t ^ (std::process::id() as u128) << 64).to_le_bytes());
    }
    seed
}

/// A number that grows with every group this host server creates, across restarts too: the
/// ack channel takes frames of an older incarnation for replays, so a replica that leaves a
/// group and joins it again — in the same process or after a crash — must come back newer.
/// Tenths of a second since 2024 (fits 32 bits for 13 years), and never the same twice in
/// one process.
fn incarnation() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static LAST: AtomicU32 = AtomicU32::new(0);
    const EPOCH_2024: u64 = 1_704_067_200;
    let tenths = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_millis() as u64 / 100).saturating_sub(EPOCH_2024 * 10) as u32)
        .unwrap_or(0);
    let prev = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| {
            Some(tenths.max(p + 1))
        })
        .unwrap_or(0);
    tenths.max(prev + 1)
}

/// The host server's state.
pub struct HostDaemon {
    pub host: Host<'static>,
    services: ServiceTable,
    clock: Clock,
    tun_name: String,
    addr: Ipv4Addr,
}

impl HostDaemon {
    pub fn new(addr: Ipv4Addr, tun_name: &str) -> Result<HostDaemon, String> {
        let stack = Stack::new_alloc(random_seed());
        let host = Host::new(stack, addr).map_err(|e| format!("host address {addr}: {e:?}"))?;
        Ok(HostDaemon {
            host,
            services: ServiceTable::new(),
            clock: Clock::start(),
            tun_name: tun_name.to_string(),
            addr,
        })
    }

    /// One control request.
    pub fn apply(&mut self, req: Request) -> Response {
        match req {
            Request::VHost(ip) => match self.host.v_host(ip) {
                Ok(()) | Err(hydranet_core::Errno::EEXIST) => Response::ok(),
                Err(e) => errno_answer(e, "v_host"),
            },
            Request::AcceptRedirector(ip) => match self.host.add_redirector(ip) {
                Ok(()) => Response::ok(),
                Err(e) => errno_answer(e, "redirector table full"),
            },
            Request::Group {
                vip,
                port,
                group_id,
                local_rank,
                key,
                members,
            } => {
                let members: Vec<Member> = members
                    .iter()
                    .map(|&(rank, addr)| Member { rank, addr })
                    .collect();
                let cfg = GroupConfig {
                    group_id,
                    local_rank,
                    members: &members,
                    key,
                    incarnation: incarnation(),
                };
                match self.host.ft_group(vip, port, &cfg) {
                    Ok(()) => Response::ok(),
                    Err(e) => errno_answer(e, "group"),
                }
            }
            Request::SetPortOpt {
                vip,
                port,
                mode,
                params,
            } => {
                let mode = match mode {
                    hydranet_syscalls::PortMode::Normal => PortMode::Normal,
                    hydranet_syscalls::PortMode::Primary => PortMode::Primary,
                    hydranet_syscalls::PortMode::Backup => PortMode::Backup,
                };
                let params = DetectorParams {
                    retransmit_threshold: params.retransmit_threshold,
                    retransmit_window_ms: params.retransmit_window_ms,
                    heartbeat_interval_ms: params.heartbeat_interval_ms,
                    heartbeat_timeout_ms: params.heartbeat_timeout_ms,
                };
                match self.host.setportopt(vip, port, mode, params) {
                    Ok(()) => Response::ok(),
                    Err(e) => errno_answer(e, "setportopt"),
                }
            }
            Request::Serve { vip, port, service } => {
                let spec: ServiceSpec = match service.parse() {
                    Ok(s) => s,
                    Err(e) => return Response::Err(hydranet_syscalls::Errno::EINVAL, e),
                };
                match self.services.serve(&mut self.host, vip, port, spec) {
                    Ok(()) => Response::ok(),
                    Err(e) => errno_answer(e, "serve"),
                }
            }
            Request::Status => Response::Ok(self.status()),
            Request::Counters => Response::Ok(self.counters(None)),
            Request::Shutdown => {
                crate::daemon::request_stop();
                Response::ok()
            }
            other => Response::Err(
                hydranet_syscalls::Errno::EINVAL,
                format!("not a host-server request: {other}"),
            ),
        }
    }

    /// `status`: identity, virtual hosts, each fault-tolerant port's role and view, services.
    pub fn status(&self) -> String {
        let mut f = vec![
            "daemon=host".to_string(),
            format!("addr={}", self.addr),
            format!("tun={}", self.tun_name),
            format!("pid={}", std::process::id()),
            format!(
                "vhosts={}",
                self.host
                    .vhosts()
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ];
        for (vip, port) in self.services.ports() {
            if let Some(role) = self.host.role(vip, port) {
                let role = format!("{role:?}").to_ascii_lowercase();
                f.push(format!("role@{vip}:{port}={role}"));
                if let Some(e) = self.host.epoch(vip, port) {
                    f.push(format!("epoch@{vip}:{port}={e}"));
                }
            }
        }
        f.push(format!("services={}", self.services.describe().join(",")));
        f.push(format!("connections={}", self.services.connections()));
        f.join(" ")
    }

    /// `counters`: every counter of the core, the FT layer, the device and the services.
    pub fn counters(&self, tun: Option<&TunDriver>) -> String {
        let mut f = Vec::new();
        for (k, v) in self.host.stack.tcpstat.fields() {
            f.push(format!("tcp.{k}={v}"));
        }
        for (k, v) in self.host.stack.ipstat.fields() {
            f.push(format!("ip.{k}={v}"));
        }
        f.extend(debug_fields("ft.", &format!("{:?}", self.host.stats)));
        for (vip, port) in self.services.ports() {
            if let Some(c) = self.host.chan_stats(vip, port) {
                f.extend(debug_fields(
                    &format!("chan@{vip}:{port}."),
                    &format!("{c:?}"),
                ));
            }
        }
        if let Some(t) = tun {
            f.extend(debug_fields("tun.", &format!("{:?}", t.stats())));
        }
        f.extend(debug_fields("svc.", &format!("{:?}", self.services.stats)));
        f.join(" ")
    }

    fn pump(&mut self, driver: &mut TunDriver, scratch: &mut [u8]) -> Result<(), String> {
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..MAX_ROUNDS {
            let now = self.clock.now();
            let r = poll_device(&mut self.host, driver, &mut cx, now, scratch)
                .map_err(|e| format!("device {}: {e}", self.tun_name))?;
            let before = self.services.stats;
            self.services.run(now, &mut self.host);
            let after = self.services.stats;
            let served = after.bytes_in != before.bytes_in
                || after.bytes_out != before.bytes_out
                || after.accepted != before.accepted
                || after.closed != before.closed;
            if !r.progress() && !served {
                break;
            }
        }
        Ok(())
    }
}

/// Runs a host server until SIGTERM/SIGINT or a `shutdown` request.
pub fn run(cfg: &HostConfig) -> Result<(), String> {
    install_stop_handler();
    let mut d = HostDaemon::new(cfg.addr, &cfg.tun)?;
    for (name, value) in &cfg.sysctl {
        d.host
            .stack
            .sysctl
            .set(name, *value)
            .map_err(|e| format!("sysctl {name} = {value}: {e}"))?;
    }
    let tun = Tun::open(&cfg.tun).map_err(|e| format!("TUN device {}: {e}", cfg.tun))?;
    let mut driver = TunDriver::new(tun);
    let capture = match &cfg.pcap {
        Some(dir) => {
            let c = Capture::create(dir, &cfg.tun)
                .map_err(|e| format!("pcap in {}: {e}", dir.display()))?;
            let tap = c.clone();
            driver.set_tap(Some(Box::new(move |_dir, pkt: &[u8]| tap.write(pkt))));
            Some(c)
        }
        None => None,
    };
    let mut ctl = CtlListener::bind(&cfg.ctl)
        .map_err(|e| format!("control socket {}: {e}", cfg.ctl.display()))?;
    for line in cfg.requests()? {
        let req = Request::parse(&line).map_err(|e| format!("config: {line}: {e}"))?;
        if let Response::Err(e, what) = d.apply(req) {
            return Err(format!("config: {line}: {e} ({what})"));
        }
    }
    eprintln!(
        "hydranet host: {} on {} (mtu {}), control {}",
        cfg.addr,
        cfg.tun,
        driver.tun().mtu(),
        cfg.ctl.display()
    );
    let mut scratch = vec![0u8; 65536];
    while !stop_requested() {
        let mut fds: Vec<RawFd> = vec![driver.tun().as_raw_fd()];
        fds.extend(ctl.fds());
        fds.extend(d.services.fds());
        let mut wait = d.clock.until(d.host.poll_timeout(), IDLE_WAKE);
        // A paced service (the stream) has output by the clock, not by any descriptor.
        if let Some(at) = d.services.next_wake() {
            wait = wait.min(at.saturating_duration_since(std::time::Instant::now()));
        }
        crate::tun::wait_readable(&fds, Some(wait)).map_err(|e| format!("poll: {e}"))?;
        ctl.poll(&mut |req| match req {
            Request::Counters => Response::Ok(d.counters(Some(&driver))),
            req => d.apply(req),
        });
        d.pump(&mut driver, &mut scratch)?;
        if let Some(c) = &capture {
            c.tick();
        }
    }
    if let Some(c) = &capture {
        c.flush();
    }
    eprintln!("hydranet host: {} stopping", cfg.addr);
    Ok(())
}

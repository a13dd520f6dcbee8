//! A running HydraNet-FT deployment on the namespace network: the topology, a redirector
//! daemon and one host-server daemon per replica, each service replicated on all of them.
//! The demo, the end-to-end tests and the benchmarks all start one of these.
//!
//! Everything it creates — namespaces, links, TUN devices, daemons, its run folder — goes
//! away when the [`Cluster`] is dropped, also when a test fails or panics; daemons are ended
//! by the pids this process started, nothing else.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use hydranet_core::ft::params::DetectorParams;
use hydranet_syscalls::ctl::{CtlClient, Request};

use crate::netns;
use crate::services::ServiceSpec;
use crate::topology::{self, TopologyGuard, TopologySpec};

/// The origin server's address: the service's identity, served by the replicas.
pub const ORIGIN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
/// The group id of the first replicated port; later ports count up from it.
const FIRST_GROUP_ID: u32 = 100;
/// How long a daemon may take to answer its first `status`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub hosts: usize,
    /// Replicated services: port and what answers it (on every replica).
    pub services: Vec<(u16, ServiceSpec)>,
    pub detector: DetectorParams,
    /// Capture every packet of every daemon's TUN device (and, with tcpdump installed, the
    /// client's veth) into this folder.
    pub pcap: Option<PathBuf>,
    /// The `hydranet` executable that runs the daemons.
    pub exe: PathBuf,
    /// Ports placed otherwise than `services` (which are replicated on every host): the
    /// benchmarks compare plain TCP, redirection and groups of different sizes side by side
    /// in one deployment, so that a busy machine slows all of them alike.
    pub placed: Vec<(u16, ServiceSpec, Placement)>,
    /// TCP tunables of every host server, by sysctl name ([`host_sysctl_default`]).
    pub sysctl: Vec<(String, i64)>,
}

/// The host servers' TCP tunables unless a deployment says otherwise: none, i.e. FreeBSD's
/// defaults (64 KiB receive, 32 KiB send buffers).
pub fn host_sysctl_default() -> Vec<(String, i64)> {
    Vec::new()
}

/// Socket buffers of 256 KiB each way. The core has no buffer autotuning, and a replicated
/// connection's window is the smallest of the replicas' and opens only as fast as deliveries
/// reach every service, so the defaults leave the path idle: with these, 32 MiB downloads
/// through three replicas measured 0.82-0.87 of plain redirection here, against 0.53.
pub fn host_sysctl_large_buffers() -> Vec<(String, i64)> {
    vec![
        ("net.inet.tcp.recvspace".into(), 256 * 1024),
        ("net.inet.tcp.sendspace".into(), 256 * 1024),
    ]
}

/// How a port of [`ClusterSpec::placed`] is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Fault-tolerant on the first `n` hosts (a group of `n`; 1 is a primary alone), behind
    /// the redirector, like `services`.
    Replicated(usize),
    /// Normal mode (no group, no `setportopt`) on host 0 under the origin's address, behind
    /// the redirector: redirection without fault tolerance.
    Redirected,
    /// Normal mode on host 0's own address: Linux routes the client straight to the host
    /// server's TUN device and the redirector daemon never sees a packet.
    Direct,
}

impl ClusterSpec {
    /// `hosts` host servers replicating `services`, the default detector, no captures, no
    /// other placements.
    pub fn new(hosts: usize, services: Vec<(u16, ServiceSpec)>, exe: PathBuf) -> ClusterSpec {
        ClusterSpec {
            hosts,
            services,
            detector: DetectorParams::default(),
            pcap: None,
            exe,
            placed: Vec::new(),
            sysctl: host_sysctl_default(),
        }
    }

    /// Every port that has a group, with its group id and how many hosts (the first ones)
    /// are members: `services` first, then the replicated `placed` ports.
    fn groups(&self) -> Vec<(u16, &ServiceSpec, u32, usize)> {
        let all = self.services.iter().map(|(p, s)| (*p, s, self.hosts));
        let placed = self.placed.iter().filter_map(|(p, s, how)| match how {
            Placement::Replicated(n) => Some((*p, s, (*n).clamp(1, self.hosts))),
            _ => None,
        });
        all.chain(placed)
            .enumerate()
            .map(|(g, (p, s, n))| (p, s, FIRST_GROUP_ID + g as u32, n))
            .collect()
    }
}

/// One daemon process.
struct Daemon {
    child: Option<Child>,
    ctl: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn stop(&mut self, hard: bool) {
        if let Some(mut c) = self.child.take() {
            if !hard {
                // SAFETY: kill(2) on a pid this process spawned and has not reaped.
                unsafe {
                    libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
                }
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until {
                    if let Ok(Some(_)) = c.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running deployment.
pub struct Cluster {
    pub topo: TopologyGuard,
    pub spec: ClusterSpec,
    run_dir: PathBuf,
    key: String,
    redirector: Daemon,
    hosts: Vec<Daemon>,
    captures: Vec<Child>,
}

/// The group key, fresh for every cluster: it authenticates the ack channel and keys the
/// replicated ports' ISNs.
fn fresh_key() -> String {
    use std::io::Read;
    let mut k = [0u8; 32];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut k))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        for (i, b) in k.iter_mut().enumerate() {
            *b = (t >> (i % 16 * 8)) as u8 ^ i as u8;
        }
    }
    k.iter().map(|b| format!("{b:02x}")).collect()
}

impl Cluster {
    /// Builds the network and starts every daemon; waits until each answers on its control
    /// socket. On failure everything already created is removed.
    pub fn start(spec: ClusterSpec) -> Result<Cluster, String> {
        netns::capable()?;
        let prefix = TopologySpec::unique_prefix();
        let topo = TopologyGuard(
            topology::up(&TopologySpec::new(&prefix, spec.hosts))
                .map_err(|e| format!("topology up: {e}"))?,
        );
        let run_dir = std::env::temp_dir().join(format!("hydranet-{prefix}"));
        std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
        let mut c = Cluster {
            topo,
            spec,
            run_dir,
            key: fresh_key(),
            redirector: Daemon {
                child: None,
                ctl: PathBuf::new(),
                log: PathBuf::new(),
            },
            hosts: Vec::new(),
            captures: Vec::new(),
        };
        c.launch()?;
        Ok(c)
    }

    fn launch(&mut self) -> Result<(), String> {
        let t = &self.topo;
        let key = self.key.clone();
        let pcap = self
            .spec
            .pcap
            .as_ref()
            .map(|p| format!("pcap = {:?}\n", p.display().to_string()))
            .unwrap_or_default();
        // The redirector.
        let mut cfg = format!(
            "tun = {:?}\naddr = \"{}\"\nctl = {:?}\n{pcap}",
            t.redirector_tun,
            t.redirector_addr,
            self.run_dir.join("redirector.sock").display().to_string()
        );
        let mut routes: Vec<(u16, usize)> = self
            .spec
            .groups()
            .iter()
            .map(|&(port, _, _, n)| (port, n))
            .collect();
        routes.extend(
            self.spec
                .placed
                .iter()
                .filter(|(_, _, how)| *how == Placement::Redirected)
                .map(|(port, _, _)| (*port, 1)),
        );
        for (port, n) in routes {
            let reps: Vec<String> = t.host_addrs[..n]
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect();
            let _ = write!(
                cfg,
                "\n[[route]]\norigin = \"{ORIGIN}\"\nport = {port}\nreplicas = [{}]\n",
                reps.join(", ")
            );
        }
        let redirector_ns = t.redirector_ns.clone();
        self.redirector = self.spawn("redirector", &redirector_ns, "redirector", &cfg)?;
        // The host servers.
        let members: Vec<String> = t
            .host_addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("\"{i}@{a}\""))
            .collect();
        let d = self.spec.detector;
        let sysctl = if self.spec.sysctl.is_empty() {
            String::new()
        } else {
            let kv: Vec<String> = self
                .spec
                .sysctl
                .iter()
                .map(|(k, v)| format!("{k:?} = {v}"))
                .collect();
            format!("sysctl = {{ {} }}\n", kv.join(", "))
        };
        for i in 0..self.spec.hosts {
            let t = &self.topo;
            let mut cfg = format!(
                "tun = {:?}\naddr = \"{}\"\nctl = {:?}\n{pcap}{sysctl}redirectors = [\"{}\"]\nvhosts = [\"{ORIGIN}\"]\n",
                t.host_tuns[i],
                t.host_addrs[i],
                self.run_dir.join(format!("host{i}.sock")).display().to_string(),
                t.redirector_addr,
            );
            for (port, service, id, n) in self.spec.groups() {
                if i >= n {
                    continue;
                }
                let members = &members[..n];
                let mode = if i == 0 { "primary" } else { "backup" };
                let _ = write!(
                    cfg,
                    "\n[[group]]\nvip = \"{ORIGIN}\"\nport = {port}\nid = {}\nrank = {i}\nkey = \"{key}\"\n\
                     members = [{}]\nmode = \"{mode}\"\nretransmit_threshold = {}\nretransmit_window_ms = {}\n\
                     heartbeat_interval_ms = {}\nheartbeat_timeout_ms = {}\n\
                     \n[[serve]]\nvip = \"{ORIGIN}\"\nport = {port}\nservice = {:?}\n",
                    id,
                    members.join(", "),
                    d.retransmit_threshold,
                    d.retransmit_window_ms,
                    d.heartbeat_interval_ms,
                    d.heartbeat_timeout_ms,
                    service.to_string(),
                );
            }
            for (port, service, how) in &self.spec.placed {
                let vip = match how {
                    Placement::Replicated(_) => continue,
                    _ if i != 0 => continue,
                    Placement::Redirected => ORIGIN,
                    Placement::Direct => self.topo.host_addrs[0],
                };
                let _ = write!(
                    cfg,
                    "\n[[serve]]\nvip = \"{vip}\"\nport = {port}\nservice = {:?}\n",
                    service.to_string(),
                );
            }
            let ns = self.topo.host_ns[i].clone();
            let daemon = self.spawn(&format!("host{i}"), &ns, "host", &cfg)?;
            self.hosts.push(daemon);
        }
        if let Some(dir) = self.spec.pcap.clone() {
            let ns = self.topo.client_ns.clone();
            let veth = format!("{}c0", self.topo.spec.prefix);
            if let Ok(c) = crate::pcap::capture_iface(&ns, &veth, &dir.join("client.pcap")) {
                self.captures.push(c);
            }
        }
        // Ready when every daemon answers.
        let mut all: Vec<PathBuf> = vec![self.redirector.ctl.clone()];
        all.extend(self.hosts.iter().map(|h| h.ctl.clone()));
        for ctl in all {
            let until = Instant::now() + START_TIMEOUT;
            loop {
                if call(&ctl, &Request::Status).is_ok() {
                    break;
                }
                if Instant::now() > until {
                    return Err(format!(
                        "daemon at {} did not answer within {START_TIMEOUT:?}; its log:\n{}",
                        ctl.display(),
                        self.logs()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    fn spawn(&self, name: &str, ns: &str, role: &str, cfg: &str) -> Result<Daemon, String> {
        let cfg_path = self.run_dir.join(format!("{name}.toml"));
        let log = self.run_dir.join(format!("{name}.log"));
        std::fs::write(&cfg_path, cfg).map_err(|e| format!("{}: {e}", cfg_path.display()))?;
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = netns::command(ns, &self.spec.exe)
            .arg(role)
            .arg("--config")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("spawn {role} in {ns}: {e}"))?;
        let ctl = if role == "redirector" {
            self.run_dir.join("redirector.sock")
        } else {
            self.run_dir.join(format!("{name}.sock"))
        };
        Ok(Daemon {
            child: Some(child),
            ctl,
            log,
        })
    }

    /// The control requests that make host `i` a backup of the group serving `port` again
    /// (after it left with `setportopt ... normal`): its `group` and its `setportopt`.
    pub fn join_requests(&self, i: usize, port: u16) -> Vec<String> {
        let g = self
            .spec
            .services
            .iter()
            .position(|(p, _)| *p == port)
            .expect("a replicated port");
        let members: Vec<String> = self
            .topo
            .host_addrs
            .iter()
            .enumerate()
            .map(|(r, a)| format!("{r}@{a}"))
            .collect();
        let d = self.spec.detector;
        vec![
            format!(
                "group {ORIGIN} {port} {} {i} {} {}",
                FIRST_GROUP_ID + g as u32,
                self.key,
                members.join(",")
            ),
            format!(
                "setportopt {ORIGIN} {port} backup {} {} {} {}",
                d.retransmit_threshold,
                d.retransmit_window_ms,
                d.heartbeat_interval_ms,
                d.heartbeat_timeout_ms
            ),
        ]
    }

    /// Every daemon's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for d in std::iter::once(&self.redirector).chain(&self.hosts) {
            let text = std::fs::read_to_string(&d.log).unwrap_or_default();
            let _ = writeln!(s, "--- {}\n{}", d.log.display(), text.trim_end());
        }
        s
    }

    /// Where a client reaches `port`: host 0's own address for a [`Placement::Direct`] port,
    /// the origin's otherwise.
    pub fn service_addr(&self, port: u16) -> std::net::SocketAddrV4 {
        let direct = self
            .spec
            .placed
            .iter()
            .any(|(p, _, how)| *p == port && *how == Placement::Direct);
        let ip = if direct {
            self.topo.host_addrs[0]
        } else {
            ORIGIN
        };
        std::net::SocketAddrV4::new(ip, port)
    }

    pub fn host_ctl(&self, i: usize) -> &Path {
        &self.hosts[i].ctl
    }
    pub fn redirector_ctl(&self) -> &Path {
        &self.redirector.ctl
    }
    pub fn host_pid(&self, i: usize) -> Option<u32> {
        self.hosts[i].child.as_ref().map(|c| c.id())
    }
    pub fn redirector_pid(&self) -> Option<u32> {
        self.redirector.child.as_ref().map(|c| c.id())
    }
    pub fn host_alive(&self, i: usize) -> bool {
        self.hosts[i].child.is_some()
    }

    /// Crashes host server `i` (SIGKILL: no clean-up, no goodbye on the ack channel).
    pub fn kill_host(&mut self, i: usize) {
        self.hosts[i].stop(true);
    }

    /// Which live host is primary for `port`, by asking them.
    pub fn primary(&self, port: u16) -> Option<usize> {
        let key = format!("role@{ORIGIN}:{port}=primary");
        (0..self.hosts.len())
            .filter(|&i| self.host_alive(i))
            .find(|&i| {
                call(&self.hosts[i].ctl, &Request::Status)
                    .is_ok_and(|s| s.split(' ').any(|f| f == key))
            })
    }

    /// A counter of host `i` (`counters` key), if the host answers.
    pub fn host_counter(&self, i: usize, key: &str) -> Option<u64> {
        counter(&call(&self.hosts[i].ctl, &Request::Counters).ok()?, key)
    }

    /// Runs `f` on a thread inside the client namespace (its sockets are the client's).
    pub fn in_client<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        netns::run_in(&self.topo.client_ns, f).map_err(|e| format!("client namespace: {e}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            h.stop(false);
        }
        self.redirector.stop(false);
        for c in &mut self.captures {
            // SAFETY: kill(2) on a tcpdump this process spawned; SIGINT lets it flush.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGINT);
            }
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
        // The topology guard removes the namespaces when it drops, after this.
    }
}

/// One control request to the daemon at `ctl`.
pub fn call(ctl: &Path, req: &Request) -> Result<String, String> {
    let mut c = CtlClient::connect(ctl).map_err(|e| format!("{}: {e}", ctl.display()))?;
    c.call(req).map_err(|e| format!("{req}: {e}"))
}

/// The value of `key` in a `key=value ...` answer.
pub fn counter(answer: &str, key: &str) -> Option<u64> {
    answer
        .split(' ')
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

//! `hydranet bench load`: one deployment under a steady load for a fixed time, for profiling.
//!
//! It starts a single scheme (a group of 1-3 replicas behind the redirector, redirection
//! without FT, a direct connection to a host daemon, a `tun-server`, or a bare veth pair),
//! prints the pid of every process taking part (`pids: ...`, one line, before the load
//! starts), waits `--warmup` seconds so a profiler can be attached, then moves bytes in one
//! direction for `--secs` seconds with back-to-back transfers. At the end it prints the
//! rate and the CPU accounting of the window: user and system time of each daemon and of
//! this process (the Linux client runs on a thread of it), and the machine's CPU split from
//! `/proc/stat` (user, nice, system, softirq, idle), so that the two cores' time is
//! accounted, other people's niced jobs included.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hydranet_core::sim::service::bulk_byte;

use crate::bench::{cpu_secs, Dir};
use crate::harness::{Cluster, ClusterSpec, Placement};
use crate::netns;
use crate::services::ServiceSpec;

/// What runs under load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadScheme {
    /// Host daemon, Normal mode, at its own address (no redirector).
    Direct,
    /// Host daemon, Normal mode, behind the redirector (redirection without FT).
    Redirect,
    /// A group of one replica behind the redirector.
    Ft1,
    /// A group of two replicas behind the redirector.
    Ft2,
    /// A group of three replicas behind the redirector.
    Ft3,
    /// `tun-server --stack hydranet` (the core's plain Stack, 256 KiB buffers).
    Stack,
    /// `tun-server --stack smoltcp`.
    Smoltcp,
    /// Linux TCP over a veth pair, segmentation offloads off (needs ethtool).
    VethOff,
    /// Linux TCP over a veth pair, offloads on.
    VethOn,
}

pub struct LoadOptions {
    pub scheme: LoadScheme,
    pub dir: Dir,
    /// Bytes per transfer; transfers repeat until `secs` have passed.
    pub size: usize,
    pub secs: f64,
    pub warmup: f64,
    /// 256 KiB socket buffers on the host daemons instead of FreeBSD's defaults.
    pub large_buffers: bool,
    pub exe: PathBuf,
}

const PORT: u16 = 9000;

/// Jiffies of the machine's `cpu` line in /proc/stat: user, nice, system, idle, iowait, irq,
/// softirq, steal.
fn proc_stat_cpu() -> Option<[u64; 8]> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let mut v = [0u64; 8];
    for (slot, f) in v.iter_mut().zip(line.split_whitespace().skip(1)) {
        *slot = f.parse().ok()?;
    }
    Some(v)
}

/// One transfer: an upload writes until `size` bytes or `stop`, half-closes and waits for the
/// server's close; a download reads until the server's close or `stop` (then just closes).
/// Adds the bytes to `moved` as they go.
fn transfer(
    addr: SocketAddrV4,
    dir: Dir,
    size: usize,
    stop: Instant,
    moved: &AtomicUsize,
) -> io::Result<usize> {
    let s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut n_total = 0usize;
    match dir {
        Dir::Upload => {
            let chunk: Vec<u8> = (0..256 * 1024).map(bulk_byte).collect();
            let mut w = &s;
            while n_total < size && Instant::now() < stop {
                let n = (size - n_total).min(chunk.len());
                w.write_all(&chunk[..n])?;
                n_total += n;
                moved.fetch_add(n, Ordering::Relaxed);
            }
            s.shutdown(Shutdown::Write)?;
            let mut b = [0u8; 64];
            let mut r = &s;
            while r.read(&mut b)? > 0 {}
        }
        Dir::Download => {
            let mut buf = vec![0u8; 256 * 1024];
            let mut r = &s;
            while Instant::now() < stop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                n_total += n;
                moved.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
    Ok(n_total)
}

#[derive(Default)]
struct Load {
    bytes: usize,
    secs: f64,
    /// MB/s of each transfer.
    each: Vec<f64>,
    /// MB moved in each second of the load.
    timeline: Vec<f64>,
}

/// Runs transfers to `addr` from a thread in namespace `ns` until `secs` have passed, and
/// samples the bytes moved once a second.
fn load(ns: &str, addr: SocketAddrV4, dir: Dir, size: usize, secs: f64) -> Result<Load, String> {
    let moved = Arc::new(AtomicUsize::new(0));
    let counter = moved.clone();
    let ns = ns.to_string();
    let client = std::thread::Builder::new()
        .name("load-client".into())
        .spawn(move || -> Result<Load, String> {
            netns::enter(&ns).map_err(|e| format!("client namespace: {e}"))?;
            let t0 = Instant::now();
            let stop = t0 + Duration::from_secs_f64(secs);
            let mut l = Load::default();
            while Instant::now() < stop {
                let t = Instant::now();
                let n = transfer(addr, dir, size, stop, &counter).map_err(|e| e.to_string())?;
                l.bytes += n;
                l.each.push(n as f64 / t.elapsed().as_secs_f64() / 1e6);
            }
            l.secs = t0.elapsed().as_secs_f64();
            Ok(l)
        })
        .map_err(|e| e.to_string())?;
    let mut timeline = Vec::new();
    let mut last = 0usize;
    let t0 = Instant::now();
    while !client.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
        if t0.elapsed().as_secs_f64() >= (timeline.len() + 1) as f64 {
            let now = moved.load(Ordering::Relaxed);
            timeline.push((now - last) as f64 / 1e6);
            last = now;
        }
    }
    let mut l = client
        .join()
        .map_err(|_| "the client thread panicked".to_string())??;
    l.timeline = timeline;
    Ok(l)
}

/// The deployment under load; dropping it removes everything.
enum Deployment {
    Cluster(Box<Cluster>),
    Servers(crate::bench::TunServers),
    Veth(crate::bench::VethPair),
}

/// Every numeric counter of each daemon of a cluster (hosts, then the redirector).
fn daemon_counters(dep: &Deployment) -> Vec<(String, Vec<(String, u64)>)> {
    use hydranet_syscalls::ctl::Request;
    let Deployment::Cluster(c) = dep else {
        return Vec::new();
    };
    let parse = |answer: Result<String, String>| -> Vec<(String, u64)> {
        answer
            .unwrap_or_default()
            .split(' ')
            .filter_map(|f| {
                let (k, v) = f.split_once('=')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    };
    let mut v: Vec<(String, Vec<(String, u64)>)> = (0..c.spec.hosts)
        .map(|i| {
            (
                format!("host{i}"),
                parse(crate::harness::call(c.host_ctl(i), &Request::Counters)),
            )
        })
        .collect();
    v.push((
        "redirector".into(),
        parse(crate::harness::call(c.redirector_ctl(), &Request::Counters)),
    ));
    v
}

pub fn run(o: &LoadOptions) -> Result<(), String> {
    netns::capable()?;
    let (dep, procs): (Deployment, Vec<(String, u32)>) = match o.scheme {
        LoadScheme::Direct
        | LoadScheme::Redirect
        | LoadScheme::Ft1
        | LoadScheme::Ft2
        | LoadScheme::Ft3 => {
            let (hosts, how) = match o.scheme {
                LoadScheme::Direct => (1, Placement::Direct),
                LoadScheme::Redirect => (1, Placement::Redirected),
                LoadScheme::Ft1 => (1, Placement::Replicated(1)),
                LoadScheme::Ft2 => (2, Placement::Replicated(2)),
                _ => (3, Placement::Replicated(3)),
            };
            let service = match o.dir {
                Dir::Download => ServiceSpec::Bulk(o.size as u64),
                Dir::Upload => ServiceSpec::Discard,
            };
            let mut spec = ClusterSpec::new(hosts, Vec::new(), o.exe.clone());
            spec.placed = vec![(PORT, service, how)];
            if o.large_buffers {
                spec.sysctl = crate::harness::host_sysctl_large_buffers();
            }
            let c = Cluster::start(spec)?;
            let mut procs = Vec::new();
            if how != Placement::Direct {
                if let Some(p) = c.redirector_pid() {
                    procs.push(("redirector".to_string(), p));
                }
            }
            for i in 0..hosts {
                if let Some(p) = c.host_pid(i) {
                    procs.push((format!("host{i}"), p));
                }
            }
            (Deployment::Cluster(Box::new(c)), procs)
        }
        LoadScheme::Stack | LoadScheme::Smoltcp => {
            // Long enough for the warm-up, the load and a last transfer's timeouts.
            let max = o.warmup + o.secs + 120.0;
            let s = crate::bench::TunServers::start(&o.exe, o.size, max)?;
            let which = if o.scheme == LoadScheme::Stack {
                crate::bench::TunServer::Stack
            } else {
                crate::bench::TunServer::Smoltcp
            };
            let procs = s
                .pid(which)
                .map(|p| vec![("tun-server".to_string(), p)])
                .unwrap_or_default();
            (Deployment::Servers(s), procs)
        }
        LoadScheme::VethOff | LoadScheme::VethOn => {
            let v = crate::bench::VethPair::up()?;
            v.offloads(o.scheme == LoadScheme::VethOn)?;
            (Deployment::Veth(v), Vec::new())
        }
    };
    let me = std::process::id();
    let mut line = format!("pids: client(bench)={me}");
    for (name, p) in &procs {
        let _ = write!(line, " {name}={p}");
    }
    println!("{line}");
    println!(
        "bench load: {:?} {}, {} s after a {} s warm-up, transfers of {} bytes",
        o.scheme,
        match o.dir {
            Dir::Download => "download",
            Dir::Upload => "upload",
        },
        o.secs,
        o.warmup,
        o.size
    );
    let _ = io::stdout().flush();
    std::thread::sleep(Duration::from_secs_f64(o.warmup.max(0.0)));
    let mut all = procs.clone();
    all.push(("client(bench)".to_string(), me));
    let counters0 = daemon_counters(&dep);
    let cpu0: Vec<Option<(f64, f64)>> = all.iter().map(|(_, p)| cpu_secs(*p)).collect();
    let stat0 = proc_stat_cpu();
    let t0 = Instant::now();
    println!("load start");
    let _ = io::stdout().flush();
    let result = match &dep {
        Deployment::Cluster(c) => load(
            &c.topo.client_ns,
            c.service_addr(PORT),
            o.dir,
            o.size,
            o.secs,
        ),
        Deployment::Servers(s) => {
            let which = if o.scheme == LoadScheme::Stack {
                crate::bench::TunServer::Stack
            } else {
                crate::bench::TunServer::Smoltcp
            };
            load(
                &s.topo.client_ns,
                s.addr(which, o.dir),
                o.dir,
                o.size,
                o.secs,
            )
        }
        Deployment::Veth(v) => crate::bench::veth_throughput(v, o.secs).map(|bps| Load {
            bytes: (bps * o.secs) as usize,
            secs: o.secs,
            each: vec![bps / 1e6],
            timeline: Vec::new(),
        }),
    };
    let wall = t0.elapsed().as_secs_f64();
    let stat1 = proc_stat_cpu();
    let cpu1: Vec<Option<(f64, f64)>> = all.iter().map(|(_, p)| cpu_secs(*p)).collect();
    println!("load end");
    let l = result?;
    println!(
        "moved {:.1} MB in {:.2} s: {:.1} MB/s; per transfer MB/s: {}",
        l.bytes as f64 / 1e6,
        l.secs,
        l.bytes as f64 / l.secs.max(1e-9) / 1e6,
        l.each
            .iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if !l.timeline.is_empty() {
        println!(
            "MB moved in each second: {}",
            l.timeline
                .iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let mb = (l.bytes as f64 / 1e6).max(1e-9);
    println!(
        "{:<16}{:>9}{:>9}{:>12}{:>12}",
        "process", "usr %", "sys %", "usr ms/MB", "sys ms/MB"
    );
    println!("{:<16}{:>9}{:>9}", "", "of 1 CPU", "of 1 CPU");
    for (((name, _), a), b) in all.iter().zip(&cpu0).zip(&cpu1) {
        if let (Some((u0, s0)), Some((u1, s1))) = (a, b) {
            let (u, s) = (u1 - u0, s1 - s0);
            println!(
                "{name:<16}{:>9.1}{:>9.1}{:>12.3}{:>12.3}",
                u / wall * 100.0,
                s / wall * 100.0,
                u * 1e3 / mb,
                s * 1e3 / mb
            );
        }
    }
    if let (Some(a), Some(b)) = (stat0, stat1) {
        let d: Vec<f64> = a.iter().zip(&b).map(|(x, y)| (y - x) as f64).collect();
        let total: f64 = d.iter().sum::<f64>().max(1.0);
        let names = [
            "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
        ];
        let parts: Vec<String> = names
            .iter()
            .zip(&d)
            .map(|(n, v)| format!("{n} {:.1}", v / total * 100.0))
            .collect();
        // SAFETY: sysconf has no preconditions.
        let ncpu = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1);
        println!(
            "machine (/proc/stat, % of {ncpu} CPUs x {wall:.1} s): {}",
            parts.join(", ")
        );
    }
    let counters1 = daemon_counters(&dep);
    for ((name, a), (_, b)) in counters0.iter().zip(&counters1) {
        let d: Vec<String> = b
            .iter()
            .filter_map(|(k, v1)| {
                let v0 = a.iter().find(|(k0, _)| k0 == k).map_or(0, |x| x.1);
                let wanted = ["tun.", "ft.", "dev.", "redir.", "chan@"]
                    .iter()
                    .any(|p| k.starts_with(p))
                    || [
                        "tcp.sndpack",
                        "tcp.sndacks",
                        "tcp.sndwinup",
                        "tcp.sndrexmitpack",
                        "tcp.rcvpack",
                        "tcp.rcvackpack",
                        "tcp.rcvpackafterwin",
                        "tcp.rcvduppack",
                        "tcp.rcvoopack",
                        "tcp.rexmttimeo",
                        "tcp.persisttimeo",
                        "tcp.delack",
                    ]
                    .contains(&k.as_str());
                (wanted && *v1 > v0).then(|| format!("{k}={}", v1 - v0))
            })
            .collect();
        println!("{name} counters over the load: {}", d.join(" "));
    }
    drop(dep);
    Ok(())
}

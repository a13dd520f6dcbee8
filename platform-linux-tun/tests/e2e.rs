//! End to end: real Linux TCP clients in a namespace, the redirector and three host-server
//! daemons on TUN devices, primaries and backups killed with SIGKILL mid-transfer.
//!
//! These need root, /dev/net/tun and `ip netns`. Without them a test prints `SKIP: why` and
//! passes — except under `CI=true`, where a skip is a failure. Every test builds its own
//! network with a unique name prefix and removes it (and its daemons) when it ends, also on
//! failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hydranet_core::ft::params::DetectorParams;
use hydranet_core::sim::service::bulk_byte;
use hydranet_platform_linux_tun::harness::{call, counter, Cluster, ClusterSpec, ORIGIN};
use hydranet_platform_linux_tun::netns;
use hydranet_platform_linux_tun::services::ServiceSpec;
use hydranet_syscalls::ctl::Request;
use sha2::{Digest, Sha256};

const BULK_PORT: u16 = 9000;
const DIGEST_PORT: u16 = 9001;
const ECHO_PORT: u16 = 7;
const TIMEOUT: Duration = Duration::from_secs(60);

fn cluster(services: Vec<(u16, ServiceSpec)>) -> Option<Cluster> {
    if let Err(why) = netns::capable() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but the namespace network cannot be built: {why}");
        }
        eprintln!("SKIP: end-to-end test needs root, TUN and namespaces: {why}");
        return None;
    }
    let spec = ClusterSpec {
        hosts: 3,
        services,
        detector: DetectorParams::default(),
        pcap: None,
        exe: env!("CARGO_BIN_EXE_hydranet").into(),
        placed: Vec::new(),
        sysctl: hydranet_platform_linux_tun::harness::host_sysctl_default(),
    };
    Some(Cluster::start(spec).unwrap_or_else(|e| panic!("cluster: {e}")))
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect_timeout(&SocketAddrV4::new(ORIGIN, port).into(), TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {ORIGIN}:{port}: {e}"));
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Resets the client's kernel counted (connections that ended in RST).
fn kernel_resets() -> u64 {
    netns::tcp_counters().unwrap()["Tcp.EstabResets"]
}

/// Downloads `size` bytes of the bulk service, telling `at` when half has arrived; returns
/// the digest of what arrived and how many bytes.
fn download(size: usize, at: mpsc::Sender<()>) -> Result<([u8; 32], usize, u64), String> {
    let before = kernel_resets();
    let mut s = connect(BULK_PORT);
    let mut h = Sha256::new();
    let mut got = 0usize;
    let mut buf = vec![0u8; 128 * 1024];
    let mut told = false;
    loop {
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("after {got} bytes: {e}"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        got += n;
        if !told && got >= size / 2 {
            told = true;
            let _ = at.send(());
        }
    }
    Ok((h.finalize().into(), got, kernel_resets() - before))
}

fn bulk_digest(size: usize) -> [u8; 32] {
    let mut h = Sha256::new();
    let bytes: Vec<u8> = (0..size).map(bulk_byte).collect();
    h.update(&bytes);
    h.finalize().into()
}

/// A download during which `victim(cluster)` is killed half way.
fn download_killing(size: usize, victim: impl FnOnce(&Cluster) -> usize) {
    let Some(mut c) = cluster(vec![(BULK_PORT, ServiceSpec::Bulk(size as u64))]) else {
        return;
    };
    let (tx, rx) = mpsc::channel();
    let ns = c.topo.client_ns.clone();
    let client = std::thread::spawn(move || {
        netns::enter(&ns).unwrap();
        download(size, tx)
    });
    rx.recv_timeout(TIMEOUT).expect("half of the download");
    let v = victim(&c);
    c.kill_host(v);
    let (sum, got, resets) = client
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("download: {e}\n{}", c.logs()));
    assert_eq!(got, size, "bytes received\n{}", c.logs());
    assert_eq!(sum, bulk_digest(size), "sha256 of the download");
    assert_eq!(resets, 0, "the client's kernel saw a reset");
}

#[test]
fn download_survives_the_primary_killed_mid_transfer() {
    download_killing(8 << 20, |c| {
        let p = c.primary(BULK_PORT).expect("a primary");
        assert_eq!(p, 0, "rank 0 starts as primary");
        p
    });
}

#[test]
fn download_survives_a_backup_killed_mid_transfer() {
    download_killing(8 << 20, |_| 2);
}

#[test]
fn upload_survives_the_primary_killed_mid_transfer() {
    let Some(mut c) = cluster(vec![(DIGEST_PORT, ServiceSpec::Digest)]) else {
        return;
    };
    let size = 8usize << 20;
    let (tx, rx) = mpsc::channel();
    let ns = c.topo.client_ns.clone();
    let client = std::thread::spawn(move || -> Result<(String, String, u64), String> {
        netns::enter(&ns).map_err(|e| e.to_string())?;
        let before = kernel_resets();
        let mut s = connect(DIGEST_PORT);
        let mut h = Sha256::new();
        let mut sent = 0usize;
        let mut told = false;
        while sent < size {
            let chunk: Vec<u8> = (sent..(sent + 65536).min(size))
                .map(|i| (i as u32).wrapping_mul(2_246_822_519).to_be_bytes()[0])
                .collect();
            s.write_all(&chunk)
                .map_err(|e| format!("after {sent} bytes: {e}"))?;
            h.update(&chunk);
            sent += chunk.len();
            if !told && sent >= size / 2 {
                told = true;
                let _ = tx.send(());
            }
        }
        s.shutdown(std::net::Shutdown::Write)
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        BufReader::new(s)
            .read_line(&mut answer)
            .map_err(|e| format!("reading the digest: {e}"))?;
        let mine: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok((
            mine,
            answer.trim_end().to_string(),
            kernel_resets() - before,
        ))
    });
    rx.recv_timeout(TIMEOUT).expect("half of the upload");
    let p = c.primary(DIGEST_PORT).expect("a primary");
    c.kill_host(p);
    let (mine, theirs, resets) = client
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("upload: {e}\n{}", c.logs()));
    assert_eq!(theirs, mine, "the service's sha256 of the upload");
    assert_eq!(resets, 0, "the client's kernel saw a reset");
    let new = c.primary(DIGEST_PORT).expect("a new primary");
    assert_ne!(new, p);
}

#[test]
fn redirector_table_changes_at_run_time() {
    let Some(c) = cluster(vec![(ECHO_PORT, ServiceSpec::Echo)]) else {
        return;
    };
    let r = c.redirector_ctl().to_path_buf();
    let h2 = c.topo.host_addrs[2];
    let echo_once = |c: &Cluster, text: &'static str| {
        c.in_client(move || {
            let mut s = connect(ECHO_PORT);
            s.write_all(text.as_bytes()).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut back = String::new();
            s.read_to_string(&mut back).unwrap();
            back
        })
        .unwrap()
    };
    assert_eq!(echo_once(&c, "one\n"), "one\n");
    let tunneled = |c: &Cluster| c.host_counter(2, "ft.tunneled_in").unwrap();
    assert!(tunneled(&c) > 0, "replica 2 got the first connection");

    // Replica recalled: out of the redirector's table first (so no client packet reaches it
    // once it stops being a replica), then out of the group. New connections keep working
    // and no longer reach it.
    let req = |line: String| Request::parse(&line).unwrap();
    call(&r, &req(format!("replica del {ORIGIN} {ECHO_PORT} {h2}"))).unwrap();
    let status = call(&r, &Request::Status).unwrap();
    assert!(!status.contains(&h2.to_string()), "{status}");
    // The first connection's last segments may still be on their way.
    std::thread::sleep(Duration::from_millis(100));
    let before = tunneled(&c);
    call(
        c.host_ctl(2),
        &req(format!("setportopt {ORIGIN} {ECHO_PORT} normal 0 0 0 0")),
    )
    .unwrap();
    assert_eq!(echo_once(&c, "two\n"), "two\n");
    assert_eq!(tunneled(&c), before, "replica 2 was taken out of the table");

    // Replica deployed again: into the group first, then into the table. It serves new
    // connections again, and the group holds them on it.
    for line in c.join_requests(2, ECHO_PORT) {
        call(c.host_ctl(2), &req(line)).unwrap();
    }
    call(&r, &req(format!("replica add {ORIGIN} {ECHO_PORT} {h2}"))).unwrap();
    assert_eq!(echo_once(&c, "three\n"), "three\n");
    assert!(tunneled(&c) > before, "replica 2 is back in the table");
    assert_eq!(c.primary(ECHO_PORT), Some(0));
}

#[test]
fn garbage_and_forged_messages_are_counted_and_harmless() {
    let Some(c) = cluster(vec![(ECHO_PORT, ServiceSpec::Echo)]) else {
        return;
    };
    let h0 = c.topo.host_addrs[0];
    // Forged ack-channel datagrams and garbage UDP/IP, sent from a backup's namespace (the
    // path a compromised neighbour would use).
    let ns = c.topo.host_ns[1].clone();
    netns::run_in(&ns, move || {
        let u = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for i in 0..200u32 {
            let len = (i as usize * 7) % 200;
            let junk: Vec<u8> = (0..len).map(|j| (j as u32 ^ i) as u8).collect();
            let _ = u.send_to(&junk, SocketAddrV4::new(h0, 7407));
        }
        // Truncated and garbage IPv4 packets straight onto the path (IP_HDRINCL raw socket).
        // SAFETY: plain socket/sendto calls on a buffer we own; the fd is closed below.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
            assert!(fd >= 0, "raw socket");
            let dst = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(h0).to_be(),
                },
                sin_zero: [0; 8],
            };
            for i in 0..100u8 {
                let mut p = vec![
                    0x45u8,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    64,
                    [4, 6, 17, 1][i as usize % 4],
                ];
                p.extend([0, 0]);
                p.extend([198, 51, 100, 11]);
                p.extend(h0.octets());
                p.extend((0..i).map(|j| j.wrapping_mul(37)));
                libc::sendto(
                    fd,
                    p.as_ptr().cast(),
                    p.len(),
                    0,
                    (&dst as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                );
            }
            libc::close(fd);
        }
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let answer = call(c.host_ctl(0), &Request::Counters).unwrap();
    let dropped = counter(&answer, "ft.chan_malformed").unwrap_or(0)
        + counter(&answer, &format!("chan@{ORIGIN}:{ECHO_PORT}.forged")).unwrap_or(0)
        + counter(&answer, &format!("chan@{ORIGIN}:{ECHO_PORT}.malformed")).unwrap_or(0)
        + counter(&answer, "ft.tunnel_malformed").unwrap_or(0)
        + counter(&answer, "ip.ips_badlen").unwrap_or(0)
        + counter(&answer, "ip.ips_toosmall").unwrap_or(0)
        + counter(&answer, "ip.ips_tooshort").unwrap_or(0)
        + counter(&answer, "ip.ips_badhlen").unwrap_or(0)
        + counter(&answer, "ft.tunnel_from_stranger").unwrap_or(0)
        + counter(&answer, "tcp.tcps_rcvshort").unwrap_or(0);
    assert!(dropped >= 200, "forged and garbage input counted: {answer}");
    assert_eq!(c.primary(ECHO_PORT), Some(0), "no spurious takeover");
    // And the service is unaffected.
    let back = c
        .in_client(|| {
            let mut s = connect(ECHO_PORT);
            s.write_all(b"still here\n").unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut back = String::new();
            s.read_to_string(&mut back).unwrap();
            back
        })
        .unwrap();
    assert_eq!(back, "still here\n");
}

#[test]
fn an_echo_session_survives_two_primaries_killed() {
    let Some(mut c) = cluster(vec![(ECHO_PORT, ServiceSpec::Echo)]) else {
        return;
    };
    let (tx, rx) = mpsc::channel::<usize>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let ns = c.topo.client_ns.clone();
    let client = std::thread::spawn(move || -> Result<u64, String> {
        netns::enter(&ns).map_err(|e| e.to_string())?;
        let before = kernel_resets();
        let s = connect(ECHO_PORT);
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        for n in 0..60usize {
            let msg = format!("line {n} {}\n", "x".repeat(n * 50));
            w.write_all(msg.as_bytes()).map_err(|e| e.to_string())?;
            let mut line = String::new();
            r.read_line(&mut line)
                .map_err(|e| format!("line {n}: {e}"))?;
            if line != msg {
                return Err(format!("line {n} came back as {line:?}"));
            }
            if n == 20 || n == 40 {
                let _ = tx.send(n);
                go_rx.recv_timeout(TIMEOUT).map_err(|e| e.to_string())?;
            }
        }
        Ok(kernel_resets() - before)
    });
    let t = Instant::now();
    for _ in 0..2 {
        rx.recv_timeout(TIMEOUT)
            .expect("the client reached a kill point");
        let p = c.primary(ECHO_PORT).expect("a primary");
        c.kill_host(p);
        go_tx.send(()).unwrap();
    }
    let resets = client
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("echo: {e}\n{}", c.logs()));
    assert_eq!(resets, 0);
    assert_eq!(c.primary(ECHO_PORT), Some(2), "the last replica serves");
    assert!(t.elapsed() < TIMEOUT);
}

/// An unmodified server run inside every host namespace, ended by pid when dropped.
struct LocalServers(Vec<std::process::Child>);

impl Drop for LocalServers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn have(program: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{program} is missing under CI=true (scripts/setup.sh installs it)"
        );
        eprintln!("SKIP: {program} is not installed");
    }
    found
}

#[test]
fn relay_replicates_an_unmodified_redis_under_redis_benchmark_across_a_kill() {
    if !have("redis-server") || !have("redis-benchmark") {
        return;
    }
    const REDIS: u16 = 6379;
    let relay = ServiceSpec::Relay(std::net::SocketAddr::from(([127, 0, 0, 1], REDIS)));
    let Some(mut c) = cluster(vec![(REDIS, relay)]) else {
        return;
    };
    // One redis-server per replica, each on its host's own loopback: nothing shared.
    let mut servers = LocalServers(Vec::new());
    for ns in &c.topo.host_ns {
        let child = netns::command(ns, std::path::Path::new("redis-server"))
            .args(["--port", "6379", "--bind", "127.0.0.1", "--save", ""])
            .args([
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        servers.0.push(child);
    }
    for ns in c.topo.host_ns.clone() {
        let up = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(25));
            netns::run_in(&ns, || TcpStream::connect(("127.0.0.1", REDIS)).is_ok()).unwrap()
        });
        assert!(up, "redis-server in {ns} did not start");
    }
    let before = netns::run_in(&c.topo.client_ns, kernel_resets).unwrap();
    // Only replies that do not depend on how connections interleave: every replica's redis
    // sees the same commands per connection, not necessarily the same order across them.
    let bench = netns::command(&c.topo.client_ns, std::path::Path::new("redis-benchmark"))
        .args([
            "-h",
            &ORIGIN.to_string(),
            "-p",
            "6379",
            "-c",
            "4",
            "-n",
            "5000",
        ])
        .args(["-t", "ping,set,get", "-q"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("redis-benchmark");
    let mut bench = LocalServers(vec![bench]);
    std::thread::sleep(Duration::from_millis(300));
    let p = c.primary(REDIS).expect("a primary");
    c.kill_host(p);
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(s) = bench.0[0].try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "redis-benchmark did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    let child = bench.0.remove(0);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(status.success(), "{stdout}\n{stderr}\n{}", c.logs());
    assert!(
        !stdout.to_lowercase().contains("error") && !stderr.to_lowercase().contains("error"),
        "{stdout}\n{stderr}"
    );
    // PING comes inline and as a bulk command: four tests.
    assert_eq!(stdout.matches("requests per second").count(), 4, "{stdout}");
    let after = netns::run_in(&c.topo.client_ns, kernel_resets).unwrap();
    assert_eq!(after - before, 0, "the client's kernel saw a reset");
    assert_ne!(c.primary(REDIS), Some(p));
}

/// The paper's API from C: a program linked with libhydranet_syscalls.a configures a real
/// host-server daemon through hydranet.h.
#[test]
fn a_c_program_configures_a_real_host_server() {
    if !have("cc") {
        return;
    }
    let Some(c) = cluster(vec![(ECHO_PORT, ServiceSpec::Echo)]) else {
        return;
    };
    let syscalls = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../syscalls");
    // The static library: beside this test's build if cargo made it, else built now into the
    // same target folder.
    let profile = std::env::current_exe().unwrap();
    let profile = profile.parent().unwrap().parent().unwrap().to_path_buf();
    let lib = ["deps/libhydranet_syscalls.a", "libhydranet_syscalls.a"]
        .iter()
        .map(|p| profile.join(p))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            let ok = std::process::Command::new(env!("CARGO"))
                .args(["build", "-p", "hydranet-syscalls", "--lib", "--target-dir"])
                .arg(profile.parent().unwrap())
                .args(if profile.ends_with("release") {
                    vec!["--release"]
                } else {
                    vec![]
                })
                .status()
                .unwrap()
                .success();
            assert!(ok, "building libhydranet_syscalls.a");
            profile.join("libhydranet_syscalls.a")
        });
    let exe = profile.join(format!("hydranet-e2e-c-{}", std::process::id()));
    let cc = std::process::Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(syscalls.join("include"))
        .arg(syscalls.join("tests/c/vhost_client.c"))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&exe)
            .args(args)
            .env(hydranet_syscalls::CTL_ENV, c.host_ctl(0))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // A new virtual host with a plain port: both calls succeed and the daemon serves it.
    let (code, out) = run(&[
        "vhost",
        "192.0.2.81",
        "setportopt",
        "8080",
        "0",
        "0",
        "0",
        "0",
        "0",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let status = call(c.host_ctl(0), &Request::Status).unwrap();
    assert!(status.contains("192.0.2.81"), "{status}");
    // A fault-tolerant mode without a replica group: the daemon's ENOENT reaches errno.
    let (code, out) = run(&[
        "vhost",
        "192.0.2.81",
        "setportopt",
        "8080",
        "1",
        "2",
        "1000",
        "10",
        "30",
    ]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("ENOENT"), "{out}");
    let _ = std::fs::remove_file(&exe);
}

/// `--pcap`: every daemon's TUN device and the client's veth are captured in files that a
/// standard reader accepts, with the client's traffic in them.
#[test]
fn pcap_captures_every_interface_the_harness_owns() {
    if netns::capable().is_err() && std::env::var("CI").as_deref() != Ok("true") {
        eprintln!("SKIP: needs root, TUN and namespaces");
        return;
    }
    let dir = std::env::temp_dir().join(format!("hydranet-pcap-{}", std::process::id()));
    let spec = ClusterSpec {
        hosts: 2,
        services: vec![(ECHO_PORT, ServiceSpec::Echo)],
        detector: DetectorParams::default(),
        pcap: Some(dir.clone()),
        exe: env!("CARGO_BIN_EXE_hydranet").into(),
        placed: Vec::new(),
        sysctl: hydranet_platform_linux_tun::harness::host_sysctl_default(),
    };
    let c = Cluster::start(spec).unwrap_or_else(|e| panic!("cluster: {e}"));
    let tuns: Vec<String> = std::iter::once(c.topo.redirector_tun.clone())
        .chain(c.topo.host_tuns.iter().cloned())
        .collect();
    let back = c
        .in_client(|| {
            let mut s = connect(ECHO_PORT);
            s.write_all(b"captured\n").unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut back = String::new();
            s.read_to_string(&mut back).unwrap();
            back
        })
        .unwrap();
    assert_eq!(back, "captured\n");
    std::thread::sleep(Duration::from_millis(200));
    drop(c); // stops the daemons, which flush their captures
    let tcpdump = have("tcpdump");
    for name in tuns.iter().map(String::as_str).chain(["client"]) {
        let file = dir.join(format!("{name}.pcap"));
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // Classic pcap with microsecond timestamps: raw IP for the TUN devices (the
        // daemons' own writer), Ethernet for the veth (tcpdump's).
        assert_eq!(&bytes[..4], &0xa1b2_c3d4u32.to_le_bytes(), "{name}");
        assert!(bytes.len() > 24 + 16, "{name}: no packets");
        if tcpdump {
            let out = std::process::Command::new("tcpdump")
                .args(["-nn", "-r"])
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("192.0.2.80"), "{name}: {text}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `bench path`'s servers: the core's plain Stack and smoltcp, each as `hydranet tun-server`
/// on a TUN device, serve a Linux client a download (every byte checked) and an upload.
#[test]
fn tun_servers_of_both_stacks_serve_a_linux_client() {
    use hydranet_platform_linux_tun::topology::{TopologyGuard, TopologySpec};
    use hydranet_platform_linux_tun::tunserver::{ServerOptions, Spawned, StackKind};
    if let Err(why) = netns::capable() {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "{why}");
        eprintln!("SKIP: needs root, TUN and namespaces: {why}");
        return;
    }
    const SIZE: usize = 4 << 20;
    let prefix = TopologySpec::unique_prefix();
    let topo = TopologyGuard::up(&TopologySpec::new(&prefix, 2)).unwrap();
    let dir = std::env::temp_dir().join(format!("hydranet-{prefix}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut servers = Vec::new();
    for (i, stack) in [StackKind::Hydranet, StackKind::Smoltcp]
        .into_iter()
        .enumerate()
    {
        let o = ServerOptions {
            stack,
            dev: topo.host_tuns[i].clone(),
            addr: topo.host_addrs[i],
            download_port: BULK_PORT,
            upload_port: DIGEST_PORT,
            bytes: SIZE as u64,
            buf: 256 * 1024,
            max_secs: 120.0,
        };
        let log = dir.join(format!("{}.log", stack.name()));
        let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hydranet"));
        let s = Spawned::start(exe, &topo.host_ns[i], &o, &log, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
        servers.push((stack, topo.host_addrs[i], s));
    }
    for (stack, addr, _) in &servers {
        let addr = *addr;
        let r = netns::run_in(&topo.client_ns, move || -> Result<(), String> {
            let connect = |port| {
                let s = TcpStream::connect_timeout(&SocketAddrV4::new(addr, port).into(), TIMEOUT)
                    .map_err(|e| format!("connect {port}: {e}"))?;
                s.set_read_timeout(Some(TIMEOUT))
                    .map_err(|e| e.to_string())?;
                s.set_write_timeout(Some(TIMEOUT))
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(s)
            };
            let mut s = connect(BULK_PORT)?;
            let mut got = Vec::with_capacity(SIZE);
            s.read_to_end(&mut got)
                .map_err(|e| format!("download: {e}"))?;
            if got.len() != SIZE || got.iter().enumerate().any(|(i, b)| *b != bulk_byte(i)) {
                return Err(format!("download: {} bytes, or wrong ones", got.len()));
            }
            let mut s = connect(DIGEST_PORT)?;
            let data: Vec<u8> = (0..SIZE).map(bulk_byte).collect();
            s.write_all(&data).map_err(|e| format!("upload: {e}"))?;
            s.shutdown(std::net::Shutdown::Write)
                .map_err(|e| e.to_string())?;
            let mut rest = Vec::new();
            s.read_to_end(&mut rest)
                .map_err(|e| format!("upload close: {e}"))?;
            Ok(())
        })
        .unwrap();
        r.unwrap_or_else(|e| panic!("{}: {e}", stack.name()));
    }
    for (stack, _, mut s) in servers {
        s.stop();
        let log = s.log_text();
        assert!(
            log.contains("connections=2 completed=2 failed=0"),
            "{}: {log}",
            stack.name()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

//! Real network tests: namespaces, veths and TUN devices built by `topology::up` as root.
//!
//! Without the privileges they print `SKIP: ...` and pass, except under `CI=true`, where a
//! machine that cannot run them is a failure. Each test uses its own prefix (the pid plus a
//! letter), so they can run in parallel, in one process or many.

use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use embassy_net_driver::{Driver, HardwareAddress, LinkState, RxToken, TxToken};
use hydranet_platform_linux_tun::topology::{self, TopologyGuard, TopologySpec};
use hydranet_platform_linux_tun::tun::{wait_readable, Direction, Tun, TunDriver};
use hydranet_platform_linux_tun::{netns, pcap};

const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const WAIT: Duration = Duration::from_secs(3);

/// Whether the test may go on; a missing capability fails the test under `CI=true`.
fn ready(test: &str) -> bool {
    match netns::capable() {
        Ok(()) => true,
        Err(why) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test}: cannot run network tests under CI=true: {why}");
            }
            eprintln!("SKIP: {test}: {why}");
            false
        }
    }
}

fn prefix(tag: char) -> String {
    format!("{}{tag}", TopologySpec::unique_prefix())
}

fn up(tag: char, hosts: usize) -> TopologyGuard {
    TopologyGuard::up(&TopologySpec::new(&prefix(tag), hosts)).expect("topology up")
}

fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4/UDP packet with both checksums right (Linux drops UDP with a bad one).
fn udp_packet(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x4242u16.to_be_bytes());
    p[6] = 0x40; // don't fragment
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.ip().octets());
    p[16..20].copy_from_slice(&dst.ip().octets());
    let ip_sum = checksum(&p[..20], 0);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    p[20..22].copy_from_slice(&src.port().to_be_bytes());
    p[22..24].copy_from_slice(&dst.port().to_be_bytes());
    p[24..26].copy_from_slice(&(udp_len as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    let mut pseudo = 0u32;
    for w in [&p[12..14], &p[14..16], &p[16..18], &p[18..20]] {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    pseudo += 17 + udp_len as u32;
    let mut udp_sum = checksum(&p[20..], pseudo);
    if udp_sum == 0 {
        udp_sum = 0xffff;
    }
    p[26..28].copy_from_slice(&udp_sum.to_be_bytes());
    p
}

/// The UDP datagram in an IPv4 packet: (source, destination, payload).
fn parse_udp(p: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4, Vec<u8>)> {
    if p.len() < 28 || p[0] >> 4 != 4 || p[9] != 17 {
        return None;
    }
    let ihl = usize::from(p[0] & 0xf) * 4;
    let ip = |at: usize| Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3]);
    let port = |at: usize| u16::from_be_bytes([p[at], p[at + 1]]);
    let udp = p.get(ihl..)?;
    let len = usize::from(port(ihl + 4));
    Some((
        SocketAddrV4::new(ip(12), port(ihl)),
        SocketAddrV4::new(ip(16), port(ihl + 2)),
        udp.get(8..len)?.to_vec(),
    ))
}

/// The first UDP packet to `dst` that arrives on `tun` within [`WAIT`]; other packets are
/// skipped and shown if none matches.
fn recv_udp_to(tun: &Tun, dst: Ipv4Addr) -> (SocketAddrV4, SocketAddrV4, Vec<u8>) {
    let deadline = Instant::now() + WAIT;
    let mut others = Vec::new();
    let mut buf = vec![0u8; 65535];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        wait_readable(&[tun.as_raw_fd()], Some(left)).unwrap();
        while let Some(n) = tun.recv(&mut buf).unwrap() {
            match parse_udp(&buf[..n]) {
                Some(d) if *d.1.ip() == dst => return d,
                _ => others.push(buf[..n.min(24)].to_vec()),
            }
        }
    }
    panic!(
        "no UDP packet to {dst} on {} within {WAIT:?}; others: {others:02x?}",
        tun.name()
    );
}

/// A UDP socket bound in namespace `ns`.
fn udp_in(ns: &str, addr: SocketAddrV4) -> UdpSocket {
    let s = netns::run_in(ns, move || UdpSocket::bind(addr))
        .unwrap()
        .unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

fn tun_in(ns: &str, name: &str) -> Tun {
    let name = name.to_string();
    netns::run_in(ns, move || Tun::open(&name))
        .unwrap()
        .unwrap()
}

fn sysctl(ns: &str, key: &str) -> String {
    let path = format!("/proc/sys/net/{key}");
    netns::run_in(ns, move || std::fs::read_to_string(&path))
        .unwrap()
        .unwrap_or_else(|e| panic!("{ns} {key}: {e}"))
        .trim()
        .to_string()
}

fn routes(ns: &str) -> String {
    netns::ip_output(Some(ns), &["-4", "route", "show"]).unwrap()
}

fn assert_has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l.trim().starts_with(line)),
        "no line starting {line:?} in:\n{text}"
    );
}

fn root_links() -> String {
    netns::ip_output(None, &["-o", "link", "show"]).unwrap()
}

#[test]
fn topology_up_and_down() {
    if !ready("topology_up_and_down") {
        return;
    }
    let p = prefix('a');
    let links_before = root_links();
    let topo = TopologyGuard::up(&TopologySpec::new(&p, 3)).unwrap();
    let expect: Vec<String> = ["c", "h0", "h1", "h2", "r"]
        .iter()
        .map(|s| format!("{p}{s}"))
        .collect();
    assert_eq!(topology::namespaces_of(&p).unwrap(), expect);
    let listed = netns::ip_output(None, &["netns", "list"]).unwrap();
    for ns in &expect {
        assert!(listed
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ns)));
    }
    // Nothing of ours in the root namespace.
    assert_eq!(root_links(), links_before);
    assert!(!root_links().contains(&p));

    let c = topo.client_ns.as_str();
    let r = topo.redirector_ns.as_str();
    assert_has(&routes(c), &format!("default via 203.0.113.1 dev {p}c0"));
    let a = netns::ip_output(
        Some(c),
        &["-4", "-o", "addr", "show", "dev", &topo.client_if()],
    )
    .unwrap();
    assert!(a.contains("203.0.113.10/24"), "{a}");

    let rr = routes(r);
    assert_has(&rr, &format!("192.0.2.0/24 dev {p}rt"));
    assert_has(&rr, &format!("198.51.100.1 dev {p}rt"));
    assert_has(&rr, &format!("203.0.113.0/24 dev {p}rc"));
    for i in 0..3 {
        let h = topo.host_ns[i].as_str();
        let (ra, ha) = (64 + 4 * i + 1, 64 + 4 * i + 2);
        assert_has(
            &rr,
            &format!("198.51.100.{} via 198.51.100.{ha} dev {p}r{i}", 10 + i),
        );
        assert_has(&rr, &format!("198.51.100.{}/30 dev {p}r{i}", 64 + 4 * i));
        let hr = routes(h);
        assert_has(&hr, &format!("default via 198.51.100.{ra} dev {p}h{i}"));
        assert_has(&hr, &format!("198.51.100.{} dev {p}t{i}", 10 + i));
        assert!(!hr.contains("192.0.2."), "no origin route in a host:\n{hr}");
        assert_eq!(sysctl(h, "ipv4/ip_forward"), "1");
        assert_eq!(sysctl(h, &format!("ipv4/conf/{p}t{i}/rp_filter")), "0");
        assert_eq!(sysctl(h, &format!("ipv4/conf/{p}h{i}/rp_filter")), "0");
        let link =
            netns::ip_output(Some(h), &["-o", "link", "show", "dev", &topo.host_tuns[i]]).unwrap();
        assert!(link.contains("mtu 1500"), "{link}");
    }
    for ns in topo.namespaces() {
        assert_eq!(sysctl(ns, "ipv4/conf/all/rp_filter"), "0", "{ns}");
        assert_eq!(sysctl(ns, "ipv4/conf/default/rp_filter"), "0", "{ns}");
        if std::path::Path::new("/proc/sys/net/ipv6").exists() {
            assert_eq!(sysctl(ns, "ipv6/conf/all/disable_ipv6"), "1", "{ns}");
            assert_eq!(sysctl(ns, "ipv6/conf/default/disable_ipv6"), "1", "{ns}");
        }
        let v6 = netns::ip_output(Some(ns), &["-6", "addr", "show"]).unwrap();
        assert!(v6.trim().is_empty(), "{ns} has IPv6 addresses:\n{v6}");
    }
    assert_eq!(sysctl(r, "ipv4/ip_forward"), "1");
    assert_eq!(sysctl(r, &format!("ipv4/conf/{p}rt/rp_filter")), "0");

    // A link fails and comes back.
    let h0 = topo.host_ns[0].clone();
    let state =
        |ifname: &str| netns::ip_output(Some(&h0), &["-o", "link", "show", "dev", ifname]).unwrap();
    topology::set_link(&h0, &topo.host_if(0), false).unwrap();
    assert!(
        !state(&topo.host_if(0)).contains(",UP"),
        "{}",
        state(&topo.host_if(0))
    );
    assert!(!topology::wait_running(&h0, &topo.host_if(0), Duration::from_secs(1)).unwrap());
    topology::set_link(&h0, &topo.host_if(0), true).unwrap();
    assert!(topology::wait_running(&h0, &topo.host_if(0), WAIT).unwrap());
    assert!(state(&topo.host_if(0)).contains(",UP"));

    // A second `up` of a live prefix is refused and leaves it alone.
    let again = topology::up(&TopologySpec::new(&p, 1)).unwrap_err();
    assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(topology::namespaces_of(&p).unwrap().len(), 5);

    drop(topo);
    assert!(topology::namespaces_of(&p).unwrap().is_empty());
    topology::down(&p).unwrap();
    assert!(topology::namespaces_of(&p).unwrap().is_empty());
    assert_eq!(root_links(), links_before);

    // The guard cleans up while a panic unwinds.
    let pg = prefix('g');
    let pg2 = pg.clone();
    let r = std::panic::catch_unwind(move || {
        let _topo = TopologyGuard::up(&TopologySpec::new(&pg2, 1)).unwrap();
        assert_eq!(topology::namespaces_of(&pg2).unwrap().len(), 3);
        panic!("deliberate panic with a topology up");
    });
    assert!(r.is_err());
    assert!(topology::namespaces_of(&pg).unwrap().is_empty());
}

#[test]
fn host_tun_exchanges_udp_with_client() {
    if !ready("host_tun_exchanges_udp_with_client") {
        return;
    }
    let topo = up('b', 1);
    let tun = tun_in(&topo.host_ns[0], &topo.host_tuns[0]);
    assert_eq!(tun.mtu(), 1500);
    assert_eq!(tun.name(), topo.host_tuns[0]);
    assert!(tun.writable());
    let core = SocketAddrV4::new(topo.host_addrs[0], 7000);
    let client = udp_in(&topo.client_ns, SocketAddrV4::new(CLIENT, 0));
    client.send_to(b"ping", core).unwrap();

    let (src, dst, payload) = recv_udp_to(&tun, *core.ip());
    assert_eq!(dst, core);
    assert_eq!(*src.ip(), CLIENT);
    assert_eq!(payload, b"ping");

    assert!(tun.send(&udp_packet(core, src, b"pong")).unwrap());
    let mut buf = [0u8; 64];
    let (n, from) = client.recv_from(&mut buf).expect("reply on the client");
    assert_eq!(&buf[..n], b"pong");
    assert_eq!(from, core.into());
    // Nothing else is waiting: recv says so instead of blocking.
    let mut big = vec![0u8; 2048];
    assert!(tun.recv(&mut big).unwrap().is_none());
}

#[test]
fn redirector_tun_gets_origin_traffic() {
    if !ready("redirector_tun_gets_origin_traffic") {
        return;
    }
    let topo = up('c', 1);
    let rtun = tun_in(&topo.redirector_ns, &topo.redirector_tun);
    let htun = tun_in(&topo.host_ns[0], &topo.host_tuns[0]);
    let client = udp_in(&topo.client_ns, SocketAddrV4::new(CLIENT, 0));
    let service = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 80), 80);
    client.send_to(b"GET", service).unwrap();
    let (src, dst, payload) = recv_udp_to(&rtun, *service.ip());
    assert_eq!(
        (*src.ip(), dst, payload.as_slice()),
        (CLIENT, service, &b"GET"[..])
    );

    // A virtual host's reply leaves a host core with the service's address as source and is
    // forwarded by Linux to the client: host -> redirector -> client, against the reverse path.
    assert!(htun.send(&udp_packet(service, src, b"from host")).unwrap());
    let mut buf = [0u8; 64];
    let (n, from) = client
        .recv_from(&mut buf)
        .expect("virtual host reply via host 0");
    assert_eq!((&buf[..n], from), (&b"from host"[..], service.into()));

    // And one the redirector itself answers.
    assert!(rtun
        .send(&udp_packet(service, src, b"from redirector"))
        .unwrap());
    let (n, from) = client
        .recv_from(&mut buf)
        .expect("reply via the redirector TUN");
    assert_eq!((&buf[..n], from), (&b"from redirector"[..], service.into()));

    // Tunnel traffic: the redirector's address reaches a host core and back.
    let tunnel_src = SocketAddrV4::new(topo.redirector_addr, 5000);
    let core = SocketAddrV4::new(topo.host_addrs[0], 5000);
    assert!(rtun.send(&udp_packet(tunnel_src, core, b"tunnel")).unwrap());
    let (s, d, pl) = recv_udp_to(&htun, topo.host_addrs[0]);
    assert_eq!((s, d, pl.as_slice()), (tunnel_src, core, &b"tunnel"[..]));
    assert!(htun.send(&udp_packet(core, tunnel_src, b"back")).unwrap());
    let (s, d, pl) = recv_udp_to(&rtun, topo.redirector_addr);
    assert_eq!((s, d, pl.as_slice()), (core, tunnel_src, &b"back"[..]));
}

#[test]
fn tun_driver_tokens() {
    if !ready("tun_driver_tokens") {
        return;
    }
    let topo = up('d', 1);
    let mut dev = TunDriver::new(tun_in(&topo.host_ns[0], &topo.host_tuns[0]));
    let seen: Arc<Mutex<Vec<(Direction, usize)>>> = Arc::default();
    let tap_seen = Arc::clone(&seen);
    dev.set_tap(Some(Box::new(move |dir, pkt: &[u8]| {
        tap_seen.lock().unwrap().push((dir, pkt.len()))
    })));
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(dev.hardware_address(), HardwareAddress::Ip);
    assert_eq!(dev.capabilities().max_transmission_unit, 1500);
    assert!(dev.link_state(&mut cx) == LinkState::Up);
    assert!(dev.receive(&mut cx).is_none(), "nothing sent yet");

    let core = SocketAddrV4::new(topo.host_addrs[0], 9000);
    let client = udp_in(&topo.client_ns, SocketAddrV4::new(CLIENT, 0));
    client.send_to(b"hello driver", core).unwrap();

    let deadline = Instant::now() + WAIT;
    let request = loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("no packet through the driver");
        wait_readable(&[dev.tun().as_raw_fd()], Some(left)).unwrap();
        let Some((rx, tx)) = dev.receive(&mut cx) else {
            continue;
        };
        let parsed = rx.consume(|pkt| parse_udp(pkt));
        if let Some((src, dst, payload)) = parsed.filter(|d| d.1 == core) {
            // Answer with the transmit token that came with the packet.
            let reply = udp_packet(dst, src, b"hello client");
            tx.consume(reply.len(), |buf| buf.copy_from_slice(&reply));
            break (src, payload);
        }
    };
    assert_eq!(request.1, b"hello driver");
    let mut buf = [0u8; 64];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello client");

    // A bare transmit token.
    let reply = udp_packet(core, request.0, b"again");
    let tx = dev.transmit(&mut cx).expect("a TUN is writable");
    tx.consume(reply.len(), |buf| buf.copy_from_slice(&reply));
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"again");

    let st = dev.stats();
    assert!(st.rx_packets >= 1, "{st:?}");
    assert_eq!(st.tx_packets, 2, "{st:?}");
    assert_eq!(st.tx_bytes, (28 + 12 + 28 + 5) as u64, "{st:?}");
    assert_eq!((st.tx_errors, st.rx_errors), (0, 0), "{st:?}");
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.iter().filter(|(d, _)| *d == Direction::In).count() as u64,
        st.rx_packets
    );
    let out: Vec<usize> = seen
        .iter()
        .filter(|(d, _)| *d == Direction::Out)
        .map(|(_, l)| *l)
        .collect();
    assert_eq!(out, [40, 33]);
}

#[test]
fn tcp_counters_of_a_fresh_namespace() {
    if !ready("tcp_counters_of_a_fresh_namespace") {
        return;
    }
    let topo = up('e', 1);
    let (before, after) = netns::run_in(&topo.client_ns, || {
        let before = netns::tcp_counters().unwrap();
        // Nobody listens: the namespace's own stack answers the SYN with a RST.
        let r = TcpStream::connect_timeout(&SocketAddrV4::new(CLIENT, 9).into(), WAIT);
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);
        (before, netns::tcp_counters().unwrap())
    })
    .unwrap();
    assert_eq!(before.get("Tcp.EstabResets"), Some(&0), "{before:?}");
    assert_eq!(before.get("Tcp.OutRsts"), Some(&0), "{before:?}");
    assert_eq!(before.get("Tcp.AttemptFails"), Some(&0), "{before:?}");
    assert_eq!(before.get("TcpExt.TCPAbortOnData"), Some(&0), "{before:?}");
    assert_eq!(after["Tcp.AttemptFails"], 1, "{after:?}");
    assert_eq!(after["Tcp.OutRsts"], 1, "{after:?}");
}

#[test]
fn too_long_prefix_is_rejected() {
    // Needs no privileges: the spec is checked before anything is created.
    let long = "hn0123456789ab";
    assert_eq!(long.len(), topology::MAX_PREFIX_LEN + 1);
    let e = topology::up(&TopologySpec::new(long, 1)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("15"), "{e}");
    assert!(topology::down(long).is_err());
    let leftovers: Vec<String> = std::fs::read_dir(netns::NETNS_RUN_DIR)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(long))
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let e = topology::up(&TopologySpec::new("hn1", 9)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    // The longest prefix allowed still fits every interface name.
    let ok = topology::plan(&TopologySpec::new(&long[..topology::MAX_PREFIX_LEN], 8)).unwrap();
    assert!(ok.host_tuns.iter().all(|n| n.len() <= 15));
}

/// Stops a child this test started (by its pid) and reaps it, also when the test fails.
struct ChildGuard(Option<std::process::Child>);

impl ChildGuard {
    /// SIGINT, which makes tcpdump finish its file, then wait.
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.0.take().expect("stopped once");
        // SAFETY: kill(2) on the pid of a child we have not reaped yet, so it is still ours.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        child.wait().unwrap()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn capture_on_a_veth() {
    if !ready("capture_on_a_veth") {
        return;
    }
    let Some(tcpdump) = pcap::find_program("tcpdump") else {
        eprintln!("SKIP: capture_on_a_veth: tcpdump is not installed");
        return;
    };
    let topo = up('h', 1);
    let dir = std::env::temp_dir().join(format!("{}-cap", topo.spec.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    struct RmDir(std::path::PathBuf);
    impl Drop for RmDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _rm = RmDir(dir.clone());
    let file = dir.join("client.pcap");
    let mut child = ChildGuard(Some(
        pcap::capture_iface(&topo.client_ns, &topo.client_if(), &file).unwrap(),
    ));
    let tun = tun_in(&topo.host_ns[0], &topo.host_tuns[0]);
    let client = udp_in(&topo.client_ns, SocketAddrV4::new(CLIENT, 0));
    client
        .send_to(b"captured", SocketAddrV4::new(topo.host_addrs[0], 4444))
        .unwrap();
    recv_udp_to(&tun, topo.host_addrs[0]);
    // tcpdump writes each packet as it handles it, but may not have handled the last one yet
    // when the test gets here; a capture stopped too early misses it.
    let read = || {
        let out = std::process::Command::new(&tcpdump)
            .args(["-n", "-r"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let expected = "> 198.51.100.10.4444: UDP, length 8";
    let deadline = Instant::now() + WAIT;
    while !read().contains(expected) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(child.stop().success());
    let text = read();
    assert!(
        text.contains(&format!("IP {CLIENT}.")) && text.contains(expected),
        "{text}"
    );

    let e = pcap::capture_iface(&topo.client_ns, "nosuchif0", &dir.join("x.pcap")).unwrap_err();
    assert!(e.to_string().contains("nosuchif0"), "{e}");
}

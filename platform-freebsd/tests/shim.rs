//! The module against the fake kernel, entry point by entry point: load, the three system
//! calls' argument checks, mbuf chains through the pfil hook, the callout, relays, unload.

mod fake;

use std::net::Ipv4Addr;

use fake::net::{host_addr, Net, KEY, ORIGIN, PARAMS_AT, PORT, REDIR};
use fake::{ctl, ip_be, load, params_bytes, pfil, segments, FakeKernel, FakeModule, PID};
use hydranet_core::ft::host::{Role, ACKCHAN_PORT};
use hydranet_core::ft::redirector::Redirector;
use hydranet_core::stack::Stack;
use hydranet_core::wire::{ipv4::Ipv4Header, udp};
use hydranet_core::{Errno, Instant};
use hydranet_platform_freebsd::{Caller, Chain, Level, Privilege, Verdict};

const ME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const CALLER: Caller = Caller { pid: PID };

fn privileged() -> (FakeModule, FakeKernel) {
    let (m, k) = load(ME);
    k.st().privileged.insert(PID);
    (m, k)
}

// ---------------------------------------------------------------------- load

#[test]
fn load_needs_a_unicast_host_address_and_logs() {
    let (_, k) = load(ME);
    assert!(k
        .st()
        .logs
        .iter()
        .any(|(l, s)| *l == Level::Notice && s.contains("198.51.100.10")));
    let storage = Box::leak(Box::default());
    let r = hydranet_platform_freebsd::Module::load(
        FakeKernel::new(),
        Stack::new_alloc([1; 16]),
        Ipv4Addr::UNSPECIFIED,
        storage,
    );
    assert_eq!(r.err(), Some(Errno::EINVAL));
}

#[test]
fn an_idle_module_passes_everything_and_arms_nothing() {
    let (mut m, k) = load(ME);
    let pkt = udp_packet(Ipv4Addr::new(198, 51, 100, 11), ME, ACKCHAN_PORT, b"x");
    assert_eq!(pfil(&mut m, &[pkt]), Verdict::Pass, "no group: not ours");
    assert_eq!(k.st().callout, None);
    assert!(k.st().out.is_empty());
    assert_eq!(m.quiesce(), Ok(()));
}

// ---------------------------------------------------------------------- v_host

#[test]
fn v_host_checks_privilege_then_address() {
    let (mut m, k) = load(ME);
    assert_eq!(m.sys_v_host(&CALLER, ip_be(ORIGIN)), Err(Errno::EPERM));
    assert_eq!(k.st().checked, vec![(PID, Privilege::VirtualHost)]);
    assert!(m.host.vhosts().is_empty());
    k.st().privileged.insert(PID);
    for bad in [
        0,
        u64::from(u32::MAX),
        ip_be(Ipv4Addr::new(224, 0, 0, 1)),
        1 << 32,
        u64::MAX,
    ] {
        assert_eq!(m.sys_v_host(&CALLER, bad), Err(Errno::EINVAL), "{bad:#x}");
    }
    assert_eq!(
        m.sys_v_host(&CALLER, ip_be(ME)),
        Err(Errno::EINVAL),
        "own address"
    );
    assert_eq!(m.sys_v_host(&CALLER, ip_be(ORIGIN)), Ok(()));
    assert_eq!(m.vhost_of(PID), Some(ORIGIN));
    // A second process joins the same virtual host.
    k.st().privileged.insert(PID + 1);
    assert_eq!(
        m.sys_v_host(&Caller { pid: PID + 1 }, ip_be(ORIGIN)),
        Ok(())
    );
    assert_eq!(m.host.vhosts(), &[ORIGIN]);
}

#[test]
fn children_belong_to_the_virtual_host_until_they_exit() {
    let (mut m, _k) = privileged();
    m.sys_v_host(&CALLER, ip_be(ORIGIN)).unwrap();
    m.proc_fork(PID, 200);
    m.proc_fork(200, 300);
    m.proc_fork(7, 400);
    assert_eq!(m.vhost_of(300), Some(ORIGIN));
    assert_eq!(m.vhost_of(400), None);
    m.proc_exit(200);
    assert_eq!(m.vhost_of(200), None);
    assert_eq!(m.vhost_of(300), Some(ORIGIN));
}

// ---------------------------------------------------------------------- setportopt

#[test]
fn setportopt_argument_errors() {
    let (mut m, k) = load(ME);
    k.st().map(PARAMS_AT, &params_bytes(2, 1000, 10, 30));
    assert_eq!(
        m.sys_setportopt(&CALLER, 80, 1, PARAMS_AT),
        Err(Errno::EPERM)
    );
    k.st().privileged.insert(PID);
    let e = |m: &mut FakeModule, port, mode, p| m.sys_setportopt(&CALLER, port, mode, p);
    assert_eq!(e(&mut m, 0, 1, PARAMS_AT), Err(Errno::EINVAL), "port 0");
    assert_eq!(
        e(&mut m, 65536, 1, PARAMS_AT),
        Err(Errno::EINVAL),
        "port > 65535"
    );
    assert_eq!(e(&mut m, 80, 3, PARAMS_AT), Err(Errno::EINVAL), "mode");
    assert_eq!(
        e(&mut m, 80, 1, 0),
        Err(Errno::EINVAL),
        "NULL params, primary"
    );
    assert_eq!(
        e(&mut m, 80, 1, 0x1000),
        Err(Errno::EFAULT),
        "unmapped params"
    );
    assert_eq!(
        e(&mut m, 80, 1, PARAMS_AT + 8),
        Err(Errno::EFAULT),
        "params past the end"
    );
    k.st().map(0x6100_0000, &params_bytes(2, 1000, 30, 10));
    assert_eq!(
        e(&mut m, 80, 2, 0x6100_0000),
        Err(Errno::EINVAL),
        "timeout < interval"
    );
    // A bad detector does not matter to a normal port, which has none.
    assert_eq!(
        e(&mut m, 80, 0, 0x6100_0000),
        Err(Errno::EADDRNOTAVAIL),
        "no v_host yet"
    );
    m.sys_v_host(&CALLER, ip_be(ORIGIN)).unwrap();
    assert_eq!(
        e(&mut m, 80, 1, PARAMS_AT),
        Err(Errno::ENOENT),
        "no group yet"
    );
    assert_eq!(e(&mut m, 80, 0, 0), Ok(()), "normal, NULL params");
    // Another process without v_host has no virtual host.
    k.st().privileged.insert(555);
    assert_eq!(
        m.sys_setportopt(&Caller { pid: 555 }, 80, 0, 0),
        Err(Errno::EADDRNOTAVAIL)
    );
}

#[test]
fn setportopt_after_group_sets_the_role_and_serves_the_port() {
    let (mut m, k) = privileged();
    k.st().map(PARAMS_AT, &params_bytes(2, 1000, 10, 30));
    m.sys_v_host(&CALLER, ip_be(ORIGIN)).unwrap();
    let line = format!(
        "group {ORIGIN} {PORT} 7 1 {KEY} 0@{},1@{ME}",
        Ipv4Addr::new(198, 51, 100, 11)
    );
    assert_eq!(ctl(&mut m, &k, PID, &line).unwrap(), "ok");
    assert_eq!(
        m.sys_setportopt(&CALLER, 80, 1, PARAMS_AT),
        Err(Errno::EINVAL),
        "rank 1 cannot be the primary"
    );
    assert_eq!(m.sys_setportopt(&CALLER, 80, 2, PARAMS_AT), Ok(()));
    assert_eq!(m.host.role(ORIGIN, PORT), Some(Role::Backup));
    let status = ctl(&mut m, &k, PID, "status").unwrap();
    assert!(status.starts_with("ok module=hydranet addr=198.51.100.10 vhosts=192.0.2.80"));
    assert!(status.contains("role@192.0.2.80:80=backup"), "{status}");
    assert!(
        status.contains("services=192.0.2.80:80=relay:127.0.0.1:80"),
        "{status}"
    );
    // Heartbeats are on: the callout is armed.
    assert!(k.st().callout.is_some());
}

// ---------------------------------------------------------------------- hydranet_ctl

#[test]
fn ctl_argument_errors() {
    let (mut m, k) = load(ME);
    let caller = CALLER;
    let mut scratch = vec![0u8; 2 * 4096 + 1];
    k.st().map(0x1000, b"status");
    k.st().map(0x2000, &[0; 4096]);
    let mut call = |m: &mut FakeModule, req, len, resp, rlen| {
        m.sys_ctl(&caller, req, len, resp, rlen, &mut scratch)
    };
    assert_eq!(call(&mut m, 0x1000, 6, 0x2000, 4096), Err(Errno::EPERM));
    k.st().privileged.insert(PID);
    assert_eq!(
        call(&mut m, 0x1000, 0, 0x2000, 4096),
        Err(Errno::EINVAL),
        "empty"
    );
    assert_eq!(
        call(&mut m, 0x1000, 4097, 0x2000, 4096),
        Err(Errno::EINVAL),
        "too long"
    );
    assert_eq!(
        call(&mut m, 0x1000, 6, 0x2000, 100),
        Err(Errno::EINVAL),
        "small answer"
    );
    assert_eq!(
        call(&mut m, 0x1000, 6, 0, 4096),
        Err(Errno::EINVAL),
        "NULL answer"
    );
    assert_eq!(
        call(&mut m, 0, 6, 0x2000, 4096),
        Err(Errno::EFAULT),
        "NULL request"
    );
    assert_eq!(
        call(&mut m, 0x1000, 7, 0x2000, 4096),
        Err(Errno::EFAULT),
        "past the end"
    );
    assert_eq!(
        call(&mut m, 0x9000, 6, 0x2000, 4096),
        Err(Errno::EFAULT),
        "unmapped"
    );
    let end = 0x2000 + 4096 - 8;
    assert_eq!(
        call(&mut m, 0x1000, 6, end, 4096),
        Err(Errno::EFAULT),
        "answer past the end"
    );
    let n = call(&mut m, 0x1000, 6, 0x2000, 4096).unwrap();
    let out = k.st().read(0x2000, n).unwrap();
    assert!(out.starts_with(b"ok module=hydranet"));
}

#[test]
fn ctl_answers_like_the_host_daemon() {
    let (mut m, k) = privileged();
    let c = |m: &mut FakeModule, l: &str| ctl(m, &k, PID, l).unwrap();
    assert_eq!(c(&mut m, "v_host 192.0.2.80\n"), "ok");
    assert_eq!(c(&mut m, "v_host 192.0.2.80"), "ok", "again: not an error");
    assert_eq!(c(&mut m, "redirector 198.51.100.1"), "ok");
    assert!(c(&mut m, "v_host 0.0.0.0").starts_with("err EINVAL"));
    assert!(c(&mut m, "v_host 192.0.2.080").starts_with("err EINVAL"));
    assert!(c(&mut m, "setportopt 192.0.2.80 80 primary 2 1000 30 10").starts_with("err EINVAL"));
    assert!(c(&mut m, "setportopt 192.0.2.80 +80 normal 0 0 0 0").starts_with("err EINVAL"));
    assert!(c(&mut m, "setportopt 192.0.2.81 80 normal 0 0 0 0").starts_with("err EADDRNOTAVAIL"));
    assert!(c(&mut m, "setportopt 192.0.2.80 80 primary 2 1000 10 30").starts_with("err ENOENT"));
    assert_eq!(c(&mut m, "setportopt 192.0.2.80 80 normal 0 0 0 0"), "ok");
    assert_eq!(
        c(&mut m, "serve 192.0.2.80 6379 relay:127.0.0.1:16379"),
        "ok"
    );
    assert!(c(&mut m, "serve 192.0.2.80 81 echo").starts_with("err ENOSYS"));
    assert!(c(&mut m, "route add 192.0.2.80 80 198.51.100.10").starts_with("err ENOSYS"));
    assert!(c(&mut m, "shutdown").starts_with("err ENOSYS"));
    assert!(c(&mut m, "frobnicate").starts_with("err EINVAL"));
    assert!(c(&mut m, "status\nstatus").starts_with("err EINVAL"));
    let line = format!("group {ORIGIN} {PORT} 7 0 {KEY} 0@{ME},0@198.51.100.11");
    assert!(c(&mut m, &line).starts_with("err EINVAL"), "rank twice");
    let line = format!("group {ORIGIN} {PORT} 7 0 {KEY} 0@{ME},1@198.51.100.11");
    assert_eq!(c(&mut m, &line), "ok");
    assert!(c(&mut m, &line).starts_with("err EEXIST"));
    let status = c(&mut m, "status");
    assert!(
        status.contains("192.0.2.80:6379=relay:127.0.0.1:16379"),
        "{status}"
    );
    let counters = c(&mut m, "counters");
    assert!(
        counters.contains(" mod.pfil_pass=0 ") && counters.contains(" tcp."),
        "{counters}"
    );
    assert!(counters.len() < 4096 && !counters.contains('\n'));
}

// ---------------------------------------------------------------------- mbufs and pfil

fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let n = udp::emit_ipv4_udp(src, dst, 40000, dport, data, 64, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// A client's SYN to ORIGIN:PORT, tunnelled by a redirector at `from`.
fn tunnelled_syn(from: Ipv4Addr) -> Vec<u8> {
    let mut client = Stack::new_alloc([3; 16]);
    client.add_address(Ipv4Addr::new(203, 0, 113, 10)).unwrap();
    let h = client.socket().unwrap();
    let now = Instant::from_micros(1_000_000);
    let _ = client.connect(now, h, std::net::SocketAddrV4::new(ORIGIN, PORT));
    let mut syn = vec![0u8; 2048];
    let n = client.poll_transmit(now, &mut syn).unwrap();
    let mut r = Redirector::new(from, 1500);
    r.add_route(ORIGIN, PORT, &[ME]).unwrap();
    let mut scratch = vec![0u8; 4096];
    let mut out = Vec::new();
    r.route(&syn[..n], &mut scratch, |_, b| out = b.to_vec());
    assert!(!out.is_empty());
    out
}

fn serving() -> (FakeModule, FakeKernel) {
    let (mut m, k) = privileged();
    assert_eq!(
        ctl(&mut m, &k, PID, &format!("redirector {REDIR}")).unwrap(),
        "ok"
    );
    m.sys_v_host(&CALLER, ip_be(ORIGIN)).unwrap();
    m.sys_setportopt(&CALLER, 80, 0, 0).unwrap();
    (m, k)
}

#[test]
fn chains_are_read_across_segments() {
    let pkt: Vec<u8> = (0..100u8).collect();
    for cuts in [&[][..], &[1], &[3, 14, 21, 99], &[50, 50, 50]] {
        let segs = segments(&pkt, cuts);
        let views: Vec<&[u8]> = segs.iter().map(|s| s.as_slice()).collect();
        let c = Chain::new(&views);
        assert_eq!(c.len(), 100);
        let mut h = [0u8; 30];
        assert!(c.copy_out(10, &mut h));
        assert_eq!(h[..], pkt[10..40]);
        assert!(!c.copy_out(90, &mut h), "past the end");
        let mut buf = [0u8; 100];
        assert_eq!(c.contiguous(&mut buf).unwrap(), &pkt[..]);
        let mut small = [0u8; 99];
        if segs.len() > 1 {
            assert!(c.contiguous(&mut small).is_none());
        }
    }
    let empty: [&[u8]; 2] = [&[], &[]];
    assert!(Chain::new(&empty).is_empty());
}

#[test]
fn tunnelled_syn_with_split_headers_is_consumed_and_answered() {
    let syn = tunnelled_syn(REDIR);
    // Every split of the outer and inner headers, including a 1-byte first mbuf.
    for cut in 1..48 {
        let (mut m, k) = serving();
        let segs = segments(&syn, &[cut, cut + 3]);
        assert_eq!(pfil(&mut m, &segs), Verdict::Consumed, "cut at {cut}");
        assert_eq!(m.host.stats.tunneled_in, 1);
        // The SYN-ACK leaves through ip_output, from the virtual host, to the client.
        let out = k.st().out.pop_front().expect("SYN-ACK");
        let (ip, seg) = Ipv4Header::parse(&out).unwrap();
        assert_eq!((ip.src, ip.dst), (ORIGIN, Ipv4Addr::new(203, 0, 113, 10)));
        assert_eq!(seg[13] & 0x12, 0x12, "SYN|ACK");
        assert!(
            k.st().callout.is_some(),
            "the SYN-ACK's retransmission timer"
        );
    }
}

#[test]
fn pfil_verdicts() {
    let (mut m, _k) = serving();
    let stranger = Ipv4Addr::new(198, 51, 100, 99);
    // A tunnel from a host that is not an accepted redirector: someone else's (gif, say).
    assert_eq!(pfil(&mut m, &[tunnelled_syn(stranger)]), Verdict::Pass);
    // A garbled tunnel from the redirector: ours, and dropped.
    let mut bad = tunnelled_syn(REDIR);
    bad[20] = 0x60; // the inner header claims IPv6
    assert_eq!(pfil(&mut m, &segments(&bad, &[5])), Verdict::Dropped);
    // Traffic that is not the module's.
    let other = udp_packet(stranger, ME, 53, b"dns");
    assert_eq!(pfil(&mut m, &segments(&other, &[2])), Verdict::Pass);
    assert_eq!(
        pfil(&mut m, &[vec![0x45, 0, 0]]),
        Verdict::Pass,
        "truncated"
    );
    assert_eq!(pfil(&mut m, &[vec![0x60; 40]]), Verdict::Pass, "IPv6");
    assert_eq!(pfil(&mut m, &[]), Verdict::Pass, "empty chain");
    let s = m.stats;
    assert_eq!((s.pfil_pass, s.pfil_consumed, s.pfil_dropped), (5, 0, 1));
}

#[test]
fn ack_channel_with_a_split_udp_header_is_consumed() {
    let (mut m, k) = privileged();
    m.sys_v_host(&CALLER, ip_be(ORIGIN)).unwrap();
    let peer = Ipv4Addr::new(198, 51, 100, 11);
    let line = format!("group {ORIGIN} {PORT} 7 0 {KEY} 0@{ME},1@{peer}");
    assert_eq!(ctl(&mut m, &k, PID, &line).unwrap(), "ok");
    let frame = udp_packet(peer, ME, ACKCHAN_PORT, &[0u8; 40]);
    // The UDP ports in the second and third mbufs.
    assert_eq!(
        pfil(&mut m, &segments(&frame, &[20, 22])),
        Verdict::Consumed
    );
    assert_eq!(m.host.stats.chan_in, 1);
    // A forged frame is counted by the channel, never acted on.
    assert_eq!(m.host.role(ORIGIN, PORT), Some(Role::Primary));
}

// ---------------------------------------------------------------------- callout

#[test]
fn callout_follows_the_core_and_stops_on_unload() {
    let (mut m, k) = privileged();
    k.st().map(PARAMS_AT, &params_bytes(2, 1000, 10, 30));
    m.sys_v_host(&CALLER, ip_be(ORIGIN)).unwrap();
    let peer = Ipv4Addr::new(198, 51, 100, 11);
    let line = format!("group {ORIGIN} {PORT} 7 0 {KEY} 0@{ME},1@{peer}");
    ctl(&mut m, &k, PID, &line).unwrap();
    m.sys_setportopt(&CALLER, 80, 1, PARAMS_AT).unwrap();
    k.st().out.clear();
    for round in 0..5 {
        let at = k.st().callout.expect("armed");
        assert!(at >= k.st().now_us);
        k.st().now_us = at;
        k.st().callout = None;
        m.callout_fire();
        let out: Vec<Vec<u8>> = k.st().out.drain(..).collect();
        // Heartbeats to the peer's ack channel.
        assert!(
            out.iter().any(|p| {
                let (ip, _) = Ipv4Header::parse(p).unwrap();
                ip.dst == peer && ip.protocol == 17
            }),
            "round {round}: no heartbeat"
        );
        assert!(k.st().callout.is_some(), "re-armed");
    }
    assert_eq!(m.stats.callouts, 5);
    let stops = k.st().callout_stops;
    let (k2, report) = m.unload();
    assert_eq!(report, Default::default());
    assert_eq!(k2.st().callout, None);
    assert_eq!(k2.st().callout_stops, stops + 1);
    assert!(k2.st().out.is_empty(), "no goodbye on the ack channel");
}

#[test]
fn output_failures_are_counted_not_fatal() {
    let (mut m, k) = serving();
    k.st().output_fails = true;
    assert_eq!(pfil(&mut m, &[tunnelled_syn(REDIR)]), Verdict::Consumed);
    assert!(m.stats.out_errors >= 1);
    k.st().output_fails = false;
    // The SYN-ACK comes again when its timer fires.
    let at = k.st().callout.unwrap();
    k.st().now_us = at;
    m.callout_fire();
    assert!(!k.st().out.is_empty());
}

// ---------------------------------------------------------------------- relay and unload

#[test]
fn plain_connection_is_relayed_then_reset_on_forced_unload() {
    let mut net = Net::new(1, false);
    let h = net.connect();
    let now = net.instant();
    net.client.send(now, h, b"hello", 0).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    net.run_until(5_000_000, |net| {
        if let Ok(n) = net.client.recv(net.instant(), h, &mut buf, 0) {
            got.extend_from_slice(&buf[..n]);
        }
        got == b"hello"
    });
    // Let the client's delayed ACK go out: FreeBSD takes a RST only at the last ACK it sent
    // (RFC 5961), anything else gets a challenge ACK.
    let t0 = net.now;
    net.run_until(1_000_000, |net| net.now >= t0 + 200_000);
    {
        let st = net.nodes[0].k.st();
        assert_eq!(
            st.opened,
            vec![(0, std::net::SocketAddrV4::new(Ipv4Addr::LOCALHOST, PORT))],
            "relay to the server's own socket"
        );
        assert_eq!(st.relays[&0].received, b"hello");
    }
    let m = net.nodes[0].m.as_ref().unwrap();
    assert_eq!(m.live_connections(), 1);
    assert_eq!(
        m.quiesce(),
        Err(Errno::EBUSY),
        "kldunload without -f refuses"
    );
    let m = net.nodes[0].m.take().unwrap();
    let k = net.nodes[0].k.clone();
    k.st().out.clear();
    let (_, report) = m.unload();
    assert_eq!(report.reset, 1);
    assert_eq!(report.abandoned, 0);
    let out: Vec<Vec<u8>> = k.st().out.drain(..).collect();
    assert_eq!(out.len(), 1, "exactly the reset");
    let (ip, seg) = Ipv4Header::parse(&out[0]).unwrap();
    assert_eq!(ip.src, ORIGIN);
    assert_ne!(seg[13] & 0x04, 0, "RST");
    assert!(k.st().relays[&0].closed);
    assert_eq!(k.st().callout, None);
    // The client learns at once.
    net.client.handle_packet(net.instant(), &out[0]);
    let state = net.client.state(h).unwrap();
    let r = net.client.recv(net.instant(), h, &mut buf, 0);
    assert!(
        matches!(r, Err(Errno::ECONNRESET)),
        "client after the reset: {r:?}, {state:?}"
    );
}

#[test]
fn refused_relay_resets_the_client() {
    let mut net = Net::new(1, false);
    net.nodes[0].k.st().refuse_relays = true;
    let h = net.connect();
    net.run_until(5_000_000, |net| net.rst_to_client > 0);
    assert_eq!(net.nodes[0].m.as_ref().unwrap().stats.relays_refused, 1);
    let _ = h;
}

#[test]
fn relay_entry_points_ignore_unknown_ids() {
    let (mut m, _k) = serving();
    let mut buf = [0u8; 16];
    assert_eq!(m.relay_pull(3, &mut buf), (0, false));
    assert_eq!(m.relay_pull(10_000, &mut buf), (0, false));
    assert_eq!(m.relay_room(10_000), 0);
    assert_eq!(m.relay_push(3, b"x"), 0);
    m.relay_consumed(10_000, 5);
    m.relay_event(10_000, hydranet_platform_freebsd::RelayEvent::Eof);
    assert_eq!(m.live_connections(), 0);
    let _ = host_addr(0);
}

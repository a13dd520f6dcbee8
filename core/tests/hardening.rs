//! Hardening (issue 6): what an attacker who is not a member of the replica group can do to a
//! stack or a host server, and what every fixed-size table does when it is full. The other
//! halves live elsewhere: RFC 5961 RST/SYN handling state by state in `tcp_states.rs`, the
//! ack channel's forgeries, replays, stale epochs and truncations in `ackchan.rs` and
//! `ft_forged.rs`, the redirector's table limits in `redirector.rs`.

mod common;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};

use common::*;
use hydranet_core::ft::host::{
    listen_on, GroupConfig, Host, Member, MAX_GROUPS, MAX_REDIRECTORS, MAX_REPLICAS, MAX_VHOSTS,
};
use hydranet_core::ft::params::{DetectorParams, PortMode};
use hydranet_core::netinet::tcp_fsm::TcpState;
use hydranet_core::netinet::tcp_syncache::SYNCACHE_SIZE;
use hydranet_core::netinet::tcp_sysctl::TcpSysctl;
use hydranet_core::socket::sockbuf::SockBuf;
use hydranet_core::socket::socketvar::Socket;
use hydranet_core::stack::{Stack, MAX_ADDRS};
use hydranet_core::wire::ipip;
use hydranet_core::{Errno, Instant};

// ================================================================ SYN floods

/// SYNs from `n` source ports; returns the SYN-ACK (by source port) each one got.
fn flood(h: &mut Harness, ports: std::ops::Range<u16>) -> Vec<(u16, Seg)> {
    let mut answers = Vec::new();
    for p in ports {
        let opts = h.peer_syn_opts(0);
        h.send(PeerSeg::new("S", 0, 0).sport(p).opts(opts));
        while let Some(s) = h.out.pop_front() {
            answers.push((s.dport, s));
        }
    }
    answers
}

fn syncache_len(h: &Harness) -> usize {
    h.stack
        .pcblist()
        .filter(|p| p.state == TcpState::SynReceived && !p.has_handle)
        .count()
}

#[test]
fn syn_flood_keeps_the_syncache_bounded_and_cookies_let_a_client_in() {
    let mut h = Harness::new();
    assert!(h.stack.sysctl.syncookies, "syncookies are on by default");
    h.do_listen();
    let n = (SYNCACHE_SIZE * 8) as u16;
    let answers = flood(&mut h, 10_000..10_000 + n);
    // Every SYN is answered (from the cache or with a cookie), the cache never grows.
    assert_eq!(answers.len(), usize::from(n));
    assert!(syncache_len(&h) <= SYNCACHE_SIZE, "{}", syncache_len(&h));
    let st = &h.stack.tcpstat;
    assert!(
        st.sc_bucketoverflow >= u64::from(n) - SYNCACHE_SIZE as u64,
        "overflows are counted: {}",
        st.sc_bucketoverflow
    );
    // The first client's entry was evicted long ago; its handshake ACK still completes
    // through the cookie its SYN-ACK carried.
    let (port, sa) = &answers[0];
    assert_eq!(sa.flags, fl("S."));
    let ack = PeerSeg::new(".", 1, 0)
        .sport(*port)
        .ack_abs(sa.seq.wrapping_add(1));
    h.send(ack);
    assert_eq!(h.stack.tcpstat.sc_recvcookie, 1, "the cookie was honoured");
    let l = h.listener.unwrap();
    let (c, peer) = h
        .stack
        .accept(l)
        .expect("the cookie's connection is accepted");
    assert_eq!(peer.port(), *port);
    assert_eq!(h.stack.state(c), Ok(TcpState::Established));
    // A guessed cookie (off by one) is not.
    let (port2, sa2) = &answers[1];
    let bad = PeerSeg::new(".", 1, 0)
        .sport(*port2)
        .ack_abs(sa2.seq.wrapping_add(2));
    h.send(bad);
    assert_eq!(h.stack.tcpstat.sc_recvcookie, 1);
    assert_eq!(h.stack.accept(l).err(), Some(Errno::EWOULDBLOCK));
}

#[test]
fn syn_flood_without_cookies_is_bounded_and_counted() {
    let mut h = Harness::with_sysctl(|s| s.syncookies = false);
    h.do_listen();
    let n = (SYNCACHE_SIZE * 4) as u16;
    flood(&mut h, 20_000..20_000 + n);
    assert!(syncache_len(&h) <= SYNCACHE_SIZE);
    assert!(h.stack.tcpstat.sc_bucketoverflow >= u64::from(n) - SYNCACHE_SIZE as u64);
    assert_eq!(h.stack.tcpstat.sc_recvcookie, 0);
    // The most recent clients still complete their handshakes from the cache.
    let last = 20_000 + n - 1;
    let sa = h
        .log
        .iter()
        .rev()
        .find(|s| s.dport == last)
        .expect("a SYN-ACK")
        .clone();
    h.send(
        PeerSeg::new(".", 1, 0)
            .sport(last)
            .ack_abs(sa.seq.wrapping_add(1)),
    );
    let l = h.listener.unwrap();
    assert!(h.stack.accept(l).is_ok());
}

// ================================================================ RFC 5961, blind attacks

/// An off-path attacker guessing sequence numbers: a RST anywhere in the window but at
/// rcv_nxt, and a SYN anywhere, never reset the connection; the challenge ACKs they draw are
/// rate-limited (`ack_war_cnt` per `ack_war_timewindow`).
#[test]
fn blind_rst_and_syn_sweep_does_not_reset_and_challenges_are_rate_limited() {
    let mut h = in_state(TcpState::Established);
    let limit = h.stack.sysctl.ack_war_cnt as usize;
    let mut challenges = 0;
    for i in 1..400u32 {
        let flags = if i % 2 == 0 { "R" } else { "S" };
        h.send(PeerSeg::new(flags, 1 + i * 97, 0));
        challenges += h.out.drain(..).filter(|s| s.flags == fl(".")).count();
    }
    assert_eq!(h.state(), TcpState::Established);
    assert!(
        challenges <= limit,
        "{challenges} challenge ACKs within one window of {} ms (limit {limit})",
        h.stack.sysctl.ack_war_timewindow
    );
    // The real peer's data still flows.
    h.send(PeerSeg::new("P.", 1, 1).data(b"still here"));
    assert_eq!(h.app_recv(), b"still here");
}

/// RFC 5961 section 5: data whose ACK lies below the ISS while the connection is young (a
/// "ghost" ACK, for bytes never sent) is what a blind injector sends; it is dropped and
/// answered with a challenge ACK rather than delivered. `net.inet.tcp.insecure_ack` turns the
/// check off.
#[test]
fn blind_data_with_an_old_ack_is_not_delivered() {
    let mut h = in_state(TcpState::Established);
    let old = h.iss.wrapping_sub(0x4000_0000);
    h.send(PeerSeg::new("P.", 1, 0).ack_abs(old).data(b"injected"));
    assert_eq!(h.readable(), 0, "blind data was delivered");
    assert_eq!(h.stack.tcpstat.rcvghostack, 1);
    // The challenge ACK names what we really expect.
    h.expect_only(".", 1, 1);
    assert_eq!(h.state(), TcpState::Established);
    // An ACK of our SYN only (ISS + 1) is the lowest acceptable one.
    h.send(PeerSeg::new("P.", 1, 1).data(b"real"));
    assert_eq!(h.app_recv(), b"real");

    let mut h = in_state(TcpState::Established);
    h.stack.sysctl.set("net.inet.tcp.insecure_ack", 1).unwrap();
    h.send(PeerSeg::new("P.", 1, 0).ack_abs(old).data(b"injected"));
    assert_eq!(h.app_recv(), b"injected", "insecure_ack disables the check");
    assert_eq!(h.stack.tcpstat.rcvghostack, 0);
}

/// Sends `total` bytes to the peer, which acknowledges each segment as it arrives; returns
/// the relative sequence number of `snd_una` afterwards.
fn send_and_ack(h: &mut Harness, total: u32) -> u32 {
    let chunk = vec![0x5a_u8; 4096];
    let (mut written, mut acked) = (0u32, 1u32);
    for _ in 0..10_000 {
        if acked > total {
            return acked;
        }
        if written < total {
            let n = (total - written).min(chunk.len() as u32) as usize;
            written += h.app_send(&chunk[..n]) as u32;
        }
        h.pull();
        let iss = h.iss;
        let ends: Vec<u32> = h
            .out
            .drain(..)
            .filter(|s| !s.is_empty())
            .map(|s| s.seq.wrapping_sub(iss).wrapping_add(s.len() as u32))
            .collect();
        if ends.is_empty() {
            h.advance(10);
        }
        for end in ends {
            h.send(PeerSeg::new(".", 1, end));
            acked = acked.max(end);
        }
    }
    panic!("only {acked} of {total} bytes were acknowledged");
}

/// RFC 5961 section 5.2 once the ISS is far behind: an ACK below `snd_una - max_sndwnd` is
/// too old (counted `rcvacktooold`), its data is not delivered, and the challenge ACKs such
/// segments draw are rate-limited like the RST/SYN ones; an ACK at the edge is still fine.
#[test]
fn data_with_an_ack_older_than_the_largest_window_is_challenged() {
    let mut h = in_state(TcpState::Established);
    // No window scaling: past ISS + 65535 the ISS check gives way to the window check.
    let una = send_and_ack(&mut h, 80_000);
    let max_sndwnd = u32::from(PEER_WIN);
    let edge = una - max_sndwnd;
    let limit = h.stack.sysctl.ack_war_cnt as usize;
    let mut challenges = 0;
    for i in 1..50u32 {
        h.send(PeerSeg::new("P.", 1, edge - i * 101).data(b"injected"));
        challenges += h.out.drain(..).filter(|s| s.flags == fl(".")).count();
    }
    assert_eq!(h.readable(), 0, "data with a too-old ACK was delivered");
    assert_eq!(h.stack.tcpstat.rcvacktooold, 49);
    assert_eq!(h.stack.tcpstat.rcvghostack, 0);
    assert!(
        (1..=limit).contains(&challenges),
        "{challenges} challenge ACKs (limit {limit})"
    );
    assert_eq!(h.state(), TcpState::Established);
    // The oldest ACK the peer may still legitimately send (a reordered segment) is accepted.
    h.send(PeerSeg::new("P.", 1, edge).data(b"late but real"));
    assert_eq!(h.app_recv(), b"late but real");
    assert_eq!(h.stack.tcpstat.rcvacktooold, 49);
}

/// Data with an ACK for bytes never sent is not delivered (RFC 793 / `rcvacktoomuch`).
#[test]
fn data_acking_the_future_is_not_delivered() {
    let mut h = in_state(TcpState::Established);
    let before = h.stack.tcpstat.rcvacktoomuch;
    h.send(PeerSeg::new("P.", 1, 1000).data(b"injected"));
    assert_eq!(h.readable(), 0);
    assert_eq!(h.stack.tcpstat.rcvacktoomuch, before + 1);
}

// ================================================================ ISNs

fn syn_iss(stack: &mut Stack<'static>, now: Instant, port: u16) -> u32 {
    let s = stack.socket().unwrap();
    let _ = stack.connect(now, s, SocketAddrV4::new(PEER, port));
    let mut buf = vec![0u8; 2048];
    let n = stack.poll_transmit(now, &mut buf).expect("a SYN");
    let seg = parse_out(now, &buf[..n]);
    assert_eq!(seg.flags, fl("S"));
    stack.close(now, s).unwrap();
    while stack.poll_transmit(now, &mut buf).is_some() {}
    seg.seq
}

/// RFC 6528: the ISS is a keyed hash of the connection plus a clock. Two stacks with different
/// seeds choose unrelated ISSs for the same connection at the same time, and one stack's ISSs
/// for neighbouring connections are not a progression an observer could extend.
#[test]
fn isns_are_keyed_and_not_predictable_from_neighbours() {
    let now = Instant::from_millis(5_000);
    let mk = |seed: u8| {
        let mut s = Stack::new_alloc([seed; 16]);
        s.add_address(LOCAL).unwrap();
        s
    };
    let (mut a, mut b) = (mk(1), mk(2));
    let mut seen = HashSet::new();
    let mut diffs = HashSet::new();
    let mut prev = None;
    let mut same = 0;
    for port in 5000..5064u16 {
        let x = syn_iss(&mut a, now, port);
        let y = syn_iss(&mut b, now, port);
        same += usize::from(x == y);
        assert!(seen.insert(x), "ISS {x} chosen twice");
        if let Some(p) = prev {
            diffs.insert(x.wrapping_sub(p));
        }
        prev = Some(x);
    }
    assert_eq!(same, 0, "two keys gave the same ISS");
    assert!(
        diffs.len() > 60,
        "ISSs of neighbouring ports form a pattern"
    );
    // The high bits are spread too (not a small offset from a clock).
    let tops: HashSet<u32> = seen.iter().map(|x| x >> 28).collect();
    assert!(tops.len() >= 8, "{tops:?}");
}

// ================================================================ host servers

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
const ME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const REDIR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

fn group(rank: u8, members: &[Member], id: u32) -> GroupConfig<'_> {
    GroupConfig {
        group_id: id,
        local_rank: rank,
        members,
        key: [9; 32],
        incarnation: 1,
    }
}

/// A host that is the only member of the group of VIP:80, behind REDIR.
fn lone_host() -> Host<'static> {
    let mut h = Host::new(Stack::new_alloc([3; 16]), ME).unwrap();
    h.v_host(VIP).unwrap();
    h.add_redirector(REDIR).unwrap();
    let members = [Member { rank: 0, addr: ME }];
    h.ft_group(VIP, 80, &group(0, &members, 1)).unwrap();
    h.setportopt(VIP, 80, PortMode::Primary, DetectorParams::default())
        .unwrap();
    listen_on(&mut h.stack, VIP, 80, 8).unwrap();
    h
}

fn client_syn(sport: u16) -> Vec<u8> {
    build_packet(
        CLIENT,
        VIP,
        sport,
        80,
        fl("S"),
        1000,
        0,
        65535,
        &opt::mss(1460),
        &[],
    )
}

fn tunnel(from: Ipv4Addr, to: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; inner.len() + 20];
    let n = ipip::encapsulate(from, to, inner, 64, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn drain(h: &mut Host<'_>, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while let Some(n) = h.poll_transmit(now, &mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

/// IP-in-IP is accepted only from a configured redirector: a tunnel from anywhere else is
/// dropped before the stack sees the inner packet, and counted.
#[test]
fn tunnels_are_accepted_only_from_configured_redirectors() {
    let now = Instant::from_millis(1);
    let mut h = lone_host();
    let stranger = Ipv4Addr::new(203, 0, 113, 66);
    h.handle_packet(now, &tunnel(stranger, ME, &client_syn(40000)));
    assert_eq!(h.stats.tunnel_from_stranger, 1);
    assert_eq!(h.stats.tunneled_in, 0);
    assert!(
        drain(&mut h, now).is_empty(),
        "a stranger's SYN was answered"
    );
    assert_eq!(h.stack.pcblist().count(), 1, "only the listener");

    // A tunnel whose inner packet is not IPv4 is counted as malformed, not acted on.
    let mut junk = tunnel(REDIR, ME, &client_syn(40001));
    junk[20] = 0x65; // inner version 6
    h.handle_packet(now, &junk);
    assert_eq!(h.stats.tunnel_malformed, 1);

    // The configured redirector's tunnel reaches the stack: the SYN is answered.
    h.handle_packet(now, &tunnel(REDIR, ME, &client_syn(40002)));
    assert_eq!(h.stats.tunneled_in, 1);
    let out = drain(&mut h, now);
    assert!(
        out.iter()
            .any(|p| parse_out(now, p).flags == fl("S.") && p[16..20] == CLIENT.octets()),
        "no SYN-ACK to the redirector's client"
    );
}

/// A SYN flood through the tunnel on a fault-tolerant port: the syncache stays bounded and
/// its overflows are counted. Such ports use no syncookies (every replica must compute the
/// same ISS from the SYN, a keyed hash without a clock), so the flood evicts half-open
/// connections: SECURITY.md lists it among what is not defended.
#[test]
fn syn_flood_on_a_fault_tolerant_port_is_bounded_and_counted() {
    let now = Instant::from_millis(1);
    let mut h = lone_host();
    let n = SYNCACHE_SIZE as u16 * 3;
    for p in 0..n {
        h.handle_packet(now, &tunnel(REDIR, ME, &client_syn(30_000 + p)));
        drain(&mut h, now);
    }
    let half_open = h
        .stack
        .pcblist()
        .filter(|p| p.state == TcpState::SynReceived && !p.has_handle)
        .count();
    assert!(half_open <= SYNCACHE_SIZE, "{half_open}");
    assert!(h.stack.tcpstat.sc_bucketoverflow >= u64::from(n) - SYNCACHE_SIZE as u64);
    assert_eq!(h.stats.tunneled_in, u64::from(n));
}

/// Every fixed table of a host server refuses the entry beyond its size with an error, and
/// what it holds keeps working.
#[test]
fn host_tables_refuse_cleanly_when_full() {
    let mut h = Host::new(Stack::new_alloc([4; 16]), ME).unwrap();
    let vip = |i: usize| Ipv4Addr::new(192, 0, 2, 100 + i as u8);
    // The host's own address takes one of the stack's MAX_ADDRS slots, so the stack's
    // address table (not MAX_VHOSTS) is what fills first: MAX_ADDRS - 1 virtual hosts.
    let mut n = 0;
    let err = loop {
        match h.v_host(vip(n)) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
        assert!(n <= MAX_VHOSTS);
    };
    assert_eq!(err, Errno::ENOSPC);
    assert_eq!(n, MAX_VHOSTS.min(MAX_ADDRS - 1));
    assert_eq!(h.vhosts().len(), n, "a refused v_host left nothing behind");
    assert_eq!(h.v_host(vip(0)), Err(Errno::EEXIST));

    for i in 0..MAX_REDIRECTORS {
        h.add_redirector(Ipv4Addr::new(198, 51, 100, 200 + i as u8))
            .unwrap();
    }
    assert_eq!(
        h.add_redirector(Ipv4Addr::new(198, 51, 100, 250)),
        Err(Errno::ENOSPC)
    );

    let members = [
        Member { rank: 0, addr: ME },
        Member {
            rank: 1,
            addr: Ipv4Addr::new(198, 51, 100, 11),
        },
    ];
    for port in 1..=MAX_GROUPS as u16 {
        h.ft_group(vip(0), port, &group(0, &members, u32::from(port)))
            .unwrap();
    }
    let full = h.ft_group(vip(0), 999, &group(0, &members, 999));
    assert_eq!(full, Err(Errno::ENOSPC));
    assert_eq!(
        h.ft_group(vip(0), 1, &group(0, &members, 1)),
        Err(Errno::EEXIST)
    );

    // More members than a group holds, and ranks beyond the table.
    let many: Vec<Member> = (0..=MAX_REPLICAS as u8)
        .map(|r| Member {
            rank: r,
            addr: Ipv4Addr::new(198, 51, 100, 20 + r),
        })
        .collect();
    assert_eq!(
        h.ft_group(vip(1), 80, &group(0, &many, 5)),
        Err(Errno::EINVAL)
    );
    let high = [Member {
        rank: MAX_REPLICAS as u8,
        addr: ME,
    }];
    assert_eq!(
        h.ft_group(vip(1), 80, &group(MAX_REPLICAS as u8, &high, 5)),
        Err(Errno::EINVAL)
    );
    // The groups it has still take their port options.
    h.setportopt(vip(0), 1, PortMode::Primary, DetectorParams::default())
        .unwrap();
}

/// The table of replicated connections of a group (`MAX_FT_CONNS`) when it is full, in a
/// simulated group of two replicas running the echo service.
#[cfg(feature = "sim")]
mod ft_table {
    use super::*;
    use hydranet_core::ft::host::MAX_FT_CONNS;
    use hydranet_core::sim::{Sim, SimConfig, CLIENT as CLIENT_SIM, ORIGIN, SERVICE_PORT};
    use hydranet_core::stack::SocketHandle;
    use hydranet_core::Duration;

    fn established(sim: &Sim, c: SocketHandle) -> bool {
        sim.client_state(c) == Some(TcpState::Established)
    }

    fn client_port(sim: &Sim, c: SocketHandle) -> u16 {
        sim.client
            .pcblist()
            .find(|p| p.handle == Some(c))
            .expect("the client socket")
            .lport
    }

    /// Sends `msg` on `c` and steps until the echo service has sent it back.
    fn echo(sim: &mut Sim, c: SocketHandle, msg: &[u8]) {
        sim.client.send(sim.now, c, msg, 0).unwrap();
        let (t0, mut got, mut buf) = (sim.now, Vec::new(), [0u8; 256]);
        while got.len() < msg.len() {
            assert!(sim.now < t0 + Duration::from_millis(2000), "no echo");
            assert!(sim.step());
            if let Ok(n) = sim.client.recv(sim.now, c, &mut buf, 0) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        assert_eq!(got, msg);
    }

    /// A group of two with `n` established, replicated client connections.
    fn group_with(n: usize) -> (Sim, Vec<SocketHandle>) {
        let mut sim = Sim::new(SimConfig {
            replicas: 2,
            ..Default::default()
        });
        // A few handshakes at a time (the syncache holds 64 half-open entries).
        let mut conns = Vec::new();
        while conns.len() < n {
            let k = (n - conns.len()).min(8);
            let batch: Vec<SocketHandle> = (0..k).map(|_| sim.connect().unwrap()).collect();
            let t0 = sim.now;
            while !batch.iter().all(|&c| established(&sim, c)) {
                assert!(
                    sim.now < t0 + Duration::from_millis(3000),
                    "handshakes stuck"
                );
                assert!(sim.step());
            }
            conns.extend(batch);
        }
        sim.run_until(sim.now + Duration::from_millis(50));
        for h in &sim.hosts {
            assert_eq!(h.host.stats.conns_tracked, n as u64);
            assert_eq!(h.host.stats.conns_table_full, 0);
        }
        (sim, conns)
    }

    fn no_host_state_for(sim: &Sim, port: u16) {
        for (i, h) in sim.hosts.iter().enumerate() {
            assert!(
                !h.host
                    .stack
                    .has_pending_or_conn(ORIGIN, SERVICE_PORT, CLIENT_SIM, port),
                "host {i} keeps state for the refused client"
            );
        }
    }

    /// A full table: a new client's SYN is dropped by every replica and counted
    /// (`conns_table_full`), without half-open state, a SYN-ACK or a panic; the connections
    /// the group has keep moving data; once one of them ends, the refused client's next SYN
    /// retransmission gets in.
    #[test]
    fn ft_connection_table_refuses_a_new_client_cleanly_when_full() {
        let (mut sim, conns) = group_with(MAX_FT_CONNS);
        // One client too many: its SYN (and the retransmissions within 2 s) are refused.
        let extra = sim.connect().unwrap();
        let port = client_port(&sim, extra);
        sim.run_until(sim.now + Duration::from_millis(2000));
        assert_eq!(sim.client_state(extra), Some(TcpState::SynSent));
        for (i, h) in sim.hosts.iter().enumerate() {
            assert!(
                h.host.stats.conns_table_full > 0,
                "host {i} did not count the refusal"
            );
            assert_eq!(h.host.stats.conns_tracked, MAX_FT_CONNS as u64);
        }
        no_host_state_for(&sim, port);

        // The connections the group has still work.
        echo(&mut sim, conns[0], b"still replicated");
        echo(&mut sim, conns[MAX_FT_CONNS - 1], b"and this one too");

        // One ends (the client closes, the echo service closes its side): the refused
        // client's next SYN retransmission is accepted, and replicated like the others.
        sim.client.close(sim.now, conns[1]).unwrap();
        let t0 = sim.now;
        while !established(&sim, extra) {
            assert!(
                sim.now < t0 + Duration::from_millis(10_000),
                "the refused client never got in"
            );
            assert!(sim.step());
        }
        echo(&mut sim, extra, b"finally in");
        for h in &sim.hosts {
            assert_eq!(h.host.stats.conns_tracked, MAX_FT_CONNS as u64 + 1);
        }
        assert!(sim.violations.is_empty(), "{:?}", sim.violations);
        assert_eq!(sim.client_resets, 0);
    }

    /// Two handshakes that were both half-open when the table had one slot left: the one
    /// that completes second cannot be replicated and is reset (counted), not left running
    /// outside the group; the other, and the connections the group had, work.
    #[test]
    fn ft_connection_completing_into_a_full_table_is_reset() {
        let (mut sim, conns) = group_with(MAX_FT_CONNS - 1);
        let pair = [sim.connect().unwrap(), sim.connect().unwrap()];
        let t0 = sim.now;
        while !pair.iter().any(|&c| established(&sim, c)) || sim.client_resets == 0 {
            assert!(
                sim.now < t0 + Duration::from_millis(3000),
                "no handshake completed, or none was refused"
            );
            assert!(sim.step());
        }
        sim.run_until(sim.now + Duration::from_millis(50));
        let (inside, refused) = if established(&sim, pair[0]) {
            (pair[0], pair[1])
        } else {
            (pair[1], pair[0])
        };
        assert!(!established(&sim, refused));
        for (i, h) in sim.hosts.iter().enumerate() {
            assert_eq!(h.host.stats.conns_table_full, 1, "host {i}");
            assert_eq!(h.host.stats.conns_tracked, MAX_FT_CONNS as u64, "host {i}");
        }
        let port = client_port(&sim, refused);
        no_host_state_for(&sim, port);
        echo(&mut sim, inside, b"replicated");
        echo(&mut sim, conns[0], b"unaffected");
        // The simulator counts every reset a client gets against invariant 2; the refusal's
        // is the only one.
        let refusal = format!("203.0.113.10:{port} R");
        assert!(
            sim.violations
                .iter()
                .all(|v| v.invariant == 2 && v.what.contains(&refusal)),
            "{:?}",
            sim.violations
        );
        assert_eq!(sim.client_resets, 1);
    }
}

/// A stack over caller-provided socket slots (the no-alloc configuration): the socket beyond
/// them is refused with `ENOBUFS`, and freeing one makes room again.
#[test]
fn socket_table_refuses_cleanly_when_full() {
    let cfg = TcpSysctl::default();
    let mut slots: Vec<Socket<'_>> = (0..4)
        .map(|_| {
            Socket::new(
                SockBuf::new(vec![0u8; 4096]),
                SockBuf::new(vec![0u8; 4096]),
                &cfg,
            )
        })
        .collect();
    let mut s = Stack::new(&mut slots[..], [5; 16]);
    s.add_address(LOCAL).unwrap();
    let held: Vec<_> = (0..4).map(|_| s.socket().unwrap()).collect();
    assert_eq!(s.socket().err(), Some(Errno::ENOBUFS));
    s.close(Instant::ZERO, held[2]).unwrap();
    assert!(s.socket().is_ok());
    assert_eq!(s.socket().err(), Some(Errno::ENOBUFS));
}

/// Bug 8 of fuzz/regressions/README.md (found by `ackchan_frames`): a backup that has seen an
/// authenticated epoch within 16 of `u32::MAX` takes over when the primary falls silent, and
/// `takeover_epoch` overflows (a panic in debug builds, a wrapped, lower epoch in release).
#[test]
fn takeover_after_an_epoch_near_the_limit_does_not_overflow() {
    use hydranet_core::ft::ackchan::{AckChanConfig, AckChannel};
    use hydranet_core::ft::host::{Role, ACKCHAN_PORT};
    use hydranet_core::wire::udp;
    let key = [9; 32];
    let peer_addr = Ipv4Addr::new(198, 51, 100, 11);
    let members = [
        Member {
            rank: 0,
            addr: peer_addr,
        },
        Member { rank: 1, addr: ME },
    ];
    let mut h = Host::new(Stack::new_alloc([6; 16]), ME).unwrap();
    h.v_host(VIP).unwrap();
    h.ft_group(
        VIP,
        80,
        &GroupConfig {
            key,
            ..group(1, &members, 1)
        },
    )
    .unwrap();
    h.setportopt(VIP, 80, PortMode::Backup, DetectorParams::default())
        .unwrap();
    // The primary, as an ack channel of its own, at the highest epoch.
    let mut p = AckChannel::new(0, 1, key, 1, AckChanConfig::default());
    p.add_peer(1).unwrap();
    let mut now = Instant::from_millis(1);
    p.heartbeat(now, &[0, 1]).unwrap();
    let mut buf = vec![0u8; 2048];
    for round in 0..6 {
        // Sessions first (a channel at a higher epoch ignores the backup's ACKs), then the
        // epoch.
        if round == 3 {
            p.set_epoch(u32::MAX);
        }
        while let Some((_, n)) = p.poll_transmit(now, &mut buf) {
            let mut pkt = vec![0u8; n + 28];
            let m = udp::emit_ipv4_udp(
                peer_addr,
                ME,
                ACKCHAN_PORT,
                ACKCHAN_PORT,
                &buf[..n],
                64,
                &mut pkt,
            )
            .unwrap();
            h.handle_packet(now, &pkt[..m]);
        }
        for out in drain(&mut h, now) {
            if let Ok((ip, seg)) = hydranet_core::wire::ipv4::Ipv4Header::parse(&out) {
                if let Ok((_, f)) = udp::parse_datagram(seg, ip.src, ip.dst, true) {
                    p.handle_frame(now, f);
                }
            }
        }
        p.heartbeat(now, &[0, 1]).unwrap();
        now += hydranet_core::Duration::from_millis(5);
    }
    assert_eq!(
        h.epoch(VIP, 80),
        Some(u32::MAX),
        "the backup adopted the epoch"
    );
    // The primary falls silent; the backup takes over with an epoch above everything seen.
    h.handle_timeout(now + hydranet_core::Duration::from_millis(1000));
    assert_eq!(h.role(VIP, 80), Some(Role::Primary));
    // Epochs are spent; whatever the fix, the view number must not go backwards.
    assert_eq!(h.epoch(VIP, 80), Some(u32::MAX), "the epoch went backwards");
}

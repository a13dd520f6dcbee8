//! The redirector role end to end at the packet level: table management, one-to-many
//! IP-in-IP fan-out with byte-exact inner packets, forwarding of everything else, the MTU rule,
//! malformed input, and the UDP / IP-in-IP wire formats it relies on.

use std::net::Ipv4Addr;

use hydranet_core::ft::redirector::{
    tunnel_mss, Decision, DropReason, Redirector, RedirectorStats, MAX_REPLICAS, MAX_ROUTES,
    TUNNEL_TTL,
};
use hydranet_core::wire::ipv4::{Ipv4Header, PROTO_ICMP, PROTO_IPIP, PROTO_TCP, PROTO_UDP};
use hydranet_core::wire::tcp::{self, TcpFlags, TcpHeader};
use hydranet_core::wire::{checksum, ipip, udp, WireError};
use hydranet_core::Errno;
use proptest::prelude::*;

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const ORIGIN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 80);
const OTHER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 81);
const TUNNEL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const PORT: u16 = 80;
const MTU: u16 = 1500;

fn host(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 10 + i)
}

fn hosts(n: u8) -> Vec<Ipv4Addr> {
    (1..=n).map(host).collect()
}

/// A client TCP packet to `dst:dport` with `payload`, DF as given, a non-trivial TOS (ECT(0)
/// and a DSCP) and TCP options, with valid checksums.
fn tcp_packet(dst: Ipv4Addr, dport: u16, payload: &[u8], df: bool) -> Vec<u8> {
    let th = TcpHeader {
        src_port: 50123,
        dst_port: dport,
        seq: 0x0102_0304,
        ack: 0x0a0b_0c0d,
        flags: TcpFlags::ACK | TcpFlags::PSH,
        window: 1024,
        ..TcpHeader::default()
    };
    // NOP NOP timestamp.
    let opts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    let tcp_len = tcp::HEADER_LEN + opts.len() + payload.len();
    let mut p = vec![0u8; 20 + tcp_len];
    tcp::emit_segment(&th, &opts, payload, CLIENT, dst, &mut p[20..]).unwrap();
    let mut ip = Ipv4Header::new(CLIENT, dst, PROTO_TCP, tcp_len, 63);
    ip.tos = 0x2a;
    ip.dont_frag = df;
    ip.ident = 0x4242;
    ip.emit(&mut p).unwrap();
    p
}

fn fix_ip_checksum(p: &mut [u8]) {
    let hl = usize::from(p[0] & 0x0f) * 4;
    p[10] = 0;
    p[11] = 0;
    let c = checksum::finish(checksum::sum(&p[..hl]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Routes `packet` and collects the emitted copies.
fn run(r: &mut Redirector, packet: &[u8]) -> (Decision, Vec<(Ipv4Addr, Vec<u8>)>) {
    let mut scratch = vec![0u8; 65_536 + 20];
    let mut out = Vec::new();
    let d = r.route(packet, &mut scratch, |dst, bytes| {
        out.push((dst, bytes.to_vec()))
    });
    (d, out)
}

/// Checks that `copies` are exactly one IP-in-IP packet per replica, in order, each carrying
/// `inner` byte for byte.
fn assert_fan_out(copies: &[(Ipv4Addr, Vec<u8>)], replicas: &[Ipv4Addr], inner: &[u8]) {
    assert_eq!(copies.len(), replicas.len());
    let inner_hdr = Ipv4Header::parse(inner).unwrap().0;
    for ((dst, bytes), &replica) in copies.iter().zip(replicas) {
        assert_eq!(*dst, replica);
        let (outer, back) = ipip::decapsulate(bytes).unwrap();
        assert_eq!(back, inner, "inner packet must be byte-exact");
        assert_eq!(outer.protocol, PROTO_IPIP);
        assert_eq!((outer.src, outer.dst), (TUNNEL, replica));
        assert_eq!(outer.ttl, TUNNEL_TTL);
        assert_eq!(outer.tos, inner_hdr.tos, "TOS (DSCP + ECN) copied");
        assert_eq!(outer.dont_frag, inner_hdr.dont_frag);
        assert_eq!(usize::from(outer.total_len), bytes.len());
        assert_eq!(bytes.len(), inner.len() + ipip::IPIP_OVERHEAD);
        // The inner TCP segment still verifies against the client's addresses.
        let (ih, seg) = Ipv4Header::parse(back).unwrap();
        tcp::parse_segment(seg, ih.src, ih.dst, true).unwrap();
    }
}

#[test]
fn fans_out_to_every_replica_byte_exact() {
    for n in [1u8, 2, 3, MAX_REPLICAS as u8] {
        let mut r = Redirector::new(TUNNEL, MTU);
        let replicas = hosts(n);
        r.add_route(ORIGIN, PORT, &replicas).unwrap();
        for payload in [&b""[..], b"GET / HTTP/1.0\r\n\r\n", &[0xa5; 1000]] {
            let p = tcp_packet(ORIGIN, PORT, payload, true);
            let (d, copies) = run(&mut r, &p);
            assert_eq!(
                d,
                Decision::Tunneled {
                    copies: usize::from(n)
                }
            );
            assert_fan_out(&copies, &replicas, &p);
        }
        assert_eq!(
            *r.stats(),
            RedirectorStats {
                tunneled_packets: 3,
                tunneled_copies: 3 * u64::from(n),
                ..RedirectorStats::default()
            }
        );
    }
}

#[test]
fn inner_with_ip_options_and_link_padding() {
    let mut r = Redirector::new(TUNNEL, MTU);
    r.add_route(ORIGIN, PORT, &hosts(2)).unwrap();
    // Insert a 4-byte IP option (NOP NOP NOP EOL) so the TCP header starts at 24.
    let mut p = tcp_packet(ORIGIN, PORT, b"xyz", true);
    p[0] = 0x46;
    let total = u16::from_be_bytes([p[2], p[3]]) + 4;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.splice(20..20, [1, 1, 1, 0]);
    fix_ip_checksum(&mut p);
    let exact = p.clone();
    // Link-layer padding after the packet is not tunnelled.
    p.extend_from_slice(&[0xee; 6]);
    let (d, copies) = run(&mut r, &p);
    assert_eq!(d, Decision::Tunneled { copies: 2 });
    assert_fan_out(&copies, &hosts(2), &exact);
}

#[test]
fn unrouted_and_non_tcp_are_forwarded() {
    let mut r = Redirector::new(TUNNEL, MTU);
    r.add_route(ORIGIN, PORT, &hosts(2)).unwrap();
    let forwarded = [
        // Another port of the origin.
        tcp_packet(ORIGIN, 22, b"ssh", true),
        // The routed port on another address.
        tcp_packet(OTHER, PORT, b"x", true),
        // TCP to a non-origin, even one too short for ports: not inspected.
        {
            let mut p = Ipv4Header::new(CLIENT, OTHER, PROTO_TCP, 2, 64);
            p.ident = 1;
            let mut b = vec![0u8; 22];
            p.emit(&mut b).unwrap();
            b
        },
        // UDP to origin:80.
        {
            let mut b = vec![0u8; 64];
            let n = udp::emit_ipv4_udp(CLIENT, ORIGIN, 5353, PORT, b"dns?", 64, &mut b).unwrap();
            b.truncate(n);
            b
        },
        // ICMP echo to the origin.
        {
            let mut b = vec![0u8; 28];
            Ipv4Header::new(CLIENT, ORIGIN, PROTO_ICMP, 8, 64)
                .emit(&mut b)
                .unwrap();
            b[20] = 8;
            b
        },
        // IP-in-IP to the origin is not re-tunnelled.
        {
            let inner = tcp_packet(ORIGIN, PORT, b"x", true);
            let mut b = vec![0u8; inner.len() + 20];
            ipip::encapsulate(CLIENT, ORIGIN, &inner, 64, &mut b).unwrap();
            b
        },
        // IPv6 is none of the redirector's business.
        {
            let mut b = vec![0u8; 60];
            b[0] = 0x60;
            b
        },
    ];
    for p in &forwarded {
        let (d, copies) = run(&mut r, p);
        assert_eq!(d, Decision::Forward, "{p:02x?}");
        assert!(copies.is_empty());
    }
    assert_eq!(r.stats().forwarded, forwarded.len() as u64);
    assert_eq!(r.stats().tunneled_packets, 0);

    // An empty table forwards everything.
    let mut empty = Redirector::new(TUNNEL, MTU);
    assert_eq!(
        run(&mut empty, &tcp_packet(ORIGIN, PORT, b"", true)).0,
        Decision::Forward
    );
}

#[test]
fn routes_and_replicas_change_at_runtime() {
    let mut r = Redirector::new(TUNNEL, MTU);
    let p = tcp_packet(ORIGIN, PORT, b"hello", true);
    assert_eq!(run(&mut r, &p).0, Decision::Forward);

    r.add_route(ORIGIN, PORT, &[host(1)]).unwrap();
    let (d, copies) = run(&mut r, &p);
    assert_eq!(d, Decision::Tunneled { copies: 1 });
    assert_fan_out(&copies, &[host(1)], &p);

    // Deploy two more replicas.
    r.add_replica(ORIGIN, PORT, host(2)).unwrap();
    r.add_replica(ORIGIN, PORT, host(3)).unwrap();
    assert_eq!(
        r.lookup(ORIGIN, PORT).unwrap().replicas.as_slice(),
        &hosts(3)[..]
    );
    let (_, copies) = run(&mut r, &p);
    assert_fan_out(&copies, &hosts(3), &p);

    // Recall the middle one: the others keep their order.
    r.remove_replica(ORIGIN, PORT, host(2)).unwrap();
    let (_, copies) = run(&mut r, &p);
    assert_fan_out(&copies, &[host(1), host(3)], &p);

    // The last replica gone: the route stays and drops.
    r.remove_replica(ORIGIN, PORT, host(1)).unwrap();
    r.remove_replica(ORIGIN, PORT, host(3)).unwrap();
    let (d, copies) = run(&mut r, &p);
    assert_eq!(d, Decision::Dropped(DropReason::NoReplicas));
    assert!(copies.is_empty());
    assert_eq!(r.routes().count(), 1);

    // A second route on another port, then the first removed.
    r.add_route(ORIGIN, 443, &[host(4)]).unwrap();
    r.remove_route(ORIGIN, PORT).unwrap();
    assert_eq!(run(&mut r, &p).0, Decision::Forward);
    let tls = tcp_packet(ORIGIN, 443, b"\x16\x03\x01", true);
    let (d, copies) = run(&mut r, &tls);
    assert_eq!(d, Decision::Tunneled { copies: 1 });
    assert_fan_out(&copies, &[host(4)], &tls);
    assert!(r.lookup(ORIGIN, PORT).is_none());
    assert_eq!(
        r.routes()
            .map(|rt| (rt.origin, rt.port))
            .collect::<Vec<_>>(),
        [(ORIGIN, 443)]
    );

    // Re-adding works, and a route with no replicas is allowed.
    r.add_route(ORIGIN, PORT, &[]).unwrap();
    assert_eq!(run(&mut r, &p).0, Decision::Dropped(DropReason::NoReplicas));
    let s = r.stats();
    assert_eq!(
        (
            s.forwarded,
            s.tunneled_packets,
            s.tunneled_copies,
            s.no_replicas
        ),
        (2, 4, 7, 2)
    );
}

#[test]
fn every_error_code() {
    let mut r = Redirector::new(TUNNEL, MTU);
    let bad_addrs = [
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::new(239, 255, 255, 250),
    ];
    for bad in bad_addrs {
        assert_eq!(r.add_route(bad, PORT, &[host(1)]), Err(Errno::EINVAL));
        assert_eq!(
            r.add_route(ORIGIN, PORT, &[host(1), bad]),
            Err(Errno::EINVAL)
        );
    }
    assert_eq!(r.add_route(ORIGIN, 0, &[host(1)]), Err(Errno::EINVAL));
    // A replica equal to the origin or to the tunnel source would loop.
    assert_eq!(r.add_route(ORIGIN, PORT, &[ORIGIN]), Err(Errno::EINVAL));
    assert_eq!(r.add_route(ORIGIN, PORT, &[TUNNEL]), Err(Errno::EINVAL));
    // A replica listed twice.
    assert_eq!(
        r.add_route(ORIGIN, PORT, &[host(1), host(2), host(1)]),
        Err(Errno::EINVAL)
    );
    // Too many replicas.
    assert_eq!(
        r.add_route(ORIGIN, PORT, &hosts(MAX_REPLICAS as u8 + 1)),
        Err(Errno::ENOSPC)
    );
    assert_eq!(r.routes().count(), 0, "failed adds leave no trace");

    r.add_route(ORIGIN, PORT, &hosts(MAX_REPLICAS as u8 - 1))
        .unwrap();
    assert_eq!(r.add_route(ORIGIN, PORT, &[host(9)]), Err(Errno::EEXIST));
    assert_eq!(r.add_route(ORIGIN, PORT, &[]), Err(Errno::EEXIST));

    // add_replica
    assert_eq!(r.add_replica(ORIGIN, PORT, host(1)), Err(Errno::EEXIST));
    assert_eq!(r.add_replica(ORIGIN, 81, host(20)), Err(Errno::ENOENT));
    assert_eq!(r.add_replica(OTHER, PORT, host(20)), Err(Errno::ENOENT));
    assert_eq!(r.add_replica(ORIGIN, 0, host(20)), Err(Errno::EINVAL));
    for bad in bad_addrs.into_iter().chain([ORIGIN, TUNNEL]) {
        assert_eq!(r.add_replica(ORIGIN, PORT, bad), Err(Errno::EINVAL));
    }
    r.add_replica(ORIGIN, PORT, host(20)).unwrap();
    assert_eq!(r.lookup(ORIGIN, PORT).unwrap().replicas.len(), MAX_REPLICAS);
    assert_eq!(r.add_replica(ORIGIN, PORT, host(21)), Err(Errno::ENOSPC));

    // remove_*
    assert_eq!(r.remove_replica(ORIGIN, PORT, host(21)), Err(Errno::ENOENT));
    assert_eq!(r.remove_replica(ORIGIN, 81, host(1)), Err(Errno::ENOENT));
    assert_eq!(r.remove_route(ORIGIN, 81), Err(Errno::ENOENT));
    assert_eq!(r.remove_route(OTHER, PORT), Err(Errno::ENOENT));
    r.remove_route(ORIGIN, PORT).unwrap();
    assert_eq!(r.remove_route(ORIGIN, PORT), Err(Errno::ENOENT));

    // A full table.
    for i in 0..MAX_ROUTES {
        r.add_route(ORIGIN, 1000 + i as u16, &[host(1)]).unwrap();
    }
    assert_eq!(r.add_route(ORIGIN, 999, &[host(1)]), Err(Errno::ENOSPC));
    // EEXIST is reported before ENOSPC.
    assert_eq!(r.add_route(ORIGIN, 1000, &[host(1)]), Err(Errno::EEXIST));
    r.remove_route(ORIGIN, 1005).unwrap();
    r.add_route(ORIGIN, 999, &[host(1)]).unwrap();
    assert_eq!(r.routes().count(), MAX_ROUTES);
}

#[test]
fn too_big_with_df_and_the_tunnel_mss() {
    let mut r = Redirector::new(TUNNEL, MTU);
    r.add_route(ORIGIN, PORT, &hosts(2)).unwrap();
    // tcp_packet has 12 bytes of TCP options: 20 + 32 + payload.
    let fits = tcp_packet(ORIGIN, PORT, &[1; 1500 - 20 - 52], true);
    assert_eq!(fits.len() + ipip::IPIP_OVERHEAD, 1500);
    let (d, copies) = run(&mut r, &fits);
    assert_eq!(d, Decision::Tunneled { copies: 2 });
    assert_fan_out(&copies, &hosts(2), &fits);

    let big = tcp_packet(ORIGIN, PORT, &[1; 1500 - 20 - 52 + 1], true);
    let (d, copies) = run(&mut r, &big);
    assert_eq!(d, Decision::Dropped(DropReason::TooBig));
    assert!(copies.is_empty());

    // The redirector can answer with ICMP "fragmentation needed", MTU 1480.
    let mut icmp = [0u8; 128];
    let n = r.icmp_frag_needed(&big, &mut icmp).unwrap();
    let (ih, msg) = Ipv4Header::parse(&icmp[..n]).unwrap();
    assert_eq!((ih.src, ih.dst, ih.protocol), (TUNNEL, CLIENT, PROTO_ICMP));
    assert_eq!((msg[0], msg[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([msg[6], msg[7]]), 1480);

    // Without DF the packet goes anyway, DF clear outside too.
    let big_nodf = tcp_packet(ORIGIN, PORT, &[1; 1500 - 20 - 52 + 1], false);
    let (d, copies) = run(&mut r, &big_nodf);
    assert_eq!(d, Decision::Tunneled { copies: 2 });
    assert_fan_out(&copies, &hosts(2), &big_nodf);
    assert!(!ipip::decapsulate(&copies[0].1).unwrap().0.dont_frag);

    // A scratch buffer too small is TooBig too, never a panic.
    let mut small = [0u8; 100];
    let d = r.route(&fits, &mut small, |_, _| panic!("nothing fits"));
    assert_eq!(d, Decision::Dropped(DropReason::TooBig));
    let mut huge = vec![0u8; 70_000];
    let max = {
        let mut p = tcp_packet(ORIGIN, PORT, &vec![0; 65_535 - 52], false);
        p.truncate(65_535);
        p
    };
    assert_eq!(
        r.route(&max, &mut huge, |_, _| panic!("cannot exceed 65535")),
        Decision::Dropped(DropReason::TooBig)
    );
    assert_eq!(r.stats().too_big, 3);

    // A full-sized segment at the tunnel MSS fits exactly (a plain header, no options).
    let mss = tunnel_mss(u32::from(MTU)) as usize;
    assert_eq!(mss, 1440);
    let seg = {
        let th = TcpHeader {
            src_port: 1,
            dst_port: PORT,
            flags: TcpFlags::ACK,
            ..TcpHeader::default()
        };
        let mut p = vec![0u8; 40 + mss];
        tcp::emit_segment(&th, &[], &vec![9; mss], CLIENT, ORIGIN, &mut p[20..]).unwrap();
        Ipv4Header::new(CLIENT, ORIGIN, PROTO_TCP, 20 + mss, 64)
            .emit(&mut p)
            .unwrap();
        p
    };
    let (d, copies) = run(&mut r, &seg);
    assert_eq!(d, Decision::Tunneled { copies: 2 });
    assert_eq!(copies[0].1.len(), usize::from(MTU));

    // Lowering the MTU at runtime applies to the next packet.
    r.set_tunnel_mtu(1400);
    assert_eq!(run(&mut r, &seg).0, Decision::Dropped(DropReason::TooBig));
}

#[test]
fn malformed_packets_are_dropped() {
    let mut r = Redirector::new(TUNNEL, MTU);
    r.add_route(ORIGIN, PORT, &hosts(2)).unwrap();
    let good = tcp_packet(ORIGIN, PORT, b"ok", true);
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x45],
        good[..19].to_vec(),
        // Truncated below its total length.
        good[..good.len() - 1].to_vec(),
    ];
    // Bad header checksum.
    let mut p = good.clone();
    p[8] ^= 0x10;
    cases.push(p);
    // IHL 4.
    let mut p = good.clone();
    p[0] = 0x44;
    fix_ip_checksum(&mut p);
    cases.push(p);
    // Version 7.
    let mut p = good.clone();
    p[0] = 0x75;
    cases.push(p);
    // TCP to a routed origin with only 3 bytes of TCP header.
    let mut p = good[..23].to_vec();
    p[2..4].copy_from_slice(&23u16.to_be_bytes());
    fix_ip_checksum(&mut p);
    cases.push(p);
    for p in &cases {
        let (d, copies) = run(&mut r, p);
        assert_eq!(d, Decision::Dropped(DropReason::Malformed), "{p:02x?}");
        assert!(copies.is_empty());
    }
    assert_eq!(r.stats().malformed, cases.len() as u64);

    // Four bytes of TCP are enough to route on (the redirector does not check TCP checksums).
    let mut p = good[..24].to_vec();
    p[2..4].copy_from_slice(&24u16.to_be_bytes());
    fix_ip_checksum(&mut p);
    let (d, copies) = run(&mut r, &p);
    assert_eq!(d, Decision::Tunneled { copies: 2 });
    assert_fan_out_raw(&copies, &p);
}

/// Like [`assert_fan_out`] without checking the inner TCP.
fn assert_fan_out_raw(copies: &[(Ipv4Addr, Vec<u8>)], inner: &[u8]) {
    for (_, bytes) in copies {
        assert_eq!(ipip::decapsulate(bytes).unwrap().1, inner);
    }
}

#[test]
fn udp_checksum_hand_computed() {
    // 192.0.2.1:7 -> 192.0.2.2:7, payload "ab", UDP length 10.
    //   pseudo-header: c000 + 0201 + c000 + 0202 + 0011 + 000a = 0x1_841e
    //   UDP:           0007 + 0007 + 000a + 0000 + 6162        = 0x617a
    //   0x1_841e + 0x617a = 0x1_e598 -> fold 0xe599 -> complement 0x1a66
    let (a, b) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let mut buf = [0u8; 10];
    assert_eq!(udp::emit_datagram(7, 7, b"ab", a, b, &mut buf), Ok(10));
    assert_eq!(buf, [0, 7, 0, 7, 0, 10, 0x1a, 0x66, b'a', b'b']);
    let (h, payload) = udp::parse_datagram(&buf, a, b, true).unwrap();
    assert_eq!(h.checksum, 0x1a66);
    assert_eq!(payload, b"ab");
    buf[9] ^= 1;
    assert_eq!(
        udp::parse_datagram(&buf, a, b, true),
        Err(WireError::BadChecksum)
    );
}

#[test]
fn udp_inside_ipip_round_trip() {
    let mut pkt = [0u8; 128];
    let n = udp::emit_ipv4_udp(CLIENT, ORIGIN, 4000, 5000, b"heartbeat", 32, &mut pkt).unwrap();
    let mut tun = [0u8; 160];
    let m = ipip::encapsulate(TUNNEL, host(1), &pkt[..n], 64, &mut tun).unwrap();
    assert_eq!(m, n + ipip::IPIP_OVERHEAD);
    let (outer, inner) = ipip::decapsulate(&tun[..m]).unwrap();
    assert_eq!(
        (outer.src, outer.dst, outer.protocol),
        (TUNNEL, host(1), PROTO_IPIP)
    );
    assert_eq!(inner, &pkt[..n]);
    let (ih, dgram) = Ipv4Header::parse(inner).unwrap();
    assert_eq!(ih.protocol, PROTO_UDP);
    let (uh, payload) = udp::parse_datagram(dgram, ih.src, ih.dst, true).unwrap();
    assert_eq!((uh.src_port, uh.dst_port), (4000, 5000));
    assert_eq!(payload, b"heartbeat");
}

fn routed() -> Redirector {
    let mut r = Redirector::new(TUNNEL, 576);
    r.add_route(ORIGIN, PORT, &hosts(3)).unwrap();
    r.add_route(OTHER, 443, &[]).unwrap();
    r
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn route_never_panics_on_garbage(data in proptest::collection::vec(any::<u8>(), 0..200),
                                     scratch_len in 0usize..700) {
        let mut r = routed();
        let mut scratch = vec![0u8; scratch_len];
        let before = *r.stats();
        let mut emitted = 0usize;
        let d = r.route(&data, &mut scratch, |_, _| emitted += 1);
        if let Decision::Tunneled { copies } = d {
            prop_assert_eq!(copies, emitted);
        } else {
            prop_assert_eq!(emitted, 0);
        }
        prop_assert_ne!(*r.stats(), before);
    }

    /// Valid routed packets with random bytes overwritten (the IP checksum fixed up or not):
    /// whatever is tunnelled decapsulates to the packet as received.
    #[test]
    fn route_never_panics_on_mutated_packets(
        payload in proptest::collection::vec(any::<u8>(), 0..600),
        edits in proptest::collection::vec((0usize..64, any::<u8>()), 0..6),
        fix in any::<bool>(), df in any::<bool>(), cut in any::<u16>(),
        to_other in any::<bool>(),
    ) {
        let mut r = routed();
        let mut p = tcp_packet(if to_other { OTHER } else { ORIGIN },
                               if to_other { 443 } else { PORT }, &payload, df);
        for (at, v) in edits {
            if let Some(b) = p.get_mut(at) {
                *b = v;
            }
        }
        p.truncate(usize::from(cut).max(1));
        if fix && p.len() >= 20 && usize::from(p[0] & 0x0f) * 4 <= p.len() {
            fix_ip_checksum(&mut p);
        }
        let mut scratch = vec![0u8; 620];
        let mut copies = Vec::new();
        let d = r.route(&p, &mut scratch, |dst, b| copies.push((dst, b.to_vec())));
        match d {
            Decision::Tunneled { copies: n } => {
                prop_assert_eq!(n, 3);
                let (hdr, _) = Ipv4Header::parse(&p).unwrap();
                let inner = &p[..usize::from(hdr.total_len)];
                prop_assert!(inner.len() + 20 <= 576 || !hdr.dont_frag);
                for ((dst, bytes), replica) in copies.iter().zip(hosts(3)) {
                    prop_assert_eq!(*dst, replica);
                    let (outer, back) = ipip::decapsulate(bytes).unwrap();
                    prop_assert_eq!(outer.dst, replica);
                    prop_assert_eq!(back, inner);
                }
            }
            _ => prop_assert!(copies.is_empty()),
        }
    }
}

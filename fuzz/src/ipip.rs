//! The body of the `ipip_redirector` target: the redirector's classification and
//! encapsulation ([`Redirector::route`]), its ICMP "fragmentation needed" answer, and a host
//! server's IP-in-IP decapsulation, on arbitrary packets.
//!
//! # Input format ([`Rd`])
//!
//! `mtu: u16` (the tunnel MTU), `n: u8` (`n % 5` routes), per route `origin: u8` (`% 4`:
//! 192.0.2.80, 192.0.2.81, 203.0.113.10, 198.51.100.10), `port: u16`, `replicas: u8` (`% 5`:
//! that many of the host servers 198.51.100.10–12 in a rotated order; 4 adds one and removes it
//! again, leaving the route empty). Then operations, a tag byte (`% 5`) and fields:
//!
//! | tag | operation | fields |
//! |-----|-----------|--------|
//! | 0 | a packet to the redirector | `fix: u8`, `scratch: u8`, blob |
//! | 1 | a TCP packet to a routed service, built here | `route: u8`, `df: u8`, `len: u16`, `opts: u8`, `frag: u16` |
//! | 2 | a packet tunnelled to the host from the redirector's address | `fix: u8`, blob |
//! | 3 | the same from another address | `fix: u8`, blob |
//! | 4 | the redirector's tunnel MTU changes | `mtu: u16` |
//!
//! `fix` bit 0 sets the IPv4 total length to the blob's length, bit 1 writes a correct header
//! checksum (if the blob has a header's worth of bytes), so that the fuzzer reaches past
//! `Ipv4Header::parse` without having to learn the checksum. `scratch % 3` picks the scratch
//! buffer: 70 000 bytes, the tunnel MTU, or 40 bytes.
//!
//! # What is checked
//!
//! No panic; exactly one of the redirector's decision counters moves per packet and
//! `tunneled_copies` by the number of copies; the decision agrees with an independent reading
//! of the packet (a tunnelled packet is valid TCP to a routed service with replicas; a
//! forwarded valid TCP packet is to no route; a TooBig one is really too big); every copy is a
//! valid IPv4 packet, protocol 4, from the tunnel source to the route's replicas in order,
//! with the inner TOS and DF, within the tunnel MTU when DF is set, and decapsulates to the
//! input byte for byte (up to its total length). An ICMP answer is well formed: a valid IPv4
//! header from the tunnel source to the packet's source, a correct ICMP checksum, type 3 code
//! 4, the tunnel MTU less 20, the quoted header and 8 bytes. The host counts each IP-in-IP
//! packet once: from a stranger as `tunnel_from_stranger`, from its redirector as
//! `tunneled_in` when the inner packet is valid IPv4 and as `tunnel_malformed` otherwise; its
//! `poll_transmit` runs dry.

use std::hint::black_box;
use std::net::Ipv4Addr;

use hydranet_core::ft::host::Host;
use hydranet_core::ft::redirector::{
    Decision, DropReason, Redirector, ICMP_FRAG_NEEDED_MAX_LEN, TUNNEL_TTL,
};
use hydranet_core::wire::ipv4::{Ipv4Header, PROTO_ICMP, PROTO_IPIP, PROTO_TCP};
use hydranet_core::Instant;

use crate::ackchan::{make_host, member_addr, CLIENT, REDIRECTOR, STRANGER};
use crate::net;
use crate::rd::Rd;

const ORIGINS: [Ipv4Addr; 4] = [
    Ipv4Addr::new(192, 0, 2, 80),
    Ipv4Addr::new(192, 0, 2, 81),
    Ipv4Addr::new(203, 0, 113, 10),
    Ipv4Addr::new(198, 51, 100, 10),
];

struct H {
    r: Redirector,
    host: Host<'static>,
    now: Instant,
    buf: Vec<u8>,
}

/// Total length and header checksum made right, as `fix` asks.
fn fix_header(p: &mut [u8], fix: u8) {
    if p.len() < 20 {
        return;
    }
    if fix & 1 != 0 {
        let n = p.len().min(65535) as u16;
        p[2..4].copy_from_slice(&n.to_be_bytes());
    }
    if fix & 2 != 0 {
        let hl = (usize::from(p[0] & 0x0f) * 4).clamp(20, p.len().min(60));
        p[10] = 0;
        p[11] = 0;
        let c = net::finish(net::sum(&p[..hl], 0));
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

impl H {
    fn route(&mut self, packet: &[u8], scratch_sel: u8) {
        let mtu = self.r.tunnel_mtu();
        let mut scratch = vec![
            0u8;
            match scratch_sel % 3 {
                0 => 70_000,
                1 => usize::from(mtu),
                _ => 40,
            }
        ];
        let before = *self.r.stats();
        let mut copies: Vec<(Ipv4Addr, Vec<u8>)> = Vec::new();
        let d = self.r.route(packet, &mut scratch, |dst, b| {
            copies.push((dst, b.to_vec()))
        });
        let after = *self.r.stats();
        let moved = [
            after.forwarded - before.forwarded,
            after.tunneled_packets - before.tunneled_packets,
            after.malformed - before.malformed,
            after.too_big - before.too_big,
            after.no_replicas - before.no_replicas,
        ];
        assert_eq!(moved.iter().sum::<u64>(), 1, "{d:?} counted {moved:?}");
        assert_eq!(
            after.tunneled_copies - before.tunneled_copies,
            copies.len() as u64
        );

        let parsed = Ipv4Header::parse(packet);
        let tcp_ports = |h: &Ipv4Header, p: &[u8]| {
            (h.protocol == PROTO_TCP && p.len() >= 4).then(|| u16::from_be_bytes([p[2], p[3]]))
        };
        match d {
            Decision::Tunneled { copies: n } => {
                assert_eq!(moved[1], 1);
                let (h, payload) = parsed.expect("tunnelled an invalid packet");
                let port = tcp_ports(&h, payload).expect("tunnelled a packet that is no TCP");
                let route = self
                    .r
                    .lookup(h.dst, port)
                    .expect("tunnelled without a route");
                assert_eq!(n, copies.len());
                assert_eq!(n, route.replicas.len());
                let inner = &packet[..usize::from(h.total_len)];
                for ((dst, c), want) in copies.iter().zip(&route.replicas) {
                    assert_eq!(dst, want);
                    let (o, body) = Ipv4Header::parse(c).expect("a copy does not parse");
                    assert_eq!(c.len(), inner.len() + 20);
                    assert_eq!(body, inner, "the inner packet is not carried byte for byte");
                    assert_eq!(
                        (o.src, o.dst, o.protocol, o.ttl),
                        (self.r.tunnel_src(), *want, PROTO_IPIP, TUNNEL_TTL)
                    );
                    assert_eq!((o.tos, o.dont_frag), (h.tos, h.dont_frag));
                    if h.dont_frag {
                        assert!(c.len() <= usize::from(mtu), "a DF copy beyond the MTU");
                    }
                }
                // Copies for this host arrive through its tunnel.
                for (dst, c) in &copies {
                    if *dst == self.host.addr {
                        let t = self.host.stats.tunneled_in;
                        self.host.handle_packet(self.now, c);
                        assert_eq!(self.host.stats.tunneled_in, t + 1);
                    }
                }
                self.drain();
            }
            Decision::Forward => {
                assert!(copies.is_empty());
                if let Ok((h, payload)) = &parsed {
                    if let Some(port) = tcp_ports(h, payload) {
                        assert!(
                            self.r.lookup(h.dst, port).is_none(),
                            "a packet for a route forwarded"
                        );
                    }
                }
            }
            Decision::Dropped(why) => {
                assert!(copies.is_empty());
                match (why, &parsed) {
                    (DropReason::NoReplicas, Ok((h, p))) => {
                        let port = tcp_ports(h, p).unwrap();
                        assert!(self.r.lookup(h.dst, port).unwrap().replicas.is_empty());
                    }
                    (DropReason::NoReplicas, Err(_)) => panic!("NoReplicas for an invalid packet"),
                    (DropReason::TooBig, Ok((h, _))) => {
                        let total = usize::from(h.total_len) + 20;
                        assert!(
                            (total > usize::from(mtu) && h.dont_frag)
                                || total > 65535
                                || total > scratch.len(),
                            "TooBig for {total} bytes, MTU {mtu}"
                        );
                    }
                    (DropReason::TooBig, Err(_)) => panic!("TooBig for an invalid packet"),
                    (DropReason::Malformed, _) => {}
                }
                if why == DropReason::TooBig {
                    self.icmp(packet, true);
                }
            }
        }
        self.icmp(packet, false);
    }

    fn icmp(&self, packet: &[u8], due: bool) {
        let mut buf = [0u8; ICMP_FRAG_NEEDED_MAX_LEN];
        let Some(n) = self.r.icmp_frag_needed(packet, &mut buf) else {
            if due {
                // Refused only for a reason the documentation gives.
                let (h, _) = Ipv4Header::parse(packet).unwrap();
                assert!(
                    !h.dont_frag
                        || h.protocol == PROTO_ICMP
                        || h.src.is_unspecified()
                        || h.src.is_multicast()
                        || h.src.is_broadcast(),
                    "no ICMP answer for a TooBig packet with DF"
                );
            }
            return;
        };
        assert!(n <= ICMP_FRAG_NEEDED_MAX_LEN);
        let (h, _) = Ipv4Header::parse(packet).expect("ICMP answer to an invalid packet");
        assert!(h.dont_frag);
        let (o, icmp) = Ipv4Header::parse(&buf[..n]).expect("the ICMP answer does not parse");
        assert_eq!(
            (o.src, o.dst, o.protocol),
            (self.r.tunnel_src(), h.src, PROTO_ICMP)
        );
        assert_eq!(net::finish(net::sum(icmp, 0)), 0, "bad ICMP checksum");
        assert_eq!((icmp[0], icmp[1]), (3, 4));
        let mtu = u16::from_be_bytes([icmp[6], icmp[7]]);
        assert_eq!(mtu, self.r.tunnel_mtu().saturating_sub(20));
        let hl = usize::from(h.header_len);
        let quote = hl + (usize::from(h.total_len) - hl).min(8);
        assert_eq!(&icmp[8..], &packet[..quote]);
        black_box(o);
    }

    /// `payload` behind an IP-in-IP header from `src` to the host.
    fn tunnel_in(&mut self, src: Ipv4Addr, payload: &[u8]) {
        let mut p = vec![0u8; 20];
        Ipv4Header::new(src, self.host.addr, PROTO_IPIP, payload.len(), 64)
            .emit(&mut p)
            .unwrap();
        p.extend_from_slice(payload);
        let before = self.host.stats.clone();
        self.host.handle_packet(self.now, &p);
        let s = &self.host.stats;
        let moved = (
            s.tunnel_from_stranger - before.tunnel_from_stranger,
            s.tunneled_in - before.tunneled_in,
            s.tunnel_malformed - before.tunnel_malformed,
        );
        if src != REDIRECTOR {
            assert_eq!(moved, (1, 0, 0), "a tunnel from a stranger");
        } else if Ipv4Header::parse(payload).is_ok() {
            assert_eq!(moved, (0, 1, 0));
        } else {
            assert_eq!(moved, (0, 0, 1));
        }
        self.drain();
    }

    fn drain(&mut self) {
        let mut n = 0;
        while let Some(len) = self.host.poll_transmit(self.now, &mut self.buf) {
            n += 1;
            assert!(n < 10_000, "the host's poll_transmit does not run dry");
            black_box(&self.buf[..len]);
        }
    }

    fn apply(&mut self, tag: u8, r: &mut Rd<'_>) -> Option<()> {
        match tag % 5 {
            0 => {
                let (fix, scratch) = (r.u8()?, r.u8()?);
                let mut p = r.blob(4000)?.to_vec();
                fix_header(&mut p, fix);
                self.route(&p, scratch);
            }
            1 => {
                let routes: Vec<(Ipv4Addr, u16)> =
                    self.r.routes().map(|x| (x.origin, x.port)).collect();
                let sel = usize::from(r.u8()?);
                let df = r.u8()?;
                let len = usize::from(r.u16()?) % 3000;
                let opts = usize::from(r.u8()? % 11) * 4;
                let frag = r.u16()?;
                let (dst, port) = routes.get(sel % routes.len().max(1)).copied()?;
                let s = net::Seg {
                    sport: 40000,
                    dport: port,
                    seq: 1,
                    flags: net::ACK,
                    win: 1000,
                    ..Default::default()
                };
                let mut p = net::packet(CLIENT, dst, df >> 2, &s, &[1; 40], &vec![7; len]);
                if opts > 0 {
                    // IP options (NOPs) between header and segment.
                    let body = p.split_off(20);
                    p.extend(std::iter::repeat_n(1u8, opts));
                    p.extend(body);
                    p[0] = 0x45 + (opts / 4) as u8;
                }
                p[6] = if df & 1 != 0 { 0x40 } else { 0 };
                if df & 2 != 0 {
                    p[6] |= (frag >> 8) as u8 & 0x3f;
                    p[7] = frag as u8;
                }
                fix_header(&mut p, 3);
                self.route(&p, df >> 6);
            }
            2 | 3 => {
                let fix = r.u8()?;
                let mut p = r.blob(4000)?.to_vec();
                fix_header(&mut p, fix);
                let src = if tag % 5 == 2 { REDIRECTOR } else { STRANGER };
                self.tunnel_in(src, &p);
            }
            _ => self.r.set_tunnel_mtu(r.u16()?),
        }
        Some(())
    }
}

pub fn run(data: &[u8]) {
    let mut r = Rd(data);
    let Some(mtu) = r.u16() else { return };
    let mut h = H {
        r: Redirector::new(REDIRECTOR, mtu),
        host: make_host(0, 2),
        now: Instant::from_millis(1),
        buf: vec![0; 70_000],
    };
    let n = r.u8().unwrap_or(0) % 5;
    for _ in 0..n {
        let (Some(o), Some(port), Some(k)) = (r.u8(), r.u16(), r.u8()) else {
            break;
        };
        let origin = ORIGINS[usize::from(o % 4)];
        let k = k % 5;
        let replicas: Vec<Ipv4Addr> = (0..k.min(3))
            .map(|i| member_addr((i + o / 4) % 3))
            .filter(|&a| a != origin)
            .collect();
        if h.r.add_route(origin, port, &replicas).is_ok() && k == 4 {
            let extra = member_addr(2);
            if h.r.add_replica(origin, port, extra).is_ok() {
                h.r.remove_replica(origin, port, extra).unwrap();
            }
            for a in replicas {
                h.r.remove_replica(origin, port, a).unwrap();
            }
        }
    }
    while let Some(t) = r.u8() {
        if h.apply(t, &mut r).is_none() {
            break;
        }
    }
}

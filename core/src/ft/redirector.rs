//! The redirector role: a router with a table `(origin IPv4, port) -> replica host servers`.
//!
//! A TCP packet from a client to an origin address and port in the table is wrapped in IP-in-IP
//! (RFC 2003, [`wire::ipip`](crate::wire::ipip)) and tunnelled to **every** replica of that route
//! — HydraNet-FT's one-to-many delivery, which keeps the replicas' receive buffers identical.
//! Everything else is left to the caller's ordinary forwarding.
//!
//! The redirector is sans-IO: [`Redirector::route`] classifies one packet and hands each
//! encapsulated copy to a closure; the caller writes them to its tunnel (a TUN device, a pfil hook
//! returning mbufs...). It allocates nothing and holds at most [`MAX_ROUTES`] routes of
//! [`MAX_REPLICAS`] replicas each.
//!
//! The inner packet is carried byte for byte. Its TTL is not decremented here: the caller's IP
//! forwarding already did that when it routed the packet to the redirector (in the TUN harness,
//! Linux decrements it on the way into the TUN device).
//!
//! ```
//! use core::net::Ipv4Addr;
//! use hydranet_core::ft::redirector::{Decision, Redirector};
//! use hydranet_core::wire::{ipip, ipv4::{Ipv4Header, PROTO_TCP}};
//!
//! let origin = Ipv4Addr::new(203, 0, 113, 80);
//! let hosts = [Ipv4Addr::new(198, 51, 100, 11), Ipv4Addr::new(198, 51, 100, 12)];
//! let mut r = Redirector::new(Ipv4Addr::new(198, 51, 100, 1), 1500);
//! r.add_route(origin, 80, &hosts).unwrap();
//!
//! // A (header-only) TCP packet from a client to origin:80.
//! let mut pkt = [0u8; 40];
//! Ipv4Header::new(Ipv4Addr::new(192, 0, 2, 10), origin, PROTO_TCP, 20, 64).emit(&mut pkt).unwrap();
//! pkt[20..24].copy_from_slice(&[0xc3, 0x50, 0, 80]); // ports 50000 -> 80
//!
//! let mut scratch = [0u8; 1520];
//! let mut sent = 0;
//! let d = r.route(&pkt, &mut scratch, |host, bytes| {
//!     assert_eq!(host, hosts[sent]);
//!     assert_eq!(ipip::decapsulate(bytes).unwrap().1, &pkt[..]);
//!     sent += 1;
//! });
//! assert_eq!(d, Decision::Tunneled { copies: 2 });
//! ```

use core::net::Ipv4Addr;

use heapless::Vec;

use crate::wire::checksum;
use crate::wire::ipip::{self, IPIP_OVERHEAD};
use crate::wire::ipv4::{self, Ipv4Header, PROTO_ICMP, PROTO_TCP};
use crate::wire::{tcp, WireError};
use crate::Errno;

/// Routes a redirector holds.
pub const MAX_ROUTES: usize = 32;
/// Replicas (host servers) one route fans out to.
pub const MAX_REPLICAS: usize = 8;

/// TTL of the outer (tunnel) header: FreeBSD's `net.inet.ip.ttl` default.
pub const TUNNEL_TTL: u8 = 64;

/// The largest IPv4 packet.
const MAX_PACKET: usize = u16::MAX as usize;

/// Bytes of the offending datagram's payload an ICMP error quotes after its IP header: FreeBSD's
/// `net.inet.icmp.quotelen` default.
const ICMP_QUOTELEN: usize = 8;
/// ICMP destination unreachable, code "fragmentation needed and DF set" (RFC 792, RFC 1191).
const ICMP_UNREACH: u8 = 3;
const ICMP_UNREACH_NEEDFRAG: u8 = 4;
/// Length of the ICMP error header: type, code, checksum, unused, next-hop MTU.
const ICMP_ERROR_HEADER_LEN: usize = 8;
/// The longest ICMP "fragmentation needed" message [`Redirector::icmp_frag_needed`] writes: IP
/// header, ICMP header, and a quoted header of up to 60 bytes plus [`ICMP_QUOTELEN`].
pub const ICMP_FRAG_NEEDED_MAX_LEN: usize =
    ipv4::HEADER_LEN + ICMP_ERROR_HEADER_LEN + 60 + ICMP_QUOTELEN;

/// The MSS a fault-tolerant port advertises on a path of MTU `mtu`: the MTU less an IPv4 header,
/// a TCP header and the tunnel's [`IPIP_OVERHEAD`] (`mtu - 60`, 0 for a nonsensical MTU below
/// that).
///
/// Clients' segments reach the replicas through the redirector's IP-in-IP tunnel, 20 bytes
/// longer than the client sent them. The original HydraNet advertised the ordinary `mtu - 40` and
/// suffered fragmentation (or, with DF, black-holed segments) for full-sized segments near the
/// MTU; advertising this smaller MSS keeps every encapsulated client segment within the MTU.
pub fn tunnel_mss(mtu: u32) -> u32 {
    mtu.saturating_sub((ipv4::HEADER_LEN + tcp::HEADER_LEN + IPIP_OVERHEAD) as u32)
}

/// One entry of the table: TCP to `origin:port` goes to every address in `replicas`, in order
/// (the group's rank order, primary first, when the control plane lists them so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub origin: Ipv4Addr,
    pub port: u16,
    pub replicas: Vec<Ipv4Addr, MAX_REPLICAS>,
}

/// What [`Redirector::route`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Decision {
    /// Not for a routed service: the caller forwards the original bytes as usual.
    Forward,
    /// Encapsulated and handed to `emit` once per replica.
    Tunneled { copies: usize },
    /// Dropped; the caller sends nothing (for [`DropReason::TooBig`] it may answer with
    /// [`Redirector::icmp_frag_needed`]).
    Dropped(DropReason),
}

/// Why [`Redirector::route`] dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DropReason {
    /// Not a valid IPv4 packet (FreeBSD's `ip_input()` would have dropped it too); a TCP packet
    /// to a routed origin too short to hold its ports; or the first fragment of a routed flow
    /// (replicas do not reassemble, so tunnelling it is useless).
    Malformed,
    /// The encapsulated packet would exceed the tunnel MTU and the inner packet has DF set; or
    /// it would exceed 65535 bytes or the caller's scratch buffer.
    TooBig,
    /// The route exists but lists no replica.
    NoReplicas,
}

/// Counters of [`Redirector::route`]'s decisions. They wrap rather than overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RedirectorStats {
    /// Packets left to ordinary forwarding ([`Decision::Forward`]).
    pub forwarded: u64,
    /// Packets tunnelled ([`Decision::Tunneled`]).
    pub tunneled_packets: u64,
    /// Encapsulated copies emitted (the sum of `copies`).
    pub tunneled_copies: u64,
    pub malformed: u64,
    pub too_big: u64,
    pub no_replicas: u64,
}

/// The redirector's state: its table, tunnel parameters and counters.
#[derive(Debug, Clone)]
pub struct Redirector {
    tunnel_src: Ipv4Addr,
    tunnel_mtu: u16,
    routes: Vec<Route, MAX_ROUTES>,
    stats: RedirectorStats,
}

/// Whether `addr` can be an origin or a replica: a unicast address (not 0.0.0.0, not multicast,
/// not the limited broadcast).
fn is_unicast(addr: Ipv4Addr) -> bool {
    !(addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast())
}

/// Protocol, destination and (for a first fragment) the payload of an IPv4 fragment. Only called
/// once [`Ipv4Header::parse`] has returned [`WireError::Fragmented`], i.e. after the header passed
/// every other check; reads with `get` all the same.
fn fragment_info(packet: &[u8]) -> Option<(u8, Ipv4Addr, Option<&[u8]>)> {
    let fixed = packet.first_chunk::<{ ipv4::HEADER_LEN }>()?;
    let header_len = usize::from(fixed[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
    let first = u16::from_be_bytes([fixed[6], fixed[7]]) & 0x1fff == 0;
    let dst = Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]);
    let payload = if first {
        packet.get(header_len..total_len)
    } else {
        None
    };
    Some((fixed[9], dst, payload))
}

/// The TCP destination port, from the first four bytes of the segment.
fn tcp_dst_port(segment: &[u8]) -> Option<u16> {
    let ports = segment.first_chunk::<4>()?;
    Some(u16::from_be_bytes([ports[2], ports[3]]))
}

impl Redirector {
    /// A redirector with an empty table. Tunnel packets leave from `tunnel_src`; an encapsulated
    /// packet (inner + 20 bytes) larger than `tunnel_mtu` is dropped if the inner has DF set.
    pub fn new(tunnel_src: Ipv4Addr, tunnel_mtu: u16) -> Self {
        Redirector {
            tunnel_src,
            tunnel_mtu,
            routes: Vec::new(),
            stats: RedirectorStats::default(),
        }
    }

    /// The outer source address of tunnelled packets.
    pub fn tunnel_src(&self) -> Ipv4Addr {
        self.tunnel_src
    }

    pub fn tunnel_mtu(&self) -> u16 {
        self.tunnel_mtu
    }

    /// Changes the tunnel MTU (say, after the tunnel link's MTU changed).
    pub fn set_tunnel_mtu(&mut self, mtu: u16) {
        self.tunnel_mtu = mtu;
    }

    fn index(&self, origin: Ipv4Addr, port: u16) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| r.origin == origin && r.port == port)
    }

    /// `EINVAL` unless `replica` may serve `origin`: unicast, and neither the origin itself nor the
    /// redirector's tunnel address (either would loop the tunnel back into the redirector).
    fn check_replica(&self, origin: Ipv4Addr, replica: Ipv4Addr) -> Result<(), Errno> {
        if !is_unicast(replica) || replica == origin || replica == self.tunnel_src {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    /// Adds a route for TCP to `origin:port`, fanning out to `replicas` in the order given
    /// (which may be empty: the service's packets are then dropped, not leaked to the origin).
    ///
    /// Errors: `EINVAL` for an origin or replica that is 0.0.0.0, multicast or 255.255.255.255,
    /// a replica equal to the origin or to the tunnel source, a replica listed twice, or port 0;
    /// `EEXIST` if the route exists; `ENOSPC` if the table is full or more than [`MAX_REPLICAS`]
    /// replicas are given.
    pub fn add_route(
        &mut self,
        origin: Ipv4Addr,
        port: u16,
        replicas: &[Ipv4Addr],
    ) -> Result<(), Errno> {
        if !is_unicast(origin) || port == 0 {
            return Err(Errno::EINVAL);
        }
        for (i, &replica) in replicas.iter().enumerate() {
            self.check_replica(origin, replica)?;
            if replicas
                .get(..i)
                .is_some_and(|seen| seen.contains(&replica))
            {
                return Err(Errno::EINVAL);
            }
        }
        if self.index(origin, port).is_some() {
            return Err(Errno::EEXIST);
        }
        let replicas = Vec::from_slice(replicas).map_err(|_| Errno::ENOSPC)?;
        self.routes
            .push(Route {
                origin,
                port,
                replicas,
            })
            .map_err(|_| Errno::ENOSPC)?;
        net_debug!("redirector: route added, port {}", port);
        Ok(())
    }

    /// Removes the route for `origin:port`, whose packets are forwarded as usual from then on.
    /// `ENOENT` if there is none.
    pub fn remove_route(&mut self, origin: Ipv4Addr, port: u16) -> Result<(), Errno> {
        let i = self.index(origin, port).ok_or(Errno::ENOENT)?;
        self.routes.remove(i);
        net_debug!("redirector: route removed, port {}", port);
        Ok(())
    }

    /// Appends `replica` to the route for `origin:port` (a replica deployed on demand; it sees
    /// the service's packets from the next one routed).
    ///
    /// Errors: `EINVAL` for port 0 or a replica [`add_route`](Self::add_route) would refuse;
    /// `ENOENT` if the route does not exist; `EEXIST` if the replica is already listed; `ENOSPC`
    /// if the route has [`MAX_REPLICAS`].
    pub fn add_replica(
        &mut self,
        origin: Ipv4Addr,
        port: u16,
        replica: Ipv4Addr,
    ) -> Result<(), Errno> {
        if port == 0 {
            return Err(Errno::EINVAL);
        }
        self.check_replica(origin, replica)?;
        let i = self.index(origin, port).ok_or(Errno::ENOENT)?;
        let route = self.routes.get_mut(i).ok_or(Errno::ENOENT)?;
        if route.replicas.contains(&replica) {
            return Err(Errno::EEXIST);
        }
        route.replicas.push(replica).map_err(|_| Errno::ENOSPC)
    }

    /// Removes `replica` from the route for `origin:port` (a replica recalled, or found dead),
    /// keeping the others in order. Removing the last one leaves the route in place with no
    /// replica, so the service's packets are dropped ([`DropReason::NoReplicas`]) rather than sent
    /// to the origin. `ENOENT` if the route or the replica is not there.
    pub fn remove_replica(
        &mut self,
        origin: Ipv4Addr,
        port: u16,
        replica: Ipv4Addr,
    ) -> Result<(), Errno> {
        let i = self.index(origin, port).ok_or(Errno::ENOENT)?;
        let route = self.routes.get_mut(i).ok_or(Errno::ENOENT)?;
        let j = route
            .replicas
            .iter()
            .position(|&r| r == replica)
            .ok_or(Errno::ENOENT)?;
        route.replicas.remove(j);
        Ok(())
    }

    /// The table, in the order routes were added.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// The route for TCP to `dst:dport`, if any.
    pub fn lookup(&self, dst: Ipv4Addr, dport: u16) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.origin == dst && r.port == dport)
    }

    fn is_origin(&self, addr: Ipv4Addr) -> bool {
        self.routes.iter().any(|r| r.origin == addr)
    }

    pub fn stats(&self) -> &RedirectorStats {
        &self.stats
    }

    /// Classifies one packet arriving from the client side and tunnels it if it belongs to a
    /// routed service.
    ///
    /// A TCP packet to a routed `(origin, port)` — the port is the TCP destination port, so the
    /// segment must hold at least its first four bytes — is encapsulated into `scratch` once per
    /// replica, and each copy is handed to `emit` with its outer destination, in the route's
    /// replica order. Every copy carries the same inner bytes; `emit` must finish with a copy
    /// before returning (`scratch` is rewritten for the next).
    ///
    /// Anything else is [`Decision::Forward`] and the caller forwards the original bytes:
    /// packets of other protocols (IP-in-IP included), TCP to addresses or ports that are not
    /// routed, packets that are not IPv4 at all (an IPv6 packet on the same interface), and IPv4
    /// fragments that are not the first fragment of a routed flow. Invalid IPv4 packets are
    /// dropped as [`DropReason::Malformed`], as are the first fragments of routed flows (see
    /// there). An encapsulated packet larger than the tunnel MTU is [`DropReason::TooBig`] when
    /// the inner has DF set; without DF it is emitted anyway (its outer header has DF clear too,
    /// so the path may fragment it). `scratch` must hold the inner packet plus
    /// [`IPIP_OVERHEAD`] bytes or the packet is dropped as `TooBig`; `tunnel_mtu` bytes are enough
    /// for every packet with DF.
    ///
    /// Never panics, whatever `packet` holds.
    pub fn route(
        &mut self,
        packet: &[u8],
        scratch: &mut [u8],
        emit: impl FnMut(Ipv4Addr, &[u8]),
    ) -> Decision {
        let decision = self.classify(packet, scratch, emit);
        let s = &mut self.stats;
        let counter = match decision {
            Decision::Forward => &mut s.forwarded,
            Decision::Tunneled { copies } => {
                s.tunneled_copies = s.tunneled_copies.wrapping_add(copies as u64);
                &mut s.tunneled_packets
            }
            Decision::Dropped(DropReason::Malformed) => &mut s.malformed,
            Decision::Dropped(DropReason::TooBig) => &mut s.too_big,
            Decision::Dropped(DropReason::NoReplicas) => &mut s.no_replicas,
        };
        *counter = counter.wrapping_add(1);
        decision
    }

    fn classify(
        &self,
        packet: &[u8],
        scratch: &mut [u8],
        mut emit: impl FnMut(Ipv4Addr, &[u8]),
    ) -> Decision {
        let (hdr, segment) = match Ipv4Header::parse(packet) {
            Ok(parsed) => parsed,
            Err(WireError::Fragmented) => return self.classify_fragment(packet),
            Err(WireError::BadVersion) if packet.first().is_some_and(|b| b >> 4 == 6) => {
                return Decision::Forward;
            }
            Err(_) => {
                net_trace!("redirector: malformed packet");
                return Decision::Dropped(DropReason::Malformed);
            }
        };
        if hdr.protocol != PROTO_TCP || !self.is_origin(hdr.dst) {
            return Decision::Forward;
        }
        let Some(dport) = tcp_dst_port(segment) else {
            net_trace!("redirector: TCP to an origin without ports");
            return Decision::Dropped(DropReason::Malformed);
        };
        let Some(route) = self.lookup(hdr.dst, dport) else {
            return Decision::Forward;
        };
        if route.replicas.is_empty() {
            return Decision::Dropped(DropReason::NoReplicas);
        }
        let total = usize::from(hdr.total_len) + IPIP_OVERHEAD;
        if (total > usize::from(self.tunnel_mtu) && hdr.dont_frag) || total > MAX_PACKET {
            net_trace!("redirector: {} bytes exceed the tunnel MTU", total);
            return Decision::Dropped(DropReason::TooBig);
        }
        let Some(out) = scratch.get_mut(..total) else {
            return Decision::Dropped(DropReason::TooBig);
        };
        match ipip::encapsulate(self.tunnel_src, self.tunnel_src, packet, TUNNEL_TTL, out) {
            Ok(n) if n == total => {}
            // The packet parsed above, so only a length problem can remain.
            _ => return Decision::Dropped(DropReason::TooBig),
        }
        let mut copies = 0;
        for &replica in &route.replicas {
            let outer = ipip::outer_header(&hdr, self.tunnel_src, replica, TUNNEL_TTL);
            if outer.emit(out).is_err() {
                break;
            }
            emit(replica, out);
            copies += 1;
        }
        Decision::Tunneled { copies }
    }

    /// A fragment (which [`Ipv4Header::parse`] found valid otherwise). Replicas do not reassemble,
    /// so the first fragment of a routed TCP flow is dropped — the client learns nothing, but with
    /// the [`tunnel_mss`] advertised a fragment should never come. Later fragments carry no ports
    /// to route on and are forwarded, like any fragment to another destination.
    fn classify_fragment(&self, packet: &[u8]) -> Decision {
        match fragment_info(packet) {
            Some((PROTO_TCP, dst, Some(payload))) => {
                match tcp_dst_port(payload).and_then(|port| self.lookup(dst, port)) {
                    Some(_) => Decision::Dropped(DropReason::Malformed),
                    // A first fragment too short for the ports to an origin: nobody can use it.
                    None if payload.len() < 4 && self.is_origin(dst) => {
                        Decision::Dropped(DropReason::Malformed)
                    }
                    None => Decision::Forward,
                }
            }
            Some(_) => Decision::Forward,
            None => Decision::Dropped(DropReason::Malformed),
        }
    }

    /// Writes into `buf` the ICMP "fragmentation needed and DF set" message (type 3, code 4,
    /// RFC 1191) that answers `packet` after [`route`](Self::route) dropped it as
    /// [`DropReason::TooBig`]: from the tunnel source to the packet's source, advertising a
    /// next-hop MTU of `tunnel_mtu - 20` so the client's path MTU discovery shrinks its segments
    /// to fit the tunnel. It quotes the packet's IP header and 8 bytes of its payload, as
    /// FreeBSD's `icmp_error()` does by default. Returns the message length, at most
    /// [`ICMP_FRAG_NEEDED_MAX_LEN`].
    ///
    /// `None` when no such message is due: `packet` is not a valid IPv4 packet with DF set, its
    /// source is not a unicast address, it is itself an ICMP message (RFC 1122 §3.2.2 forbids
    /// errors about errors; informational ones are rare enough not to be worth the distinction), or
    /// `buf` is too short.
    pub fn icmp_frag_needed(&self, packet: &[u8], buf: &mut [u8]) -> Option<usize> {
        let (hdr, payload) = Ipv4Header::parse(packet).ok()?;
        if !hdr.dont_frag || !is_unicast(hdr.src) || hdr.protocol == PROTO_ICMP {
            return None;
        }
        let header_len = usize::from(hdr.header_len);
        let quote_len = header_len + payload.len().min(ICMP_QUOTELEN);
        let quote = packet.get(..quote_len)?;
        let icmp_len = ICMP_ERROR_HEADER_LEN + quote_len;
        let total = ipv4::HEADER_LEN + icmp_len;
        let out = buf.get_mut(..total)?;
        let (ip, icmp) = out.split_at_mut(ipv4::HEADER_LEN);
        Ipv4Header::new(self.tunnel_src, hdr.src, PROTO_ICMP, icmp_len, TUNNEL_TTL)
            .emit(ip)
            .ok()?;
        let mtu = self
            .tunnel_mtu
            .saturating_sub(IPIP_OVERHEAD as u16)
            .to_be_bytes();
        let (head, body) = icmp.split_at_mut(ICMP_ERROR_HEADER_LEN);
        head[0] = ICMP_UNREACH;
        head[1] = ICMP_UNREACH_NEEDFRAG;
        head[2..6].copy_from_slice(&[0; 4]); // checksum (below), unused
        head[6..8].copy_from_slice(&mtu);
        body.copy_from_slice(quote);
        let csum = checksum::finish(checksum::sum(icmp));
        icmp[2..4].copy_from_slice(&csum.to_be_bytes());
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::wire::ipv4::PROTO_UDP;
    use crate::wire::tcp::{emit_segment, TcpFlags, TcpHeader};
    use proptest::prelude::*;
    use std::vec::Vec as StdVec;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    const ORIGIN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 80);
    const TUNNEL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const H1: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
    const H2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);

    fn tcp_packet(dst: Ipv4Addr, dport: u16, payload: &[u8], df: bool) -> StdVec<u8> {
        let th = TcpHeader {
            src_port: 40000,
            dst_port: dport,
            seq: 1,
            ack: 0,
            flags: TcpFlags::SYN,
            window: 65535,
            ..TcpHeader::default()
        };
        let mut p = std::vec![0u8; 40 + payload.len()];
        emit_segment(&th, &[], payload, CLIENT, dst, &mut p[20..]).unwrap();
        let mut ip = Ipv4Header::new(CLIENT, dst, PROTO_TCP, 20 + payload.len(), 63);
        ip.dont_frag = df;
        ip.ident = 77;
        ip.emit(&mut p).unwrap();
        p
    }

    fn set_frag(p: &mut [u8], mf: bool, offset8: u16) {
        let v = (u16::from(mf) << 13) | offset8 | ((u16::from(p[6]) << 8) & 0x4000);
        p[6..8].copy_from_slice(&v.to_be_bytes());
        p[10] = 0;
        p[11] = 0;
        let c = checksum::finish(checksum::sum(&p[..20]));
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }

    fn redirector() -> Redirector {
        let mut r = Redirector::new(TUNNEL, 1500);
        r.add_route(ORIGIN, 80, &[H1, H2]).unwrap();
        r
    }

    #[test]
    fn tunnel_mss_values() {
        assert_eq!(tunnel_mss(1500), 1440);
        assert_eq!(tunnel_mss(576), 516);
        assert_eq!(tunnel_mss(60), 0);
        assert_eq!(tunnel_mss(0), 0);
    }

    #[test]
    fn fragments() {
        let mut r = redirector();
        let mut scratch = [0u8; 1600];
        let never = |_: Ipv4Addr, _: &[u8]| panic!("nothing is tunnelled");

        // First fragment of a routed flow: dropped.
        let mut p = tcp_packet(ORIGIN, 80, b"data", false);
        set_frag(&mut p, true, 0);
        assert_eq!(
            r.route(&p, &mut scratch, never),
            Decision::Dropped(DropReason::Malformed)
        );
        // First fragment to an unrouted port of the origin: forwarded.
        let mut p = tcp_packet(ORIGIN, 22, b"data", false);
        set_frag(&mut p, true, 0);
        assert_eq!(r.route(&p, &mut scratch, never), Decision::Forward);
        // Later fragments carry no ports: forwarded.
        let mut p = tcp_packet(ORIGIN, 80, b"data", false);
        set_frag(&mut p, false, 3);
        assert_eq!(r.route(&p, &mut scratch, never), Decision::Forward);
        // A first fragment too short for ports, to an origin.
        let mut p = tcp_packet(ORIGIN, 80, b"", false);
        p.truncate(22);
        p[2..4].copy_from_slice(&22u16.to_be_bytes());
        set_frag(&mut p, true, 0);
        assert_eq!(
            r.route(&p, &mut scratch, never),
            Decision::Dropped(DropReason::Malformed)
        );
        // Non-TCP fragments: forwarded.
        let mut p = tcp_packet(ORIGIN, 80, b"data", false);
        p[9] = PROTO_UDP;
        set_frag(&mut p, true, 0);
        assert_eq!(r.route(&p, &mut scratch, never), Decision::Forward);
        assert_eq!(r.stats().malformed, 2);
        assert_eq!(r.stats().forwarded, 3);
    }

    #[test]
    fn ipv6_is_forwarded_other_versions_dropped() {
        let mut r = redirector();
        let mut scratch = [0u8; 64];
        let mut p = [0u8; 40];
        p[0] = 0x60;
        assert_eq!(r.route(&p, &mut scratch, |_, _| {}), Decision::Forward);
        p[0] = 0x50;
        assert_eq!(
            r.route(&p, &mut scratch, |_, _| {}),
            Decision::Dropped(DropReason::Malformed)
        );
    }

    #[test]
    fn icmp_frag_needed_message() {
        let mut r = redirector();
        r.set_tunnel_mtu(1400);
        let p = tcp_packet(ORIGIN, 80, &[0x55; 1400], true);
        let mut scratch = [0u8; 2000];
        assert_eq!(
            r.route(&p, &mut scratch, |_, _| {}),
            Decision::Dropped(DropReason::TooBig)
        );
        let mut buf = [0u8; ICMP_FRAG_NEEDED_MAX_LEN];
        let n = r.icmp_frag_needed(&p, &mut buf).unwrap();
        assert_eq!(n, 20 + 8 + 20 + 8);
        let (ip, icmp) = Ipv4Header::parse(&buf[..n]).unwrap();
        assert_eq!((ip.src, ip.dst, ip.protocol), (TUNNEL, CLIENT, PROTO_ICMP));
        assert_eq!(checksum::finish(checksum::sum(icmp)), 0);
        assert_eq!(&icmp[..2], &[3, 4]);
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1380);
        assert_eq!(&icmp[8..], &p[..28]);
        // Too small a buffer, no DF, not IPv4, ICMP itself: nothing.
        assert_eq!(r.icmp_frag_needed(&p, &mut buf[..55]), None);
        let nodf = tcp_packet(ORIGIN, 80, &[0x55; 10], false);
        assert_eq!(r.icmp_frag_needed(&nodf, &mut buf), None);
        assert_eq!(r.icmp_frag_needed(&p[..10], &mut buf), None);
        let mut icmp_pkt = p.clone();
        icmp_pkt[9] = PROTO_ICMP;
        set_frag(&mut icmp_pkt, false, 0);
        assert_eq!(r.icmp_frag_needed(&icmp_pkt, &mut buf), None);
        // A short packet quotes what it has.
        let small = tcp_packet(ORIGIN, 80, b"", true);
        let short = {
            let mut s = small[..24].to_vec();
            s[2..4].copy_from_slice(&24u16.to_be_bytes());
            set_frag(&mut s, false, 0);
            s
        };
        assert_eq!(r.icmp_frag_needed(&short, &mut buf), Some(20 + 8 + 24));
    }

    proptest! {
        #[test]
        fn fragment_info_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = fragment_info(&data);
            let r = redirector();
            let mut buf = [0u8; 128];
            let _ = r.icmp_frag_needed(&data, &mut buf);
        }
    }
}

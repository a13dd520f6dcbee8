//! IP-in-IP encapsulation (RFC 2003, IP protocol 4), as HydraNet's redirectors use it to tunnel
//! a client's packets to the host servers, with the ECN handling of RFC 6040's normal mode.
//!
//! The inner packet travels byte for byte: the encapsulator neither decrements its TTL nor
//! touches its checksum, so [`decapsulate`] hands back exactly what [`encapsulate`] was given
//! (less any link-layer padding after the inner packet's total length).
//!
//! ```
//! use core::net::Ipv4Addr;
//! use hydranet_core::wire::{ipip, ipv4::{Ipv4Header, PROTO_TCP}};
//!
//! let mut inner = [0u8; 40];
//! Ipv4Header::new(Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(203, 0, 113, 80), PROTO_TCP, 20, 64)
//!     .emit(&mut inner)
//!     .unwrap();
//! let mut buf = [0u8; 60];
//! let redirector = Ipv4Addr::new(198, 51, 100, 1);
//! let host = Ipv4Addr::new(198, 51, 100, 11);
//! let n = ipip::encapsulate(redirector, host, &inner, 64, &mut buf).unwrap();
//! assert_eq!(n, 40 + ipip::IPIP_OVERHEAD);
//! let (outer, back) = ipip::decapsulate(&buf[..n]).unwrap();
//! assert_eq!((outer.src, outer.dst), (redirector, host));
//! assert_eq!(back, &inner[..]);
//! ```

use core::net::Ipv4Addr;

use super::checksum;
use super::ipv4::{self, Ecn, Ipv4Header, PROTO_IPIP};
use super::WireError;

/// Bytes the tunnel adds to a packet: one IPv4 header without options.
pub const IPIP_OVERHEAD: usize = ipv4::HEADER_LEN;

/// The largest IPv4 packet.
const MAX_PACKET: usize = u16::MAX as usize;

/// Wraps the IPv4 packet `inner` in an outer IPv4 header `outer_src` → `outer_dst` (protocol 4,
/// `ttl`) and writes the result into `buf`. Returns its length, `inner`'s total length plus
/// [`IPIP_OVERHEAD`].
///
/// `inner` must be a whole, valid IPv4 packet as [`Ipv4Header::parse`] accepts it (its errors are
/// returned as they are, fragments included: nothing downstream reassembles); bytes after its
/// total length are not carried. The outer header copies the inner's TOS byte — the DSCP as RFC
/// 2003 §3.1 says, and the ECN field as RFC 6040's normal mode says — and its DF bit and
/// identification. An outer packet beyond 65535 bytes is [`WireError::BadTotalLength`], a `buf`
/// too short for it [`WireError::BufferTooSmall`].
pub fn encapsulate(
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    inner: &[u8],
    ttl: u8,
    buf: &mut [u8],
) -> Result<usize, WireError> {
    let (inner_hdr, _) = Ipv4Header::parse(inner)?;
    let inner_len = usize::from(inner_hdr.total_len);
    let inner = inner.get(..inner_len).ok_or(WireError::BadTotalLength)?;
    let total = inner_len + IPIP_OVERHEAD;
    if total > MAX_PACKET {
        return Err(WireError::BadTotalLength);
    }
    let out = buf.get_mut(..total).ok_or(WireError::BufferTooSmall)?;
    let (hdr, body) = out.split_at_mut(IPIP_OVERHEAD);
    outer_header(&inner_hdr, outer_src, outer_dst, ttl).emit(hdr)?;
    body.copy_from_slice(inner);
    Ok(total)
}

/// The outer header [`encapsulate`] writes in front of a packet whose header is `inner`.
pub fn outer_header(
    inner: &Ipv4Header,
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    ttl: u8,
) -> Ipv4Header {
    let mut outer = Ipv4Header::new(
        outer_src,
        outer_dst,
        PROTO_IPIP,
        usize::from(inner.total_len),
        ttl,
    );
    outer.tos = inner.tos;
    outer.dont_frag = inner.dont_frag;
    outer.ident = inner.ident;
    outer
}

/// Unwraps an IP-in-IP packet: returns the outer header and the inner IPv4 packet (trimmed to
/// its own total length).
///
/// The outer header is validated by [`Ipv4Header::parse`] (whose errors are returned as they are;
/// an outer fragment is [`WireError::Fragmented`]). An outer protocol other than 4 is
/// [`WireError::BadVersion`]: the payload is not declared to be IPv4. The inner packet must parse
/// too ([`Ipv4Header::parse`]'s errors again).
///
/// The caller combines the ECN fields with [`ecn_egress`] (and [`set_ecn`] on its copy) before the
/// inner packet re-enters IP input.
pub fn decapsulate(packet: &[u8]) -> Result<(Ipv4Header, &[u8]), WireError> {
    let (outer, payload) = Ipv4Header::parse(packet)?;
    if outer.protocol != PROTO_IPIP {
        return Err(WireError::BadVersion);
    }
    let (inner, _) = Ipv4Header::parse(payload)?;
    let inner_packet = payload
        .get(..usize::from(inner.total_len))
        .ok_or(WireError::BadTotalLength)?;
    Ok((outer, inner_packet))
}

/// The ECN field of a decapsulated packet, from the outer and inner fields (RFC 6040 §4.2,
/// Figure 4). `None` means the packet must be dropped: the outer header says congestion
/// experienced (CE) but the inner transport is not ECN-capable, so the mark cannot be passed on.
pub fn ecn_egress(outer: Ecn, inner: Ecn) -> Option<Ecn> {
    match (inner, outer) {
        (Ecn::NotEct, Ecn::Ce) => None,
        (Ecn::NotEct, _) => Some(Ecn::NotEct),
        (_, Ecn::Ce) | (Ecn::Ce, _) => Some(Ecn::Ce),
        (Ecn::Ect0, Ecn::Ect1) => Some(Ecn::Ect1),
        (inner, _) => Some(inner),
    }
}

/// Rewrites the ECN field of the IPv4 packet in `packet` and recomputes its header checksum.
///
/// The header must be present: fewer than 20 bytes is [`WireError::Truncated`], a version other
/// than 4 [`WireError::BadVersion`], an IHL below 5 or past the buffer
/// [`WireError::BadHeaderLength`].
pub fn set_ecn(packet: &mut [u8], ecn: Ecn) -> Result<(), WireError> {
    let first = *packet.first().ok_or(WireError::Truncated)?;
    if packet.len() < ipv4::HEADER_LEN {
        return Err(WireError::Truncated);
    }
    if first >> 4 != 4 {
        return Err(WireError::BadVersion);
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < ipv4::HEADER_LEN {
        return Err(WireError::BadHeaderLength);
    }
    let header = packet
        .get_mut(..header_len)
        .ok_or(WireError::BadHeaderLength)?;
    header[1] = (header[1] & !0x03) | ecn.bits();
    header[10] = 0;
    header[11] = 0;
    let csum = checksum::finish(checksum::sum(header));
    header[10..12].copy_from_slice(&csum.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::wire::ipv4::PROTO_TCP;
    use proptest::prelude::*;
    use std::vec::Vec;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    const ORIGIN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 80);
    const REDIRECTOR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const HOST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);

    fn inner_packet(tos: u8, df: bool, ident: u16, payload: &[u8]) -> Vec<u8> {
        let mut h = Ipv4Header::new(CLIENT, ORIGIN, PROTO_TCP, payload.len(), 63);
        h.tos = tos;
        h.dont_frag = df;
        h.ident = ident;
        let mut p = std::vec![0u8; 20 + payload.len()];
        h.emit(&mut p).unwrap();
        p[20..].copy_from_slice(payload);
        p
    }

    #[test]
    fn round_trip_copies_tos_df_ident() {
        for (tos, df) in [(0x00, true), (0xb9, false), (0x02, true), (0x03, false)] {
            let inner = inner_packet(tos, df, 0x1234, b"hello");
            let mut buf = [0u8; 128];
            let n = encapsulate(REDIRECTOR, HOST, &inner, 64, &mut buf).unwrap();
            assert_eq!(n, inner.len() + IPIP_OVERHEAD);
            let (outer, back) = decapsulate(&buf[..n]).unwrap();
            assert_eq!(back, &inner[..]);
            assert_eq!(outer.protocol, PROTO_IPIP);
            assert_eq!((outer.src, outer.dst, outer.ttl), (REDIRECTOR, HOST, 64));
            assert_eq!(outer.tos, tos);
            assert_eq!(outer.ecn(), Ecn::from_bits(tos));
            assert_eq!(outer.dont_frag, df);
            assert_eq!(outer.ident, 0x1234);
            assert_eq!(usize::from(outer.total_len), n);
        }
    }

    #[test]
    fn padding_is_not_carried() {
        let mut inner = inner_packet(0, true, 1, b"abc");
        inner.extend_from_slice(&[0xee; 5]);
        let mut buf = [0u8; 128];
        let n = encapsulate(REDIRECTOR, HOST, &inner, 64, &mut buf).unwrap();
        assert_eq!(n, 23 + 20);
        let (_, back) = decapsulate(&buf[..n]).unwrap();
        assert_eq!(back, &inner[..23]);
        // Padding after the outer packet is ignored too.
        let (_, back) = decapsulate(&buf[..n + 7]).unwrap();
        assert_eq!(back, &inner[..23]);
    }

    #[test]
    fn encapsulate_errors() {
        let inner = inner_packet(0, true, 1, b"abc");
        let mut buf = [0u8; 128];
        assert_eq!(
            encapsulate(REDIRECTOR, HOST, &inner, 64, &mut buf[..42]),
            Err(WireError::BufferTooSmall)
        );
        assert_eq!(
            encapsulate(REDIRECTOR, HOST, &inner[..10], 64, &mut buf),
            Err(WireError::Truncated)
        );
        let mut bad = inner.clone();
        bad[12] ^= 1;
        assert_eq!(
            encapsulate(REDIRECTOR, HOST, &bad, 64, &mut buf),
            Err(WireError::BadChecksum)
        );
        let mut frag = inner.clone();
        frag[6] = 0x20; // MF
        frag[10] = 0;
        frag[11] = 0;
        let c = checksum::finish(checksum::sum(&frag[..20]));
        frag[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            encapsulate(REDIRECTOR, HOST, &frag, 64, &mut buf),
            Err(WireError::Fragmented)
        );
        // A maximal inner packet cannot take 20 more bytes.
        let big = inner_packet(0, true, 1, &std::vec![7u8; 65_515]);
        let mut out = std::vec![0u8; 70_000];
        assert_eq!(
            encapsulate(REDIRECTOR, HOST, &big, 64, &mut out),
            Err(WireError::BadTotalLength)
        );
        let fits = inner_packet(0, true, 1, &std::vec![7u8; 65_495]);
        assert_eq!(
            encapsulate(REDIRECTOR, HOST, &fits, 64, &mut out),
            Ok(65_535)
        );
        assert_eq!(decapsulate(&out[..65_535]).unwrap().1, &fits[..]);
    }

    #[test]
    fn decapsulate_errors() {
        let inner = inner_packet(0, true, 1, b"abc");
        let mut buf = [0u8; 128];
        let n = encapsulate(REDIRECTOR, HOST, &inner, 64, &mut buf).unwrap();

        // Not IP-in-IP.
        assert_eq!(decapsulate(&inner), Err(WireError::BadVersion));
        let mut udp = [0u8; 40];
        let u = crate::wire::udp::emit_ipv4_udp(CLIENT, HOST, 1, 2, b"x", 64, &mut udp).unwrap();
        assert_eq!(decapsulate(&udp[..u]), Err(WireError::BadVersion));

        // Outer damage.
        assert_eq!(decapsulate(&buf[..19]), Err(WireError::Truncated));
        let mut p = buf;
        p[15] ^= 1;
        assert_eq!(decapsulate(&p[..n]), Err(WireError::BadChecksum));
        assert_eq!(decapsulate(&buf[..n - 1]), Err(WireError::BadTotalLength));

        // Inner damage, under a valid outer header.
        let mut p = buf;
        p[20 + 13] ^= 1;
        assert_eq!(decapsulate(&p[..n]), Err(WireError::BadChecksum));
        let mut outer = Ipv4Header::new(REDIRECTOR, HOST, PROTO_IPIP, 5, 64);
        outer.ident = 9;
        let mut short = [0u8; 25];
        outer.emit(&mut short).unwrap();
        assert_eq!(decapsulate(&short), Err(WireError::Truncated));
        let mut six = [0u8; 45];
        Ipv4Header::new(REDIRECTOR, HOST, PROTO_IPIP, 25, 64)
            .emit(&mut six)
            .unwrap();
        six[20] = 0x60;
        assert_eq!(decapsulate(&six), Err(WireError::BadVersion));
    }

    #[test]
    fn rfc6040_egress_table() {
        use Ecn::*;
        // Rows: inner; columns: outer Not-ECT, ECT(0), ECT(1), CE.
        let table = [
            (NotEct, [Some(NotEct), Some(NotEct), Some(NotEct), None]),
            (Ect0, [Some(Ect0), Some(Ect0), Some(Ect1), Some(Ce)]),
            (Ect1, [Some(Ect1), Some(Ect1), Some(Ect1), Some(Ce)]),
            (Ce, [Some(Ce), Some(Ce), Some(Ce), Some(Ce)]),
        ];
        for (inner, row) in table {
            for (outer, want) in [NotEct, Ect0, Ect1, Ce].into_iter().zip(row) {
                assert_eq!(ecn_egress(outer, inner), want, "{inner:?} in {outer:?}");
            }
        }
    }

    #[test]
    fn set_ecn_keeps_header_valid() {
        let mut p = inner_packet(0xb8, true, 1, b"abc");
        set_ecn(&mut p, Ecn::Ce).unwrap();
        let (h, payload) = Ipv4Header::parse(&p).unwrap();
        assert_eq!(h.tos, 0xbb);
        assert_eq!(payload, b"abc");
        set_ecn(&mut p, Ecn::NotEct).unwrap();
        assert_eq!(Ipv4Header::parse(&p).unwrap().0.tos, 0xb8);
        assert_eq!(set_ecn(&mut [], Ecn::Ce), Err(WireError::Truncated));
        assert_eq!(set_ecn(&mut p[..19], Ecn::Ce), Err(WireError::Truncated));
        let mut q = p.clone();
        q[0] = 0x65;
        assert_eq!(set_ecn(&mut q, Ecn::Ce), Err(WireError::BadVersion));
        q[0] = 0x44;
        assert_eq!(set_ecn(&mut q, Ecn::Ce), Err(WireError::BadHeaderLength));
        q[0] = 0x4f;
        assert_eq!(set_ecn(&mut q, Ecn::Ce), Err(WireError::BadHeaderLength));
    }

    proptest! {
        #[test]
        fn decapsulate_never_panics(data in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = decapsulate(&data);
            let mut d = data.clone();
            let _ = set_ecn(&mut d, Ecn::Ce);
        }

        #[test]
        fn round_trip(tos in any::<u8>(), df in any::<bool>(), ident in any::<u16>(),
                      ttl in any::<u8>(), src in any::<u32>(), dst in any::<u32>(),
                      payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let inner = inner_packet(tos, df, ident, &payload);
            let mut buf = std::vec![0u8; inner.len() + IPIP_OVERHEAD];
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            prop_assert_eq!(encapsulate(src, dst, &inner, ttl, &mut buf), Ok(buf.len()));
            let (outer, back) = decapsulate(&buf).unwrap();
            prop_assert_eq!(back, &inner[..]);
            prop_assert_eq!(outer, outer_header(&Ipv4Header::parse(&inner).unwrap().0, src, dst, ttl));
        }
    }
}

//! The IPv4 header (RFC 791), checked as FreeBSD's `ip_input()` checks it.

use core::net::Ipv4Addr;

use super::checksum;
use super::WireError;

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_IPIP: u8 = 4;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// `IP_DF`, `IP_MF` and `IP_OFFMASK` of the fragment field, in host order.
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFMASK: u16 = 0x1fff;

/// The ECN codepoint in the low two bits of the TOS byte (RFC 3168).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Ecn {
    NotEct = 0,
    Ect1 = 1,
    Ect0 = 2,
    Ce = 3,
}

impl Ecn {
    /// The codepoint in the low two bits of `bits`; the rest is ignored.
    pub const fn from_bits(bits: u8) -> Ecn {
        match bits & 0x03 {
            0 => Ecn::NotEct,
            1 => Ecn::Ect1,
            2 => Ecn::Ect0,
            _ => Ecn::Ce,
        }
    }

    pub const fn bits(self) -> u8 {
        self as u8
    }
}

/// A parsed IPv4 header. IP options, if any, are skipped by [`parse`](Ipv4Header::parse) and
/// never emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Header {
    /// The TOS byte: DSCP in the upper six bits, ECN in the lower two.
    pub tos: u8,
    /// Header plus payload, in bytes.
    pub total_len: u16,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8 on the wire).
    pub frag_offset: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Header length in bytes, options included (IHL * 4).
    pub header_len: u8,
}

impl Ipv4Header {
    /// A header with no options, DF set, TOS 0 and ident 0, for a payload of `payload_len` bytes.
    ///
    /// `total_len` saturates at 65535 if `payload_len` is larger than an IPv4 packet can carry.
    pub fn new(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        protocol: u8,
        payload_len: usize,
        ttl: u8,
    ) -> Ipv4Header {
        let total = payload_len.saturating_add(HEADER_LEN);
        Ipv4Header {
            tos: 0,
            total_len: u16::try_from(total).unwrap_or(u16::MAX),
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            ttl,
            protocol,
            src,
            dst,
            header_len: HEADER_LEN as u8,
        }
    }

    pub fn ecn(&self) -> Ecn {
        Ecn::from_bits(self.tos)
    }

    pub fn set_ecn(&mut self, ecn: Ecn) {
        self.tos = (self.tos & !0x03) | ecn.bits();
    }

    /// Parses and validates an IPv4 packet, returning the header and the payload
    /// `packet[header_len..total_len]`.
    ///
    /// Checks run in `ip_input()`'s order: length of the fixed header ([`WireError::Truncated`],
    /// `ips_toosmall`), version (`BadVersion`, `ips_badvers`), IHL at least 5 and within the packet
    /// (`BadHeaderLength`, `ips_badhlen`), header checksum (`BadChecksum`, `ips_badsum`), total
    /// length at least the header and at most the packet (`BadTotalLength`, `ips_badlen` /
    /// `ips_tooshort`). Bytes after `total_len` are link-layer padding and are ignored. A fragment
    /// (MF set or a non-zero offset) is [`WireError::Fragmented`]: the core does not reassemble.
    pub fn parse(packet: &[u8]) -> Result<(Ipv4Header, &[u8]), WireError> {
        let fixed = packet
            .first_chunk::<HEADER_LEN>()
            .ok_or(WireError::Truncated)?;
        if fixed[0] >> 4 != 4 {
            return Err(WireError::BadVersion);
        }
        let header_len = usize::from(fixed[0] & 0x0f) * 4;
        if header_len < HEADER_LEN {
            return Err(WireError::BadHeaderLength);
        }
        let header = packet.get(..header_len).ok_or(WireError::BadHeaderLength)?;
        if checksum::finish(checksum::sum(header)) != 0 {
            return Err(WireError::BadChecksum);
        }
        let total_len = u16::from_be_bytes([fixed[2], fixed[3]]);
        if usize::from(total_len) < header_len {
            return Err(WireError::BadTotalLength);
        }
        let payload = packet
            .get(header_len..usize::from(total_len))
            .ok_or(WireError::BadTotalLength)?;
        let frag = u16::from_be_bytes([fixed[6], fixed[7]]);
        let hdr = Ipv4Header {
            tos: fixed[1],
            total_len,
            ident: u16::from_be_bytes([fixed[4], fixed[5]]),
            dont_frag: frag & FLAG_DF != 0,
            more_frags: frag & FLAG_MF != 0,
            frag_offset: (frag & OFFMASK) << 3,
            ttl: fixed[8],
            protocol: fixed[9],
            src: Ipv4Addr::new(fixed[12], fixed[13], fixed[14], fixed[15]),
            dst: Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]),
            header_len: header_len as u8,
        };
        if hdr.more_frags || hdr.frag_offset != 0 {
            return Err(WireError::Fragmented);
        }
        Ok((hdr, payload))
    }

    /// Writes a 20-byte header (no options, whatever `header_len` says) with `total_len` as given
    /// and a freshly computed header checksum. Returns 20.
    ///
    /// `frag_offset` is written in 8-byte units; its low three bits (and anything beyond the
    /// 13-bit field) are dropped.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let out = buf
            .first_chunk_mut::<HEADER_LEN>()
            .ok_or(WireError::BufferTooSmall)?;
        let mut frag = (self.frag_offset >> 3) & OFFMASK;
        if self.dont_frag {
            frag |= FLAG_DF;
        }
        if self.more_frags {
            frag |= FLAG_MF;
        }
        out[0] = 0x45;
        out[1] = self.tos;
        out[2..4].copy_from_slice(&self.total_len.to_be_bytes());
        out[4..6].copy_from_slice(&self.ident.to_be_bytes());
        out[6..8].copy_from_slice(&frag.to_be_bytes());
        out[8] = self.ttl;
        out[9] = self.protocol;
        out[10..12].copy_from_slice(&[0, 0]);
        out[12..16].copy_from_slice(&self.src.octets());
        out[16..20].copy_from_slice(&self.dst.octets());
        let csum = checksum::finish(checksum::sum(&out[..]));
        out[10..12].copy_from_slice(&csum.to_be_bytes());
        Ok(HEADER_LEN)
    }
}

// Written by hand: defmt only formats `core::net::Ipv4Addr` with its `ip_in_core` feature.
#[cfg(feature = "defmt")]
impl defmt::Format for Ipv4Header {
    fn format(&self, f: defmt::Formatter<'_>) {
        let [s0, s1, s2, s3] = self.src.octets();
        let [d0, d1, d2, d3] = self.dst.octets();
        defmt::write!(
            f,
            "Ipv4Header {{ {}.{}.{}.{} > {}.{}.{}.{}, protocol: {}, total_len: {}, header_len: {}, \
             ttl: {}, tos: {=u8:#x}, ident: {}, df: {}, mf: {}, frag_offset: {} }}",
            s0,
            s1,
            s2,
            s3,
            d0,
            d1,
            d2,
            d3,
            self.protocol,
            self.total_len,
            self.header_len,
            self.ttl,
            self.tos,
            self.ident,
            self.dont_frag,
            self.more_frags,
            self.frag_offset
        )
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 199);

    /// A UDP packet header shaped like Wikipedia's checksum example, with documentation
    /// addresses (total length 0x73; checksum 0xb5b1, computed independently of this crate),
    /// followed by its 95-byte payload.
    fn sample() -> Vec<u8> {
        let mut p = std::vec![
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb5, 0xb1, 0xc0, 0x00,
            0x02, 0x01, 0xc0, 0x00, 0x02, 0xc7,
        ];
        p.extend((0..95u8).map(|i| i.wrapping_mul(3)));
        p
    }

    fn fix_checksum(p: &mut [u8]) {
        let hl = usize::from(p[0] & 0x0f) * 4;
        p[10] = 0;
        p[11] = 0;
        let c = checksum::finish(checksum::sum(&p[..hl]));
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn parse_known_packet() {
        let p = sample();
        let (h, payload) = Ipv4Header::parse(&p).unwrap();
        assert_eq!(h.total_len, 0x73);
        assert_eq!(h.header_len, 20);
        assert!(h.dont_frag);
        assert!(!h.more_frags);
        assert_eq!(h.frag_offset, 0);
        assert_eq!(h.ttl, 64);
        assert_eq!(h.protocol, PROTO_UDP);
        assert_eq!(h.src, SRC);
        assert_eq!(h.dst, DST);
        assert_eq!(h.ecn(), Ecn::NotEct);
        assert_eq!(payload, &p[20..]);
    }

    #[test]
    fn emit_known_packet() {
        let mut h = Ipv4Header::new(SRC, DST, PROTO_UDP, 95, 64);
        h.ident = 0;
        let mut buf = [0u8; 20];
        assert_eq!(h.emit(&mut buf), Ok(20));
        assert_eq!(&buf[..], &sample()[..20]);
    }

    #[test]
    fn round_trip_with_ecn() {
        let mut h = Ipv4Header::new(SRC, DST, PROTO_TCP, 3, 17);
        h.tos = 0xb8;
        h.set_ecn(Ecn::Ect0);
        assert_eq!(h.tos, 0xba);
        assert_eq!(h.ecn(), Ecn::Ect0);
        h.set_ecn(Ecn::Ce);
        assert_eq!(h.tos, 0xbb);
        h.ident = 0xbeef;
        let mut buf = [0u8; 23];
        h.emit(&mut buf).unwrap();
        buf[20..].copy_from_slice(b"abc");
        let (p, payload) = Ipv4Header::parse(&buf).unwrap();
        assert_eq!(p, h);
        assert_eq!(payload, b"abc");
    }

    #[test]
    fn ecn_bits() {
        for b in 0..=255u8 {
            assert_eq!(Ecn::from_bits(b).bits(), b & 3);
        }
    }

    #[test]
    fn options_are_skipped() {
        let mut p = sample();
        // IHL 6 with one 4-byte option (NOP NOP NOP EOL); total length grows by 4.
        p[0] = 0x46;
        p[2..4].copy_from_slice(&0x77u16.to_be_bytes());
        p.splice(20..20, [1, 1, 1, 0]);
        fix_checksum(&mut p);
        let (h, payload) = Ipv4Header::parse(&p).unwrap();
        assert_eq!(h.header_len, 24);
        assert_eq!(payload, &p[24..]);
    }

    #[test]
    fn link_padding_is_ignored() {
        let mut h = Ipv4Header::new(SRC, DST, PROTO_TCP, 2, 64);
        h.ident = 1;
        let mut buf = [0u8; 60];
        h.emit(&mut buf).unwrap();
        buf[20] = 7;
        buf[21] = 8;
        buf[22] = 0xee;
        let (_, payload) = Ipv4Header::parse(&buf).unwrap();
        assert_eq!(payload, &[7, 8]);
    }

    #[test]
    fn errors() {
        let good = sample();
        assert_eq!(Ipv4Header::parse(&good[..19]), Err(WireError::Truncated));
        assert_eq!(Ipv4Header::parse(&[]), Err(WireError::Truncated));

        let mut p = good.clone();
        p[0] = 0x65;
        assert_eq!(Ipv4Header::parse(&p), Err(WireError::BadVersion));

        let mut p = good.clone();
        p[0] = 0x44;
        assert_eq!(Ipv4Header::parse(&p), Err(WireError::BadHeaderLength));

        let mut p = good[..20].to_vec();
        p[0] = 0x46;
        assert_eq!(Ipv4Header::parse(&p), Err(WireError::BadHeaderLength));

        let mut p = good.clone();
        p[15] ^= 1;
        assert_eq!(Ipv4Header::parse(&p), Err(WireError::BadChecksum));

        let mut p = good.clone();
        p[2..4].copy_from_slice(&19u16.to_be_bytes());
        fix_checksum(&mut p);
        assert_eq!(Ipv4Header::parse(&p), Err(WireError::BadTotalLength));

        let mut p = good.clone();
        p[2..4].copy_from_slice(&0x74u16.to_be_bytes());
        fix_checksum(&mut p);
        assert_eq!(Ipv4Header::parse(&p), Err(WireError::BadTotalLength));

        let mut p = good.clone();
        p[6] = 0x20; // MF
        fix_checksum(&mut p);
        assert_eq!(Ipv4Header::parse(&p), Err(WireError::Fragmented));

        let mut p = good.clone();
        p[6] = 0x40;
        p[7] = 0x01; // offset 8
        fix_checksum(&mut p);
        assert_eq!(Ipv4Header::parse(&p), Err(WireError::Fragmented));

        let h = Ipv4Header::new(SRC, DST, PROTO_TCP, 0, 64);
        assert_eq!(h.emit(&mut [0u8; 19]), Err(WireError::BufferTooSmall));
    }

    #[test]
    fn new_saturates_total_len() {
        let h = Ipv4Header::new(SRC, DST, PROTO_TCP, 70_000, 64);
        assert_eq!(h.total_len, u16::MAX);
        let h = Ipv4Header::new(SRC, DST, PROTO_TCP, usize::MAX, 64);
        assert_eq!(h.total_len, u16::MAX);
    }

    #[test]
    fn fragment_fields_emit() {
        let mut h = Ipv4Header::new(SRC, DST, PROTO_TCP, 0, 64);
        h.dont_frag = false;
        h.more_frags = true;
        h.frag_offset = 1480;
        let mut buf = [0u8; 20];
        h.emit(&mut buf).unwrap();
        assert_eq!(u16::from_be_bytes([buf[6], buf[7]]), 0x2000 | 185);
        assert_eq!(Ipv4Header::parse(&buf), Err(WireError::Fragmented));
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = Ipv4Header::parse(&data);
        }

        #[test]
        fn parse_never_panics_ipv4ish(mut data in proptest::collection::vec(any::<u8>(), 20..128),
                                      ihl in 0u8..16, fix in any::<bool>()) {
            data[0] = 0x40 | ihl;
            if fix && usize::from(ihl) * 4 <= data.len() {
                fix_checksum(&mut data);
            }
            if let Ok((h, payload)) = Ipv4Header::parse(&data) {
                prop_assert!(usize::from(h.header_len) >= HEADER_LEN);
                prop_assert_eq!(payload.len(), usize::from(h.total_len - u16::from(h.header_len)));
            }
        }

        #[test]
        fn round_trip(tos in any::<u8>(), ident in any::<u16>(), df in any::<bool>(),
                      ttl in any::<u8>(), protocol in any::<u8>(), src in any::<u32>(),
                      dst in any::<u32>(),
                      payload in proptest::collection::vec(any::<u8>(), 0..64),
                      padding in 0usize..8) {
            let mut h = Ipv4Header::new(Ipv4Addr::from(src), Ipv4Addr::from(dst), protocol,
                                        payload.len(), ttl);
            h.tos = tos;
            h.ident = ident;
            h.dont_frag = df;
            let mut buf = std::vec![0u8; HEADER_LEN + payload.len() + padding];
            prop_assert_eq!(h.emit(&mut buf), Ok(HEADER_LEN));
            buf[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(&payload);
            let (p, pl) = Ipv4Header::parse(&buf).unwrap();
            prop_assert_eq!(p, h);
            prop_assert_eq!(pl, &payload[..]);
        }
    }
}

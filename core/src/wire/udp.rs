//! The UDP header (RFC 768), checked as FreeBSD's `udp_input()` checks it.
//!
//! The core has no UDP sockets; this module exists for the pieces of HydraNet-FT that speak UDP
//! (the harness's control and ack-channel transports) and for tests that need real datagrams.

use core::net::Ipv4Addr;

use super::checksum;
use super::ipv4::{self, Ipv4Header, PROTO_UDP};
use super::WireError;

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// The largest UDP length the 16-bit length field can express (header included).
const MAX_UDP_LEN: usize = u16::MAX as usize;

/// A parsed UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UdpHeader {
    pub src_port: u16,
    pub dst_port: u16,
    /// Header plus payload, in bytes, as the length field says.
    pub length: u16,
    /// As received; 0 means the sender computed none (IPv4 only).
    pub checksum: u16,
}

/// The unfolded checksum sum over the pseudo-header and `datagram` (header with its checksum field
/// as it stands, plus payload).
fn datagram_sum(datagram: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
    let len = u32::try_from(datagram.len()).unwrap_or(u32::MAX);
    checksum::combine(
        checksum::pseudo_header(src, dst, PROTO_UDP, len),
        checksum::sum(datagram),
    )
}

/// Parses a UDP datagram (the IP payload) sent from `src` to `dst`, returning its header and
/// payload.
///
/// Checks run in `udp_input()`'s order: fewer than 8 bytes is [`WireError::Truncated`]
/// (`udps_hdrops`); a length field below 8 or beyond the IP payload is
/// [`WireError::BadTotalLength`] (`udps_badlen`). A length field shorter than the IP payload trims
/// the datagram to it, as `udp_input()` does. Then, when `verify_checksum` and the checksum field
/// is non-zero, a mismatch is [`WireError::BadChecksum`] (`udps_badsum`); a zero checksum field
/// means "no checksum" over IPv4 and is accepted.
pub fn parse_datagram(
    bytes: &[u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    verify_checksum: bool,
) -> Result<(UdpHeader, &[u8]), WireError> {
    let fixed = bytes
        .first_chunk::<HEADER_LEN>()
        .ok_or(WireError::Truncated)?;
    let be16 = |i: usize| u16::from_be_bytes([fixed[i], fixed[i + 1]]);
    let header = UdpHeader {
        src_port: be16(0),
        dst_port: be16(2),
        length: be16(4),
        checksum: be16(6),
    };
    let length = usize::from(header.length);
    if length < HEADER_LEN {
        return Err(WireError::BadTotalLength);
    }
    let datagram = bytes.get(..length).ok_or(WireError::BadTotalLength)?;
    if verify_checksum
        && header.checksum != 0
        && checksum::finish(datagram_sum(datagram, src, dst)) != 0
    {
        return Err(WireError::BadChecksum);
    }
    let payload = datagram.get(HEADER_LEN..).ok_or(WireError::Truncated)?;
    Ok((header, payload))
}

/// Writes a UDP datagram (header and `payload`) into `buf` with its checksum for the
/// pseudo-header `src` → `dst`, and returns its length.
///
/// A computed checksum of 0 is transmitted as `0xffff` (RFC 768), since 0 would mean "none".
/// A payload longer than `65535 - 8` bytes is [`WireError::BadTotalLength`]; a `buf` shorter than
/// the datagram is [`WireError::BufferTooSmall`].
pub fn emit_datagram(
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    buf: &mut [u8],
) -> Result<usize, WireError> {
    let total = payload.len().saturating_add(HEADER_LEN);
    let length = u16::try_from(total).map_err(|_| WireError::BadTotalLength)?;
    let out = buf.get_mut(..total).ok_or(WireError::BufferTooSmall)?;
    let (hdr, body) = out.split_at_mut(HEADER_LEN);
    hdr[0..2].copy_from_slice(&src_port.to_be_bytes());
    hdr[2..4].copy_from_slice(&dst_port.to_be_bytes());
    hdr[4..6].copy_from_slice(&length.to_be_bytes());
    hdr[6..8].copy_from_slice(&[0, 0]);
    body.copy_from_slice(payload);
    let csum = match checksum::finish(datagram_sum(out, src, dst)) {
        0 => 0xffff,
        c => c,
    };
    out[6..8].copy_from_slice(&csum.to_be_bytes());
    Ok(total)
}

/// Writes a whole IPv4 packet carrying one UDP datagram: a 20-byte IPv4 header ([`Ipv4Header::new`]:
/// DF set, TOS 0, ident 0, `ttl`) followed by [`emit_datagram`]'s output. Returns the packet
/// length.
///
/// A packet that would exceed 65535 bytes is [`WireError::BadTotalLength`]; a `buf` too short for
/// it is [`WireError::BufferTooSmall`].
#[allow(clippy::too_many_arguments)] // the brief's signature: addresses, ports, payload, ttl, buf
pub fn emit_ipv4_udp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
    ttl: u8,
    buf: &mut [u8],
) -> Result<usize, WireError> {
    let udp_len = payload.len().saturating_add(HEADER_LEN);
    if udp_len > MAX_UDP_LEN - ipv4::HEADER_LEN {
        return Err(WireError::BadTotalLength);
    }
    let total = ipv4::HEADER_LEN + udp_len;
    let out = buf.get_mut(..total).ok_or(WireError::BufferTooSmall)?;
    let (ip, udp) = out.split_at_mut(ipv4::HEADER_LEN);
    Ipv4Header::new(src, dst, PROTO_UDP, udp_len, ttl).emit(ip)?;
    emit_datagram(src_port, dst_port, payload, src, dst, udp)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

    #[test]
    fn hand_computed_checksum() {
        // 192.0.2.1:1234 -> 198.51.100.7:53, payload "hi!" (0x68 0x69 0x21), UDP length 11.
        // Pseudo-header words: c000 0201 c633 6407 0011 000b  sum 0x1_ec57
        // UDP words:           04d2 0035 000b 0000 6869 2100  sum 0x8e7b
        // 0x1_ec57 + 0x8e7b = 0x2_7ad2 -> fold 0x7ad4 -> complement 0x852b.
        let mut buf = [0u8; 11];
        assert_eq!(emit_datagram(1234, 53, b"hi!", SRC, DST, &mut buf), Ok(11));
        assert_eq!(
            buf,
            [0x04, 0xd2, 0x00, 0x35, 0x00, 0x0b, 0x85, 0x2b, 0x68, 0x69, 0x21]
        );
        let (h, payload) = parse_datagram(&buf, SRC, DST, true).unwrap();
        assert_eq!(
            h,
            UdpHeader {
                src_port: 1234,
                dst_port: 53,
                length: 11,
                checksum: 0x852b
            }
        );
        assert_eq!(payload, b"hi!");
    }

    /// Finds a payload word that makes the computed checksum 0, to see it sent as 0xffff.
    #[test]
    fn zero_checksum_sent_as_ffff() {
        // The sum with a zero payload word and a zero checksum field; the payload word that
        // brings its fold to 0xffff makes the computed checksum 0.
        let mut buf = [0, 1, 0, 2, 0, 10, 0, 0, 0, 0];
        let base = checksum::fold(datagram_sum(&buf, SRC, DST));
        let word = 0xffff - base;
        emit_datagram(1, 2, &word.to_be_bytes(), SRC, DST, &mut buf).unwrap();
        assert_eq!(&buf[6..8], &[0xff, 0xff]);
        assert!(parse_datagram(&buf, SRC, DST, true).is_ok());
    }

    #[test]
    fn zero_checksum_means_none() {
        let mut buf = [0u8; 12];
        emit_datagram(7, 9, b"abcd", SRC, DST, &mut buf).unwrap();
        buf[6] = 0;
        buf[7] = 0;
        buf[8] ^= 0xff; // corrupt: unchecked without a checksum
        let (h, p) = parse_datagram(&buf, SRC, DST, true).unwrap();
        assert_eq!(h.checksum, 0);
        assert_eq!(p.len(), 4);
    }

    #[test]
    fn errors() {
        let mut buf = [0u8; 12];
        emit_datagram(7, 9, b"abcd", SRC, DST, &mut buf).unwrap();
        assert_eq!(
            parse_datagram(&buf[..7], SRC, DST, true),
            Err(WireError::Truncated)
        );
        assert_eq!(
            parse_datagram(&buf[..11], SRC, DST, false),
            Err(WireError::BadTotalLength)
        );
        // Wrong pseudo-header.
        assert_eq!(
            parse_datagram(&buf, DST, SRC, true).map(|_| ()),
            Ok(()),
            "swapping addresses keeps the one's-complement sum"
        );
        assert_eq!(
            parse_datagram(&buf, SRC, Ipv4Addr::new(198, 51, 100, 8), true),
            Err(WireError::BadChecksum)
        );
        assert!(parse_datagram(&buf, SRC, Ipv4Addr::new(198, 51, 100, 8), false).is_ok());
        let mut bad = buf;
        bad[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            parse_datagram(&bad, SRC, DST, false),
            Err(WireError::BadTotalLength)
        );
        assert_eq!(
            emit_datagram(7, 9, b"abcd", SRC, DST, &mut [0u8; 11]),
            Err(WireError::BufferTooSmall)
        );
        let big = std::vec![0u8; 65_528];
        let mut out = std::vec![0u8; 70_000];
        assert_eq!(
            emit_datagram(1, 2, &big, SRC, DST, &mut out),
            Err(WireError::BadTotalLength)
        );
        assert_eq!(
            emit_datagram(1, 2, &big[..65_527], SRC, DST, &mut out),
            Ok(65_535)
        );
        assert!(parse_datagram(&out[..65_535], SRC, DST, true).is_ok());
        assert_eq!(
            emit_ipv4_udp(SRC, DST, 1, 2, &big[..65_508], 64, &mut out),
            Err(WireError::BadTotalLength)
        );
        assert_eq!(
            emit_ipv4_udp(SRC, DST, 1, 2, &big[..65_507], 64, &mut out),
            Ok(65_535)
        );
    }

    #[test]
    fn trailing_bytes_are_trimmed() {
        let mut buf = [0xeeu8; 16];
        emit_datagram(7, 9, b"abcd", SRC, DST, &mut buf).unwrap();
        let (h, p) = parse_datagram(&buf, SRC, DST, true).unwrap();
        assert_eq!(h.length, 12);
        assert_eq!(p, b"abcd");
    }

    #[test]
    fn ipv4_udp_packet() {
        let mut buf = [0u8; 64];
        let n = emit_ipv4_udp(SRC, DST, 5000, 6000, b"payload", 17, &mut buf).unwrap();
        assert_eq!(n, 20 + 8 + 7);
        let (ip, udp) = Ipv4Header::parse(&buf[..n]).unwrap();
        assert_eq!(ip.protocol, PROTO_UDP);
        assert_eq!(ip.ttl, 17);
        assert_eq!((ip.src, ip.dst), (SRC, DST));
        let (h, p) = parse_datagram(udp, ip.src, ip.dst, true).unwrap();
        assert_eq!((h.src_port, h.dst_port, h.length), (5000, 6000, 15));
        assert_eq!(p, b"payload");
        assert_eq!(
            emit_ipv4_udp(SRC, DST, 5000, 6000, b"payload", 17, &mut buf[..34]),
            Err(WireError::BufferTooSmall)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64),
                              verify in any::<bool>()) {
            let _ = parse_datagram(&data, SRC, DST, verify);
        }

        #[test]
        fn round_trip(sport in any::<u16>(), dport in any::<u16>(), src in any::<u32>(),
                      dst in any::<u32>(),
                      payload in proptest::collection::vec(any::<u8>(), 0..256)) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let mut buf: Vec<u8> = std::vec![0u8; payload.len() + HEADER_LEN];
            prop_assert_eq!(emit_datagram(sport, dport, &payload, src, dst, &mut buf),
                            Ok(payload.len() + HEADER_LEN));
            let (h, p) = parse_datagram(&buf, src, dst, true).unwrap();
            prop_assert_ne!(h.checksum, 0);
            prop_assert_eq!((h.src_port, h.dst_port), (sport, dport));
            prop_assert_eq!(usize::from(h.length), buf.len());
            prop_assert_eq!(p, &payload[..]);
        }

        #[test]
        fn any_single_bit_flip_is_caught(payload in proptest::collection::vec(any::<u8>(), 1..64),
                                         bit in 0usize..512) {
            let mut buf: Vec<u8> = std::vec![0u8; payload.len() + HEADER_LEN];
            emit_datagram(1, 2, &payload, SRC, DST, &mut buf).unwrap();
            let bit = bit % (buf.len() * 8);
            // Flipping a bit of the length field is caught as a length error instead.
            prop_assume!(!(32..48).contains(&bit));
            buf[bit / 8] ^= 1 << (bit % 8);
            let r = parse_datagram(&buf, SRC, DST, true);
            // A flip that zeroes the checksum field turns verification off; anything else fails.
            if u16::from_be_bytes([buf[6], buf[7]]) != 0 {
                prop_assert_eq!(r, Err(WireError::BadChecksum));
            }
        }
    }
}

//! The Internet checksum (RFC 1071): the one's-complement sum of big-endian 16-bit words.
//!
//! Sums are carried as unfolded `u32`s so that pieces (pseudo-header, header, payload) can be
//! added together with [`combine`] before a single [`fold`] / [`finish`]. The one's-complement sum is
//! arithmetic modulo `0xffff`, so any value congruent to the true sum folds to the same result.
//!
//! ```
//! use core::net::Ipv4Addr;
//! use hydranet_core::wire::checksum;
//!
//! let hdr = [0x45, 0x00, 0x00, 0x1c, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
//! let csum = checksum::finish(checksum::sum(&hdr));
//! let mut hdr2 = hdr;
//! hdr2[10..12].copy_from_slice(&csum.to_be_bytes());
//! assert_eq!(checksum::finish(checksum::sum(&hdr2)), 0);
//! # let _ = checksum::pseudo_header(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 6, 20);
//! ```

use core::net::Ipv4Addr;

/// The one's-complement sum of `data` read as big-endian 16-bit words, a trailing odd byte
/// padded with a zero byte, returned unfolded: a `u32` congruent to the word sum modulo
/// `0xffff` and non-zero whenever any byte is. Only [`fold`] / [`finish`] the total: sums of
/// several pieces are added with [`combine`] (a piece's sum may use all 32 bits), and each piece
/// must start at an even offset of the checksummed region.
///
/// Words are added 32 bits at a time into a 64-bit accumulator: 2^16 is 1 modulo 0xffff, so
/// the high and low halves of a 32-bit word add up to the same one's-complement value, and the
/// end-around carries are taken once at the end (RFC 1071 section 2). This halves the
/// additions of a 16-bit loop and lets the compiler vectorise the byte swaps.
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        acc += u64::from(u32::from_be_bytes([q[0], q[1], q[2], q[3]]));
    }
    let rest = quads.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc += u64::from(u32::from_be_bytes(tail));
    // Fold with end-around carries until it fits a u32; a non-zero sum stays non-zero.
    while acc > u64::from(u32::MAX) {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// The unfolded sum of the IPv4 pseudo-header (RFC 793 §3.1): source, destination, a zero byte,
/// `protocol`, and the upper-layer `length` in bytes.
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u32) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    (s >> 16)
        + (s & 0xffff)
        + (d >> 16)
        + (d & 0xffff)
        + u32::from(protocol)
        + (length >> 16)
        + (length & 0xffff)
}

/// Adds two unfolded sums with an end-around carry, so the total stays correct even if the `u32`
/// would overflow (every piece from [`sum`] may use all 32 bits).
pub fn combine(a: u32, b: u32) -> u32 {
    let (total, carry) = a.overflowing_add(b);
    total + u32::from(carry)
}

/// Folds the carries of an unfolded sum back into 16 bits. Not complemented.
pub fn fold(mut sum: u32) -> u16 {
    // Two rounds suffice for any u32: the first leaves at most 0x1_fffe.
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The checksum field value for an unfolded sum: the complement of [`fold`]. When verifying, the
/// sum over the data including its checksum field finishes to 0.
pub fn finish(sum: u32) -> u16 {
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;

    use proptest::prelude::*;
    use std::vec::Vec;

    /// The textbook definition, one word at a time, in u64 so it never overflows.
    fn naive(data: &[u8]) -> u64 {
        data.chunks(2)
            .map(|c| u64::from(c[0]) << 8 | c.get(1).map_or(0, |&b| u64::from(b)))
            .sum()
    }

    fn fold64(mut s: u64) -> u16 {
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to 2ddf0, which folds to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), fold(0x2_ddf0));
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(finish(sum(&data)), !0xddf2);
    }

    #[test]
    fn empty_and_odd() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(fold(sum(&[0xab])), 0xab00);
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56])), fold(0x1234 + 0x5600));
        assert_eq!(finish(0), 0xffff);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(fold(0x1_fffe), 0xffff);
    }

    #[test]
    fn exact_for_small_inputs() {
        let data: Vec<u8> = (0..1500u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in 0..data.len() {
            assert_eq!(fold(sum(&data[..n])), fold64(naive(&data[..n])), "n = {n}");
        }
        let ones = [0xffu8; 4];
        assert_eq!(fold(sum(&ones)), 0xffff);
    }

    #[test]
    fn large_inputs_fold_correctly() {
        // Large enough to need several blocks and the final fold into u32.
        let data: Vec<u8> = (0..(3 * 65536 + 13)).map(|i| 0xff ^ (i as u8)).collect();
        assert_eq!(fold(sum(&data)), fold64(naive(&data)));
        let ones = std::vec![0xffu8; 300_001];
        assert_eq!(fold(sum(&ones)), fold64(naive(&ones)));
    }

    #[test]
    fn known_ipv4_header() {
        // A real header (from Wikipedia's IPv4 checksum example): checksum 0xb861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(finish(sum(&hdr)), 0xb861);
        hdr[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(finish(sum(&hdr)), 0);
    }

    #[test]
    fn pseudo_header_matches_bytes() {
        let src = Ipv4Addr::new(192, 0, 2, 1);
        let dst = Ipv4Addr::new(198, 51, 100, 254);
        let mut bytes = [0u8; 12];
        bytes[0..4].copy_from_slice(&src.octets());
        bytes[4..8].copy_from_slice(&dst.octets());
        bytes[9] = 6;
        bytes[10..12].copy_from_slice(&1480u16.to_be_bytes());
        assert_eq!(fold(pseudo_header(src, dst, 6, 1480)), fold(sum(&bytes)));
    }

    #[test]
    fn combine_carries_around() {
        assert_eq!(combine(1, 2), 3);
        assert_eq!(combine(u32::MAX, 1), 1);
        assert_eq!(combine(u32::MAX, u32::MAX), u32::MAX);
        assert_eq!(fold(combine(0xffff_0000, 0x0002_0000)), 2);
    }

    proptest! {
        #[test]
        fn matches_naive(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            prop_assert_eq!(fold(sum(&data)), fold64(naive(&data)));
        }

        #[test]
        fn split_at_even_offsets(data in proptest::collection::vec(any::<u8>(), 0..2048),
                                 cut in 0usize..1024) {
            let cut = (cut * 2).min(data.len() & !1);
            let whole = fold(sum(&data));
            let parts = fold(combine(sum(&data[..cut]), sum(&data[cut..])));
            prop_assert_eq!(whole, parts);
        }
    }
}

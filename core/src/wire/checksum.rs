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
/// The one's-complement sum does not depend on byte order (RFC 1071 section 2(B)): summing the
/// bytes as native-endian words gives the byte-swapped sum, so it is swapped once at the end
/// instead of swapping every word. Words are 64 bits: 2^16 is 1 modulo 0xffff, so the four
/// 16-bit words of a `u64` add up to the same one's-complement value as the `u64` itself; and a
/// carry out of 64 bits is worth 2^64, also 1 modulo 0xffff, so it is added back in as 1 — an
/// end-around carry (RFC 1071 section 2(C)). Chained that way, each 8 bytes cost one
/// add-with-carry instruction (see `add_words`).
pub fn sum(data: &[u8]) -> u32 {
    // The sum so far is `acc + carries` (modulo 2^64 - 1): `carries` collects the carry left
    // over at the end of each chain, so that no chain has to wait for the previous one's.
    let mut acc: u64 = 0;
    let mut carries: u64 = 0;
    let mut rest = data;
    // 128-byte blocks: 16 chained additions per round of the loop's own 5 instructions (a
    // 64-byte block took 13 per 64 bytes; 1.7 % fewer instructions per segment in the bulk
    // transfer).
    while let Some((block, r)) = rest.split_first_chunk::<128>() {
        let carry;
        (acc, carry) = add_words(acc, block);
        carries += u64::from(carry);
        rest = r;
    }
    // Under 128 bytes left: fixed-size pieces, so that this compiles to straight-line code
    // rather than another loop or a `memcpy` call (a 20-byte IPv4 header is all remainder).
    if let Some((w, r)) = rest.split_first_chunk::<64>() {
        let carry;
        (acc, carry) = add_words(acc, w);
        carries += u64::from(carry);
        rest = r;
    }
    if let Some((w, r)) = rest.split_first_chunk::<32>() {
        let carry;
        (acc, carry) = add_words(acc, w);
        carries += u64::from(carry);
        rest = r;
    }
    if let Some((w, r)) = rest.split_first_chunk::<16>() {
        let carry;
        (acc, carry) = add_words(acc, w);
        carries += u64::from(carry);
        rest = r;
    }
    // The last 0 to 15 bytes, zero-padded, each at its own offset: what matters is whether a
    // byte is the first or the second of its 16-bit word, which an even offset preserves.
    let mut last = [0u8; 16];
    let mut at = 0;
    if let Some((w, r)) = rest.split_first_chunk::<8>() {
        last[..8].copy_from_slice(w);
        rest = r;
        at = 8;
    }
    if let Some((w, r)) = rest.split_first_chunk::<4>() {
        last[at..at + 4].copy_from_slice(w);
        rest = r;
        at += 4;
    }
    if let Some((w, r)) = rest.split_first_chunk::<2>() {
        last[at..at + 2].copy_from_slice(w);
        rest = r;
        at += 2;
    }
    if let Some(&b) = rest.first() {
        last[at] = b;
    }
    let carry;
    (acc, carry) = add_words(acc, &last);
    carries += u64::from(carry);
    // End-around carries down to 32 bits: 2^64 and 2^32 are 1 modulo 0xffff. Nothing overflows
    // (on a carry `lo` is at most 2^64 - 2; the first 32-bit step leaves at most 2^33 - 2), and
    // an end-around-carry addition never turns a non-zero sum into zero.
    let (lo, carry) = acc.overflowing_add(carries);
    let s = lo + u64::from(carry);
    let s = (s & 0xffff_ffff) + (s >> 32);
    let s = (s & 0xffff_ffff) + (s >> 32);
    // Folded to 16 bits in native byte order; reading its bytes as big-endian is the one swap.
    let native = fold(s as u32);
    u32::from(u16::from_be_bytes(native.to_ne_bytes()))
}

/// Adds `bytes` as native-endian `u64` words to `acc` in one carry chain, each word's carry out
/// going into the next addition as 1 (an end-around carry: 2^64 is 1 modulo 0xffff). Returns
/// the sum and the chain's last carry, which the caller still owes. Written as `overflowing_add`
/// of the word and then of the carry — the shape LLVM turns into `adc` with a memory operand —
/// because `carrying_add` is not stable at the workspace's minimum Rust.
#[inline(always)]
fn add_words<const N: usize>(acc: u64, bytes: &[u8; N]) -> (u64, bool) {
    let mut sum = acc;
    let mut carry = false;
    for w in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        let (s, c1) = sum.overflowing_add(u64::from_ne_bytes(word));
        let (s, c2) = s.overflowing_add(u64::from(carry));
        sum = s;
        carry = c1 | c2;
    }
    (sum, carry)
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
    fn carry_of_the_carries() {
        // Two all-ones words and a word of value 1 leave the accumulator at 2^64 - 1 with one
        // carry pending, whose addition carries once more. Which byte holds the 1 depends on the
        // machine's byte order, so try both; and the same words in a 64-byte block.
        for one_at in [0, 7] {
            let mut data = [0xffu8; 24];
            data[16..].fill(0);
            data[16 + one_at] = 1;
            assert_eq!(fold(sum(&data)), fold64(naive(&data)), "one at {one_at}");
            let mut block = [0u8; 64];
            block[..24].copy_from_slice(&data);
            assert_eq!(fold(sum(&block)), fold64(naive(&block)), "one at {one_at}");
        }
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

    /// Random bytes, or runs of 0xff (every word addition carries, so a lost end-around carry
    /// or a missing fold step shows) or of zeros (a sum that must stay exactly zero, or
    /// non-zero, through the fold), with a few random bytes sprinkled in.
    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        use proptest::collection::vec;
        prop_oneof![
            vec(any::<u8>(), 0..max),
            vec(prop_oneof![15 => Just(0xffu8), 1 => any::<u8>()], 0..max),
            vec(prop_oneof![15 => Just(0u8), 1 => any::<u8>()], 0..max),
        ]
    }

    /// The pseudo-header as the 12 bytes RFC 793 §3.1 describes, for the reference sum.
    fn pseudo_header_bytes(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&src.octets());
        b[4..8].copy_from_slice(&dst.octets());
        b[9] = protocol;
        b[10..12].copy_from_slice(&length.to_be_bytes());
        b
    }

    proptest! {
        /// Every length, odd ones included (the padded last byte must be the high byte of its
        /// word), from any starting address: the sum is relative to the slice, not to memory
        /// alignment. `fold` is compared exactly, so 0 and 0xffff (the two zeros of one's
        /// complement) are told apart; and the unfolded sum is zero only for all-zero data.
        #[test]
        fn matches_reference_any_length_and_start(buf in bytes(2008), start in 0usize..8,
                                                  len in 0usize..2000) {
            let start = start.min(buf.len());
            let data = &buf[start..(start + len).min(buf.len())];
            prop_assert_eq!(fold(sum(data)), fold64(naive(data)));
            prop_assert_eq!(sum(data) == 0, data.iter().all(|&b| b == 0));
        }

        /// A region summed in pieces (each starting at an even offset of it, of any length,
        /// odd ones last) and combined folds to the sum of the whole.
        #[test]
        fn pieces_combine_to_whole(data in bytes(2000),
                                   cuts in proptest::collection::vec(0usize..1000, 0..5),
                                   odd_end in any::<bool>()) {
            let mut data = data;
            if odd_end && data.len() % 2 == 0 && !data.is_empty() {
                data.pop();
            }
            let mut cuts: Vec<usize> = cuts.iter().map(|&c| (c * 2).min(data.len())).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort_unstable();
            let parts = cuts
                .windows(2)
                .fold(0, |acc, w| combine(acc, sum(&data[w[0]..w[1]])));
            prop_assert_eq!(fold(parts), fold64(naive(&data)));
            prop_assert_eq!(fold(parts), fold(sum(&data)));
        }

        /// The upper-layer checksum as TCP and UDP compute it, against the reference sum over
        /// the pseudo-header's bytes followed by the segment; and the checksum written into the
        /// segment makes the receiver's sum finish to 0.
        #[test]
        fn pseudo_header_and_segment(seg in bytes(2000), src in any::<u32>(), dst in any::<u32>(),
                                     protocol in any::<u8>()) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let len = seg.len() as u16;
            let ours = finish(combine(pseudo_header(src, dst, protocol, u32::from(len)), sum(&seg)));
            let mut whole = pseudo_header_bytes(src, dst, protocol, len).to_vec();
            whole.extend_from_slice(&seg);
            prop_assert_eq!(ours, !fold64(naive(&whole)));
            // Put it where TCP's checksum field is (after zeroing it, as the sender does).
            if seg.len() >= 18 {
                let mut seg = seg;
                seg[16..18].copy_from_slice(&[0, 0]);
                let c = finish(combine(pseudo_header(src, dst, protocol, u32::from(len)), sum(&seg)));
                seg[16..18].copy_from_slice(&c.to_be_bytes());
                let check = combine(pseudo_header(src, dst, protocol, u32::from(len)), sum(&seg));
                prop_assert_eq!(finish(check), 0);
            }
        }

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

//! The TCP header and options (RFC 9293, RFC 7323, RFC 2018), checked as FreeBSD's
//! `tcp_input()` checks them.

use core::fmt;
use core::iter::FusedIterator;
use core::net::Ipv4Addr;
use core::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Not};

use super::checksum;
use super::ipv4::PROTO_TCP;
use super::WireError;

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;
/// Most option bytes a header can carry (data offset 15 words).
pub const MAX_OPTIONS_LEN: usize = 40;

/// The twelve bits of the header's flag field: the eight classic flags, AE (the former NS bit,
/// RFC 3540 / AccECN) and three reserved bits, which are kept as received.
const FLAG_FIELD: u16 = 0x0fff;

/// TCP header flags, FreeBSD's `th_flags` widened to the 12-bit field (`tcp_get_flags()`).
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);
    /// Accurate-ECN bit, formerly NS (ECN nonce).
    pub const AE: TcpFlags = TcpFlags(0x100);

    pub const fn empty() -> TcpFlags {
        TcpFlags(0)
    }
    pub const fn bits(self) -> u16 {
        self.0
    }
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether any flag of `other` is set in `self`.
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }
    /// `self | other`, usable in `const` items.
    pub const fn union(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }
    pub fn insert(&mut self, other: TcpFlags) {
        self.0 |= other.0;
    }
    pub fn remove(&mut self, other: TcpFlags) {
        self.0 &= !other.0;
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}
impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}
impl BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}
impl BitAndAssign for TcpFlags {
    fn bitand_assign(&mut self, rhs: TcpFlags) {
        self.0 &= rhs.0;
    }
}
/// Complement within the 12-bit flag field.
impl Not for TcpFlags {
    type Output = TcpFlags;
    fn not(self) -> TcpFlags {
        TcpFlags(!self.0 & FLAG_FIELD)
    }
}

/// tcpdump's notation: `S`, `S.`, `P.`, `F.`, `R`, `R.`, `SEW`, ... (`none` when no flag is
/// set). Reserved bits are not shown.
impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(TcpFlags, &str); 9] = [
            (TcpFlags::FIN, "F"),
            (TcpFlags::SYN, "S"),
            (TcpFlags::RST, "R"),
            (TcpFlags::PSH, "P"),
            (TcpFlags::ACK, "."),
            (TcpFlags::URG, "U"),
            (TcpFlags::ECE, "E"),
            (TcpFlags::CWR, "W"),
            (TcpFlags::AE, "e"),
        ];
        let mut any = false;
        for (flag, name) in NAMES {
            if self.contains(flag) {
                f.write_str(name)?;
                any = true;
            }
        }
        if !any {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// The fixed TCP header. Sequence numbers are raw `u32`s; wrap them in
/// [`Seq`](crate::netinet::tcp_seq::Seq) for arithmetic.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TcpHeader {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    /// Header length in bytes, options included (20..=60). Ignored by [`emit_segment`].
    pub data_offset: u8,
    pub flags: TcpFlags,
    pub window: u16,
    /// As received. Ignored by [`emit_segment`], which computes it.
    pub checksum: u16,
    pub urgent: u16,
}

/// A parsed segment: the fixed header plus borrowed option and payload bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TcpSegment<'a> {
    pub header: TcpHeader,
    /// The raw options, `data_offset - 20` bytes; walk them with [`options`].
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

/// Parses a TCP segment (the IP payload) sent from `src` to `dst`.
///
/// Checks run in `tcp_input()`'s order: shorter than 20 bytes is [`WireError::Truncated`]
/// (`tcps_rcvshort`); a checksum mismatch, when `verify_checksum`, is
/// [`WireError::BadChecksum`] (`tcps_rcvbadsum`); a data offset below 20 or beyond the segment is
/// [`WireError::BadDataOffset`] (`tcps_rcvbadoff`). Options are not interpreted here.
pub fn parse_segment<'a>(
    segment: &'a [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    verify_checksum: bool,
) -> Result<TcpSegment<'a>, WireError> {
    let fixed = segment
        .first_chunk::<HEADER_LEN>()
        .ok_or(WireError::Truncated)?;
    if verify_checksum {
        let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
        let sum = checksum::combine(
            checksum::pseudo_header(src, dst, PROTO_TCP, len),
            checksum::sum(segment),
        );
        if checksum::finish(sum) != 0 {
            return Err(WireError::BadChecksum);
        }
    }
    let data_offset = usize::from(fixed[12] >> 4) * 4;
    if data_offset < HEADER_LEN {
        return Err(WireError::BadDataOffset);
    }
    let options = segment
        .get(HEADER_LEN..data_offset)
        .ok_or(WireError::BadDataOffset)?;
    let payload = segment.get(data_offset..).ok_or(WireError::BadDataOffset)?;
    let be16 = |i: usize| u16::from_be_bytes([fixed[i], fixed[i + 1]]);
    let be32 = |i: usize| u32::from_be_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
    let header = TcpHeader {
        src_port: be16(0),
        dst_port: be16(2),
        seq: be32(4),
        ack: be32(8),
        data_offset: data_offset as u8,
        flags: TcpFlags(be16(12) & FLAG_FIELD),
        window: be16(14),
        checksum: be16(16),
        urgent: be16(18),
    };
    Ok(TcpSegment {
        header,
        options,
        payload,
    })
}

/// Writes a segment (header, `options`, `payload`) into `buf` and fills in its checksum for the
/// pseudo-header `src` → `dst`. Returns the bytes written.
///
/// `header.data_offset` and `header.checksum` are ignored: the data offset is `20 +
/// options.len()`, and `options.len()` must be a multiple of 4 and at most 40
/// ([`WireError::BadOption`] otherwise; pad with NOP/EOL). A `buf` shorter than the segment is
/// [`WireError::BufferTooSmall`].
pub fn emit_segment(
    header: &TcpHeader,
    options: &[u8],
    payload: &[u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    buf: &mut [u8],
) -> Result<usize, WireError> {
    emit_segment_vectored(header, options, &[payload], src, dst, buf)
}

/// [`emit_segment`] with the payload given in pieces, which are laid out back to back — e.g. the
/// two halves returned by [`SockBuf::slices`](crate::socket::sockbuf::SockBuf::slices) when the
/// send buffer wraps.
pub fn emit_segment_vectored(
    header: &TcpHeader,
    options: &[u8],
    payload: &[&[u8]],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    buf: &mut [u8],
) -> Result<usize, WireError> {
    if !whole_words(options.len()) || options.len() > MAX_OPTIONS_LEN {
        return Err(WireError::BadOption);
    }
    let header_len = HEADER_LEN + options.len();
    let total = payload
        .iter()
        .fold(header_len, |n, p| n.saturating_add(p.len()));
    let out = buf.get_mut(..total).ok_or(WireError::BufferTooSmall)?;
    let (hdr, rest) = out.split_at_mut(header_len);
    let flags = header.flags.0 & FLAG_FIELD;
    hdr[0..2].copy_from_slice(&header.src_port.to_be_bytes());
    hdr[2..4].copy_from_slice(&header.dst_port.to_be_bytes());
    hdr[4..8].copy_from_slice(&header.seq.to_be_bytes());
    hdr[8..12].copy_from_slice(&header.ack.to_be_bytes());
    hdr[12] = ((header_len / 4) as u8) << 4 | (flags >> 8) as u8;
    hdr[13] = flags as u8;
    hdr[14..16].copy_from_slice(&header.window.to_be_bytes());
    hdr[16..18].copy_from_slice(&[0, 0]);
    hdr[18..20].copy_from_slice(&header.urgent.to_be_bytes());
    hdr[HEADER_LEN..].copy_from_slice(options);
    let mut at = 0;
    for piece in payload {
        let end = at + piece.len();
        rest[at..end].copy_from_slice(piece);
        at = end;
    }
    let len = u32::try_from(total).unwrap_or(u32::MAX);
    let sum = checksum::combine(
        checksum::pseudo_header(src, dst, PROTO_TCP, len),
        checksum::sum(out),
    );
    out[16..18].copy_from_slice(&checksum::finish(sum).to_be_bytes());
    Ok(total)
}

/// Whether `n` bytes are whole 32-bit words. (Masks rather than `is_multiple_of`, which is newer
/// than the workspace's minimum Rust.)
const fn whole_words(n: usize) -> bool {
    n & 3 == 0
}

/// Whether `n` bytes are whole SACK blocks.
const fn whole_sack_blocks(n: usize) -> bool {
    const _: () = assert!(TCPOLEN_SACK.is_power_of_two());
    n & (TCPOLEN_SACK - 1) == 0
}

pub const TCPOPT_EOL: u8 = 0;
pub const TCPOPT_NOP: u8 = 1;
pub const TCPOPT_MAXSEG: u8 = 2;
pub const TCPOPT_WINDOW: u8 = 3;
pub const TCPOPT_SACK_PERMITTED: u8 = 4;
pub const TCPOPT_SACK: u8 = 5;
pub const TCPOPT_TIMESTAMP: u8 = 8;
/// TCP-MD5 (RFC 2385).
pub const TCPOPT_SIGNATURE: u8 = 19;
/// TCP Fast Open (RFC 7413).
pub const TCPOPT_FASTOPEN: u8 = 34;
/// FreeBSD's spelling of [`TCPOPT_FASTOPEN`].
pub const TCPOPT_FAST_OPEN: u8 = TCPOPT_FASTOPEN;

pub const TCPOLEN_MAXSEG: usize = 4;
pub const TCPOLEN_WINDOW: usize = 3;
pub const TCPOLEN_SACK_PERMITTED: usize = 2;
/// Kind and length bytes of a SACK option.
pub const TCPOLEN_SACKHDR: usize = 2;
/// One SACK block.
pub const TCPOLEN_SACK: usize = 8;
pub const TCPOLEN_TIMESTAMP: usize = 10;
/// The RFC 7323 Appendix A layout: NOP, NOP, timestamp.
pub const TCPOLEN_TSTAMP_APPA: usize = TCPOLEN_TIMESTAMP + 2;
/// Most SACK blocks one option can carry within [`MAX_OPTIONS_LEN`].
pub const MAX_SACK_BLOCKS: usize = (MAX_OPTIONS_LEN - TCPOLEN_SACKHDR) / TCPOLEN_SACK;

/// The blocks of a SACK option, borrowed from the segment: `len() * 8` bytes of big-endian
/// (left edge, right edge) pairs.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SackBlocks<'a>(&'a [u8]);

impl<'a> SackBlocks<'a> {
    /// Wraps raw block bytes: a positive multiple of 8 that fits an option (at most 248 bytes),
    /// else [`WireError::BadOption`].
    pub fn new(raw: &'a [u8]) -> Result<SackBlocks<'a>, WireError> {
        if raw.is_empty()
            || !whole_sack_blocks(raw.len())
            || raw.len() > usize::from(u8::MAX) - TCPOLEN_SACKHDR
        {
            return Err(WireError::BadOption);
        }
        Ok(SackBlocks(raw))
    }
    /// The blocks as `(left, right)` sequence numbers, in the order sent.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + 'a {
        self.0.chunks_exact(TCPOLEN_SACK).map(|c| {
            (
                u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            )
        })
    }
    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.0.len() / TCPOLEN_SACK
    }
    /// Always false for blocks obtained from a parse or [`SackBlocks::new`].
    pub fn is_empty(&self) -> bool {
        self.0.len() < TCPOLEN_SACK
    }
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// One element of a TCP options block.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TcpOption<'a> {
    Eol,
    Nop,
    Mss(u16),
    /// The shift count as sent (not clamped to 14; `tcp_dooptions()`' caller does that).
    WindowScale(u8),
    SackPermitted,
    Sack(SackBlocks<'a>),
    Timestamp {
        tsval: u32,
        tsecr: u32,
    },
    /// Any other kind, or a known kind whose length is wrong for it (which FreeBSD ignores).
    /// `data` excludes the kind and length bytes.
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

impl TcpOption<'_> {
    /// The option kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            TcpOption::Eol => TCPOPT_EOL,
            TcpOption::Nop => TCPOPT_NOP,
            TcpOption::Mss(_) => TCPOPT_MAXSEG,
            TcpOption::WindowScale(_) => TCPOPT_WINDOW,
            TcpOption::SackPermitted => TCPOPT_SACK_PERMITTED,
            TcpOption::Sack(_) => TCPOPT_SACK,
            TcpOption::Timestamp { .. } => TCPOPT_TIMESTAMP,
            TcpOption::Unknown { kind, .. } => *kind,
        }
    }

    /// Encoded length in bytes, kind and length bytes included.
    #[allow(clippy::len_without_is_empty)] // an option is never empty
    pub fn len(&self) -> usize {
        match self {
            TcpOption::Eol | TcpOption::Nop => 1,
            TcpOption::Mss(_) => TCPOLEN_MAXSEG,
            TcpOption::WindowScale(_) => TCPOLEN_WINDOW,
            TcpOption::SackPermitted => TCPOLEN_SACK_PERMITTED,
            TcpOption::Sack(blocks) => TCPOLEN_SACKHDR + blocks.0.len(),
            TcpOption::Timestamp { .. } => TCPOLEN_TIMESTAMP,
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Writes the option at the start of `buf`, returning its length. [`WireError::BadOption`]
    /// if it cannot be encoded (an `Unknown` of kind EOL or NOP, or longer than 255 bytes);
    /// [`WireError::BufferTooSmall`] if `buf` is short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let len = self.len();
        let length_byte = u8::try_from(len).map_err(|_| WireError::BadOption)?;
        if let TcpOption::Unknown { kind, .. } = self {
            if *kind == TCPOPT_EOL || *kind == TCPOPT_NOP {
                return Err(WireError::BadOption);
            }
        }
        let out = buf.get_mut(..len).ok_or(WireError::BufferTooSmall)?;
        out[0] = self.kind();
        if len == 1 {
            return Ok(1);
        }
        out[1] = length_byte;
        let body = &mut out[2..];
        match self {
            TcpOption::Eol | TcpOption::Nop | TcpOption::SackPermitted => {}
            TcpOption::Mss(mss) => body.copy_from_slice(&mss.to_be_bytes()),
            TcpOption::WindowScale(shift) => body[0] = *shift,
            TcpOption::Sack(blocks) => body.copy_from_slice(blocks.0),
            TcpOption::Timestamp { tsval, tsecr } => {
                body[..4].copy_from_slice(&tsval.to_be_bytes());
                body[4..].copy_from_slice(&tsecr.to_be_bytes());
            }
            TcpOption::Unknown { data, .. } => body.copy_from_slice(data),
        }
        Ok(len)
    }
}

/// Writes a SACK option carrying `blocks` as (left, right) pairs at the start of `buf`. Returns
/// the bytes written (`2 + 8 * blocks.len()`). No blocks, or more than [`MAX_SACK_BLOCKS`], is
/// [`WireError::BadOption`]; a short `buf` is [`WireError::BufferTooSmall`].
pub fn emit_sack(blocks: &[(u32, u32)], buf: &mut [u8]) -> Result<usize, WireError> {
    if blocks.is_empty() || blocks.len() > MAX_SACK_BLOCKS {
        return Err(WireError::BadOption);
    }
    let len = TCPOLEN_SACKHDR + TCPOLEN_SACK * blocks.len();
    let out = buf.get_mut(..len).ok_or(WireError::BufferTooSmall)?;
    out[0] = TCPOPT_SACK;
    out[1] = len as u8;
    for (chunk, (left, right)) in out[TCPOLEN_SACKHDR..]
        .chunks_exact_mut(TCPOLEN_SACK)
        .zip(blocks)
    {
        chunk[..4].copy_from_slice(&left.to_be_bytes());
        chunk[4..].copy_from_slice(&right.to_be_bytes());
    }
    Ok(len)
}

/// Walks a raw options block; see [`options`].
#[derive(Clone, Debug)]
pub struct TcpOptionIter<'a> {
    rest: &'a [u8],
}

/// Iterates over every element of a raw options block, in order.
///
/// Unlike `tcp_dooptions()`, an EOL does not end the walk: each EOL and NOP is yielded, so that
/// padding is visible to a checker (a consumer that wants FreeBSD's semantics stops at the first
/// [`TcpOption::Eol`]). A length byte below 2, or an option running past the end of the block,
/// yields `Err(WireError::BadOption)` once and then ends the iteration. A known kind whose length
/// is wrong for it (MSS not 4, window scale not 3, SACK-permitted not 2, timestamp not 10, SACK
/// whose body is not a positive multiple of 8) is yielded as [`TcpOption::Unknown`].
pub fn options(raw: &[u8]) -> TcpOptionIter<'_> {
    TcpOptionIter { rest: raw }
}

impl<'a> Iterator for TcpOptionIter<'a> {
    type Item = Result<TcpOption<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after_kind) = self.rest.split_first()?;
        match kind {
            TCPOPT_EOL => {
                self.rest = after_kind;
                return Some(Ok(TcpOption::Eol));
            }
            TCPOPT_NOP => {
                self.rest = after_kind;
                return Some(Ok(TcpOption::Nop));
            }
            _ => {}
        }
        let len = after_kind.first().map_or(0, |&l| usize::from(l));
        let Some((opt, rest)) = self.rest.split_at_checked(len).filter(|_| len >= 2) else {
            self.rest = &[];
            return Some(Err(WireError::BadOption));
        };
        self.rest = rest;
        let data = &opt[2..];
        let parsed = match (kind, data) {
            (TCPOPT_MAXSEG, &[a, b]) => TcpOption::Mss(u16::from_be_bytes([a, b])),
            (TCPOPT_WINDOW, &[shift]) => TcpOption::WindowScale(shift),
            (TCPOPT_SACK_PERMITTED, &[]) => TcpOption::SackPermitted,
            (TCPOPT_SACK, _) if !data.is_empty() && whole_sack_blocks(data.len()) => {
                TcpOption::Sack(SackBlocks(data))
            }
            (TCPOPT_TIMESTAMP, &[a, b, c, d, e, f, g, h]) => TcpOption::Timestamp {
                tsval: u32::from_be_bytes([a, b, c, d]),
                tsecr: u32::from_be_bytes([e, f, g, h]),
            },
            _ => TcpOption::Unknown { kind, data },
        };
        Some(Ok(parsed))
    }
}

impl FusedIterator for TcpOptionIter<'_> {}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;
    use std::string::ToString;
    use std::vec::Vec;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

    /// A SYN 192.0.2.1.40000 > 198.51.100.2.80, seq 0x12345678, win 65535,
    /// options [mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 0]. The checksum (0x5629) was
    /// computed independently of this crate.
    const SYN: [u8; 40] = [
        0x9c, 0x40, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xff,
        0xff, 0x56, 0x29, 0x00, 0x00, // fixed header
        0x02, 0x04, 0x05, 0xb4, // mss 1460
        0x01, // nop
        0x03, 0x03, 0x06, // wscale 6
        0x04, 0x02, // sackOK
        0x08, 0x0a, 0x00, 0x00, 0x00, 0x64, 0x00, 0x00, 0x00, 0x00, // TS val 100 ecr 0
    ];

    fn syn_header() -> TcpHeader {
        TcpHeader {
            src_port: 40000,
            dst_port: 80,
            seq: 0x1234_5678,
            ack: 0,
            data_offset: 40,
            flags: TcpFlags::SYN,
            window: 65535,
            checksum: 0x5629,
            urgent: 0,
        }
    }

    fn collect(raw: &[u8]) -> Vec<Result<TcpOption<'_>, WireError>> {
        options(raw).collect()
    }

    #[test]
    fn parse_known_syn() {
        let seg = parse_segment(&SYN, SRC, DST, true).unwrap();
        assert_eq!(seg.header, syn_header());
        assert!(seg.payload.is_empty());
        assert_eq!(seg.options, &SYN[20..]);
        let opts = collect(seg.options);
        assert_eq!(
            opts,
            [
                Ok(TcpOption::Mss(1460)),
                Ok(TcpOption::Nop),
                Ok(TcpOption::WindowScale(6)),
                Ok(TcpOption::SackPermitted),
                Ok(TcpOption::Timestamp {
                    tsval: 100,
                    tsecr: 0
                }),
            ]
        );
        // Re-encoding the parsed options reproduces the bytes.
        let mut buf = [0u8; 40];
        let mut at = 0;
        for o in opts {
            at += o.unwrap().emit(&mut buf[at..]).unwrap();
        }
        assert_eq!(&buf[..at], &SYN[20..]);
    }

    #[test]
    fn emit_known_syn() {
        let mut buf = [0u8; 64];
        let mut h = syn_header();
        h.checksum = 0xdead; // ignored
        h.data_offset = 0; // ignored
        let n = emit_segment(&h, &SYN[20..], &[], SRC, DST, &mut buf).unwrap();
        assert_eq!(&buf[..n], &SYN[..]);
    }

    #[test]
    fn checksum_depends_on_addresses() {
        assert_eq!(
            parse_segment(&SYN, DST, SRC, true).map(|_| ()),
            Ok(()),
            "the pseudo-header sum is symmetric in src and dst"
        );
        assert_eq!(
            parse_segment(&SYN, SRC, Ipv4Addr::new(198, 51, 100, 3), true),
            Err(WireError::BadChecksum)
        );
        assert!(parse_segment(&SYN, SRC, Ipv4Addr::new(198, 51, 100, 3), false).is_ok());
    }

    #[test]
    fn round_trip_with_payload_and_flags() {
        let h = TcpHeader {
            src_port: 1,
            dst_port: 65535,
            seq: u32::MAX,
            ack: 7,
            data_offset: 0,
            flags: TcpFlags::ACK | TcpFlags::PSH | TcpFlags::AE | TcpFlags::CWR,
            window: 1234,
            checksum: 0,
            urgent: 9,
        };
        let opts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        let mut buf = [0u8; 100];
        let n =
            emit_segment_vectored(&h, &opts, &[b"hel", b"lo", b""], SRC, DST, &mut buf).unwrap();
        assert_eq!(n, 20 + 12 + 5);
        let seg = parse_segment(&buf[..n], SRC, DST, true).unwrap();
        assert_eq!(seg.header.data_offset, 32);
        assert_eq!(seg.header.flags, h.flags);
        assert_eq!(seg.options, &opts);
        assert_eq!(seg.payload, b"hello");
        let expect = TcpHeader {
            data_offset: 32,
            checksum: seg.header.checksum,
            ..h
        };
        assert_eq!(seg.header, expect);
    }

    #[test]
    fn segment_errors() {
        assert_eq!(
            parse_segment(&SYN[..19], SRC, DST, false),
            Err(WireError::Truncated)
        );
        assert_eq!(
            parse_segment(&[], SRC, DST, true),
            Err(WireError::Truncated)
        );

        let mut bad = SYN;
        bad[30] ^= 0x40;
        assert_eq!(
            parse_segment(&bad, SRC, DST, true),
            Err(WireError::BadChecksum)
        );

        // Data offset 4 words, and 11 words (44 > 40 bytes), with the checksum left stale: the
        // checksum is checked first, as tcp_input() does.
        for off in [0x40u8, 0xb0] {
            let mut bad = SYN;
            bad[12] = off;
            assert_eq!(
                parse_segment(&bad, SRC, DST, true),
                Err(WireError::BadChecksum)
            );
            assert_eq!(
                parse_segment(&bad, SRC, DST, false),
                Err(WireError::BadDataOffset)
            );
        }
        // Data offset 5 words over a 20-byte segment is fine; 6 words is not.
        let mut hdr = [0u8; 20];
        hdr[12] = 0x50;
        assert!(parse_segment(&hdr, SRC, DST, false).is_ok());
        hdr[12] = 0x60;
        assert_eq!(
            parse_segment(&hdr, SRC, DST, false),
            Err(WireError::BadDataOffset)
        );
    }

    #[test]
    fn emit_errors() {
        let h = syn_header();
        let mut buf = [0u8; 100];
        assert_eq!(
            emit_segment(&h, &[1, 1, 1], &[], SRC, DST, &mut buf),
            Err(WireError::BadOption)
        );
        assert_eq!(
            emit_segment(&h, &[1; 44], &[], SRC, DST, &mut buf),
            Err(WireError::BadOption)
        );
        assert_eq!(
            emit_segment(&h, &[1; 40], &[], SRC, DST, &mut buf[..59]),
            Err(WireError::BufferTooSmall)
        );
        assert_eq!(
            emit_segment(&h, &[1; 40], b"x", SRC, DST, &mut buf[..60]),
            Err(WireError::BufferTooSmall)
        );
        assert_eq!(
            emit_segment(&h, &[1; 40], b"x", SRC, DST, &mut buf[..61]),
            Ok(61)
        );
    }

    #[test]
    fn reserved_flag_bits_survive() {
        let mut seg = SYN;
        seg[12] = 0xae; // offset 10 words, reserved bits 111, AE 0
        let parsed = parse_segment(&seg, SRC, DST, false).unwrap();
        assert_eq!(parsed.header.flags, TcpFlags(0xe02));
        let mut out = [0u8; 40];
        emit_segment(&parsed.header, parsed.options, &[], SRC, DST, &mut out[..]).unwrap();
        assert_eq!(out[12], 0xae);
    }

    #[test]
    fn flags_ops_and_display() {
        let sa = TcpFlags::SYN | TcpFlags::ACK;
        assert!(sa.contains(TcpFlags::SYN));
        assert!(!sa.contains(TcpFlags::SYN | TcpFlags::FIN));
        assert!(sa.intersects(TcpFlags::SYN | TcpFlags::FIN));
        assert!(!sa.intersects(TcpFlags::RST));
        assert_eq!(sa & !TcpFlags::SYN, TcpFlags::ACK);
        assert_eq!((!TcpFlags::empty()).0, 0x0fff);
        let mut f = TcpFlags::empty();
        assert!(f.is_empty());
        f |= TcpFlags::FIN;
        f.insert(TcpFlags::ACK);
        f.remove(TcpFlags::FIN);
        f &= TcpFlags::ACK | TcpFlags::PSH;
        assert_eq!(f, TcpFlags::ACK);
        const SYN_ACK: TcpFlags = TcpFlags::SYN.union(TcpFlags::ACK);
        assert_eq!(SYN_ACK, sa);

        let show = |f: TcpFlags| f.to_string();
        assert_eq!(show(TcpFlags::SYN), "S");
        assert_eq!(show(sa), "S.");
        assert_eq!(show(TcpFlags::FIN | TcpFlags::ACK), "F.");
        assert_eq!(show(TcpFlags::RST), "R");
        assert_eq!(show(TcpFlags::RST | TcpFlags::ACK), "R.");
        assert_eq!(show(TcpFlags::PSH | TcpFlags::ACK), "P.");
        assert_eq!(show(TcpFlags::ACK), ".");
        assert_eq!(show(TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR), "SEW");
        assert_eq!(show(sa | TcpFlags::ECE), "S.E");
        assert_eq!(show(TcpFlags::ACK | TcpFlags::URG | TcpFlags::AE), ".Ue");
        assert_eq!(show(TcpFlags::empty()), "none");
        assert_eq!(show(TcpFlags(0x800)), "none");
    }

    #[test]
    fn options_with_padding_eols() {
        let raw = [2, 4, 0x05, 0xb4, 4, 2, 0, 0];
        assert_eq!(
            collect(&raw),
            [
                Ok(TcpOption::Mss(1460)),
                Ok(TcpOption::SackPermitted),
                Ok(TcpOption::Eol),
                Ok(TcpOption::Eol),
            ]
        );
        // Options after an EOL are still walked.
        assert_eq!(
            collect(&[0, 1, 3, 3, 14]),
            [
                Ok(TcpOption::Eol),
                Ok(TcpOption::Nop),
                Ok(TcpOption::WindowScale(14))
            ]
        );
        assert!(collect(&[]).is_empty());
    }

    #[test]
    fn options_malformed() {
        // Length byte missing, too small, or running past the end: one error, then done.
        assert_eq!(
            collect(&[1, 2]),
            [Ok(TcpOption::Nop), Err(WireError::BadOption)]
        );
        assert_eq!(collect(&[8, 1, 1, 1]), [Err(WireError::BadOption)]);
        assert_eq!(collect(&[8, 0, 1, 1]), [Err(WireError::BadOption)]);
        assert_eq!(
            collect(&[1, 2, 5, 1, 1]),
            [Ok(TcpOption::Nop), Err(WireError::BadOption)]
        );
        let mut it = options(&[30, 9, 0]);
        assert_eq!(it.next(), Some(Err(WireError::BadOption)));
        assert_eq!(it.next(), None);
        assert_eq!(it.next(), None);

        // Known kinds with the wrong length are Unknown, and the walk continues.
        assert_eq!(
            collect(&[2, 3, 5, 4, 3, 1, 3, 4, 7, 7, 8, 2, 5, 2, 5, 3, 9, 5, 7, 9, 0, 0, 0, 0]),
            [
                Ok(TcpOption::Unknown {
                    kind: 2,
                    data: &[5]
                }),
                Ok(TcpOption::Unknown {
                    kind: 4,
                    data: &[1]
                }),
                Ok(TcpOption::Unknown {
                    kind: 3,
                    data: &[7, 7]
                }),
                Ok(TcpOption::Unknown { kind: 8, data: &[] }),
                Ok(TcpOption::Unknown { kind: 5, data: &[] }),
                Ok(TcpOption::Unknown {
                    kind: 5,
                    data: &[9]
                }),
                Ok(TcpOption::Unknown {
                    kind: 5,
                    data: &[9, 0, 0, 0, 0]
                }),
            ]
        );
        assert_eq!(
            collect(&[34, 4, 0xaa, 0xbb, 19, 2]),
            [
                Ok(TcpOption::Unknown {
                    kind: TCPOPT_FASTOPEN,
                    data: &[0xaa, 0xbb]
                }),
                Ok(TcpOption::Unknown {
                    kind: TCPOPT_SIGNATURE,
                    data: &[]
                }),
            ]
        );
    }

    #[test]
    fn sack_blocks() {
        let mut buf = [0u8; 40];
        let blocks = [(1, 2), (0xffff_fff0, 0x10), (100, 200)];
        assert_eq!(emit_sack(&blocks, &mut buf), Ok(26));
        assert_eq!(&buf[..2], &[5, 26]);
        let opts = collect(&buf[..26]);
        let [Ok(TcpOption::Sack(parsed))] = opts[..] else {
            panic!("{opts:?}");
        };
        assert_eq!(parsed.len(), 3);
        assert!(!parsed.is_empty());
        assert!(parsed.iter().eq(blocks.iter().copied()));
        let opt = TcpOption::Sack(parsed);
        assert_eq!(opt.len(), 26);
        let mut again = [0u8; 26];
        assert_eq!(opt.emit(&mut again), Ok(26));
        assert_eq!(again, buf[..26]);

        assert_eq!(emit_sack(&[], &mut buf), Err(WireError::BadOption));
        assert_eq!(emit_sack(&[(0, 0); 5], &mut buf), Err(WireError::BadOption));
        assert_eq!(emit_sack(&[(0, 0); 4], &mut buf), Ok(34));
        assert_eq!(
            emit_sack(&[(0, 0); 2], &mut buf[..17]),
            Err(WireError::BufferTooSmall)
        );
        assert!(SackBlocks::new(&[0; 8]).is_ok());
        assert_eq!(SackBlocks::new(&[]), Err(WireError::BadOption));
        assert_eq!(SackBlocks::new(&[0; 9]), Err(WireError::BadOption));
        assert_eq!(SackBlocks::new(&[0; 256]), Err(WireError::BadOption));
    }

    #[test]
    fn option_emit_each_kind() {
        let cases: [(TcpOption<'_>, &[u8]); 8] = [
            (TcpOption::Eol, &[0]),
            (TcpOption::Nop, &[1]),
            (TcpOption::Mss(0x1234), &[2, 4, 0x12, 0x34]),
            (TcpOption::WindowScale(9), &[3, 3, 9]),
            (TcpOption::SackPermitted, &[4, 2]),
            (
                TcpOption::Timestamp {
                    tsval: 0x0102_0304,
                    tsecr: 0xa0b0_c0d0,
                },
                &[8, 10, 1, 2, 3, 4, 0xa0, 0xb0, 0xc0, 0xd0],
            ),
            (
                TcpOption::Unknown {
                    kind: 34,
                    data: &[1, 2, 3],
                },
                &[34, 5, 1, 2, 3],
            ),
            (
                TcpOption::Unknown {
                    kind: 99,
                    data: &[],
                },
                &[99, 2],
            ),
        ];
        for (opt, bytes) in cases {
            let mut buf = [0u8; 16];
            assert_eq!(opt.len(), bytes.len());
            assert_eq!(opt.emit(&mut buf), Ok(bytes.len()));
            assert_eq!(&buf[..bytes.len()], bytes);
            assert_eq!(opt.kind(), bytes[0]);
            assert_eq!(collect(bytes), [Ok(opt)]);
            assert_eq!(
                opt.emit(&mut buf[..bytes.len() - 1]),
                Err(WireError::BufferTooSmall)
            );
        }
        let mut buf = [0u8; 300];
        let big = [0u8; 254];
        assert_eq!(
            TcpOption::Unknown {
                kind: 50,
                data: &big
            }
            .emit(&mut buf),
            Err(WireError::BadOption)
        );
        assert_eq!(
            TcpOption::Unknown {
                kind: 50,
                data: &big[..253]
            }
            .emit(&mut buf),
            Ok(255)
        );
        assert_eq!(
            TcpOption::Unknown { kind: 1, data: &[] }.emit(&mut buf),
            Err(WireError::BadOption)
        );
    }

    /// Cross-check against smoltcp's independent implementation.
    #[test]
    fn smoltcp_agrees_on_known_syn() {
        use smoltcp::wire::{IpAddress, TcpPacket};
        let p = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert!(p.verify_checksum(&IpAddress::Ipv4(SRC), &IpAddress::Ipv4(DST)));
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.header_len(), 40);
        assert!(p.syn() && !p.ack());
    }

    fn arb_option() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(std::vec![0u8]),
            Just(std::vec![1u8]),
            any::<u16>().prop_map(TcpOption::Mss).prop_map(encode),
            any::<u8>()
                .prop_map(TcpOption::WindowScale)
                .prop_map(encode),
            Just(std::vec![4u8, 2]),
            (any::<u32>(), any::<u32>())
                .prop_map(|(tsval, tsecr)| encode(TcpOption::Timestamp { tsval, tsecr })),
            proptest::collection::vec((any::<u32>(), any::<u32>()), 1..=4).prop_map(|b| {
                let mut buf = std::vec![0u8; 40];
                let n = emit_sack(&b, &mut buf).unwrap();
                buf.truncate(n);
                buf
            }),
            (9u8..=255, proptest::collection::vec(any::<u8>(), 0..8))
                .prop_map(|(kind, data)| { encode(TcpOption::Unknown { kind, data: &data }) }),
        ]
    }

    fn encode(o: TcpOption<'_>) -> Vec<u8> {
        let mut buf = std::vec![0u8; o.len()];
        o.emit(&mut buf).unwrap();
        buf
    }

    prop_compose! {
        fn arb_header()(src_port in any::<u16>(), dst_port in any::<u16>(), seq in any::<u32>(),
                        ack in any::<u32>(), flags in 0u16..0x1000, window in any::<u16>(),
                        urgent in any::<u16>()) -> TcpHeader {
            TcpHeader { src_port, dst_port, seq, ack, data_offset: 0, flags: TcpFlags(flags),
                        window, checksum: 0, urgent }
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..100),
                              verify in any::<bool>(), src in any::<u32>(), dst in any::<u32>()) {
            if let Ok(seg) = parse_segment(&data, Ipv4Addr::from(src), Ipv4Addr::from(dst), verify) {
                prop_assert_eq!(usize::from(seg.header.data_offset), HEADER_LEN + seg.options.len());
                prop_assert_eq!(seg.options.len() + seg.payload.len() + HEADER_LEN, data.len());
                for _ in options(seg.options) {}
            }
        }

        #[test]
        fn options_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut consumed = 0;
            let mut errors = 0;
            for o in options(&data) {
                match o {
                    Ok(o) => {
                        consumed += o.len();
                        // Every parsed option re-encodes to exactly the bytes it came from.
                        let mut buf = [0u8; 256];
                        let n = o.emit(&mut buf).unwrap();
                        prop_assert_eq!(&buf[..n], &data[consumed - n..consumed]);
                    }
                    Err(e) => {
                        prop_assert_eq!(e, WireError::BadOption);
                        errors += 1;
                    }
                }
            }
            prop_assert!(errors <= 1);
            prop_assert!(errors == 1 || consumed == data.len());
        }

        #[test]
        fn options_round_trip(opts in proptest::collection::vec(arb_option(), 0..8)) {
            let raw: Vec<u8> = opts.concat();
            let parsed: Vec<_> = options(&raw).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(parsed.len(), opts.len());
            for (p, bytes) in parsed.iter().zip(&opts) {
                prop_assert_eq!(&encode(*p), bytes);
            }
        }

        #[test]
        fn segment_round_trip(h in arb_header(), opt_words in 0usize..=10,
                              opt_fill in any::<u8>(),
                              payload in proptest::collection::vec(any::<u8>(), 0..200),
                              src in any::<u32>(), dst in any::<u32>()) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let opts = std::vec![opt_fill; opt_words * 4];
            let mut buf = std::vec![0u8; 300];
            let n = emit_segment(&h, &opts, &payload, src, dst, &mut buf).unwrap();
            prop_assert_eq!(n, HEADER_LEN + opts.len() + payload.len());
            let seg = parse_segment(&buf[..n], src, dst, true).unwrap();
            prop_assert_eq!(seg.header, TcpHeader {
                data_offset: (HEADER_LEN + opts.len()) as u8,
                checksum: seg.header.checksum,
                ..h
            });
            prop_assert_eq!(seg.options, &opts[..]);
            prop_assert_eq!(seg.payload, &payload[..]);

            // smoltcp accepts our checksum and reads the same fields.
            let p = smoltcp::wire::TcpPacket::new_checked(&buf[..n]).unwrap();
            prop_assert!(p.verify_checksum(&smoltcp::wire::IpAddress::Ipv4(src),
                                           &smoltcp::wire::IpAddress::Ipv4(dst)));
            prop_assert_eq!(p.checksum(), seg.header.checksum);
            prop_assert_eq!(p.payload(), &payload[..]);

            // Any single corrupted byte is caught.
            let i = usize::from(h.window) % n;
            let mut bad = buf[..n].to_vec();
            bad[i] ^= 0x5a;
            prop_assert_eq!(parse_segment(&bad, src, dst, true).map(|_| ()),
                            Err(WireError::BadChecksum));
        }
    }
}

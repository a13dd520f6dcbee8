//! Wire formats: IPv4 and TCP headers, options and checksums.
//!
//! Every parser here takes untrusted bytes and returns a [`Result`]; none of them panics, whatever
//! the input. Emitters write into a caller-supplied buffer and report [`WireError::BufferTooSmall`]
//! rather than truncating.

pub mod checksum;
pub mod ipip;
pub mod ipv4;
pub mod tcp;
pub mod udp;

use core::fmt;

/// Why a packet could not be parsed or emitted.
///
/// The variants map onto the FreeBSD drop counters a caller is expected to bump: `ips_toosmall`
/// / `tcps_rcvshort` ([`Truncated`](WireError::Truncated)), `ips_badvers`, `ips_badhlen`,
/// `ips_badlen` / `ips_tooshort`, `ips_badsum` / `tcps_rcvbadsum`, `tcps_rcvbadoff`, and
/// `ips_fragments` ([`Fragmented`](WireError::Fragmented)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WireError {
    /// The buffer is shorter than the fixed header.
    Truncated,
    /// The IP version field is not 4.
    BadVersion,
    /// The IPv4 header length (IHL) is below 20 bytes or runs past the packet.
    BadHeaderLength,
    /// The IPv4 total length is below the header length or beyond the packet.
    BadTotalLength,
    /// The IPv4 header or TCP checksum does not verify.
    BadChecksum,
    /// The TCP data offset is below 20 bytes or beyond the segment.
    BadDataOffset,
    /// A TCP option is malformed, or an options block to emit is not a multiple of 4 bytes or
    /// longer than 40.
    BadOption,
    /// The output buffer cannot hold what is to be emitted.
    BufferTooSmall,
    /// The IPv4 packet is a fragment (MF set or a non-zero offset); the core does not reassemble.
    Fragmented,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "packet truncated",
            WireError::BadVersion => "bad IP version",
            WireError::BadHeaderLength => "bad IP header length",
            WireError::BadTotalLength => "bad IP total length",
            WireError::BadChecksum => "bad checksum",
            WireError::BadDataOffset => "bad TCP data offset",
            WireError::BadOption => "bad TCP option",
            WireError::BufferTooSmall => "output buffer too small",
            WireError::Fragmented => "IP fragment",
        })
    }
}

impl core::error::Error for WireError {}

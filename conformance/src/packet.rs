//! A small, self-contained IPv4 + TCP builder and parser.
//!
//! It is deliberately independent of `hydranet_core::wire`, so that the judge does not share
//! code with the thing it judges. Parsing never panics on any input.

use std::fmt;
use std::net::Ipv4Addr;

pub const TH_FIN: u8 = 0x01;
pub const TH_SYN: u8 = 0x02;
pub const TH_RST: u8 = 0x04;
pub const TH_PUSH: u8 = 0x08;
pub const TH_ACK: u8 = 0x10;
pub const TH_URG: u8 = 0x20;
pub const TH_ECE: u8 = 0x40;
pub const TH_CWR: u8 = 0x80;

/// The two ECN bits of the IPv4 TOS byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ecn {
    NotEct = 0,
    Ect1 = 1,
    Ect0 = 2,
    Ce = 3,
}

impl Ecn {
    pub fn from_bits(tos: u8) -> Ecn {
        match tos & 3 {
            0 => Ecn::NotEct,
            1 => Ecn::Ect1,
            2 => Ecn::Ect0,
            _ => Ecn::Ce,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Ecn::NotEct => "noecn",
            Ecn::Ect1 => "ect1",
            Ecn::Ect0 => "ect0",
            Ecn::Ce => "ce",
        }
    }
}

/// One TCP option, as a script writes it and as it appears on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpOpt {
    Eol,
    Nop,
    Mss(u16),
    WScale(u8),
    SackOk,
    Sack(Vec<(u32, u32)>),
    Timestamp {
        val: u32,
        ecr: u32,
    },
    /// Any other kind (or a malformed length), kept verbatim.
    Other {
        kind: u8,
        data: Vec<u8>,
    },
}

impl fmt::Display for TcpOpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpOpt::Eol => write!(f, "eol"),
            TcpOpt::Nop => write!(f, "nop"),
            TcpOpt::Mss(v) => write!(f, "mss {v}"),
            TcpOpt::WScale(v) => write!(f, "wscale {v}"),
            TcpOpt::SackOk => write!(f, "sackOK"),
            TcpOpt::Sack(blocks) => {
                write!(f, "sack")?;
                for (l, r) in blocks {
                    write!(f, " {l}:{r}")?;
                }
                Ok(())
            }
            TcpOpt::Timestamp { val, ecr } => write!(f, "TS val {val} ecr {ecr}"),
            TcpOpt::Other { kind, data } => write!(f, "kind {kind} len {}", data.len() + 2),
        }
    }
}

/// Formats an option list the way scripts write it: `<mss 1460,nop,wscale 6>`.
pub fn options_to_string(opts: &[TcpOpt]) -> String {
    let parts: Vec<String> = opts.iter().map(|o| o.to_string()).collect();
    format!("<{}>", parts.join(","))
}

/// Formats TCP flags the way scripts write them (`S.`, `F.`, `SEW`, `P.`).
pub fn flags_to_string(flags: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (TH_SYN, 'S'),
        (TH_FIN, 'F'),
        (TH_RST, 'R'),
        (TH_PUSH, 'P'),
        (TH_URG, 'U'),
        (TH_ECE, 'E'),
        (TH_CWR, 'W'),
        (TH_ACK, '.'),
    ] {
        if flags & bit != 0 {
            s.push(c);
        }
    }
    if s.is_empty() {
        s.push('-');
    }
    s
}

/// Encodes options in the order given, with no padding added.
pub fn encode_options(opts: &[TcpOpt]) -> Vec<u8> {
    let mut out = Vec::new();
    for o in opts {
        match o {
            TcpOpt::Eol => out.push(0),
            TcpOpt::Nop => out.push(1),
            TcpOpt::Mss(v) => {
                out.extend_from_slice(&[2, 4]);
                out.extend_from_slice(&v.to_be_bytes());
            }
            TcpOpt::WScale(v) => out.extend_from_slice(&[3, 3, *v]),
            TcpOpt::SackOk => out.extend_from_slice(&[4, 2]),
            TcpOpt::Sack(blocks) => {
                out.push(5);
                out.push((2 + 8 * blocks.len()).min(255) as u8);
                for (l, r) in blocks {
                    out.extend_from_slice(&l.to_be_bytes());
                    out.extend_from_slice(&r.to_be_bytes());
                }
            }
            TcpOpt::Timestamp { val, ecr } => {
                out.extend_from_slice(&[8, 10]);
                out.extend_from_slice(&val.to_be_bytes());
                out.extend_from_slice(&ecr.to_be_bytes());
            }
            TcpOpt::Other { kind, data } => {
                out.push(*kind);
                out.push((data.len() + 2).min(255) as u8);
                out.extend_from_slice(data);
            }
        }
    }
    out
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes an options block element by element, padding included (every byte after an EOL is
/// decoded too, so `mss,sackOK,eol,eol` round-trips).
pub fn decode_options(mut b: &[u8]) -> Result<Vec<TcpOpt>, String> {
    let mut out = Vec::new();
    while let Some(&kind) = b.first() {
        match kind {
            0 => {
                out.push(TcpOpt::Eol);
                b = &b[1..];
            }
            1 => {
                out.push(TcpOpt::Nop);
                b = &b[1..];
            }
            _ => {
                let len = *b
                    .get(1)
                    .ok_or_else(|| format!("option kind {kind} truncated"))?
                    as usize;
                if len < 2 || len > b.len() {
                    return Err(format!("option kind {kind} has bad length {len}"));
                }
                let body = &b[2..len];
                let opt = match (kind, len) {
                    (2, 4) => TcpOpt::Mss(be16(body)),
                    (3, 3) => TcpOpt::WScale(body[0]),
                    (4, 2) => TcpOpt::SackOk,
                    (5, l) if l >= 10 && (l - 2) % 8 == 0 => TcpOpt::Sack(
                        body.chunks_exact(8)
                            .map(|c| (be32(&c[..4]), be32(&c[4..])))
                            .collect(),
                    ),
                    (8, 10) => TcpOpt::Timestamp {
                        val: be32(&body[..4]),
                        ecr: be32(&body[4..]),
                    },
                    _ => TcpOpt::Other {
                        kind,
                        data: body.to_vec(),
                    },
                };
                out.push(opt);
                b = &b[len..];
            }
        }
    }
    Ok(out)
}

/// An IPv4 + TCP segment, in host byte order, with raw options bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// The whole TOS byte (DSCP and ECN bits).
    pub tos: u8,
    pub ttl: u8,
    pub ip_id: u16,
    pub dont_fragment: bool,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub urgent: u16,
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Segment {
    pub fn ecn(&self) -> Ecn {
        Ecn::from_bits(self.tos)
    }
}

/// The Internet checksum (RFC 1071) of `data`, starting from a partial sum.
fn checksum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(be16(c));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn checksum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, tcp_len: usize) -> u32 {
    let mut sum = checksum_add(0, &src.octets());
    sum = checksum_add(sum, &dst.octets());
    sum += 6;
    sum += tcp_len as u32;
    sum
}

/// Builds a valid IPv4 packet (checksums filled in). Options are padded with zero (EOL) bytes
/// to a multiple of 4 bytes; callers that care (the runner) check the length beforehand.
pub fn build(seg: &Segment) -> Vec<u8> {
    let mut options = seg.options.clone();
    while options.len() % 4 != 0 {
        options.push(0);
    }
    let tcp_hdr_len = 20 + options.len();
    let tcp_len = tcp_hdr_len + seg.payload.len();
    let total = 20 + tcp_len;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[1] = seg.tos;
    p[2..4].copy_from_slice(&(total.min(0xffff) as u16).to_be_bytes());
    p[4..6].copy_from_slice(&seg.ip_id.to_be_bytes());
    if seg.dont_fragment {
        p[6] = 0x40;
    }
    p[8] = seg.ttl;
    p[9] = 6;
    p[12..16].copy_from_slice(&seg.src.octets());
    p[16..20].copy_from_slice(&seg.dst.octets());
    let ip_sum = checksum_fold(checksum_add(0, &p[..20]));
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());

    let t = &mut p[20..];
    t[0..2].copy_from_slice(&seg.src_port.to_be_bytes());
    t[2..4].copy_from_slice(&seg.dst_port.to_be_bytes());
    t[4..8].copy_from_slice(&seg.seq.to_be_bytes());
    t[8..12].copy_from_slice(&seg.ack.to_be_bytes());
    t[12] = ((tcp_hdr_len / 4) as u8) << 4;
    t[13] = seg.flags;
    t[14..16].copy_from_slice(&seg.window.to_be_bytes());
    t[18..20].copy_from_slice(&seg.urgent.to_be_bytes());
    t[20..tcp_hdr_len].copy_from_slice(&options);
    t[tcp_hdr_len..].copy_from_slice(&seg.payload);
    let sum = checksum_add(pseudo_header_sum(seg.src, seg.dst, tcp_len), t);
    let tcp_sum = checksum_fold(sum);
    t[16..18].copy_from_slice(&tcp_sum.to_be_bytes());
    p
}

/// Parses and validates an IPv4 + TCP packet: version, header length, total length, header
/// checksum, no fragmentation, protocol TCP, data offset and TCP checksum.
pub fn parse(p: &[u8]) -> Result<Segment, String> {
    if p.len() < 20 {
        return Err(format!("IP packet truncated ({} bytes)", p.len()));
    }
    if p[0] >> 4 != 4 {
        return Err(format!("IP version {} is not 4", p[0] >> 4));
    }
    let ihl = usize::from(p[0] & 0xf) * 4;
    if ihl < 20 || ihl > p.len() {
        return Err(format!("bad IP header length {ihl}"));
    }
    let total = usize::from(be16(&p[2..4]));
    if total != p.len() {
        return Err(format!(
            "IP total length {total} does not match the packet's {} bytes",
            p.len()
        ));
    }
    if total < ihl {
        return Err(format!("IP total length {total} below header length {ihl}"));
    }
    if checksum_fold(checksum_add(0, &p[..ihl])) != 0 {
        return Err("bad IP header checksum".into());
    }
    let frag = be16(&p[6..8]);
    if frag & 0x2000 != 0 || frag & 0x1fff != 0 {
        return Err("IP packet is a fragment".into());
    }
    if p[9] != 6 {
        return Err(format!("IP protocol {} is not TCP", p[9]));
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let t = &p[ihl..total];
    if t.len() < 20 {
        return Err(format!("TCP header truncated ({} bytes)", t.len()));
    }
    let off = usize::from(t[12] >> 4) * 4;
    if off < 20 || off > t.len() {
        return Err(format!("bad TCP data offset {off}"));
    }
    if checksum_fold(checksum_add(pseudo_header_sum(src, dst, t.len()), t)) != 0 {
        return Err("bad TCP checksum".into());
    }
    Ok(Segment {
        src,
        dst,
        tos: p[1],
        ttl: p[8],
        ip_id: be16(&p[4..6]),
        dont_fragment: frag & 0x4000 != 0,
        src_port: be16(&t[0..2]),
        dst_port: be16(&t[2..4]),
        seq: be32(&t[4..8]),
        ack: be32(&t[8..12]),
        flags: t[13],
        window: be16(&t[14..16]),
        urgent: be16(&t[18..20]),
        options: t[20..off].to_vec(),
        payload: t[off..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Segment {
        Segment {
            src: Ipv4Addr::new(198, 51, 100, 1),
            dst: Ipv4Addr::new(192, 0, 2, 1),
            tos: 2,
            ttl: 64,
            ip_id: 7,
            dont_fragment: true,
            src_port: 57002,
            dst_port: 8080,
            seq: 0xdead_beef,
            ack: 1,
            flags: TH_SYN | TH_ACK,
            window: 32767,
            urgent: 0,
            options: encode_options(&[TcpOpt::Mss(1460), TcpOpt::SackOk, TcpOpt::Eol, TcpOpt::Eol]),
            payload: vec![0; 3],
        }
    }

    #[test]
    fn build_parse_round_trip() {
        let seg = sample();
        let bytes = build(&seg);
        assert_eq!(parse(&bytes).unwrap(), seg);
        assert_eq!(
            decode_options(&seg.options).unwrap(),
            vec![TcpOpt::Mss(1460), TcpOpt::SackOk, TcpOpt::Eol, TcpOpt::Eol]
        );
    }

    #[test]
    fn corrupt_packets_are_rejected_not_panicking() {
        let bytes = build(&sample());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            // Any single corruption breaks a checksum or a length; none may panic.
            assert!(parse(&b).is_err(), "byte {i}");
        }
        for n in 0..bytes.len() {
            assert!(parse(&bytes[..n]).is_err());
        }
        assert!(decode_options(&[2]).is_err());
        assert!(decode_options(&[2, 9, 0]).is_err());
        assert!(decode_options(&[8, 1]).is_err());
    }

    #[test]
    fn options_round_trip() {
        let opts = vec![
            TcpOpt::Mss(1460),
            TcpOpt::Nop,
            TcpOpt::WScale(6),
            TcpOpt::SackOk,
            TcpOpt::Timestamp { val: 100, ecr: 0 },
            TcpOpt::Nop,
            TcpOpt::Nop,
            TcpOpt::Sack(vec![(1, 2), (3, 4)]),
        ];
        assert_eq!(decode_options(&encode_options(&opts)).unwrap(), opts);
        assert_eq!(
            options_to_string(&opts[..3]),
            "<mss 1460,nop,wscale 6>".to_string()
        );
        assert_eq!(flags_to_string(TH_SYN | TH_ECE | TH_CWR), "SEW");
        assert_eq!(flags_to_string(TH_FIN | TH_ACK), "F.");
    }
}

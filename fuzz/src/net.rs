//! Packet building and checking for the fuzz targets, written independently of the core's own
//! emitters and parsers so that each checks the other.

use std::net::Ipv4Addr;

use hydranet_core::wire::ipv4::Ipv4Header;
use hydranet_core::wire::tcp::{self, TcpOption};

/// The stack under test.
pub const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The peer the fuzzer speaks for.
pub const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// A second peer address.
pub const PEER2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);

pub const FIN: u16 = 0x01;
pub const SYN: u16 = 0x02;
pub const RST: u16 = 0x04;
pub const PSH: u16 = 0x08;
pub const ACK: u16 = 0x10;

/// RFC 1071 sum of `data` (big-endian 16-bit words, odd byte padded), not folded.
pub fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds and complements a sum.
pub fn finish(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The sum of the TCP pseudo-header.
pub fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> u64 {
    let mut p = [0u8; 12];
    p[..4].copy_from_slice(&src.octets());
    p[4..8].copy_from_slice(&dst.octets());
    p[9] = 6;
    p[10..12].copy_from_slice(&(len as u16).to_be_bytes());
    sum(&p, 0)
}

/// Writes the correct checksum into a TCP segment (at least 18 bytes; shorter ones are left
/// alone).
pub fn fix_tcp_checksum(src: Ipv4Addr, dst: Ipv4Addr, seg: &mut [u8]) {
    if seg.len() < 18 {
        return;
    }
    seg[16] = 0;
    seg[17] = 0;
    let c = finish(sum(seg, pseudo(src, dst, seg.len())));
    seg[16..18].copy_from_slice(&c.to_be_bytes());
}

/// An IPv4 packet (20-byte header, DF, TTL 64) around `payload`, protocol TCP.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, tos: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()).min(65535);
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[1] = tos;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = finish(sum(&p, 0));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&payload[..total - 20]);
    p
}

/// The fields of a TCP segment to build.
#[derive(Clone, Debug, Default)]
pub struct Seg {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// The 12-bit flag field.
    pub flags: u16,
    pub win: u16,
    pub urg: u16,
}

/// A TCP segment: `opts` is truncated to 40 bytes and padded with EOL to whole words.
pub fn tcp_segment(s: &Seg, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    let opts = &opts[..opts.len().min(40)];
    let olen = (opts.len() + 3) & !3;
    let hlen = 20 + olen;
    let mut b = vec![0u8; hlen];
    b[0..2].copy_from_slice(&s.sport.to_be_bytes());
    b[2..4].copy_from_slice(&s.dport.to_be_bytes());
    b[4..8].copy_from_slice(&s.seq.to_be_bytes());
    b[8..12].copy_from_slice(&s.ack.to_be_bytes());
    let flags = s.flags & 0x0fff;
    b[12] = ((hlen / 4) as u8) << 4 | (flags >> 8) as u8;
    b[13] = flags as u8;
    b[14..16].copy_from_slice(&s.win.to_be_bytes());
    b[18..20].copy_from_slice(&s.urg.to_be_bytes());
    b[20..20 + opts.len()].copy_from_slice(opts);
    b.extend_from_slice(payload);
    b
}

/// A complete IPv4/TCP packet with both checksums right.
pub fn packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    tos: u8,
    s: &Seg,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut seg = tcp_segment(s, opts, payload);
    seg.truncate(65535 - 20);
    fix_tcp_checksum(src, dst, &mut seg);
    ipv4(src, dst, tos, &seg)
}

/// Sequence-space comparisons (`SEQ_LT` and friends).
pub fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
pub fn seq_leq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}
pub fn seq_max(a: u32, b: u32) -> u32 {
    if seq_lt(a, b) {
        b
    } else {
        a
    }
}

/// What the checks learnt from one packet the stack sent.
#[derive(Clone, Debug)]
pub struct Sent {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u16,
    pub win: u16,
    pub payload: Vec<u8>,
    pub tsval: Option<u32>,
    /// The MSS option, on a SYN.
    pub mss: Option<u16>,
}

impl Sent {
    /// Sequence space the segment occupies: payload, plus one each for SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        self.payload.len() as u32
            + u32::from(self.flags & SYN != 0)
            + u32::from(self.flags & FIN != 0)
    }
}

/// Checks a packet the stack emitted, independently of the core's parser and then against it,
/// and panics (the fuzzer's crash) if it is malformed in any way a peer would object to.
/// `mtu` is the largest MTU the stack has had: connections keep the MSS they started with.
pub fn check_sent(pkt: &[u8], locals: &[Ipv4Addr], mtu: u32) -> Sent {
    assert!(pkt.len() >= 40, "sent packet of {} bytes", pkt.len());
    assert!(
        pkt.len() as u32 <= mtu,
        "sent packet of {} bytes over the MTU of {mtu}",
        pkt.len()
    );
    assert_eq!(pkt[0], 0x45, "sent IPv4 version/IHL byte {:#x}", pkt[0]);
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
    assert_eq!(
        total,
        pkt.len(),
        "IPv4 total length disagrees with the packet"
    );
    assert_eq!(finish(sum(&pkt[..20], 0)), 0, "bad IPv4 header checksum");
    let frag = u16::from_be_bytes([pkt[6], pkt[7]]);
    assert_eq!(
        frag & 0xbfff,
        0,
        "sent a fragment or the reserved bit: {frag:#x}"
    );
    assert_eq!(pkt[9], 6, "sent protocol {}", pkt[9]);
    assert_ne!(pkt[8], 0, "sent TTL 0");
    let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
    assert!(locals.contains(&src), "sent from {src}, not one of ours");
    // 0.0.0.0 is let through: a reply (RST) to a segment from 0.0.0.0 goes there, in the core as
    // in FreeBSD's tcp_dropwithreset(), though RFC 1122 3.2.1.3 says it must not be sent to.
    assert!(!dst.is_broadcast() && !dst.is_multicast(), "sent to {dst}");
    let seg = &pkt[20..];
    assert_eq!(
        finish(sum(seg, pseudo(src, dst, seg.len()))),
        0,
        "bad TCP checksum"
    );
    let doff = usize::from(seg[12] >> 4) * 4;
    assert!(doff >= 20 && doff <= seg.len(), "sent data offset {doff}");
    let flags = u16::from_be_bytes([seg[12], seg[13]]) & 0x0fff;
    assert_eq!(flags & 0x0e00, 0, "sent reserved TCP flag bits: {flags:#x}");
    assert!(
        flags & (SYN | FIN) != (SYN | FIN),
        "sent SYN and FIN together"
    );
    assert!(
        flags & (SYN | RST) != (SYN | RST),
        "sent SYN and RST together"
    );
    let payload = seg[doff..].to_vec();
    if flags & RST != 0 {
        assert!(
            payload.is_empty(),
            "sent a RST carrying {} bytes",
            payload.len()
        );
    }
    // Everything carries ACK but a SYN, a RST, and the FIN FreeBSD's tcp_output sends in
    // SYN_SENT after shutdown(SHUT_WR) (TF_NEEDFIN adds FIN to tcp_outflags[SYN_SENT]).
    if flags & (SYN | RST | ACK | FIN) == 0 {
        panic!("sent a segment without SYN, RST, FIN or ACK: flags {flags:#x}");
    }
    let (mut tsval, mut mss) = (None, None);
    let mut eol = false;
    for o in tcp::options(&seg[20..doff]) {
        match o {
            Ok(TcpOption::Eol) => eol = true,
            Ok(TcpOption::Unknown { kind, data }) => {
                panic!("sent an unknown or malformed option kind {kind} ({data:?})")
            }
            Ok(o) => {
                assert!(!eol, "sent option {o:?} after an EOL");
                match o {
                    TcpOption::Timestamp { tsval: v, .. } => tsval = Some(v),
                    TcpOption::Mss(m) => {
                        assert!(flags & SYN != 0, "sent MSS on a non-SYN");
                        mss = Some(m);
                    }
                    TcpOption::WindowScale(s) => {
                        assert!(flags & SYN != 0, "sent window scale on a non-SYN");
                        assert!(s <= 14, "sent window scale {s}");
                    }
                    TcpOption::SackPermitted => {
                        assert!(flags & SYN != 0, "sent SACK-permitted on a non-SYN")
                    }
                    _ => {}
                }
            }
            Err(e) => panic!("sent malformed options: {e}"),
        }
    }
    let sent = Sent {
        src,
        dst,
        sport: u16::from_be_bytes([seg[0], seg[1]]),
        dport: u16::from_be_bytes([seg[2], seg[3]]),
        seq: u32::from_be_bytes([seg[4], seg[5], seg[6], seg[7]]),
        ack: u32::from_be_bytes([seg[8], seg[9], seg[10], seg[11]]),
        flags,
        win: u16::from_be_bytes([seg[14], seg[15]]),
        payload,
        tsval,
        mss,
    };
    assert!(sent.sport != 0 && sent.dport != 0, "sent from or to port 0");
    // The core's own parser must agree.
    let (ip, body) = Ipv4Header::parse(pkt).expect("the core rejects its own packet");
    assert_eq!((ip.src, ip.dst, ip.protocol), (src, dst, 6));
    let t = tcp::parse_segment(body, src, dst, true).expect("the core rejects its own segment");
    assert_eq!(t.header.seq, sent.seq);
    assert_eq!(t.header.ack, sent.ack);
    assert_eq!(t.header.flags.bits(), flags);
    assert_eq!(t.payload, &sent.payload[..]);
    sent
}

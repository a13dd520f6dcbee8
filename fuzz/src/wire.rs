//! The bodies of the `wire_ipv4` and `wire_tcp` targets.

use std::hint::black_box;
use std::net::Ipv4Addr;

use hydranet_core::wire::ipv4::{Ipv4Header, HEADER_LEN};
use hydranet_core::wire::tcp::{self, SackBlocks, TcpOption};
use hydranet_core::wire::WireError;

use crate::net;

/// `Ipv4Header::parse` on arbitrary bytes; whatever parses is re-emitted (without IP options)
/// and must parse back to the same header and payload.
pub fn ipv4(data: &[u8]) {
    let Ok((h, payload)) = black_box(Ipv4Header::parse(data)) else {
        return;
    };
    let hl = usize::from(h.header_len);
    assert!(
        (HEADER_LEN..=60).contains(&hl) && hl % 4 == 0,
        "header_len {hl}"
    );
    assert_eq!(payload.len(), usize::from(h.total_len) - hl);
    assert_eq!(&data[hl..usize::from(h.total_len)], payload);
    assert!(!h.more_frags && h.frag_offset == 0, "a fragment parsed");
    assert_eq!(h.ecn().bits(), h.tos & 3);
    // The checksum the parser accepted really verifies.
    assert_eq!(net::finish(net::sum(&data[..hl], 0)), 0);

    let mut want = h;
    want.header_len = HEADER_LEN as u8;
    want.total_len = (HEADER_LEN + payload.len()) as u16;
    let mut buf = vec![0u8; HEADER_LEN + payload.len()];
    assert_eq!(want.emit(&mut buf), Ok(HEADER_LEN));
    buf[HEADER_LEN..].copy_from_slice(payload);
    let (again, p2) = Ipv4Header::parse(&buf).expect("re-emitted header does not parse");
    assert_eq!(again, want);
    assert_eq!(p2, payload);
    // The emitter's checksum agrees with an independent one.
    assert_eq!(net::finish(net::sum(&buf[..HEADER_LEN], 0)), 0);
    black_box((again, p2));
    assert_eq!(
        want.emit(&mut buf[..HEADER_LEN - 1]),
        Err(WireError::BufferTooSmall)
    );
}

/// `tcp::parse_segment` (checksum verified and not) and the option iterator on arbitrary
/// bytes. The input is tried as an IPv4 packet (the segment is its payload, the addresses its
/// own) and as a bare segment between two fixed addresses.
pub fn tcp(data: &[u8]) {
    if let Ok((ip, payload)) = Ipv4Header::parse(data) {
        segment(payload, ip.src, ip.dst);
    }
    segment(data, net::PEER, net::LOCAL);
    // Also the raw bytes as an options block.
    walk_options(data);
}

fn segment(seg: &[u8], src: Ipv4Addr, dst: Ipv4Addr) {
    let checked = black_box(tcp::parse_segment(seg, src, dst, true));
    let unchecked = black_box(tcp::parse_segment(seg, src, dst, false));
    let csum_ok =
        seg.len() >= 20 && net::finish(net::sum(seg, net::pseudo(src, dst, seg.len()))) == 0;
    match (&checked, &unchecked) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert!(csum_ok, "a segment with a bad checksum passed verification");
        }
        (Err(WireError::BadChecksum), _) => assert!(!csum_ok, "a good checksum was refused"),
        (Err(e1), Err(e2)) => assert_eq!(e1, e2),
        (Err(e), Ok(_)) => panic!("verification failed with {e} on a parseable segment"),
        (Ok(_), Err(e)) => panic!("only the unchecked parse failed: {e}"),
    }
    if seg.len() < 20 {
        assert_eq!(unchecked, Err(WireError::Truncated));
    }
    let Ok(s) = unchecked else { return };
    let doff = usize::from(s.header.data_offset);
    assert!((20..=60).contains(&doff) && doff % 4 == 0);
    assert_eq!(s.options.len(), doff - 20);
    assert_eq!(20 + s.options.len() + s.payload.len(), seg.len());
    assert_eq!(s.header.flags.bits() & !0x0fff, 0);
    walk_options(s.options);

    // Re-emit and re-parse: the same header (checksum recomputed), options and payload.
    let mut buf = vec![0u8; seg.len()];
    let n = tcp::emit_segment(&s.header, s.options, s.payload, src, dst, &mut buf)
        .expect("emitting a parsed segment failed");
    assert_eq!(n, seg.len());
    let again =
        tcp::parse_segment(&buf, src, dst, true).expect("re-emitted segment does not verify");
    assert_eq!(again.options, s.options);
    assert_eq!(again.payload, s.payload);
    let mut h = again.header;
    h.checksum = s.header.checksum;
    assert_eq!(h, s.header);
    if csum_ok {
        // A segment that verified is re-emitted byte for byte, but for the checksum field,
        // where 0x0000 and 0xffff are the same one's-complement value.
        assert_eq!(&buf[..16], &seg[..16]);
        assert_eq!(&buf[18..], &seg[18..]);
        let (c1, c2) = ([buf[16], buf[17]], [seg[16], seg[17]]);
        assert!(
            c1 == c2
                || (c1 == [0, 0] && c2 == [0xff, 0xff])
                || (c1 == [0xff, 0xff] && c2 == [0, 0])
        );
    }
    black_box(again);
    // One byte short is refused, not truncated.
    if n > 0 {
        assert_eq!(
            tcp::emit_segment(&s.header, s.options, s.payload, src, dst, &mut buf[..n - 1]),
            Err(WireError::BufferTooSmall)
        );
    }
}

/// Walks an options block: at most one error, which ends the walk; every option re-encodes to
/// exactly the bytes it came from.
fn walk_options(raw: &[u8]) {
    let mut consumed = 0usize;
    let mut errors = 0;
    let mut it = tcp::options(raw);
    for o in it.by_ref() {
        match o {
            Ok(o) => {
                assert_eq!(errors, 0, "an option after an error");
                let len = o.len();
                let mut buf = [0u8; 256];
                let n = o
                    .emit(&mut buf)
                    .expect("re-emitting a parsed option failed");
                assert_eq!(n, len);
                assert_eq!(&buf[..n], &raw[consumed..consumed + n]);
                consumed += n;
                if let TcpOption::Sack(blocks) = o {
                    let v: Vec<(u32, u32)> = blocks.iter().collect();
                    assert_eq!(v.len(), blocks.len());
                    assert!(!blocks.is_empty());
                    assert_eq!(SackBlocks::new(blocks.as_bytes()), Ok(blocks));
                    let mut sbuf = [0u8; 64];
                    if v.len() <= tcp::MAX_SACK_BLOCKS {
                        let k = tcp::emit_sack(&v, &mut sbuf).unwrap();
                        assert_eq!(&sbuf[..k], &raw[consumed - n..consumed]);
                    }
                }
                black_box(o);
            }
            Err(e) => {
                assert_eq!(e, WireError::BadOption);
                errors += 1;
            }
        }
    }
    assert!(errors <= 1);
    assert!(
        errors == 1 || consumed == raw.len(),
        "the walk stopped early without an error"
    );
    assert!(it.next().is_none(), "the iterator is not fused");
}

//! One in-memory bulk transfer between two stacks of one kind, for counting instructions per
//! segment under callgrind (`scripts/callgrind.sh` runs it).
//!
//! ```text
//! segcount hydranet|smoltcp BYTES
//! ```
//!
//! The workload is the `bulk` bench's (`benches/support/inmem.rs`): MTU 1500 (MSS 1460),
//! 64 KiB socket buffers, checksums computed and verified in software, virtual time, fixed
//! seeds — so two runs execute the same instructions. `BYTES` 0 sets both stacks up, connects
//! and stops before the first round: the baseline the script subtracts, so that process
//! start-up, allocation of the stacks and of the source pattern are not charged to segments.
//!
//! Prints one `key=value` line about the transfer and one about the size of a connection's
//! control state in each stack; exits non-zero (never panics on bad input) when the arguments
//! are wrong or the transfer did not deliver every byte.

use std::process::ExitCode;

#[path = "../benches/support/inmem.rs"]
mod inmem;

use inmem::{hydranet_transfer, smoltcp_transfer, Outcome, Source, MTU, SOCKBUF};
#[cfg(test)]
use inmem::{tcp_payload_len, SegTally};

const USAGE: &str = "usage: segcount hydranet|smoltcp BYTES";

/// Which stack a run drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Hydranet,
    Smoltcp,
}

fn parse_args(args: &[String]) -> Result<(Kind, usize), String> {
    let [kind, bytes] = args else {
        return Err(USAGE.to_string());
    };
    let kind = match kind.as_str() {
        "hydranet" => Kind::Hydranet,
        "smoltcp" => Kind::Smoltcp,
        other => return Err(format!("unknown stack {other:?}; {USAGE}")),
    };
    let bytes = bytes
        .parse::<usize>()
        .map_err(|e| format!("BYTES {bytes:?}: {e}; {USAGE}"))?;
    Ok((kind, bytes))
}

/// The transfer line: what the script divides the instruction count by.
fn describe(kind: Kind, o: &Outcome) -> String {
    format!(
        "stack={} bytes={} segments={} data_segments={} control_segments={} payload_bytes={} \
         rounds={} timer_jumps={} virtual_us={} mtu={MTU} sockbuf={SOCKBUF} rcvbuf={} sndbuf={}",
        match kind {
            Kind::Hydranet => "hydranet",
            Kind::Smoltcp => "smoltcp",
        },
        o.bytes,
        o.segs.packets,
        o.segs.data,
        o.segs.control(),
        o.segs.payload,
        o.rounds,
        o.time_jumps,
        o.virtual_us,
        o.bufs.0,
        o.bufs.1,
    )
}

/// Bytes of per-connection control state (the structures only; buffer storage is separate in
/// both stacks and the same size, `SOCKBUF` each way).
fn control_state() -> String {
    use std::mem::size_of;
    format!(
        "control_state hydranet_tcpcb={} hydranet_socket={} hydranet_sockbuf_handle={} \
         smoltcp_tcp_socket={}",
        size_of::<hydranet_core::netinet::tcp_var::TcpCb>(),
        size_of::<hydranet_core::socket::socketvar::Socket<'static>>(),
        size_of::<hydranet_core::socket::sockbuf::SockBuf<'static>>(),
        size_of::<smoltcp::socket::tcp::Socket<'static>>(),
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (kind, bytes) = match parse_args(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("segcount: {e}");
            return ExitCode::from(2);
        }
    };
    let src = Source::new();
    // No verification: comparing every byte would add the same memcmp to both and hide
    // nothing; the bench and this example's tests check contents.
    let o = match kind {
        Kind::Hydranet => hydranet_transfer(&src, bytes, false),
        Kind::Smoltcp => smoltcp_transfer(&src, bytes, false),
    };
    println!("{}", describe(kind, &o));
    println!("{}", control_state());
    if o.bytes != bytes {
        eprintln!("segcount: delivered {} of {bytes} bytes", o.bytes);
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments() {
        assert_eq!(
            parse_args(&args(&["smoltcp", "1024"])),
            Ok((Kind::Smoltcp, 1024))
        );
        assert_eq!(
            parse_args(&args(&["hydranet", "0"])),
            Ok((Kind::Hydranet, 0))
        );
        assert!(parse_args(&args(&["lwip", "1"])).is_err());
        assert!(parse_args(&args(&["hydranet", "-1"])).is_err());
        assert!(parse_args(&args(&["hydranet"])).is_err());
    }

    #[test]
    fn lines_carry_the_counts() {
        let o = Outcome {
            bytes: 10,
            ..Outcome::default()
        };
        let l = describe(Kind::Hydranet, &o);
        assert!(l.starts_with("stack=hydranet bytes=10 segments=0 "), "{l}");
        assert!(control_state().contains("hydranet_tcpcb="));
    }

    // The shared workload (benches/support/inmem.rs).

    /// An IPv4 header of 20 bytes and a TCP header of `doff` bytes before `payload` bytes.
    fn packet(doff: usize, payload: usize) -> Vec<u8> {
        let total = 20 + doff + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[9] = 6;
        p[20 + 12] = ((doff / 4) as u8) << 4;
        p
    }

    #[test]
    fn payload_lengths() {
        assert_eq!(tcp_payload_len(&packet(20, 0)), Some(0));
        assert_eq!(tcp_payload_len(&packet(32, 1448)), Some(1448));
        let mut udp = packet(20, 5);
        udp[9] = 17;
        assert_eq!(tcp_payload_len(&udp), None);
        assert_eq!(tcp_payload_len(&packet(20, 5)[..30]), None, "truncated");
        assert_eq!(tcp_payload_len(&[]), None);
    }

    #[test]
    fn tally_splits_data_from_control() {
        let mut t = SegTally::default();
        t.count(&packet(20, 0));
        t.count(&packet(32, 1448));
        t.count(&packet(20, 1460));
        assert_eq!((t.packets, t.data, t.payload, t.control()), (3, 2, 2908, 1));
    }

    #[test]
    fn both_stacks_deliver_and_count_every_byte() {
        let src = Source::new();
        let total = 256 << 10;
        for (name, f) in [
            (
                "hydranet",
                hydranet_transfer as fn(&Source, usize, bool) -> Outcome,
            ),
            ("smoltcp", smoltcp_transfer),
        ] {
            let o = f(&src, total, true);
            assert_eq!(o.bytes, total, "{name}");
            // Every byte crossed at least once; no segment carries more than the MSS.
            assert!(o.segs.payload >= total as u64, "{name}: {:?}", o.segs);
            assert!(
                o.segs.data >= (total / (MTU - 40)) as u64,
                "{name}: {:?}",
                o.segs
            );
            assert!(o.segs.control() > 0, "{name}: {:?}", o.segs);
        }
    }

    #[test]
    fn zero_bytes_is_a_baseline_without_transfer() {
        let src = Source::new();
        let o = hydranet_transfer(&src, 0, false);
        assert_eq!((o.bytes, o.segs.packets), (0, 0));
        let o = smoltcp_transfer(&src, 0, false);
        assert_eq!((o.bytes, o.segs.packets), (0, 0));
    }
}

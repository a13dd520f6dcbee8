//! The target bodies without libFuzzer: the harnesses themselves work, and every saved
//! regression input is replayed (`cargo test` in fuzz/).

use hydranet_fuzz::stack_input::{self, Harness, Op, OptSpec, SegSpec, TargetSel};
use hydranet_fuzz::two_stacks::{self, NetOp, Side};

#[test]
fn stack_input_setup_and_empty_input() {
    stack_input::run(&[]);
    let h = Harness::new();
    assert!(h.stack.pcblist().count() >= 2);
}

#[test]
fn stack_input_data_is_acknowledged() {
    let mut h = Harness::new();
    h.record = true;
    let spec = SegSpec {
        target: TargetSel::Established,
        seq: stack_input::SeqSel::Next(0),
        ack: stack_input::AckSel::Next(0),
        flags: 0x18,
        window: 1000,
        urgent: 0,
        tos: 0,
        options: vec![OptSpec::Nop],
        payload_len: 100,
        payload_fill: 7,
    };
    h.apply(Op::Segment(Box::new(spec)));
    h.apply(Op::Step(500));
    // The stack acknowledges 1001 + 100.
    assert!(h.sent.iter().any(|s| s.ack == 1101), "{:?}", h.sent);
    h.apply(Op::Recv {
        conn: 0,
        len: 1000,
        peek: false,
    });
    h.apply(Op::Send { conn: 0, len: 3000 });
    assert!(h.sent.iter().any(|s| !s.payload.is_empty()));
    h.finish();
}

#[test]
fn two_stacks_clean_transfer() {
    let mut ops = vec![NetOp::DeliverAll];
    for _ in 0..20 {
        ops.push(NetOp::Send {
            side: Side::A,
            len: 5000,
        });
        ops.push(NetOp::Send {
            side: Side::B,
            len: 3000,
        });
        ops.push(NetOp::DeliverAll);
        ops.push(NetOp::Recv {
            side: Side::B,
            len: 4000,
        });
        ops.push(NetOp::Recv {
            side: Side::A,
            len: 4000,
        });
    }
    ops.push(NetOp::ShutdownWrite(Side::A));
    ops.push(NetOp::DeliverAll);
    let (a_sent, b_got, b_sent, a_got) = two_stacks::run(&ops).totals();
    assert_eq!((a_sent, b_sent), (100_000, 60_000));
    assert_eq!((b_got, a_got), (a_sent, b_sent));
}

#[test]
fn two_stacks_lossy_transfer() {
    let mut ops = vec![
        NetOp::Drop {
            to: Side::B,
            idx: 0,
        },
        NetOp::Step(3000),
        NetOp::DeliverAll,
    ];
    for i in 0..30u8 {
        ops.push(NetOp::Send {
            side: Side::A,
            len: 4000,
        });
        ops.push(NetOp::Drop {
            to: Side::B,
            idx: i,
        });
        ops.push(NetOp::Dup {
            to: Side::A,
            idx: i,
        });
        ops.push(NetOp::Deliver {
            to: Side::B,
            idx: i.wrapping_mul(7),
        });
        ops.push(NetOp::Deliver {
            to: Side::A,
            idx: i,
        });
        ops.push(NetOp::Recv {
            side: Side::B,
            len: 3000,
        });
        ops.push(NetOp::Step(u16::from(i) * 10));
    }
    let (a_sent, b_got, _, _) = two_stacks::run(&ops).totals();
    assert!(a_sent > 0);
    assert_eq!(b_got, a_sent);
}

type Body = fn(&[u8]);

fn two_stacks_bytes(d: &[u8]) {
    let u = arbitrary::Unstructured::new(d);
    if let Ok(ops) = <Vec<NetOp> as arbitrary::Arbitrary>::arbitrary_take_rest(u) {
        two_stacks::run(&ops);
    }
}

/// Every saved regression input, with whether regressions/KNOWN lists it as an unfixed bug.
fn regressions() -> Vec<(String, Body, Vec<u8>, bool)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let known = std::fs::read_to_string(root.join("KNOWN")).unwrap_or_default();
    let mut out = Vec::new();
    let targets: [(&str, Body); 9] = [
        ("wire_ipv4", hydranet_fuzz::wire::ipv4),
        ("wire_tcp", hydranet_fuzz::wire::tcp),
        ("stack_input", stack_input::run),
        ("two_stacks", two_stacks_bytes),
        ("ackchan_frames", hydranet_fuzz::ackchan::run),
        ("ipip_redirector", hydranet_fuzz::ipip::run),
        ("ctl_protocol", hydranet_fuzz::ctl::run),
        ("ft_group", hydranet_fuzz::ft_group::run),
        ("pkt_script", hydranet_fuzz::pkt_script::run),
    ];
    for (target, body) in targets {
        let Ok(dir) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for e in dir.flatten() {
            let name = format!("{target}/{}", e.file_name().to_string_lossy());
            let is_known = known.lines().any(|l| l.trim() == name);
            out.push((name, body, std::fs::read(e.path()).unwrap(), is_known));
        }
    }
    out
}

/// Replays fuzz/regressions/<target>/* (inputs that once crashed), except the unfixed core
/// bugs regressions/KNOWN lists.
#[test]
fn replay_regressions() {
    for (name, body, data, known) in regressions() {
        if !known {
            eprintln!("replaying {name}");
            body(&data);
        }
    }
}

/// The unfixed core bugs: each must still fail (`cargo test -- --ignored`, without
/// HYDRANET_FUZZ_AVOID_KNOWN); one that passes has been fixed and comes off regressions/KNOWN.
#[test]
#[ignore]
fn known_bugs_still_reproduce() {
    let mut fixed = Vec::new();
    for (name, body, data, known) in regressions() {
        if known && std::panic::catch_unwind(|| body(&data)).is_ok() {
            fixed.push(name);
        }
    }
    assert!(
        fixed.is_empty(),
        "fixed, take them off regressions/KNOWN: {fixed:?}"
    );
}

/// Bug 2 by hand (fixed in f70cd12): the first segment and five more of a ten-segment initial
/// window are lost; the SACK sender used to never retransmit (see regressions/README.md).
#[test]
fn bug_2_sack_recovery_after_heavy_loss() {
    let mut ops = vec![
        NetOp::DeliverAll,
        NetOp::Send {
            side: Side::A,
            len: 33580,
        },
        NetOp::Drop {
            to: Side::B,
            idx: 0,
        },
    ];
    ops.extend(
        [NetOp::Drop {
            to: Side::B,
            idx: 1,
        }; 5],
    );
    two_stacks::run(&ops);
}

/// Known bug 3 by hand: data reassembled after shutdown(SHUT_RD) is readable. Passes while
/// the bug is there (run without HYDRANET_FUZZ_AVOID_KNOWN).
/// Was known bug 3 (data readable after the receive side was shut); fixed, kept as a test.
#[test]
fn fixed_bug_3_data_after_shutdown_rd() {
    two_stacks::run(&[
        NetOp::DeliverAll,
        NetOp::Send {
            side: Side::B,
            len: 5000,
        },
        NetOp::Drop {
            to: Side::A,
            idx: 0,
        },
        NetOp::DeliverAll,
        NetOp::ShutdownRead(Side::A),
        NetOp::Recv {
            side: Side::A,
            len: 100,
        },
        NetOp::Step(3000),
        NetOp::DeliverAll,
        NetOp::Recv {
            side: Side::A,
            len: 100,
        },
    ]);
}

/// Prints, for every saved regression, whether it still fails (`--ignored --nocapture`).
#[test]
#[ignore]
fn list_regressions() {
    for (name, body, data, known) in regressions() {
        let failed = std::panic::catch_unwind(|| body(&data)).is_err();
        eprintln!(
            "{} {name}{}",
            if failed { "FAILS " } else { "passes" },
            if known { " (KNOWN)" } else { "" }
        );
    }
}

/// Known bug 5 by hand: out-of-order data is held, the receiver lowers SO_RCVBUF, the hole
/// fills: bytes beyond the new limit are acknowledged but never readable. Passes while the
/// bug is there (run without HYDRANET_FUZZ_AVOID_KNOWN).
/// Was known bug 5 (acknowledged bytes lost after SO_RCVBUF was lowered); fixed, kept as a test.
#[test]
fn fixed_bug_5_acked_bytes_lost_after_rcvbuf_lowered() {
    let mut ops = vec![
        NetOp::DeliverAll,
        NetOp::Send {
            side: Side::A,
            len: 14480,
        },
        NetOp::Drop {
            to: Side::B,
            idx: 0,
        },
    ];
    ops.extend(
        [NetOp::Deliver {
            to: Side::B,
            idx: 0,
        }; 9],
    );
    ops.extend([
        NetOp::SetOpt {
            side: Side::B,
            opt: two_stacks::AppOpt::RcvBuf(0),
        },
        NetOp::Step(1500),
        NetOp::DeliverAll,
    ]);
    two_stacks::run(&ops);
}

/// The newer targets run on empty and small hand-made inputs (their seeds come from
/// make-seeds.py and are not committed).
#[test]
fn newer_targets_run() {
    for data in [
        &b""[..],
        b"\0",
        b"\x01\x00",
        b"\x01\x01\x05\x00\x06\x64\x00",
    ] {
        hydranet_fuzz::ackchan::run(data);
        hydranet_fuzz::ipip::run(data);
        hydranet_fuzz::ctl::run(data);
        hydranet_fuzz::ft_group::run(data);
        hydranet_fuzz::pkt_script::run(data);
    }
    // A channel exchange with a send, a replay and a truncated replay.
    hydranet_fuzz::ackchan::run(&[0, 5, 100, 0, 4, 0, 3, 0, 10, 0, 30, 0, 4, 0]);
    hydranet_fuzz::ctl::run(b"route add 192.0.2.80 80 198.51.100.11,198.51.100.12\nok a=1\n");
    hydranet_fuzz::pkt_script::run(b"0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n");
    // Two replicas, an upload of 98 bytes, a few steps and a crash of the primary.
    hydranet_fuzz::ft_group::run(&[0, 0, 1, 1, 0, 0, 0, 63, 1, 0, 6, 0xd0, 0x07]);
}

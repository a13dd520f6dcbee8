//! The runner judges the real core strictly: every IPv4 script of the suite passes as
//! written, and mutated copies of passing scripts (a wrong window, flag, sequence number,
//! option value, errno, timing or an extra expectation) fail against the same core.

mod common;
use common::suite;

use hydranet_conformance::{collect_scripts, new_sut, run_text, Outcome};

fn script(dir: &std::path::Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn outcome(text: &str) -> Outcome {
    let mut sut = new_sut();
    run_text(text, sut.as_mut())
}

/// Replaces the first occurrence of `from` (which must exist) after the `after` marker.
fn mutate(text: &str, after: &str, from: &str, to: &str) -> String {
    let start = text
        .find(after)
        .unwrap_or_else(|| panic!("marker {after:?} missing"));
    let pos = start
        + text[start..]
            .find(from)
            .unwrap_or_else(|| panic!("{from:?} missing after {after:?}"));
    format!("{}{}{}", &text[..pos], to, &text[pos + from.len()..])
}

#[test]
fn every_ipv4_script_passes_against_the_core() {
    let Some(dir) = suite() else { return };
    let scripts: Vec<_> = collect_scripts(std::slice::from_ref(&dir))
        .unwrap()
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("ipv6"))
        .collect();
    assert!(scripts.len() >= 343);
    let mut failed = Vec::new();
    for p in &scripts {
        let text = std::fs::read_to_string(p).unwrap();
        match outcome(&text) {
            Outcome::Pass => {}
            other => failed.push(format!("{}: {other:?}", p.display())),
        }
    }
    assert!(
        failed.is_empty(),
        "{} scripts did not pass:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn mutated_expectations_fail_against_the_core() {
    let Some(dir) = suite() else { return };
    let fin_wait_1 = script(&dir, "snippets/fin-wait-1-ipv4.pkt");
    let syn = script(&dir, "snd-syn/snd-syn-rtx-keepinit-ipv4.pkt");
    let listen = script(
        &dir,
        "state-event-engine/rcv-syn-listen/rcv-syn-without-data-listen-ipv4.pkt",
    );
    assert_eq!(outcome(&fin_wait_1), Outcome::Pass);
    assert_eq!(outcome(&syn), Outcome::Pass);
    assert_eq!(outcome(&listen), Outcome::Pass);

    let cases: Vec<(&str, String)> = vec![
        (
            "window",
            mutate(
                &fin_wait_1,
                "shutdown(3, SHUT_WR)",
                "win 65535",
                "win 65534",
            ),
        ),
        (
            "flags",
            mutate(&fin_wait_1, "shutdown(3, SHUT_WR)", "> F.", "> R."),
        ),
        (
            "sequence",
            mutate(
                &fin_wait_1,
                "shutdown(3, SHUT_WR)",
                "F. 1:1(0)",
                "F. 2:2(0)",
            ),
        ),
        (
            "ack",
            mutate(
                &fin_wait_1,
                "shutdown(3, SHUT_WR)",
                "ack 1 win",
                "ack 2 win",
            ),
        ),
        (
            "option value",
            mutate(&fin_wait_1, "connect(", "wscale 6", "wscale 7"),
        ),
        (
            "missing option",
            mutate(&fin_wait_1, "connect(", "sackOK,TS", "TS"),
        ),
        (
            "timestamp clock",
            mutate(&syn, "+1.00 > S", "TS val 1100", "TS val 1900"),
        ),
        (
            "retransmission time",
            mutate(&syn, "+1.00 > S", "+1.00 > S", "+1.50 > S"),
        ),
        (
            "errno",
            mutate(&syn, "connect(", "ETIMEDOUT", "ECONNREFUSED"),
        ),
        (
            "socket option value",
            mutate(&fin_wait_1, "getsockopt", "[65536]", "[65537]"),
        ),
        (
            "state assertion",
            mutate(&fin_wait_1, "assert", "TCPI_FIN_WAIT_1", "TCPI_FIN_WAIT_2"),
        ),
        ("syn-ack ack", mutate(&listen, "> S.", "ack 18", "ack 19")),
        (
            "extra expected packet",
            mutate(
                &listen,
                "> S.",
                "+0.00 close(3)",
                "+0.00 > . 1:1(0) ack 18 win 65535\n+0.00 close(3)",
            ),
        ),
        (
            "unexpected packet",
            mutate(
                &fin_wait_1,
                "+0.10 shutdown(3, SHUT_WR) = 0\n",
                "+0.00 > F. 1:1(0) ack 1 win 65535\n",
                "",
            ),
        ),
    ];
    for (what, text) in cases {
        match outcome(&text) {
            Outcome::Fail { .. } => {}
            other => panic!("mutation {what:?} was not caught: {other:?}"),
        }
    }
}

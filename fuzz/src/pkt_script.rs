//! The body of the `pkt_script` target: the conformance runner's packetdrill parser on
//! arbitrary text, and the scripts that parse run against the core.
//!
//! The input is text (invalid UTF-8 replaced). It is parsed with the default definitions and
//! with `STANDARD` defined; a script that parses (at most 64 events, so that one input stays
//! fast) is also run against a fresh core (`CoreSut`), whose outcome is whatever it is. The
//! runner's packet decoder gets the raw bytes too. No panic anywhere, and parsing is
//! deterministic.

use std::hint::black_box;

use hydranet_conformance::{packet, runner, script};

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = script::parse(&text);
    assert_eq!(
        parsed,
        script::parse(&text),
        "the parser is not deterministic"
    );
    let _ = black_box(script::parse_with_defines(&text, &["STANDARD"]));
    match parsed {
        Ok(s) if s.events.len() <= 64 => {
            let mut sut = hydranet_conformance::new_sut();
            black_box(runner::run(&s, sut.as_mut()));
        }
        Ok(_) => {}
        Err(e) => {
            black_box(runner::parse_error_outcome(&e));
        }
    }
    let _ = black_box(packet::parse(data));
    let _ = black_box(packet::decode_options(data));
}

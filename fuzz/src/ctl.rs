//! The body of the `ctl_protocol` target: the daemons' control protocol
//! (`hydranet_syscalls::ctl`) on arbitrary lines.
//!
//! The input is taken as text (invalid UTF-8 replaced) and parsed whole as a request and as a
//! response, then line by line. No panic; whatever parses prints ([`Display`]) as one line of
//! at most `MAX_LINE - 1` bytes without control characters, which parses back to the same
//! value and prints the same again (the canonical form is a fixed point).

use std::fmt::Display;
use std::hint::black_box;

use hydranet_syscalls::ctl::{parse_kv, Request, Response, MAX_LINE};

fn canonical<T: Display + PartialEq + std::fmt::Debug>(x: &T, parse: fn(&str) -> Option<T>) {
    let line = x.to_string();
    assert!(
        !line.chars().any(char::is_control),
        "{x:?} prints with a control character: {line:?}"
    );
    assert!(line.len() < MAX_LINE, "{x:?} prints longer than a line");
    let again =
        parse(&line).unwrap_or_else(|| panic!("{x:?} prints as {line:?}, which does not parse"));
    assert_eq!(&again, x, "{line:?} parses to something else");
    assert_eq!(again.to_string(), line);
    // The line with its terminator is the same request.
    assert_eq!(parse(&format!("{line}\n")).as_ref(), Some(x));
    assert_eq!(parse(&format!("{line}\r\n")).as_ref(), Some(x));
}

fn one(line: &str) {
    if let Ok(req) = black_box(Request::parse(line)) {
        canonical(&req, |s| Request::parse(s).ok());
        black_box(req.verb());
    }
    if let Ok(resp) = black_box(Response::parse(line)) {
        canonical(&resp, |s| Response::parse(s).ok());
        if let Response::Ok(payload) = &resp {
            if let Ok(kv) = parse_kv(payload) {
                for (k, v) in kv {
                    // Words are split at ASCII whitespace only (other Unicode spaces are
                    // ordinary characters of a value).
                    assert!(!k.is_empty() && !k.contains(|c: char| c.is_ascii_whitespace()));
                    assert!(!v.contains(|c: char| c.is_ascii_whitespace()));
                }
            }
        }
    }
}

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    one(&text);
    for line in text.split_inclusive('\n') {
        one(line);
    }
}

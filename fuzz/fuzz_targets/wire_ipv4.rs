//! `Ipv4Header::parse` on arbitrary bytes, and the emit/re-parse round trip when it parses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydranet_fuzz::wire::ipv4(data));

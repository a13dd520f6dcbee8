//! The conformance runner's packetdrill parser on arbitrary text; see
//! `hydranet_fuzz::pkt_script`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydranet_fuzz::pkt_script::run(data));

//! `Redirector::route`, `icmp_frag_needed` and a host's IP-in-IP decapsulation on arbitrary
//! packets; see `hydranet_fuzz::ipip`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydranet_fuzz::ipip::run(data));

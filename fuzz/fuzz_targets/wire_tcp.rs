//! `tcp::parse_segment` (checksum verified and not) and the option iterator on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydranet_fuzz::wire::tcp(data));

//! The daemons' control protocol (`Request::parse`, `Response::parse`) on arbitrary lines;
//! see `hydranet_fuzz::ctl`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydranet_fuzz::ctl::run(data));

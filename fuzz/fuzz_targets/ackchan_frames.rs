//! Arbitrary and mutated ack-channel frames into an `AckChannel` and, as UDP to port 7407,
//! into a `Host`; see `hydranet_fuzz::ackchan` for the input format and the checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydranet_fuzz::ackchan::run(data));

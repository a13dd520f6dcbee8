//! One stack (a listener and an established connection) fed fuzzed packets, time steps and
//! socket calls; see `hydranet_fuzz::stack_input` for the input format and the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydranet_fuzz::stack_input::run(data));

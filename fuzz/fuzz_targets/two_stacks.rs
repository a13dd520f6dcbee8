//! Two stacks over a fuzzed in-memory link; received bytes must always be a prefix of sent
//! bytes. See `hydranet_fuzz::two_stacks`.
#![no_main]

use hydranet_fuzz::two_stacks::{run, NetOp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|ops: Vec<NetOp>| {
    std::hint::black_box(run(&ops).totals());
});

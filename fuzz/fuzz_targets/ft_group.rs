//! A replica group in the simulator under fuzzed traffic, crashes and hostile ack-channel
//! input; see `hydranet_fuzz::ft_group` (and `HYDRANET_FUZZ_FT_INVARIANTS`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydranet_fuzz::ft_group::run(data));

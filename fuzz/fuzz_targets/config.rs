#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| corral_fuzz::targets::config(data, corral_fuzz::mode()));

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| corral_fuzz::targets::load_report(data, corral_fuzz::mode()));

//! See `vnic_fuzz::config` for what an input is and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vnic_fuzz::config::run(data));

//! See `vnic_fuzz::offload` for what an input is and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vnic_fuzz::offload::run(data));

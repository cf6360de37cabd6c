//! Scripts of peer segments, time steps and application calls against one
//! TCP connection; see `vnic_fuzz::stack` for the script and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vnic_fuzz::stack::run(data));

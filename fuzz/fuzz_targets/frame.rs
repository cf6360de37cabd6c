//! Any bytes as an Ethernet frame through the adapter's RX path; see
//! `vnic_fuzz::frame` for the forms each input is fed in and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vnic_fuzz::frame::run(data));

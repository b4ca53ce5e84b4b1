#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lockstep_agent::config::fuzz_config_file(data));

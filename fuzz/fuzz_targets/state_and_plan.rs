//! libFuzzer over the state-file parser and the planner (and what renders and
//! announces a plan): see `fuzz/harness.rs` for the input format and invariants.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::exercise(data));

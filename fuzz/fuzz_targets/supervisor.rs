//! The supervisor's core against a model of its processes (`fuzz/model.rs`): exits only
//! once every process is gone, answers every request once, signals only dynos it
//! spawned, leaves no deadline in the past, and always finishes a stop.
#![no_main]

#[path = "../model.rs"]
mod model;

libfuzzer_sys::fuzz_target!(|data: &[u8]| model::run(data));

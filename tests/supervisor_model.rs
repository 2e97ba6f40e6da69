//! The supervisor's core against a model of its processes, over random input sequences:
//! the same checks as the `supervisor` fuzz target (`fuzz/model.rs`, TESTING.md), run
//! on stable in `cargo test`.

#[path = "../fuzz/model.rs"]
mod model;

use std::path::{Path, PathBuf};

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn the_core_keeps_its_promises(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        model::run(&data);
    }
}

/// Runs the model once failed on, kept as traces (`tests/model_traces/*.trace`): each
/// line a choice the model made and its value, so a trace reads as what happened and
/// stays the same run whatever bytes would now decode to it.
#[test]
fn known_failures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/model_traces");
    let mut traces: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/model_traces")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "trace"))
        .collect();
    traces.sort();
    assert!(traces.len() >= 6, "{traces:?}");
    for trace in traces {
        eprintln!("{}", trace.display());
        model::replay(&std::fs::read_to_string(&trace).expect("a readable trace"));
    }
}

/// The trace of a failure proptest or the fuzzer found, to keep in tests/model_traces/:
/// `HKRUN_MODEL_BYTES='[1, 2, 3]' cargo test --test supervisor_model -- --ignored
/// trace_of_bytes --nocapture` (the bytes of proptest's `shrinks to data = [...]`).
#[test]
#[ignore = "a tool, run on demand"]
fn trace_of_bytes() {
    let text = std::env::var("HKRUN_MODEL_BYTES").expect("HKRUN_MODEL_BYTES");
    let bytes: Vec<u8> = text
        .trim_matches(|c: char| c == '[' || c == ']' || c.is_whitespace())
        .split(',')
        .filter(|b| !b.trim().is_empty())
        .map(|b| b.trim().parse().expect("a byte"))
        .collect();
    let (trace, failed) = model::trace_of(&bytes);
    print!("{trace}");
    eprintln!("{}", failed.as_deref().unwrap_or("(the run passes)"));
}

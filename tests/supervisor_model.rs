//! The supervisor's core against a model of its processes, over random input sequences:
//! the same checks as the `supervisor` fuzz target (`fuzz/model.rs`, TESTING.md), run
//! on stable in `cargo test`.

#[path = "../fuzz/model.rs"]
mod model;

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn the_core_keeps_its_promises(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        model::run(&data);
    }
}

/// Inputs the model once failed on, kept as regressions.
#[test]
fn known_failures() {
    for data in FOUND {
        model::run(data);
    }
}

const FOUND: &[&[u8]] = &[
    &[
        10, 0, 31, 0, 0, 1, 0, 0, 0, 0, 43, 0, 0, 0, 8, 0, 203, 0, 1, 0, 0, 27, 0, 0, 0, 54, 0, 0,
        3, 0, 0, 0, 36,
    ],
    &[
        44, 0, 156, 87, 0, 1, 16, 72, 97, 0, 212, 0, 0, 7, 93, 0, 0, 0, 0, 3, 6, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0,
    ],
    &[
        41, 0, 31, 220, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 150, 30, 0, 0, 128, 0, 0, 121, 1, 0, 0, 1, 0,
        0, 0, 0, 40, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 137, 0, 0, 0, 30, 0, 0, 132, 73, 44, 0, 0,
        6, 0, 0, 150, 0, 0, 80, 2, 24, 175,
    ],
    // A crashed dyno scaled away after a scan had found its run gone was sent SIGTERM.
    &[
        162, 15, 162, 66, 0, 1, 0, 0, 0, 0, 12, 0, 21, 17, 0, 0, 177, 11, 0, 0, 54, 0, 0, 32, 0,
        47, 1, 55, 0, 0, 59, 0, 0, 36, 0, 0, 1, 3, 0, 4, 0, 88, 150, 24, 187, 162, 0, 0, 11, 0, 0,
        12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 180, 0, 0, 0,
        187, 1, 3, 104, 0, 0, 0,
    ],
    // A scale's answer waited on `web.1` by name, and a later scale's new web.1 kept it
    // waiting until the app stopped.
    &[
        112, 96, 31, 108, 0, 1, 0, 0, 1, 159, 0, 93, 12, 0, 65, 1, 0, 0, 0, 0, 148, 0, 0, 0, 0,
        104, 19, 0, 233, 0, 0, 104, 126, 0, 69, 252, 42, 93, 0, 0, 0, 0, 0, 243, 0, 0, 0, 114, 0,
        0, 3, 0, 0, 0, 68, 0, 24, 0, 10, 63, 1, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 102, 0, 0, 44, 31, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ],
];

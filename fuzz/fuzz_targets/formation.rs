//! The formation, scale and size parsers: never panic, and a size echoes what it holds
//! (TESTING.md).
#![no_main]

use hkrun::plan::formation::{DynoSize, FormationSpec, ScaleChange};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(spec) = text.parse::<FormationSpec>() {
        assert!(!spec.items.is_empty());
        for item in &spec.items {
            assert!(!item.name.is_empty());
        }
    }
    let args: Vec<String> = text.split(' ').map(str::to_owned).collect();
    let _ = FormationSpec::from_args(&args);
    if let Ok(change) = text.parse::<ScaleChange>() {
        assert!(!change.name.is_empty());
    }
    if let Ok(size) = text.parse::<DynoSize>() {
        assert!(size.bytes > 0);
        // What is echoed reads back as the same size.
        let echoed: DynoSize = size.to_string().parse().expect("an echoed size parses");
        assert_eq!(echoed.bytes, size.bytes, "{text:?} echoed as {size}");
    }
});

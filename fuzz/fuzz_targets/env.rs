//! The `.env` parser: never panics, names a real line when it refuses, and what it
//! accepts writes back and reads the same (TESTING.md).
#![no_main]

use std::path::Path;

use hkrun::config::env::{EnvError, Vars, parse_in};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let path = Path::new(".env");
    let outer = Vars::from([("HOME".to_owned(), "/home/fuzz".to_owned())]);
    match parse_in(path, bytes, &outer) {
        Ok(vars) => {
            let mut text = String::new();
            for var in &vars {
                assert!(!var.value.contains('\0'));
                assert!(var.line >= 1);
                // Double quotes with `\`, `"` and `$` escaped hold any value.
                let escaped = var
                    .value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('$', "\\$");
                text += &format!("{}=\"{escaped}\"\n", var.key);
            }
            let again =
                parse_in(path, text.as_bytes(), &Vars::new()).expect("written back, it reads");
            let pairs = |v: &[hkrun::config::env::Var]| {
                v.iter()
                    .map(|v| (v.key.clone(), v.value.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(pairs(&again), pairs(&vars), "{text:?}");
        }
        Err(EnvError::Syntax { line, text, .. }) => {
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
            assert!(line >= 1 && line <= lines, "line {line} of {lines}");
            assert!(!text.contains('\n'));
        }
        Err(EnvError::Nul { line, .. } | EnvError::NotUtf8 { line, .. }) => {
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
            assert!(line >= 1 && line <= lines, "line {line} of {lines}");
        }
        Err(other) => panic!("parsing cannot give {other:?}"),
    }
});

//! The Procfile parser: never panics, and what it accepts holds (TESTING.md).
#![no_main]

use hkrun::config::procfile::{Procfile, ProcfileError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    match Procfile::parse(bytes) {
        Ok(procfile) => {
            assert!(!procfile.entries().is_empty());
            for entry in procfile.entries() {
                assert!(entry.line >= 1);
                assert!(!entry.command.is_empty(), "{entry:?}");
                assert_eq!(entry.command.trim(), entry.command, "{entry:?}");
                assert!(!entry.command.contains(['\0', '\n']), "{entry:?}");
                assert!(!entry.name.is_empty() && !entry.name.contains([':', ' ']));
            }
            // Written back as `name: command` lines, the entries read the same.
            let text: String = procfile
                .entries()
                .iter()
                .map(|e| format!("{}: {}\n", e.name, e.command))
                .collect();
            let again = Procfile::parse(text.as_bytes()).expect("rendered entries parse");
            assert_eq!(again.entries().len(), procfile.entries().len());
            for (a, b) in again.entries().iter().zip(procfile.entries()) {
                assert_eq!((&a.name, &a.command), (&b.name, &b.command));
            }
        }
        Err(err) => {
            if let (Some(line), Ok(text)) = (err.line(), std::str::from_utf8(bytes)) {
                assert!(line >= 1 && line <= text.split('\n').count(), "{err:?}");
            }
            if matches!(err, ProcfileError::NotAnEntry { .. }) {
                assert!(!err.to_string().contains('\n') || bytes.contains(&b'\r'));
            }
        }
    }
});

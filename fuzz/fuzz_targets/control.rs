//! The control protocol's request parser (`control::protocol::parse_request`): never
//! panics, and an accepted request encodes and parses back to itself (TESTING.md).
#![no_main]

use hkrun::control::protocol::{encode_request, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    if let Ok(request) = parse_request(line) {
        let encoded = encode_request(&request);
        let again = parse_request(encoded.trim_end_matches('\n').as_bytes())
            .expect("an encoded request parses");
        assert_eq!(again, request, "{encoded}");
    }
});

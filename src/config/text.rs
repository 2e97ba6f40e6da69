//! What the Procfile and the env files share: bytes read as UTF-8 text.

/// The text of a file's bytes, less a UTF-8 byte-order mark; or, when they are not UTF-8,
/// the 1-based line of the first byte that is not.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, usize> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes)
        .map_err(|e| 1 + memchr::memchr_iter(b'\n', &bytes[..e.valid_up_to()]).count())
}

/// A parser's error message without the position it ends with (`... at line 3 column
/// 1`): the caller names the file and line its own way.
pub(crate) fn without_position(error: &dyn std::fmt::Display) -> String {
    let text = error.to_string();
    text.split(" at line ")
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::utf8;

    #[test]
    fn names_the_line_of_the_first_bad_byte() {
        assert_eq!(utf8(b"\xEF\xBB\xBFweb: x\n"), Ok("web: x\n"));
        assert_eq!(utf8(b"a\nb\n\xFFc"), Err(3));
        assert_eq!(utf8(b"\xFF"), Err(1));
    }
}

//! String literals as Go unquotes them.
//!
//! Prometheus reads `"\xff"` as the single byte 0xFF, which is not UTF-8,
//! so `label_replace(x, "\xff", ...)` is an invalid label name there. The
//! `promql-parser` crate decodes it to the character U+00FF instead, a
//! valid name. Comet stores labels as UTF-8, so a literal whose bytes are
//! not UTF-8 is refused before planning rather than silently changed.

/// Checks every double- or single-quoted literal of `query`.
pub fn check_utf8(query: &str) -> Result<(), String> {
    if !query.contains('\\') {
        return Ok(());
    }
    let bytes = query.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
                i += 1;
            }
            quote @ (b'"' | b'\'') => {
                let start = i;
                let (decoded, end) = unquote(bytes, i + 1, quote);
                if std::str::from_utf8(&decoded).is_err() {
                    let literal = &query[start..end.min(query.len())];
                    // As Prometheus words it where the literal names a label.
                    if names_count_values_label(&query[..start]) {
                        return Err(format!("invalid label name {literal}"));
                    }
                    return Err(format!(
                        "string literal {literal} is not valid UTF-8 once unescaped"
                    ));
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Whether a literal after `before` is the label argument of
/// `count_values` (its first, perhaps in parentheses).
fn names_count_values_label(before: &str) -> bool {
    let opening = before.trim_end_matches(|c: char| c.is_whitespace() || c == '(');
    opening.len() < before.len() && opening.trim_end().ends_with("count_values")
}

/// Decodes a literal from `from` (just after the opening quote) to its
/// closing quote; returns the bytes and the index after the closing quote.
/// Malformed escapes are left to the parser, which reports them.
fn unquote(bytes: &[u8], from: usize, quote: u8) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut i = from;
    while i < bytes.len() && bytes[i] != quote {
        if bytes[i] != b'\\' || i + 1 >= bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let escape = bytes[i + 1];
        i += 2;
        match escape {
            b'x' => {
                if let Some(byte) = digits(bytes, i, 2, 16) {
                    out.push(byte as u8);
                    i += 2;
                }
            }
            b'0'..=b'7' => {
                if let Some(byte) = digits(bytes, i - 1, 3, 8).filter(|b| *b <= 0xff) {
                    out.push(byte as u8);
                    i += 2;
                }
            }
            b'u' | b'U' => {
                let width = if escape == b'u' { 4 } else { 8 };
                if let Some(c) = digits(bytes, i, width, 16).and_then(char::from_u32) {
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    i += width;
                }
            }
            // \a \b \f \n \r \t \v \\ and the quotes: one ASCII byte each.
            other => out.push(other),
        }
    }
    (out, i + 1)
}

fn digits(bytes: &[u8], at: usize, width: usize, radix: u32) -> Option<u32> {
    let text = std::str::from_utf8(bytes.get(at..at + width)?).ok()?;
    u32::from_str_radix(text, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::check_utf8;

    #[test]
    fn byte_escapes_must_form_utf8() {
        assert!(check_utf8(r#"label_replace(m, "\xff", "", "src", "(.*)")"#).is_err());
        assert!(check_utf8(r#"m{a='\377'}"#).is_err());
        assert_eq!(
            check_utf8(r#"count_values ( ("a\xc5z"), m)"#),
            Err(r#"invalid label name "a\xc5z""#.to_string())
        );
        assert!(
            check_utf8(r#"label_replace(m, "\xff", "", "src", "(.*)")"#)
                .is_err_and(|e| e.contains("not valid UTF-8"))
        );
        // Two bytes that together are "ÿ", and escapes of whole characters.
        assert!(check_utf8(r#"m{a="\xc3\xbf", b="\u00ff", c="\U0001F600"}"#).is_ok());
        // Raw strings and comments do not unescape.
        assert!(check_utf8("m{a=~`\\xff`} # \"\\xff\"").is_ok());
        assert!(check_utf8(r#"m{a="\"\\xff"}"#).is_ok());
    }
}

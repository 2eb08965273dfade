//! The canonical series fingerprint.
//!
//! `fingerprint = XXH64(seed 0)` over the label set sorted by name, each
//! label written as `name 0xFF value 0xFF`. This is byte for byte the hash
//! Prometheus computes in `labels.Labels.Hash()`, so a fingerprint seen in
//! Comet matches the one Prometheus tooling reports for the same series, and
//! ClickHouse can compute it too:
//! `xxHash64(concat('__name__', '\xFF', 'up', '\xFF', ...))`.
//!
//! This value is stored in every row of `series` and `samples`; changing
//! it would split every existing series in two. The unit tests below pin it.

use std::cell::RefCell;

use xxhash_rust::xxh64::xxh64;

/// Separator byte between names and values; 0xFF never occurs in UTF-8.
const SEPARATOR: u8 = 0xFF;

/// Hashes label pairs that are already sorted by name.
pub fn fingerprint<'a>(sorted_labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    thread_local! {
        // One-shot hashing of a contiguous buffer is several times faster
        // than feeding the streaming hasher many small pieces.
        static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    BUFFER.with_borrow_mut(|buf| {
        buf.clear();
        for (name, value) in sorted_labels {
            buf.extend_from_slice(name.as_bytes());
            buf.push(SEPARATOR);
            buf.extend_from_slice(value.as_bytes());
            buf.push(SEPARATOR);
        }
        xxh64(buf, 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{Labels, NameValidation};

    /// Pinned values (computed independently with ClickHouse's xxHash64):
    /// if one of these changes, existing data no longer
    /// matches new writes. Do not update them; fix the code.
    #[test]
    fn pinned_values() {
        let cases: &[(&[(&str, &str)], u64)] = &[
            (&[], 0xef46db3751d8e999),
            (&[("__name__", "up")], PINNED_UP),
            (
                &[
                    ("__name__", "up"),
                    ("instance", "localhost:9090"),
                    ("job", "prometheus"),
                ],
                PINNED_UP_JOB,
            ),
            (
                &[
                    ("__name__", "http_requests_total"),
                    ("code", "200"),
                    ("method", "GET"),
                ],
                PINNED_HTTP,
            ),
        ];
        for (labels, want) in cases {
            assert_eq!(fingerprint(labels.iter().copied()), *want, "{labels:?}");
        }
    }

    const PINNED_UP: u64 = 0x23d4c2cb13387598;
    const PINNED_UP_JOB: u64 = 0xf28c8afcd224e55f;
    const PINNED_HTTP: u64 = 0x083c707a08f265f3;

    #[test]
    fn order_of_input_does_not_matter_for_labels() {
        let a = Labels::new([("job", "x"), ("__name__", "up")], NameValidation::Legacy).unwrap();
        let b = Labels::new([("__name__", "up"), ("job", "x")], NameValidation::Legacy).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn separator_prevents_ambiguity() {
        // "a"="bc" and "ab"="c" must not collide by concatenation.
        assert_ne!(fingerprint([("a", "bc")]), fingerprint([("ab", "c")]));
    }
}

//! The `Range` request header (RFC 9110 §14), for one byte range.
//!
//! Clients here are package managers resuming downloads: they send one
//! range. A header we do not serve (another unit, several ranges, bad
//! syntax) is ignored, as the RFC allows, and the whole object is sent with
//! 200; only a well-formed range that lies outside the object gets 416.
//!
//! `If-Range` (§13.1.5) guards a resume: the client names the version its
//! partial copy came from, and a range is served only if that is still the
//! version here. Otherwise the whole current object goes out with 200, so a
//! resumed download never stitches the head of one release to the tail of
//! another (apt resumes `InRelease` this way across release switches).

/// What to send for a request's `Range` header against an object of `size`
/// bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable range: send the whole object (200).
    Whole,
    /// Send bytes `start..=end` (206, `Content-Range: bytes start-end/size`).
    Part { start: u64, end: u64 },
    /// 416, with `Content-Range: bytes */size`.
    Unsatisfiable,
}

impl RangeAnswer {
    /// Number of bytes the answer sends for an object of `size` bytes.
    pub fn len(&self, size: u64) -> u64 {
        match *self {
            RangeAnswer::Whole => size,
            RangeAnswer::Part { start, end } => end - start + 1,
            RangeAnswer::Unsatisfiable => 0,
        }
    }

    pub fn is_empty(&self, size: u64) -> bool {
        self.len(size) == 0
    }
}

/// Interprets a `Range` header value for an object of `size` bytes.
pub fn parse(header: &[u8], size: u64) -> RangeAnswer {
    let Some(spec) = strip_unit(header) else {
        return RangeAnswer::Whole;
    };
    if spec.contains(&b',') {
        // Several ranges: allowed to ignore, and no package client sends them.
        return RangeAnswer::Whole;
    }
    let spec = trim(spec);
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return RangeAnswer::Whole;
    };
    let (first, last) = (trim(&spec[..dash]), trim(&spec[dash + 1..]));
    match (number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (None, Some(n)) if first.is_empty() => {
            if n == 0 || size == 0 {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Part {
                    start: size.saturating_sub(n),
                    end: size - 1,
                }
            }
        }
        // bytes=A-: from A to the end.
        (Some(a), None) if last.is_empty() => {
            if a >= size {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Part {
                    start: a,
                    end: size - 1,
                }
            }
        }
        // bytes=A-B.
        (Some(a), Some(b)) => {
            if b < a {
                RangeAnswer::Whole // invalid: ignored
            } else if a >= size {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Part {
                    start: a,
                    end: b.min(size - 1),
                }
            }
        }
        _ => RangeAnswer::Whole,
    }
}

/// Whether a request's `If-Range` value lets its `Range` apply to the
/// object whose strong ETag is `etag` (quoted, as sent) and whose
/// `Last-Modified` is `modified_secs` since the epoch (as sent, so already
/// clamped to the years an HTTP date shows).
///
/// An entity tag must match ours exactly and be strong (a weak tag never
/// matches, RFC 9110 §13.1.5); a date must equal our `Last-Modified` to the
/// second. Anything else, including a value that is neither, fails: the
/// range is then ignored and the whole object sent.
pub fn if_range_holds(value: &[u8], etag: &[u8], modified_secs: u64) -> bool {
    let value = trim(value);
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return value == etag && !etag.starts_with(b"W/");
    }
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    match httpdate::parse_http_date(text) {
        Ok(date) => date
            .duration_since(std::time::UNIX_EPOCH)
            .is_ok_and(|d| d.as_secs() == modified_secs),
        Err(_) => false,
    }
}

/// `bytes=...` → `...` (the unit is case-insensitive).
fn strip_unit(header: &[u8]) -> Option<&[u8]> {
    let h = trim(header);
    if h.len() >= 6 && h[..6].eq_ignore_ascii_case(b"bytes=") {
        Some(&h[6..])
    } else {
        None
    }
}

/// A run of ASCII digits; values past u64 saturate (a position that large
/// is past any object's end, which gives the right answer).
fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::RangeAnswer::*;
    use super::*;

    fn p(h: &str, size: u64) -> RangeAnswer {
        parse(h.as_bytes(), size)
    }

    const TAG: &[u8] = b"\"0123abcd\"";
    /// Sun, 06 Nov 1994 08:49:37 GMT.
    const MODIFIED: u64 = 784_111_777;

    fn holds(v: &str) -> bool {
        if_range_holds(v.as_bytes(), TAG, MODIFIED)
    }

    #[test]
    fn if_range_with_our_strong_etag_holds() {
        assert!(holds("\"0123abcd\""));
        assert!(holds("  \"0123abcd\"\t"));
    }

    #[test]
    fn if_range_with_another_or_weak_etag_fails() {
        assert!(!holds("\"0123abce\""));
        assert!(!holds("W/\"0123abcd\""));
        assert!(!holds("\"0123abcd"));
        assert!(!holds("\"\""));
        assert!(!holds("*"));
        // Our own tag is never weak, but a weak one never matches anyway.
        assert!(!if_range_holds(b"W/\"x\"", b"W/\"x\"", MODIFIED));
    }

    #[test]
    fn if_range_with_our_date_holds_in_every_http_date_form() {
        assert!(holds("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert!(holds("Sunday, 06-Nov-94 08:49:37 GMT"));
        assert!(holds("Sun Nov  6 08:49:37 1994"));
    }

    #[test]
    fn if_range_with_another_date_fails() {
        // A second later or earlier: the partial copy is of another version.
        assert!(!holds("Sun, 06 Nov 1994 08:49:38 GMT"));
        assert!(!holds("Sun, 06 Nov 1994 08:49:36 GMT"));
        assert!(!holds("Sun, 06 Nov 1994"));
        assert!(!holds(""));
        assert!(!holds("tomorrow"));
        assert!(!if_range_holds(&[0xff, 0xfe], TAG, MODIFIED));
    }

    #[test]
    fn closed_ranges() {
        assert_eq!(p("bytes=0-0", 10), Part { start: 0, end: 0 });
        assert_eq!(p("bytes=0-9", 10), Part { start: 0, end: 9 });
        assert_eq!(p("bytes=2-5", 10), Part { start: 2, end: 5 });
        assert_eq!(p("bytes=9-9", 10), Part { start: 9, end: 9 });
        // The end is clamped to the object.
        assert_eq!(p("bytes=5-100", 10), Part { start: 5, end: 9 });
        assert_eq!(
            p("bytes=0-18446744073709551616", 10),
            Part { start: 0, end: 9 }
        );
    }

    #[test]
    fn open_ranges() {
        assert_eq!(p("bytes=0-", 10), Part { start: 0, end: 9 });
        assert_eq!(p("bytes=9-", 10), Part { start: 9, end: 9 });
        assert_eq!(p("bytes=10-", 10), Unsatisfiable);
        assert_eq!(p("bytes=99999999999999999999999-", 10), Unsatisfiable);
    }

    #[test]
    fn suffix_ranges() {
        assert_eq!(p("bytes=-1", 10), Part { start: 9, end: 9 });
        assert_eq!(p("bytes=-4", 10), Part { start: 6, end: 9 });
        assert_eq!(p("bytes=-10", 10), Part { start: 0, end: 9 });
        assert_eq!(p("bytes=-500", 10), Part { start: 0, end: 9 });
        assert_eq!(p("bytes=-0", 10), Unsatisfiable);
    }

    #[test]
    fn empty_object_satisfies_no_range() {
        for h in ["bytes=0-", "bytes=0-0", "bytes=-1", "bytes=-0"] {
            assert_eq!(p(h, 0), Unsatisfiable, "{h}");
        }
        assert_eq!(p("bytes=5-2", 0), Whole);
    }

    #[test]
    fn start_past_the_end_is_unsatisfiable() {
        assert_eq!(p("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(p("bytes=11-11", 10), Unsatisfiable);
    }

    #[test]
    fn ignored_headers_mean_whole_object() {
        for h in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=1-2x",
            "bytes=+1-2",
            "bytes=1--2",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes 0-1",
            "bytes=0x10-",
        ] {
            assert_eq!(p(h, 10), Whole, "{h:?}");
        }
    }

    #[test]
    fn whitespace_and_case_are_tolerated() {
        assert_eq!(p(" Bytes= 2 - 5 ", 10), Part { start: 2, end: 5 });
        assert_eq!(p("BYTES=-3", 10), Part { start: 7, end: 9 });
    }

    #[test]
    fn lengths() {
        assert_eq!(Whole.len(10), 10);
        assert_eq!(Part { start: 2, end: 5 }.len(10), 4);
        assert_eq!(Unsatisfiable.len(10), 0);
        assert!(Unsatisfiable.is_empty(10));
    }

    #[test]
    fn every_answer_lies_within_the_object() {
        // Exhaustive over small sizes and positions.
        for size in 0..12u64 {
            for a in 0..15u64 {
                for b in 0..15u64 {
                    for h in [
                        format!("bytes={a}-{b}"),
                        format!("bytes={a}-"),
                        format!("bytes=-{b}"),
                    ] {
                        if let Part { start, end } = p(&h, size) {
                            assert!(start <= end && end < size, "{h} size {size}");
                        }
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// Range arithmetic always stays within the object, for any size
        /// and any bytes in the header.
        #[test]
        fn any_header_answers_within_the_object(
            size in proptest::prelude::any::<u64>(),
            header in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        ) {
            if let Part { start, end } = parse(&header, size) {
                proptest::prop_assert!(start <= end && end < size);
            }
        }

        /// The same for well-formed headers, with positions near the size.
        #[test]
        fn well_formed_ranges_answer_within_the_object(
            size in 0u64..1 << 40,
            a in proptest::prelude::any::<u64>(),
            b in proptest::prelude::any::<u64>(),
            form in 0..3u8,
        ) {
            let (a, b) = (a % (size + 2), b % (size + 2));
            let header = match form {
                0 => format!("bytes={a}-{b}"),
                1 => format!("bytes={a}-"),
                _ => format!("bytes=-{b}"),
            };
            if let Part { start, end } = parse(header.as_bytes(), size) {
                proptest::prop_assert!(start <= end && end < size, "{header} of {size}");
            }
        }
    }
}

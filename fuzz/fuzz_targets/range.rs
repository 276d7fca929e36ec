//! The Range header: every part it answers lies within the object. And
//! `If-Range`: it holds only for our own strong tag, or for a date equal
//! to our `Last-Modified`, whatever the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use unimirror::serve::range::{RangeAnswer, if_range_holds, parse};

fuzz_target!(|input: (u64, &[u8], &[u8], u64)| {
    let (size, header, if_range, modified) = input;
    match parse(header, size) {
        RangeAnswer::Part { start, end } => {
            assert!(start <= end, "{start} > {end}");
            assert!(end < size, "end {end} past size {size}");
        }
        RangeAnswer::Whole | RangeAnswer::Unsatisfiable => {}
    }
    let etag = b"\"0123456789abcdef\"";
    if if_range_holds(if_range, etag, modified) {
        let v = if_range.trim_ascii();
        if v.starts_with(b"\"") || v.starts_with(b"W/") {
            assert_eq!(v, etag, "another tag held");
        } else {
            let date = std::str::from_utf8(v).expect("a date that held is text");
            let secs = httpdate::parse_http_date(date)
                .expect("a date that held parses")
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after the epoch")
                .as_secs();
            assert_eq!(secs, modified, "another date held");
        }
    }
});

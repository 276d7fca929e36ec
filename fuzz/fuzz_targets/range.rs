//! The Range header: every part it answers lies within the object.
#![no_main]
use libfuzzer_sys::fuzz_target;
use unimirror::serve::range::{RangeAnswer, parse};

fuzz_target!(|input: (u64, &[u8])| {
    let (size, header) = input;
    match parse(header, size) {
        RangeAnswer::Part { start, end } => {
            assert!(start <= end, "{start} > {end}");
            assert!(end < size, "end {end} past size {size}");
        }
        RangeAnswer::Whole | RangeAnswer::Unsatisfiable => {}
    }
});

//! Replay checks: `Release` fields and dates, the cleartext of an
//! `InRelease`, a `repomd.xml` revision, and the `Release`/`InRelease`
//! comparison. Nothing may panic; a date that parses must be one.
#![no_main]
use libfuzzer_sys::fuzz_target;
use unimirror::sync::replay::{
    check_release, check_revision, cleartext, parse_date, release_fields, repomd_revision,
    same_release_text,
};

const DEMO_RELEASE: &str = include_str!("../../tests/fixtures/demo/ubuntu/dists/demo/Release");

/// A date `parse_date` accepted: five fields, a real zone, and (for UTC
/// and a day the month has) the same instant httpdate writes.
fn check_date(s: &str, t: i64) {
    let rest = s.split_once(',').map_or(s, |(_, r)| r);
    let parts: Vec<&str> = rest.split_whitespace().collect();
    assert_eq!(parts.len(), 5, "{s:?}");
    let zone = parts[4];
    assert!(
        matches!(zone, "UTC" | "GMT" | "Z")
            || (zone.len() == 5
                && (zone.starts_with('+') || zone.starts_with('-'))
                && zone[1..].bytes().all(|b| b.is_ascii_digit())
                && zone[3..].parse::<u32>().is_ok_and(|m| m < 60)),
        "{s:?} accepted with zone {zone:?}"
    );
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    assert!(
        digits(parts[0]) && digits(parts[2]) && parts[3].split(':').all(digits),
        "{s:?} accepted with a number that is not digits"
    );
    // From 1970 to 9999, give or take an offset of at most 99:59.
    assert!((-360_000..253_402_660_800).contains(&t), "{s:?} gave {t}");
    if zone != "UTC" && zone != "GMT" && zone != "Z" {
        return;
    }
    let (day, year): (u32, i64) = (parts[0].parse().unwrap(), parts[2].parse().unwrap());
    let month = parts[1].to_ascii_lowercase();
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month.as_str() {
        "feb" if leap => 29,
        "feb" => 28,
        "apr" | "jun" | "sep" | "nov" => 30,
        _ => 31,
    };
    if day > days || parts[3].ends_with(":60") {
        return;
    }
    let back =
        httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t as u64));
    // `Sat, 05 Dec 2026 10:00:00 GMT`: compare day, month, year and time
    // as numbers (the input may write `5` or `005`, `dec` or `DEC`).
    let b: Vec<&str> = back[5..].split_whitespace().collect();
    assert_eq!(b[0].parse::<u32>().unwrap(), day, "{s:?} -> {back}");
    assert!(b[1].eq_ignore_ascii_case(&month), "{s:?} -> {back}");
    assert_eq!(b[2].parse::<i64>().unwrap(), year, "{s:?} -> {back}");
    let hms = |x: &str| -> Vec<i64> { x.split(':').map(|p| p.parse().unwrap()).collect() };
    assert_eq!(hms(b[3]), hms(parts[3]), "{s:?} -> {back}");
}

fuzz_target!(|bytes: &[u8]| {
    if let Ok(rev) = repomd_revision(bytes) {
        let previous = Some((1, Some("1700000000".to_string())));
        let _ = check_revision("repodata/repomd.xml", rev.as_deref(), previous, false);
    }
    let _ = same_release_text(bytes, DEMO_RELEASE);
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let clear = cleartext(text);
    let (start, end) = (text.as_ptr() as usize, text.as_ptr() as usize + text.len());
    let c = clear.as_ptr() as usize;
    // (An empty answer may be the literal "", which lies elsewhere.)
    assert!(
        clear.is_empty() || (c >= start && c + clear.len() <= end),
        "cleartext outside the text"
    );
    assert!(same_release_text(clear.as_bytes(), clear));
    let fields = release_fields(clear);
    for v in [&fields.date, &fields.valid_until].into_iter().flatten() {
        if let Ok(t) = parse_date(v) {
            check_date(v, t);
        }
    }
    if let Ok(t) = parse_date(text) {
        check_date(text, t);
    }
    for suite in ["demo", fields.suite.as_deref().unwrap_or("")] {
        let previous = Some((1, release_fields(DEMO_RELEASE)));
        let _ = check_release(suite, "InRelease", &fields, previous, 1_800_000_000, false);
    }
    let _ = check_release("demo", "InRelease", &fields, None, 0, true);
});

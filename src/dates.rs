//! Calendar dates written straight into fixed buffers: `Last-Modified`
//! (on every object response) and the log's timestamps (on every access
//! line).
//!
//! Going through `httpdate`'s and `humantime`'s `Display` (the formatting
//! machinery, then a `String`) was a measurable share of every cache hit
//! (figures in docs/performance.md). The text is the same as theirs (tests hold them
//! together); times outside years 1970–9999 are clamped to those ends
//! instead of panicking.

use std::time::{SystemTime, UNIX_EPOCH};

/// 9999-12-31T23:59:59Z, the last second a four-digit year can show.
const LAST: u64 = 253_402_300_799;

/// Seconds and microseconds since the epoch, clamped to the years shown.
fn since_epoch(t: SystemTime) -> (u64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) if d.as_secs() > LAST => (LAST, 999_999),
        Ok(d) => (d.as_secs(), d.subsec_micros()),
        Err(_) => (0, 0),
    }
}

/// Whole seconds since the epoch of the date `http_date` writes for `t`
/// (clamped the same way), for comparing a client's date with ours.
pub fn http_seconds(t: SystemTime) -> u64 {
    since_epoch(t).0
}

/// The IMF-fixdate of HTTP, `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(t: SystemTime) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let (secs, _) = since_epoch(t);
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    // 1970-01-01 was a Thursday.
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    digits(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTHS[month as usize - 1]);
    digits(&mut out[12..16], year);
    time_of_day(&mut out[17..25], secs);
    out
}

/// RFC 3339 in UTC with microseconds, `2023-11-14T22:13:20.123456Z`, as
/// tracing's formatter writes its timestamps.
pub fn rfc3339_micros(t: SystemTime) -> [u8; 27] {
    let (secs, micros) = since_epoch(t);
    let (year, month, day) = civil_from_days(secs / 86_400);
    let mut out = *b"1970-01-01T00:00:00.000000Z";
    digits(&mut out[0..4], year);
    digits(&mut out[5..7], month);
    digits(&mut out[8..10], day);
    time_of_day(&mut out[11..19], secs);
    digits(&mut out[20..26], u64::from(micros));
    out
}

/// `HH:MM:SS` of `secs` since the epoch.
fn time_of_day(out: &mut [u8], secs: u64) {
    let in_day = secs % 86_400;
    digits(&mut out[0..2], in_day / 3600);
    digits(&mut out[3..5], in_day / 60 % 60);
    digits(&mut out[6..8], in_day % 60);
}

/// `n` in decimal, zero-padded to fill `out` (its high digits cut off).
fn digits(out: &mut [u8], mut n: u64) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Year, month (1–12) and day (1–31) of a day counted from 1970-01-01, by
/// the proleptic Gregorian calendar (H. Hinnant's `civil_from_days`, on
/// unsigned numbers since no day here is before the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Count from 0000-03-01, so that the leap day ends each year.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn http(t: SystemTime) -> String {
        String::from_utf8(http_date(t).to_vec()).unwrap()
    }

    fn log(t: SystemTime) -> String {
        String::from_utf8(rfc3339_micros(t).to_vec()).unwrap()
    }

    #[test]
    fn known_dates() {
        assert_eq!(http(at(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http(at(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        // A leap day, and the day after it.
        assert_eq!(http(at(951_782_400)), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http(at(951_868_799)), "Tue, 29 Feb 2000 23:59:59 GMT");
        assert_eq!(http(at(951_868_800)), "Wed, 01 Mar 2000 00:00:00 GMT");
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(log(t), "2023-11-14T22:13:20.123456Z");
    }

    #[test]
    fn out_of_range_times_are_clamped() {
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(http(before), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(log(before), "1970-01-01T00:00:00.000000Z");
        for late in [at(LAST + 1), at(u64::MAX / 2)] {
            assert_eq!(http(late), "Fri, 31 Dec 9999 23:59:59 GMT");
            assert_eq!(log(late), "9999-12-31T23:59:59.999999Z");
        }
    }

    #[test]
    fn every_day_of_four_centuries_agrees_with_httpdate_and_humantime() {
        // 400 years are one whole cycle of the calendar; a different second
        // and microsecond of each day, so that every field is exercised.
        for day in 0..146_097u64 {
            let t = at(day * 86_400 + (day * 7_919) % 86_400)
                + Duration::from_micros(day * 104_729 % 1_000_000);
            assert_eq!(http(t), httpdate::fmt_http_date(t), "{t:?}");
            assert_eq!(
                log(t),
                humantime::format_rfc3339_micros(t).to_string(),
                "{t:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_time_agrees_with_httpdate_and_humantime(
            secs in 0..=LAST,
            micros in 0..1_000_000u64,
        ) {
            let t = at(secs) + Duration::from_micros(micros);
            proptest::prop_assert_eq!(http(t), httpdate::fmt_http_date(t));
            proptest::prop_assert_eq!(log(t), humantime::format_rfc3339_micros(t).to_string());
        }
    }
}

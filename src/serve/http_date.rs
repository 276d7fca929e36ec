//! `Last-Modified` values, written straight into a fixed buffer.
//!
//! Every object response carries one, and going through `httpdate`'s
//! `Display` (the formatting machinery, then a `String`) cost about 800
//! instructions of a cache hit's 24,000. The text is the same as
//! `httpdate::fmt_http_date` gives (a test holds them together); times
//! outside years 1970–9999 are clamped to those ends instead of panicking.

use std::time::{SystemTime, UNIX_EPOCH};

use hyper::header::HeaderValue;

/// 9999-12-31T23:59:59Z, the last second the four-digit year can show.
const LAST: u64 = 253_402_300_799;

/// `Sun, 06 Nov 1994 08:49:37 GMT` for `t`, as a header value.
pub fn value(t: SystemTime) -> HeaderValue {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(LAST);
    HeaderValue::from_bytes(&format(secs)).expect("the date is visible ASCII")
}

/// The IMF-fixdate of `secs` seconds after the epoch (at most [`LAST`]).
fn format(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let in_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    // 1970-01-01 was a Thursday.
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    two_digits(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTHS[month as usize - 1]);
    two_digits(&mut out[12..14], year / 100);
    two_digits(&mut out[14..16], year % 100);
    two_digits(&mut out[17..19], in_day / 3600);
    two_digits(&mut out[20..22], in_day / 60 % 60);
    two_digits(&mut out[23..25], in_day % 60);
    out
}

fn two_digits(out: &mut [u8], n: u64) {
    out[0] = b'0' + (n / 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
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

    #[test]
    fn known_dates() {
        assert_eq!(value(at(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(value(at(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        // A leap day, and the day after it.
        assert_eq!(value(at(951_782_400)), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(value(at(951_868_799)), "Tue, 29 Feb 2000 23:59:59 GMT");
        assert_eq!(value(at(951_868_800)), "Wed, 01 Mar 2000 00:00:00 GMT");
    }

    #[test]
    fn out_of_range_times_are_clamped() {
        assert_eq!(
            value(UNIX_EPOCH - Duration::from_secs(1)),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(value(at(LAST + 1)), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(value(at(u64::MAX / 2)), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn every_day_of_four_centuries_agrees_with_httpdate() {
        // 400 years are one whole cycle of the calendar; a different second
        // of each day, so that every field is exercised.
        for day in 0..146_097u64 {
            let secs = day * 86_400 + (day * 7_919) % 86_400;
            assert_eq!(
                value(at(secs)),
                httpdate::fmt_http_date(at(secs)).as_str(),
                "{secs}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_second_agrees_with_httpdate(secs in 0..=LAST) {
            let expected = httpdate::fmt_http_date(at(secs));
            proptest::prop_assert_eq!(value(at(secs)), expected.as_str());
        }
    }
}

//! The value types of the configuration file. Each parses and checks its
//! text once, while the file is deserialised, and the numeric ones carry
//! their allowed range in their type, so a key's range is written where the
//! key is declared (`Bounded<100, 3_600_000>`: 100ms to 1h).
//!
//! A field keeps its plain type (`Duration`, `u64`, `usize`) for the code
//! that reads it; the range type is named in its `deserialize_with`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

/// A duration (`90s`, `15m`, `1h`, `2h 30m`) within `MIN_MS..=MAX_MS`
/// milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounded<const MIN_MS: u64, const MAX_MS: u64>(pub Duration);

impl<const MIN_MS: u64, const MAX_MS: u64> Bounded<MIN_MS, MAX_MS> {
    pub const MIN: Duration = Duration::from_millis(MIN_MS);
    pub const MAX: Duration = Duration::from_millis(MAX_MS);

    pub fn parse(s: &str) -> Result<Duration, String> {
        let d = parse_duration(s)?;
        if !(Self::MIN..=Self::MAX).contains(&d) {
            return Err(format!(
                "{} is out of range ({} to {})",
                humantime::format_duration(d),
                humantime::format_duration(Self::MIN),
                humantime::format_duration(Self::MAX)
            ));
        }
        Ok(d)
    }

    /// For `deserialize_with` on a `Duration` field.
    pub fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }

    /// For `deserialize_with` on an `Option<Duration>` field whose absence
    /// means something (with `default`).
    pub fn de_some<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Self::de(d).map(Some)
    }
}

impl<'de, const MIN_MS: u64, const MAX_MS: u64> Deserialize<'de> for Bounded<MIN_MS, MAX_MS> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::de(d).map(Bounded)
    }
}

/// One second to one hour.
pub type Seconds = Bounded<1_000, 3_600_000>;
/// 100ms to one hour: the daemon's network timeouts.
pub type NetTimeout = Bounded<100, 3_600_000>;
/// Zero (off) to one hour.
pub type UpToHour = Bounded<0, 3_600_000>;

const DAY_MS: u64 = 24 * 3_600_000;

/// Zero (off) to a year.
pub type UpToYear = Bounded<0, { 365 * DAY_MS }>;

/// Any duration (`release.grace` has no range).
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_duration(&String::deserialize(d)?).map_err(de::Error::custom)
}

/// An integer within `MIN..=MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count<const MIN: i64, const MAX: i64>(pub i64);

impl<const MIN: i64, const MAX: i64> Count<MIN, MAX> {
    pub fn check(n: i64) -> Result<i64, String> {
        in_range(n, MIN, MAX)
    }

    /// For `deserialize_with` on a `usize` field.
    pub fn de<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        const { assert!(MIN >= 0) };
        Self::check(i64::deserialize(d)?)
            .map(|n| n as usize)
            .map_err(de::Error::custom)
    }

    /// For `deserialize_with` on a `u32` field.
    pub fn de_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        const { assert!(MIN >= 0 && MAX <= u32::MAX as i64) };
        Self::check(i64::deserialize(d)?)
            .map(|n| n as u32)
            .map_err(de::Error::custom)
    }
}

/// `n` if it is within `min..=max`; the message names the range.
pub fn in_range(n: i64, min: i64, max: i64) -> Result<i64, String> {
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} is out of range ({min} to {max})"))
    }
}

/// A size (`10GiB`, `512MiB`, `500MB`, `1048576`) within `MIN..=MAX`
/// bytes. A lower bound catches a unit left out (`1024` meant as KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize<const MIN: u64, const MAX: u64>(pub u64);

impl<const MIN: u64, const MAX: u64> ByteSize<MIN, MAX> {
    pub fn parse(s: &str) -> Result<u64, String> {
        let n = parse_size(s)?;
        if n < MIN {
            return Err(format!("{n} bytes is too small (at least {})", human(MIN)));
        }
        if MAX < u64::MAX && n > MAX {
            return Err(format!("{n} bytes is too large (under {})", human(MAX + 1)));
        }
        Ok(n)
    }

    /// For `deserialize_with` on a `u64` field.
    pub fn de<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for ByteSize<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::de(d).map(ByteSize)
    }
}

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// Any size.
pub type Bytes = ByteSize<0, { u64::MAX }>;
/// At least 1KiB.
pub type AtLeastKib = ByteSize<KIB, { u64::MAX }>;

/// `n` bytes in the largest binary unit that divides it.
fn human(n: u64) -> String {
    for (unit, name) in [(TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if n >= unit && n.is_multiple_of(unit) {
            return format!("{}{name}", n / unit);
        }
    }
    format!("{n} bytes")
}

/// Parses sizes such as `10GiB`, `512MiB`, `500MB` or a plain byte count.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || format!("`{s}` is not a size like `512MiB`, `10GiB`, `500MB` or `1048576`");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => KIB,
        "MiB" => MIB,
        "GiB" => GIB,
        "TiB" => TIB,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Parses durations such as `90s`, `15min`, `1h`, `2h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration like `30s`, `15m` or `1h`: {e}"))
}

/// A list of listen addresses, at least one.
pub fn addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    let addrs = list
        .iter()
        .map(|a| {
            a.parse().map_err(|e| {
                format!("`{a}` is not an address like `0.0.0.0:8080` or `[::1]:80`: {e}")
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(de::Error::custom)?;
    if addrs.is_empty() {
        return Err(de::Error::custom("needs at least one address"));
    }
    Ok(addrs)
}

/// A list of glob patterns, each of which compiles.
pub fn globs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    for g in &list {
        check_glob(g).map_err(de::Error::custom)?;
    }
    Ok(list)
}

pub fn check_glob(g: &str) -> Result<globset::Glob, String> {
    globset::Glob::new(g).map_err(|e| format!("`{g}` is not a glob: {e}"))
}

/// A host that URLs may point at: `host` (on its scheme's default port)
/// or `host:port`. Comparing the port too keeps another service on the
/// same machine out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// As the URL parser writes it (lowercase; IPv6 in brackets).
    pub host: String,
    /// `None`: the default port of whichever scheme the URL has.
    pub port: Option<u16>,
}

impl AllowedHost {
    pub fn parse(entry: &str) -> Result<AllowedHost, String> {
        let bad = |why: &str| format!("`{entry}` is not a host or host:port ({why})");
        if entry.is_empty()
            || entry.contains(['/', '@', '?', '#', '\\'])
            || entry.contains(char::is_whitespace)
        {
            return Err(bad("no scheme, path or user part"));
        }
        let url =
            reqwest::Url::parse(&format!("https://{entry}/")).map_err(|e| bad(&e.to_string()))?;
        let host = url.host_str().ok_or_else(|| bad("no host"))?.to_string();
        Ok(AllowedHost {
            host,
            // The parser drops an explicit 443: that is the default anyway.
            port: url.port().or(entry.ends_with(":443").then_some(443)),
        })
    }

    /// Whether `url` is on this host and port.
    pub fn allows(&self, url: &reqwest::Url) -> bool {
        url.host_str() == Some(self.host.as_str())
            && match self.port {
                None => url.port().is_none(),
                Some(p) => url.port_or_known_default() == Some(p),
            }
    }
}

impl<'de> Deserialize<'de> for AllowedHost {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        AllowedHost::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// Marks the start and end of a key inside an error message; see [`at_key`].
const KEY_MARK: char = '\u{1f}';

/// An error about the value at `key`, relative to the table being read.
///
/// For tables serde reads twice (an upstream, whose `type` decides what its
/// other keys are): the second read no longer knows where in the file it
/// is, so toml can only name the table. The error names its key itself,
/// and [`split_key`] takes it back out.
pub fn at_key<E: de::Error>(key: impl fmt::Display, reason: impl fmt::Display) -> E {
    E::custom(format_args!("{KEY_MARK}{key}{KEY_MARK}{reason}"))
}

/// The key and reason of a message made by [`at_key`].
pub fn split_key(message: &str) -> Option<(&str, &str)> {
    message.strip_prefix(KEY_MARK)?.split_once(KEY_MARK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size(" 3 GiB "), Ok(3 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        for bad in ["", "MiB", "1.5GiB", "-1", "10 parsecs", "99999999999999TiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_are_in_the_types() {
        assert_eq!(
            NetTimeout::parse("2h"),
            Err("2h is out of range (100ms to 1h)".to_string())
        );
        assert_eq!(NetTimeout::parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(
            Bounded::<10, 60_000>::parse("0s"),
            Err("0s is out of range (10ms to 1m)".to_string())
        );
        assert_eq!(
            Count::<1, 4096>::check(5000),
            Err("5000 is out of range (1 to 4096)".to_string())
        );
        assert_eq!(
            AtLeastKib::parse("512"),
            Err("512 bytes is too small (at least 1KiB)".to_string())
        );
        assert_eq!(
            ByteSize::<0, { u32::MAX as u64 }>::parse("4GiB"),
            Err("4294967296 bytes is too large (under 4GiB)".to_string())
        );
        assert_eq!(ByteSize::<MIB, { u64::MAX }>::parse("1MiB"), Ok(MIB));
    }

    #[test]
    fn allowed_hosts_compare_the_port() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        let plain = AllowedHost::parse("cdn.example").unwrap();
        assert!(plain.allows(&url("https://cdn.example/x")));
        assert!(plain.allows(&url("https://CDN.example:443/x")));
        assert!(plain.allows(&url("http://cdn.example/x")));
        assert!(!plain.allows(&url("https://cdn.example:8443/x")));
        assert!(!plain.allows(&url("https://cdn.example.evil/x")));
        assert!(!plain.allows(&url("https://evil.example/cdn.example")));
        let port = AllowedHost::parse("cdn.example:8443").unwrap();
        assert!(port.allows(&url("https://cdn.example:8443/x")));
        assert!(!port.allows(&url("https://cdn.example/x")));
        let explicit = AllowedHost::parse("cdn.example:443").unwrap();
        assert!(explicit.allows(&url("https://cdn.example/x")));
        assert!(!explicit.allows(&url("http://cdn.example/x")));
        for bad in [
            "",
            "https://cdn.example",
            "cdn.example/x",
            "u@cdn.example",
            "a b",
            "cdn.example:99999",
        ] {
            let e = AllowedHost::parse(bad).unwrap_err();
            assert!(e.contains("is not a host or host:port"), "{bad}: {e}");
        }
    }
}

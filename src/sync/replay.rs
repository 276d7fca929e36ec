//! Keeping an upstream from taking the mirror back in time.
//!
//! A signature says who wrote some metadata, not when, nor for which
//! suite: an old `InRelease` (with the holes its packages had), one of
//! another suite, or one that has expired all still verify. apt clients
//! refuse those themselves (`Valid-Until`, "Conflicting distribution"), and
//! a mirror that released one would break them, or, worse, freeze them on
//! an old archive that still verifies. So before anything is fetched:
//!
//! - apt: the signed `Release` text must name the configured suite as its
//!   `Suite` or `Codename`, must not have passed its `Valid-Until`, and its
//!   `Date` must not be older than that of the suite's `InRelease` (or
//!   `Release`) in the volume's current release;
//! - yum: `repomd.xml`'s `revision` must not be lower than the current
//!   release's.
//!
//! The previous metadata is read from the current release on the origin,
//! the state clients are being served, and never from the staging tree,
//! which a failed or refused sync may have left with anything in it.
//! `sync --allow-older` accepts older metadata (an upstream that rolled
//! back on purpose); nothing accepts an expired or foreign suite.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use quick_xml::events::Event;

use crate::digest::sha256_of_reader;
use crate::volume::VolumeDir;
use crate::volume::manifest::{Kind, Manifest};

/// The volume's current release, opened on first use (a sync that never
/// asks for it does not read the manifest).
pub struct Released {
    dir: VolumeDir,
    current: OnceLock<Result<Option<(u64, Manifest)>, String>>,
}

impl Released {
    /// The volume `dir` as released on the origin.
    pub fn new(dir: VolumeDir) -> Released {
        Released {
            dir,
            current: OnceLock::new(),
        }
    }

    fn current(&self) -> Result<Option<&(u64, Manifest)>> {
        let opened = self.current.get_or_init(|| {
            (|| -> Result<Option<(u64, Manifest)>> {
                if !self.dir.exists()? {
                    return Ok(None);
                }
                let Some(id) = self.dir.current()? else {
                    return Ok(None);
                };
                let meta = self.dir.meta(id)?;
                let manifest = self
                    .dir
                    .manifest(&meta)
                    .with_context(|| format!("reading the current release #{id}"))?;
                Ok(Some((id, manifest)))
            })()
            .map_err(|e| format!("{e:#}"))
        });
        match opened {
            Ok(c) => Ok(c.as_ref()),
            Err(e) => Err(anyhow!("{e}")),
        }
    }

    /// The release new metadata was compared with (`Some(None)`: there was
    /// none), or `None` when nothing was compared.
    pub fn judged_against(&self) -> Option<Option<u64>> {
        match self.current.get()? {
            Ok(c) => Some(c.as_ref().map(|(id, _)| *id)),
            Err(_) => None,
        }
    }

    /// The bytes of `rel` (a path in the volume) in the current release,
    /// with the release's id; `None` when there is no release or it has no
    /// such file. The object is checked against the manifest's sha256.
    pub fn file(&self, rel: &str) -> Result<Option<(u64, Vec<u8>)>> {
        let Some((id, manifest)) = self.current()? else {
            return Ok(None);
        };
        let Some(entry) = manifest.get(rel.as_bytes())? else {
            return Ok(None);
        };
        if entry.kind != Kind::File {
            return Ok(None);
        }
        let bytes = self
            .dir
            .read_object(&entry.sha256)
            .with_context(|| format!("reading {rel} of the current release #{id}"))?;
        let got = sha256_of_reader(&bytes[..])?;
        if got != entry.sha256 {
            bail!(
                "{rel} of the current release #{id}: its object has sha256 {got}, the manifest records {}",
                entry.sha256
            );
        }
        Ok(Some((*id, bytes)))
    }
}

/// What a sync compares new signed metadata with.
pub struct Freshness<'a> {
    pub released: &'a Released,
    /// `sync --allow-older`.
    pub allow_older: bool,
}

/// The top-level fields of a `Release` text that say when and for which
/// suite it was made.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReleaseFields {
    pub suite: Option<String>,
    pub codename: Option<String>,
    pub date: Option<String>,
    pub valid_until: Option<String>,
}

/// Reads the fields of a `Release` text (the signed text of `InRelease`).
pub fn release_fields(text: &str) -> ReleaseFields {
    let mut f = ReleaseFields::default();
    for line in text.lines() {
        // Continuation lines (the checksum lists) start with a space.
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = Some(value.trim().to_string());
        match key.trim() {
            "Suite" => f.suite = value,
            "Codename" => f.codename = value,
            "Date" => f.date = value,
            "Valid-Until" => f.valid_until = value,
            _ => {}
        }
    }
    f
}

/// The text of a clearsigned message, without checking its signature: for
/// an `InRelease` that was verified when it was released.
pub fn cleartext(text: &str) -> &str {
    let Some(start) = text.find("-----BEGIN PGP SIGNED MESSAGE-----") else {
        return text;
    };
    let rest = &text[start..];
    // The armor headers (`Hash: …`) end at the first empty line.
    let body = rest
        .find("\n\n")
        .map(|i| &rest[i + 2..])
        .or_else(|| rest.find("\r\n\r\n").map(|i| &rest[i + 4..]))
        .unwrap_or("");
    match body.find("-----BEGIN PGP SIGNATURE-----") {
        Some(end) => &body[..end],
        None => body,
    }
}

/// Seconds since the epoch of a `Release` date, as Debian writes them
/// (`Sat, 05 Dec 2026 10:00:00 UTC`): an optional weekday, day, month
/// name, year, time, and `UTC`, `GMT`, `Z` or a `+hhmm` offset.
pub fn parse_date(s: &str) -> Result<i64> {
    let bad = || anyhow!("`{s}` is not a date of the form `Sat, 05 Dec 2026 10:00:00 UTC`");
    let rest = match s.split_once(',') {
        Some((_, r)) => r,
        None => s,
    };
    let parts: Vec<&str> = rest.split_whitespace().collect();
    let [day, month, year, time, zone] = parts[..] else {
        return Err(bad());
    };
    // Digits only: `str::parse` would also take a sign (`+5`, `-0`).
    let number = |t: &str| -> Result<i64> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse().map_err(|_| bad())
    };
    let day = number(day)?;
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let month = MONTHS
        .iter()
        .position(|m| month.eq_ignore_ascii_case(m))
        .ok_or_else(bad)? as i64
        + 1;
    let year = number(year)?;
    let hms: Vec<i64> = time.split(':').map(number).collect::<Result<_>>()?;
    let [h, m, sec] = hms[..] else {
        return Err(bad());
    };
    if !(1..=31).contains(&day) || !(0..=23).contains(&h) || !(0..=59).contains(&m) {
        return Err(bad());
    }
    // 60 for a leap second.
    if !(0..=60).contains(&sec) || !(1970..=9999).contains(&year) {
        return Err(bad());
    }
    let offset = match zone {
        "UTC" | "GMT" | "Z" => 0,
        // `+hhmm`: four digits after the sign (`+-123` is not an offset),
        // minutes below 60.
        z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let n = number(&z[1..])?;
            if n % 100 > 59 {
                return Err(bad());
            }
            let secs = (n / 100) * 3600 + (n % 100) * 60;
            if z.starts_with('-') { -secs } else { secs }
        }
        _ => return Err(bad()),
    };
    Ok(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec - offset)
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar
/// (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Freshness<'_> {
    /// Checks the signed `Release` text of `suite` (`what` names the file
    /// it came from) before anything it lists is fetched.
    pub fn check_apt(&self, suite: &str, what: &str, signed: &str) -> Result<()> {
        check_release(
            suite,
            what,
            &release_fields(signed),
            self.previous_apt(suite)?,
            now(),
            self.allow_older,
        )
    }

    /// The fields of the suite's signed metadata in the current release,
    /// with the release's id.
    fn previous_apt(&self, suite: &str) -> Result<Option<(u64, ReleaseFields)>> {
        for (name, signed) in [("InRelease", true), ("Release", false)] {
            let rel = format!("dists/{suite}/{name}");
            if let Some((id, bytes)) = self.released.file(&rel)? {
                let text = String::from_utf8_lossy(&bytes);
                let text = if signed { cleartext(&text) } else { &text };
                return Ok(Some((id, release_fields(text))));
            }
        }
        Ok(None)
    }

    /// Checks a repository's `repomd.xml` (at `rel` in the volume) against
    /// the current release's.
    pub fn check_yum(&self, rel: &Path, repomd: &[u8]) -> Result<()> {
        let rel = rel.to_string_lossy();
        let previous = match self.released.file(&rel)? {
            Some((id, bytes)) => Some((id, repomd_revision(&bytes)?)),
            None => None,
        };
        check_revision(
            &rel,
            repomd_revision(repomd)?.as_deref(),
            previous,
            self.allow_older,
        )
    }
}

/// How far past this host's clock a `Release`'s `Date` may be.
const MAX_FUTURE_SECS: i64 = 300;

/// The rules for one suite's `Release`; `previous` is what the current
/// release has for the suite.
pub fn check_release(
    suite: &str,
    what: &str,
    new: &ReleaseFields,
    previous: Option<(u64, ReleaseFields)>,
    now: i64,
    allow_older: bool,
) -> Result<()> {
    // apt compares the suite in sources.list with both fields, and so
    // does this: Debian's `stable` is Codename `bookworm`, Ubuntu's
    // `jammy-updates` is Suite `jammy-updates`, Codename `jammy`.
    // A suite with a `/` (the Ubuntu Cloud Archive's
    // `jammy-updates/caracal`, Debian's old `buster/updates`) is named, as
    // apt takes it, by its part before the last `/`.
    let family = suite.rsplit_once('/').map(|(f, _)| f);
    let names_suite = [&new.suite, &new.codename]
        .iter()
        .any(|f| f.as_deref() == Some(suite) || (f.is_some() && f.as_deref() == family));
    if !names_suite {
        let show = |f: &Option<String>| match f {
            Some(v) => format!("`{v}`"),
            None => "none".to_string(),
        };
        bail!(
            "{what}: Suite {} and Codename {} do not name the configured suite `{suite}`; refusing the metadata of another suite",
            show(&new.suite),
            show(&new.codename)
        );
    }
    if let Some(v) = &new.valid_until {
        let until = parse_date(v).with_context(|| format!("{what}: Valid-Until"))?;
        if until < now {
            bail!(
                "{what}: Valid-Until {v} has passed; refusing expired metadata (an old copy replayed, or an upstream that stopped updating)"
            );
        }
    }
    // apt refuses a Release dated in the future ("not valid yet"; its
    // Acquire::Max-FutureTime is 10 s), and once released, a future Date
    // would make every honest later one look older. Clocks drift, so a
    // few minutes are let through.
    if let Some(date) = &new.date {
        let t = parse_date(date).with_context(|| format!("{what}: Date"))?;
        if t > now + MAX_FUTURE_SECS {
            bail!(
                "{what}: Date {date} is in the future (more than {MAX_FUTURE_SECS} s past this host's clock); refusing metadata that apt would call not valid yet (check this host's clock and the upstream's)"
            );
        }
    }
    let Some((id, previous)) = previous else {
        return Ok(());
    };
    let Some(before) = &previous.date else {
        return Ok(());
    };
    let Some(date) = &new.date else {
        bail!(
            "{what}: it has no Date, and the current release #{id} has one ({before}); refusing metadata that cannot be ordered"
        );
    };
    let (t, t_before) = (
        parse_date(date).with_context(|| format!("{what}: Date"))?,
        // A date the previous release carried but this build cannot read
        // orders nothing; it must not block every later sync.
        parse_date(before).ok(),
    );
    if let Some(t_before) = t_before
        && t < t_before
    {
        if allow_older {
            tracing::warn!(
                "{what}: Date {date} is older than the current release #{id}'s ({before}); accepted (--allow-older)"
            );
        } else {
            bail!(
                "{what}: Date {date} is older than that of the current release #{id} ({before}); refusing to go back in time (pass --allow-older if the upstream rolled back on purpose)"
            );
        }
    }
    Ok(())
}

/// The `<revision>` of a `repomd.xml`, if it has one.
pub fn repomd_revision(xml: &[u8]) -> Result<Option<String>> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut depth = 0;
    let mut inside = false;
    loop {
        match reader
            .read_event_into(&mut buf)
            .context("malformed repomd.xml")?
        {
            Event::Start(e) => {
                depth += 1;
                // Only the root's child: `<tags>` has other children.
                inside = depth == 2 && e.local_name().as_ref() == b"revision";
            }
            Event::End(_) => {
                depth -= 1;
                inside = false;
            }
            Event::Text(t) if inside => {
                let text = t.decode().context("bad text in repomd.xml")?;
                return Ok(Some(text.trim().to_string()));
            }
            Event::Eof => return Ok(None),
            _ => {}
        }
        buf.clear();
    }
}

/// The rule for a `repomd.xml` revision. createrepo_c writes the time of
/// the run (seconds since the epoch) unless told otherwise; revisions that
/// are not numbers cannot be ordered, and are let through.
pub fn check_revision(
    what: &str,
    new: Option<&str>,
    previous: Option<(u64, Option<String>)>,
    allow_older: bool,
) -> Result<()> {
    let Some((id, Some(before))) = previous else {
        return Ok(());
    };
    let Ok(before_n) = before.parse::<u64>() else {
        return Ok(());
    };
    let Some(new) = new else {
        bail!(
            "{what}: it has no revision, and the current release #{id} has revision {before}; refusing metadata that cannot be ordered"
        );
    };
    let Ok(new_n) = new.parse::<u64>() else {
        bail!(
            "{what}: revision `{new}` is not a number, and the current release #{id} has revision {before}; refusing metadata that cannot be ordered"
        );
    };
    if new_n < before_n {
        if allow_older {
            tracing::warn!(
                "{what}: revision {new} is older than the current release #{id}'s ({before}); accepted (--allow-older)"
            );
        } else {
            bail!(
                "{what}: revision {new} is older than that of the current release #{id} ({before}); refusing to go back in time (pass --allow-older if the upstream rolled back on purpose)"
            );
        }
    }
    Ok(())
}

/// Whether the `Release` body served beside an `InRelease` says what the
/// `InRelease` signed. Both are compared as OpenPGP cleartext is signed
/// (line ends as `\n`, spaces and tabs at line ends dropped, the final line
/// end optional), which is also how a detached text signature sees them.
pub fn same_release_text(release: &[u8], inrelease_signed: &str) -> bool {
    let Ok(release) = std::str::from_utf8(release) else {
        return false;
    };
    let canonical = |t: &str| {
        let mut out = String::with_capacity(t.len());
        for line in t.split('\n') {
            out += line.trim_end_matches('\r').trim_end_matches([' ', '\t']);
            out.push('\n');
        }
        out.trim_end_matches('\n').to_string()
    };
    canonical(release) == canonical(inrelease_signed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_as_archives_write_them() {
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC").unwrap(), 0);
        assert_eq!(
            parse_date("Sat, 05 Dec 2026 10:00:00 UTC").unwrap(),
            1_796_464_800
        );
        assert_eq!(
            parse_date("Sat, 5 Dec 2026 11:00:00 +0100").unwrap(),
            1_796_464_800
        );
        assert_eq!(
            parse_date("05 Dec 2026 10:00:00 GMT").unwrap(),
            1_796_464_800
        );
        assert_eq!(
            parse_date("Wed, 01 Jan 2020 00:00:00 UTC").unwrap(),
            1_577_836_800
        );
        for bad in [
            "",
            "yesterday",
            "Sat, 05 Dcm 2026 10:00:00 UTC",
            "Sat, 05 Dec 2026 10:00 UTC",
            "Sat, 05 Dec 2026 25:00:00 UTC",
            "Sat, 05 Dec 2026 10:00:00 CET",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    /// Found by the `replay` fuzz target: `str::parse` takes a sign, so an
    /// offset of `+-123` (and a day of `+5`) passed as numbers.
    #[test]
    fn signs_inside_a_date_are_refused() {
        let found = include_str!("../../tests/fixtures/fuzz/replay-zone-with-two-signs");
        let date = release_fields(found).date.unwrap();
        assert!(parse_date(&date).is_err(), "{date}");
        for bad in [
            "Sat, 05 Dec 2026 10:00:00 ++123",
            "Sat, 05 Dec 2026 10:00:00 -+100",
            "Sat, 05 Dec 2026 10:00:00 +0160",
            "Sat, +5 Dec 2026 10:00:00 UTC",
            "Sat, 05 Dec +2026 10:00:00 UTC",
            "Sat, 05 Dec 2026 +1:00:-0 UTC",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_date("Sat, 05 Dec 2026 04:30:00 -0530").unwrap(),
            1_796_464_800
        );
    }

    fn fields(suite: &str, codename: &str, date: &str, until: Option<&str>) -> ReleaseFields {
        ReleaseFields {
            suite: Some(suite.into()),
            codename: Some(codename.into()),
            date: Some(date.into()),
            valid_until: until.map(str::to_string),
        }
    }

    #[test]
    fn release_rules() {
        let now = parse_date("Fri, 04 Dec 2026 12:00:00 UTC").unwrap();
        let new = fields("stable", "bookworm", "Fri, 04 Dec 2026 08:00:00 UTC", None);
        let check = |suite, new: &ReleaseFields, prev: Option<ReleaseFields>, allow| {
            check_release(suite, "InRelease", new, prev.map(|p| (7, p)), now, allow)
                .map_err(|e| format!("{e:#}"))
        };
        // By Suite or by Codename.
        assert!(check("stable", &new, None, false).is_ok());
        assert!(check("bookworm", &new, None, false).is_ok());
        // A suite with a `/` by its family, as apt takes it (the Ubuntu
        // Cloud Archive's jammy-updates/caracal, Debian's buster/updates).
        assert!(check("stable/updates", &new, None, false).is_ok());
        assert!(check("bookworm/extra/x", &new, None, false).is_err());
        assert!(check("trixie/updates", &new, None, false).is_err());
        let e = check("trixie", &new, None, false).unwrap_err();
        assert!(
            e.contains("`stable`") && e.contains("`bookworm`") && e.contains("`trixie`"),
            "{e}"
        );
        // Expired.
        let expired = fields(
            "stable",
            "bookworm",
            "Fri, 04 Dec 2026 08:00:00 UTC",
            Some("Wed, 01 Jan 2020 00:00:00 UTC"),
        );
        let e = check("stable", &expired, None, true).unwrap_err();
        assert!(e.contains("Valid-Until Wed, 01 Jan 2020"), "{e}");
        let valid = fields(
            "stable",
            "bookworm",
            "Fri, 04 Dec 2026 08:00:00 UTC",
            Some("Fri, 11 Dec 2026 08:00:00 UTC"),
        );
        assert!(check("stable", &valid, None, false).is_ok());
        // Older than the current release's, the same, newer.
        let later = fields("stable", "bookworm", "Fri, 04 Dec 2026 09:00:00 UTC", None);
        let e = check("stable", &new, Some(later), false).unwrap_err();
        assert!(e.contains("older") && e.contains("#7") && e.contains("--allow-older"));
        let later = fields("stable", "bookworm", "Fri, 04 Dec 2026 09:00:00 UTC", None);
        assert!(check("stable", &new, Some(later), true).is_ok());
        let same = fields("stable", "bookworm", "Fri, 04 Dec 2026 08:00:00 UTC", None);
        assert!(check("stable", &new, Some(same), false).is_ok());
        let earlier = fields("stable", "bookworm", "Thu, 03 Dec 2026 08:00:00 UTC", None);
        assert!(check("stable", &new, Some(earlier), false).is_ok());
        // Dated in the future: a few minutes of drift pass, more does not.
        let drift = fields("stable", "bookworm", "Fri, 04 Dec 2026 12:04:00 UTC", None);
        assert!(check("stable", &drift, None, false).is_ok());
        let future = fields("stable", "bookworm", "Fri, 04 Dec 2026 13:00:00 UTC", None);
        let e = check("stable", &future, None, true).unwrap_err();
        assert!(e.contains("in the future"), "{e}");
    }

    #[test]
    fn fields_of_a_clearsigned_release() {
        let text = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\nSuite: stable\nCodename: bookworm\nDate: Sat, 05 Dec 2026 10:00:00 UTC\nValid-Until: Sat, 12 Dec 2026 10:00:00 UTC\nSHA256:\n 00 1 main/Date: x\n-----BEGIN PGP SIGNATURE-----\n\nabc=\n-----END PGP SIGNATURE-----\n";
        let f = release_fields(cleartext(text));
        assert_eq!(
            f,
            fields(
                "stable",
                "bookworm",
                "Sat, 05 Dec 2026 10:00:00 UTC",
                Some("Sat, 12 Dec 2026 10:00:00 UTC")
            )
        );
    }

    #[test]
    fn revisions() {
        let xml = |r: &str| {
            format!(
                "<?xml version=\"1.0\"?><repomd xmlns=\"http://linux.duke.edu/metadata/repo\"><revision>{r}</revision><tags><revision>9</revision></tags></repomd>"
            )
        };
        assert_eq!(
            repomd_revision(xml("2000").as_bytes()).unwrap().as_deref(),
            Some("2000")
        );
        assert_eq!(repomd_revision(b"<repomd/>").unwrap(), None);
        let prev = |r: &str| Some((3, Some(r.to_string())));
        assert!(check_revision("repomd.xml", Some("2000"), prev("2000"), false).is_ok());
        assert!(check_revision("repomd.xml", Some("2001"), prev("2000"), false).is_ok());
        let e = check_revision("repomd.xml", Some("1000"), prev("2000"), false).unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("revision 1000") && e.contains("#3 (2000)"),
            "{e}"
        );
        assert!(check_revision("repomd.xml", Some("1000"), prev("2000"), true).is_ok());
        assert!(check_revision("repomd.xml", None, prev("2000"), false).is_err());
        assert!(check_revision("repomd.xml", Some("x"), prev("y"), false).is_ok());
        assert!(check_revision("repomd.xml", Some("1"), None, false).is_ok());
    }

    #[test]
    fn release_bodies_compared_as_signed() {
        let signed = "Origin: x\r\nSuite: stable\r\nSHA256:\r\n 00 1 a";
        assert!(same_release_text(
            b"Origin: x\nSuite: stable  \nSHA256:\n 00 1 a\n",
            signed
        ));
        assert!(!same_release_text(b"GARBAGE\n", signed));
        assert!(!same_release_text(
            b"Origin: x\nSuite: testing\nSHA256:\n 00 1 a\n",
            signed
        ));
    }
}

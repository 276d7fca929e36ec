//! The configuration file, shared by `unimirror` and `unimirror-update`.
//!
//! Parsing is strict: an unknown key, a wrong type or a bad value stops the
//! program at start with the file, the key and the reason, because a typo in
//! a mirror's config otherwise shows up weeks later as a silently ignored
//! setting. Relative paths are taken relative to the config file, so a
//! config and the trees it names can move together.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A configuration problem: which file, which key, and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key path (`volumes.pypi.prefix`), or `(file)` when the problem
    /// is the file itself.
    pub key: String,
    pub reason: String,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// Root of the origin: one directory per released volume.
    pub origin: PathBuf,
    /// Root of the updater's staging trees: one directory per volume.
    pub staging: PathBuf,
    pub release: ReleaseSettings,
    pub daemon: DaemonSettings,
    /// Volumes by name, in name order.
    pub volumes: BTreeMap<String, VolumeConfig>,
}

/// How releases are kept.
#[derive(Debug, Clone)]
pub struct ReleaseSettings {
    /// How many releases `gc` keeps besides those it must always keep.
    pub retain: usize,
    /// A release that was current less than this long ago is never
    /// collected, and daemons still answer from it.
    pub grace: Duration,
}

/// Settings of `unimirror serve`.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Addresses to listen on.
    pub listen: Vec<std::net::SocketAddr>,
    /// How often each released volume's pointer is checked for a new release.
    pub poll_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct VolumeConfig {
    pub name: String,
    /// URL prefix, starting with `/` and without a trailing slash.
    pub prefix: String,
    pub source: VolumeSource,
    pub upstream: Option<Upstream>,
}

/// Where a volume's files come from when it is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// Content-addressed releases under `<origin>/<name>/`.
    Released,
    /// A plain directory tree, served as it is.
    Tree(PathBuf),
}

/// What `unimirror-update sync` fetches a volume from.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Upstream {
    /// A PyPI-style simple index.
    Pypi {
        url: String,
        #[serde(default)]
        projects: Vec<String>,
        #[serde(default)]
        requirements: Vec<PathBuf>,
    },
    /// A directory of built wheels to import.
    Wheel { directory: PathBuf },
    /// An apt archive.
    Apt {
        url: String,
        suites: Vec<String>,
        components: Vec<String>,
        architectures: Vec<String>,
        keyring: PathBuf,
    },
    /// A yum repository.
    Yum {
        urls: Vec<String>,
        #[serde(default)]
        key: Option<PathBuf>,
    },
}

// ---------------------------------------------------------------------------
// The file as written, before validation.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    origin: PathBuf,
    staging: PathBuf,
    #[serde(default)]
    release: RawRelease,
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    volumes: BTreeMap<String, RawVolume>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRelease {
    retain: Option<i64>,
    grace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    listen: Option<Vec<String>>,
    poll_interval: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVolume {
    prefix: Option<String>,
    tree: Option<PathBuf>,
    upstream: Option<Upstream>,
}

pub const DEFAULT_RETAIN: usize = 5;
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// URL paths the daemon answers itself; no volume may take them.
const RESERVED_PREFIXES: &[&str] = &["/metrics", "/healthz", "/readyz"];

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            key: "(file)".into(),
            reason: format!("cannot read: {e}"),
        })?;
        Config::parse(file, &text)
    }

    /// Validates configuration text; `file` names it in errors and anchors
    /// relative paths.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let err = |key: &str, reason: String| ConfigError {
            file: file.to_path_buf(),
            key: key.to_string(),
            reason,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(file, text, e))?;
        let file_abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        let base = file_abs.parent().unwrap_or(Path::new("/"));
        let resolve = |p: &Path| -> PathBuf {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };

        let retain = match raw.release.retain {
            None => DEFAULT_RETAIN,
            Some(n) if (1..=10_000).contains(&n) => n as usize,
            Some(n) => {
                return Err(err(
                    "release.retain",
                    format!("{n} is out of range (1 to 10000)"),
                ));
            }
        };
        let grace = match raw.release.grace {
            None => DEFAULT_GRACE,
            Some(s) => parse_duration(&s).map_err(|reason| err("release.grace", reason))?,
        };

        let listen = raw
            .daemon
            .listen
            .unwrap_or_else(|| vec![DEFAULT_LISTEN.to_string()])
            .iter()
            .map(|a| {
                a.parse().map_err(|e| {
                    err(
                        "daemon.listen",
                        format!("`{a}` is not an address like `0.0.0.0:8080` or `[::1]:80`: {e}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if listen.is_empty() {
            return Err(err("daemon.listen", "needs at least one address".into()));
        }
        let poll_interval = match raw.daemon.poll_interval {
            None => DEFAULT_POLL_INTERVAL,
            Some(s) => parse_duration(&s).map_err(|r| err("daemon.poll_interval", r))?,
        };
        if poll_interval.is_zero() || poll_interval > Duration::from_secs(60) {
            return Err(err(
                "daemon.poll_interval",
                "must be more than 0 and at most 60s".into(),
            ));
        }

        let mut volumes = BTreeMap::new();
        let mut prefixes: Vec<(String, String)> = Vec::new();
        for (name, v) in raw.volumes {
            let key = |k: &str| format!("volumes.{name}.{k}");
            check_volume_name(&name).map_err(|reason| err(&format!("volumes.{name}"), reason))?;
            let prefix = v.prefix.unwrap_or_else(|| format!("/{name}"));
            check_prefix(&prefix).map_err(|reason| err(&key("prefix"), reason))?;
            for (other, other_prefix) in &prefixes {
                if overlaps(&prefix, other_prefix) {
                    return Err(err(
                        &key("prefix"),
                        format!("`{prefix}` overlaps `{other_prefix}` of volume `{other}`"),
                    ));
                }
            }
            prefixes.push((name.clone(), prefix.clone()));
            let source = match v.tree {
                Some(t) => VolumeSource::Tree(resolve(&t)),
                None => VolumeSource::Released,
            };
            let upstream = v.upstream.map(|u| resolve_upstream(u, &resolve));
            volumes.insert(
                name.clone(),
                VolumeConfig {
                    name,
                    prefix,
                    source,
                    upstream,
                },
            );
        }

        Ok(Config {
            file: file.to_path_buf(),
            origin: resolve(&raw.origin),
            staging: resolve(&raw.staging),
            release: ReleaseSettings { retain, grace },
            daemon: DaemonSettings {
                listen,
                poll_interval,
            },
            volumes,
        })
    }

    /// The volume called `name`, or an error listing the known ones.
    pub fn volume(&self, name: &str) -> anyhow::Result<&VolumeConfig> {
        self.volumes.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.volumes.keys().map(String::as_str).collect();
            anyhow::anyhow!(
                "unknown volume `{name}` (configured in {}: {})",
                self.file.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })
    }
}

fn resolve_upstream(u: Upstream, resolve: &dyn Fn(&Path) -> PathBuf) -> Upstream {
    match u {
        Upstream::Pypi {
            url,
            projects,
            requirements,
        } => Upstream::Pypi {
            url,
            projects,
            requirements: requirements.iter().map(|p| resolve(p)).collect(),
        },
        Upstream::Wheel { directory } => Upstream::Wheel {
            directory: resolve(&directory),
        },
        Upstream::Apt {
            url,
            suites,
            components,
            architectures,
            keyring,
        } => Upstream::Apt {
            url,
            suites,
            components,
            architectures,
            keyring: resolve(&keyring),
        },
        Upstream::Yum { urls, key } => Upstream::Yum {
            urls,
            key: key.map(|k| resolve(&k)),
        },
    }
}

/// Turns toml's error (which knows the line and, for unknown fields, the
/// table) into ours, with the dotted key where it can be found.
fn toml_error(file: &Path, text: &str, e: toml::de::Error) -> ConfigError {
    let key = e
        .span()
        .map(|span| key_at(text, span.start))
        .unwrap_or_else(|| "(file)".into());
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
        .map(|l| format!(" (line {l})"))
        .unwrap_or_default();
    ConfigError {
        file: file.to_path_buf(),
        key,
        reason: format!("{}{line}", e.message().trim_end()),
    }
}

/// Best effort: the dotted key that the byte offset `at` falls in, from the
/// last `[table]` header before it and the key on its line.
fn key_at(text: &str, at: usize) -> String {
    let at = at.min(text.len());
    let before = &text[..at];
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = text[line_start..]
        .find('\n')
        .map(|i| line_start + i)
        .unwrap_or(text.len());
    let line = text[line_start..line_end].trim();
    let mut table = String::new();
    for l in before[..line_start].lines() {
        let l = l.trim();
        if l.starts_with('[') {
            table = l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
    }
    if line.starts_with('[') {
        return line
            .trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_string();
    }
    let k = line.split('=').next().unwrap_or("").trim();
    match (table.is_empty(), k.is_empty()) {
        (true, true) => "(file)".into(),
        (true, false) => k.to_string(),
        (false, true) => table,
        (false, false) => format!("{table}.{k}"),
    }
}

fn check_volume_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "volume name `{name}` must be 1-64 characters of a-z, 0-9, '-', '_' or '.', starting with a letter or digit"
        ))
    }
}

fn check_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err(format!("`{prefix}` must start with '/'"));
    }
    if prefix == "/" {
        return Err("`/` is the volume list; give each volume its own prefix".into());
    }
    if prefix.ends_with('/') {
        return Err(format!("`{prefix}` must not end with '/'"));
    }
    for seg in prefix[1..].split('/') {
        let ok = !seg.is_empty()
            && seg != "."
            && seg != ".."
            && !seg.starts_with('@')
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
        if !ok {
            return Err(format!(
                "`{prefix}`: segment `{seg}` must be non-empty letters, digits, '-', '_', '.' or '~', not start with '@', and not be . or .."
            ));
        }
    }
    if let Some(r) = RESERVED_PREFIXES.iter().find(|r| overlaps(prefix, r)) {
        return Err(format!("`{prefix}` collides with the daemon's own `{r}`"));
    }
    Ok(())
}

/// Two prefixes overlap when one is the other or a path-segment prefix of it.
fn overlaps(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    long == short || (long.starts_with(short) && long.as_bytes()[short.len()] == b'/')
}

/// Parses durations such as `90s`, `15min`, `1h`, `2h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration like `30s`, `15m` or `1h`: {e}"))
}

impl fmt::Display for VolumeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VolumeSource::Released => f.write_str("released"),
            VolumeSource::Tree(p) => write!(f, "tree {}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/unimirror/test.toml"), text)
    }

    const MINIMAL: &str = "origin = \"/srv/origin\"\nstaging = \"stage\"\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.origin, Path::new("/srv/origin"));
        assert_eq!(c.staging, Path::new("/etc/unimirror/stage"));
        assert_eq!(c.release.retain, DEFAULT_RETAIN);
        assert_eq!(c.release.grace, DEFAULT_GRACE);
        assert!(c.volumes.is_empty());
    }

    #[test]
    fn volume_prefix_defaults_to_name() {
        let c = parse(&format!("{MINIMAL}[volumes.pypi]\n")).unwrap();
        assert_eq!(c.volumes["pypi"].prefix, "/pypi");
        assert_eq!(c.volumes["pypi"].source, VolumeSource::Released);
    }

    #[test]
    fn unknown_key_names_table_and_key() {
        let e = parse(&format!("{MINIMAL}[volumes.pypi]\nprefx = \"/p\"\n")).unwrap_err();
        assert_eq!(e.key, "volumes.pypi.prefx");
        assert!(e.reason.contains("unknown field"), "{e}");
        assert!(e.reason.ends_with("(line 4)"), "{e}");
        assert!(e.to_string().starts_with("/etc/unimirror/test.toml: "));
    }

    #[test]
    fn unknown_top_level_key() {
        let e = parse(&format!("{MINIMAL}orign = \"/x\"\n")).unwrap_err();
        assert_eq!(e.key, "orign");
    }

    #[test]
    fn missing_required_key() {
        let e = parse("staging = \"/s\"\n").unwrap_err();
        assert!(e.reason.contains("origin"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        for (text, key) in [
            ("[volumes.pypi]\nprefix = \"pypi\"\n", "volumes.pypi.prefix"),
            (
                "[volumes.pypi]\nprefix = \"/pypi/\"\n",
                "volumes.pypi.prefix",
            ),
            (
                "[volumes.pypi]\nprefix = \"/metrics\"\n",
                "volumes.pypi.prefix",
            ),
            (
                "[volumes.pypi]\nprefix = \"/a/../b\"\n",
                "volumes.pypi.prefix",
            ),
            ("[volumes.pypi]\nprefix = \"/@1\"\n", "volumes.pypi.prefix"),
            ("[volumes.Bad]\n", "volumes.Bad"),
            ("[release]\nretain = 0\n", "release.retain"),
            ("[release]\ngrace = \"soon\"\n", "release.grace"),
            ("[daemon]\nlisten = [\"localhost\"]\n", "daemon.listen"),
            ("[daemon]\nlisten = []\n", "daemon.listen"),
            ("[daemon]\npoll_interval = \"0s\"\n", "daemon.poll_interval"),
            (
                "[volumes.a]\nprefix = \"/x\"\n[volumes.b]\nprefix = \"/x/y\"\n",
                "volumes.b.prefix",
            ),
        ] {
            let e = parse(&format!("{MINIMAL}{text}")).unwrap_err();
            assert_eq!(e.key, key, "for {text:?}: {e}");
        }
    }

    #[test]
    fn wrong_type_is_reported_with_key() {
        let e = parse(&format!("{MINIMAL}[release]\nretain = \"five\"\n")).unwrap_err();
        assert_eq!(e.key, "release.retain");
    }

    #[test]
    fn upstream_variants_parse_and_resolve_paths() {
        let c = parse(&format!(
            "{MINIMAL}[volumes.ubuntu.upstream]\ntype = \"apt\"\nurl = \"https://archive.example/ubuntu\"\n\
             suites = [\"jammy\"]\ncomponents = [\"main\"]\narchitectures = [\"amd64\"]\nkeyring = \"keys/ubuntu.gpg\"\n"
        ))
        .unwrap();
        match c.volumes["ubuntu"].upstream.as_ref().unwrap() {
            Upstream::Apt { keyring, .. } => {
                assert_eq!(keyring, Path::new("/etc/unimirror/keys/ubuntu.gpg"))
            }
            other => panic!("wrong upstream {other:?}"),
        }
        let e = parse(&format!(
            "{MINIMAL}[volumes.x.upstream]\ntype = \"ftp\"\nurl = \"x\"\n"
        ))
        .unwrap_err();
        assert!(e.key.starts_with("volumes.x.upstream"), "{e}");
    }

    #[test]
    fn tree_volume() {
        let c = parse(&format!(
            "{MINIMAL}[volumes.centos]\ntree = \"/afs/centos\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.volumes["centos"].source,
            VolumeSource::Tree("/afs/centos".into())
        );
    }

    #[test]
    fn overlapping_prefixes() {
        assert!(overlaps("/a", "/a"));
        assert!(overlaps("/a", "/a/b"));
        assert!(!overlaps("/a", "/ab"));
        assert!(!overlaps("/ab", "/a"));
    }
}

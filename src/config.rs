//! The configuration file, shared by `unimirror` and `unimirror-update`.
//!
//! Parsing is strict: an unknown key, a wrong type or a bad value stops the
//! program at start with the file, the key and the reason, because a typo in
//! a mirror's config otherwise shows up weeks later as a silently ignored
//! setting. Relative paths are taken relative to the config file, so a
//! config and the trees it names can move together.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
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
    pub cache: CacheSettings,
    pub freshness: FreshnessSettings,
    pub sync: SyncSettings,
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
    /// HTTPS listeners, if any.
    pub tls: Option<TlsSettings>,
    /// How often each released volume's pointer is checked for a new release.
    pub poll_interval: Duration,
    /// Log lines as text or as JSON objects.
    pub log_format: LogFormat,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Connections served at once from one client address (at most
    /// `max_connections`); more are closed as soon as they are accepted.
    pub max_connections_per_ip: usize,
    /// Time a new connection has to send its first byte (a TLS
    /// ClientHello, a request line or the HTTP/2 preface).
    pub first_byte_timeout: Duration,
    /// Time a client has to send a request's headers (and how long an idle
    /// keep-alive connection stays open).
    pub header_read_timeout: Duration,
    /// How often an HTTP/2 connection that sent nothing is pinged.
    pub http2_keep_alive_interval: Duration,
    /// An HTTP/2 ping not answered within this ends the connection.
    pub http2_keep_alive_timeout: Duration,
    /// An HTTP/2 connection with no open stream for this long is closed.
    pub http2_idle_timeout: Duration,
    /// A response write that makes no progress for this long ends the
    /// connection, so a stalled client cannot hold it forever.
    pub write_timeout: Duration,
    /// Longest request target accepted, in bytes (414 beyond it).
    pub max_url_length: usize,
    /// On SIGTERM, how long in-flight requests get to finish.
    pub drain_timeout: Duration,
    /// An origin read that makes no progress for this long fails the fill.
    pub origin_timeout: Duration,
}

/// TLS listeners and their certificate.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub listen: Vec<std::net::SocketAddr>,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    pub handshake_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The daemon's local cache.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// The disk tier's directory (a cacache layout).
    pub dir: PathBuf,
    /// Budget of the disk tier, in bytes.
    pub disk_size: u64,
    /// Budget of the memory tier, in bytes (0 turns it off).
    pub memory_size: u64,
    /// Largest object kept in the memory tier.
    pub memory_max_object: u64,
    /// Pause between two background passes that re-verify every disk entry
    /// (0 turns the scrub off).
    pub scrub_interval: Duration,
    /// Bytes per second the scrub reads at most.
    pub scrub_rate: u64,
    /// Disk entries whose descriptors are kept open (0 keeps none): a hit
    /// on one is a single `pread`, without opening the file again.
    pub open_files: usize,
    /// Origin reads into the cache (fills) in flight at once; more wait
    /// for a free one.
    pub max_fills: usize,
}

/// How `unimirror-update sync` downloads.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Downloads in flight at once.
    pub concurrency: usize,
    /// Further attempts after a failed download (with backoff).
    pub retries: u32,
    /// A download making no progress for this long fails (and is retried).
    pub timeout: Duration,
    /// Plain-HTTP upstreams are refused unless this is set.
    pub allow_http: bool,
    /// Hosts a redirect may lead to besides the scheme, host and port the
    /// request was made to.
    pub allow_redirect_hosts: Vec<AllowedHost>,
    /// A download whose index gives no size is cut off past this many bytes.
    pub max_download_size: u64,
    /// Metadata held in memory (signed files, index pages) and metadata
    /// decompressed for parsing is refused past this many bytes.
    pub max_metadata_size: u64,
    /// One download attempt (headers and body) that has not finished after
    /// this long fails, however steadily the bytes trickle in.
    pub download_deadline: Duration,
    /// Where to write `<volume>.prom` for node_exporter's textfile
    /// collector after each sync, if anywhere.
    pub metrics_dir: Option<PathBuf>,
}

/// How long plain-tree files are trusted without a new `stat`.
#[derive(Debug, Clone)]
pub struct FreshnessSettings {
    /// Glob patterns (relative to the volume root) of files that never
    /// change under their name: cached until evicted.
    pub immutable: Vec<String>,
    /// Everything else is checked by `stat` at most this often.
    pub revalidate_after: Duration,
    /// While the tree cannot be read at all (unmounted, gone), what was
    /// last seen of it is served for this long past `revalidate_after`,
    /// marked stale; zero turns this off.
    pub stale_if_unreachable: Duration,
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
        /// PEP 440 specifiers per project (`requests = ">=2.30,<3"`).
        #[serde(default)]
        versions: BTreeMap<String, String>,
        /// Keep only the newest N versions of each project.
        #[serde(default)]
        latest: Option<usize>,
        /// Wheel platform tags to keep (globs such as `manylinux*_x86_64`);
        /// pure-Python wheels and sdists are always kept. Empty: all.
        #[serde(default)]
        platforms: Vec<String>,
        /// Skip files larger than this, when the upstream gives sizes.
        #[serde(default)]
        max_file_size: Option<String>,
        /// Hosts (`host` or `host:port`) the project pages may link files
        /// on besides the index's own (PyPI's file host is implied for
        /// pypi.org).
        #[serde(default)]
        allow_file_hosts: Vec<String>,
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
        /// Also mirror source packages (`Sources` and the files they name).
        #[serde(default)]
        sources: bool,
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
    cache: RawCache,
    #[serde(default)]
    freshness: RawFreshness,
    #[serde(default)]
    sync: RawSync,
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
    log_format: Option<String>,
    max_connections: Option<i64>,
    max_connections_per_ip: Option<i64>,
    first_byte_timeout: Option<String>,
    header_read_timeout: Option<String>,
    http2_keep_alive_interval: Option<String>,
    http2_keep_alive_timeout: Option<String>,
    http2_idle_timeout: Option<String>,
    write_timeout: Option<String>,
    max_url_length: Option<i64>,
    drain_timeout: Option<String>,
    origin_timeout: Option<String>,
    tls: Option<RawTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    listen: Vec<String>,
    cert: PathBuf,
    key: PathBuf,
    handshake_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCache {
    dir: Option<PathBuf>,
    disk_size: Option<String>,
    memory_size: Option<String>,
    memory_max_object: Option<String>,
    scrub_interval: Option<String>,
    scrub_rate: Option<String>,
    open_files: Option<i64>,
    max_fills: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSync {
    concurrency: Option<i64>,
    retries: Option<i64>,
    timeout: Option<String>,
    allow_http: Option<bool>,
    allow_redirect_hosts: Option<Vec<String>>,
    max_download_size: Option<String>,
    max_metadata_size: Option<String>,
    download_deadline: Option<String>,
    metrics_dir: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFreshness {
    immutable: Option<Vec<String>>,
    revalidate_after: Option<String>,
    stale_if_unreachable: Option<String>,
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
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/unimirror";
/// Enough for the hot set of a busy index (nginx's open_file_cache is
/// usually sized alike); the daemon raises its descriptor limit for them.
pub const DEFAULT_OPEN_FILES: usize = 16384;
/// One host may hold a tenth of the default connection limit: a build
/// node needs a handful, a NAT gateway in front of many of them more.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1000;
/// Each fill holds a 1 MiB read buffer, so this keeps fills under 32 MiB
/// of memory; it is also as many concurrent reads as a busy network
/// filesystem gives its best throughput at.
pub const DEFAULT_MAX_FILLS: usize = 32;
/// Plain-tree files that never change under their name.
pub const DEFAULT_IMMUTABLE: &[&str] = &[
    "**/*.whl",
    "**/packages/**/*.tar.gz",
    "**/*.deb",
    "**/*.udeb",
    "**/*.rpm",
    "**/by-hash/**",
];

/// Above the largest files PyPI hosts (CUDA wheels of a few GiB); apt and
/// yum indexes give every package's size, so this bounds only what comes
/// without one.
pub const DEFAULT_MAX_DOWNLOAD_SIZE: u64 = 8 << 30;
/// About four times the largest metadata known upstream (a Fedora
/// `primary.xml` decompresses to a few hundred MiB), and far below what a
/// compression bomb expands to.
pub const DEFAULT_MAX_METADATA_SIZE: u64 = 1 << 30;
/// Enough for a file of `DEFAULT_MAX_DOWNLOAD_SIZE` at about 2.3 MB/s.
pub const DEFAULT_DOWNLOAD_DEADLINE: Duration = Duration::from_secs(3600);

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

        let daemon = daemon_settings(raw.daemon, &err, &resolve)?;
        let cache = cache_settings(raw.cache, &err, &resolve)?;
        let freshness = freshness_settings(raw.freshness, &err)?;
        let sync = SyncSettings {
            concurrency: count(raw.sync.concurrency, "sync.concurrency", 8, 1..=256, &err)?,
            retries: count(raw.sync.retries, "sync.retries", 3, 0..=20, &err)? as u32,
            timeout: duration(
                raw.sync.timeout,
                "sync.timeout",
                Duration::from_secs(60),
                Duration::from_secs(1)..=Duration::from_secs(3600),
                &err,
            )?,
            allow_http: raw.sync.allow_http.unwrap_or(false),
            allow_redirect_hosts: raw
                .sync
                .allow_redirect_hosts
                .unwrap_or_default()
                .iter()
                .map(|h| AllowedHost::parse(h))
                .collect::<Result<_, _>>()
                .map_err(|r| err("sync.allow_redirect_hosts", r))?,
            max_download_size: at_least_1kib(
                raw.sync.max_download_size,
                "sync.max_download_size",
                DEFAULT_MAX_DOWNLOAD_SIZE,
                &err,
            )?,
            max_metadata_size: at_least_1kib(
                raw.sync.max_metadata_size,
                "sync.max_metadata_size",
                DEFAULT_MAX_METADATA_SIZE,
                &err,
            )?,
            download_deadline: duration(
                raw.sync.download_deadline,
                "sync.download_deadline",
                DEFAULT_DOWNLOAD_DEADLINE,
                Duration::from_secs(1)..=Duration::from_secs(7 * 24 * 3600),
                &err,
            )?,
            metrics_dir: raw.sync.metrics_dir.as_deref().map(resolve),
        };

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
            if let Some(u) = &upstream {
                check_upstream(u)
                    .map_err(|(k, reason)| err(&key(&format!("upstream.{k}")), reason))?;
            }
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
            daemon,
            cache,
            freshness,
            sync,
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

type ErrFn<'a> = dyn Fn(&str, String) -> ConfigError + 'a;

fn addresses(list: &[String], key: &str, err: &ErrFn) -> Result<Vec<SocketAddr>, ConfigError> {
    let addrs = list
        .iter()
        .map(|a| {
            a.parse().map_err(|e| {
                err(
                    key,
                    format!("`{a}` is not an address like `0.0.0.0:8080` or `[::1]:80`: {e}"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(err(key, "needs at least one address".into()));
    }
    Ok(addrs)
}

/// A duration key: its default when absent, and its allowed range.
fn duration(
    value: Option<String>,
    key: &str,
    default: Duration,
    range: std::ops::RangeInclusive<Duration>,
    err: &ErrFn,
) -> Result<Duration, ConfigError> {
    let d = match value {
        None => return Ok(default),
        Some(s) => parse_duration(&s).map_err(|r| err(key, r))?,
    };
    if !range.contains(&d) {
        return Err(err(
            key,
            format!(
                "{} is out of range ({} to {})",
                humantime::format_duration(d),
                humantime::format_duration(*range.start()),
                humantime::format_duration(*range.end())
            ),
        ));
    }
    Ok(d)
}

fn count(
    value: Option<i64>,
    key: &str,
    default: usize,
    range: std::ops::RangeInclusive<i64>,
    err: &ErrFn,
) -> Result<usize, ConfigError> {
    match value {
        None => Ok(default),
        Some(n) if range.contains(&n) => Ok(n as usize),
        Some(n) => Err(err(
            key,
            format!("{n} is out of range ({} to {})", range.start(), range.end()),
        )),
    }
}

fn size(value: Option<String>, key: &str, default: u64, err: &ErrFn) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(s) => parse_size(&s).map_err(|r| err(key, r)),
    }
}

/// A size key that must be at least 1 KiB: a smaller bound is a typo
/// (`1024` meant as KiB), and would refuse every file.
fn at_least_1kib(
    value: Option<String>,
    key: &str,
    default: u64,
    err: &ErrFn,
) -> Result<u64, ConfigError> {
    let n = size(value, key, default, err)?;
    if n < 1024 {
        return Err(err(key, format!("{n} bytes is too small (at least 1KiB)")));
    }
    Ok(n)
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

fn daemon_settings(
    raw: RawDaemon,
    err: &ErrFn,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<DaemonSettings, ConfigError> {
    let secs = Duration::from_secs;
    let listen = addresses(
        &raw.listen
            .unwrap_or_else(|| vec![DEFAULT_LISTEN.to_string()]),
        "daemon.listen",
        err,
    )?;
    let tls = match raw.tls {
        None => None,
        Some(t) => Some(TlsSettings {
            listen: addresses(&t.listen, "daemon.tls.listen", err)?,
            cert: resolve(&t.cert),
            key: resolve(&t.key),
            handshake_timeout: duration(
                t.handshake_timeout,
                "daemon.tls.handshake_timeout",
                secs(10),
                Duration::from_millis(100)..=secs(300),
                err,
            )?,
        }),
    };
    let log_format = match raw.log_format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(err(
                "daemon.log_format",
                format!("`{other}` is not `text` or `json`"),
            ));
        }
    };
    let max_connections = count(
        raw.max_connections,
        "daemon.max_connections",
        10_000,
        1..=1_000_000,
        err,
    )?;
    let max_connections_per_ip = match raw.max_connections_per_ip {
        // The default never exceeds a smaller `max_connections`.
        None => DEFAULT_MAX_CONNECTIONS_PER_IP.min(max_connections),
        Some(n) => count(
            Some(n),
            "daemon.max_connections_per_ip",
            0,
            1..=max_connections as i64,
            err,
        )
        .map_err(|e| ConfigError {
            reason: format!("{} (it cannot exceed daemon.max_connections)", e.reason),
            ..e
        })?,
    };
    // Both default to it: a connection gets as long for its first byte,
    // and an HTTP/2 connection as long between streams, as an HTTP/1
    // client gets for its next request head.
    let header_read_timeout = duration(
        raw.header_read_timeout,
        "daemon.header_read_timeout",
        secs(30),
        Duration::from_millis(100)..=secs(3600),
        err,
    )?;
    Ok(DaemonSettings {
        listen,
        tls,
        poll_interval: duration(
            raw.poll_interval,
            "daemon.poll_interval",
            DEFAULT_POLL_INTERVAL,
            Duration::from_millis(10)..=secs(60),
            err,
        )?,
        log_format,
        max_connections,
        max_connections_per_ip,
        first_byte_timeout: duration(
            raw.first_byte_timeout,
            "daemon.first_byte_timeout",
            header_read_timeout,
            Duration::from_millis(100)..=secs(3600),
            err,
        )?,
        header_read_timeout,
        http2_keep_alive_interval: duration(
            raw.http2_keep_alive_interval,
            "daemon.http2_keep_alive_interval",
            secs(20),
            Duration::from_millis(100)..=secs(3600),
            err,
        )?,
        http2_keep_alive_timeout: duration(
            raw.http2_keep_alive_timeout,
            "daemon.http2_keep_alive_timeout",
            secs(10),
            Duration::from_millis(100)..=secs(3600),
            err,
        )?,
        http2_idle_timeout: duration(
            raw.http2_idle_timeout,
            "daemon.http2_idle_timeout",
            header_read_timeout,
            Duration::from_millis(100)..=secs(3600),
            err,
        )?,
        write_timeout: duration(
            raw.write_timeout,
            "daemon.write_timeout",
            secs(60),
            Duration::from_millis(100)..=secs(3600),
            err,
        )?,
        max_url_length: count(
            raw.max_url_length,
            "daemon.max_url_length",
            4096,
            256..=65_536,
            err,
        )?,
        drain_timeout: duration(
            raw.drain_timeout,
            "daemon.drain_timeout",
            secs(30),
            Duration::ZERO..=secs(3600),
            err,
        )?,
        origin_timeout: duration(
            raw.origin_timeout,
            "daemon.origin_timeout",
            secs(60),
            Duration::from_millis(100)..=secs(3600),
            err,
        )?,
    })
}

fn cache_settings(
    raw: RawCache,
    err: &ErrFn,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<CacheSettings, ConfigError> {
    const MIB: u64 = 1 << 20;
    let disk_size = size(raw.disk_size, "cache.disk_size", 10 << 30, err)?;
    if disk_size < MIB {
        return Err(err("cache.disk_size", "must be at least 1MiB".into()));
    }
    let memory_size = size(raw.memory_size, "cache.memory_size", 256 * MIB, err)?;
    let memory_max_object = size(raw.memory_max_object, "cache.memory_max_object", MIB, err)?;
    if memory_max_object > (u32::MAX as u64) {
        return Err(err("cache.memory_max_object", "must be under 4GiB".into()));
    }
    Ok(CacheSettings {
        dir: resolve(raw.dir.as_deref().unwrap_or(Path::new(DEFAULT_CACHE_DIR))),
        disk_size,
        memory_size,
        memory_max_object,
        scrub_interval: duration(
            raw.scrub_interval,
            "cache.scrub_interval",
            Duration::from_secs(24 * 3600),
            Duration::ZERO..=Duration::from_secs(365 * 24 * 3600),
            err,
        )?,
        scrub_rate: size(raw.scrub_rate, "cache.scrub_rate", 50 * MIB, err)?.max(1),
        open_files: count(
            raw.open_files,
            "cache.open_files",
            DEFAULT_OPEN_FILES,
            0..=1_000_000,
            err,
        )?,
        max_fills: count(
            raw.max_fills,
            "cache.max_fills",
            DEFAULT_MAX_FILLS,
            1..=4096,
            err,
        )?,
    })
}

fn freshness_settings(raw: RawFreshness, err: &ErrFn) -> Result<FreshnessSettings, ConfigError> {
    let immutable = raw
        .immutable
        .unwrap_or_else(|| DEFAULT_IMMUTABLE.iter().map(|s| s.to_string()).collect());
    for g in &immutable {
        globset::Glob::new(g)
            .map_err(|e| err("freshness.immutable", format!("`{g}` is not a glob: {e}")))?;
    }
    Ok(FreshnessSettings {
        immutable,
        revalidate_after: duration(
            raw.revalidate_after,
            "freshness.revalidate_after",
            Duration::from_secs(60),
            Duration::ZERO..=Duration::from_secs(365 * 24 * 3600),
            err,
        )?,
        stale_if_unreachable: duration(
            raw.stale_if_unreachable,
            "freshness.stale_if_unreachable",
            Duration::from_secs(3600),
            Duration::ZERO..=Duration::from_secs(30 * 24 * 3600),
            err,
        )?,
    })
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
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Checks the values serde cannot: sizes, version specifiers, globs.
fn check_upstream(u: &Upstream) -> Result<(), (String, String)> {
    if let Upstream::Pypi {
        versions,
        latest,
        platforms,
        max_file_size,
        allow_file_hosts,
        ..
    } = u
    {
        for h in allow_file_hosts {
            AllowedHost::parse(h).map_err(|r| ("allow_file_hosts".to_string(), r))?;
        }
        if let Some(s) = max_file_size {
            parse_size(s).map_err(|r| ("max_file_size".to_string(), r))?;
        }
        if *latest == Some(0) {
            return Err(("latest".into(), "must be at least 1".into()));
        }
        for (project, spec) in versions {
            spec.parse::<pep440_rs::VersionSpecifiers>().map_err(|e| {
                (
                    format!("versions.{project}"),
                    format!("`{spec}` is not a PEP 440 version specifier: {e}"),
                )
            })?;
        }
        for g in platforms {
            globset::Glob::new(g)
                .map_err(|e| ("platforms".to_string(), format!("`{g}` is not a glob: {e}")))?;
        }
    }
    Ok(())
}

fn resolve_upstream(u: Upstream, resolve: &dyn Fn(&Path) -> PathBuf) -> Upstream {
    match u {
        Upstream::Pypi {
            url,
            projects,
            requirements,
            versions,
            latest,
            platforms,
            max_file_size,
            allow_file_hosts,
        } => Upstream::Pypi {
            url,
            projects,
            requirements: requirements.iter().map(|p| resolve(p)).collect(),
            versions,
            latest,
            platforms,
            max_file_size,
            allow_file_hosts,
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
            sources,
        } => Upstream::Apt {
            url,
            suites,
            components,
            architectures,
            keyring: resolve(&keyring),
            sources,
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
            ("[daemon]\nlog_format = \"xml\"\n", "daemon.log_format"),
            ("[daemon]\nmax_connections = 0\n", "daemon.max_connections"),
            ("[cache]\nopen_files = -1\n", "cache.open_files"),
            ("[cache]\nopen_files = 2000000\n", "cache.open_files"),
            ("[daemon]\nmax_url_length = 10\n", "daemon.max_url_length"),
            ("[daemon]\nwrite_timeout = \"0s\"\n", "daemon.write_timeout"),
            (
                "[daemon]\nmax_connections_per_ip = 0\n",
                "daemon.max_connections_per_ip",
            ),
            (
                "[daemon]\nfirst_byte_timeout = \"1ms\"\n",
                "daemon.first_byte_timeout",
            ),
            (
                "[daemon]\nhttp2_keep_alive_interval = \"often\"\n",
                "daemon.http2_keep_alive_interval",
            ),
            (
                "[daemon]\nhttp2_keep_alive_timeout = \"2h\"\n",
                "daemon.http2_keep_alive_timeout",
            ),
            (
                "[daemon]\nhttp2_idle_timeout = \"0s\"\n",
                "daemon.http2_idle_timeout",
            ),
            ("[cache]\nmax_fills = 0\n", "cache.max_fills"),
            ("[cache]\nmax_fills = 5000\n", "cache.max_fills"),
            (
                "[daemon.tls]\nlisten = [\"x\"]\ncert = \"c\"\nkey = \"k\"\n",
                "daemon.tls.listen",
            ),
            ("[daemon.tls]\nlisten = [\"127.0.0.1:443\"]\n", "daemon.tls"),
            ("[cache]\ndisk_size = \"lots\"\n", "cache.disk_size"),
            ("[cache]\ndisk_size = \"1KiB\"\n", "cache.disk_size"),
            ("[cache]\nmemory_size = \"-1\"\n", "cache.memory_size"),
            ("[cache]\nsize = 1\n", "cache.size"),
            ("[freshness]\nimmutable = [\"a[\"]\n", "freshness.immutable"),
            (
                "[volumes.p.upstream]\ntype = \"pypi\"\nurl = \"u\"\nversions = { Req = \"=>1\" }\n",
                "volumes.p.upstream.versions.Req",
            ),
            (
                "[volumes.p.upstream]\ntype = \"pypi\"\nurl = \"u\"\nmax_file_size = \"big\"\n",
                "volumes.p.upstream.max_file_size",
            ),
            (
                "[volumes.p.upstream]\ntype = \"pypi\"\nurl = \"u\"\nlatest = 0\n",
                "volumes.p.upstream.latest",
            ),
            (
                "[volumes.a]\nprefix = \"/x\"\n[volumes.b]\nprefix = \"/x/y\"\n",
                "volumes.b.prefix",
            ),
            (
                "[sync]\nallow_redirect_hosts = [\"https://cdn.example\"]\n",
                "sync.allow_redirect_hosts",
            ),
            (
                "[sync]\nallow_redirect_hosts = [\"cdn.example:http\"]\n",
                "sync.allow_redirect_hosts",
            ),
            (
                "[sync]\nmax_download_size = \"1000\"\n",
                "sync.max_download_size",
            ),
            (
                "[sync]\nmax_metadata_size = \"lots\"\n",
                "sync.max_metadata_size",
            ),
            (
                "[sync]\ndownload_deadline = \"0s\"\n",
                "sync.download_deadline",
            ),
            (
                "[sync]\ndownload_deadline = \"30d\"\n",
                "sync.download_deadline",
            ),
            (
                "[volumes.p.upstream]\ntype = \"pypi\"\nurl = \"u\"\nallow_file_hosts = [\"files.example/x\"]\n",
                "volumes.p.upstream.allow_file_hosts",
            ),
        ] {
            let e = parse(&format!("{MINIMAL}{text}")).unwrap_err();
            assert_eq!(e.key, key, "for {text:?}: {e}");
        }
    }

    #[test]
    fn daemon_cache_and_freshness_defaults_and_values() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.cache.dir, Path::new(DEFAULT_CACHE_DIR));
        assert_eq!(c.cache.disk_size, 10 << 30);
        assert_eq!(c.daemon.log_format, LogFormat::Text);
        assert!(c.daemon.tls.is_none());
        assert_eq!(c.freshness.immutable.len(), DEFAULT_IMMUTABLE.len());
        let c = parse(&format!(
            "{MINIMAL}[cache]\ndir = \"cache\"\ndisk_size = \"2GiB\"\nmemory_size = \"0\"\n\
             [daemon]\nlog_format = \"json\"\n[daemon.tls]\nlisten = [\"[::1]:8443\"]\n\
             cert = \"tls/cert.pem\"\nkey = \"/k.pem\"\n[freshness]\nimmutable = []\nrevalidate_after = \"5s\"\n"
        ))
        .unwrap();
        assert_eq!(c.cache.dir, Path::new("/etc/unimirror/cache"));
        assert_eq!((c.cache.disk_size, c.cache.memory_size), (2 << 30, 0));
        assert_eq!(c.daemon.log_format, LogFormat::Json);
        let tls = c.daemon.tls.unwrap();
        assert_eq!(tls.cert, Path::new("/etc/unimirror/tls/cert.pem"));
        assert_eq!(tls.key, Path::new("/k.pem"));
        assert!(c.freshness.immutable.is_empty());
        assert_eq!(c.freshness.revalidate_after, Duration::from_secs(5));
    }

    #[test]
    fn sync_bounds_defaults_and_values() {
        let c = parse(MINIMAL).unwrap();
        assert!(c.sync.allow_redirect_hosts.is_empty());
        assert_eq!(c.sync.max_download_size, DEFAULT_MAX_DOWNLOAD_SIZE);
        assert_eq!(c.sync.max_metadata_size, DEFAULT_MAX_METADATA_SIZE);
        assert_eq!(c.sync.download_deadline, DEFAULT_DOWNLOAD_DEADLINE);
        let c = parse(&format!(
            "{MINIMAL}[sync]\nallow_redirect_hosts = [\"CDN.example\", \"127.0.0.1:8443\", \"[::1]:80\"]\n\
             max_download_size = \"1KiB\"\nmax_metadata_size = \"64MiB\"\ndownload_deadline = \"10m\"\n"
        ))
        .unwrap();
        let hosts: Vec<(&str, Option<u16>)> = c
            .sync
            .allow_redirect_hosts
            .iter()
            .map(|h| (h.host.as_str(), h.port))
            .collect();
        assert_eq!(
            hosts,
            [
                ("cdn.example", None),
                ("127.0.0.1", Some(8443)),
                ("[::1]", Some(80))
            ]
        );
        assert_eq!(c.sync.max_download_size, 1024);
        assert_eq!(c.sync.max_metadata_size, 64 << 20);
        assert_eq!(c.sync.download_deadline, Duration::from_secs(600));
        let e = parse(&format!("{MINIMAL}[sync]\nmax_metadata_size = \"512\"\n")).unwrap_err();
        assert_eq!(e.reason, "512 bytes is too small (at least 1KiB)");
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

    #[test]
    fn connection_and_fill_limits_defaults_and_values() {
        let c = parse(MINIMAL).unwrap();
        let d = &c.daemon;
        assert_eq!(d.max_connections_per_ip, DEFAULT_MAX_CONNECTIONS_PER_IP);
        assert_eq!(d.first_byte_timeout, d.header_read_timeout);
        assert_eq!(d.http2_idle_timeout, d.header_read_timeout);
        assert_eq!(d.http2_keep_alive_interval, Duration::from_secs(20));
        assert_eq!(d.http2_keep_alive_timeout, Duration::from_secs(10));
        assert_eq!(c.cache.max_fills, DEFAULT_MAX_FILLS);

        // The timeouts that default to header_read_timeout follow it.
        let c = parse(&format!(
            "{MINIMAL}[daemon]\nheader_read_timeout = \"5s\"\nmax_connections = 100\n"
        ))
        .unwrap();
        assert_eq!(c.daemon.first_byte_timeout, Duration::from_secs(5));
        assert_eq!(c.daemon.http2_idle_timeout, Duration::from_secs(5));
        // The per-address default never exceeds a smaller limit.
        assert_eq!(c.daemon.max_connections_per_ip, 100);

        let c = parse(&format!(
            "{MINIMAL}[daemon]\nmax_connections_per_ip = 8\nfirst_byte_timeout = \"2s\"\n\
             http2_keep_alive_interval = \"15s\"\nhttp2_keep_alive_timeout = \"3s\"\n\
             http2_idle_timeout = \"1m\"\n[cache]\nmax_fills = 4\n"
        ))
        .unwrap();
        let d = &c.daemon;
        assert_eq!(d.max_connections_per_ip, 8);
        assert_eq!(d.first_byte_timeout, Duration::from_secs(2));
        assert_eq!(d.http2_keep_alive_interval, Duration::from_secs(15));
        assert_eq!(d.http2_keep_alive_timeout, Duration::from_secs(3));
        assert_eq!(d.http2_idle_timeout, Duration::from_secs(60));
        assert_eq!(c.cache.max_fills, 4);

        // More per address than in all is named as such.
        let e = parse(&format!(
            "{MINIMAL}[daemon]\nmax_connections = 10\nmax_connections_per_ip = 11\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "daemon.max_connections_per_ip");
        assert!(e.reason.contains("1 to 10"), "{e}");
        assert!(e.reason.contains("daemon.max_connections"), "{e}");
        assert!(
            e.to_string().starts_with("/etc/unimirror/test.toml: "),
            "{e}"
        );
    }

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

//! The configuration file, shared by `unimirror` and `unimirror-update`.
//!
//! Parsing is strict: an unknown key, a wrong type or a bad value stops the
//! program at start with the file, the key and the reason, because a typo in
//! a mirror's config otherwise shows up weeks later as a silently ignored
//! setting. Relative paths are taken relative to the config file, so a
//! config and the trees it names can move together.
//!
//! The structs below are the schema: the file is deserialised into them
//! once, each value checked by its type as it is read (`values`), each
//! default in [`defaults`]. What needs more than one key is settled after:
//! the daemon's limits that follow another, the volumes' names and
//! prefixes, and relative paths.

mod values;
mod volume;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

pub use values::{AllowedHost, parse_duration, parse_size};
use values::{
    AtLeastKib, Bounded, ByteSize, Bytes, Count, MIB, NetTimeout, Seconds, UpToHour, UpToYear,
};
pub use volume::{
    AptUpstream, Fetch, Platforms, ProxyConfig, ProxyVerify, PypiUpstream, Upstream, VolumeConfig,
    VolumeSource, WheelUpstream, YumUpstream, check_volume_name,
};

/// A configuration problem: which file, which key, and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key path (`volumes.pypi.prefix`), or `(file)` when the problem
    /// is the file itself.
    pub key: String,
    /// Why, ending in `(line N)` when the line is known.
    pub reason: String,
}

/// The whole validated configuration. Read it with [`Config::load`] or
/// [`Config::parse`]: serde alone leaves the keys that follow another key,
/// the volumes' names and default prefixes, and relative paths unsettled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file it was read from.
    #[serde(skip)]
    pub file: PathBuf,
    /// Root of the origin: one directory per released volume, or an
    /// `s3://bucket/prefix` URL (then [`Config::origin_s3`] says where).
    pub origin: PathBuf,
    /// The bucket and prefix of an `s3://` origin, read from `origin`.
    #[serde(skip)]
    pub origin_s3: Option<S3Location>,
    /// How to reach the store of an `s3://` origin.
    #[serde(default)]
    pub s3: Option<S3Settings>,
    /// Root of the updater's staging trees: one directory per volume.
    pub staging: PathBuf,
    #[serde(default)]
    pub release: ReleaseSettings,
    #[serde(default)]
    pub daemon: DaemonSettings,
    #[serde(default)]
    pub cache: CacheSettings,
    #[serde(default)]
    pub freshness: FreshnessSettings,
    #[serde(default)]
    pub sync: SyncSettings,
    /// Volumes by name, in name order.
    #[serde(default)]
    pub volumes: BTreeMap<String, VolumeConfig>,
}

/// Where an `s3://` origin lives: a bucket, and the key prefix its
/// volumes are under (empty: the bucket's root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

impl S3Location {
    /// Reads `s3://<bucket>[/<prefix>]`; `None` when `origin` is not an
    /// `s3://` URL at all, an error naming what is wrong when it is one.
    pub fn parse(origin: &str) -> Option<Result<S3Location, String>> {
        let rest = origin.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_end_matches('/');
        // S3's bucket naming rules, which every compatible store follows.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !bucket_ok {
            return Some(Err(format!(
                "`{bucket}` is not a bucket name (3 to 63 of a-z, 0-9, `-` and `.`): write s3://<bucket>/<prefix>"
            )));
        }
        // Keys are joined with `/`: an empty, `.` or `..` segment would
        // name another place than it seems to, on some stores.
        for segment in prefix.split('/').filter(|_| !prefix.is_empty()) {
            let safe = !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !safe {
                return Some(Err(format!(
                    "the prefix `{prefix}` has the segment `{segment}`: use segments of a-z, A-Z, 0-9, `-`, `_` and `.`, separated by single `/`"
                )));
            }
        }
        Some(Ok(S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        }))
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix.is_empty() {
            true => write!(f, "s3://{}", self.bucket),
            false => write!(f, "s3://{}/{}", self.bucket, self.prefix),
        }
    }
}

/// The `[s3]` table: how the store of an `s3://` origin is reached.
/// Credentials are never written here: they come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) or
/// from the files named.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// The store's URL (`https://rgw.example:7480`); none: AWS S3.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "defaults::s3_region")]
    pub region: String,
    /// Buckets addressed as `<endpoint>/<bucket>` rather than
    /// `<bucket>.<endpoint>` (most self-hosted stores want this).
    #[serde(default)]
    pub path_style: bool,
    #[serde(default)]
    pub access_key_id_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// Run on a store that does not enforce conditional writes, with a
    /// local lock as the only guard: dangerous (see the operations guide).
    #[serde(default)]
    pub single_writer: bool,
}

impl S3Settings {
    /// Checks what serde cannot: both credential files or neither, and an
    /// endpoint that is an http(s) URL.
    fn settle(&self) -> Result<(), (String, String)> {
        if self.access_key_id_file.is_some() != self.secret_access_key_file.is_some() {
            return Err((
                "s3.access_key_id_file".into(),
                "give both access_key_id_file and secret_access_key_file, or neither (then AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are read from the environment)".into(),
            ));
        }
        if let Some(e) = &self.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err((
                "s3.endpoint".into(),
                format!("`{e}` is not an http:// or https:// URL"),
            ));
        }
        Ok(())
    }
}

/// How releases are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSettings {
    /// How many releases `gc` keeps besides those it must always keep.
    #[serde(
        default = "defaults::retain",
        deserialize_with = "Count::<1, 10_000>::de"
    )]
    pub retain: usize,
    /// A release that was current less than this long ago is never
    /// collected, and daemons still answer from it.
    #[serde(default = "defaults::grace", deserialize_with = "values::duration")]
    pub grace: Duration,
    /// The Ed25519 private key (PKCS#8 PEM) the updater signs each
    /// release's metadata with; none: releases are not signed.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// The format a volume created on a filesystem origin gets: 2 (its
    /// objects in the origin's shared store) unless daemons older than
    /// that format still read the origin (1).
    #[serde(
        default = "defaults::volume_format",
        deserialize_with = "Count::<1, 2>::de"
    )]
    pub volume_format: usize,
}

/// Settings of `unimirror serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSettings {
    /// Addresses to listen on.
    #[serde(default = "defaults::listen", deserialize_with = "values::addresses")]
    pub listen: Vec<SocketAddr>,
    /// HTTPS listeners, if any.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// Ed25519 public keys (PEM): when any is given, only releases signed
    /// by one of them are served.
    #[serde(default)]
    pub release_keys: Vec<PathBuf>,
    /// How often each released volume's pointer is checked for a new release.
    #[serde(
        default = "defaults::poll_interval",
        deserialize_with = "Bounded::<10, 60_000>::de"
    )]
    pub poll_interval: Duration,
    /// Log lines as text or as JSON objects.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Connections served at once; more wait in the listen backlog.
    #[serde(
        default = "defaults::max_connections",
        deserialize_with = "Count::<1, 1_000_000>::de"
    )]
    pub max_connections: usize,
    /// Connections served at once from one client address (at most
    /// `max_connections`); more are closed as soon as they are accepted.
    #[serde(skip)]
    pub max_connections_per_ip: usize,
    #[serde(rename = "max_connections_per_ip", default)]
    stated_max_connections_per_ip: Option<i64>,
    /// Time a new connection has to send its first byte (a TLS
    /// ClientHello, a request line or the HTTP/2 preface).
    #[serde(skip)]
    pub first_byte_timeout: Duration,
    #[serde(
        rename = "first_byte_timeout",
        default,
        deserialize_with = "NetTimeout::de_some"
    )]
    stated_first_byte_timeout: Option<Duration>,
    /// Time a client has to send a request's headers (and how long an idle
    /// keep-alive connection stays open).
    #[serde(
        default = "defaults::header_read_timeout",
        deserialize_with = "NetTimeout::de"
    )]
    pub header_read_timeout: Duration,
    /// How often an HTTP/2 connection that sent nothing is pinged.
    #[serde(
        default = "defaults::http2_keep_alive_interval",
        deserialize_with = "NetTimeout::de"
    )]
    pub http2_keep_alive_interval: Duration,
    /// An HTTP/2 ping not answered within this ends the connection.
    #[serde(
        default = "defaults::http2_keep_alive_timeout",
        deserialize_with = "NetTimeout::de"
    )]
    pub http2_keep_alive_timeout: Duration,
    /// An HTTP/2 connection with no open stream for this long is closed.
    #[serde(skip)]
    pub http2_idle_timeout: Duration,
    #[serde(
        rename = "http2_idle_timeout",
        default,
        deserialize_with = "NetTimeout::de_some"
    )]
    stated_http2_idle_timeout: Option<Duration>,
    /// A response write that makes no progress for this long ends the
    /// connection, so a stalled client cannot hold it forever.
    #[serde(
        default = "defaults::write_timeout",
        deserialize_with = "NetTimeout::de"
    )]
    pub write_timeout: Duration,
    /// Longest request target accepted, in bytes (414 beyond it).
    #[serde(
        default = "defaults::max_url_length",
        deserialize_with = "Count::<256, 65_536>::de"
    )]
    pub max_url_length: usize,
    /// On SIGTERM, how long in-flight requests get to finish.
    #[serde(default = "defaults::drain_timeout", deserialize_with = "UpToHour::de")]
    pub drain_timeout: Duration,
    /// On SIGTERM (or from SIGUSR1 on), how long `/readyz` says 503
    /// `draining` while everything is still served, before the daemon
    /// stops accepting: the time load balancers need to take it out.
    #[serde(default = "defaults::drain_delay", deserialize_with = "UpToHour::de")]
    pub drain_delay: Duration,
    /// An origin read that makes no progress for this long fails the fill.
    #[serde(
        default = "defaults::origin_timeout",
        deserialize_with = "NetTimeout::de"
    )]
    pub origin_timeout: Duration,
}

/// TLS listeners and their certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    #[serde(deserialize_with = "values::addresses")]
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    #[serde(
        default = "defaults::handshake_timeout",
        deserialize_with = "Bounded::<100, 300_000>::de"
    )]
    pub handshake_timeout: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl TryFrom<String> for LogFormat {
    type Error = String;
    fn try_from(s: String) -> Result<LogFormat, String> {
        match s.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("`{other}` is not `text` or `json`")),
        }
    }
}

/// The daemon's local cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// The disk tier's directory (a cacache layout).
    #[serde(default = "defaults::cache_dir")]
    pub dir: PathBuf,
    /// Budget of the disk tier, in bytes.
    #[serde(
        default = "defaults::disk_size",
        deserialize_with = "ByteSize::<MIB, { u64::MAX }>::de"
    )]
    pub disk_size: u64,
    /// Budget of the memory tier, in bytes (0 turns it off).
    #[serde(default = "defaults::memory_size", deserialize_with = "Bytes::de")]
    pub memory_size: u64,
    /// Largest object kept in the memory tier (under 4GiB).
    #[serde(
        default = "defaults::memory_max_object",
        deserialize_with = "ByteSize::<0, { u32::MAX as u64 }>::de"
    )]
    pub memory_max_object: u64,
    /// Pause between two background passes that re-verify every disk entry
    /// (0 turns the scrub off).
    #[serde(
        default = "defaults::scrub_interval",
        deserialize_with = "UpToYear::de"
    )]
    pub scrub_interval: Duration,
    /// Bytes per second the scrub reads at most (0 is taken as 1).
    #[serde(default = "defaults::scrub_rate", deserialize_with = "scrub_rate")]
    pub scrub_rate: u64,
    /// Disk entries whose descriptors are kept open (0 keeps none): a hit
    /// on one is a single `pread`, without opening the file again. Unset:
    /// [`DEFAULT_OPEN_FILES`], or fewer when the descriptor limit is low
    /// (see [`CacheSettings::open_files`]).
    #[serde(default, deserialize_with = "configured_open_files")]
    pub open_files: Option<usize>,
    /// Origin reads into the cache (fills) in flight at once; more wait
    /// for a free one.
    #[serde(
        default = "defaults::max_fills",
        deserialize_with = "Count::<1, 4096>::de"
    )]
    pub max_fills: usize,
}

fn scrub_rate<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Bytes::de(d).map(|n| n.max(1))
}

/// How `unimirror-update sync` downloads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSettings {
    /// Downloads in flight at once.
    #[serde(
        default = "defaults::concurrency",
        deserialize_with = "Count::<1, 256>::de"
    )]
    pub concurrency: usize,
    /// Further attempts after a failed download (with backoff).
    #[serde(
        default = "defaults::retries",
        deserialize_with = "Count::<0, 20>::de_u32"
    )]
    pub retries: u32,
    /// A download making no progress for this long fails (and is retried).
    #[serde(default = "defaults::sync_timeout", deserialize_with = "Seconds::de")]
    pub timeout: Duration,
    /// Plain-HTTP upstreams are refused unless this is set.
    #[serde(default)]
    pub allow_http: bool,
    /// Hosts a redirect may lead to besides the scheme, host and port the
    /// request was made to.
    #[serde(default)]
    pub allow_redirect_hosts: Vec<AllowedHost>,
    /// A download whose index gives no size is cut off past this many bytes.
    #[serde(
        default = "defaults::max_download_size",
        deserialize_with = "AtLeastKib::de"
    )]
    pub max_download_size: u64,
    /// Metadata held in memory (signed files, index pages) and metadata
    /// decompressed for parsing is refused past this many bytes.
    #[serde(
        default = "defaults::max_metadata_size",
        deserialize_with = "AtLeastKib::de"
    )]
    pub max_metadata_size: u64,
    /// One download attempt (headers and body) that has not finished after
    /// this long fails, however steadily the bytes trickle in.
    #[serde(
        default = "defaults::download_deadline",
        deserialize_with = "Bounded::<1_000, { 7 * 24 * 3_600_000 }>::de"
    )]
    pub download_deadline: Duration,
    /// Where to write `<volume>.prom` for node_exporter's textfile
    /// collector after each sync, if anywhere.
    #[serde(default)]
    pub metrics_dir: Option<PathBuf>,
}

/// How long plain-tree files are trusted without a new `stat`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshnessSettings {
    /// Glob patterns (relative to the volume root) of files that never
    /// change under their name: cached until evicted.
    #[serde(default = "defaults::immutable", deserialize_with = "values::globs")]
    pub immutable: Vec<String>,
    /// Everything else is checked by `stat` at most this often.
    #[serde(
        default = "defaults::revalidate_after",
        deserialize_with = "UpToYear::de"
    )]
    pub revalidate_after: Duration,
    /// While the tree cannot be read at all (unmounted, gone), what was
    /// last seen of it is served for this long past `revalidate_after`,
    /// marked stale; zero turns this off.
    #[serde(
        default = "defaults::stale_if_unreachable",
        deserialize_with = "Bounded::<0, { 30 * 24 * 3_600_000 }>::de"
    )]
    pub stale_if_unreachable: Duration,
}

pub const DEFAULT_RETAIN: usize = 5;
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// One host may hold a tenth of the default connection limit: a build
/// node needs a handful, a NAT gateway in front of many of them more.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1000;
/// Also the default of `first_byte_timeout` and `http2_idle_timeout`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
pub const DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_URL_LENGTH: usize = 4096;
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_ORIGIN_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/unimirror";
pub const DEFAULT_DISK_SIZE: u64 = 10 << 30;
pub const DEFAULT_MEMORY_SIZE: u64 = 256 << 20;
pub const DEFAULT_MEMORY_MAX_OBJECT: u64 = 1 << 20;
pub const DEFAULT_SCRUB_INTERVAL: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_SCRUB_RATE: u64 = 50 << 20;
/// Enough for the hot set of a busy index (nginx's open_file_cache is
/// usually sized alike); the daemon raises its descriptor limit for them.
pub const DEFAULT_OPEN_FILES: usize = 16384;
/// Each fill holds a 1 MiB read buffer, so this keeps fills under 32 MiB
/// of memory; it is also as many concurrent reads as a busy network
/// filesystem gives its best throughput at.
pub const DEFAULT_MAX_FILLS: usize = 32;
pub const DEFAULT_CONCURRENCY: usize = 8;
pub const DEFAULT_RETRIES: u32 = 3;
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(60);
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
/// Plain-tree files that never change under their name.
pub const DEFAULT_IMMUTABLE: &[&str] = &[
    "**/*.whl",
    "**/packages/**/*.tar.gz",
    "**/*.deb",
    "**/*.udeb",
    "**/*.rpm",
    "**/by-hash/**",
];
pub const DEFAULT_REVALIDATE_AFTER: Duration = Duration::from_secs(60);
pub const DEFAULT_STALE_IF_UNREACHABLE: Duration = Duration::from_secs(3600);

/// The defaults above, as serde asks for them (`#[serde(default = …)]`).
mod defaults {
    use super::*;

    pub fn s3_region() -> String {
        "us-east-1".into()
    }

    pub fn retain() -> usize {
        DEFAULT_RETAIN
    }
    pub fn grace() -> Duration {
        DEFAULT_GRACE
    }
    pub fn volume_format() -> usize {
        2
    }
    pub fn listen() -> Vec<SocketAddr> {
        vec![DEFAULT_LISTEN.parse().expect("a valid address")]
    }
    pub fn poll_interval() -> Duration {
        DEFAULT_POLL_INTERVAL
    }
    pub fn max_connections() -> usize {
        DEFAULT_MAX_CONNECTIONS
    }
    pub fn header_read_timeout() -> Duration {
        DEFAULT_HEADER_READ_TIMEOUT
    }
    pub fn http2_keep_alive_interval() -> Duration {
        DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL
    }
    pub fn http2_keep_alive_timeout() -> Duration {
        DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT
    }
    pub fn write_timeout() -> Duration {
        DEFAULT_WRITE_TIMEOUT
    }
    pub fn max_url_length() -> usize {
        DEFAULT_MAX_URL_LENGTH
    }
    pub fn drain_timeout() -> Duration {
        DEFAULT_DRAIN_TIMEOUT
    }
    pub fn drain_delay() -> Duration {
        Duration::from_secs(10)
    }
    pub fn origin_timeout() -> Duration {
        DEFAULT_ORIGIN_TIMEOUT
    }
    pub fn handshake_timeout() -> Duration {
        DEFAULT_HANDSHAKE_TIMEOUT
    }
    pub fn cache_dir() -> PathBuf {
        DEFAULT_CACHE_DIR.into()
    }
    pub fn disk_size() -> u64 {
        DEFAULT_DISK_SIZE
    }
    pub fn memory_size() -> u64 {
        DEFAULT_MEMORY_SIZE
    }
    pub fn memory_max_object() -> u64 {
        DEFAULT_MEMORY_MAX_OBJECT
    }
    pub fn scrub_interval() -> Duration {
        DEFAULT_SCRUB_INTERVAL
    }
    pub fn scrub_rate() -> u64 {
        DEFAULT_SCRUB_RATE
    }
    pub fn max_fills() -> usize {
        DEFAULT_MAX_FILLS
    }
    pub fn concurrency() -> usize {
        DEFAULT_CONCURRENCY
    }
    pub fn retries() -> u32 {
        DEFAULT_RETRIES
    }
    pub fn sync_timeout() -> Duration {
        DEFAULT_SYNC_TIMEOUT
    }
    pub fn max_download_size() -> u64 {
        DEFAULT_MAX_DOWNLOAD_SIZE
    }
    pub fn max_metadata_size() -> u64 {
        DEFAULT_MAX_METADATA_SIZE
    }
    pub fn download_deadline() -> Duration {
        DEFAULT_DOWNLOAD_DEADLINE
    }
    pub fn immutable() -> Vec<String> {
        DEFAULT_IMMUTABLE.iter().map(|s| s.to_string()).collect()
    }
    pub fn revalidate_after() -> Duration {
        DEFAULT_REVALIDATE_AFTER
    }
    pub fn stale_if_unreachable() -> Duration {
        DEFAULT_STALE_IF_UNREACHABLE
    }

    /// A section as an empty table reads: every key at its default.
    pub fn section<T: serde::de::DeserializeOwned>() -> T {
        let empty = std::iter::empty::<(&str, &str)>();
        T::deserialize(de::value::MapDeserializer::<_, de::value::Error>::new(
            empty,
        ))
        .expect("every key of a section has a default")
    }
}

/// `cache.open_files` as written (0 to 1,000,000), told apart from unset.
fn configured_open_files<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    Count::<0, 1_000_000>::de(d).map(Some)
}

impl CacheSettings {
    /// How many descriptors to keep open, and whether that was configured
    /// (a configured number that does not fit the limit is worth a
    /// warning; the default just takes what fits).
    pub fn open_files(&self) -> (usize, bool) {
        match self.open_files {
            Some(n) => (n, true),
            None => (DEFAULT_OPEN_FILES, false),
        }
    }
}

impl Default for ReleaseSettings {
    fn default() -> Self {
        defaults::section()
    }
}

impl Default for DaemonSettings {
    fn default() -> Self {
        defaults::section()
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        defaults::section()
    }
}

impl Default for SyncSettings {
    fn default() -> Self {
        defaults::section()
    }
}

impl Default for S3Settings {
    fn default() -> Self {
        defaults::section()
    }
}

impl Default for FreshnessSettings {
    fn default() -> Self {
        defaults::section()
    }
}

impl DaemonSettings {
    /// The limits whose default or range is another key's value.
    fn settle(&mut self) -> Result<(), (String, String)> {
        self.max_connections_per_ip = match self.stated_max_connections_per_ip {
            // The default never exceeds a smaller `max_connections`.
            None => DEFAULT_MAX_CONNECTIONS_PER_IP.min(self.max_connections),
            Some(n) => values::in_range(n, 1, self.max_connections as i64).map_err(|r| {
                (
                    "daemon.max_connections_per_ip".to_string(),
                    format!("{r} (it cannot exceed daemon.max_connections)"),
                )
            })? as usize,
        };
        // Both default to it: a connection gets as long for its first byte,
        // and an HTTP/2 connection as long between streams, as an HTTP/1
        // client gets for its next request head.
        self.first_byte_timeout = self
            .stated_first_byte_timeout
            .unwrap_or(self.header_read_timeout);
        self.http2_idle_timeout = self
            .stated_http2_idle_timeout
            .unwrap_or(self.header_read_timeout);
        Ok(())
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            key: "(file)".into(),
            reason: match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "cannot read: {e}; name the file with --config FILE or UNIMIRROR_CONFIG (config/unimirror.toml in the source tree is a documented example)"
                ),
                _ => format!("cannot read: {e}"),
            },
        })?;
        Config::parse(file, &text)
    }

    /// What `sync` and `serve` will need of the world beyond the file:
    /// every key file, requirements file, build-output directory and plain
    /// tree it names readable, and no plain-HTTP upstream without
    /// `sync.allow_http`. One error per problem (`check-config` prints
    /// them all), with the file and the dotted key.
    pub fn check_world(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let mut problem = |key: String, reason: String| {
            problems.push(ConfigError {
                file: self.file.clone(),
                key,
                reason,
            })
        };
        let mut readable = |key: String, path: &Path, dir: bool| {
            let found = match dir {
                true => std::fs::read_dir(path).map(|_| ()),
                false => std::fs::File::open(path).map(|_| ()),
            };
            if let Err(e) = found {
                problem(key, format!("{}: {e}", path.display()));
            }
        };
        for v in self.volumes.values() {
            let at = |k: &str| format!("volumes.{}.{k}", v.name);
            if let VolumeSource::Tree(tree) = &v.source {
                readable(at("tree"), tree, true);
            }
            match &v.upstream {
                Some(Upstream::Pypi(u)) => {
                    for r in &u.requirements {
                        readable(at("upstream.requirements"), r, false);
                    }
                }
                Some(Upstream::Wheel(u)) => readable(at("upstream.directory"), &u.directory, true),
                Some(Upstream::Apt(u)) => readable(at("upstream.keyring"), &u.keyring, false),
                Some(Upstream::Yum(u)) => {
                    if let Some(k) = &u.key {
                        readable(at("upstream.key"), k, false);
                    }
                }
                None => {}
            }
        }
        for v in self.volumes.values() {
            let url = match &v.upstream {
                Some(Upstream::Pypi(u)) => &u.url,
                Some(Upstream::Apt(u)) => &u.url,
                Some(Upstream::Yum(u)) => &u.url,
                _ => continue,
            };
            if url.starts_with("http://") && !self.sync.allow_http {
                problem(
                    format!("volumes.{}.upstream.url", v.name),
                    format!("{url} is plain HTTP: sync refuses it unless [sync] allow_http = true"),
                );
            }
        }
        problems
    }

    /// Validates configuration text; `file` names it in errors and anchors
    /// relative paths.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let err = |(key, reason): (String, String)| ConfigError {
            file: file.to_path_buf(),
            key,
            reason,
        };
        let mut config: Config = toml::from_str(text).map_err(|e| toml_error(file, text, e))?;
        config.file = file.to_path_buf();
        config.daemon.settle().map_err(err)?;
        volume::settle(&mut config.volumes).map_err(err)?;
        config.settle_origin().map_err(err)?;

        let file_abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        let base = file_abs.parent().unwrap_or(Path::new("/"));
        config.resolve_paths(&|p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        });
        Ok(config)
    }

    /// Reads an `s3://` origin, and checks that `[s3]` goes with one.
    fn settle_origin(&mut self) -> Result<(), (String, String)> {
        let origin = self.origin.to_string_lossy();
        self.origin_s3 = match S3Location::parse(&origin) {
            None => None,
            Some(Ok(at)) => Some(at),
            Some(Err(why)) => return Err(("origin".into(), why)),
        };
        match (&self.origin_s3, &mut self.s3) {
            (Some(_), s3) => s3.get_or_insert_with(S3Settings::default).settle(),
            (None, Some(_)) => Err((
                "s3".into(),
                format!(
                    "the origin `{origin}` is a directory: [s3] applies only to an origin written s3://<bucket>/<prefix>"
                ),
            )),
            (None, None) => Ok(()),
        }
    }

    /// Takes every relative path relative to the config file's directory.
    fn resolve_paths(&mut self, resolve: &dyn Fn(&mut PathBuf)) {
        if self.origin_s3.is_none() {
            resolve(&mut self.origin);
        }
        if let Some(s3) = &mut self.s3 {
            s3.access_key_id_file.iter_mut().for_each(resolve);
            s3.secret_access_key_file.iter_mut().for_each(resolve);
        }
        resolve(&mut self.staging);
        resolve(&mut self.cache.dir);
        self.release.signing_key.iter_mut().for_each(resolve);
        self.daemon.release_keys.iter_mut().for_each(resolve);
        if let Some(tls) = &mut self.daemon.tls {
            resolve(&mut tls.cert);
            resolve(&mut tls.key);
        }
        self.sync.metrics_dir.iter_mut().for_each(resolve);
        for v in self.volumes.values_mut() {
            if let VolumeSource::Tree(t) = &mut v.source {
                resolve(t);
            }
            if let Some(u) = &mut v.upstream {
                u.resolve_paths(resolve);
            }
        }
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

/// Turns toml's error (which knows the line and, for unknown fields, the
/// table) into ours, with the dotted key where it can be found.
fn toml_error(file: &Path, text: &str, e: toml::de::Error) -> ConfigError {
    let mut at = e.span().map(|s| s.start.min(text.len()));
    let mut key = at
        .map(|at| key_at(text, at))
        .unwrap_or_else(|| "(file)".into());
    let mut reason = e.message().trim_end();
    // An error inside an upstream names its key below the table toml saw,
    // and is found on that key's line when it is written there.
    if let Some((sub, r)) = values::split_key(reason) {
        key = match at {
            Some(_) => format!("{key}.{sub}"),
            None => sub.to_string(),
        };
        reason = r;
        let name = sub.split('.').next().unwrap_or(sub);
        at = at.map(|table| key_in_table(text, table, name).unwrap_or(table));
    } else if let Some(field) = reason
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
        && let Some(table) = at
        && !key.ends_with(&format!(".{field}"))
        && key != field
    {
        // serde points at the table (an internally tagged one, such as an
        // upstream, is read whole): name the typo and find its own line.
        key = format!("{key}.{field}");
        at = Some(key_in_table(text, table, field).unwrap_or(table));
    }
    let line = at
        .map(|at| text[..at].matches('\n').count() + 1)
        .map(|l| format!(" (line {l})"))
        .unwrap_or_default();
    ConfigError {
        file: file.to_path_buf(),
        key,
        reason: format!("{reason}{line}"),
    }
}

/// Where `name = …` is written in the table that starts at `table` (its
/// header, or an inline table's `{`), if it is.
fn key_in_table(text: &str, table: usize, name: &str) -> Option<usize> {
    let line_start = text[..table].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let mut offset = line_start;
    for (n, line) in text[line_start..].split_inclusive('\n').enumerate() {
        if n > 0 && line.trim_start().starts_with('[') {
            return None;
        }
        let is_key = |(i, _): &(usize, &str)| {
            let before = line[..*i].chars().next_back();
            before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-'))
                && line[i + name.len()..].trim_start().starts_with('=')
        };
        if line.match_indices(name).any(|m| is_key(&m)) {
            return Some(offset);
        }
        offset += line.len();
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/unimirror/test.toml"), text)
    }

    const MINIMAL: &str = "origin = \"/srv/origin\"\nstaging = \"stage\"\n";

    #[test]
    fn an_s3_origin_is_read_with_its_store_and_mistakes_are_named() {
        let c = Config::parse(
            Path::new("/etc/u.toml"),
            "origin = \"s3://mirrors/eu/west\"\nstaging = \"stage\"\n[s3]\nendpoint = \"http://rgw:7480\"\npath_style = true\naccess_key_id_file = \"id\"\nsecret_access_key_file = \"/k/secret\"\n",
        )
        .unwrap();
        let at = c.origin_s3.as_ref().unwrap();
        assert_eq!(
            (at.bucket.as_str(), at.prefix.as_str()),
            ("mirrors", "eu/west")
        );
        assert_eq!(at.to_string(), "s3://mirrors/eu/west");
        let s3 = c.s3.unwrap();
        assert_eq!(s3.region, "us-east-1");
        assert!(s3.path_style && !s3.single_writer);
        // Credential files are relative to the config, as every path is.
        assert_eq!(s3.access_key_id_file.unwrap(), Path::new("/etc/id"));
        assert_eq!(s3.secret_access_key_file.unwrap(), Path::new("/k/secret"));

        // No [s3]: AWS defaults, credentials from the environment.
        let c = Config::parse(
            Path::new("/etc/u.toml"),
            "origin = \"s3://mirrors\"\nstaging = \"stage\"\n",
        )
        .unwrap();
        assert_eq!(c.origin_s3.unwrap().prefix, "");
        assert_eq!(c.s3.unwrap().endpoint, None);

        for (text, key, reason) in [
            ("origin = \"s3://M/x\"\n", "origin", "not a bucket name"),
            ("origin = \"s3://ab/x\"\n", "origin", "not a bucket name"),
            (
                "origin = \"s3://mirrors/a//b\"\n",
                "origin",
                "the segment ``",
            ),
            (
                "origin = \"s3://mirrors/a/../b\"\n",
                "origin",
                "the segment `..`",
            ),
            (
                "origin = \"/srv\"\n[s3]\nregion = \"x\"\n",
                "s3",
                "is a directory",
            ),
            (
                "origin = \"s3://mirrors\"\n[s3]\naccess_key_id_file = \"id\"\n",
                "s3.access_key_id_file",
                "give both",
            ),
            (
                "origin = \"s3://mirrors\"\n[s3]\nendpoint = \"rgw:7480\"\n",
                "s3.endpoint",
                "not an http:// or https:// URL",
            ),
            (
                "origin = \"s3://mirrors\"\n[s3]\naccess_key_id = \"AKIA\"\n",
                "s3.access_key_id",
                "unknown field",
            ),
        ] {
            let e = Config::parse(Path::new("u.toml"), &format!("staging = \"s\"\n{text}"))
                .unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
            assert!(e.reason.contains(reason), "{text}: {e}");
        }
    }

    #[test]
    fn a_proxy_volume_gets_its_defaults_and_a_released_one_falls_back_to_it() {
        let c = parse(&format!(
            "{MINIMAL}[volumes.pypi]\nproxy = {{ type = \"pypi\", url = \"https://pypi.org/simple/\" }}\n\
             [volumes.pinned]\nfallback = \"pypi\"\n\
             [volumes.other.proxy]\ntype = \"pypi\"\nurl = \"https://index.example/simple/\"\nrevalidate_after = \"1m\"\nverify = \"page-sha256\"\n"
        ))
        .unwrap();
        let VolumeSource::Proxy(p) = &c.volumes["pypi"].source else {
            panic!("not a proxy: {:?}", c.volumes["pypi"].source);
        };
        assert_eq!(p.revalidate_after, Duration::from_secs(600));
        assert_eq!(p.stale_if_error, Duration::from_secs(86_400));
        assert_eq!(p.verify, None);
        assert_eq!(c.volumes["pinned"].fallback.as_deref(), Some("pypi"));
        assert_eq!(c.volumes["pinned"].source, VolumeSource::Released);
        let VolumeSource::Proxy(o) = &c.volumes["other"].source else {
            panic!("the table form is a proxy too");
        };
        assert_eq!(o.revalidate_after, Duration::from_secs(60));
        assert_eq!(o.verify, Some(ProxyVerify::PageSha256));
    }

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
                "[volumes.p]\nproxy = { type = \"pypi\", url = \"not a url\" }\n",
                "volumes.p.proxy.url",
            ),
            (
                "[volumes.p]\ntree = \"t\"\nproxy = { type = \"pypi\", url = \"https://pypi.org/simple/\" }\n",
                "volumes.p.proxy",
            ),
            ("[volumes.r]\nfallback = \"nope\"\n", "volumes.r.fallback"),
            (
                "[volumes.w.upstream]\ntype = \"wheel\"\ndirectory = \"d\"\nfetch = \"on-demand\"\n",
                "volumes.w.upstream.fetch",
            ),
            (
                "[volumes.p.upstream]\ntype = \"pypi\"\nurl = \"u\"\nfetch = \"lazily\"\n",
                "volumes.p.upstream.fetch",
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
        assert_eq!(e.reason, "512 bytes is too small (at least 1KiB) (line 4)");
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

    /// Whole messages: the file, the dotted key, the reason and the line
    /// of the key (not known for what spans several keys or volumes).
    #[test]
    fn errors_name_file_key_reason_and_line() {
        for (text, expect) in [
            (
                "[release]\nretain = 0\n",
                "release.retain: 0 is out of range (1 to 10000) (line 4)",
            ),
            (
                "[daemon]\nlisten = [\"0.0.0.0:80\"]\nhttp2_keep_alive_timeout = \"2h\"\n",
                "daemon.http2_keep_alive_timeout: 2h is out of range (100ms to 1h) (line 5)",
            ),
            (
                "[daemon]\nlog_format = \"xml\"\n",
                "daemon.log_format: `xml` is not `text` or `json` (line 4)",
            ),
            (
                "[cache]\ndisk_size = \"1KiB\"\n",
                "cache.disk_size: 1024 bytes is too small (at least 1MiB) (line 4)",
            ),
            (
                "[cache]\nmemory_max_object = \"4GiB\"\n",
                "cache.memory_max_object: 4294967296 bytes is too large (under 4GiB) (line 4)",
            ),
            (
                "[daemon]\nlisten = []\n",
                "daemon.listen: needs at least one address (line 4)",
            ),
            (
                "[volumes.pypi]\nprefix = \"/healthz/x\"\n",
                "volumes.pypi.prefix: `/healthz/x` collides with the daemon's own `/healthz` (line 4)",
            ),
            (
                "[volumes.metrics]\n",
                "volumes.metrics.prefix: `/metrics` collides with the daemon's own `/metrics`",
            ),
            (
                "[daemon]\nmax_connections = 10\nmax_connections_per_ip = 11\n",
                "daemon.max_connections_per_ip: 11 is out of range (1 to 10) (it cannot exceed daemon.max_connections)",
            ),
            (
                "[volumes.a]\n[volumes.b]\nprefix = \"/a/b\"\n",
                "volumes.b.prefix: `/a/b` overlaps `/a` of volume `a`",
            ),
            // Inside an upstream: the key below it, on its own line, wherever
            // `type` is written.
            (
                "[volumes.p.upstream]\ntype = \"pypi\"\nurl = \"u\"\n\nmax_file_size = \"big\"\n",
                "volumes.p.upstream.max_file_size: `big` is not a size like `512MiB`, `10GiB`, `500MB` or `1048576` (line 7)",
            ),
            (
                "[volumes.p.upstream]\nlatest = 0\nurl = \"u\"\ntype = \"pypi\"\n",
                "volumes.p.upstream.latest: must be at least 1 (line 4)",
            ),
            (
                "[volumes.p]\nupstream = { type = \"pypi\", url = \"u\", platforms = [\"a[\"] }\n",
                "volumes.p.upstream.platforms: `a[` is not a glob: error parsing glob 'a[': unclosed character class; missing ']' (line 4)",
            ),
            (
                "[volumes.p.upstream]\ntype = \"pypi\"\nurl = \"u\"\n[volumes.p.upstream.versions]\nreq = \"=>1\"\n",
                "volumes.p.upstream.versions.req: `=>1` is not a PEP 440 version specifier",
            ),
            (
                "[volumes.p.upstream]\ntype = \"pypi\"\nurl = \"u\"\nallow_file_hosts = [\"a/b\"]\n",
                "volumes.p.upstream.allow_file_hosts: `a/b` is not a host or host:port (no scheme, path or user part) (line 6)",
            ),
            (
                "[volumes.p.upstream]\ntype = \"apt\"\nurl = \"u\"\n",
                "volumes.p.upstream: missing field `suites` (line 3)",
            ),
        ] {
            let e = parse(&format!("{MINIMAL}{text}")).unwrap_err().to_string();
            let expect = format!("/etc/unimirror/test.toml: {expect}");
            assert!(e.starts_with(&expect), "for {text:?}:\n{e}\n{expect}");
        }
    }

    const YUM: &str =
        "[volumes.c.upstream]\ntype = \"yum\"\nurl = \"https://mirror.stream.centos.org/\"\n";

    #[test]
    fn yum_repositories_are_paths_under_the_root() {
        let c = parse(&format!(
            "{MINIMAL}{YUM}repos = [\"9-stream/BaseOS/x86_64/os/\", \"9-stream/AppStream/x86_64/os\"]\nkey = \"keys/centos.asc\"\n"
        ))
        .unwrap();
        let Some(Upstream::Yum(y)) = &c.volumes["c"].upstream else {
            panic!("not yum: {:?}", c.volumes["c"].upstream);
        };
        assert_eq!(y.url, "https://mirror.stream.centos.org/");
        // A trailing slash is dropped: the path is a directory either way.
        assert_eq!(
            y.repos,
            ["9-stream/BaseOS/x86_64/os", "9-stream/AppStream/x86_64/os"]
        );
        assert_eq!(
            y.key.as_deref(),
            Some(Path::new("/etc/unimirror/keys/centos.asc"))
        );

        for (repos, reason) in [
            (
                "[]",
                "needs at least one repository path under `url` (such as `9-stream/BaseOS/x86_64/os`)",
            ),
            (
                "[\"\"]",
                "`` is empty: each repository needs its own path under `url`",
            ),
            (
                "[\"/9-stream/BaseOS\"]",
                "`/9-stream/BaseOS` must be relative to `url` (no leading '/')",
            ),
            (
                "[\"9-stream/../BaseOS\"]",
                "`9-stream/../BaseOS`: segment `..` must be non-empty letters, digits, '-', '_', '.' or '~', not start with '@', and not be . or ..",
            ),
            (
                "[\"9-stream//BaseOS\"]",
                "`9-stream//BaseOS`: segment `` must be non-empty letters, digits, '-', '_', '.' or '~', not start with '@', and not be . or ..",
            ),
            (
                "[\"@1/BaseOS\"]",
                "`@1/BaseOS`: segment `@1` must be non-empty letters, digits, '-', '_', '.' or '~', not start with '@', and not be . or ..",
            ),
            (
                "[\"9-stream/BaseOS\", \"9-stream/BaseOS/x86_64/os\"]",
                "`9-stream/BaseOS/x86_64/os` overlaps `9-stream/BaseOS`: a repository cannot hold another",
            ),
            (
                "[\"9-stream/BaseOS\", \"9-stream/BaseOS/\"]",
                "`9-stream/BaseOS/` overlaps `9-stream/BaseOS`: a repository cannot hold another",
            ),
        ] {
            let e = parse(&format!("{MINIMAL}{YUM}repos = {repos}\n"))
                .unwrap_err()
                .to_string();
            assert_eq!(
                e,
                format!("/etc/unimirror/test.toml: volumes.c.upstream.repos: {reason} (line 6)")
            );
        }
        let e = parse(&format!("{MINIMAL}{YUM}")).unwrap_err().to_string();
        assert!(
            e.starts_with("/etc/unimirror/test.toml: volumes.c.upstream: missing field `repos`"),
            "{e}"
        );
    }

    /// The old form names each repository's full URL, which put one
    /// repository at the volume's root and moved it when a second came:
    /// refused, with the new form for the URLs given.
    #[test]
    fn yum_urls_are_refused_with_the_new_form() {
        let said = "`urls` is replaced by `url` (the mirror's root) and `repos` (each repository's path under it, mirrored and served at that path under the volume's prefix)";
        for (urls, form) in [
            (
                "[\"https://m.example/c/9-stream/BaseOS/x86_64/os/\", \"https://m.example/c/9-stream/AppStream/x86_64/os\"]",
                "for these URLs: url = \"https://m.example/c/9-stream/\", repos = [\"BaseOS/x86_64/os\", \"AppStream/x86_64/os\"]",
            ),
            (
                "[\"https://m.example/c/9-stream/BaseOS/x86_64/os/\"]",
                "for these URLs: url = \"https://m.example/\", repos = [\"c/9-stream/BaseOS/x86_64/os\"]",
            ),
            (
                "[\"https://a.example/BaseOS/\", \"https://b.example/AppStream/\"]",
                "URLs on different hosts need a volume each; for example url = \"https://mirror.stream.centos.org/\", repos = [\"9-stream/BaseOS/x86_64/os\", \"9-stream/AppStream/x86_64/os\"]",
            ),
        ] {
            let e = parse(&format!(
                "{MINIMAL}[volumes.c.upstream]\ntype = \"yum\"\nkey = \"k.asc\"\nurls = {urls}\n"
            ))
            .unwrap_err()
            .to_string();
            assert_eq!(
                e,
                format!(
                    "/etc/unimirror/test.toml: volumes.c.upstream.urls: {said}; {form} (line 6)"
                )
            );
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
            Upstream::Apt(apt) => {
                assert_eq!(apt.keyring, Path::new("/etc/unimirror/keys/ubuntu.gpg"))
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
        use volume::overlaps;
        assert!(overlaps("/a", "/a"));
        assert!(overlaps("/a", "/a/b"));
        assert!(!overlaps("/a", "/ab"));
        assert!(!overlaps("/ab", "/a"));
    }
}

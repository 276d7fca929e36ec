//! `[volumes.<name>]`: where a volume is served and what it is synced from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::values::{AllowedHost, Bytes, at_key, check_glob};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeConfig {
    /// Its key under `[volumes]`.
    #[serde(skip)]
    pub name: String,
    /// URL prefix, starting with `/` and without a trailing slash
    /// (`/<name>` when not given).
    #[serde(default, deserialize_with = "prefix")]
    pub prefix: String,
    #[serde(rename = "tree", default, deserialize_with = "tree")]
    pub source: VolumeSource,
    #[serde(default)]
    pub upstream: Option<Upstream>,
    /// `proxy = { type = "pypi", url = … }`: moved into `source` once the
    /// volumes are read (a volume is a proxy, a tree or released).
    #[serde(default)]
    proxy: Option<ProxyConfig>,
    /// A released PyPI volume's fallback: the name of a proxy volume that
    /// answers the project pages the current release lacks.
    #[serde(default)]
    pub fallback: Option<String>,
}

/// Where a volume's files come from when it is served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum VolumeSource {
    /// Content-addressed releases under `<origin>/<name>/`.
    #[default]
    Released,
    /// A plain directory tree, served as it is.
    Tree(PathBuf),
    /// A pull-through proxy of an upstream index: pages fetched on request
    /// and kept for a while, files fetched on first request and verified.
    Proxy(ProxyConfig),
}

/// `[volumes.<name>.proxy]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    #[serde(rename = "type")]
    pub kind: ProxyKind,
    /// The simple index (`https://pypi.org/simple/`).
    pub url: String,
    /// Where file paths are fetched from when no page linked them (with
    /// `verify = "blake2b-path"`): PyPI's file host for pypi.org, else
    /// the directory above `simple/`.
    #[serde(default)]
    pub files_url: Option<String>,
    /// How a file is checked: `"blake2b-path"` (its path's 64 hex digits
    /// are its BLAKE2b-256, as on PyPI's file host; the default for
    /// pypi.org) or `"page-sha256"` (the sha256 of the page that linked
    /// it; the default elsewhere).
    #[serde(default)]
    pub verify: Option<ProxyVerify>,
    /// Hosts the pages may link files on besides the index's own and
    /// `files_url`'s.
    #[serde(default, deserialize_with = "allow_file_hosts")]
    pub allow_file_hosts: Vec<AllowedHost>,
    /// A page is revalidated with the upstream once this old.
    #[serde(
        default = "ten_minutes",
        deserialize_with = "super::values::UpToYear::de"
    )]
    pub revalidate_after: std::time::Duration,
    /// While the upstream fails, the last good page is served (marked
    /// stale) for this long past `revalidate_after`.
    #[serde(default = "one_day", deserialize_with = "super::values::UpToYear::de")]
    pub stale_if_error: std::time::Duration,
}

fn ten_minutes() -> std::time::Duration {
    std::time::Duration::from_secs(600)
}

fn one_day() -> std::time::Duration {
    std::time::Duration::from_secs(86_400)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyKind {
    Pypi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyVerify {
    Blake2bPath,
    PageSha256,
}

fn prefix<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let p = String::deserialize(d)?;
    check_prefix(&p).map_err(de::Error::custom)?;
    Ok(p)
}

fn tree<'de, D: Deserializer<'de>>(d: D) -> Result<VolumeSource, D::Error> {
    PathBuf::deserialize(d).map(VolumeSource::Tree)
}

impl fmt::Display for VolumeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VolumeSource::Released => f.write_str("released"),
            VolumeSource::Tree(p) => write!(f, "tree {}", p.display()),
            VolumeSource::Proxy(p) => write!(f, "proxy of {}", p.url),
        }
    }
}

/// What `unimirror-update sync` fetches a volume from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Upstream {
    /// A PyPI-style simple index.
    Pypi(PypiUpstream),
    /// A directory of built wheels to import.
    Wheel(WheelUpstream),
    /// An apt archive.
    Apt(AptUpstream),
    /// A yum repository.
    Yum(YumUpstream),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PypiUpstream {
    pub url: String,
    #[serde(default)]
    pub projects: Vec<String>,
    #[serde(default)]
    pub requirements: Vec<PathBuf>,
    /// PEP 440 specifiers per project (`requests = ">=2.30,<3"`), by the
    /// project's name as written.
    #[serde(default, deserialize_with = "versions")]
    pub versions: BTreeMap<String, pep440_rs::VersionSpecifiers>,
    /// Keep only the newest N versions of each project (N ≥ 1).
    #[serde(default, deserialize_with = "latest")]
    pub latest: Option<usize>,
    /// Wheel platform tags to keep (globs such as `manylinux*_x86_64`);
    /// pure-Python wheels and sdists are always kept. Empty: all.
    #[serde(default)]
    pub platforms: Platforms,
    /// Skip files larger than this many bytes, when the upstream gives sizes.
    #[serde(default, deserialize_with = "max_file_size")]
    pub max_file_size: Option<u64>,
    /// Hosts the project pages may link files on besides the index's own
    /// (PyPI's file host is implied for pypi.org).
    #[serde(default, deserialize_with = "allow_file_hosts")]
    pub allow_file_hosts: Vec<AllowedHost>,
    /// Also mirror what the mirrored files require (`Requires-Dist`),
    /// transitively.
    #[serde(default)]
    pub dependencies: bool,
    #[serde(default)]
    pub fetch: Fetch,
}

/// Whether a sync downloads the artifacts its verified indexes list
/// (`mirror`), or releases them as remote entries that the daemon fetches
/// from the upstream on first request (`on-demand`). Metadata is always
/// fetched and verified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fetch {
    #[default]
    Mirror,
    OnDemand,
}

impl<'de> Deserialize<'de> for Fetch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "mirror" => Ok(Fetch::Mirror),
            "on-demand" => Ok(Fetch::OnDemand),
            other => Err(at_key(
                "fetch",
                format_args!("`{other}` is neither \"mirror\" nor \"on-demand\""),
            )),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WheelUpstream {
    pub directory: PathBuf,
    /// Refused with its reason: a build job's wheels are local files, with
    /// no upstream to fetch them from later.
    #[serde(default, rename = "fetch", deserialize_with = "no_fetch")]
    _fetch: Option<std::convert::Infallible>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AptUpstream {
    pub url: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub architectures: Vec<String>,
    pub keyring: PathBuf,
    /// Also mirror source packages (`Sources` and the files they name).
    #[serde(default)]
    pub sources: bool,
    #[serde(default)]
    pub fetch: Fetch,
}

/// A mirror root and the repositories under it. Each repository is
/// mirrored, and served, at its path under the volume's prefix, so adding
/// a repository later moves none of the others.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YumUpstream {
    /// The mirror's root (`https://mirror.stream.centos.org/`).
    pub url: String,
    /// Each repository's path under `url` (the directory that holds
    /// `repodata/`): relative, segments of letters, digits, `-`, `_`, `.`
    /// and `~`, no trailing `/`, none holding another.
    #[serde(deserialize_with = "repos")]
    pub repos: Vec<String>,
    /// The OpenPGP key that signs every `repomd.xml`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The old form (each repository's full URL): never set, since its
    /// deserializer refuses the key with the new form spelt out.
    #[serde(default, rename = "urls", deserialize_with = "no_urls")]
    _urls: Option<std::convert::Infallible>,
    #[serde(default)]
    pub fetch: Fetch,
}

/// Wheel platform tags to keep: the patterns as written, and compiled.
#[derive(Debug, Clone, Default)]
pub struct Platforms {
    pub patterns: Vec<String>,
    /// `None` when there are no patterns (every platform is kept).
    pub set: Option<globset::GlobSet>,
}

impl Platforms {
    pub fn new(patterns: Vec<String>) -> Result<Platforms, String> {
        if patterns.is_empty() {
            return Ok(Platforms::default());
        }
        let mut set = globset::GlobSetBuilder::new();
        for p in &patterns {
            set.add(check_glob(p)?);
        }
        let set = set.build().map_err(|e| e.to_string())?;
        Ok(Platforms {
            patterns,
            set: Some(set),
        })
    }
}

// The upstream's keys are read from what serde buffered to find `type`, so
// their errors name their key themselves (`at_key`).

impl<'de> Deserialize<'de> for Platforms {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Platforms::new(Vec::deserialize(d)?).map_err(|r| at_key("platforms", r))
    }
}

fn versions<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, pep440_rs::VersionSpecifiers>, D::Error> {
    BTreeMap::<String, String>::deserialize(d)?
        .into_iter()
        .map(|(project, spec)| match spec.parse() {
            Ok(s) => Ok((project, s)),
            Err(e) => Err(at_key(
                format_args!("versions.{project}"),
                format_args!("`{spec}` is not a PEP 440 version specifier: {e}"),
            )),
        })
        .collect()
}

fn latest<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    match usize::deserialize(d)? {
        0 => Err(at_key("latest", "must be at least 1")),
        n => Ok(Some(n)),
    }
}

fn max_file_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Bytes::parse(&String::deserialize(d)?)
        .map(Some)
        .map_err(|r| at_key("max_file_size", r))
}

fn allow_file_hosts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<AllowedHost>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|h| AllowedHost::parse(h).map_err(|r| at_key("allow_file_hosts", r)))
        .collect()
}

fn repos<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    if list.is_empty() {
        return Err(at_key(
            "repos",
            "needs at least one repository path under `url` (such as `9-stream/BaseOS/x86_64/os`)",
        ));
    }
    let mut repos: Vec<String> = Vec::with_capacity(list.len());
    for r in &list {
        let repo = check_repo_path(r).map_err(|reason| at_key("repos", reason))?;
        // One inside another would mix two repositories' files in one
        // tree (and a `repodata/` of one inside the other).
        if let Some(other) = repos.iter().find(|o| overlaps(o, &repo)) {
            return Err(at_key(
                "repos",
                format_args!("`{r}` overlaps `{other}`: a repository cannot hold another"),
            ));
        }
        repos.push(repo);
    }
    Ok(repos)
}

/// A repository's path under the mirror root, without a trailing `/`:
/// it becomes a directory of the volume and a URL path, so it must stay
/// below both (not absolute, no `.` or `..`) and not start a pinned
/// release (`@<id>`).
pub(super) fn check_repo_path(r: &str) -> Result<String, String> {
    let path = r.strip_suffix('/').unwrap_or(r);
    if path.is_empty() {
        return Err(format!(
            "`{r}` is empty: each repository needs its own path under `url`"
        ));
    }
    if path.starts_with('/') {
        return Err(format!("`{r}` must be relative to `url` (no leading '/')"));
    }
    check_segments(r, path)?;
    Ok(path.to_string())
}

/// Refuses `urls`, and shows what to write instead for the URLs given.
fn no_fetch<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::convert::Infallible>, D::Error> {
    let _ = String::deserialize(d)?;
    Err(at_key(
        "fetch",
        "a wheel volume imports a local directory of built wheels: there is no upstream to fetch them from on demand, so `fetch` does not apply",
    ))
}

fn no_urls<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::convert::Infallible>, D::Error> {
    let urls = Vec::<String>::deserialize(d)?;
    Err(at_key(
        "urls",
        format_args!(
            "`urls` is replaced by `url` (the mirror's root) and `repos` (each repository's path under it, mirrored and served at that path under the volume's prefix); {}",
            new_form(&urls)
        ),
    ))
}

/// `url` and `repos` that fetch the same repositories as `urls`: the root
/// is the path the URLs share (for one URL, its host's root, since one URL
/// does not say where its mirror's root is).
fn new_form(urls: &[String]) -> String {
    const EXAMPLE: &str = "for example url = \"https://mirror.stream.centos.org/\", repos = [\"9-stream/BaseOS/x86_64/os\", \"9-stream/AppStream/x86_64/os\"]";
    let parsed: Option<Vec<reqwest::Url>> =
        urls.iter().map(|u| reqwest::Url::parse(u).ok()).collect();
    let Some(parsed) = parsed.filter(|p| !p.is_empty()) else {
        return EXAMPLE.to_string();
    };
    let origin = parsed[0].origin();
    if parsed
        .iter()
        .any(|u| u.origin() != origin || u.cannot_be_a_base())
    {
        return format!("URLs on different hosts need a volume each; {EXAMPLE}");
    }
    let segs: Vec<Vec<&str>> = parsed
        .iter()
        .map(|u| u.path().split('/').filter(|s| !s.is_empty()).collect())
        .collect();
    let shortest = segs.iter().map(Vec::len).min().unwrap_or(0);
    let common = if segs.len() == 1 {
        0
    } else {
        (0..shortest.saturating_sub(1))
            .take_while(|&i| segs.iter().all(|s| s[i] == segs[0][i]))
            .count()
    };
    let root = format!(
        "{}/{}",
        origin.ascii_serialization(),
        segs[0][..common]
            .iter()
            .map(|s| format!("{s}/"))
            .collect::<String>()
    );
    let repos: Vec<String> = segs
        .iter()
        .map(|s| format!("\"{}\"", s[common..].join("/")))
        .collect();
    format!(
        "for these URLs: url = \"{root}\", repos = [{}]",
        repos.join(", ")
    )
}

/// `<type> <location>`, as `status` and `check-config` print it.
impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind(), self.location())
    }
}

impl Upstream {
    /// Its `type`: `pypi`, `wheel`, `apt` or `yum`.
    pub fn kind(&self) -> &'static str {
        match self {
            Upstream::Pypi(_) => "pypi",
            Upstream::Wheel(_) => "wheel",
            Upstream::Apt(_) => "apt",
            Upstream::Yum(_) => "yum",
        }
    }

    /// Where it is: its URL, or a wheel upstream's directory.
    pub fn location(&self) -> String {
        match self {
            Upstream::Pypi(u) => u.url.clone(),
            Upstream::Wheel(u) => u.directory.display().to_string(),
            Upstream::Apt(u) => u.url.clone(),
            Upstream::Yum(u) => u.url.clone(),
        }
    }

    /// Takes relative paths relative to the config file's directory.
    pub(super) fn resolve_paths(&mut self, resolve: &dyn Fn(&mut PathBuf)) {
        match self {
            Upstream::Pypi(u) => u.requirements.iter_mut().for_each(resolve),
            Upstream::Wheel(u) => resolve(&mut u.directory),
            Upstream::Apt(u) => resolve(&mut u.keyring),
            Upstream::Yum(u) => u.key.iter_mut().for_each(resolve),
        }
    }
}

pub fn check_volume_name(name: &str) -> Result<(), String> {
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

pub(super) fn check_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err(format!("`{prefix}` must start with '/'"));
    }
    if prefix == "/" {
        return Err("`/` is the volume list; give each volume its own prefix".into());
    }
    if prefix.ends_with('/') {
        return Err(format!("`{prefix}` must not end with '/'"));
    }
    check_segments(prefix, &prefix[1..])?;
    let own = crate::serve::pages::OWN_PATHS;
    if let Some(r) = own.iter().find(|r| overlaps(prefix, r)) {
        return Err(format!("`{prefix}` collides with the daemon's own `{r}`"));
    }
    Ok(())
}

/// Two prefixes overlap when one is the other or a path-segment prefix of it.
pub(super) fn overlaps(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    long == short || (long.starts_with(short) && long.as_bytes()[short.len()] == b'/')
}

/// Gives each volume its name and default prefix and checks that no two
/// prefixes overlap: what needs the volume's key, or all volumes.
pub(super) fn settle(volumes: &mut BTreeMap<String, VolumeConfig>) -> Result<(), (String, String)> {
    let mut prefixes: Vec<(&str, &str)> = Vec::new();
    for (name, v) in volumes.iter_mut() {
        let key = |k: &str| format!("volumes.{name}.{k}");
        check_volume_name(name).map_err(|reason| (format!("volumes.{name}"), reason))?;
        v.name.clone_from(name);
        if v.prefix.is_empty() {
            v.prefix = format!("/{name}");
            check_prefix(&v.prefix).map_err(|reason| (key("prefix"), reason))?;
        }
        if let Some(proxy) = v.proxy.take() {
            if v.source != VolumeSource::Released || v.upstream.is_some() {
                return Err((
                    key("proxy"),
                    "a proxy volume has neither `tree` nor an upstream to sync: it fetches from its own `url`".into(),
                ));
            }
            check_proxy(&proxy).map_err(|reason| (key("proxy.url"), reason))?;
            v.source = VolumeSource::Proxy(proxy);
        }
    }
    let proxies: Vec<String> = volumes
        .values()
        .filter(|v| matches!(v.source, VolumeSource::Proxy(_)))
        .map(|v| v.name.clone())
        .collect();
    for (name, v) in volumes.iter() {
        let Some(fallback) = &v.fallback else {
            continue;
        };
        let why = if v.source != VolumeSource::Released {
            Some("only a released volume falls back to a proxy".to_string())
        } else if !proxies.contains(fallback) {
            Some(format!(
                "`{fallback}` is not a proxy volume (proxy volumes: {})",
                if proxies.is_empty() {
                    "none".to_string()
                } else {
                    proxies.join(", ")
                }
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err((format!("volumes.{name}.fallback"), why));
        }
    }
    for (name, v) in volumes.iter() {
        for (other, other_prefix) in &prefixes {
            if overlaps(&v.prefix, other_prefix) {
                return Err((
                    format!("volumes.{name}.prefix"),
                    format!(
                        "`{}` overlaps `{other_prefix}` of volume `{other}`",
                        v.prefix
                    ),
                ));
            }
        }
        prefixes.push((name, &v.prefix));
    }
    Ok(())
}

/// A proxy's index URL must be an absolute http(s) URL.
fn check_proxy(p: &ProxyConfig) -> Result<(), String> {
    for url in std::iter::once(&p.url).chain(&p.files_url) {
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => return Err(format!("`{url}` is not an http(s) URL")),
        }
    }
    Ok(())
}

/// The rule for the segments of a URL path a volume is served under (a
/// prefix, a yum repository's path): plain names a client types as they
/// are, never `.`, `..`, or one starting with `@` (pinned releases).
/// `shown` is the value as written, for the message.
fn check_segments(shown: &str, path: &str) -> Result<(), String> {
    for seg in path.split('/') {
        let ok = !seg.is_empty()
            && seg != "."
            && seg != ".."
            && !seg.starts_with('@')
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
        if !ok {
            return Err(format!(
                "`{shown}`: segment `{seg}` must be non-empty letters, digits, '-', '_', '.' or '~', not start with '@', and not be . or .."
            ));
        }
    }
    Ok(())
}

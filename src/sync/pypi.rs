//! Syncing projects from a PyPI-style simple index.
//!
//! Which projects: the `projects` list and the names in the `requirements`
//! files (a CI fleet mirrors what its constraints name), normalized per
//! PEP 503. Each project page is asked for as PEP 691 JSON first and read
//! as PEP 503 HTML when that is what comes back. Every file with a sha256
//! is downloaded and checked, with its PEP 658/714 core-metadata file where
//! the upstream gives that file's sha256 (and only there).
//!
//! Each file keeps its upstream path, rooted at the volume (see
//! [`mirror_path`]): PyPI's `…/packages/36/7a/<hash>/<file>` on its file
//! host is `<prefix>/packages/36/7a/<hash>/<file>`, as bandersnatch lays it
//! out, so a lockfile made against the upstream works with its host
//! swapped. The mirror's pages (`simple/index.html`,
//! `simple/<project>/index.html`, and `index.v1_json` beside each) link to
//! the files relatively, keeping `#sha256=`, `data-requires-python`, yanked
//! and core-metadata attributes. A tree from the earlier layout
//! (`packages/<project>/<file>`) moves on the next sync without
//! downloading: a file found at its old path is linked to its new one,
//! checked there, and the old path pruned.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use reqwest::Url;
use serde::Serialize;
use serde_json::{Value, json};

use super::Gate;
use super::fetch::{Fetcher, Want};
use crate::config::{AllowedHost, Fetch, PypiUpstream};
use crate::digest::Sha256Digest;
use crate::html::{escape, href_encode_path};

pub struct Pypi<'a> {
    pub upstream: &'a PypiUpstream,
    /// Built from `upstream`.
    pub filters: Filters,
}

impl<'a> Pypi<'a> {
    pub fn new(upstream: &'a PypiUpstream) -> Pypi<'a> {
        Pypi {
            upstream,
            filters: Filters::new(upstream),
        }
    }
}

/// Where a project page's file links may point: the index's own scheme,
/// host and port, PyPI's file host for an index on pypi.org (that is where
/// pypi.org's pages link), and the hosts the upstream allows. A page
/// linking elsewhere is refused: a compromised or spoofed page must not
/// turn the mirror into a fetcher of arbitrary URLs.
pub struct FileHosts {
    index: Url,
    allowed: Vec<AllowedHost>,
}

impl FileHosts {
    pub fn new(index: &Url, configured: &[AllowedHost]) -> Result<FileHosts> {
        let mut allowed = configured.to_vec();
        let implied = match index.host_str() {
            Some("pypi.org") => Some("files.pythonhosted.org"),
            Some("test.pypi.org") => Some("test-files.pythonhosted.org"),
            _ => None,
        };
        if let Some(h) = implied {
            allowed.push(AllowedHost::parse(h).map_err(anyhow::Error::msg)?);
        }
        Ok(FileHosts {
            index: index.clone(),
            allowed,
        })
    }

    /// Refuses `file` unless it is on the index's origin or an allowed host.
    pub fn check(&self, file: &Url) -> Result<()> {
        let i = &self.index;
        let same_origin = file.scheme() == i.scheme()
            && file.host_str() == i.host_str()
            && file.port_or_known_default() == i.port_or_known_default();
        if same_origin || (file.host_str().is_some() && self.allowed.iter().any(|h| h.allows(file)))
        {
            return Ok(());
        }
        bail!(
            "refusing the file URL {file}: not on the index's host ({}) nor a host in the upstream's `allow_file_hosts`",
            i.origin().ascii_serialization()
        )
    }
}

/// Which files of a project to mirror.
#[derive(Default)]
pub struct Filters {
    /// Per normalized project: the versions to keep.
    versions: std::collections::BTreeMap<String, pep440_rs::VersionSpecifiers>,
    latest: Option<usize>,
    platforms: Option<globset::GlobSet>,
    max_file_size: Option<u64>,
}

impl Filters {
    /// The filters of a PyPI upstream, as the config checked them.
    pub fn new(u: &PypiUpstream) -> Filters {
        Filters {
            versions: u
                .versions
                .iter()
                .map(|(project, spec)| (normalize(project), spec.clone()))
                .collect(),
            latest: u.latest,
            platforms: u.platforms.set.clone(),
            max_file_size: u.max_file_size,
        }
    }

    /// The files of `project` to mirror.
    pub fn apply(&self, project: &str, dists: Vec<Dist>) -> Vec<Dist> {
        let spec = self.versions.get(project);
        let mut kept: Vec<(Option<pep440_rs::Version>, Dist)> = dists
            .into_iter()
            .filter(|d| {
                self.max_file_size
                    .is_none_or(|max| d.size.is_none_or(|s| s <= max))
            })
            .filter(|d| match (&self.platforms, wheel_platforms(&d.filename)) {
                (Some(set), Some(tags)) => tags.iter().any(|t| t == "any" || set.is_match(t)),
                _ => true,
            })
            .map(|d| (version_of(&d.filename), d))
            .filter(|(v, d)| match (spec, v) {
                (None, _) => true,
                (Some(s), Some(v)) => s.contains(v),
                (Some(_), None) => {
                    tracing::warn!(file = %d.filename, "skipped: no version in the file name");
                    false
                }
            })
            .collect();
        if let Some(n) = self.latest {
            let mut versions: Vec<&pep440_rs::Version> =
                kept.iter().filter_map(|(v, _)| v.as_ref()).collect();
            versions.sort();
            versions.dedup();
            let newest: Vec<pep440_rs::Version> =
                versions.into_iter().rev().take(n).cloned().collect();
            kept.retain(|(v, _)| v.as_ref().is_some_and(|v| newest.contains(v)));
        }
        kept.into_iter().map(|(_, d)| d).collect()
    }
}

/// The platform tags of a wheel file name (`…-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl`).
fn wheel_platforms(filename: &str) -> Option<Vec<String>> {
    let stem = filename.strip_suffix(".whl")?;
    let last = stem.rsplit('-').next()?;
    Some(last.split('.').map(str::to_string).collect())
}

/// The version in a distribution file name: a wheel's second field, an
/// sdist's text after the last `-`.
pub fn version_of(filename: &str) -> Option<pep440_rs::Version> {
    let v = if let Some(stem) = filename.strip_suffix(".whl") {
        stem.split('-').nth(1)?
    } else {
        let stem = [".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar.xz"]
            .iter()
            .find_map(|e| filename.strip_suffix(e))?;
        stem.rsplit_once('-')?.1
    };
    v.parse().ok()
}

/// One distribution file of a project, as the upstream lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Dist {
    pub filename: String,
    pub url: Url,
    pub sha256: Sha256Digest,
    pub requires_python: Option<String>,
    /// `Some("")` when yanked without a reason.
    pub yanked: Option<String>,
    /// What the upstream says of the file's core metadata.
    pub core_metadata: CoreMetadata,
    /// Its size, when the upstream gives one (PEP 700 JSON).
    pub size: Option<u64>,
}

/// What an upstream page says of a file's core metadata (`<file>.metadata`,
/// PEP 658/714).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CoreMetadata {
    /// Not advertised.
    #[default]
    Absent,
    /// Advertised without a sha256: nothing to check it against, so it is
    /// neither mirrored nor advertised by the mirror.
    Unhashed,
    /// Advertised with its sha256: mirrored, verified, and advertised.
    Hashed(Sha256Digest),
}

impl CoreMetadata {
    /// From an advertisement that may or may not carry a sha256.
    fn advertised(sha256: Option<Sha256Digest>) -> CoreMetadata {
        match sha256 {
            Some(sha) => CoreMetadata::Hashed(sha),
            None => CoreMetadata::Unhashed,
        }
    }

    /// The sha256, for the one case the file is mirrored.
    pub fn sha256(self) -> Option<Sha256Digest> {
        match self {
            CoreMetadata::Hashed(sha) => Some(sha),
            CoreMetadata::Absent | CoreMetadata::Unhashed => None,
        }
    }
}

/// PEP 503 normalization: lowercase, runs of `-`, `_`, `.` become `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.trim().chars() {
        if c == '-' || c == '_' || c == '.' {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The project names in a requirements or constraints file.
pub fn requirement_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('-') {
            continue; // options such as -r, -c, --hash, --index-url
        }
        let end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
            .unwrap_or(line.len());
        if end > 0 {
            names.push(normalize(&line[..end]));
        }
    }
    names
}

pub const ACCEPT: &str = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1";

/// Reads a PEP 691 JSON project page.
pub fn parse_json(body: &[u8], page: &Url) -> Result<Vec<Dist>> {
    let v: Value = serde_json::from_slice(body).context("a PEP 691 page that is not JSON")?;
    let mut out = Vec::new();
    for f in v["files"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let (Some(filename), Some(url)) = (f["filename"].as_str(), f["url"].as_str()) else {
            bail!("a file entry without filename or url: {f}");
        };
        let Some(sha256) = f["hashes"]["sha256"]
            .as_str()
            .and_then(Sha256Digest::from_hex)
        else {
            tracing::warn!(filename, "skipped: the upstream gives no sha256");
            continue;
        };
        let yanked = match &f["yanked"] {
            Value::Bool(true) => Some(String::new()),
            Value::String(s) => Some(s.clone()),
            _ => None,
        };
        let meta = if f["core-metadata"].is_null() {
            &f["dist-info-metadata"]
        } else {
            &f["core-metadata"]
        };
        let core_metadata = match meta {
            Value::Bool(true) => CoreMetadata::Unhashed,
            Value::Object(h) => CoreMetadata::advertised(
                h.get("sha256")
                    .and_then(|s| s.as_str())
                    .and_then(Sha256Digest::from_hex),
            ),
            _ => CoreMetadata::Absent,
        };
        out.push(Dist {
            filename: filename.to_string(),
            url: page.join(url)?,
            sha256,
            requires_python: f["requires-python"].as_str().map(str::to_string),
            yanked,
            core_metadata,
            size: f["size"].as_u64(),
        });
    }
    Ok(out)
}

/// Reads a PEP 503 HTML project page.
pub fn parse_html(body: &str, page: &Url) -> Result<Vec<Dist>> {
    parse_html_counting(body, page, &mut 0)
}

/// [`parse_html`], adding to `steps` the bytes it examined. Every search
/// starts where the previous one ended, so the count (and the time) is
/// linear in the page whatever it holds: a page of unclosed `<a` tags,
/// anchors without `</a>` or quotes that never close cannot make it
/// quadratic. The tests check the count.
pub fn parse_html_counting(body: &str, page: &Url, steps: &mut u64) -> Result<Vec<Dist>> {
    let b = body.as_bytes();
    let mut out = Vec::new();
    let mut unhashed = 0usize;
    let mut pos = 0;
    // The next byte `c` at or after `from`, counting the bytes passed.
    let find = |from: usize, c: u8, steps: &mut u64| -> Option<usize> {
        let from = from.min(b.len());
        let found = memchr::memchr(c, &b[from..]).map(|i| from + i);
        *steps += (found.unwrap_or(b.len()) - from + 1) as u64;
        found
    };
    while let Some(lt) = find(pos, b'<', steps) {
        pos = lt + 1;
        // `<a` and whitespace: an anchor (PEP 503 pages have no others
        // that matter).
        let is_anchor = b.get(lt + 1).is_some_and(|c| c.eq_ignore_ascii_case(&b'a'))
            && b.get(lt + 2).is_some_and(u8::is_ascii_whitespace);
        if !is_anchor {
            continue;
        }
        let Some(tag_end) = find(lt + 3, b'>', steps) else {
            break; // no tag is complete after this one either
        };
        *steps += (tag_end - lt) as u64; // parse_attrs reads the tag once
        let attrs = parse_attrs(&body[lt + 3..tag_end]);
        // The link text runs to the next tag (`</a>`, or whatever comes).
        let text_end = find(tag_end + 1, b'<', steps).unwrap_or(b.len());
        let text = unescape(body[tag_end + 1..text_end].trim());
        pos = text_end;
        let Some(href) = attrs
            .iter()
            .find(|(k, _)| k == "href")
            .map(|(_, v)| v.clone())
        else {
            continue;
        };
        let mut file_url = page.join(&href)?;
        let Some(sha256) = file_url
            .fragment()
            .and_then(|f| f.strip_prefix("sha256="))
            .and_then(Sha256Digest::from_hex)
        else {
            unhashed += 1;
            continue;
        };
        file_url.set_fragment(None);
        let attr = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let filename = if text.is_empty() {
            file_url
                .path_segments()
                .and_then(|mut s| s.next_back())
                .unwrap_or("")
                .to_string()
        } else {
            text
        };
        let core = attr("data-core-metadata").or_else(|| attr("data-dist-info-metadata"));
        out.push(Dist {
            filename,
            url: file_url,
            sha256,
            requires_python: attr("data-requires-python"),
            yanked: attr("data-yanked"),
            core_metadata: core.map_or(CoreMetadata::Absent, |v| {
                CoreMetadata::advertised(v.strip_prefix("sha256=").and_then(Sha256Digest::from_hex))
            }),
            size: None,
        });
    }
    if unhashed > 0 {
        // Once per page: a hostile page of a million links is one line.
        tracing::warn!(%page, links = unhashed, "skipped links without a sha256");
    }
    Ok(out)
}

/// `name="value"` pairs of a tag (values unescaped; bare names get "").
fn parse_attrs(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..].trim_start();
        let value = if let Some(r) = rest.strip_prefix('=') {
            let r = r.trim_start();
            let (v, next) = match r.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let end = r[1..].find(q).map(|i| i + 1).unwrap_or(r.len());
                    (&r[1..end], r.get(end + 1..).unwrap_or(""))
                }
                _ => {
                    let end = r.find(char::is_whitespace).unwrap_or(r.len());
                    (&r[..end], &r[end..])
                }
            };
            rest = next.trim_start();
            unescape(v)
        } else {
            String::new()
        };
        if !name.is_empty() && name != "/" {
            out.push((name, value));
        }
    }
    out
}

fn unescape(s: &str) -> String {
    // Most names and values have no entity: no six passes over them.
    if !s.contains('&') {
        return s.to_string();
    }
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// Where a file linked from the index at `index` is kept, relative to the
/// volume: its URL's path under the directory above the index (the index
/// being `<root>/simple/`) when the file is on the index's own scheme, host
/// and port, else its URL's whole path (PyPI's files host). Each segment
/// is decoded and must be a plain name; the last must be the file's name;
/// the path must not fall under `simple/`, where the mirror's own pages
/// are.
pub fn mirror_path(index: &Url, file: &Url, filename: &str) -> Result<String> {
    mirror_path_under(&mirror_root(index)?, file, filename)
}

/// The directory above the index at `index`, which [`mirror_path`]
/// resolves paths under: computed once by a caller that checks many links.
pub fn mirror_root(index: &Url) -> Result<Url> {
    Ok(index.join("../")?)
}

/// [`mirror_path`], given the index's [`mirror_root`].
pub fn mirror_path_under(root: &Url, file: &Url, filename: &str) -> Result<String> {
    let same_origin = file.scheme() == root.scheme()
        && file.host_str() == root.host_str()
        && file.port_or_known_default() == root.port_or_known_default();
    let path = file.path();
    let rel = match path.strip_prefix(root.path()) {
        Some(rel) if same_origin => rel,
        _ => path.trim_start_matches('/'),
    };
    let refuse = |why: &str| anyhow::anyhow!("refusing the link {file} for `{filename}`: {why}");
    let mut segments = Vec::new();
    for raw in rel.split('/') {
        let seg = crate::html::percent_decode(raw).ok_or_else(|| refuse("malformed escape"))?;
        if seg.is_empty() || seg == "." || seg == ".." || seg.contains(['/', '\\', '\0']) {
            return Err(refuse("its path has an empty, `.` or `..` segment"));
        }
        segments.push(seg);
    }
    if segments.last().map(String::as_str) != Some(filename) {
        return Err(refuse("its last segment is not the file's name"));
    }
    if segments[0] == "simple" {
        return Err(refuse(
            "it would sit among the mirror's pages, under simple/",
        ));
    }
    Ok(segments.join("/"))
}

/// At most this many projects, named and found by `dependencies`
/// together: a bound on what a hostile index can make a sync fetch.
const MAX_PROJECTS: usize = 20_000;

/// The projects the mirrored files of one project require: the names in
/// their core metadata's `Requires-Dist` (extras and markers ignored, so a
/// superset of what any one platform needs), normalized. The metadata is
/// the `.metadata` file the sync fetched, or a wheel's own; an sdist's is
/// not read. In a dry run nothing was fetched, so nothing is found.
fn requirements_of(
    tree: &Path,
    dists: &[Dist],
    paths: &std::collections::BTreeMap<Url, String>,
) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for d in dists {
        let dest = tree.join(&paths[&d.url]);
        let meta = match d.core_metadata {
            CoreMetadata::Hashed(_) if meta_path(&dest).is_file() => Some(
                std::fs::read(meta_path(&dest))
                    .with_context(|| format!("reading {}", meta_path(&dest).display()))?,
            ),
            _ if d.filename.ends_with(".whl") && dest.is_file() => {
                Some(super::wheel::wheel_metadata(&dest)?.0)
            }
            _ => None,
        };
        if let Some(meta) = meta {
            names.extend(requires_dist(&String::from_utf8_lossy(&meta)));
        }
    }
    Ok(names)
}

/// The project names of the `Requires-Dist` headers of core metadata.
pub fn requires_dist(metadata: &str) -> Vec<String> {
    metadata
        .lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.strip_prefix("Requires-Dist:"))
        .filter_map(|v| {
            let v = v.trim_start();
            let end = v
                .find(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
                .unwrap_or(v.len());
            let name = &v[..end];
            // PEP 508: a letter or digit at each end (`_` alone would
            // normalize to nothing, the index's root).
            let valid = name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && name.ends_with(|c: char| c.is_ascii_alphanumeric());
            valid.then(|| normalize(name))
        })
        .collect()
}

/// A distribution file name that is safe as one path segment.
fn safe_filename(name: &str) -> Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        bail!("refusing the file name `{name}` from the upstream");
    }
    Ok(name)
}

impl Pypi<'_> {
    fn project_names(&self) -> Result<BTreeSet<String>> {
        let mut names: BTreeSet<String> = self
            .upstream
            .projects
            .iter()
            .map(|p| normalize(p))
            .collect();
        for r in &self.upstream.requirements {
            let text = std::fs::read_to_string(r)
                .with_context(|| format!("reading requirements file {}", r.display()))?;
            names.extend(requirement_names(&text));
        }
        names.retain(|n| !n.is_empty());
        if names.is_empty() {
            bail!("no projects to mirror: list `projects` or `requirements` in the upstream table");
        }
        Ok(names)
    }

    pub async fn sync(&self, fetcher: &Arc<Fetcher>, tree: &Path) -> Result<Gate> {
        let url = &self.upstream.url;
        let base = Url::parse(&format!("{}/", url.trim_end_matches('/')))
            .with_context(|| format!("upstream url `{url}`"))?;
        fetcher.check_url(&base)?;
        let hosts = FileHosts::new(&base, &self.upstream.allow_file_hosts)?;
        let root = mirror_root(&base)?;
        let mut gate = Gate::default();
        let mut names = self.project_names()?;
        let mut pages: Vec<(String, Vec<Dist>)> = Vec::new();
        // Where each file goes, and which link (and sha256) took each path.
        let mut paths = std::collections::BTreeMap::new();
        let mut taken = std::collections::BTreeMap::new();
        // The projects asked for, then (with `dependencies`) each round the
        // projects the files just fetched require and nothing named yet.
        let mut round: Vec<(String, Option<String>)> =
            names.iter().map(|n| (n.clone(), None)).collect();
        while !round.is_empty() {
            let mut fetched = Vec::new();
            for (name, wanted_by) in &round {
                let Some(dists) = self
                    .project(fetcher, &base, &hosts, name, wanted_by)
                    .await?
                else {
                    let by = wanted_by.as_deref().unwrap_or("?");
                    gate.note(format!(
                        "{name}, a dependency of {by}: not on the upstream index, so not mirrored"
                    ));
                    continue;
                };
                // Where each file goes, checked before anything is fetched:
                // two links may not land on one path with other contents
                // (a file's `.metadata` path counts as taken too).
                for d in &dists {
                    safe_filename(&d.filename)?;
                    let path = mirror_path_under(&root, &d.url, &d.filename)?;
                    let sha = Some(d.sha256);
                    for (p, want) in [(path.clone(), sha), (format!("{path}.metadata"), None)] {
                        match taken.insert(p.clone(), (want, d.url.clone())) {
                            Some((had, url)) if had != want || url != d.url => bail!(
                                "project `{name}`: {} and {url} would both be mirrored at `{p}`",
                                d.url
                            ),
                            _ => {}
                        }
                    }
                    paths.insert(d.url.clone(), path);
                }
                fetched.push((name.clone(), dists));
            }
            self.download(fetcher, tree, &fetched, &paths, &mut gate)
                .await?;
            round = Vec::new();
            if self.upstream.dependencies {
                for (name, dists) in &fetched {
                    for dep in requirements_of(tree, dists, &paths)? {
                        if names.len() >= MAX_PROJECTS {
                            gate.note(format!(
                                "{dep}, a dependency of {name}, and any further ones: not mirrored, past {MAX_PROJECTS} projects"
                            ));
                            break;
                        }
                        if names.insert(dep.clone()) {
                            round.push((dep, Some(name.clone())));
                        }
                    }
                }
            }
            pages.extend(fetched);
        }
        pages.sort_by(|a, b| a.0.cmp(&b.0));

        // The mirror's own pages.
        let simple = tree.join("simple");
        for (name, dists) in &pages {
            let p = self.project_page(name, dists, &paths)?;
            write_pages(fetcher, &mut gate, &simple.join(name), p)?;
        }
        let names: Vec<String> = pages.iter().map(|(n, _)| n.clone()).collect();
        write_pages(fetcher, &mut gate, &simple, root_pages(&names)?)?;
        Ok(gate)
    }

    /// A project's files as its upstream page lists them, filtered, each
    /// link checked against the allowed hosts. `None` when the page is not
    /// there and the project is only a dependency (`wanted_by`): a project
    /// asked for by name must exist.
    async fn project(
        &self,
        fetcher: &Fetcher,
        base: &Url,
        hosts: &FileHosts,
        name: &str,
        wanted_by: &Option<String>,
    ) -> Result<Option<Vec<Dist>>> {
        let page = base.join(&format!("{name}/"))?;
        let (ct, body) = match fetcher.page(&page, ACCEPT).await {
            Ok(got) => got,
            Err(e) if wanted_by.is_some() && super::fetch::is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e.context(format!("project `{name}`"))),
        };
        let mut dists = if ct.starts_with("application/vnd.pypi.simple.v1+json") {
            parse_json(&body, &page)?
        } else {
            parse_html(&String::from_utf8_lossy(&body), &page)?
        };
        dists.sort_by(|a, b| a.filename.cmp(&b.filename));
        dists.dedup_by(|a, b| a.filename == b.filename);
        let dists = self.filters.apply(name, dists);
        // Only what will be fetched: a link the filters drop costs
        // nothing.
        for d in &dists {
            hosts
                .check(&d.url)
                .with_context(|| format!("project `{name}`, file `{}`", d.filename))?;
        }
        Ok(Some(dists))
    }

    /// Downloads every file of `pages` (and its core metadata, where the
    /// upstream gives its hash) to its path, and names them in the gate.
    async fn download(
        &self,
        fetcher: &Arc<Fetcher>,
        tree: &Path,
        pages: &[(String, Vec<Dist>)],
        paths: &std::collections::BTreeMap<Url, String>,
        gate: &mut Gate,
    ) -> Result<()> {
        let unhashed: Vec<String> = pages
            .iter()
            .flat_map(|(_, dists)| {
                dists
                    .iter()
                    .filter(|d| d.core_metadata == CoreMetadata::Unhashed)
                    .map(|d| format!("{}.metadata", paths[&d.url]))
            })
            .collect();
        if let Some(first) = unhashed.first() {
            gate.note(format!(
                    "{first}{}: the upstream gives no sha256 for this core metadata, so it is neither mirrored nor advertised",
                    match unhashed.len() {
                        1 => String::new(),
                        n => format!(" and {} more", n - 1),
                    }
                ));
        }
        let on_demand = self.upstream.fetch == Fetch::OnDemand;
        let mut tasks = tokio::task::JoinSet::new();
        let mut sizes = tokio::task::JoinSet::new();
        for (name, dists) in pages {
            for d in dists {
                let dest = tree.join(&paths[&d.url]);
                // From the earlier layout: linked, not downloaded again
                // (the fetch below checks it like any file already there).
                // (Not in a dry run, which changes nothing.)
                if !fetcher.dry_run {
                    let old = tree.join("packages").join(name).join(&d.filename);
                    move_from_old_layout(&old, &dest)?;
                    move_from_old_layout(&meta_path(&old), &meta_path(&dest))?;
                }
                let (f, d) = (fetcher.clone(), d.clone());
                if let CoreMetadata::Hashed(sha) = d.core_metadata {
                    gate.files.insert(meta_path(&dest), Some(sha));
                }
                if on_demand {
                    // The file stays upstream; its size is the page's
                    // (PEP 700), or else what the file host announces.
                    let (f, d, dest) = (f.clone(), d.clone(), dest.clone());
                    sizes.spawn(async move {
                        let size = match d.size {
                            Some(s) => s,
                            None if f.dry_run => 0,
                            None => f.size_of(&d.url).await?,
                        };
                        anyhow::Ok((dest, size, d))
                    });
                } else {
                    gate.files.insert(dest.clone(), Some(d.sha256));
                }
                tasks.spawn(async move {
                    if !on_demand {
                        f.file(
                            &d.url,
                            &dest,
                            Want {
                                sha256: d.sha256,
                                // PEP 700's size, when the page gives one,
                                // bounds the download as it streams.
                                size: d.size,
                            },
                        )
                        .await?;
                    }
                    // Core metadata only with the upstream's hash: with none,
                    // there is nothing to check the file against, so it is
                    // not mirrored (pip then reads the metadata from the
                    // distribution itself, whose hash it checks).
                    if let CoreMetadata::Hashed(sha) = d.core_metadata {
                        let url = Url::parse(&format!("{}.metadata", d.url))?;
                        f.file(
                            &url,
                            &meta_path(&dest),
                            Want {
                                sha256: sha,
                                size: None,
                            },
                        )
                        .await?;
                    }
                    anyhow::Ok(())
                });
            }
        }
        super::all_done(tasks, "fetching distribution files").await?;
        for (dest, size, d) in super::all_done(sizes, "asking for file sizes").await? {
            gate.remote(dest, Some(size), d.sha256, &d.url);
        }
        Ok(())
    }

    /// One project's pages, from what the sync fetched.
    fn project_page(
        &self,
        name: &str,
        dists: &[Dist],
        paths: &std::collections::BTreeMap<Url, String>,
    ) -> Result<(String, String)> {
        let files: Vec<PageFile> = dists
            .iter()
            .map(|d| {
                // Core metadata is advertised with the upstream's hash, and
                // only where it gives one: that is the only case the file
                // was fetched (and checked), and pip treats a 404 on an
                // advertised one as fatal.
                let metadata_sha = d.core_metadata.sha256();
                PageFile {
                    filename: d.filename.clone(),
                    path: paths[&d.url].clone(),
                    sha256: d.sha256,
                    size: d.size,
                    requires_python: d.requires_python.clone(),
                    yanked: d.yanked.clone(),
                    metadata_sha,
                }
            })
            .collect();
        // Pages are at simple/<project>/; paths are from the volume's root.
        project_pages(name, "../../", &files)
    }
}

/// Links a file of the earlier layout to its new path, when the new one is
/// not there yet; the old path is pruned after the sync (the gate does not
/// name it).
fn move_from_old_layout(old: &Path, new: &Path) -> Result<()> {
    if old == new || new.exists() || !old.is_file() {
        return Ok(());
    }
    std::fs::create_dir_all(new.parent().expect("a file in the tree"))?;
    std::fs::hard_link(old, new)
        .or_else(|_| std::fs::copy(old, new).map(|_| ()))
        .with_context(|| format!("moving {} to {}", old.display(), new.display()))
}

/// A file as a mirror page lists it.
pub struct PageFile {
    pub filename: String,
    /// Its path, `/`-separated and not encoded, from where the page's
    /// `files_at` points.
    pub path: String,
    pub sha256: Sha256Digest,
    /// Its size, when known (PEP 700).
    pub size: Option<u64>,
    pub requires_python: Option<String>,
    pub yanked: Option<String>,
    /// The sha256 of `<filename>.metadata`, when the mirror has it.
    pub metadata_sha: Option<Sha256Digest>,
}

/// A project's PEP 503 page and PEP 691 JSON; `files_at` is the link
/// prefix of its files' paths, relative to the page.
pub fn project_pages(name: &str, files_at: &str, files: &[PageFile]) -> Result<(String, String)> {
    Ok((
        project_html(name, files_at, files),
        project_json(name, files_at, files)?,
    ))
}

/// A file's link from its project's page.
fn file_href(files_at: &str, d: &PageFile) -> String {
    href_encode_path(files_at, &d.path)
}

/// A project's PEP 503 page (see [`project_pages`]).
pub fn project_html(name: &str, files_at: &str, files: &[PageFile]) -> String {
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta name=\"pypi:repository-version\" content=\"1.1\"><title>Links for {name}</title></head><body>\n<h1>Links for {name}</h1>\n"
    );
    for d in files {
        let href = file_href(files_at, d);
        let mut attrs = String::new();
        if let Some(rp) = &d.requires_python {
            attrs += &format!(" data-requires-python=\"{}\"", escape(rp));
        }
        if let Some(y) = &d.yanked {
            attrs += &format!(" data-yanked=\"{}\"", escape(y));
        }
        if let Some(sha) = d.metadata_sha {
            attrs += &format!(
                " data-core-metadata=\"sha256={sha}\" data-dist-info-metadata=\"sha256={sha}\""
            );
        }
        html += &format!(
            "<a href=\"{href}#sha256={}\"{attrs}>{}</a><br>\n",
            d.sha256,
            escape(&d.filename)
        );
    }
    html += "</body></html>\n";
    html
}

/// A project's PEP 691 JSON (see [`project_pages`]).
pub fn project_json(name: &str, files_at: &str, files: &[PageFile]) -> Result<String> {
    // Typed rather than built as a `serde_json::Value`: a proxy renders
    // this while its client waits, and the map of maps cost a third of a
    // cold page's own work. Fields are in the order the `Value` map kept
    // them (sorted), so the bytes are the same; a test checks it.
    #[derive(Serialize)]
    struct Page<'a> {
        files: Vec<File<'a>>,
        meta: Meta,
        name: &'a str,
    }
    #[derive(Serialize)]
    struct Meta {
        #[serde(rename = "api-version")]
        api_version: &'static str,
    }
    #[derive(Serialize)]
    struct Hashes {
        sha256: String,
    }
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Yanked<'a> {
        Yes(bool),
        Why(&'a str),
    }
    #[derive(Serialize)]
    struct File<'a> {
        #[serde(rename = "core-metadata", skip_serializing_if = "Option::is_none")]
        core_metadata: Option<Hashes>,
        #[serde(rename = "dist-info-metadata", skip_serializing_if = "Option::is_none")]
        dist_info_metadata: Option<Hashes>,
        filename: &'a str,
        hashes: Hashes,
        #[serde(rename = "requires-python", skip_serializing_if = "Option::is_none")]
        requires_python: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        url: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        yanked: Option<Yanked<'a>>,
    }
    let metadata = |d: &PageFile| d.metadata_sha.map(|sha| Hashes { sha256: sha.hex() });
    let page = Page {
        files: files
            .iter()
            .map(|d| File {
                core_metadata: metadata(d),
                dist_info_metadata: metadata(d),
                filename: &d.filename,
                hashes: Hashes {
                    sha256: d.sha256.hex(),
                },
                requires_python: d.requires_python.as_deref(),
                size: d.size,
                url: file_href(files_at, d),
                yanked: d.yanked.as_deref().map(|y| match y {
                    "" => Yanked::Yes(true),
                    why => Yanked::Why(why),
                }),
            })
            .collect(),
        meta: Meta { api_version: "1.1" },
        name,
    };
    Ok(serde_json::to_string(&page)? + "\n")
}

/// The root page and JSON listing `names`.
pub fn root_pages(names: &[String]) -> Result<(String, String)> {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta name=\"pypi:repository-version\" content=\"1.1\"><title>Simple index</title></head><body>\n",
    );
    for name in names {
        html += &format!("<a href=\"{name}/\">{name}</a><br>\n");
    }
    html += "</body></html>\n";
    let projects: Vec<Value> = names.iter().map(|n| json!({ "name": n })).collect();
    let json = serde_json::to_string_pretty(&json!({
        "meta": { "api-version": "1.1" },
        "projects": projects,
    }))? + "\n";
    Ok((html, json))
}

/// Writes a page pair as `index.html` and `index.v1_json` in `dir`, and
/// names them in the gate.
pub fn write_pages(
    fetcher: &Fetcher,
    gate: &mut Gate,
    dir: &Path,
    (html, json): (String, String),
) -> Result<()> {
    for (file, bytes) in [
        ("index.html", html.into_bytes()),
        ("index.v1_json", json.into_bytes()),
    ] {
        let path = dir.join(file);
        fetcher.write(&path, &bytes)?;
        gate.files.insert(path, None);
    }
    Ok(())
}

pub fn meta_path(dest: &Path) -> PathBuf {
    let mut p = dest.as_os_str().to_os_string();
    p.push(".metadata");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Platforms;

    #[test]
    fn files_keep_their_upstream_paths_under_the_volume() {
        let u = |s: &str| Url::parse(s).unwrap();
        let pypi = u("https://pypi.org/simple/");
        // PyPI's file host: the whole path, as bandersnatch keeps it.
        assert_eq!(
            mirror_path(
                &pypi,
                &u("https://files.pythonhosted.org/packages/36/7a/87837f/python_dateutil-2.8.2-py2.py3-none-any.whl"),
                "python_dateutil-2.8.2-py2.py3-none-any.whl"
            )
            .unwrap(),
            "packages/36/7a/87837f/python_dateutil-2.8.2-py2.py3-none-any.whl"
        );
        // Files on the index's own host: relative to the directory above
        // simple/, decoded.
        let own = u("http://host/pypi/simple/");
        assert_eq!(
            mirror_path(
                &own,
                &u("http://host/pypi/packages/ab/cd/f%2B1.whl"),
                "f+1.whl"
            )
            .unwrap(),
            "packages/ab/cd/f+1.whl"
        );
        // Same host, another port: another origin, so the whole path.
        assert_eq!(
            mirror_path(&own, &u("http://host:81/pypi/files/f.whl"), "f.whl").unwrap(),
            "pypi/files/f.whl"
        );
        // (Dot segments, even escaped, are resolved by the URL parser.)
        for (link, name) in [
            ("http://host/pypi/packages/other.whl", "f.whl"),
            ("http://host/pypi/simple/f.whl", "f.whl"),
            ("http://host/pypi/a%2Fb/f.whl", "f.whl"),
            ("http://host/pypi/a//f.whl", "f.whl"),
        ] {
            assert!(mirror_path(&own, &u(link), name).is_err(), "{link}");
        }
    }

    #[test]
    fn requires_dist_names_ignore_versions_extras_and_markers() {
        let meta = "Metadata-Version: 2.1\nName: app\nRequires-Dist: Charset_Normalizer<4,>=2\nRequires-Dist: idna (>=2.5)\nRequires-Dist: PySocks!=1.5.7; extra == \"socks\"\nRequires-Dist: certifi[extra]>=2017\nRequires-Dist: \nRequires-Dist: _\nRequires-Dist: -x\n\nRequires-Dist: in-the-body\n";
        assert_eq!(
            requires_dist(meta),
            ["charset-normalizer", "idna", "pysocks", "certifi"]
        );
    }

    #[test]
    fn pep503_normalization() {
        assert_eq!(normalize("Friendly-Bard"), "friendly-bard");
        assert_eq!(normalize("FRIENDLY_BARD"), "friendly-bard");
        assert_eq!(normalize("friendly.bard"), "friendly-bard");
        assert_eq!(normalize("Friendly-._.-Bard"), "friendly-bard");
        assert_eq!(normalize("zope.interface"), "zope-interface");
    }

    #[test]
    fn names_from_requirements_and_constraints() {
        let text = "# constraints\nrequests==2.31.0\nNumPy>=1.24 ; python_version >= '3.9'\n-r other.txt\n--hash=sha256:00\nzope.interface[extra] @ https://x\n\nurllib3<3  # pinned\n";
        assert_eq!(
            requirement_names(text),
            vec!["requests", "numpy", "zope-interface", "urllib3"]
        );
    }

    #[test]
    fn html_pages_keep_every_attribute() {
        let page = Url::parse("https://up.example/simple/pkg/").unwrap();
        let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let html = format!(
            "<html><body>\n<a href=\"../../files/pkg-1.0-py3-none-any.whl#sha256={sha}\" data-requires-python=\"&gt;=3.8\" data-core-metadata=\"sha256={sha}\">pkg-1.0-py3-none-any.whl</a>\n<A HREF='/f/pkg-0.9.tar.gz#sha256={sha}' data-yanked>pkg-0.9.tar.gz</A>\n<a href=\"nohash.whl\">nohash.whl</a>\n<a\n  href=\"/f/pkg-0.8.tar.gz#sha256={sha}\">pkg-0.8.tar.gz</a></body></html>"
        );
        let d = parse_html(&html, &page).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d[2].filename, "pkg-0.8.tar.gz", "`<a` then a newline");
        assert_eq!(
            d[0].url.as_str(),
            "https://up.example/files/pkg-1.0-py3-none-any.whl"
        );
        assert_eq!(d[0].requires_python.as_deref(), Some(">=3.8"));
        assert!(matches!(d[0].core_metadata, CoreMetadata::Hashed(_)));
        assert_eq!(d[1].filename, "pkg-0.9.tar.gz");
        assert_eq!(d[1].yanked.as_deref(), Some(""));
        assert_eq!(d[1].url.as_str(), "https://up.example/f/pkg-0.9.tar.gz");
    }

    fn dist(filename: &str, size: Option<u64>) -> Dist {
        Dist {
            filename: filename.into(),
            url: Url::parse("https://x/").unwrap(),
            sha256: Sha256Digest::default(),
            requires_python: None,
            yanked: None,
            core_metadata: CoreMetadata::Absent,
            size,
        }
    }

    #[test]
    fn filters_by_version_latest_platform_and_size() {
        let files = || {
            vec![
                dist("pkg-1.0.tar.gz", None),
                dist("pkg-1.0-py3-none-any.whl", None),
                dist(
                    "pkg-1.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                    Some(10),
                ),
                dist("pkg-1.1-cp311-cp311-win_amd64.whl", Some(10)),
                dist("pkg-2.0rc1.tar.gz", Some(5_000)),
                dist("pkg-10.0.tar.gz", Some(50)),
            ]
        };
        let names = |v: Vec<Dist>| v.into_iter().map(|d| d.filename).collect::<Vec<_>>();
        let all = Filters::default().apply("pkg", files());
        assert_eq!(all.len(), 6);
        let f = Filters::new(&PypiUpstream {
            versions: [("PKG".to_string(), ">=1.1,<10".parse().unwrap())].into(),
            ..Default::default()
        });
        assert_eq!(
            names(f.apply("pkg", files())),
            vec![
                "pkg-1.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                "pkg-1.1-cp311-cp311-win_amd64.whl",
                "pkg-2.0rc1.tar.gz"
            ],
            "pre-releases in range are kept: clients choose them or not (pip --pre)"
        );
        let f = Filters::new(&PypiUpstream {
            latest: Some(2),
            ..Default::default()
        });
        assert_eq!(
            names(f.apply("pkg", files())),
            vec!["pkg-2.0rc1.tar.gz", "pkg-10.0.tar.gz"]
        );
        let f = Filters::new(&PypiUpstream {
            platforms: Platforms::new(vec!["manylinux*_x86_64".into()]).unwrap(),
            max_file_size: Some(1024),
            ..Default::default()
        });
        assert_eq!(
            names(f.apply("pkg", files())),
            vec![
                "pkg-1.0.tar.gz",
                "pkg-1.0-py3-none-any.whl",
                "pkg-1.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                "pkg-10.0.tar.gz"
            ]
        );
        assert_eq!(
            version_of("greet-lib-1.0.tar.gz").unwrap().to_string(),
            "1.0"
        );
        assert_eq!(
            version_of("greet_lib-1.0-py3-none-any.whl")
                .unwrap()
                .to_string(),
            "1.0"
        );
        assert!(version_of("README").is_none());
    }

    #[test]
    fn a_json_page_is_what_a_sorted_json_value_would_print() {
        let file = |filename: &str| PageFile {
            filename: filename.into(),
            path: format!("packages/ab/{filename}"),
            sha256: Sha256Digest::of(filename.as_bytes()),
            size: None,
            requires_python: None,
            yanked: None,
            metadata_sha: None,
        };
        let full = PageFile {
            size: Some(42),
            requires_python: Some(">=3.8".into()),
            yanked: Some("broken \"build\"".into()),
            metadata_sha: Some(Sha256Digest::of(b"metadata")),
            ..file("a-1.0-py3-none-any.whl")
        };
        let flagged = PageFile {
            yanked: Some(String::new()),
            ..file("a-2.0.tar.gz")
        };
        let files = [full, flagged, file("a-3.0 x.zip")];
        let page = project_json("a", "/pypi/", &files).unwrap();
        let value: Value = serde_json::from_str(&page).unwrap();
        assert_eq!(page, serde_json::to_string(&value).unwrap() + "\n");
        assert_eq!(value["files"][0]["yanked"], json!("broken \"build\""));
        assert_eq!(value["files"][1]["yanked"], json!(true));
        assert_eq!(
            value["files"][0]["core-metadata"],
            value["files"][0]["dist-info-metadata"]
        );
        assert_eq!(
            value["files"][2]["url"],
            json!("/pypi/packages/ab/a-3.0%20x.zip")
        );
        assert_eq!(value["files"][2].as_object().unwrap().len(), 3);
        assert_eq!(value["meta"]["api-version"], json!("1.1"));
    }

    #[test]
    fn json_pages() {
        let page = Url::parse("https://up.example/simple/pkg/").unwrap();
        let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let body = format!(
            r#"{{"meta":{{"api-version":"1.1"}},"name":"pkg","files":[
            {{"filename":"pkg-1.0.tar.gz","url":"https://files.example/pkg-1.0.tar.gz","hashes":{{"sha256":"{sha}"}},"requires-python":">=3.8","yanked":"broken","core-metadata":true}},
            {{"filename":"pkg-0.1.tar.gz","url":"../../x/pkg-0.1.tar.gz","hashes":{{"md5":"00"}}}}]}}"#
        );
        let d = parse_json(body.as_bytes(), &page).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].yanked.as_deref(), Some("broken"));
        assert_eq!(d[0].core_metadata, CoreMetadata::Unhashed);
        assert_eq!(d[0].requires_python.as_deref(), Some(">=3.8"));
    }

    #[test]
    fn file_links_stay_on_the_index_or_allowed_hosts() {
        let url = |s: &str| Url::parse(s).unwrap();
        let pypi = FileHosts::new(&url("https://pypi.org/simple/"), &[]).unwrap();
        assert!(
            pypi.check(&url("https://files.pythonhosted.org/packages/ab/cd/x.whl"))
                .is_ok()
        );
        assert!(pypi.check(&url("https://pypi.org/x.whl")).is_ok());
        let e = pypi
            .check(&url("https://other.example/x.whl"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("https://other.example/x.whl") && e.contains("allow_file_hosts"),
            "{e}"
        );
        assert!(
            pypi.check(&url("https://files.pythonhosted.org:8443/x.whl"))
                .is_err()
        );
        // Another index: the same scheme, host and port only.
        let local = FileHosts::new(&url("http://127.0.0.1:8000/simple/"), &[]).unwrap();
        assert!(
            local
                .check(&url("http://127.0.0.1:8000/files/x.whl"))
                .is_ok()
        );
        assert!(
            local
                .check(&url("http://127.0.0.1:8001/files/x.whl"))
                .is_err()
        );
        assert!(
            local
                .check(&url("https://127.0.0.1:8000/files/x.whl"))
                .is_err()
        );
        assert!(
            local
                .check(&url("http://files.pythonhosted.org/x.whl"))
                .is_err()
        );
        assert!(local.check(&url("file:///etc/passwd")).is_err());
        let allowed = FileHosts::new(
            &url("http://127.0.0.1:8000/simple/"),
            &[AllowedHost::parse("127.0.0.1:8001").unwrap()],
        )
        .unwrap();
        assert!(
            allowed
                .check(&url("http://127.0.0.1:8001/files/x.whl"))
                .is_ok()
        );
        assert!(
            allowed
                .check(&url("http://127.0.0.1:8002/files/x.whl"))
                .is_err()
        );
    }

    /// The work `parse_html` does on pathological pages, by input size.
    fn steps(page: &str) -> u64 {
        let url = Url::parse("https://up.example/simple/pkg/").unwrap();
        let mut steps = 0;
        parse_html_counting(page, &url, &mut steps).unwrap();
        steps
    }

    /// Pages of many anchors (the earlier parser lowercased the rest of
    /// the page for each one: quadratic) and broken ones: their cost stays
    /// proportional to their size, by the parser's own count of bytes
    /// examined, and doubling the page doubles it.
    #[test]
    fn html_parsing_is_linear_in_the_page_size() {
        let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let hashed = format!("<a href=\"x.whl#sha256={sha}\">x.whl");
        let complete = format!("<A\nhref='x.whl#sha256={sha}'>x.whl</A><br>\n");
        let shapes: [(&str, &str); 8] = [
            ("complete anchors", &complete),
            ("links without a hash", "<a href=\"x.whl\">x.whl</a>\n"),
            ("unclosed <a", "<a "),
            ("anchors without </a>", "<a href=\"x.whl\">x"),
            ("hashed anchors without </a>", &hashed),
            ("quotes that never close", "<a href=\"x y='z "),
            ("attribute soup", "<a a=\"1\" b='2' c=3 d e=\"\" >"),
            ("nested tags", "<a href=x><a href=y><b><i>"),
        ];
        for (what, unit) in shapes {
            let page = |bytes: usize| unit.repeat(bytes / unit.len());
            let (small, large) = (page(1 << 19), page(1 << 20));
            let (s, l) = (steps(&small), steps(&large));
            assert!(
                l <= 4 * large.len() as u64,
                "{what}: {l} steps for {} bytes",
                large.len()
            );
            assert!(
                l <= 2 * s + 2 * unit.len() as u64 + 16,
                "{what}: {s} steps for half the page, {l} for all of it"
            );
        }
    }
}

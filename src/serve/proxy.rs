//! A pull-through proxy of a PyPI-style simple index (`[volumes.<name>]
//! proxy = { type = "pypi", url = … }`): every project of the upstream,
//! with no release and no sync.
//!
//! - **Project pages** (`simple/<project>/`) are fetched on request, one
//!   upstream fetch (JSON preferred) serving both PEP 691 JSON and HTML,
//!   with links rewritten to this volume (`<prefix>/<upstream path>`, the
//!   layout of a synced volume) and `#sha256=`, `data-requires-python`,
//!   yanked and core metadata kept. A page is kept in memory and, as a
//!   document, in the disk tier (charged to `disk_size`, surviving
//!   restarts), and is fresh for `revalidate_after`; then it is asked for
//!   again with `If-None-Match`/`If-Modified-Since`. One upstream fetch
//!   per project at a time: concurrent requests wait for it.
//! - A page whose `X-PyPI-Last-Serial` is lower than the kept one's is a
//!   stale CDN answer: refused, counted, and the kept page served.
//! - While the upstream fails, the last good page is served for
//!   `stale_if_error` past its freshness, marked `X-Unimirror-Stale`.
//! - **Files** are fetched on first request through the cache's coalesced
//!   fills, and never reach a client whole unless verified: on PyPI's file
//!   host (`verify = "blake2b-path"`) against the BLAKE2b-256 their own path
//!   names, with no other state; elsewhere against the sha256 of the page
//!   that linked them (a file no kept page links is fetched only after its
//!   project's page was, and names it).
//! - **The root page** (`simple/`) lists nothing: PyPI's is tens of MB,
//!   pip and uv never read it, and a stale copy would only mislead. It
//!   says so, in HTML or PEP 691 JSON.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderMap, HeaderValue};
use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::answer::{Answer, Ask};
use super::body;
use super::media::{PEP691_JSON, prefers_json, vary_accept};
use super::refusal::Refusal;
use super::reply::{header_value, response, text};
use super::send::{Meta, Object, X_CACHE, etag_of_digest, x_cache};
use crate::cache::ObjectKey;
use crate::config::{AllowedHost, ProxyConfig, ProxyVerify};
use crate::digest::Sha256Digest;
use crate::metrics::{Outcome, Tier};
use crate::origin::{self, Check, Upstreams};
use crate::sync::pypi::{self, CoreMetadata, FileHosts, PageFile};

const X_STALE: header::HeaderName = header::HeaderName::from_static("x-unimirror-stale");
const X_SERIAL: header::HeaderName = header::HeaderName::from_static("x-pypi-last-serial");

/// A page larger than this is refused (PyPI's largest are a few MB).
const MAX_PAGE: u64 = 64 << 20;
/// Pages kept in memory, by the bytes of both their forms.
const PAGES_IN_MEMORY: u64 = 64 << 20;
/// File links remembered from pages (path → URL, hashes, size).
const LINKS_IN_MEMORY: usize = 200_000;

/// One proxy volume.
pub struct ProxyVolume {
    pub name: Arc<str>,
    pub prefix: String,
    /// Where its pages' links point: the prefix and `/`.
    files_at: Arc<str>,
    pub config: ProxyConfig,
    /// The simple index, ending in `/`.
    index: Url,
    /// The directory above it, where links' paths are resolved from.
    root: Url,
    /// Where a file path is fetched from when no page linked it.
    files_base: Url,
    verify: ProxyVerify,
    hosts: FileHosts,
    pages: quick_cache::sync::Cache<String, Arc<Page>, PageWeight>,
    links: quick_cache::sync::Cache<String, Arc<Link>>,
    /// Size and sha256 of files checked by their path, once the cache has
    /// them: what their plain record says, without reading it again.
    held: quick_cache::sync::Cache<String, (u64, Sha256Digest)>,
    /// One upstream fetch per project at a time.
    fetching: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

#[derive(Clone)]
struct PageWeight;

impl quick_cache::Weighter<String, Arc<Page>> for PageWeight {
    /// Its forms are rendered when first asked for, after it is weighed:
    /// an estimate from its files, about what both forms take.
    fn weight(&self, _: &String, p: &Arc<Page>) -> u64 {
        let files: usize = p
            .doc
            .files
            .iter()
            .map(|f| 2 * f.path.len() + f.filename.len() + 400)
            .sum();
        (2 * files) as u64 + 1024
    }
}

/// A project page as kept: what the upstream said, and both forms of it
/// as this volume serves them.
struct Page {
    doc: PageDoc,
    fetched: SystemTime,
    /// Where its links point: the volume's prefix and `/`.
    files_at: Arc<str>,
    /// Each form, rendered the first time a client asks for it (a cold
    /// page is asked for in one form; rendering both was a tenth of its
    /// cost).
    html: OnceLock<Form>,
    json: OnceLock<Form>,
}

/// One form of a page, as served.
#[derive(Clone)]
struct Form {
    body: Bytes,
    etag: HeaderValue,
}

impl Page {
    fn new(doc: PageDoc, files_at: Arc<str>) -> Page {
        Page {
            fetched: UNIX_EPOCH + Duration::from_millis(doc.fetched_ms),
            doc,
            files_at,
            html: OnceLock::new(),
            json: OnceLock::new(),
        }
    }

    /// The PEP 691 JSON form, or the PEP 503 HTML one.
    fn form(&self, json: bool) -> &Form {
        let render = || {
            let files: Vec<PageFile> = self
                .doc
                .files
                .iter()
                .map(|f| PageFile {
                    filename: f.filename.clone(),
                    path: f.path.clone(),
                    sha256: f.sha256,
                    size: f.size,
                    requires_python: f.requires_python.clone(),
                    yanked: f.yanked.clone(),
                    metadata_sha: f.metadata_sha256,
                })
                .collect();
            let (project, at) = (&self.doc.project, &*self.files_at);
            let body = Bytes::from(match json {
                true => {
                    pypi::project_json(project, at, &files).expect("a JSON value always serializes")
                }
                false => pypi::project_html(project, at, &files),
            });
            Form {
                etag: etag_of_digest(&Sha256Digest::of(&body)),
                body,
            }
        };
        match json {
            true => self.json.get_or_init(render),
            false => self.html.get_or_init(render),
        }
    }
}

/// What is kept of an upstream page (in the disk tier as JSON): its
/// validators and serial, and its files.
#[derive(Clone, Serialize, Deserialize)]
struct PageDoc {
    project: String,
    /// When the upstream last confirmed it, ms since the epoch.
    fetched_ms: u64,
    etag: Option<String>,
    last_modified: Option<String>,
    serial: Option<u64>,
    files: Vec<DocFile>,
}

#[derive(Clone, Serialize, Deserialize)]
struct DocFile {
    filename: String,
    url: String,
    /// Its path in this volume (the upstream's layout).
    path: String,
    sha256: Sha256Digest,
    size: Option<u64>,
    requires_python: Option<String>,
    yanked: Option<String>,
    metadata_sha256: Option<Sha256Digest>,
}

/// A file link a kept page gave.
struct Link {
    /// Parsed when a client asks for the file, not for every link of
    /// every page a client asks for.
    url: Box<str>,
    sha256: Sha256Digest,
    size: Option<u64>,
    metadata_sha256: Option<Sha256Digest>,
}

impl Link {
    /// Its URL, with `suffix` added (`.metadata` for the file's core
    /// metadata). Pages are checked when kept, so this only fails for a
    /// document someone edited.
    fn parse(&self, suffix: &str) -> Result<Url, Refusal> {
        Url::parse(&format!("{}{suffix}", self.url)).map_err(|_| Refusal::NotFound)
    }
}

/// Where a project page stands after asking for it.
enum Lookup {
    /// Kept and fresh: from memory, the disk tier, or fetched by the
    /// request this one waited for.
    Fresh(Arc<Page>, Outcome),
    /// Fetched (or revalidated) now.
    Fetched(Arc<Page>),
    /// The kept page, served because the upstream failed (within
    /// `stale_if_error`) or answered an older serial.
    Stale(Arc<Page>, &'static str),
    NotFound,
    Failed(String),
}

/// What one upstream request for a page gave.
enum Answered {
    Page(PageDoc),
    NotModified,
    NotFound,
    Failed(String),
}

impl ProxyVolume {
    pub fn new(name: &str, prefix: &str, config: &ProxyConfig) -> Result<ProxyVolume> {
        let index = Url::parse(&format!("{}/", config.url.trim_end_matches('/')))
            .with_context(|| format!("proxy url `{}`", config.url))?;
        let on_pypi = matches!(index.host_str(), Some("pypi.org" | "test.pypi.org"));
        let files_base = match &config.files_url {
            Some(u) => Url::parse(&format!("{}/", u.trim_end_matches('/')))?,
            None if index.host_str() == Some("pypi.org") => {
                Url::parse("https://files.pythonhosted.org/")?
            }
            None if index.host_str() == Some("test.pypi.org") => {
                Url::parse("https://test-files.pythonhosted.org/")?
            }
            None => index.join("../")?,
        };
        let verify = config.verify.unwrap_or(match on_pypi {
            true => ProxyVerify::Blake2bPath,
            false => ProxyVerify::PageSha256,
        });
        let mut allowed = config.allow_file_hosts.clone();
        if let Some(host) = files_base.host_str() {
            let entry = match files_base.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_string(),
            };
            allowed.push(AllowedHost::parse(&entry).map_err(anyhow::Error::msg)?);
        }
        Ok(ProxyVolume {
            name: name.into(),
            prefix: prefix.to_string(),
            files_at: format!("{prefix}/").into(),
            config: config.clone(),
            hosts: FileHosts::new(&index, &allowed)?,
            root: pypi::mirror_root(&index)?,
            index,
            files_base,
            verify,
            pages: quick_cache::sync::Cache::with_weighter(4096, PAGES_IN_MEMORY, PageWeight),
            links: quick_cache::sync::Cache::new(LINKS_IN_MEMORY),
            held: quick_cache::sync::Cache::new(LINKS_IN_MEMORY),
            fetching: Mutex::new(HashMap::new()),
        })
    }

    /// The lock of one project's upstream fetch.
    fn fetch_lock(&self, project: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.fetching.lock().expect("not poisoned");
        if let Some(lock) = map.get(project).and_then(Weak::upgrade) {
            return lock;
        }
        if map.len() > 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(project.to_string(), Arc::downgrade(&lock));
        lock
    }

    fn fresh(&self, page: &Page, now: SystemTime) -> bool {
        now < page.fetched + self.config.revalidate_after
    }

    /// One project's page: kept and fresh, or asked for upstream (once,
    /// however many requests wait), or kept and stale when that fails.
    async fn lookup(&self, ask: &Ask<'_>, project: &str) -> Lookup {
        let now = SystemTime::now();
        if let Some(p) = self.pages.get(project)
            && self.fresh(&p, now)
        {
            return Lookup::Fresh(p, Outcome::HitMemory);
        }
        let lock = self.fetch_lock(project);
        let _held = lock.lock().await;
        let cache = &ask.daemon.cache;
        let mut kept = self.pages.get(project);
        let mut outcome = Outcome::Coalesced;
        if kept.is_none()
            && let Some((_, bytes)) = cache.document(&self.name, &doc_key(project)).await
            && let Ok(doc) = serde_json::from_slice::<PageDoc>(&bytes)
            && let page = self.render(doc)
        {
            kept = Some(self.remember(page));
            outcome = Outcome::HitDisk;
        }
        if let Some(p) = &kept
            && self.fresh(p, SystemTime::now())
        {
            return Lookup::Fresh(p.clone(), outcome);
        }
        let upstreams = &ask.daemon.upstreams;
        let answered = self.fetch(upstreams, project, kept.as_deref()).await;
        let now = SystemTime::now();
        let served_stale = |kept: Option<Arc<Page>>, why: &'static str| match kept {
            Some(p)
                if now < p.fetched + self.config.revalidate_after + self.config.stale_if_error =>
            {
                Some(Lookup::Stale(p, why))
            }
            _ => None,
        };
        match answered {
            Answered::Page(doc) => {
                if let Some(p) = &kept
                    && let (Some(old), Some(new)) = (p.doc.serial, doc.serial)
                    && new < old
                {
                    ask.daemon
                        .metrics
                        .proxy_pages_refused(&self.name, "older-serial")
                        .inc();
                    tracing::warn!(volume = %self.name, project, "the upstream answered serial {new}, older than the kept page's {old}: a stale CDN copy, refused; the kept page is served");
                    return Lookup::Stale(p.clone(), "upstream-serial-older");
                }
                let page = self.remember(self.render(doc));
                self.keep(ask, &page);
                Lookup::Fetched(page)
            }
            Answered::NotModified => match kept {
                Some(p) => {
                    let mut doc = p.doc.clone();
                    doc.fetched_ms = unix_ms(now);
                    let page = self.remember(Page {
                        doc,
                        fetched: now,
                        files_at: p.files_at.clone(),
                        html: p.html.clone(),
                        json: p.json.clone(),
                    });
                    self.keep(ask, &page);
                    Lookup::Fetched(page)
                }
                None => {
                    Lookup::Failed("the upstream answered 304 to an unconditional request".into())
                }
            },
            Answered::NotFound => {
                self.pages.remove(project);
                Lookup::NotFound
            }
            Answered::Failed(why) => {
                tracing::warn!(volume = %self.name, project, "project page not fetched: {why}");
                served_stale(kept, "upstream-unreachable").unwrap_or(Lookup::Failed(why))
            }
        }
    }

    /// Keeps a page in memory, and its links.
    fn remember(&self, page: Page) -> Arc<Page> {
        for f in &page.doc.files {
            let link = Link {
                url: f.url.as_str().into(),
                sha256: f.sha256,
                size: f.size,
                metadata_sha256: f.metadata_sha256,
            };
            self.links.insert(f.path.clone(), Arc::new(link));
        }
        let page = Arc::new(page);
        self.pages.insert(page.doc.project.clone(), page.clone());
        page
    }

    /// Keeps a page's document in the disk tier, in the background: the
    /// client does not wait for the write (the page is in memory already),
    /// nor for its serializing, which the cache's writer does.
    fn keep(&self, ask: &Ask<'_>, page: &Arc<Page>) {
        let stamp = page.doc.fetched_ms as i128 * 1_000_000;
        let key = doc_key(&page.doc.project);
        let estimate = quick_cache::Weighter::weight(&PageWeight, &page.doc.project, page) / 2;
        let page = page.clone();
        let render = Box::new(move || serde_json::to_vec(&page.doc).ok().map(Bytes::from));
        ask.daemon
            .cache
            .keep_document(&self.name, &key, stamp, estimate, render);
    }

    /// Asks the upstream for a project's page, conditionally when one is
    /// kept.
    async fn fetch(&self, upstreams: &Upstreams, project: &str, kept: Option<&Page>) -> Answered {
        let Ok(url) = self.index.join(&format!("{project}/")) else {
            return Answered::NotFound;
        };
        let mut request = upstreams
            .client()
            .get(url.clone())
            .header(header::ACCEPT, pypi::ACCEPT);
        if let Some(p) = kept {
            if let Some(e) = &p.doc.etag {
                request = request.header(header::IF_NONE_MATCH, e);
            }
            if let Some(lm) = &p.doc.last_modified {
                request = request.header(header::IF_MODIFIED_SINCE, lm);
            }
        }
        let got = tokio::time::timeout(upstreams.timeout(), async {
            let mut resp = request
                .send()
                .await
                .map_err(|e| crate::upstream::error_chain(&e))?;
            match resp.status().as_u16() {
                200 => {}
                304 => return Ok(Answered::NotModified),
                404 | 410 => return Ok(Answered::NotFound),
                s => return Err(format!("{url} answered {s}")),
            }
            let header = |name: header::HeaderName| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let (etag, last_modified) = (header(header::ETAG), header(header::LAST_MODIFIED));
            let serial = header(X_SERIAL).and_then(|s| s.trim().parse().ok());
            let content_type = header(header::CONTENT_TYPE).unwrap_or_default();
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| crate::upstream::error_chain(&e))?
            {
                if body.len() as u64 + chunk.len() as u64 > MAX_PAGE {
                    return Err(format!("{url}: a page over {MAX_PAGE} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            let dists = if content_type.starts_with(PEP691_JSON) {
                pypi::parse_json(&body, &url)
            } else {
                pypi::parse_html(&String::from_utf8_lossy(&body), &url)
            }
            .map_err(|e| format!("{url}: {e:#}"))?;
            let files = self.files_of(project, dists);
            Ok(Answered::Page(PageDoc {
                project: project.to_string(),
                fetched_ms: unix_ms(SystemTime::now()),
                etag,
                last_modified,
                serial,
                files,
            }))
        })
        .await;
        match got {
            Ok(Ok(a)) => a,
            Ok(Err(why)) => Answered::Failed(why),
            Err(_) => Answered::Failed(format!(
                "{url}: no answer in {}",
                humantime::format_duration(upstreams.timeout())
            )),
        }
    }

    /// The files of a page this volume links: each on an allowed host, at
    /// a path of the synced layout; others are left out (and logged).
    fn files_of(&self, project: &str, dists: Vec<pypi::Dist>) -> Vec<DocFile> {
        let mut files = Vec::new();
        for d in dists {
            let path = self
                .hosts
                .check(&d.url)
                .and_then(|()| pypi::mirror_path_under(&self.root, &d.url, &d.filename));
            match path {
                Ok(path) => files.push(DocFile {
                    filename: d.filename,
                    url: d.url.to_string(),
                    path,
                    sha256: d.sha256,
                    size: d.size,
                    requires_python: d.requires_python,
                    yanked: d.yanked,
                    metadata_sha256: match d.core_metadata {
                        CoreMetadata::Hashed(sha) => Some(sha),
                        _ => None,
                    },
                }),
                Err(e) => {
                    tracing::warn!(volume = %self.name, project, "link left out: {e:#}")
                }
            }
        }
        files
    }

    /// A page kept from `doc`, its links pointing at this volume.
    fn render(&self, doc: PageDoc) -> Page {
        Page::new(doc, self.files_at.clone())
    }

    /// The link of `path` from a kept page; when none is known, the page
    /// of the project its file name names is looked up first.
    async fn link(&self, ask: &Ask<'_>, path: &str) -> Option<Arc<Link>> {
        if let Some(l) = self.links.get(path) {
            return Some(l);
        }
        let filename = path.rsplit('/').next()?;
        let project = project_of(filename)?;
        match self.lookup(ask, &project).await {
            Lookup::Fresh(..) | Lookup::Fetched(_) | Lookup::Stale(..) => self.links.get(path),
            Lookup::NotFound | Lookup::Failed(_) => None,
        }
    }

    /// A page's answer, in the form the request's Accept prefers.
    fn page_answer(
        &self,
        ask: &Ask<'_>,
        page: &Page,
        outcome: Outcome,
        stale: Option<&str>,
    ) -> Answer {
        let accept = ask
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let json = prefers_json(accept);
        let Form { body: bytes, etag } = page.form(json);
        let content_type = match json {
            true => PEP691_JSON,
            false => "text/html; charset=utf-8",
        };
        let mut h = HeaderMap::with_capacity(8);
        h.insert(header::ETAG, etag.clone());
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        let max_age = self.config.revalidate_after.as_secs().min(600);
        h.insert(
            header::CACHE_CONTROL,
            header_value(format!("public, max-age={max_age}")),
        );
        if let Some(serial) = page.doc.serial {
            h.insert(X_SERIAL, HeaderValue::from(serial));
        }
        if let Some(why) = stale {
            h.insert(X_STALE, HeaderValue::from_str(why).expect("a token"));
        }
        let matched = ask
            .headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == etag.as_bytes());
        let mut r = if matched {
            response(StatusCode::NOT_MODIFIED, h, body::empty())
        } else {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            let body = match ask.head {
                true => body::empty(),
                false => body::bytes(bytes.clone()),
            };
            response(StatusCode::OK, h, body)
        };
        vary_accept(&mut r);
        r.headers_mut().insert(X_CACHE, x_cache(outcome));
        let mut a = ask.answer(r);
        a.outcome = outcome;
        a.tier = match outcome {
            Outcome::HitMemory | Outcome::Coalesced => Tier::Memory,
            Outcome::HitDisk => Tier::Disk,
            _ => Tier::Origin,
        };
        a
    }

    /// A project page (`project` as asked for, `simple/<project>/`).
    pub async fn page(&self, ask: &Ask<'_>, asked: &str) -> Result<Answer, Refusal> {
        let project = pypi::normalize(asked);
        if project.is_empty() {
            return Err(Refusal::NotFound);
        }
        if project != asked {
            // PEP 503: a client may be redirected to the normalized name.
            let to = format!("{}/simple/{project}/", self.prefix);
            let mut r = text(StatusCode::MOVED_PERMANENTLY, "");
            r.headers_mut().insert(header::LOCATION, header_value(to));
            return Ok(ask.answer(r));
        }
        Ok(match self.lookup(ask, &project).await {
            Lookup::Fresh(p, outcome) => self.page_answer(ask, &p, outcome, None),
            Lookup::Fetched(p) => self.page_answer(ask, &p, Outcome::Miss, None),
            Lookup::Stale(p, why) => self.page_answer(ask, &p, Outcome::Stale, Some(why)),
            Lookup::NotFound => return Err(Refusal::NotFound),
            Lookup::Failed(why) => ask.answer(text(
                StatusCode::BAD_GATEWAY,
                &format!("the upstream index could not give this page, and none is kept: {why}\n"),
            )),
        })
    }

    /// The root page: lists nothing, and says why.
    fn root(&self, ask: &Ask<'_>) -> Answer {
        let accept = ask
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (body, content_type) = match prefers_json(accept) {
            true => (
                "{\"meta\": {\"api-version\": \"1.1\"}, \"projects\": []}\n".to_string(),
                PEP691_JSON,
            ),
            false => (
                format!(
                    "<!DOCTYPE html>\n<html><head><meta name=\"pypi:repository-version\" content=\"1.1\"><title>Simple index</title></head><body>\n<p>A pull-through proxy of {}: projects are not listed; ask for <code>simple/&lt;project&gt;/</code>.</p>\n</body></html>\n",
                    crate::html::escape(self.index.as_str())
                ),
                "text/html; charset=utf-8",
            ),
        };
        let mut h = HeaderMap::with_capacity(4);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        let body = match ask.head {
            true => body::empty(),
            false => body::bytes(body),
        };
        let mut r = response(StatusCode::OK, h, body);
        vary_accept(&mut r);
        ask.answer(r)
    }

    /// A file (or a file's core metadata), fetched on first request and
    /// verified.
    async fn file(&self, ask: &Ask<'_>, path: &str, rel: &[u8]) -> Result<Answer, Refusal> {
        let (url, check, size) = if let Some(dist) = path.strip_suffix(".metadata") {
            let link = self.link(ask, dist).await.ok_or(Refusal::NotFound)?;
            let sha = link.metadata_sha256.ok_or(Refusal::NotFound)?;
            let url = link.parse(".metadata")?;
            (url, Check::Sha256(sha), None)
        } else if let Some(link) = self.links.get(path) {
            (link.parse("")?, Check::Sha256(link.sha256), link.size)
        } else if self.verify == ProxyVerify::Blake2bPath
            && let Some(digest) = blake2_of_path(path)
        {
            let url = self.files_base.join(path).map_err(|_| Refusal::NotFound)?;
            (url, Check::Blake2b(digest), None)
        } else {
            let link = self.link(ask, path).await.ok_or(Refusal::NotFound)?;
            (link.parse("")?, Check::Sha256(link.sha256), link.size)
        };
        let upstreams = &ask.daemon.upstreams;
        // A file the cache holds needs no upstream, even for its size. One
        // checked by its path is known by its plain record (read once,
        // then remembered).
        let cache = &ask.daemon.cache;
        let recorded = match check {
            Check::Sha256(_) => None,
            Check::Blake2b(_) => match self.held.get(path) {
                Some(held) => Some(held),
                None => {
                    let (c, volume, rel) = (cache.clone(), self.name.clone(), rel.to_vec());
                    tokio::task::spawn_blocking(move || c.plain_record(&volume, &rel))
                        .await
                        .ok()
                        .flatten()
                        .map(|r| (r.size, r.sha))
                }
            },
        };
        let recorded = recorded.filter(|(_, sha)| cache.stored_size(sha).is_some());
        if let Some(held) = recorded {
            self.held.insert(path.to_string(), held);
        }
        let held_size = match check {
            Check::Sha256(sha) => cache.stored_size(&sha),
            Check::Blake2b(_) => recorded.map(|(size, _)| size),
        };
        let size = match size.or(held_size) {
            Some(s) => s,
            None => match self.size_of(upstreams, &url).await {
                Ok(Some(s)) => s,
                Ok(None) => return Err(Refusal::NotFound),
                Err(why) => {
                    tracing::warn!(volume = %self.name, %url, "{why}");
                    return Ok(ask.answer(text(
                        StatusCode::BAD_GATEWAY,
                        &format!("the upstream of this file could not be reached: {why}\n"),
                    )));
                }
            },
        };
        let (key, sha, etag) = match check {
            Check::Sha256(sha) => (ObjectKey::Content(sha), Some(sha), etag_of_digest(&sha)),
            Check::Blake2b(digest) => {
                let key = ObjectKey::Plain {
                    volume: self.name.clone(),
                    path: rel.into(),
                    size,
                    mtime_ns: 0,
                };
                // A fill that just ended is remembered before its record
                // is written: without this, a client asking again at once
                // found neither, and the file was fetched again.
                let sha = recorded
                    .filter(|(s, _)| *s == size)
                    .map(|(_, sha)| sha)
                    .or_else(|| cache.remembered_plain(&key));
                let etag = header_value(format!("\"b2-{}\"", hex::encode(digest)));
                (key, sha, etag)
            }
        };
        let object = Object::Fetched {
            meta: Meta {
                size,
                mtime: UNIX_EPOCH,
                etag,
                name: rel,
                immutable: true,
            },
            key,
            sha,
            origin: origin::Object::Upstream {
                url: url.as_str().into(),
                check,
                size,
                upstreams: upstreams.clone(),
            },
        };
        ask.send(object).await
    }

    /// A file's size by a HEAD request: `None` when the upstream has no
    /// such file.
    async fn size_of(&self, upstreams: &Upstreams, url: &Url) -> Result<Option<u64>, String> {
        let head = upstreams.client().head(url.clone()).send();
        let resp = match tokio::time::timeout(upstreams.timeout(), head).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(crate::upstream::error_chain(&e)),
            Err(_) => return Err("no answer in time".into()),
        };
        match resp.status().as_u16() {
            200 => resp
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .map(Some)
                .ok_or_else(|| format!("{url}: no Content-Length")),
            404 | 410 => Ok(None),
            s => Err(format!("{url} answered {s}")),
        }
    }
}

impl Ask<'_> {
    /// A proxy volume's path `rel` (its prefix taken off).
    pub async fn proxy(&self, vol: &ProxyVolume, rel: &[u8]) -> Result<Answer, Refusal> {
        let Ok(path) = std::str::from_utf8(rel) else {
            return Err(Refusal::NotFound);
        };
        match path.strip_prefix("simple") {
            Some("") if !self.path.trailing_slash => {
                Ok(self.answer(super::reply::redirect(self.path)))
            }
            Some("") => Ok(vol.root(self)),
            Some(rest) if rest.starts_with('/') => {
                let project = &rest[1..];
                if project.contains('/') || project.is_empty() {
                    return Err(Refusal::NotFound);
                }
                if !self.path.trailing_slash {
                    return Ok(self.answer(super::reply::redirect(self.path)));
                }
                vol.page(self, project).await
            }
            _ if path.is_empty() => Ok(self.answer(super::reply::redirect(self.path))),
            _ => vol.file(self, path, rel).await,
        }
    }

    /// A released volume's path that its release lacks, asked of its
    /// fallback proxy: project pages only (their links lead to the
    /// proxy's own prefix). Counted as `fallback`.
    pub async fn fallback(&self, vol: &ProxyVolume, rel: &[u8]) -> Result<Answer, Refusal> {
        let path = std::str::from_utf8(rel).map_err(|_| Refusal::NotFound)?;
        let Some(project) = path.strip_prefix("simple/") else {
            return Err(Refusal::NotFound);
        };
        if project.is_empty() || project.contains('/') {
            return Err(Refusal::NotFound);
        }
        if !self.path.trailing_slash {
            return Ok(self.answer(super::reply::redirect(self.path)));
        }
        let mut a = vol.page(self, project).await?;
        if a.response.status().is_success() || a.response.status() == StatusCode::NOT_MODIFIED {
            a.outcome = Outcome::Fallback;
            a.response
                .headers_mut()
                .insert(X_CACHE, x_cache(Outcome::Fallback));
        }
        Ok(a)
    }
}

/// The key a project's page document is kept under.
fn doc_key(project: &str) -> Vec<u8> {
    format!("simple/{project}/").into_bytes()
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// The BLAKE2b-256 a PyPI file path names: `packages/ab/cd/<60 hex>/<name>`,
/// the digest being `abcd` and the 60 digits.
pub fn blake2_of_path(path: &str) -> Option<[u8; 32]> {
    let mut s = path.split('/');
    let (p, a, b, c, name) = (s.next()?, s.next()?, s.next()?, s.next()?, s.next()?);
    if p != "packages" || s.next().is_some() || name.is_empty() {
        return None;
    }
    if a.len() != 2 || b.len() != 2 || c.len() != 60 {
        return None;
    }
    let hexed = format!("{a}{b}{c}");
    if !hexed
        .bytes()
        .all(|x| x.is_ascii_digit() || (b'a'..=b'f').contains(&x))
    {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hexed, &mut out).ok()?;
    Some(out)
}

/// The project a distribution's file name names (normalized): the part
/// before the first `-` that a digit follows (`greet_lib-1.0.tar.gz`,
/// `greet-1.0-py3-none-any.whl`).
pub fn project_of(filename: &str) -> Option<String> {
    let b = filename.as_bytes();
    let at = (1..b.len()).find(|&i| b[i - 1] == b'-' && b[i].is_ascii_digit())?;
    let name = pypi::normalize(&filename[..at - 1]);
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pypi_paths_name_their_blake2b() {
        let hex = "4f3a9c1d".repeat(8);
        let path = format!(
            "packages/{}/{}/{}/x-1.0.tar.gz",
            &hex[..2],
            &hex[2..4],
            &hex[4..]
        );
        let got = blake2_of_path(&path).unwrap();
        assert_eq!(hex::encode(got), hex);
        for bad in [
            format!("packages/{}/{}/{}/", &hex[..2], &hex[2..4], &hex[4..]),
            format!("packages/{}/{}/{}", &hex[..2], &hex[2..4], &hex[4..]),
            format!("files/{}/{}/{}/x", &hex[..2], &hex[2..4], &hex[4..]),
            format!("packages/{}/{}/{}/x", &hex[..3], &hex[3..5], &hex[5..]),
            format!("packages/{}/{}/{}/x", "AB", &hex[2..4], &hex[4..]),
            format!("packages/{}/{}/{}/a/x", &hex[..2], &hex[2..4], &hex[4..]),
        ] {
            assert_eq!(blake2_of_path(&bad), None, "{bad}");
        }
    }

    #[test]
    fn a_file_name_names_its_project() {
        for (file, project) in [
            ("greet-1.0-py3-none-any.whl", Some("greet")),
            ("greet_lib-1.0.tar.gz", Some("greet-lib")),
            ("Zope.Interface-5.0.zip", Some("zope-interface")),
            ("a-b-c-2.0.tar.gz", Some("a-b-c")),
            ("nodigits.tar.gz", None),
            ("-1.0.tar.gz", None),
        ] {
            assert_eq!(project_of(file).as_deref(), project, "{file}");
        }
    }
}

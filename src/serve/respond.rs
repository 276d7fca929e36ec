//! Turning one request into one response: routing to a volume, finding the
//! path (in the current release, a grace-period release, a pinned release
//! or a plain tree), and the HTTP rules (methods, ranges, conditional
//! requests, headers, listings, redirects).

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::body::{self, Access, Body, Metered};
use super::listing::{self, ListEntry, Listed};
use super::path::CleanPath;
use super::plain::{Looked, PlainVolume, Refusal};
use super::range::{self, RangeAnswer};
use super::released::{LoadedRelease, PinnedError, ReleasedVolume};
use super::{Daemon, Volume, VolumeKind, pages};
use crate::cache::direct::Direct;
use crate::cache::fill::{FillRequest, WaitError};
use crate::cache::{ObjectKey, Source};
use crate::metrics::{OriginError, Outcome, Served, Tier};
use crate::volume::manifest::{Entry, Kind, Sha256Digest};

/// Longest symlink chain followed inside a release.
const MAX_LINK_HOPS: usize = 16;

pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub const SHORT: &str = "public, max-age=60";

/// The Cache-Control header of content that never changes, or of the rest.
/// (`const` blocks: a header value made from a string checks each byte
/// when made at run time.)
pub fn cache_control_value(immutable: bool) -> HeaderValue {
    match immutable {
        true => const { HeaderValue::from_static(IMMUTABLE) },
        false => const { HeaderValue::from_static(SHORT) },
    }
}

/// A response and what the access log says about it.
pub struct Answer {
    pub response: Response<Body>,
    /// The volume's counters; `None` outside any volume.
    pub volume: Option<Arc<Served>>,
    pub outcome: Outcome,
    pub tier: Tier,
    pub release: Option<u64>,
}

impl Answer {
    pub fn plain(response: Response<Body>) -> Answer {
        Answer {
            response,
            volume: None,
            outcome: Outcome::None,
            tier: Tier::None,
            release: None,
        }
    }

    fn of(volume: &Volume, response: Response<Body>) -> Answer {
        Answer {
            volume: Some(volume.served.clone()),
            ..Answer::plain(response)
        }
    }
}

/// Answers one request, and wraps the body so the request is logged and
/// counted when the response ends.
pub async fn handle<B>(
    daemon: &Arc<Daemon>,
    req: Request<B>,
    peer: std::net::SocketAddr,
) -> Response<Metered> {
    let started = Instant::now();
    let a = answer(daemon, &req).await;
    let (mut parts, inner) = a.response.into_parts();
    harden(&mut parts.headers);
    let length = if req.method() == Method::HEAD {
        Some(0)
    } else {
        parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
    };
    let access = Access {
        started,
        peer,
        method: req.method().clone(),
        path: req.uri().path().to_string(),
        volume: a.volume.unwrap_or_else(|| daemon.unrouted.clone()),
        status: parts.status.as_u16(),
        outcome: a.outcome,
        tier: a.tier,
        release: a.release,
    };
    Response::from_parts(parts, Metered::new(inner, access, length))
}

async fn answer<B>(daemon: &Arc<Daemon>, req: &Request<B>) -> Answer {
    let method = req.method();
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Answer::plain(r);
    }
    // GET and HEAD carry no body here. One that comes with a body (or with
    // Transfer-Encoding, or Content-Length and Transfer-Encoding at odds) is
    // how request smuggling starts: refused, and the connection closed so
    // that the body is never read as a request.
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0");
    if has_body {
        tracing::info!("refused: a request body on {method}");
        let mut r = text(
            StatusCode::BAD_REQUEST,
            "GET and HEAD requests take no body\n",
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Answer::plain(r);
    }
    let target_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target_len > daemon.max_url_length {
        tracing::info!(length = target_len, "refused: request target too long");
        return Answer::plain(text(StatusCode::URI_TOO_LONG, "request target too long\n"));
    }
    let raw = req.uri().path();
    let path = match CleanPath::parse(raw) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(path = raw, "bad request path: {e}");
            return Answer::plain(text(StatusCode::BAD_REQUEST, &format!("bad path: {e}\n")));
        }
    };
    let head = method == Method::HEAD;
    if let Some(r) = pages::own_page(daemon, &path, req.headers(), head).await {
        return Answer::plain(r);
    }
    let Some((volume, skip)) = daemon.route(&path) else {
        return Answer::plain(text(StatusCode::NOT_FOUND, "no such volume\n"));
    };
    let ask = Ask {
        daemon,
        volume: &volume,
        path: &path,
        headers: req.headers(),
        head,
    };
    match &volume.kind {
        VolumeKind::Released(r) => ask.released(r, skip).await,
        VolumeKind::Plain(p) => ask.plain(p, path.rest(skip)).await,
    }
}

/// One request for a volume's path.
struct Ask<'a> {
    daemon: &'a Arc<Daemon>,
    volume: &'a Volume,
    path: &'a CleanPath,
    headers: &'a HeaderMap,
    head: bool,
}

/// A file to send, however it was found.
struct Object<'a> {
    key: ObjectKey,
    sha: Option<Sha256Digest>,
    size: u64,
    mtime: SystemTime,
    mtime_ns: Option<i128>,
    /// Quoted, ready to send.
    etag: HeaderValue,
    origin: Origin<'a>,
    name: &'a [u8],
    cache_control: HeaderValue,
}

impl<'a> Object<'a> {
    /// A released volume's file, by its manifest entry.
    fn released(
        dir: &'a crate::volume::VolumeDir,
        name: &'a [u8],
        e: &Entry,
        cache_control: HeaderValue,
    ) -> Object<'a> {
        Object {
            key: ObjectKey::Content(e.sha256),
            sha: Some(e.sha256),
            size: e.size,
            mtime: unix(e.mtime),
            mtime_ns: None,
            etag: etag_of_digest(&e.sha256),
            origin: Origin::Released(dir),
            name,
            cache_control,
        }
    }
}

impl Ask<'_> {
    async fn released(&self, vol: &Arc<ReleasedVolume>, skip: usize) -> Answer {
        let mut rel = self.path.rest(skip);
        let pinned_id = rel.split(|&b| b == b'/').next().and_then(pin_id);
        let (first, pinned) = match pinned_id {
            Some(id) => {
                rel = super::path::rest_after(rel, 1);
                match vol.pinned(id).await {
                    Ok(r) => (r, true),
                    Err(PinnedError::Unknown) => {
                        tracing::info!(volume = %self.volume.name, "pinned release #{id} was never published");
                        return self.answer(text(StatusCode::NOT_FOUND, "no such release\n"));
                    }
                    Err(PinnedError::Unavailable(e)) => {
                        tracing::warn!(volume = %self.volume.name, "pinned release #{id} cannot be loaded: {e}");
                        return self.answer(text(StatusCode::NOT_FOUND, "no such release\n"));
                    }
                }
            }
            None => match vol.current() {
                Some(r) => (r, false),
                None => {
                    return self.answer(text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "this volume has no release yet\n",
                    ));
                }
            },
        };
        // The current (or pinned) release first; then, for a path the
        // current one lacks, the recent ones still in their grace period
        // (looked up only then: most requests never need them).
        let previous = || match pinned {
            true => Vec::new(),
            false => vol.snapshot().map(|s| s.previous).unwrap_or_default(),
        };
        let candidates = std::iter::once(first).chain(std::iter::once_with(previous).flatten());
        let mut found = None;
        for (i, r) in candidates.enumerate() {
            match resolve(&r, rel) {
                Ok(Some(hit)) => {
                    found = Some((r, hit, i > 0));
                    break;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(volume = %self.volume.name, release = r.meta.id, "manifest read failed: {e:#}");
                    return self
                        .answer(text(StatusCode::INTERNAL_SERVER_ERROR, "manifest error\n"));
                }
            }
        }
        let Some((release, (resolved, entry), stale)) = found else {
            return self.answer(text(StatusCode::NOT_FOUND, "not found\n"));
        };
        let cache_control = |path: &[u8]| match pinned {
            true => cache_control_value(true),
            false => self.cache_control(path),
        };
        let object = |path, e| Object::released(&vol.dir, path, e, cache_control(path));
        let mut a = match entry.kind {
            Kind::Dir if !self.path.trailing_slash => self.answer(redirect(self.path)),
            Kind::Dir => {
                let mut a = None;
                for name in index_candidates(self.headers) {
                    let index = join(&resolved, name);
                    if let Ok(Some((_, e))) = resolve(&release, &index)
                        && e.kind == Kind::File
                    {
                        a = Some(self.send(object(&index, &e)).await);
                        break;
                    }
                }
                match a {
                    Some(mut a) => {
                        vary_accept(&mut a.response);
                        a
                    }
                    None => self.answer(self.listing_of_release(&release, &resolved).await),
                }
            }
            _ => self.send(object(&resolved, &entry)).await,
        };
        a.release = Some(release.meta.id);
        a.response
            .headers_mut()
            .insert(X_RELEASE, release.id_header.clone());
        if stale && a.outcome != Outcome::None {
            a.outcome = Outcome::Stale;
        }
        a
    }

    async fn plain(&self, vol: &Arc<PlainVolume>, rel: &[u8]) -> Answer {
        let rel = rel.to_vec();
        let Looked { seen, mut stale } = {
            let (v, r) = (vol.clone(), rel.clone());
            match tokio::task::spawn_blocking(move || v.lookup(&r)).await {
                Ok(Ok(s)) => s,
                Ok(Err(Refusal::NotFound | Refusal::Outside)) => {
                    return self.answer(text(StatusCode::NOT_FOUND, "not found\n"));
                }
                Ok(Err(Refusal::Unreachable)) => {
                    return self.answer(text(
                        StatusCode::BAD_GATEWAY,
                        "the origin tree cannot be read\n",
                    ));
                }
                Err(e) => {
                    tracing::error!("plain lookup: {e}");
                    return self.answer(text(StatusCode::INTERNAL_SERVER_ERROR, "error\n"));
                }
            }
        };
        if seen.is_dir && !self.path.trailing_slash {
            return self.answer(redirect(self.path));
        }
        let mut target = (rel.clone(), seen.clone());
        let directory = seen.is_dir;
        if directory {
            let mut index = None;
            for name in index_candidates(self.headers) {
                let path = join(&rel, name);
                let (v, p) = (vol.clone(), path.clone());
                if let Ok(Ok(l)) = tokio::task::spawn_blocking(move || v.lookup(&p)).await
                    && !l.seen.is_dir
                {
                    stale |= l.stale;
                    index = Some((path, l.seen));
                    break;
                }
            }
            match index {
                Some(i) => target = i,
                None => {
                    let v = vol.clone();
                    let dir = seen.clone();
                    let (title, root) = (listing::title(self.path), self.path.is_root());
                    let page = tokio::task::spawn_blocking(move || {
                        v.list(&dir).map(|l| listing::render(&title, root, l))
                    })
                    .await;
                    return match page {
                        Ok(Ok(page)) => self.answer(listing::response(page, self.head)),
                        _ if stale => self.answer(text(
                            StatusCode::BAD_GATEWAY,
                            "the origin tree cannot be read\n",
                        )),
                        _ => self.answer(text(StatusCode::NOT_FOUND, "not found\n")),
                    };
                }
            }
        }
        let (rel, seen) = target;
        let key = ObjectKey::Plain {
            volume: vol.name.clone(),
            path: rel.as_slice().into(),
            size: seen.size,
            mtime_ns: seen.mtime_ns,
        };
        let mut sha = seen.sha.get().copied();
        if sha.is_none() {
            let (cache, k, s) = (self.daemon.cache.clone(), key.clone(), seen.clone());
            sha = tokio::task::spawn_blocking(move || {
                let found = cache.plain_sha(&k);
                if let Some(f) = found {
                    let _ = s.sha.set(f);
                }
                found
            })
            .await
            .ok()
            .flatten();
        }
        let object = Object {
            key,
            sha,
            size: seen.size,
            mtime: unix((seen.mtime_ns / 1_000_000_000) as i64),
            mtime_ns: Some(seen.mtime_ns),
            // Strong: the same (size, mtime) is taken to be the same bytes,
            // which is what revalidation by stat relies on anyway.
            etag: HeaderValue::from_str(&format!("\"{:x}-{:x}\"", seen.size, seen.mtime_ns))
                .expect("hex digits are a valid header value"),
            origin: Origin::File(seen.real.clone()),
            name: &rel,
            cache_control: self.cache_control(&rel),
        };
        let mut a = self.send(object).await;
        if directory {
            vary_accept(&mut a.response);
        }
        if stale {
            a.response
                .headers_mut()
                .insert(X_STALE, HeaderValue::from_static("origin-unreachable"));
            if a.outcome != Outcome::None {
                a.outcome = Outcome::Stale;
            }
        }
        a
    }

    fn answer(&self, response: Response<Body>) -> Answer {
        Answer::of(self.volume, response)
    }

    fn cache_control(&self, path: &[u8]) -> HeaderValue {
        cache_control_value(self.volume.is_immutable(path))
    }

    /// Sends an object: conditional requests, ranges, and its bytes from
    /// whichever tier has them.
    async fn send(&self, obj: Object<'_>) -> Answer {
        let mut head = object_head(&obj.etag, obj.mtime, obj.name, obj.cache_control);
        if not_modified(self.headers, &obj.etag, obj.mtime) {
            return self.answer(response(StatusCode::NOT_MODIFIED, head, body::empty()));
        }
        let size = obj.size;
        // A failed If-Range means the client's partial copy is of another
        // version: the Range is ignored, whatever it asks (even a start
        // past the end gets the whole object, not 416).
        let resumable = match self.headers.get(header::IF_RANGE) {
            Some(v) => range::if_range_holds(
                v.as_bytes(),
                obj.etag.as_bytes(),
                crate::dates::http_seconds(obj.mtime),
            ),
            None => true,
        };
        let answer = match self.headers.get(header::RANGE) {
            Some(h) if resumable => range::parse(h.as_bytes(), size),
            _ => RangeAnswer::Whole,
        };
        let (status, start, len) = match answer {
            RangeAnswer::Whole => (StatusCode::OK, 0, size),
            RangeAnswer::Part { start, end } => {
                let range = format!("bytes {start}-{end}/{size}");
                head.insert(header::CONTENT_RANGE, header_value(range));
                (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
            }
            RangeAnswer::Unsatisfiable => {
                head.insert(
                    header::CONTENT_RANGE,
                    header_value(format!("bytes */{size}")),
                );
                head.insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
                return self.answer(response(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    head,
                    body::empty(),
                ));
            }
        };
        let cache = &self.daemon.cache;
        if self.head {
            head.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            // Says where a GET would be answered from, without filling
            // (and is not counted as a hit or a miss).
            let x = match obj.sha {
                Some(s) if cache.in_memory(&s) => Outcome::HitMemory,
                Some(s) if cache.disk.contains(&s) => Outcome::HitDisk,
                _ => Outcome::Miss,
            };
            head.insert(X_CACHE, x_cache(x));
            return self.answer(response(status, head, body::empty()));
        }
        let plain = obj.mtime_ns.is_some();
        let hit = match &obj.sha {
            Some(sha) => cache.hit(sha, size).await,
            None => None,
        };
        let source = hit.unwrap_or_else(|| {
            cache.miss(FillRequest {
                origin: match obj.origin {
                    Origin::File(path) => path,
                    Origin::Released(dir) => {
                        dir.object_file(&obj.sha.expect("release objects have a sha256"))
                    }
                },
                key: obj.key,
                volume: self.volume.name.clone(),
                size,
                mtime_ns: obj.mtime_ns,
            })
        });
        let (outcome, tier, body) = match source {
            Source::Memory(b) => (
                Outcome::HitMemory,
                Tier::Memory,
                body::bytes(b.slice(start as usize..(start + len) as usize)),
            ),
            Source::DiskBytes(b) => (
                Outcome::HitDisk,
                Tier::Disk,
                body::bytes(b.slice(start as usize..(start + len) as usize)),
            ),
            Source::Disk(f) => (Outcome::HitDisk, Tier::Disk, body::file(f, start, len)),
            Source::Fill(fill, coalesced) => match fill.started().await {
                Ok(()) => {
                    let outcome = if coalesced {
                        Outcome::Coalesced
                    } else {
                        Outcome::Miss
                    };
                    let body = body::fill(cache.clone(), fill, start, len);
                    (outcome, Tier::Origin, body)
                }
                Err(WaitError::Uncached) => {
                    match self
                        .direct(Direct::new(cache, fill.request.clone()), plain)
                        .await
                    {
                        Ok(d) => (Outcome::Bypass, Tier::Origin, body::direct(d, start, len)),
                        Err(a) => return a,
                    }
                }
                Err(e) => return self.origin_failed(e, plain),
            },
            Source::Direct(req) => match self.direct(Direct::new(cache, req), plain).await {
                Ok(d) => (Outcome::Bypass, Tier::Origin, body::direct(d, start, len)),
                Err(a) => return a,
            },
        };
        head.insert(X_CACHE, x_cache(outcome));
        // hyper writes the Content-Length of a body that knows its length
        // itself, without a header value to allocate; a stream needs it
        // here (or it would be sent chunked).
        if !body.is_sized() {
            head.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        let mut a = self.answer(response(status, head, body));
        a.outcome = outcome;
        a.tier = tier;
        a
    }

    /// Opens an uncached read of the origin; an error answer when it
    /// cannot start.
    async fn direct(&self, mut d: Direct, plain: bool) -> Result<Direct, Answer> {
        match d.open().await {
            Ok(()) => Ok(d),
            Err(e) => Err(self.origin_failed(e, plain)),
        }
    }

    /// The answer to an origin read that failed before the response began:
    /// 404 for a plain-tree file gone since its `stat`, 504 for a timeout,
    /// 503 when the fill never got a slot, 502 otherwise.
    fn origin_failed(&self, e: WaitError, plain: bool) -> Answer {
        let status = match e {
            WaitError::Failed(OriginError::Missing) if plain => StatusCode::NOT_FOUND,
            WaitError::Failed(OriginError::Timeout) | WaitError::TimedOut => {
                StatusCode::GATEWAY_TIMEOUT
            }
            WaitError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        };
        self.answer(text(status, &format!("{e}\n")))
    }

    /// A released directory's listing, from the daemon's cache of them or
    /// made off the async threads.
    async fn listing_of_release(&self, release: &Arc<LoadedRelease>, dir: &[u8]) -> Response<Body> {
        let (r, dir) = (release.clone(), dir.to_vec());
        let list = move || {
            let (entries, left_out) = r.manifest.list_first(&dir, listing::MAX_LISTED)?;
            let entries = entries.into_iter().map(|(name, e)| ListEntry {
                name,
                is_dir: e.kind == Kind::Dir,
                size: e.size,
                mtime: e.mtime,
            });
            Ok(Listed {
                entries: entries.collect(),
                left_out,
            })
        };
        let page = self
            .daemon
            .listings
            .release_page(&self.volume.name, release.meta.id, self.path, list)
            .await;
        match page {
            Ok(page) => listing::response(page, self.head),
            Err(e) => {
                tracing::error!(volume = %self.volume.name, release = release.meta.id, "listing failed: {e:#}");
                text(StatusCode::INTERNAL_SERVER_ERROR, "manifest error\n")
            }
        }
    }
}

impl Volume {
    /// Whether a path names content that never changes (by the configured
    /// immutable patterns).
    pub fn is_immutable(&self, path: &[u8]) -> bool {
        self.immutable.is_match(path)
    }
}

/// The policy of HTML that came from a volume (an upstream's file, such as
/// a project page or a stray `index.html`): no scripts, no loads, no forms,
/// a unique origin. pip and the other clients ignore it; a browser shows
/// an inert page, so an upstream cannot run script under the mirror's
/// name.
pub const VOLUME_HTML_POLICY: &str = "default-src 'none'; sandbox";
/// The policy of the daemon's own pages and listings: they need their
/// inline styles and nothing else.
pub const OWN_PAGE_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The headers every response carries, whatever produced it: `nosniff`, so
/// a browser never reads a file as another type than the one sent (an
/// upstream `.txt` as HTML, say); and, on an HTML body that set no policy
/// of its own (the daemon's pages do), the volume HTML policy.
fn harden(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        const { HeaderValue::from_static("nosniff") },
    );
    let html = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| memchr::memmem::find(t.as_bytes(), b"html").is_some());
    if html && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            const { HeaderValue::from_static(VOLUME_HTML_POLICY) },
        );
    }
}

/// A release object's ETag: its sha256, quoted.
pub fn etag_of_digest(sha: &Sha256Digest) -> HeaderValue {
    let mut quoted = [b'"'; 66];
    hex::encode_to_slice(sha.0, &mut quoted[1..65]).expect("64 bytes for 32");
    HeaderValue::from_bytes(&quoted).expect("hex digits are a valid header value")
}

/// The headers every answer about an object carries (200, 206, 304, 416
/// and HEAD alike), in a map sized for the few more a response adds. The
/// values are made without formatting or run-time checks where they can
/// be: building them through `Response::builder()` cost more than the rest
/// of a memory hit's user-space work.
pub fn object_head(
    etag: &HeaderValue,
    mtime: SystemTime,
    name: &[u8],
    cache_control: HeaderValue,
) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(12);
    h.insert(header::ETAG, etag.clone());
    let date = crate::dates::http_date(mtime);
    let date = HeaderValue::from_bytes(&date).expect("a date is visible ASCII");
    h.insert(header::LAST_MODIFIED, date);
    h.insert(header::CONTENT_TYPE, content_type(name));
    h.insert(header::CACHE_CONTROL, cache_control);
    h.insert(
        header::ACCEPT_RANGES,
        const { HeaderValue::from_static("bytes") },
    );
    h
}

/// A response of these parts.
fn response(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// A header value of text this module formatted (digits, `bytes`, `-`,
/// `/`, `*`): always valid.
fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("formatted header values are visible ASCII")
}

/// The `X-Cache` value of an outcome: its metrics label (`Outcome::as_str`),
/// made at compile time; a stale or other answer says `miss`.
fn x_cache(outcome: Outcome) -> HeaderValue {
    match outcome {
        Outcome::HitMemory => const { HeaderValue::from_static("hit-memory") },
        Outcome::HitDisk => const { HeaderValue::from_static("hit-disk") },
        Outcome::Coalesced => const { HeaderValue::from_static("coalesced") },
        Outcome::Bypass => const { HeaderValue::from_static("bypass") },
        _ => const { HeaderValue::from_static("miss") },
    }
}

/// Where a response came from: `hit-memory`, `hit-disk`, `miss`,
/// `coalesced`, `bypass` (from the origin, uncached: the cache disk is
/// full).
const X_CACHE: header::HeaderName = header::HeaderName::from_static("x-cache");
/// Set when a plain tree could not be read and what was last seen of it
/// answered instead.
const X_STALE: header::HeaderName = header::HeaderName::from_static("x-unimirror-stale");
/// The release that answered.
const X_RELEASE: header::HeaderName = header::HeaderName::from_static("x-unimirror-release");

/// Where the origin has an object; its path is only worked out on a miss.
enum Origin<'a> {
    /// A plain-tree file.
    File(PathBuf),
    /// An object of a released volume, by its sha256.
    Released(&'a crate::volume::VolumeDir),
}

/// `@<id>` as the first segment after a prefix pins a release.
fn pin_id(seg: &[u8]) -> Option<u64> {
    let digits = seg.strip_prefix(b"@")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || digits.len() > 19 {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The time of a manifest's or a stat's seconds. Any value is accepted:
/// an upstream file can carry an mtime past year 9999, which dates (and
/// `Last-Modified`) clamp when they show it.
pub fn unix(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

/// Looks a path up, following symlinks inside the release. Returns the
/// final path (borrowed when no link was followed) and its entry (a file
/// or a directory).
fn resolve<'p>(
    release: &LoadedRelease,
    path: &'p [u8],
) -> anyhow::Result<Option<(Cow<'p, [u8]>, Entry)>> {
    if path.is_empty() {
        return Ok(Some((Cow::Borrowed(path), root_entry(release))));
    }
    // The common case in one lookup: the release walk never descends into
    // a symlink, so a path the manifest lists as a file or directory has
    // only real directories above it.
    if let Some(entry) = release.entry(path)?
        && entry.kind != Kind::Symlink
    {
        return Ok(Some((Cow::Borrowed(path), entry)));
    }
    // Walk segment by segment from the root. The segments still to walk
    // are a stack (next on top): a link pushes its target's segments, so
    // each hop costs the length of its target, never a rebuild of the rest
    // of the path. `resolved` is always a real directory of the release.
    let mut todo: Vec<Cow<'_, [u8]>> = path.rsplit(|&b| b == b'/').map(Cow::Borrowed).collect();
    let mut resolved: Vec<u8> = Vec::new();
    // What `resolved` is: the root until a directory is entered.
    let mut here = root_entry(release);
    let mut hops = 0;
    while let Some(seg) = todo.pop() {
        match &*seg {
            b"" | b"." => continue,
            b".." => {
                // Only a link's target can climb; above the root is outside.
                if resolved.is_empty() {
                    return Ok(None);
                }
                let cut = resolved.iter().rposition(|&b| b == b'/').unwrap_or(0);
                resolved.truncate(cut);
                here = match resolved.is_empty() {
                    true => root_entry(release),
                    false => match release.entry(&resolved)? {
                        Some(e) => e,
                        None => return Ok(None),
                    },
                };
                continue;
            }
            _ => {}
        }
        let candidate = join(&resolved, &seg);
        let Some(entry) = release.entry(&candidate)? else {
            return Ok(None);
        };
        match entry.kind {
            Kind::Symlink => {
                hops += 1;
                let escapes = crate::volume::check_symlink(&resolved, &entry.target).is_err();
                if hops > MAX_LINK_HOPS || escapes {
                    return Ok(None);
                }
                todo.extend(
                    entry
                        .target
                        .rsplit(|&b| b == b'/')
                        .map(|s| Cow::Owned(s.to_vec())),
                );
            }
            // A file ends the walk; anything after it (even a slash) is
            // not there.
            Kind::File if todo.is_empty() => return Ok(Some((candidate.into(), entry))),
            Kind::File => return Ok(None),
            Kind::Dir => {
                resolved = candidate;
                here = entry;
            }
        }
    }
    Ok(Some((resolved.into(), here)))
}

fn root_entry(release: &LoadedRelease) -> Entry {
    Entry {
        kind: Kind::Dir,
        size: 0,
        mtime: release.meta.created_unix as i64,
        mtime_nsec: 0,
        sha256: Default::default(),
        target: Vec::new(),
        source_inode: 0,
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    crate::release::scan::join(dir, name)
}

fn not_modified(headers: &HeaderMap, etag: &HeaderValue, mtime: SystemTime) -> bool {
    if let Some(inm) = headers.get(header::IF_NONE_MATCH) {
        let inm = inm.to_str().unwrap_or("");
        let etag = etag.as_bytes();
        return inm
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t).as_bytes() == etag);
    }
    if let Some(ims) = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    {
        return mtime <= ims;
    }
    false
}

pub const PEP691_JSON: &str = "application/vnd.pypi.simple.v1+json";
pub const PEP691_HTML: &str = "application/vnd.pypi.simple.v1+html";

/// The index files a directory may be answered by, best first for this
/// request's Accept header: the PEP 691 JSON page when the client prefers
/// it, else the HTML page.
fn index_candidates(headers: &HeaderMap) -> &'static [&'static [u8]] {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if prefers_json(accept) {
        &[b"index.v1_json", b"index.html", b"index.v1_html"]
    } else {
        &[b"index.html", b"index.v1_html"]
    }
}

/// Whether an Accept header ranks the PEP 691 JSON form above HTML.
pub fn prefers_json(accept: &str) -> bool {
    let (mut json, mut html) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .filter_map(|q| q.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        match media.as_str() {
            "application/vnd.pypi.simple.v1+json" | "application/vnd.pypi.simple.latest+json" => {
                json = json.max(q)
            }
            "text/html"
            | "application/vnd.pypi.simple.v1+html"
            | "application/vnd.pypi.simple.latest+html"
            | "text/*"
            | "*/*" => html = html.max(q),
            _ => {}
        }
    }
    json > 0.0 && json > html
}

fn vary_accept(r: &mut Response<Body>) {
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
}

/// Content-Type by file name.
pub fn content_type(path: &[u8]) -> HeaderValue {
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    let ext = |e: &[u8]| name.ends_with(e);
    if ext(b".html") || ext(b".htm") {
        const { HeaderValue::from_static("text/html; charset=utf-8") }
    } else if ext(b".v1_json") {
        const { HeaderValue::from_static(PEP691_JSON) }
    } else if ext(b".v1_html") {
        const { HeaderValue::from_static(PEP691_HTML) }
    } else if ext(b".json") {
        const { HeaderValue::from_static("application/json") }
    } else if ext(b".xml") {
        const { HeaderValue::from_static("application/xml") }
    } else if ext(b".txt")
        || ext(b".asc")
        || [&b"Release"[..], b"InRelease", b"Packages", b"Sources"].contains(&name)
    {
        const { HeaderValue::from_static("text/plain; charset=utf-8") }
    } else {
        const { HeaderValue::from_static("application/octet-stream") }
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a name for use in a URL path.
pub fn percent_encode(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name {
        if b.is_ascii_alphanumeric() || b"-_.~+".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Redirects a directory to its URL with a trailing slash, built from the
/// clean segments (so `//host`-style paths cannot become an open redirect).
fn redirect(path: &CleanPath) -> Response<Body> {
    let mut to = String::new();
    for s in path.segments() {
        to.push('/');
        to.push_str(&percent_encode(s));
    }
    to.push('/');
    Response::builder()
        .status(StatusCode::MOVED_PERMANENTLY)
        .header(header::LOCATION, to)
        .header(header::CONTENT_LENGTH, 0)
        .body(body::empty())
        .expect("valid response")
}

pub fn text(status: StatusCode, msg: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CONTENT_LENGTH, msg.len())
        .body(body::bytes(Bytes::from(msg.to_string())))
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        // What pip sends.
        assert!(prefers_json(
            "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
        ));
        // Browsers and curl.
        assert!(!prefers_json(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!prefers_json("*/*"));
        assert!(!prefers_json(""));
        assert!(!prefers_json("application/vnd.pypi.simple.v1+json;q=0"));
        assert!(prefers_json("application/vnd.pypi.simple.latest+json"));
        assert!(!prefers_json(
            "application/vnd.pypi.simple.v1+json;q=0.5, text/html"
        ));
    }

    #[test]
    fn pinned_ids() {
        assert_eq!(pin_id(b"@12"), Some(12));
        assert_eq!(pin_id(b"@"), None);
        assert_eq!(pin_id(b"@1a"), None);
        assert_eq!(pin_id(b"12"), None);
        assert_eq!(pin_id(b"@99999999999999999999"), None);
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(b"simple/x/index.v1_json"), PEP691_JSON);
        assert_eq!(content_type(b"a/b.whl"), "application/octet-stream");
        assert_eq!(
            content_type(b"dists/jammy/InRelease"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(content_type(b"repodata/repomd.xml"), "application/xml");
    }
}

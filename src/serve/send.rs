//! Sending one object, however it was found: conditional requests
//! (`If-None-Match`, `If-Modified-Since`, `If-Range`), ranges, HEAD, the
//! headers of an object, and its bytes from whichever tier has them
//! (memory, disk, a fill from the origin, or an uncached read of it).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use hyper::StatusCode;
use hyper::header::{self, HeaderMap, HeaderValue};

use super::answer::{Answer, Ask};
use super::body;
use super::media::content_type;
use super::range::{self, RangeAnswer};
use super::refusal::Refusal;
use super::reply::{cache_control_value, header_value, response, unix};
use crate::cache::direct::Direct;
use crate::cache::fill::{FillRequest, WaitError};
use crate::cache::{Joined, ObjectKey, Source};
use crate::metrics::{Outcome, Tier};
use crate::origin::{self, Upstreams};
use crate::volume::VolumeDir;
use crate::volume::manifest::{Entry, Sha256Digest};

/// What an object's answer says of it, whatever its kind.
pub struct Meta<'a> {
    pub size: u64,
    pub mtime: SystemTime,
    /// Quoted, ready to send.
    pub etag: HeaderValue,
    /// Its path in the volume (the Content-Type is by its name).
    pub name: &'a [u8],
    /// Whether it never changes under its name (its Cache-Control).
    pub immutable: bool,
}

/// A file to send: where its bytes are, and how the cache knows them.
pub enum Object<'a> {
    /// A released volume's file: known by its sha256, and stored by it in
    /// the volume's objects; or, a remote entry of an on-demand release,
    /// at its upstream `url` until the store has it.
    Released {
        meta: Meta<'a>,
        sha: Sha256Digest,
        dir: &'a VolumeDir,
        url: Option<&'a str>,
    },
    /// A plain-tree file: known by `(path, size, mtime)`, its sha256 only
    /// once a fill recorded it; a miss reads its resolved path on the
    /// origin, checked against the `mtime_ns` it was seen with.
    Plain {
        meta: Meta<'a>,
        key: ObjectKey,
        sha: Option<Sha256Digest>,
        real: PathBuf,
        mtime_ns: i128,
    },
    /// A file a proxy volume fetches from its upstream: known by its
    /// sha256 when a page gave it, else by its path (a plain record names
    /// its sha256 once a fill stored it); checked as `origin` says.
    Fetched {
        meta: Meta<'a>,
        key: ObjectKey,
        sha: Option<Sha256Digest>,
        origin: origin::Object,
    },
}

impl<'a> Object<'a> {
    /// A released volume's file, by its manifest entry.
    pub fn released(
        dir: &'a VolumeDir,
        name: &'a [u8],
        e: &'a Entry,
        immutable: bool,
    ) -> Object<'a> {
        Object::Released {
            meta: Meta {
                size: e.size,
                mtime: unix(e.mtime),
                etag: etag_of_digest(&e.sha256),
                name,
                immutable,
            },
            sha: e.sha256,
            dir,
            url: e.remote_url(),
        }
    }

    fn meta(&self) -> &Meta<'a> {
        match self {
            Object::Released { meta, .. }
            | Object::Plain { meta, .. }
            | Object::Fetched { meta, .. } => meta,
        }
    }

    fn sha(&self) -> Option<Sha256Digest> {
        match self {
            Object::Released { sha, .. } => Some(*sha),
            Object::Plain { sha, .. } | Object::Fetched { sha, .. } => *sha,
        }
    }

    /// What a miss asks the origin for. A remote entry whose object the
    /// store has (mirrored before, or materialized) is read from there.
    async fn fill_request(
        self,
        volume: Arc<str>,
        upstreams: &Arc<Upstreams>,
        origin_timeout: std::time::Duration,
    ) -> FillRequest {
        match self {
            Object::Released {
                meta,
                sha,
                dir,
                url,
            } => {
                let origin = match url {
                    Some(url) if !stored(dir, sha, origin_timeout).await => {
                        origin::Object::Upstream {
                            url: url.into(),
                            check: origin::Check::Sha256(sha),
                            size: meta.size,
                            upstreams: upstreams.clone(),
                        }
                    }
                    _ => in_store(dir, sha, meta.size),
                };
                FillRequest {
                    origin,
                    key: ObjectKey::Content(sha),
                    volume,
                }
            }
            Object::Plain {
                meta,
                key,
                real,
                mtime_ns,
                ..
            } => FillRequest {
                origin: origin::Object::Plain {
                    file: real,
                    size: meta.size,
                    mtime_ns,
                },
                key,
                volume,
            },
            Object::Fetched { key, origin, .. } => FillRequest {
                origin,
                key,
                volume,
            },
        }
    }
}

impl Ask<'_> {
    /// Sends an object: conditional requests, ranges, and its bytes from
    /// whichever tier has them. A refusal is an origin read that failed
    /// before the response began.
    pub async fn send(&self, obj: Object<'_>) -> Result<Answer, Refusal> {
        let meta = obj.meta();
        let mut head = object_head(
            &meta.etag,
            meta.mtime,
            meta.name,
            cache_control_value(meta.immutable),
        );
        if not_modified(self.headers, &meta.etag, meta.mtime) {
            return Ok(self.answer(response(StatusCode::NOT_MODIFIED, head, body::empty())));
        }
        let size = meta.size;
        // A failed If-Range means the client's partial copy is of another
        // version: the Range is ignored, whatever it asks (even a start
        // past the end gets the whole object, not 416).
        let resumable = match self.headers.get(header::IF_RANGE) {
            Some(v) => range::if_range_holds(
                v.as_bytes(),
                meta.etag.as_bytes(),
                crate::dates::http_seconds(meta.mtime),
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
                return Ok(self.answer(response(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    head,
                    body::empty(),
                )));
            }
        };
        let cache = &self.daemon.cache;
        let sha = obj.sha();
        if self.head {
            head.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            // Says where a GET would be answered from, without filling
            // (and is not counted as a hit or a miss).
            let x = match sha {
                Some(s) if cache.in_memory(&s) => Outcome::HitMemory,
                Some(s) if cache.on_disk(&s) => Outcome::HitDisk,
                _ => Outcome::Miss,
            };
            head.insert(X_CACHE, x_cache(x));
            return Ok(self.answer(response(status, head, body::empty())));
        }
        // A file gone from a plain tree or an upstream index is not there
        // (404), unlike a released object the origin lost (502).
        let plain = matches!(obj, Object::Plain { .. } | Object::Fetched { .. });
        let failed = |error| Refusal::Origin { error, plain };
        let hit = match &sha {
            Some(sha) => cache.hit(sha, size).await,
            None => None,
        };
        let source = match hit {
            Some(hit) => hit,
            None => {
                let (daemon, name) = (&self.daemon, self.volume.name.clone());
                let req = obj
                    .fill_request(name, &daemon.upstreams, daemon.origin_timeout())
                    .await;
                cache.miss(req)
            }
        };
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
            Source::Fill(joined) => match joined.fill().started().await {
                Ok(()) => {
                    let (outcome, fill) = match joined {
                        Joined::Started(f) => (Outcome::Miss, f),
                        Joined::Coalesced(f) => (Outcome::Coalesced, f),
                    };
                    let body = body::fill(cache.clone(), fill, start, len);
                    (outcome, Tier::Origin, body)
                }
                Err(WaitError::Uncached) => {
                    let d = open(Direct::new(cache, joined.fill().request.clone()))
                        .await
                        .map_err(failed)?;
                    (Outcome::Bypass, Tier::Origin, body::direct(d, start, len))
                }
                Err(e) => return Err(failed(e)),
            },
            Source::Direct(req) => {
                let d = open(Direct::new(cache, req)).await.map_err(failed)?;
                (Outcome::Bypass, Tier::Origin, body::direct(d, start, len))
            }
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
        Ok(a)
    }
}

/// Opens an uncached read of the origin.
async fn open(mut d: Direct) -> Result<Direct, WaitError> {
    d.open().await.map(|()| d)
}

/// Whether the client's copy is current (`If-None-Match`, else
/// `If-Modified-Since`).
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

/// Where a response came from: `hit-memory`, `hit-disk`, `miss`,
/// `coalesced`, `bypass` (from the origin, uncached: the cache disk is
/// full).
pub(super) const X_CACHE: header::HeaderName = header::HeaderName::from_static("x-cache");

/// The `X-Cache` value of an outcome: its metrics label (`Outcome::as_str`),
/// made at compile time; any other answer says `miss`.
pub(super) fn x_cache(outcome: Outcome) -> HeaderValue {
    match outcome {
        Outcome::HitMemory => const { HeaderValue::from_static("hit-memory") },
        Outcome::HitDisk => const { HeaderValue::from_static("hit-disk") },
        Outcome::Coalesced => const { HeaderValue::from_static("coalesced") },
        Outcome::Bypass => const { HeaderValue::from_static("bypass") },
        Outcome::Stale => const { HeaderValue::from_static("stale") },
        Outcome::Fallback => const { HeaderValue::from_static("fallback") },
        _ => const { HeaderValue::from_static("miss") },
    }
}

/// The released object `sha` where the volume's origin keeps it.
fn in_store(dir: &VolumeDir, sha: Sha256Digest, size: u64) -> origin::Object {
    match &dir.s3 {
        Some(s3) => {
            let rel = crate::volume::s3::OnS3::object_rel(&sha);
            origin::Object::InStore {
                url: s3.origin.url(&rel).into(),
                rel: rel.into(),
                origin: s3.origin.clone(),
                sha,
                size,
            }
        }
        None => {
            let [file, elsewhere] = dir.object_files(&sha);
            origin::Object::Stored {
                file,
                elsewhere: Some(elsewhere),
                sha,
                size,
            }
        }
    }
}

/// Whether a remote entry's object is on the origin (mirrored before, or
/// materialized), so that it is read from there. The `stat` runs on the
/// blocking pool: a hung origin must not hold a runtime thread. An origin
/// that does not answer within `origin_timeout` counts as not having it,
/// and the upstream is asked instead.
async fn stored(dir: &VolumeDir, sha: Sha256Digest, origin_timeout: std::time::Duration) -> bool {
    let dir = dir.clone();
    let stat = tokio::task::spawn_blocking(move || dir.has_object_anywhere(&sha).unwrap_or(false));
    matches!(
        tokio::time::timeout(origin_timeout, stat).await,
        Ok(Ok(true))
    )
}

//! `/-/api/v1/…`: what each volume serves, as JSON, for tools that ask
//! "what is the latest release of X, when was it made, what does it hold?"
//! from any mirror node. `docs/api.md` is the schema; a test validates
//! every answer against it.
//!
//! `/-/api/v1/volumes` answers from memory (what the daemon serves now, and
//! the last sync's record as of the last check of the pointer). The
//! release routes read the origin (metadata, history, tags), on the
//! blocking pool and within `origin_timeout`. `/volumes/<name>/cache` walks
//! the current release's manifest and asks the cache tiers about each
//! file (`unimirror cache ls` prints it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use hyper::header;
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::body::{self, Body};
use super::daemon::{Daemon, Volume, VolumeKind};
use super::released::ReleasedVolume;
use crate::config::Upstream;
use crate::volume::tags::{Tag, TagMove};
use crate::volume::{HistoryEntry, LastSync, ReleaseMeta, VolumeDir, unix};

/// The API's version: the `v1` of its paths, and `api` in every answer.
pub const VERSION: u32 = 1;
/// History entries a release listing carries, newest last.
const HISTORY: usize = 256;

#[derive(Serialize)]
struct Volumes {
    api: u32,
    volumes: Vec<VolumeDoc>,
}

#[derive(Serialize)]
pub struct VolumeDoc {
    pub name: String,
    /// `released`, `tree` or `proxy`.
    pub kind: &'static str,
    pub prefix: String,
    pub upstream: Option<UpstreamDoc>,
    /// The release served now (released volumes that have one).
    pub current: Option<ReleaseDoc>,
    /// Tag name → the release it names, as served now.
    pub tags: BTreeMap<String, u64>,
    pub last_sync: Option<LastSync>,
    /// What this daemon served of it since it started.
    pub served: ServedDoc,
}

#[derive(Serialize)]
pub struct ServedDoc {
    /// Requests for objects (files), and those answered from a cache tier.
    pub object_requests: u64,
    pub hits: u64,
    /// `hits / object_requests`, or null before the first.
    pub hit_ratio: Option<f64>,
    /// Response body bytes sent.
    pub bytes_sent: u64,
}

#[derive(Serialize)]
pub struct UpstreamDoc {
    /// `pypi`, `wheel`, `apt`, `yum`, or `pypi-proxy`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Its URL, or for `wheel` its directory.
    pub url: String,
}

#[derive(Serialize)]
pub struct ReleaseDoc {
    pub id: u64,
    pub created: String,
    pub created_unix: u64,
    pub age_seconds: u64,
    pub parent: Option<u64>,
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub remote_files: u64,
    pub remote_bytes: u64,
    pub source: String,
    pub current: bool,
    /// Whether the pointer ever named it (listings only; a release left by
    /// an interrupted run never was).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<bool>,
    pub tags: Vec<String>,
}

impl ReleaseDoc {
    fn new(meta: &ReleaseMeta, current: bool, tags: Vec<String>) -> ReleaseDoc {
        ReleaseDoc {
            id: meta.id,
            created: meta.created.clone(),
            created_unix: meta.created_unix,
            age_seconds: unix(SystemTime::now()).saturating_sub(meta.created_unix),
            parent: meta.parent,
            files: meta.files,
            directories: meta.directories,
            symlinks: meta.symlinks,
            bytes: meta.bytes,
            remote_files: meta.remote_files,
            remote_bytes: meta.remote_bytes,
            source: meta.source.clone(),
            current,
            published: None,
            tags,
        }
    }
}

#[derive(Serialize)]
struct Releases {
    api: u32,
    volume: String,
    /// Every release on the origin, ascending.
    releases: Vec<ReleaseDoc>,
    /// The last pointer moves, oldest first.
    history: Vec<HistoryEntry>,
    tags: Vec<Tag>,
}

#[derive(Serialize)]
struct OneRelease {
    api: u32,
    volume: String,
    release: ReleaseDoc,
    /// The pointer moves onto or off it, oldest first.
    history: Vec<HistoryEntry>,
    /// Tag moves onto or off it, oldest first, with the tag's name.
    tag_moves: Vec<NamedMove>,
}

#[derive(Serialize)]
struct NamedMove {
    tag: String,
    #[serde(flatten)]
    moved: TagMove,
}

/// What the cache holds of a released volume's current release.
#[derive(Serialize)]
struct CacheList {
    api: u32,
    volume: String,
    /// The release whose paths are listed; null before the first.
    release: Option<u64>,
    /// Paths cached, and the bytes of their objects (each object once,
    /// however many paths have its content).
    paths: u64,
    bytes: u64,
    /// In the manifest's order (by directory, then name).
    entries: Vec<CachedPath>,
}

#[derive(Serialize)]
struct CachedPath {
    /// As clients ask for it: the volume's prefix, then its path.
    path: String,
    size: u64,
    /// `memory` or `disk`: the fastest tier holding it.
    tier: &'static str,
    /// The last hit of its object (shared by every path with the same
    /// content) since the daemon started, else when it was stored; null
    /// for an object only the memory tier holds.
    last_hit: Option<String>,
    last_hit_unix: Option<u64>,
}

#[derive(Serialize)]
struct Error {
    api: u32,
    error: String,
}

/// What the daemon serves, volume by volume (the `/` page shows the same).
pub fn volumes(list: &[Arc<Volume>]) -> Vec<VolumeDoc> {
    list.iter().map(|v| volume_doc(v)).collect()
}

fn volume_doc(v: &Volume) -> VolumeDoc {
    let (kind, upstream) = match &v.kind {
        VolumeKind::Released(_) => ("released", v.upstream.as_ref().map(upstream_doc)),
        VolumeKind::Plain(_) => ("tree", None),
        VolumeKind::Proxy(p) => (
            "proxy",
            Some(UpstreamDoc {
                kind: "pypi-proxy",
                url: p.config.url.clone(),
            }),
        ),
    };
    let (object_requests, hits, bytes_sent) = v.served.totals();
    let mut doc = VolumeDoc {
        name: v.name.to_string(),
        kind,
        prefix: v.prefix.clone(),
        upstream,
        current: None,
        tags: BTreeMap::new(),
        last_sync: None,
        served: ServedDoc {
            object_requests,
            hits,
            hit_ratio: (object_requests > 0).then(|| hits as f64 / object_requests as f64),
            bytes_sent,
        },
    };
    if let VolumeKind::Released(r) = &v.kind {
        let tags = r.tag_names();
        doc.current = r.current().map(|c| {
            let names = tags.iter().filter(|(_, id)| *id == c.meta.id);
            ReleaseDoc::new(&c.meta, true, names.map(|(n, _)| n.clone()).collect())
        });
        doc.tags = tags.into_iter().collect();
        doc.last_sync = r.last_sync();
    }
    doc
}

fn upstream_doc(u: &Upstream) -> UpstreamDoc {
    UpstreamDoc {
        kind: u.kind(),
        url: u.location(),
    }
}

/// The answer to `/-/api/v1/<rest>` (`segs`: the path's segments after
/// `v1`).
pub async fn answer(daemon: &Daemon, segs: &[&[u8]]) -> Response<Body> {
    match segs {
        [b"volumes"] => json(
            StatusCode::OK,
            &Volumes {
                api: VERSION,
                volumes: volumes(&daemon.volumes()),
            },
        ),
        [b"volumes", name, b"releases", rest @ ..] if rest.len() <= 1 => {
            let (_, r) = match released(daemon, name, "has no releases") {
                Ok(found) => found,
                Err(why) => return error(StatusCode::NOT_FOUND, why),
            };
            let which = rest
                .first()
                .map(|s| String::from_utf8_lossy(s).into_owned());
            from_origin(daemon, r, which).await
        }
        [b"volumes", name, b"cache"] => {
            let (v, r) = match released(daemon, name, "has no release paths to list") {
                Ok(found) => found,
                Err(why) => return error(StatusCode::NOT_FOUND, why),
            };
            // One walk at a time: each reads the whole manifest, and the
            // route is open to anyone who can reach the daemon.
            let Some(turn) = WalkTurn::take() else {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "another cache listing is being made; try again".into(),
                );
            };
            let cache = daemon.cache.clone();
            let walk = tokio::task::spawn_blocking(move || {
                let _turn = turn;
                cached_paths(&v, &r, &cache)
            });
            match walk.await {
                Ok(Ok(list)) => json(StatusCode::OK, &list),
                Ok(Err(e)) => {
                    tracing::error!("status API: reading a manifest: {e:#}");
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the release's manifest cannot be read".into(),
                    )
                }
                Err(e) => {
                    tracing::error!("status API: {e}");
                    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
                }
            }
        }
        _ => error(StatusCode::NOT_FOUND, "no such API path".into()),
    }
}

/// The released volume `name`, or why there is none such (a 404's
/// reason; `lacks` says what a volume of another kind has not).
fn released(
    daemon: &Daemon,
    name: &[u8],
    lacks: &str,
) -> Result<(Arc<Volume>, Arc<ReleasedVolume>), String> {
    let Some(v) = daemon
        .volumes()
        .iter()
        .find(|v| v.name.as_bytes() == name)
        .cloned()
    else {
        return Err("no such volume".into());
    };
    match &v.kind {
        VolumeKind::Released(r) => {
            let r = r.clone();
            Ok((v, r))
        }
        _ => Err(format!(
            "volume `{}` {lacks} (it is not a released volume)",
            v.name
        )),
    }
}

/// The one cache listing being made, if any.
static WALKING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The turn of a cache listing; let go when dropped.
struct WalkTurn;

impl WalkTurn {
    fn take() -> Option<WalkTurn> {
        use std::sync::atomic::Ordering;
        WALKING
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| WalkTurn)
    }
}

impl Drop for WalkTurn {
    fn drop(&mut self) {
        WALKING.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// Every file of the volume's current release that a cache tier holds.
/// Blocking: walks the manifest (the daemon's own mapped copy).
fn cached_paths(
    v: &Volume,
    r: &ReleasedVolume,
    cache: &crate::cache::Cache,
) -> anyhow::Result<CacheList> {
    let mut list = CacheList {
        api: VERSION,
        volume: v.name.to_string(),
        release: None,
        paths: 0,
        bytes: 0,
        entries: Vec::new(),
    };
    let Some(current) = r.current() else {
        return Ok(list);
    };
    list.release = Some(current.meta.id);
    let found = current
        .manifest
        .files_found(&v.prefix, |sha| cache.describe(sha).map(|c| (c.size, c)))?;
    list.paths = found.files.len() as u64;
    list.bytes = found.bytes;
    list.entries = found
        .files
        .into_iter()
        .map(|f| CachedPath {
            path: f.path,
            size: f.size,
            tier: f.what.tier.as_str(),
            last_hit: f.what.last_hit.map(|t| {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t);
                humantime::format_rfc3339_seconds(at).to_string()
            }),
            last_hit_unix: f.what.last_hit,
        })
        .collect();
    Ok(list)
}

/// A release route, read from the origin on the blocking pool.
async fn from_origin(
    daemon: &Daemon,
    r: Arc<ReleasedVolume>,
    which: Option<String>,
) -> Response<Body> {
    let read = tokio::task::spawn_blocking(move || {
        let dir = &r.dir;
        match which {
            None => releases(dir).map(|d| json(StatusCode::OK, &d)),
            Some(w) => one_release(dir, &w).map(|d| match d {
                Ok(d) => json(StatusCode::OK, &d),
                Err(why) => error(StatusCode::NOT_FOUND, why),
            }),
        }
    });
    match tokio::time::timeout(daemon.origin_timeout(), read).await {
        Ok(Ok(Ok(response))) => response,
        Ok(Ok(Err(e))) => {
            tracing::error!("status API: reading the origin: {e:#}");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the origin cannot be read".into(),
            )
        }
        Ok(Err(e)) => {
            tracing::error!("status API: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
        }
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "origin not responding".into(),
        ),
    }
}

fn releases(dir: &VolumeDir) -> anyhow::Result<Releases> {
    let current = dir.current()?;
    let published = dir.published_ids()?;
    let tags = dir.tags()?;
    let mut releases = Vec::new();
    for id in dir.release_ids()? {
        let meta = dir.meta(id)?;
        let mut doc = ReleaseDoc::new(&meta, Some(id) == current, tag_names(&tags, id));
        doc.published = Some(Some(id) == current || published.contains(&id));
        releases.push(doc);
    }
    Ok(Releases {
        api: VERSION,
        volume: dir.name.clone(),
        releases,
        history: dir.history_tail(HISTORY)?,
        tags,
    })
}

/// One release by id or tag; `Ok(Err(why))` when there is none such.
fn one_release(dir: &VolumeDir, which: &str) -> anyhow::Result<Result<OneRelease, String>> {
    let tags = dir.tags()?;
    let id = match which.parse::<u64>() {
        Ok(id) => id,
        Err(_) => match tags
            .iter()
            .find(|t| t.name == which)
            .and_then(|t| t.release)
        {
            Some(id) => id,
            None => return Ok(Err(format!("no release or tag `{which}`"))),
        },
    };
    if !dir.release_ids()?.contains(&id) {
        return Ok(Err(format!("no release #{id}")));
    }
    let meta = dir.meta(id)?;
    let current = dir.current()?;
    let history = dir
        .history_tail(HISTORY)?
        .into_iter()
        .filter(|h| h.to == id || h.from == Some(id))
        .collect();
    let tag_moves = tags
        .iter()
        .flat_map(|t| {
            t.moves
                .iter()
                .filter(|m| m.to == Some(id) || m.from == Some(id))
                .map(|m| NamedMove {
                    tag: t.name.clone(),
                    moved: m.clone(),
                })
        })
        .collect();
    Ok(Ok(OneRelease {
        api: VERSION,
        volume: dir.name.clone(),
        release: ReleaseDoc::new(&meta, Some(id) == current, tag_names(&tags, id)),
        history,
        tag_moves,
    }))
}

fn tag_names(tags: &[Tag], id: u64) -> Vec<String> {
    tags.iter()
        .filter(|t| t.release == Some(id))
        .map(|t| t.name.clone())
        .collect()
}

fn error(status: StatusCode, error: String) -> Response<Body> {
    json(
        status,
        &Error {
            api: VERSION,
            error,
        },
    )
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("serializable");
    bytes.push(b'\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(body::bytes(bytes))
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cache_listing_at_a_time() {
        let first = WalkTurn::take().expect("no listing running yet");
        assert!(WalkTurn::take().is_none(), "a second listing must wait");
        drop(first);
        assert!(
            WalkTurn::take().is_some(),
            "the turn comes back when let go"
        );
    }
}

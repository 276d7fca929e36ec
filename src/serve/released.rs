//! Following a released volume: which release is current, which recent
//! ones still answer during the grace period, what each tag names (with
//! its own recent ones), and pinned releases.
//!
//! A request takes an `Arc` of the releases it starts on and finishes on
//! them, whatever the pointer does meanwhile. The swap itself is a write
//! lock held for a pointer assignment; loading and verifying a manifest
//! happens before it, outside any lock.
//!
//! Pinned ids (`@<id>`) come from clients, so each costs at most one
//! manifest load however often it is asked: the ids ever published are read
//! from `history.jsonl` once per change of that file; an id found never
//! published is remembered until the pointer next moves; concurrent
//! requests for one id share one load, and loads run two at a time.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use super::recent::RecentLookups;
use crate::cache::manifests::{Had, ManifestCopies};
use crate::digest::Sha256Digest;
use crate::metrics::Metrics;
use crate::volume::manifest::{Entry, Manifest};
use crate::volume::{ReleaseMeta, VolumeDir};

/// How many earlier releases always stay loaded, whatever the grace period.
pub const MIN_PREVIOUS: usize = 2;
/// How many pinned (`@<id>`) releases stay loaded besides those.
const PINNED_LOADED: usize = 8;
/// How much of the history a first load reads to find the releases
/// current just before: far more moves than any grace period sees.
const RECENT_HISTORY: usize = 256;
/// Pinned releases loaded at once, per volume.
const PINNED_LOADS_AT_ONCE: usize = 2;
/// Never-published ids remembered at most (then forgotten all at once).
const UNKNOWN_IDS: usize = 4096;

/// A release loaded for serving.
#[derive(Debug)]
pub struct LoadedRelease {
    pub meta: ReleaseMeta,
    pub manifest: Manifest,
    /// The id as a header value, made once (cloning it is a reference
    /// count, formatting it per response was not).
    pub id_header: hyper::header::HeaderValue,
    /// Where recently asked-for paths are in the manifest.
    recent: RecentLookups,
}

impl LoadedRelease {
    /// The manifest entry at relative path `a/b/c`, through the memory of
    /// recent lookups.
    pub fn entry(&self, path: &[u8]) -> Result<Option<Entry>> {
        let offset = self.recent.locate(path, || self.manifest.locate(path))?;
        offset.map(|o| self.manifest.entry_at(o)).transpose()
    }
}

/// An earlier release still answering, and since when it is not current.
#[derive(Clone)]
struct Previous {
    release: Arc<LoadedRelease>,
    until: SystemTime,
}

/// The releases a request may be answered from, taken as one snapshot: the
/// current one, then the recent ones, newest first. A request holds its
/// snapshot (one reference count) to the end, whatever the pointer does.
pub struct Snapshot {
    pub current: Arc<LoadedRelease>,
    previous: Vec<Previous>,
    grace: Duration,
    /// How many earlier releases answer whatever their age: the pointer's
    /// `MIN_PREVIOUS` (gc keeps at least that many), none for a tag (gc
    /// keeps what a tag left only within the grace period).
    min_previous: usize,
}

impl Snapshot {
    /// The snapshot after the pointer (or a tag) moved from `old` to
    /// `release` at `now`: the old current release joins the recent ones,
    /// and those out of the grace period leave, keeping the
    /// `min_previous` newest.
    fn advance(
        old: Option<&Snapshot>,
        release: Arc<LoadedRelease>,
        now: SystemTime,
        grace: Duration,
        min_previous: usize,
    ) -> Snapshot {
        let previous = match old {
            Some(old) => {
                let id = release.meta.id;
                let mut previous = old.previous.clone();
                previous.retain(|p| p.release.meta.id != id);
                previous.insert(
                    0,
                    Previous {
                        release: old.current.clone(),
                        until: now,
                    },
                );
                let mut i = 0;
                previous.retain(|p| {
                    i += 1;
                    i <= min_previous || within(now, p.until, grace)
                });
                previous
            }
            None => Vec::new(),
        };
        Snapshot {
            current: release,
            previous,
            grace,
            min_previous,
        }
    }

    /// The earlier releases still answering now: always the
    /// `min_previous` newest, the others while within the grace period.
    pub fn previous(&self) -> impl Iterator<Item = &Arc<LoadedRelease>> {
        let now = SystemTime::now();
        self.previous
            .iter()
            .enumerate()
            .filter(move |(i, p)| *i < self.min_previous || within(now, p.until, self.grace))
            .map(|(_, p)| &p.release)
    }
}

/// Why a pinned release cannot be served.
#[derive(Debug, Clone)]
pub enum PinnedError {
    /// No release of that id was ever published (404).
    Unknown,
    /// It was, but cannot be loaded now (logged; 404 too: its files may be
    /// gone with a gc).
    Unavailable(String),
}

/// The ids ever published, as read from `history.jsonl` with this stamp.
struct Published {
    stamp: (u64, u64, i64, i64),
    ids: Arc<HashSet<u64>>,
}

/// A pinned load under way and its outcome, shared by its waiters.
type PinnedLoad = tokio::sync::OnceCell<Result<Arc<LoadedRelease>, PinnedError>>;

/// One released volume as the daemon sees it.
pub struct ReleasedVolume {
    pub dir: VolumeDir,
    pub grace: Duration,
    state: RwLock<Option<Arc<Snapshot>>>,
    /// Per tag, the release it names and those it named lately.
    tags: RwLock<HashMap<String, Arc<Snapshot>>>,
    /// The last error reading the tags met, logged once.
    tags_error: Mutex<Option<String>>,
    /// The last sync's record, as of the last check.
    last_sync: Mutex<Option<crate::volume::LastSync>>,
    pinned: Mutex<Vec<Arc<LoadedRelease>>>,
    /// Where manifests are mapped from (local verified copies).
    manifests: Arc<ManifestCopies>,
    /// The keys a release must be signed by, when there are any.
    keys: super::daemon::ReleaseKeysInUse,
    /// The last error a refresh met, so that one met at every poll (a
    /// refused release stays current until the next one) is logged once.
    last_error: Mutex<Option<String>>,
    /// Manifests read from the origin and verified, and ones refused.
    loaded_from_origin: prometheus::IntCounter,
    refused: prometheus::IntCounter,
    published: Mutex<Option<Published>>,
    unknown: Mutex<HashSet<u64>>,
    /// Pinned loads under way, one per id, shared by its waiters.
    loading: Mutex<HashMap<u64, Arc<PinnedLoad>>>,
    load_slots: tokio::sync::Semaphore,
}

impl ReleasedVolume {
    pub fn new(
        dir: VolumeDir,
        grace: Duration,
        manifests: Arc<ManifestCopies>,
        keys: super::daemon::ReleaseKeysInUse,
        metrics: &Metrics,
    ) -> ReleasedVolume {
        let loads = |result| {
            metrics
                .manifest_loads
                .with_label_values(&[dir.name.as_str(), result])
        };
        ReleasedVolume {
            loaded_from_origin: loads("loaded"),
            refused: loads("refused"),
            grace,
            state: RwLock::new(None),
            tags: RwLock::new(HashMap::new()),
            tags_error: Mutex::new(None),
            last_sync: Mutex::new(None),
            pinned: Mutex::new(Vec::new()),
            manifests,
            keys,
            last_error: Mutex::new(None),
            published: Mutex::new(None),
            unknown: Mutex::new(HashSet::new()),
            loading: Mutex::new(HashMap::new()),
            load_slots: tokio::sync::Semaphore::new(PINNED_LOADS_AT_ONCE),
            dir,
        }
    }

    /// Records what the last refresh met (`None`: it went well); whether
    /// that differs from the time before, and so is worth logging.
    pub fn note_refresh(&self, error: Option<String>) -> bool {
        let mut last = self.last_error.lock().expect("not poisoned");
        let new = *last != error;
        *last = error;
        new
    }

    /// What the last check of the pointer met, if it went wrong (an
    /// unreadable origin, a refused release): the `/` page shows it.
    pub fn refresh_error(&self) -> Option<String> {
        self.last_error.lock().expect("not poisoned").clone()
    }

    /// The current release, if the volume has one.
    pub fn current(&self) -> Option<Arc<LoadedRelease>> {
        self.snapshot().map(|s| s.current.clone())
    }

    /// The releases requests under `@<tag>` should use now, if the tag
    /// names one.
    pub fn tagged(&self, tag: &str) -> Option<Arc<Snapshot>> {
        self.tags.read().expect("not poisoned").get(tag).cloned()
    }

    /// The last sync's record, as of the last check of the pointer.
    pub fn last_sync(&self) -> Option<crate::volume::LastSync> {
        self.last_sync.lock().expect("not poisoned").clone()
    }

    /// The tags naming a release now, and their releases.
    pub fn tag_names(&self) -> Vec<(String, u64)> {
        let tags = self.tags.read().expect("not poisoned");
        let mut names: Vec<_> = tags
            .iter()
            .map(|(n, s)| (n.clone(), s.current.meta.id))
            .collect();
        names.sort();
        names
    }

    /// The releases requests should use now, if the volume has any.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.state.read().expect("not poisoned").clone()
    }

    fn load(&self, id: u64) -> Result<Arc<LoadedRelease>> {
        let meta = match self.keys.load_full() {
            Some(keys) => self
                .dir
                .signed_meta(id, &keys)
                .inspect_err(|_| self.refused.inc())?,
            None => self.dir.meta(id)?,
        };
        let manifest = self
            .manifest(&meta)
            .with_context(|| format!("loading release #{id} of `{}`", self.dir.name))?;
        Ok(Arc::new(LoadedRelease {
            id_header: meta.id.into(),
            meta,
            manifest,
            recent: RecentLookups::default(),
        }))
    }

    /// A release's manifest, mapped from a verified local copy (never from
    /// the origin itself: see `cache::manifests`).
    fn manifest(&self, meta: &ReleaseMeta) -> Result<Manifest> {
        let digest = Sha256Digest::from_hex(&meta.manifest_sha256).with_context(|| {
            format!(
                "{}: bad manifest_sha256",
                self.dir.meta_file(meta.id).display()
            )
        })?;
        let origin = self.dir.manifest_file(meta.id);
        match self
            .manifests
            .load_from(&origin, digest, || self.dir.open_manifest(meta.id))
        {
            Ok((m, had)) => {
                if had == Had::FromOrigin {
                    self.loaded_from_origin.inc();
                }
                Ok(m)
            }
            Err(e) => {
                self.refused.inc();
                Err(e)
            }
        }
    }

    /// Follows the pointer (see [`ReleasedVolume::refresh_current`]) and
    /// the tags. Returns the new current id when it switched; a tag that
    /// cannot be followed is logged (once) and keeps what it named.
    pub fn refresh(&self) -> Result<Option<u64>> {
        // A volume may be migrated to the shared store while served: where
        // its objects are read first follows (both places are tried).
        if self.dir.s3.is_none() {
            self.dir.reread_layout();
        }
        let switched = self.refresh_current();
        // Informational: kept as it was when the origin cannot say.
        if let Ok(record) = self.dir.last_sync() {
            *self.last_sync.lock().expect("not poisoned") = record;
        }
        let error = self.refresh_tags().err().map(|e| format!("{e:#}"));
        let mut last = self.tags_error.lock().expect("not poisoned");
        if *last != error {
            match &error {
                Some(e) => tracing::error!(volume = %self.dir.name, "cannot follow the tags: {e}"),
                None if last.is_some() => {
                    tracing::info!(volume = %self.dir.name, "following the tags again")
                }
                None => {}
            }
            *last = error;
        }
        switched
    }

    /// Reads the tags and loads the release of each one that moved. A tag
    /// whose release cannot be loaded keeps the release it had, and the
    /// error is returned after the others are followed.
    fn refresh_tags(&self) -> Result<()> {
        let tags = self.dir.tags()?;
        let now = SystemTime::now();
        let old = self.tags.read().expect("not poisoned").clone();
        let mut next = HashMap::new();
        let mut failed = None;
        for t in tags {
            let Some(id) = t.release else { continue };
            let before = old.get(&t.name);
            if let Some(s) = before
                && s.current.meta.id == id
            {
                next.insert(t.name, s.clone());
                continue;
            }
            let release = match self.loaded(id).map(Ok).unwrap_or_else(|| self.load(id)) {
                Ok(r) => r,
                Err(e) => {
                    failed = Some(e.context(format!("tag `{}` names release #{id}", t.name)));
                    if let Some(s) = before {
                        next.insert(t.name, s.clone());
                    }
                    continue;
                }
            };
            tracing::info!(volume = %self.dir.name, tag = %t.name, release = id, "serving tag");
            let snapshot = Snapshot::advance(before.map(|s| &**s), release, now, self.grace, 0);
            next.insert(t.name, Arc::new(snapshot));
        }
        *self.tags.write().expect("not poisoned") = next;
        failed.map_or(Ok(()), Err)
    }

    /// Reads the pointer and, if it names another release, loads and
    /// verifies that release and switches to it; the old one joins the
    /// recent releases. Returns the new id when it switched. On error the
    /// previous state stays in service.
    fn refresh_current(&self) -> Result<Option<u64>> {
        let Some(id) = self.dir.current()? else {
            return Ok(None);
        };
        let now = SystemTime::now();
        let first_load = match self.snapshot() {
            Some(s) if s.current.meta.id == id => return Ok(None),
            Some(_) => false,
            None => true,
        };
        let release = self.load(id)?;
        // At start, the releases current just before this one answer too,
        // as they would have had the daemon been running all along.
        let mut earlier = Vec::new();
        if first_load {
            // Only the end of the history: a long one on S3 is many objects.
            let history = self.dir.history_tail(RECENT_HISTORY).unwrap_or_default();
            for (i, h) in history.iter().enumerate().rev() {
                if h.to == id || earlier.iter().any(|p: &Previous| p.release.meta.id == h.to) {
                    continue;
                }
                let until = history.get(i + 1).map(|n| n.time_unix).unwrap_or(0);
                let until = SystemTime::UNIX_EPOCH + Duration::from_secs(until);
                if earlier.len() >= MIN_PREVIOUS && !within(now, until, self.grace) {
                    break;
                }
                if let Ok(r) = self.load(h.to) {
                    earlier.push(Previous { release: r, until });
                }
            }
        }
        // An id asked for before it was published may be this one.
        self.unknown.lock().expect("not poisoned").clear();
        let mut state = self.state.write().expect("not poisoned");
        let mut next = Snapshot::advance(state.as_deref(), release, now, self.grace, MIN_PREVIOUS);
        if state.is_none() {
            next.previous = earlier;
        }
        *state = Some(Arc::new(next));
        Ok(Some(id))
    }

    /// A pinned release (`/<prefix>/@<id>/...`): any published release whose
    /// files are still on the origin.
    pub async fn pinned(self: &Arc<Self>, id: u64) -> Result<Arc<LoadedRelease>, PinnedError> {
        if let Some(r) = self.loaded(id) {
            return Ok(r);
        }
        if self.unknown.lock().expect("not poisoned").contains(&id) {
            return Err(PinnedError::Unknown);
        }
        let cell = self
            .loading
            .lock()
            .expect("not poisoned")
            .entry(id)
            .or_default()
            .clone();
        // Errors are shared too, so that waiters on a failing load do not
        // each try again in turn; the next request after it tries anew.
        let result = cell
            .get_or_init(|| async {
                let _slot = self.load_slots.acquire().await.expect("never closed");
                let v = self.clone();
                tokio::task::spawn_blocking(move || v.load_pinned(id))
                    .await
                    .unwrap_or_else(|e| Err(PinnedError::Unavailable(e.to_string())))
            })
            .await
            .clone();
        self.loading.lock().expect("not poisoned").remove(&id);
        result
    }

    /// A release already loaded (current, grace-period, tagged or pinned).
    fn loaded(&self, id: u64) -> Option<Arc<LoadedRelease>> {
        let tagged = self
            .tags
            .read()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect::<Vec<_>>();
        for s in self.snapshot().into_iter().chain(tagged) {
            if let Some(r) = std::iter::once(&s.current)
                .chain(s.previous())
                .find(|r| r.meta.id == id)
            {
                return Some(r.clone());
            }
        }
        let pinned = self.pinned.lock().expect("not poisoned");
        pinned.iter().find(|r| r.meta.id == id).cloned()
    }

    /// Loads a pinned release, once it is known to have been published
    /// (blocking file I/O).
    fn load_pinned(&self, id: u64) -> Result<Arc<LoadedRelease>, PinnedError> {
        if let Some(r) = self.loaded(id) {
            return Ok(r);
        }
        let unavailable = |e: anyhow::Error| PinnedError::Unavailable(format!("{e:#}"));
        let published = self.published_ids().map_err(unavailable)?;
        if !published.contains(&id) && self.dir.current().map_err(unavailable)? != Some(id) {
            let mut unknown = self.unknown.lock().expect("not poisoned");
            if unknown.len() >= UNKNOWN_IDS {
                unknown.clear();
            }
            unknown.insert(id);
            return Err(PinnedError::Unknown);
        }
        let r = self.load(id).map_err(unavailable)?;
        let mut pinned = self.pinned.lock().expect("not poisoned");
        pinned.insert(0, r.clone());
        pinned.truncate(PINNED_LOADED);
        Ok(r)
    }

    /// The ids ever made current, read from `history.jsonl` again only
    /// when the file changed (on S3: when the pointer's `seq` did, as of
    /// the last poll; every history object has one).
    fn published_ids(&self) -> Result<Arc<HashSet<u64>>> {
        let path = self.dir.history_file();
        let stamp = match &self.dir.s3 {
            Some(s3) => (s3.seen_seq().unwrap_or(0), 0, 0, 0),
            None => match std::fs::metadata(&path) {
                Ok(m) => (m.ino(), m.len(), m.mtime(), m.mtime_nsec()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, 0, 0, 0),
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            },
        };
        let mut published = self.published.lock().expect("not poisoned");
        if let Some(p) = published.as_ref()
            && p.stamp == stamp
        {
            return Ok(p.ids.clone());
        }
        let ids: Arc<HashSet<u64>> = Arc::new(self.dir.published_ids()?.into_iter().collect());
        *published = Some(Published {
            stamp,
            ids: ids.clone(),
        });
        Ok(ids)
    }
}

fn within(now: SystemTime, until: SystemTime, grace: Duration) -> bool {
    now.duration_since(until).unwrap_or(Duration::ZERO) < grace
}

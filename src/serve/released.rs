//! Following a released volume: which release is current, which recent
//! ones still answer during the grace period, and pinned releases.
//!
//! A request takes an `Arc` of the releases it starts on and finishes on
//! them, whatever the pointer does meanwhile. The swap itself is a write
//! lock held for a pointer assignment; loading and verifying a manifest
//! happens before it, outside any lock.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};

use super::recent::RecentLookups;
use crate::volume::manifest::{Entry, Manifest};
use crate::volume::{ReleaseMeta, VolumeDir};

/// How many earlier releases always stay loaded, whatever the grace period.
pub const MIN_PREVIOUS: usize = 2;
/// How many pinned (`@<id>`) releases stay loaded besides those.
const PINNED_LOADED: usize = 8;

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
struct Previous {
    release: Arc<LoadedRelease>,
    until: SystemTime,
}

/// The releases a request may be answered from: the current one first, then
/// the recent ones, newest first.
#[derive(Clone)]
pub struct Snapshot {
    pub current: Arc<LoadedRelease>,
    pub previous: Vec<Arc<LoadedRelease>>,
}

/// One released volume as the daemon sees it.
pub struct ReleasedVolume {
    pub dir: VolumeDir,
    pub grace: Duration,
    state: RwLock<Option<(Arc<LoadedRelease>, Vec<Previous>)>>,
    pinned: Mutex<Vec<Arc<LoadedRelease>>>,
}

impl ReleasedVolume {
    pub fn new(dir: VolumeDir, grace: Duration) -> ReleasedVolume {
        ReleasedVolume {
            dir,
            grace,
            state: RwLock::new(None),
            pinned: Mutex::new(Vec::new()),
        }
    }

    /// The current release, if the volume has one.
    pub fn current(&self) -> Option<Arc<LoadedRelease>> {
        let state = self.state.read().expect("not poisoned");
        state.as_ref().map(|(current, _)| current.clone())
    }

    /// The releases requests should use now, if the volume has any.
    pub fn snapshot(&self) -> Option<Snapshot> {
        let state = self.state.read().expect("not poisoned");
        let (current, previous) = state.as_ref()?;
        let now = SystemTime::now();
        Some(Snapshot {
            current: current.clone(),
            previous: previous
                .iter()
                .enumerate()
                .filter(|(i, p)| *i < MIN_PREVIOUS || within(now, p.until, self.grace))
                .map(|(_, p)| p.release.clone())
                .collect(),
        })
    }

    fn load(&self, id: u64) -> Result<Arc<LoadedRelease>> {
        let meta = self.dir.meta(id)?;
        let manifest = self
            .dir
            .manifest(&meta)
            .with_context(|| format!("loading release #{id} of `{}`", self.dir.name))?;
        Ok(Arc::new(LoadedRelease {
            id_header: meta.id.into(),
            meta,
            manifest,
            recent: RecentLookups::default(),
        }))
    }

    /// Reads the pointer and, if it names another release, loads and
    /// verifies that release and switches to it; the old one joins the
    /// recent releases. Returns the new id when it switched. On error the
    /// previous state stays in service.
    pub fn refresh(&self) -> Result<Option<u64>> {
        let Some(id) = self.dir.current()? else {
            return Ok(None);
        };
        let now = SystemTime::now();
        let first_load = {
            let state = self.state.read().expect("not poisoned");
            match state.as_ref() {
                Some((cur, _)) if cur.meta.id == id => return Ok(None),
                Some(_) => false,
                None => true,
            }
        };
        let release = self.load(id)?;
        // At start, the releases current just before this one answer too,
        // as they would have had the daemon been running all along.
        let mut earlier = Vec::new();
        if first_load {
            let history = self.dir.history().unwrap_or_default();
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
        let mut state = self.state.write().expect("not poisoned");
        match state.take() {
            Some((old, mut previous)) => {
                previous.retain(|p| p.release.meta.id != id);
                previous.insert(
                    0,
                    Previous {
                        release: old,
                        until: now,
                    },
                );
                let mut i = 0;
                previous.retain(|p| {
                    i += 1;
                    i <= MIN_PREVIOUS || within(now, p.until, self.grace)
                });
                *state = Some((release, previous));
            }
            None => *state = Some((release, earlier)),
        }
        Ok(Some(id))
    }

    /// A pinned release (`/<prefix>/@<id>/...`): any published release whose
    /// files are still on the origin.
    pub fn pinned(&self, id: u64) -> Result<Arc<LoadedRelease>> {
        if let Some(r) = self.snapshot().and_then(|s| {
            std::iter::once(s.current)
                .chain(s.previous)
                .find(|r| r.meta.id == id)
        }) {
            return Ok(r);
        }
        if let Some(r) = self
            .pinned
            .lock()
            .expect("not poisoned")
            .iter()
            .find(|r| r.meta.id == id)
        {
            return Ok(r.clone());
        }
        let published =
            self.dir.history()?.iter().any(|h| h.to == id) || self.dir.current()? == Some(id);
        if !published {
            bail!("release #{id} of `{}` was never published", self.dir.name);
        }
        let r = self.load(id)?;
        let mut pinned = self.pinned.lock().expect("not poisoned");
        pinned.insert(0, r.clone());
        pinned.truncate(PINNED_LOADED);
        Ok(r)
    }
}

fn within(now: SystemTime, until: SystemTime, grace: Duration) -> bool {
    now.duration_since(until).unwrap_or(Duration::ZERO) < grace
}

//! Following a released volume: which release is current, swapped
//! atomically when the pointer on the origin changes.
//!
//! A request takes an `Arc` of the release it starts on and finishes on it,
//! whatever the pointer does meanwhile.

use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};

use crate::volume::manifest::Manifest;
use crate::volume::{ReleaseMeta, VolumeDir};

/// A release loaded for serving.
#[derive(Debug)]
pub struct LoadedRelease {
    pub meta: ReleaseMeta,
    pub manifest: Manifest,
}

/// One released volume as the daemon sees it.
pub struct ReleasedVolume {
    pub dir: VolumeDir,
    current: RwLock<Option<Arc<LoadedRelease>>>,
}

impl ReleasedVolume {
    pub fn new(dir: VolumeDir) -> ReleasedVolume {
        ReleasedVolume {
            dir,
            current: RwLock::new(None),
        }
    }

    /// The release requests should use now, if the volume has one.
    pub fn current(&self) -> Option<Arc<LoadedRelease>> {
        self.current.read().expect("not poisoned").clone()
    }

    /// Reads the pointer and, if it names another release, loads and
    /// verifies that release and switches to it. Returns the new id when it
    /// switched. On error the previous release stays in service.
    pub fn refresh(&self) -> Result<Option<u64>> {
        let Some(id) = self.dir.current()? else {
            return Ok(None);
        };
        if self.current().is_some_and(|r| r.meta.id == id) {
            return Ok(None);
        }
        let meta = self.dir.meta(id)?;
        let manifest = self
            .dir
            .manifest(&meta)
            .with_context(|| format!("loading release #{id} of `{}`", self.dir.name))?;
        *self.current.write().expect("not poisoned") =
            Some(Arc::new(LoadedRelease { meta, manifest }));
        Ok(Some(id))
    }
}

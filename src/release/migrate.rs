//! `unimirror-update migrate <volume>`: moves a format-1 volume on a
//! filesystem origin to format 2, whose objects are in the origin's shared
//! store, without copying or downloading a byte.
//!
//! Under the volume's lock and the store's (shared) lock:
//! 1. every object of `<volume>/objects/` is hard-linked into
//!    `<origin>/objects/` (a name already there is the same content: names
//!    are sha256s), and the store is flushed (`syncfs`);
//! 2. `<volume>/format` is replaced by "unimirror-volume 2": the commit
//!    point;
//! 3. `<volume>/objects/` is removed.
//!
//! A crash before 2 leaves format 1 whole (the links are harmless; a rerun
//! makes them again); after it, every object is in the shared store, and a
//! rerun finishes 3. Daemons read an object from either place, so they
//! serve throughout.

use std::fs;
use std::io;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::Need;
use crate::config::Config;
use crate::durable;
use crate::fault;
use crate::volume::{Layout, StoreLock};

/// What a migration did.
#[derive(Debug, Default)]
pub struct Migrated {
    /// Objects linked into the shared store, and their bytes.
    pub linked: u64,
    pub bytes: u64,
    /// Already in the shared store (another volume's, with the same content).
    pub present: u64,
    /// The volume was in format 2 already.
    pub already: bool,
}

impl Migrated {
    pub fn summary(&self, volume: &str) -> String {
        match self.already {
            true => {
                format!("{volume} is in format 2 already (its objects are in the shared store)")
            }
            false => format!(
                "migrated {volume} to format 2: {} objects ({}) linked into the shared store, {} already there, 0 bytes copied",
                self.linked,
                crate::progress::bytes(self.bytes),
                self.present
            ),
        }
    }
}

pub fn migrate(config: &Config, volume: &str, wait: bool) -> Result<Migrated> {
    let (dir, _) = super::released_volume(config, volume)?;
    if dir.s3.is_some() {
        bail!("volume `{volume}` is on S3, whose volumes share one store already");
    }
    let vol = super::lock(&dir, Need::Existing, wait, "migrate")?;
    let own = vol.own_objects_dir();
    let mut done = Migrated::default();
    if vol.layout() == Layout::Shared {
        // A migration that crashed after its commit point left these.
        done.already = true;
        remove_tree(own.parent().expect("objects/sha256 has a parent"))?;
        return Ok(done);
    }
    vol.init_shared_store()?;
    let _store = StoreLock::acquire(&vol, false, wait)?;
    let shared = vol.shared_objects_dir();
    for l1 in sorted(&own)? {
        for l2 in sorted(&l1)? {
            for obj in sorted(&l2)? {
                let rel = obj.strip_prefix(&own).expect("under own");
                let dest = shared.join(rel);
                let parent = dest.parent().expect("objects have a parent");
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
                match fs::hard_link(&obj, &dest) {
                    Ok(()) => {
                        done.linked += 1;
                        done.bytes += fs::symlink_metadata(&obj).map(|m| m.len()).unwrap_or(0);
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => done.present += 1,
                    Err(e) if e.raw_os_error() == Some(libc::EXDEV) => bail!(
                        "{} and {} are on different filesystems: the shared store must be on the origin's",
                        obj.display(),
                        shared.display()
                    ),
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("linking {} to {}", obj.display(), dest.display())
                        });
                    }
                }
                fault::point("migrate-linked");
            }
        }
    }
    // Every link and directory durable before the format says they are
    // where objects are.
    durable::syncfs(&shared).context("flushing the shared store")?;
    durable::write_atomic(&vol.format_file(), &vol.tmp_dir(), b"unimirror-volume 2\n")
        .with_context(|| format!("writing {}", vol.format_file().display()))?;
    fault::point("migrate-committed");
    vol.reread_layout();
    remove_tree(own.parent().expect("objects/sha256 has a parent"))?;
    Ok(done)
}

fn sorted(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut v = Vec::new();
    match fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                v.push(
                    e.with_context(|| format!("listing {}", dir.display()))?
                        .path(),
                );
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    }
    v.sort();
    Ok(v)
}

fn remove_tree(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

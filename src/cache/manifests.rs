//! Local copies of the release manifests the daemon serves from.
//!
//! A manifest is memory-mapped for its lookups. Mapped straight from a
//! shared origin (NFS, AFS, CephFS), a truncation of the file by anyone on
//! any host would turn the next lookup touching a lost page into SIGBUS,
//! and kill the daemon. So the daemon maps a copy it owns instead: the
//! origin's manifest is read once with plain reads, hashed as it is copied
//! into `<cache>/manifests/<sha256>`, compared with the digest the release
//! records, and only then renamed into place and mapped. A truncated or
//! damaged manifest on the origin fails the copy: an error for that
//! release (the volume keeps its previous one), never a crash.
//!
//! The copy costs the same memory as mapping the origin's file did (its
//! pages are page cache, counted as file-backed RSS and reclaimable), and
//! it makes a reload cheap: a copy verified once by this process is mapped
//! again without reading it, so a pinned release that left the loaded set
//! comes back without touching the origin.
//!
//! Copies are bounded in number (`KEEP`, least recently used removed; a
//! removed copy still mapped stays readable until it is unmapped). They are
//! not counted in `cache.disk_size`. Like cache entries, they are not
//! fsynced: a copy from before a restart is hashed again on its first use.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::digest::Sha256Digest;
use crate::volume::manifest::{Manifest, Verify};

/// How many manifest copies stay on disk: every loaded release of a few
/// volumes (current, grace-period and pinned ones).
pub const KEEP: usize = 32;

/// How a manifest was had, for the caller to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Had {
    /// Read from the origin, verified and copied.
    FromOrigin,
    /// A copy already here (verified now, or earlier by this process).
    Local,
}

pub struct ManifestCopies {
    dir: PathBuf,
    state: Mutex<State>,
}

struct State {
    /// Digests of the copies this process has verified.
    verified: HashSet<Sha256Digest>,
    /// Copies on disk, most recently used first.
    used: VecDeque<Sha256Digest>,
}

impl ManifestCopies {
    /// Uses `<cache_dir>/manifests`, making it if needed; removes
    /// temporary files a crash left, and the oldest copies past `KEEP`.
    pub fn open(cache_dir: &Path) -> Result<ManifestCopies> {
        let dir = cache_dir.join("manifests");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut found = Vec::new();
        for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let e = e?;
            let name = e.file_name();
            let digest = name.to_str().and_then(Sha256Digest::from_hex);
            match digest {
                Some(d) => {
                    let mtime = e.metadata().and_then(|m| m.modified()).ok();
                    found.push((mtime, d));
                }
                // A copy cut short by a crash, or anything else.
                None => {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        let copies = ManifestCopies {
            dir,
            state: Mutex::new(State {
                verified: HashSet::new(),
                used: found.into_iter().map(|(_, d)| d).collect(),
            }),
        };
        copies.trim();
        Ok(copies)
    }

    fn path(&self, digest: &Sha256Digest) -> PathBuf {
        self.dir.join(digest.to_string())
    }

    /// The manifest whose sha256 is `digest`, mapped from a local copy of
    /// `origin` (the manifest file on the origin).
    pub fn load(&self, origin: &Path, digest: Sha256Digest) -> Result<(Manifest, Had)> {
        let local = self.path(&digest);
        let verified = self.state().verified.contains(&digest);
        if local.exists() {
            let verify = match verified {
                true => Verify::No,
                false => Verify::Sha256(digest),
            };
            match Manifest::open(&local, verify) {
                Ok(m) => {
                    self.used(digest);
                    return Ok((m, Had::Local));
                }
                Err(e) => {
                    tracing::warn!("dropping the manifest copy {}: {e:#}", local.display());
                    self.state().verified.remove(&digest);
                    let _ = fs::remove_file(&local);
                }
            }
        }
        self.copy(origin, &digest, &local)?;
        let m = Manifest::open(&local, Verify::No)
            .with_context(|| format!("reading the copy of {}", origin.display()))?;
        self.used(digest);
        Ok((m, Had::FromOrigin))
    }

    /// Copies `origin` to `local`, hashing it on the way; renames it into
    /// place only if it is what the release records.
    fn copy(&self, origin: &Path, digest: &Sha256Digest, local: &Path) -> Result<()> {
        let mut from =
            File::open(origin).with_context(|| format!("opening {}", origin.display()))?;
        let tmp = self.dir.join(crate::durable::temp_name("copy"));
        let result = (|| -> Result<()> {
            let mut to = crate::durable::create_new(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = from
                    .read(&mut buf)
                    .with_context(|| format!("reading {}", origin.display()))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                to.write_all(&buf[..n])
                    .with_context(|| format!("writing {}", tmp.display()))?;
            }
            let actual = Sha256Digest(hasher.finalize().into());
            if actual != *digest {
                bail!(
                    "{} is damaged or truncated: its sha256 is {actual}, the release records {digest}",
                    origin.display()
                );
            }
            fs::rename(&tmp, local).with_context(|| format!("renaming to {}", local.display()))?;
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        self.state().verified.insert(*digest);
        Ok(())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }

    /// Marks a copy as just used (and verified), and trims the oldest.
    fn used(&self, digest: Sha256Digest) {
        {
            let mut s = self.state();
            s.verified.insert(digest);
            s.used.retain(|d| *d != digest);
            s.used.push_front(digest);
        }
        self.trim();
    }

    fn trim(&self) {
        let gone: Vec<Sha256Digest> = {
            let mut s = self.state();
            let n = s.used.len().saturating_sub(KEEP);
            let gone: Vec<_> = (0..n).filter_map(|_| s.used.pop_back()).collect();
            for d in &gone {
                s.verified.remove(d);
            }
            gone
        };
        for d in gone {
            // A copy still mapped by a loaded release stays readable.
            let _ = fs::remove_file(self.path(&d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::manifest::{Entry, Kind, ManifestWriter, key_for_path};

    /// A small real manifest in `dir`, and its sha256.
    fn manifest(dir: &Path, files: usize) -> (PathBuf, Sha256Digest) {
        let path = dir.join(format!("m{files}"));
        let mut w = ManifestWriter::create(&path).unwrap();
        for i in 0..files {
            let key = key_for_path(format!("f{i:05}").as_bytes()).unwrap();
            w.push(
                &key,
                &Entry {
                    kind: Kind::File,
                    size: i as u64,
                    mtime: 0,
                    mtime_nsec: 0,
                    sha256: Sha256Digest([i as u8; 32]),
                    target: Vec::new(),
                    source_inode: 0,
                },
            )
            .unwrap();
        }
        let (digest, _, _) = w.finish().unwrap();
        (path, digest)
    }

    #[test]
    fn a_manifest_is_copied_once_then_mapped_from_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (origin, digest) = manifest(dir.path(), 100);
        let copies = ManifestCopies::open(&dir.path().join("cache")).unwrap();
        let (m, had) = copies.load(&origin, digest).unwrap();
        assert_eq!(had, Had::FromOrigin);
        assert_eq!(m.counts().files, 100);
        // The origin's file can now go (or be truncated): the copy serves.
        fs::remove_file(&origin).unwrap();
        let (m, had) = copies.load(&origin, digest).unwrap();
        assert_eq!(had, Had::Local);
        assert!(m.locate(b"f00042").unwrap().is_some());
    }

    #[test]
    fn a_truncated_origin_manifest_is_an_error_and_leaves_no_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (origin, digest) = manifest(dir.path(), 1000);
        let len = fs::metadata(&origin).unwrap().len();
        File::options()
            .write(true)
            .open(&origin)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let copies = ManifestCopies::open(&dir.path().join("cache")).unwrap();
        let e = copies.load(&origin, digest).unwrap_err();
        assert!(format!("{e:#}").contains("damaged or truncated"), "{e:#}");
        let left: Vec<_> = fs::read_dir(dir.path().join("cache/manifests"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_rotten_copy_is_dropped_and_copied_again() {
        let dir = tempfile::tempdir().unwrap();
        let (origin, digest) = manifest(dir.path(), 10);
        let cache = dir.path().join("cache");
        ManifestCopies::open(&cache)
            .unwrap()
            .load(&origin, digest)
            .unwrap();
        let copy = cache.join("manifests").join(digest.to_string());
        let mut bytes = fs::read(&copy).unwrap();
        bytes[20] ^= 1;
        fs::write(&copy, bytes).unwrap();
        // A new process checks a copy it did not verify itself.
        let copies = ManifestCopies::open(&cache).unwrap();
        let (_, had) = copies.load(&origin, digest).unwrap();
        assert_eq!(had, Had::FromOrigin);
    }

    #[test]
    fn copies_past_the_bound_are_removed_oldest_first_and_crash_leftovers_swept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        fs::create_dir_all(cache.join("manifests")).unwrap();
        fs::write(cache.join("manifests/copy.1.2.3.tmp"), b"cut short").unwrap();
        let copies = ManifestCopies::open(&cache).unwrap();
        assert!(!cache.join("manifests/copy.1.2.3.tmp").exists());
        let mut digests = Vec::new();
        for n in 1..=KEEP + 3 {
            let (origin, digest) = manifest(dir.path(), n);
            copies.load(&origin, digest).unwrap();
            digests.push(digest);
        }
        let on_disk = fs::read_dir(cache.join("manifests")).unwrap().count();
        assert_eq!(on_disk, KEEP);
        assert!(
            !cache
                .join("manifests")
                .join(digests[0].to_string())
                .exists()
        );
        assert!(
            cache
                .join("manifests")
                .join(digests[KEEP + 2].to_string())
                .exists()
        );
    }
}

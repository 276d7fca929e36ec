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
//! Copies are charged to `cache.disk_size`: each holds a reservation of
//! its size in the disk tier for as long as it exists, so cache entries
//! are evicted to make room for it. They may take a quarter of the budget
//! (the rest bounds the fills in flight, so the two never overrun it
//! together) and are at most `KEEP`; past either bound the least recently
//! used go (a removed copy still mapped stays readable until it is
//! unmapped). Like cache entries, they are not fsynced: a copy from before
//! a restart is hashed again on its first use.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};

use super::disk::{DiskTier, Reservation};
use crate::digest::{Sha256Digest, copy_hashing};
use crate::volume::manifest::{Manifest, Verify};

/// How many manifest copies stay on disk: every loaded release of a few
/// volumes (current, grace-period and pinned ones).
pub const KEEP: usize = 32;

/// The part of `cache.disk_size` manifest copies may take, as a divisor.
pub const SHARE: u64 = 4;

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
    disk: Arc<DiskTier>,
    /// The bytes copies may take together.
    share: u64,
    state: Mutex<State>,
    /// Held for a whole copy: making room in the share and reserving it
    /// are two steps, and two copies at once could together overrun it.
    copying: Mutex<()>,
}

#[derive(Default)]
struct State {
    /// Digests of the copies this process has verified.
    verified: HashSet<Sha256Digest>,
    /// Copies on disk, most recently used first.
    used: VecDeque<Sha256Digest>,
    /// Each copy's room in the disk budget.
    held: HashMap<Sha256Digest, Reservation>,
}

impl State {
    fn held_bytes(&self) -> u64 {
        self.held.values().map(Reservation::size).sum()
    }
}

impl ManifestCopies {
    /// Uses `<cache dir>/manifests`, making it if needed; removes
    /// temporary files a crash left, and charges the copies found to the
    /// disk budget, most recent first, removing those past the bounds.
    pub fn open(disk: Arc<DiskTier>) -> Result<ManifestCopies> {
        let dir = disk.dir().join("manifests");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut found = Vec::new();
        for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let e = e?;
            let name = e.file_name();
            let digest = name.to_str().and_then(Sha256Digest::from_hex);
            let meta = e.metadata().ok().filter(|m| m.is_file());
            match (digest, meta) {
                (Some(d), Some(m)) => found.push((m.modified().ok(), m.len(), d)),
                // A copy cut short by a crash, or anything else.
                _ => {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        let copies = ManifestCopies {
            share: disk.budget() / SHARE,
            dir,
            disk,
            state: Mutex::default(),
            copying: Mutex::new(()),
        };
        for (_, len, d) in found {
            let fits = {
                let s = copies.state();
                s.used.len() < KEEP && s.held_bytes() + len <= copies.share
            };
            let path = copies.path(&d);
            if !fits {
                let _ = fs::remove_file(&path);
                continue;
            }
            let mut room = copies.disk.reserve(len);
            room.count_file()
                .with_context(|| format!("charging {} to the disk budget", path.display()))?;
            let mut s = copies.state();
            s.used.push_back(d);
            s.held.insert(d, room);
        }
        Ok(copies)
    }

    fn path(&self, digest: &Sha256Digest) -> PathBuf {
        self.dir.join(digest.to_string())
    }

    /// The manifest whose sha256 is `digest`, mapped from a local copy of
    /// `origin` (the manifest file on the origin).
    pub fn load(&self, origin: &Path, digest: Sha256Digest) -> Result<(Manifest, Had)> {
        self.load_from(origin, digest, || {
            let file =
                File::open(origin).with_context(|| format!("opening {}", origin.display()))?;
            let len = file
                .metadata()
                .with_context(|| format!("reading {}", origin.display()))?
                .len();
            Ok((len, Box::new(file)))
        })
    }

    /// [`ManifestCopies::load`] from what `open` opens (a file on the
    /// origin, or an object of an S3 one), with its size; `origin` names
    /// it in messages.
    pub fn load_from<'r>(
        &self,
        origin: &Path,
        digest: Sha256Digest,
        open: impl FnOnce() -> Result<(u64, Box<dyn Read + 'r>)>,
    ) -> Result<(Manifest, Had)> {
        let local = self.path(&digest);
        let (verified, present) = {
            let s = self.state();
            (s.verified.contains(&digest), s.held.contains_key(&digest))
        };
        if present {
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
                    self.remove(&digest);
                }
            }
        }
        {
            let _one_at_a_time = self.copying.lock().expect("not poisoned");
            self.copy(origin, open, &digest, &local)?;
        }
        let m = Manifest::open(&local, Verify::No)
            .with_context(|| format!("reading the copy of {}", origin.display()))?;
        self.used(digest);
        Ok((m, Had::FromOrigin))
    }

    /// Copies `origin` to `local`, hashing it on the way; renames it into
    /// place only if it is what the release records. Its room in the disk
    /// budget is made first (evicting cache entries, and older copies past
    /// the share).
    fn copy<'r>(
        &self,
        origin: &Path,
        open: impl FnOnce() -> Result<(u64, Box<dyn Read + 'r>)>,
        digest: &Sha256Digest,
        local: &Path,
    ) -> Result<()> {
        let (len, mut from) = open()?;
        if len > self.share {
            bail!(
                "{} is {len} bytes, more than the quarter of cache.disk_size ({} bytes) manifest copies may use: raise cache.disk_size",
                origin.display(),
                self.share
            );
        }
        self.make_room(len);
        let mut room = self.disk.reserve(len);
        let (tmp, to) = room
            .create_temp()
            .context("creating a temporary file in the cache")?;
        let result = (|| -> Result<()> {
            // No further than its size when opened: a file growing under
            // the copy cannot overrun the room held for it.
            let (actual, _) = copy_hashing((&mut from).take(len), &to)
                .with_context(|| format!("copying {} to {}", origin.display(), tmp.display()))?;
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
        let mut s = self.state();
        s.verified.insert(*digest);
        s.held.insert(*digest, room);
        Ok(())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }

    /// Marks a copy as just used (and verified), and trims the oldest past
    /// `KEEP`.
    fn used(&self, digest: Sha256Digest) {
        {
            let mut s = self.state();
            s.verified.insert(digest);
            s.used.retain(|d| *d != digest);
            s.used.push_front(digest);
        }
        self.remove_oldest_while(|s| s.used.len() > KEEP);
    }

    /// Removes the least recently used copies until `len` more bytes fit
    /// in the share.
    fn make_room(&self, len: u64) {
        self.remove_oldest_while(|s| s.held_bytes() + len > self.share);
    }

    /// Removes the least recently used copy while `over` holds.
    fn remove_oldest_while(&self, over: impl Fn(&State) -> bool) {
        loop {
            let oldest = {
                let s = self.state();
                if !over(&s) {
                    break;
                }
                s.used.back().copied()
            };
            match oldest {
                Some(d) => self.remove(&d),
                None => break,
            }
        }
    }

    /// Deletes a copy, then gives its room back. A copy still mapped by a
    /// loaded release stays readable.
    fn remove(&self, digest: &Sha256Digest) {
        let room = {
            let mut s = self.state();
            s.verified.remove(digest);
            s.used.retain(|d| d != digest);
            s.held.remove(digest)
        };
        let _ = fs::remove_file(self.path(digest));
        drop(room);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::disk::tests::du;
    use crate::metrics::Metrics;
    use crate::volume::manifest::{Entry, Kind, ManifestWriter, key_for_path};

    /// The disk tier of a cache in `dir`, with a `budget`.
    fn tier(dir: &Path, budget: u64) -> Arc<DiskTier> {
        Arc::new(DiskTier::load(dir, budget, 16, Arc::new(Metrics::new())).unwrap())
    }

    /// Manifest copies in a cache with a budget of 1 GiB.
    fn copies_in(dir: &Path) -> ManifestCopies {
        ManifestCopies::open(tier(dir, 1 << 30)).unwrap()
    }

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
        let copies = copies_in(&dir.path().join("cache"));
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
        let copies = copies_in(&dir.path().join("cache"));
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
        copies_in(&cache).load(&origin, digest).unwrap();
        let copy = cache.join("manifests").join(digest.to_string());
        let mut bytes = fs::read(&copy).unwrap();
        bytes[20] ^= 1;
        fs::write(&copy, bytes).unwrap();
        // A new process checks a copy it did not verify itself.
        let copies = copies_in(&cache);
        let (_, had) = copies.load(&origin, digest).unwrap();
        assert_eq!(had, Had::FromOrigin);
    }

    #[test]
    fn copies_past_the_bound_are_removed_oldest_first_and_crash_leftovers_swept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        fs::create_dir_all(cache.join("manifests")).unwrap();
        fs::write(cache.join("manifests/copy.1.2.3.tmp"), b"cut short").unwrap();
        let copies = copies_in(&cache);
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

    #[test]
    fn copies_are_charged_to_the_disk_budget_and_cache_entries_make_room() {
        let dir = tempfile::tempdir().unwrap();
        let (origin, digest) = manifest(dir.path(), 5000);
        let len = fs::metadata(&origin).unwrap().len();
        let cache = dir.path().join("cache");
        // A budget the copy takes a fifth of, already full of entries.
        let budget = len * 5;
        let disk = tier(&cache, budget);
        let mut entries = Vec::new();
        for i in 0..10u8 {
            let data = vec![i; (budget / 10) as usize];
            let sha = Sha256Digest::of(&data);
            let temp = cache.join("tmp").join(sha.hex());
            fs::write(&temp, &data).unwrap();
            disk.commit(&temp, &sha, data.len() as u64, None).unwrap();
            entries.push(sha);
        }
        let copies = ManifestCopies::open(disk.clone()).unwrap();
        copies.load(&origin, digest).unwrap();
        disk.flush();
        assert!(du(&cache) <= budget, "{} bytes of {budget}", du(&cache));
        let kept = entries.iter().filter(|s| disk.contains(s)).count();
        assert!(kept <= 8, "{kept} entries of a tenth kept beside a fifth");

        // A restart charges the copy found again.
        drop(copies);
        let disk = tier(&cache, budget);
        let copies = ManifestCopies::open(disk.clone()).unwrap();
        assert_eq!(copies.state().held_bytes(), len);
        assert!(du(&cache) <= budget, "{} bytes of {budget}", du(&cache));
        let (_, had) = copies.load(&origin, digest).unwrap();
        assert_eq!(had, Had::Local);
    }

    #[test]
    fn past_their_share_of_the_budget_the_oldest_copies_go() {
        let dir = tempfile::tempdir().unwrap();
        let made: Vec<_> = (0..3).map(|i| manifest(dir.path(), 2000 + i)).collect();
        let len = fs::metadata(&made[2].0).unwrap().len();
        // A share with room for two of them, not three.
        let copies =
            ManifestCopies::open(tier(&dir.path().join("cache"), len * 2 * SHARE + 100)).unwrap();
        for (origin, digest) in &made {
            copies.load(origin, *digest).unwrap();
        }
        let s = copies.state();
        assert!(!s.held.contains_key(&made[0].1));
        assert!(!copies.path(&made[0].1).exists());
        assert!(s.held.contains_key(&made[1].1) && s.held.contains_key(&made[2].1));
        assert!(s.held_bytes() <= copies.share);
    }

    #[test]
    fn a_manifest_larger_than_the_share_is_refused_naming_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let (origin, digest) = manifest(dir.path(), 1000);
        let len = fs::metadata(&origin).unwrap().len();
        let copies = ManifestCopies::open(tier(&dir.path().join("cache"), len * 2)).unwrap();
        let e = copies.load(&origin, digest).unwrap_err();
        assert!(format!("{e:#}").contains("raise cache.disk_size"), "{e:#}");
        assert_eq!(copies.state().held_bytes(), 0);
    }
}

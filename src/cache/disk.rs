//! The disk tier: objects stored by sha256 in a cacache directory, kept
//! under a byte budget.
//!
//! cacache gives the on-disk layout (`content-v2/sha256/ab/cd/<rest>`) and,
//! for plain-tree volumes, the index mapping a path to its content. It has
//! no eviction and no streaming verified reads, so this module adds:
//!
//! - **Accounting and eviction.** A moka cache of `sha256 → entry` weighs
//!   each entry by its size in KiB, with the budget as its capacity; moka's
//!   TinyLFU policy picks what to evict. Evicted files are unlinked by one
//!   deletion thread, under the same lock as commits, so a file refilled
//!   just after its eviction is never deleted by mistake.
//! - **Rebuild at start.** The content directory is walked, every entry
//!   re-admitted oldest first (by mtime), so the budget holds from the first
//!   request; files with names that are not sha256 paths and everything in
//!   `tmp/` (fills cut short by a crash) are deleted.
//! - **Verification.** Files are written only by fills that checked their
//!   hash, but disks rot and operators copy things around: the first read
//!   of each entry after start hashes the whole file first, and a scrub
//!   re-hashes every entry in the background. A mismatch drops the entry,
//!   which is then refetched like any miss.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::notification::RemovalCause;

use crate::metrics::Metrics;
use crate::volume::manifest::{Sha256Digest, sha256_of_reader};

/// One object in the disk tier.
/// Entries up to this size are read whole by [`DiskTier::read_small`].
pub const SMALL: u64 = 64 << 10;

pub struct DiskEntry {
    pub size: u64,
    /// Hashed since this process started (by its fill, a first read or the
    /// scrub).
    verified: AtomicBool,
    /// Its file is in place (a commit admits the entry first, evicts to
    /// make room, and only then moves the file in).
    present: AtomicBool,
}

impl DiskEntry {
    fn new(size: u64, verified: bool, present: bool) -> Arc<DiskEntry> {
        Arc::new(DiskEntry {
            size,
            verified: AtomicBool::new(verified),
            present: AtomicBool::new(present),
        })
    }
}

pub struct DiskTier {
    dir: PathBuf,
    index: moka::sync::Cache<Sha256Digest, Arc<DiskEntry>, super::ByDigest>,
    /// Held while a file is renamed into place or unlinked, so eviction and
    /// refill of one sha256 never interleave.
    files: Arc<Mutex<()>>,
    bytes: Arc<AtomicU64>,
    budget: u64,
    metrics: Arc<Metrics>,
    deleter: std::sync::mpsc::Sender<Deletion>,
}

/// Work for the deletion thread.
enum Deletion {
    /// An evicted or dropped entry's file.
    File(Sha256Digest, u64),
    /// Reply once everything queued before is done.
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// cacache's content path for a sha256: `content-v2/sha256/ab/cd/<rest>`.
/// Computed here because cacache does not expose it; a unit test checks it
/// against cacache's own reads (the crate's minor version is pinned).
pub fn content_path(dir: &Path, sha: &Sha256Digest) -> PathBuf {
    let hex = sha.hex();
    dir.join("content-v2")
        .join("sha256")
        .join(&hex[0..2])
        .join(&hex[2..4])
        .join(&hex[4..])
}

/// The directory fills write their temporary files to (cacache's own).
pub fn tmp_dir(dir: &Path) -> PathBuf {
    dir.join("tmp")
}

impl DiskTier {
    /// Opens (creating) the cache directory, sweeps debris and re-admits
    /// what is there under `budget` bytes.
    pub fn load(dir: &Path, budget: u64, metrics: Arc<Metrics>) -> io::Result<DiskTier> {
        std::fs::create_dir_all(dir.join("content-v2").join("sha256"))?;
        let tmp = tmp_dir(dir);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        // Writable check up front: a read-only cache is a start-up error,
        // not a stream of failed fills.
        crate::durable::create_new(&tmp.join(".probe"))?;
        std::fs::remove_file(tmp.join(".probe"))?;

        let files = Arc::new(Mutex::new(()));
        let bytes = Arc::new(AtomicU64::new(0));
        let (to_delete, deletions) = std::sync::mpsc::channel::<Deletion>();
        let deleter = to_delete.clone();
        let listener_metrics = metrics.clone();
        let index = moka::sync::Cache::builder()
            .max_capacity(budget / 1024)
            .weigher(|_, e: &Arc<DiskEntry>| kib(e.size))
            .eviction_listener(move |sha: Arc<Sha256Digest>, e, cause| {
                if cause == RemovalCause::Replaced {
                    return;
                }
                if cause == RemovalCause::Size {
                    listener_metrics
                        .cache_evictions
                        .with_label_values(&["disk"])
                        .inc();
                }
                // The listener runs inside whichever cache call triggered
                // maintenance; unlinking is left to the deletion thread.
                let _ = to_delete.send(Deletion::File(*sha, e.size));
            })
            .build_with_hasher(super::ByDigest);
        let tier = DiskTier {
            dir: dir.to_path_buf(),
            index,
            files,
            bytes,
            budget,
            metrics,
            deleter,
        };
        tier.spawn_deleter(deletions);
        tier.rebuild()?;
        Ok(tier)
    }

    fn spawn_deleter(&self, deletions: std::sync::mpsc::Receiver<Deletion>) {
        let dir = self.dir.clone();
        let files = self.files.clone();
        let bytes = self.bytes.clone();
        let index = self.index.clone();
        let metrics = self.metrics.clone();
        std::thread::Builder::new()
            .name("cache-delete".into())
            .spawn(move || {
                for d in deletions {
                    let (sha, size) = match d {
                        Deletion::File(sha, size) => (sha, size),
                        Deletion::Flush(done) => {
                            let _ = done.send(());
                            continue;
                        }
                    };
                    let _guard = files.lock().expect("not poisoned");
                    if index.contains_key(&sha) {
                        continue; // refilled since it was evicted
                    }
                    match std::fs::remove_file(content_path(&dir, &sha)) {
                        Ok(()) => {
                            bytes.fetch_sub(size, Ordering::Relaxed);
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => tracing::error!(%sha, "cannot delete evicted cache entry: {e}"),
                    }
                    metrics
                        .cache_bytes
                        .with_label_values(&["disk"])
                        .set(bytes.load(Ordering::Relaxed) as i64);
                }
            })
            .expect("spawning a thread");
    }

    /// Walks the content directory and admits every well-formed entry,
    /// oldest first; deletes anything else.
    fn rebuild(&self) -> io::Result<()> {
        let started = Instant::now();
        let root = self.dir.join("content-v2").join("sha256");
        let mut found = Vec::new();
        for a in std::fs::read_dir(&root)? {
            let a = a?;
            for b in read_dir_or_empty(&a.path())? {
                let b = b?;
                for f in read_dir_or_empty(&b.path())? {
                    let f = f?;
                    let name = format!(
                        "{}{}{}",
                        a.file_name().to_string_lossy(),
                        b.file_name().to_string_lossy(),
                        f.file_name().to_string_lossy()
                    );
                    let meta = f.metadata()?;
                    match Sha256Digest::from_hex(&name) {
                        Some(sha)
                            if meta.is_file() && content_path(&self.dir, &sha) == f.path() =>
                        {
                            found.push((meta.modified()?, sha, meta.len()))
                        }
                        _ => {
                            tracing::warn!(path = %f.path().display(), "removing a stray file from the cache");
                            remove_any(&f.path())?;
                        }
                    }
                }
            }
        }
        found.sort();
        let n = found.len();
        for (_, sha, size) in found {
            self.bytes.fetch_add(size, Ordering::Relaxed);
            self.index.insert(sha, DiskEntry::new(size, false, true));
        }
        self.index.run_pending_tasks();
        self.update_gauges();
        tracing::info!(
            entries = n,
            bytes = self.bytes.load(Ordering::Relaxed),
            millis = started.elapsed().as_millis() as u64,
            "disk cache loaded"
        );
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the tier holds `sha` (without verifying it).
    pub fn contains(&self, sha: &Sha256Digest) -> bool {
        self.index
            .get(sha)
            .is_some_and(|e| e.present.load(Ordering::Acquire))
    }

    /// Opens an entry for reading, verifying it first if this process has
    /// not yet. `None` when it is absent or was found corrupt (and dropped).
    pub async fn open_entry(self: &Arc<Self>, sha: &Sha256Digest) -> Option<Arc<File>> {
        let entry = self.index.get(sha)?;
        if !entry.present.load(Ordering::Acquire) {
            return None; // being committed
        }
        let tier = self.clone();
        let sha = *sha;
        tokio::task::spawn_blocking(move || {
            let path = content_path(&tier.dir, &sha);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(%sha, "cache entry vanished: {e}");
                    tier.index.invalidate(&sha);
                    return None;
                }
            };
            // A commit never replaces an existing file, so what was hashed
            // is what `file` reads.
            if !entry.verified.load(Ordering::Acquire) && !tier.verify(&sha, &entry) {
                return None;
            }
            Some(Arc::new(file))
        })
        .await
        .ok()
        .flatten()
    }

    /// Reads a small entry whole, on the calling thread: `None` if the tier
    /// does not have it (or it turned out corrupt, and was dropped).
    ///
    /// Small objects are read without a hop to the blocking pool: from the
    /// page cache a read costs a few microseconds, less than the hop, and
    /// the busiest paths (index pages, small packages) are made of them.
    /// Like nginx, a slow disk then delays this worker thread; objects
    /// above [`SMALL`] always go through the pool.
    pub fn read_small(&self, sha: &Sha256Digest) -> Option<Bytes> {
        let entry = self.index.get(sha)?;
        if !entry.present.load(Ordering::Acquire) || entry.size > SMALL {
            return None;
        }
        let path = content_path(&self.dir, sha);
        let mut buf = Vec::with_capacity(entry.size as usize);
        if let Err(e) = File::open(&path).and_then(|mut f| f.read_to_end(&mut buf)) {
            tracing::warn!(%sha, "cache entry vanished: {e}");
            self.index.invalidate(sha);
            return None;
        }
        if !entry.verified.load(Ordering::Acquire) {
            let actual = Sha256Digest::of(&buf);
            let ok = buf.len() as u64 == entry.size && actual == *sha;
            if !self.verified(sha, &entry, ok) {
                return None;
            }
        }
        Some(Bytes::from(buf))
    }

    /// Hashes an entry's file; on a mismatch drops it and counts it.
    fn verify(&self, sha: &Sha256Digest, entry: &DiskEntry) -> bool {
        let path = content_path(&self.dir, sha);
        let ok = match File::open(&path).and_then(|f| {
            let len = f.metadata()?.len();
            Ok((len, sha256_of_reader(f)?))
        }) {
            Ok((len, actual)) => len == entry.size && actual == *sha,
            Err(e) => {
                tracing::warn!(%sha, "cannot read cache entry: {e}");
                false
            }
        };
        self.verified(sha, entry, ok)
    }

    /// Records the outcome of hashing an entry: marks it verified, or drops
    /// and counts it.
    fn verified(&self, sha: &Sha256Digest, entry: &DiskEntry, ok: bool) -> bool {
        let path = content_path(&self.dir, sha);
        if ok {
            entry.verified.store(true, Ordering::Release);
        } else {
            tracing::error!(%sha, path = %path.display(), "corrupt cache entry dropped; it will be refetched");
            self.metrics
                .integrity_failures
                .with_label_values(&["disk"])
                .inc();
            self.index.invalidate(sha);
            self.index.run_pending_tasks();
        }
        ok
    }

    /// Moves a complete and verified temporary file into place as
    /// `sha` and admits it (possibly evicting others, or itself).
    ///
    /// The entry is admitted first and what it displaces deleted, and only
    /// then is the file moved in: the files on disk never exceed the budget.
    /// If the policy rejects the new entry, the file is discarded.
    pub fn commit(&self, temp: &Path, sha: &Sha256Digest, size: u64) -> io::Result<()> {
        let path = content_path(&self.dir, sha);
        let entry = DiskEntry::new(size, true, false);
        {
            let _guard = self.files.lock().expect("not poisoned");
            if self.index.contains_key(sha) {
                let _ = std::fs::remove_file(temp);
                return Ok(());
            }
            self.index.insert(*sha, entry.clone());
        }
        // Evictions must be applied (and their files gone) before the new
        // file moves in, unless the files on disk, this one included, fit
        // the budget anyway. Skipping the round trip then spares every fill
        // of a cache that is still filling up.
        if self.bytes() + size > self.budget {
            self.flush();
        }
        let _guard = self.files.lock().expect("not poisoned");
        let admitted = self.index.get(sha).is_some_and(|e| Arc::ptr_eq(&e, &entry));
        if !admitted {
            let _ = std::fs::remove_file(temp);
            return Ok(());
        }
        std::fs::create_dir_all(path.parent().expect("content path has a parent"))?;
        if let Err(e) = std::fs::rename(temp, &path) {
            self.index.invalidate(sha);
            return Err(e);
        }
        self.bytes.fetch_add(size, Ordering::Relaxed);
        entry.present.store(true, Ordering::Release);
        drop(_guard);
        self.update_gauges();
        Ok(())
    }

    /// Re-hashes every entry once, reading at most `rate` bytes per second.
    /// Returns how many were found corrupt.
    pub fn scrub(&self, rate: u64) -> usize {
        let mut bad = 0;
        let started = Instant::now();
        let mut read = 0u64;
        let entries: Vec<(Sha256Digest, Arc<DiskEntry>)> =
            self.index.iter().map(|(k, v)| (*k, v)).collect();
        for (sha, entry) in entries {
            if !self.index.contains_key(&sha) {
                continue;
            }
            if !self.verify(&sha, &entry) {
                bad += 1;
            }
            read += entry.size;
            let due = Duration::from_secs_f64(read as f64 / rate as f64);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
        bad
    }

    fn update_gauges(&self) {
        self.metrics
            .cache_bytes
            .with_label_values(&["disk"])
            .set(self.bytes.load(Ordering::Relaxed) as i64);
        self.metrics
            .cache_entries
            .with_label_values(&["disk"])
            .set(self.index.entry_count() as i64);
    }

    /// Applies pending evictions and waits until their files are deleted.
    pub fn flush(&self) {
        self.index.run_pending_tasks();
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if self.deleter.send(Deletion::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
        self.update_gauges();
    }

    /// Bytes in committed entries (including evicted ones whose files the
    /// deletion thread has not unlinked yet).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// A size in KiB for moka's `u32` weights, rounded up and saturated.
fn kib(size: u64) -> u32 {
    size.div_ceil(1024).max(1).min(u32::MAX as u64) as u32
}

fn read_dir_or_empty(
    dir: &Path,
) -> io::Result<Box<dyn Iterator<Item = io::Result<std::fs::DirEntry>>>> {
    if dir.is_dir() {
        Ok(Box::new(std::fs::read_dir(dir)?))
    } else {
        remove_any(dir)?;
        Ok(Box::new(std::iter::empty()))
    }
}

fn remove_any(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_path_is_cacaches() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"cacache layout check";
        let sri = cacache::write_hash_sync_with_algo(cacache::Algorithm::Sha256, dir.path(), data)
            .unwrap();
        let sha = Sha256Digest::of(data);
        assert_eq!(sri.to_hex().1, sha.hex());
        let ours = content_path(dir.path(), &sha);
        assert_eq!(std::fs::read(&ours).unwrap(), data);
        assert!(cacache::exists_sync(dir.path(), &sri));
    }

    #[test]
    fn commit_then_read_through_cacache_and_evict_to_budget() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        // 1 MiB budget; four 400 KiB objects cannot all stay.
        let tier = Arc::new(DiskTier::load(dir.path(), 1 << 20, metrics).unwrap());
        let mut shas = Vec::new();
        for i in 0..4u8 {
            let data = vec![i; 400 << 10];
            let sha = Sha256Digest::of(&data);
            let temp = tmp_dir(dir.path()).join(format!("t{i}"));
            std::fs::write(&temp, &data).unwrap();
            tier.commit(&temp, &sha, data.len() as u64).unwrap();
            shas.push(sha);
        }
        let sri = cacache::Integrity::from_hex(shas[3].hex(), cacache::Algorithm::Sha256).unwrap();
        if tier.contains(&shas[3]) {
            assert_eq!(
                cacache::read_hash_sync(dir.path(), &sri).unwrap(),
                vec![3u8; 400 << 10]
            );
        }
        let kept = shas.iter().filter(|s| tier.contains(s)).count();
        assert!(kept <= 2, "{kept} entries of 400 KiB kept under 1 MiB");
    }

    #[test]
    fn rebuild_sweeps_debris_and_drops_corrupt_entries_on_first_read() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"some package bytes".to_vec();
        let sha = Sha256Digest::of(&data);
        {
            let tier = DiskTier::load(dir.path(), 1 << 30, Arc::new(Metrics::new())).unwrap();
            let temp = tmp_dir(dir.path()).join("t");
            std::fs::write(&temp, &data).unwrap();
            tier.commit(&temp, &sha, data.len() as u64).unwrap();
        }
        std::fs::write(tmp_dir(dir.path()).join("half-written"), b"x").unwrap();
        let stray = dir.path().join("content-v2/sha256/zz");
        std::fs::write(&stray, b"junk").unwrap();
        let mut bytes = data.clone();
        bytes[3] ^= 1;
        std::fs::write(content_path(dir.path(), &sha), &bytes).unwrap();

        let metrics = Arc::new(Metrics::new());
        let tier = Arc::new(DiskTier::load(dir.path(), 1 << 30, metrics.clone()).unwrap());
        assert!(!tmp_dir(dir.path()).join("half-written").exists());
        assert!(!stray.exists());
        assert!(tier.contains(&sha));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(rt.block_on(tier.open_entry(&sha)).is_none());
        assert!(!tier.contains(&sha));
        assert_eq!(
            metrics
                .integrity_failures
                .with_label_values(&["disk"])
                .get(),
            1
        );
    }
}

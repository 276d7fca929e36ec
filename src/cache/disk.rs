//! The disk tier: objects stored by sha256 in a cacache directory, kept
//! under a byte budget.
//!
//! cacache gives the on-disk layout (`content-v2/sha256/ab/cd/<rest>`). It
//! has no eviction and no streaming verified reads, so this module adds:
//!
//! - **Plain records.** What plain-tree files were last read as (see
//!   `cache::plain`) are small fixed-size files in `plain-v1/ab/cd/<rest>`,
//!   entries of this tier like objects: charged to the budget, evicted by
//!   the same policy, swept at start. (cacache's own index appended a line
//!   per write and was never compacted, so it grew without bound outside
//!   the budget.)
//! - **Documents** (a proxy volume's pages) are not entries of this tier
//!   but records in packs beside it, which hold room in its budget (see
//!   `cache::docs`).
//! - **Accounting and eviction.** A quick_cache of `sha256 → entry` weighs
//!   each entry by its size, with the budget as its capacity; its S3-FIFO
//!   policy picks what to evict (new entries that are not asked for again
//!   go first, entries hit since they came stay). One shard, so that any
//!   object up to the whole budget fits. Evicted files are unlinked by one
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
//! - **Kept open.** Recently hit entries stay open (`cache.open_files` of
//!   them), so a hit skips the open (a five-level path walk) and the close
//!   that were most of a small disk hit's cost. Small entries that the
//!   memory tier will not hold are kept *mapped*: a hit is then a slice of
//!   the mapping, sent without a read (the kernel copies from the page
//!   cache into the socket, as `sendfile` would). Larger entries keep the
//!   mapping they are first sent from, so a hot one's pages stay mapped.
//!   Only verified entries are kept, and an entry is let go before its file
//!   is deleted, so eviction still frees the space.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::digest::{Sha256Digest, sha256_of_reader};
use crate::metrics::{Metrics, Tier, WriteFailure};

/// One object in the disk tier.
/// Entries up to this size are read whole by [`DiskTier::read_small`].
pub const SMALL: u64 = 64 << 10;

pub struct DiskEntry {
    pub size: u64,
    kind: Kind,
    /// Hashed since this process started (by its fill, a first read or the
    /// scrub).
    verified: AtomicBool,
    /// Its file is in place (a commit admits the entry first, evicts to
    /// make room, and only then moves the file in).
    present: AtomicBool,
    /// Unix seconds of its last hit since start, else of when it was
    /// stored (its file's mtime): what `unimirror cache ls` shows.
    last_hit: AtomicU64,
}

/// What a disk entry's file holds, and so where it lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An object, named by its sha256.
    Content,
    /// A plain record (exactly [`RECORD_LEN`] bytes), named by the sha256
    /// of what it is about.
    Record,
}

/// The size of every plain record.
pub const RECORD_LEN: usize = 130;

impl DiskEntry {
    fn new(size: u64, kind: Kind, verified: bool, present: bool, stored: u64) -> Arc<DiskEntry> {
        Arc::new(DiskEntry {
            size,
            kind,
            verified: AtomicBool::new(verified),
            present: AtomicBool::new(present),
            last_hit: AtomicU64::new(stored),
        })
    }

    /// Notes a hit now. Relaxed, and a store only when the second
    /// changed: a hot entry's hits from many threads then mostly read a
    /// shared cache line instead of fighting over it. The time is for
    /// people; a hit losing a race by a second changes nothing they see.
    fn hit(&self) {
        let now = unix_now();
        if self.last_hit.load(Ordering::Relaxed) != now {
            self.last_hit.store(now, Ordering::Relaxed);
        }
    }
}

fn unix_now() -> u64 {
    crate::volume::unix(std::time::SystemTime::now())
}

/// A verified entry kept open for its next hits. A small one the memory
/// tier will not hold is mapped when it is kept, so its hits are slices of
/// the mapping; a large one is mapped when it is first sent, and the
/// mapping stays with it: later sends of a hot entry find its pages
/// already mapped. A mapping made per response faulted every page in
/// again (some 1,600 faults for 100 MiB, with the kernel's fault-around),
/// a tenth of the CPU of a large hit.
pub struct OpenEntry {
    file: File,
    map: OnceLock<Option<Arc<memmap2::Mmap>>>,
}

impl OpenEntry {
    fn new(file: File) -> OpenEntry {
        OpenEntry {
            file,
            map: OnceLock::new(),
        }
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// The mapping, if one was made.
    fn mapping(&self) -> Option<&Arc<memmap2::Mmap>> {
        self.map.get()?.as_ref()
    }

    /// The whole entry, mapped at the first call; `None` if it cannot be.
    pub fn mapped(&self) -> Option<&Arc<memmap2::Mmap>> {
        self.map
            .get_or_init(|| {
                // SAFETY: a committed entry is never written or truncated
                // (see `body::file`); the mapping is only read.
                unsafe { memmap2::Mmap::map(&self.file) }.ok().map(Arc::new)
            })
            .as_ref()
    }
}

/// Kept entries by sha256 (S3-FIFO, counted).
type OpenFiles = quick_cache::sync::Cache<
    Sha256Digest,
    Arc<OpenEntry>,
    quick_cache::UnitWeighter,
    super::ByDigest,
>;

/// The entries, weighed by size; evictions go to the deletion thread.
type Index =
    quick_cache::sync::Cache<Sha256Digest, Arc<DiskEntry>, BySize, super::ByDigest, Evictions>;

#[derive(Clone)]
struct BySize;

impl quick_cache::Weighter<Sha256Digest, Arc<DiskEntry>> for BySize {
    fn weight(&self, _: &Sha256Digest, e: &Arc<DiskEntry>) -> u64 {
        // Never 0: zero-weight entries would never be evicted.
        e.size.max(1)
    }
}

/// Hands every entry the policy lets go (or never admits) to the deletion
/// thread. It runs inside the insert that caused it, so it only sends.
#[derive(Clone)]
struct Evictions {
    to_delete: std::sync::mpsc::Sender<Deletion>,
    metrics: Arc<Metrics>,
}

impl quick_cache::Lifecycle<Sha256Digest, Arc<DiskEntry>> for Evictions {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), sha: Sha256Digest, e: Arc<DiskEntry>) {
        self.metrics.cache_evictions(Tier::Disk).inc();
        let _ = self.to_delete.send(Deletion::File(sha, e.size, e.kind));
    }
}

pub struct DiskTier {
    dir: PathBuf,
    index: Arc<Index>,
    /// `None` when `cache.open_files` is 0.
    open_files: Option<Arc<OpenFiles>>,
    /// Held while a file is renamed into place or unlinked, so eviction and
    /// refill of one sha256 never interleave.
    files: Arc<Mutex<()>>,
    bytes: Arc<AtomicU64>,
    budget: u64,
    metrics: Arc<Metrics>,
    deleter: std::sync::mpsc::Sender<Deletion>,
    /// A write failed for want of space (or quota); fills wait until the
    /// filesystem has room again, and misses are read straight from the
    /// origin meanwhile.
    full: AtomicBool,
    /// The budget held by fills in flight (see [`Reservation`]).
    space: Mutex<Space>,
}

/// The part of the budget fills in flight hold, beside the committed
/// entries (`bytes`). What is on disk is `bytes + temps`; the index's
/// capacity is `budget - reserved`, so committed entries make room for
/// fills before those write anything.
#[derive(Default)]
struct Space {
    /// Held by reservations: the sizes of the objects being filled.
    reserved: u64,
    /// Of those, the ones whose temporary file exists (sized in full when
    /// created).
    temps: u64,
}

/// Room in the disk budget for one fill's temporary file, held from before
/// the file exists until the file is committed or deleted. Taken by
/// [`DiskTier::reserve`]; given back on drop.
pub struct Reservation {
    tier: Arc<DiskTier>,
    size: u64,
    /// `reserved` still counts it (a commit hands it to the index).
    held: bool,
    /// Its temporary file exists and `temps` counts it. Whoever drops the
    /// reservation has deleted the file first.
    temp: bool,
}

impl Reservation {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Creates the fill's temporary file once the files on disk leave room
    /// for it whole: evictions the reservation caused may still be queued
    /// for the deletion thread (waited for here, so this may block).
    pub fn create_temp(&mut self) -> io::Result<(PathBuf, File)> {
        self.count_file()?;
        match self.tier.create_temp() {
            Ok(t) => Ok(t),
            Err(e) => {
                self.temp_gone();
                Err(e)
            }
        }
    }

    /// Counts a file of the reservation's size as on disk, once the files
    /// there leave room for it (see [`Reservation::create_temp`]). Used as
    /// is for a file kept beside the entries (a manifest copy), which then
    /// holds its room until the reservation is dropped; whoever drops it
    /// has deleted the file first.
    pub fn count_file(&mut self) -> io::Result<()> {
        let tier = self.tier.clone();
        for attempt in 0..3 {
            {
                let mut s = tier.space.lock().expect("not poisoned");
                if tier.bytes() + s.temps + self.size <= tier.budget {
                    s.temps += self.size;
                    self.temp = true;
                    return Ok(());
                }
            }
            if attempt < 2 {
                tier.flush();
            }
        }
        // Reserved room is made before a fill starts; this is an
        // accounting error, not a full disk: refuse rather than overrun.
        Err(io::Error::other(
            "no room in the disk budget for the fill's temporary file",
        ))
    }

    /// The temporary file was deleted or renamed away.
    fn temp_gone(&mut self) {
        if self.temp {
            self.temp = false;
            let mut s = self.tier.space.lock().expect("not poisoned");
            s.temps -= self.size;
        }
    }

    /// Gives the reserved room to the index, for the commit of this fill.
    fn hand_over(&mut self) {
        if self.held {
            self.held = false;
            let mut s = self.tier.space.lock().expect("not poisoned");
            s.reserved -= self.size;
            self.tier.resize(&s);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.temp_gone();
        self.hand_over();
    }
}

/// Room asked for beyond an object's size before fills resume on a disk
/// that was full: other writers share the filesystem.
const ROOM_MARGIN: u64 = 1 << 20;

/// Work for the deletion thread.
enum Deletion {
    /// An evicted or dropped entry's file.
    File(Sha256Digest, u64, Kind),
    /// Reply once everything queued before is done.
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// cacache's content path for a sha256: `content-v2/sha256/ab/cd/<rest>`.
/// Computed here because cacache does not expose it; a unit test checks it
/// against cacache's own reads (the crate's minor version is pinned).
pub fn content_path(dir: &Path, sha: &Sha256Digest) -> PathBuf {
    fanned_out(&dir.join("content-v2").join("sha256"), sha)
}

/// Where a plain record named `key` lives: `plain-v1/ab/cd/<rest>`.
pub fn record_path(dir: &Path, key: &Sha256Digest) -> PathBuf {
    fanned_out(&dir.join("plain-v1"), key)
}

/// `<top>/ab/cd/<rest>` for a key whose hex starts `abcd`.
fn fanned_out(top: &Path, key: &Sha256Digest) -> PathBuf {
    let hex = key.hex();
    top.join(&hex[0..2]).join(&hex[2..4]).join(&hex[4..])
}

fn entry_path(dir: &Path, sha: &Sha256Digest, kind: Kind) -> PathBuf {
    match kind {
        Kind::Content => content_path(dir, sha),
        Kind::Record => record_path(dir, sha),
    }
}

/// The directory fills write their temporary files to (cacache's own).
pub fn tmp_dir(dir: &Path) -> PathBuf {
    dir.join("tmp")
}

impl DiskTier {
    /// Opens (creating) the cache directory, sweeps debris and re-admits
    /// what is there under `budget` bytes.
    pub fn load(
        dir: &Path,
        budget: u64,
        open_files: usize,
        metrics: Arc<Metrics>,
    ) -> io::Result<DiskTier> {
        std::fs::create_dir_all(dir.join("content-v2").join("sha256"))?;
        std::fs::create_dir_all(dir.join("plain-v1"))?;
        // cacache's index, where earlier builds recorded plain-tree
        // files: it only ever grew. Its records are simply read again.
        let old_index = dir.join("index-v5");
        if old_index.exists() {
            tracing::info!(dir = %old_index.display(), "removing the old plain-tree index (now plain-v1/)");
            std::fs::remove_dir_all(&old_index)?;
        }
        // Pages kept one file each by earlier builds (now packed in
        // docs-v2/): pages are asked for again, not converted.
        let old_docs = dir.join("docs-v1");
        if old_docs.exists() {
            tracing::info!(dir = %old_docs.display(), "removing pages kept by an earlier build (now packed in docs-v2/)");
            std::fs::remove_dir_all(&old_docs)?;
        }
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
        let options = quick_cache::OptionsBuilder::new()
            // Only sizes the record of recently evicted keys.
            .estimated_items_capacity((budget / (256 << 10)).clamp(1024, 1 << 20) as usize)
            .weight_capacity(budget)
            .shards(1)
            .build()
            .expect("valid cache options");
        let index = Index::with_options(
            options,
            BySize,
            super::ByDigest,
            Evictions {
                to_delete,
                metrics: metrics.clone(),
            },
        );
        let open_files = (open_files > 0).then(|| {
            Arc::new(OpenFiles::with(
                open_files,
                open_files as u64,
                quick_cache::UnitWeighter,
                super::ByDigest,
                Default::default(),
            ))
        });
        let tier = DiskTier {
            dir: dir.to_path_buf(),
            index: Arc::new(index),
            open_files,
            files,
            bytes,
            budget,
            metrics,
            deleter,
            full: AtomicBool::new(false),
            space: Mutex::new(Space::default()),
        };
        tier.metrics.cache_disk_full.set(0);
        tier.spawn_deleter(deletions);
        tier.rebuild()?;
        Ok(tier)
    }

    fn spawn_deleter(&self, deletions: std::sync::mpsc::Receiver<Deletion>) {
        let dir = self.dir.clone();
        let files = self.files.clone();
        let bytes = self.bytes.clone();
        let index = self.index.clone();
        let open_files = self.open_files.clone();
        let metrics = self.metrics.clone();
        std::thread::Builder::new()
            .name("cache-delete".into())
            .spawn(move || {
                for d in deletions {
                    let (sha, size, kind) = match d {
                        Deletion::File(sha, size, kind) => (sha, size, kind),
                        Deletion::Flush(done) => {
                            let _ = done.send(());
                            continue;
                        }
                    };
                    let _guard = files.lock().expect("not poisoned");
                    if index.contains_key(&sha) {
                        continue; // refilled since it was evicted
                    }
                    // An open descriptor would keep the blocks allocated.
                    if let Some(open) = &open_files {
                        open.remove(&sha);
                    }
                    match std::fs::remove_file(entry_path(&dir, &sha, kind)) {
                        Ok(()) => {
                            bytes.fetch_sub(size, Ordering::Relaxed);
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => tracing::error!(%sha, "cannot delete evicted cache entry: {e}"),
                    }
                    metrics
                        .cache_bytes(Tier::Disk)
                        .set(bytes.load(Ordering::Relaxed) as i64);
                }
            })
            .expect("spawning a thread");
    }

    /// Walks the content and record directories and admits every
    /// well-formed entry, oldest first; deletes anything else.
    fn rebuild(&self) -> io::Result<()> {
        let started = Instant::now();
        let mut found = Vec::new();
        let roots = [
            (self.dir.join("content-v2").join("sha256"), Kind::Content),
            (self.dir.join("plain-v1"), Kind::Record),
        ];
        for (root, kind) in roots {
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
                        let well_formed = |sha: &Sha256Digest| {
                            meta.is_file()
                                && entry_path(&self.dir, sha, kind) == f.path()
                                && match kind {
                                    Kind::Content => true,
                                    Kind::Record => meta.len() == RECORD_LEN as u64,
                                }
                        };
                        match Sha256Digest::from_hex(&name) {
                            Some(sha) if well_formed(&sha) => {
                                found.push((meta.modified()?, sha, meta.len(), kind))
                            }
                            _ => {
                                tracing::warn!(path = %f.path().display(), "removing a stray file from the cache");
                                remove_any(&f.path())?;
                            }
                        }
                    }
                }
            }
        }
        found.sort_by_key(|(mtime, ..)| *mtime);
        let n = found.len();
        for (mtime, sha, size, kind) in found {
            self.bytes.fetch_add(size, Ordering::Relaxed);
            // Records are checked by their readers on every read instead.
            let verified = kind != Kind::Content;
            let stored = crate::volume::unix(mtime);
            self.index
                .insert(sha, DiskEntry::new(size, kind, verified, true, stored));
        }
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

    /// `cache.disk_size`.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Whether the tier holds `sha` (without verifying it).
    pub fn contains(&self, sha: &Sha256Digest) -> bool {
        self.index
            .peek(sha)
            .is_some_and(|e| e.kind == Kind::Content && e.present.load(Ordering::Acquire))
    }

    /// The size of object `sha` and the Unix seconds of its last hit (or,
    /// not hit since start, of when it was stored), if the tier holds it.
    pub fn describe(&self, sha: &Sha256Digest) -> Option<(u64, u64)> {
        self.index
            .peek(sha)
            .filter(|e| e.kind == Kind::Content && e.present.load(Ordering::Acquire))
            .map(|e| (e.size, e.last_hit.load(Ordering::Relaxed)))
    }

    /// Notes a hit of `sha` served from another tier (the memory tier's
    /// objects are on disk too), without counting it for eviction.
    pub fn note_hit(&self, sha: &Sha256Digest) {
        if let Some(e) = self.index.peek(sha) {
            e.hit();
        }
    }

    /// The size of object `sha`, if the tier holds it.
    pub fn size_of(&self, sha: &Sha256Digest) -> Option<u64> {
        self.index
            .peek(sha)
            .filter(|e| e.kind == Kind::Content && e.present.load(Ordering::Acquire))
            .map(|e| e.size)
    }

    /// Opens an entry for reading, verifying it first if this process has
    /// not yet. `None` when it is absent or was found corrupt (and dropped).
    pub async fn open_entry(self: &Arc<Self>, sha: &Sha256Digest) -> Option<Arc<OpenEntry>> {
        let entry = self.index.get(sha)?;
        if !entry.present.load(Ordering::Acquire) || entry.kind != Kind::Content {
            return None; // being committed
        }
        entry.hit();
        if let Some(open) = self.kept(sha) {
            return Some(open);
        }
        let tier = self.clone();
        let sha = *sha;
        tokio::task::spawn_blocking(move || {
            let path = content_path(&tier.dir, &sha);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(%sha, "cache entry vanished: {e}");
                    tier.drop_entry(&sha);
                    return None;
                }
            };
            // A commit never replaces an existing file, so what was hashed
            // is what `file` reads.
            if !entry.verified.load(Ordering::Acquire) && !tier.verify(&sha, &entry) {
                return None;
            }
            let open = Arc::new(OpenEntry::new(file));
            tier.keep(sha, open.clone());
            Some(open)
        })
        .await
        .ok()
        .flatten()
    }

    /// Reads a small entry whole, on the calling thread: `None` if the tier
    /// does not have it (or it turned out corrupt, and was dropped). With
    /// `map`, the entry is kept mapped and later hits are slices of the
    /// mapping; the caller passes `false` when the memory tier will hold
    /// the bytes anyway.
    ///
    /// Small objects are read without a hop to the blocking pool: from the
    /// page cache a read costs a few microseconds, less than the hop, and
    /// the busiest paths (index pages, small packages) are made of them.
    /// Like nginx, a slow disk then delays this worker thread; objects
    /// above [`SMALL`] always go through the pool.
    pub fn read_small(&self, sha: &Sha256Digest, map: bool) -> Option<Bytes> {
        let entry = self.index.get(sha)?;
        if !entry.present.load(Ordering::Acquire)
            || entry.size > SMALL
            || entry.kind != Kind::Content
        {
            return None;
        }
        entry.hit();
        if let Some(open) = self.kept(sha) {
            // Verified when it was kept; a mapping is exactly its size.
            if let Some(m) = open.mapping() {
                return Some(super::mapped_bytes(m, 0..m.len()));
            }
            let mut buf = vec![0u8; entry.size as usize];
            return match open.file().read_exact_at(&mut buf, 0) {
                Ok(()) => Some(Bytes::from(buf)),
                Err(e) => {
                    // Shorter than its size: someone truncated it.
                    tracing::error!(%sha, "cache entry changed under an open descriptor: {e}");
                    self.verified(sha, &entry, false);
                    None
                }
            };
        }
        let path = content_path(&self.dir, sha);
        let mut buf = Vec::with_capacity(entry.size as usize);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(%sha, "cache entry vanished: {e}");
                self.drop_entry(sha);
                return None;
            }
        };
        if let Err(e) = file.read_to_end(&mut buf) {
            tracing::warn!(%sha, "cannot read cache entry: {e}");
            self.verified(sha, &entry, false);
            return None;
        }
        if !entry.verified.load(Ordering::Acquire) {
            let actual = Sha256Digest::of(&buf);
            let ok = buf.len() as u64 == entry.size && actual == *sha;
            if !self.verified(sha, &entry, ok) {
                return None;
            }
        }
        if self.open_files.is_some() {
            let mut open = OpenEntry::new(file);
            if map && open.mapped().is_some_and(|m| m.len() as u64 != entry.size) {
                // Not the size it was read at: kept open, but not mapped.
                open.map.take();
            }
            self.keep(*sha, Arc::new(open));
        }
        Some(Bytes::from(buf))
    }

    /// What is kept open of `sha`, if anything.
    fn kept(&self, sha: &Sha256Digest) -> Option<Arc<OpenEntry>> {
        self.open_files.as_ref()?.get(sha)
    }

    /// Keeps a verified entry open for its next hits.
    fn keep(&self, sha: Sha256Digest, kept: Arc<OpenEntry>) {
        if let Some(open) = &self.open_files {
            open.insert(sha, kept);
        }
    }

    /// How many descriptors are kept open.
    pub fn open_count(&self) -> usize {
        self.open_files.as_ref().map_or(0, |o| o.len())
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
            if let Some(open) = &self.open_files {
                open.remove(sha);
            }
            self.metrics.integrity_failures(Tier::Disk).inc();
            self.drop_entry(sha);
        }
        ok
    }

    /// Forgets an entry and has its file deleted.
    /// Creates a temporary file for a fill in `tmp/`, making the directory
    /// again if someone deleted it under the running daemon.
    pub fn create_temp(&self) -> io::Result<(PathBuf, File)> {
        let tmp = tmp_dir(&self.dir);
        let temp = tmp.join(crate::durable::temp_name("fill"));
        let created = crate::durable::create_new(&temp).or_else(|e| {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
            tracing::warn!(dir = %tmp.display(), "the cache's tmp directory vanished; making it again");
            std::fs::create_dir_all(&tmp)?;
            crate::durable::create_new(&temp)
        });
        match created {
            Ok(f) => Ok((temp, f)),
            Err(e) => {
                self.write_failed(&e);
                Err(e)
            }
        }
    }

    /// Holds `size` bytes of the budget for a fill, before it writes
    /// anything: the index shrinks by as much, evicting what no longer
    /// fits, and when the files on disk could then exceed the budget, the
    /// evicted ones are deleted before this returns (so it may block).
    /// The caller keeps the sum of reservations within the budget.
    pub fn reserve(self: &Arc<Self>, size: u64) -> Reservation {
        let over = {
            let mut s = self.space.lock().expect("not poisoned");
            s.reserved += size;
            self.resize(&s);
            self.bytes() + s.reserved > self.budget
        };
        // While the cache is still filling up, no round trip.
        if over {
            self.flush();
        }
        Reservation {
            tier: self.clone(),
            size,
            held: true,
            temp: false,
        }
    }

    /// Sets the index's capacity to what reservations leave of the budget.
    fn resize(&self, s: &Space) {
        // Never 0: quick_cache takes a capacity of 0 as a fresh start.
        let capacity = self.budget.saturating_sub(s.reserved).max(1);
        if self.index.capacity() != capacity {
            self.index.set_capacity(capacity);
        }
        self.metrics.cache_reserved_bytes.set(s.reserved as i64);
    }

    /// Counts a failed write to the cache directory. A full disk (or
    /// quota) holds new fills back until [`DiskTier::has_room`] sees space
    /// again; the first such failure is logged, not every one.
    pub fn write_failed(&self, e: &io::Error) {
        let full = matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT));
        self.metrics
            .cache_write_failures(if full {
                WriteFailure::Full
            } else {
                WriteFailure::Io
            })
            .inc();
        if full && !self.full.swap(true, Ordering::SeqCst) {
            self.metrics.cache_disk_full.set(1);
            tracing::warn!(dir = %self.dir.display(), "the cache disk is full: serving misses from the origin, uncached, until there is room again");
        }
    }

    /// Whether a fill of `size` bytes may start: always, unless a write
    /// found the disk full; then once the filesystem has room for it again
    /// (one `statvfs` per miss while full).
    pub fn has_room(&self, size: u64) -> bool {
        if !self.full.load(Ordering::Relaxed) {
            return true;
        }
        let room = free_bytes(&self.dir).is_some_and(|free| free >= size + ROOM_MARGIN);
        if room && self.full.swap(false, Ordering::SeqCst) {
            self.metrics.cache_disk_full.set(0);
            tracing::info!(dir = %self.dir.display(), "the cache disk has room again: filling resumes");
        }
        room
    }

    fn drop_entry(&self, sha: &Sha256Digest) {
        if let Some((sha, e)) = self.index.remove(sha) {
            let _ = self.deleter.send(Deletion::File(sha, e.size, e.kind));
        }
    }

    /// The plain record named `key`, if the tier has one (a hit for the
    /// eviction policy). May block: reads a small file.
    pub fn read_record(&self, key: &Sha256Digest) -> Option<[u8; RECORD_LEN]> {
        let entry = self.index.get(key)?;
        if entry.kind != Kind::Record || !entry.present.load(Ordering::Acquire) {
            return None;
        }
        let mut record = [0u8; RECORD_LEN];
        let read = File::open(record_path(&self.dir, key)).and_then(|mut f| {
            f.read_exact(&mut record)?;
            // Longer than a record: not one we wrote.
            match f.read(&mut [0u8; 1])? {
                0 => Ok(()),
                _ => Err(io::Error::other("longer than a record")),
            }
        });
        match read {
            Ok(()) => Some(record),
            Err(e) => {
                tracing::warn!(%key, "dropping an unreadable plain record: {e}");
                self.drop_entry(key);
                None
            }
        }
    }

    /// Whether the index has the record `key` (without reading it).
    pub fn has_record(&self, key: &Sha256Digest) -> bool {
        self.index
            .peek(key)
            .is_some_and(|e| e.kind == Kind::Record && e.present.load(Ordering::Acquire))
    }

    /// Drops a record its reader found malformed.
    pub fn drop_record(&self, key: &Sha256Digest) {
        if self.index.peek(key).is_some_and(|e| e.kind == Kind::Record) {
            tracing::warn!(%key, "dropping a malformed plain record");
            self.drop_entry(key);
        }
    }

    /// Writes the plain record named `key`, replacing the one there. Not
    /// counted while it is a temporary file (130 bytes); admitted, like a
    /// commit without a reservation, before it moves into place.
    pub fn write_record(&self, key: &Sha256Digest, record: &[u8; RECORD_LEN]) -> io::Result<()> {
        let (temp, file) = self.create_temp()?;
        if let Err(e) = file.write_all_at(record, 0) {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        drop(file);
        self.commit_file(&temp, key, RECORD_LEN as u64, Kind::Record, None)
    }

    /// Moves a complete and verified temporary file into place as
    /// `sha` and admits it (possibly evicting others, or itself).
    ///
    /// With a fill's reservation, the file was counted (in `temps`) since
    /// it was created, within the budget; its room is handed to the index
    /// first, so the entry fits beside the other fills' reservations.
    /// Without one (tests), the entry is admitted first and what it
    /// displaces deleted before the file moves in. Either way the files on
    /// disk never exceed the budget. If the policy rejects the new entry,
    /// the file is discarded.
    pub fn commit(
        &self,
        temp: &Path,
        sha: &Sha256Digest,
        size: u64,
        reservation: Option<&mut Reservation>,
    ) -> io::Result<()> {
        self.commit_file(temp, sha, size, Kind::Content, reservation)
    }

    /// [`DiskTier::commit`] for either kind. An object already there is
    /// kept (same name, same bytes); a record already there is replaced in
    /// place (same size), and stays admitted.
    fn commit_file(
        &self,
        temp: &Path,
        sha: &Sha256Digest,
        size: u64,
        kind: Kind,
        mut reservation: Option<&mut Reservation>,
    ) -> io::Result<()> {
        let path = entry_path(&self.dir, sha, kind);
        let entry = DiskEntry::new(size, kind, true, false, unix_now());
        let discard = |reservation: &mut Option<&mut Reservation>| {
            let _ = std::fs::remove_file(temp);
            if let Some(r) = reservation {
                r.temp_gone();
            }
        };
        if let Some(r) = reservation.as_deref_mut() {
            r.hand_over();
        }
        {
            let _guard = self.files.lock().expect("not poisoned");
            if let Some(there) = self.index.peek(sha) {
                if kind == Kind::Record
                    && there.kind == Kind::Record
                    && there.present.load(Ordering::Acquire)
                {
                    let replaced = std::fs::rename(temp, &path);
                    if replaced.is_err() {
                        discard(&mut reservation);
                    }
                    return replaced;
                }
                discard(&mut reservation);
                return Ok(());
            }
            self.index.insert(*sha, entry.clone());
        }
        // Evictions must be applied (and their files gone) before the new
        // file moves in, unless the files on disk, this one included, fit
        // the budget anyway. Skipping the round trip then spares every fill
        // of a cache that is still filling up.
        let on_disk = {
            let s = self.space.lock().expect("not poisoned");
            let uncounted = if reservation.is_some() { 0 } else { size };
            self.bytes() + s.temps + uncounted
        };
        if on_disk > self.budget {
            self.flush();
        }
        let _guard = self.files.lock().expect("not poisoned");
        // `peek`: being committed is not a hit for the eviction policy.
        let admitted = self
            .index
            .peek(sha)
            .is_some_and(|e| Arc::ptr_eq(&e, &entry));
        if !admitted {
            discard(&mut reservation);
            return Ok(());
        }
        // Renamed first, and the directories made only when missing: a
        // `create_dir_all` per commit was a `mkdir` call per cold object.
        let moved = std::fs::rename(temp, &path).or_else(|e| {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
            std::fs::create_dir_all(path.parent().expect("content path has a parent"))?;
            std::fs::rename(temp, &path)
        });
        if let Err(e) = moved {
            self.drop_entry(sha);
            discard(&mut reservation);
            return Err(e);
        }
        {
            // One step, so that `bytes + temps` never misses the file.
            let mut s = self.space.lock().expect("not poisoned");
            self.bytes.fetch_add(size, Ordering::Relaxed);
            if let Some(r) = reservation
                && r.temp
            {
                r.temp = false;
                s.temps -= r.size;
            }
        }
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
        let entries: Vec<(Sha256Digest, Arc<DiskEntry>)> = self.index.iter().collect();
        for (sha, entry) in entries {
            if entry.kind != Kind::Content || !self.index.contains_key(&sha) {
                continue;
            }
            if !self.verify(&sha, &entry) {
                bad += 1;
            }
            read += entry.size;
            self.metrics.scrub_bytes.inc_by(entry.size);
            let due = Duration::from_secs_f64(read as f64 / rate as f64);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
        bad
    }

    fn update_gauges(&self) {
        self.metrics
            .cache_bytes(Tier::Disk)
            .set(self.bytes.load(Ordering::Relaxed) as i64);
        self.metrics
            .cache_entries(Tier::Disk)
            .set(self.index.len() as i64);
    }

    /// Waits until the files of every entry let go so far are deleted.
    pub fn flush(&self) {
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

/// The bytes an unprivileged writer may still use on `dir`'s filesystem.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs only writes the struct it is given; `path` is a valid
    // NUL-terminated string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
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

/// Removes a file or a directory tree.
pub(crate) fn remove_any(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
        let tier = Arc::new(DiskTier::load(dir.path(), 1 << 20, 16, metrics).unwrap());
        let mut shas = Vec::new();
        for i in 0..4u8 {
            let data = vec![i; 400 << 10];
            let sha = Sha256Digest::of(&data);
            let temp = tmp_dir(dir.path()).join(format!("t{i}"));
            std::fs::write(&temp, &data).unwrap();
            tier.commit(&temp, &sha, data.len() as u64, None).unwrap();
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

    /// Commits `data` through a temporary file, as a fill does.
    fn commit_bytes(tier: &DiskTier, dir: &Path, data: &[u8]) -> Sha256Digest {
        let sha = Sha256Digest::of(data);
        let temp = tmp_dir(dir).join(sha.hex());
        std::fs::write(&temp, data).unwrap();
        tier.commit(&temp, &sha, data.len() as u64, None).unwrap();
        sha
    }

    #[test]
    fn a_reservation_makes_room_before_its_file_exists_and_commits_within_budget() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let tier = Arc::new(DiskTier::load(dir.path(), 1 << 20, 16, metrics.clone()).unwrap());
        // 900 KiB committed of a 1 MiB budget.
        let old: Vec<_> = (0..3u8)
            .map(|i| commit_bytes(&tier, dir.path(), &vec![i; 300 << 10]))
            .collect();
        let on_disk = || du(dir.path());

        // A fill of 500 KiB: committed entries make room first, and their
        // files are gone before the temporary file is created.
        let mut r = tier.reserve(500 << 10);
        assert_eq!(metrics.cache_reserved_bytes.get(), 500 << 10);
        assert!(tier.bytes() + (500 << 10) <= 1 << 20, "{}", tier.bytes());
        let (temp, file) = r.create_temp().unwrap();
        file.set_len(500 << 10).unwrap();
        assert!(on_disk() <= 1 << 20, "{} bytes on disk", on_disk());
        let data = vec![9u8; 500 << 10];
        file.write_all_at(&data, 0).unwrap();
        let sha = Sha256Digest::of(&data);
        tier.commit(&temp, &sha, data.len() as u64, Some(&mut r))
            .unwrap();
        drop(r);
        tier.flush();
        assert!(tier.contains(&sha), "the filled entry was admitted");
        assert!(old.iter().filter(|s| tier.contains(s)).count() <= 1);
        assert!(on_disk() <= 1 << 20, "{} bytes on disk", on_disk());
        assert_eq!(metrics.cache_reserved_bytes.get(), 0);
        // The whole budget is the index's again.
        assert_eq!(tier.index.capacity(), 1 << 20);
        let s = tier.space.lock().unwrap();
        assert_eq!((s.reserved, s.temps), (0, 0));
    }

    #[test]
    fn a_reservation_given_back_unused_frees_its_room() {
        let dir = tempfile::tempdir().unwrap();
        let tier =
            Arc::new(DiskTier::load(dir.path(), 1 << 20, 16, Arc::new(Metrics::new())).unwrap());
        let mut r = tier.reserve(600 << 10);
        assert_eq!(tier.index.capacity(), 424 << 10);
        let (temp, _) = r.create_temp().unwrap();
        std::fs::remove_file(temp).unwrap();
        drop(r);
        assert_eq!(tier.index.capacity(), 1 << 20);
        let s = tier.space.lock().unwrap();
        assert_eq!((s.reserved, s.temps), (0, 0));
    }

    /// Total size of the files under `dir` (the cache's `tmp/` included).
    pub(crate) fn du(dir: &Path) -> u64 {
        let mut total = 0;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    stack.push(e.path());
                } else {
                    total += m.len();
                }
            }
        }
        total
    }

    #[test]
    fn a_large_entry_keeps_the_mapping_it_was_first_sent_from() {
        let dir = tempfile::tempdir().unwrap();
        let tier =
            Arc::new(DiskTier::load(dir.path(), 64 << 20, 16, Arc::new(Metrics::new())).unwrap());
        let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 253) as u8).collect();
        let sha = commit_bytes(&tier, dir.path(), &data);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let first = rt.block_on(tier.open_entry(&sha)).unwrap();
        let map = first.mapped().unwrap().clone();
        assert_eq!(&map[..], &data[..]);
        // The next hit gets the kept entry, and with it the same mapping.
        let second = rt.block_on(tier.open_entry(&sha)).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert!(Arc::ptr_eq(second.mapped().unwrap(), &map));
    }

    #[test]
    fn kept_entries_are_let_go_before_eviction_deletes_them() {
        let dir = tempfile::tempdir().unwrap();
        // Room for two 40 KiB entries; up to 16 kept open.
        let tier = DiskTier::load(dir.path(), 100 << 10, 16, Arc::new(Metrics::new())).unwrap();
        let first = vec![1u8; 40 << 10];
        let sha = commit_bytes(&tier, dir.path(), &first);
        assert_eq!(tier.read_small(&sha, true).unwrap(), first);
        assert!(tier.kept(&sha).is_some_and(|o| o.mapping().is_some()));
        // The second hit is served from the mapping, with the same bytes.
        assert_eq!(tier.read_small(&sha, true).unwrap(), first);
        assert_eq!(tier.open_count(), 1);

        // Newcomers that are hit too push the first entry out.
        for i in 2..40u8 {
            let data = vec![i; 40 << 10];
            let newcomer = commit_bytes(&tier, dir.path(), &data);
            tier.read_small(&newcomer, true);
            if !tier.index.contains_key(&sha) {
                break;
            }
        }
        assert!(!tier.index.contains_key(&sha), "never evicted");
        tier.flush();
        assert!(tier.kept(&sha).is_none(), "an evicted entry stays open");
        assert!(!content_path(dir.path(), &sha).exists());
        assert!(tier.bytes() <= 100 << 10);
    }

    #[test]
    fn a_kept_entry_that_rots_is_caught_by_the_scrub_and_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let tier = DiskTier::load(dir.path(), 1 << 30, 16, metrics.clone()).unwrap();
        let data = b"an index page, kept mapped".to_vec();
        let sha = commit_bytes(&tier, dir.path(), &data);
        assert_eq!(tier.read_small(&sha, true).unwrap(), data);
        assert!(tier.kept(&sha).is_some());

        // Flip a byte in place (no truncation: the file is mapped).
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(content_path(dir.path(), &sha))
            .unwrap();
        f.write_all_at(b"A", 0).unwrap();

        assert_eq!(tier.scrub(u64::MAX), 1);
        assert!(tier.kept(&sha).is_none());
        assert!(tier.read_small(&sha, true).is_none());
        assert_eq!(metrics.integrity_failures(Tier::Disk).get(), 1);
    }

    #[test]
    fn rebuild_sweeps_debris_and_drops_corrupt_entries_on_first_read() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"some package bytes".to_vec();
        let sha = Sha256Digest::of(&data);
        {
            let tier = DiskTier::load(dir.path(), 1 << 30, 16, Arc::new(Metrics::new())).unwrap();
            let temp = tmp_dir(dir.path()).join("t");
            std::fs::write(&temp, &data).unwrap();
            tier.commit(&temp, &sha, data.len() as u64, None).unwrap();
        }
        std::fs::write(tmp_dir(dir.path()).join("half-written"), b"x").unwrap();
        let stray = dir.path().join("content-v2/sha256/zz");
        std::fs::write(&stray, b"junk").unwrap();
        let mut bytes = data.clone();
        bytes[3] ^= 1;
        std::fs::write(content_path(dir.path(), &sha), &bytes).unwrap();

        let metrics = Arc::new(Metrics::new());
        let tier = Arc::new(DiskTier::load(dir.path(), 1 << 30, 16, metrics.clone()).unwrap());
        assert!(!tmp_dir(dir.path()).join("half-written").exists());
        assert!(!stray.exists());
        assert!(tier.contains(&sha));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(rt.block_on(tier.open_entry(&sha)).is_none());
        assert!(!tier.contains(&sha));
        assert_eq!(metrics.integrity_failures(Tier::Disk).get(), 1);
    }

    #[test]
    fn records_are_charged_replaced_in_place_and_swept_when_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let key = Sha256Digest::of(b"a record's name");
        {
            let tier = DiskTier::load(dir.path(), 1 << 20, 16, Arc::new(Metrics::new())).unwrap();
            tier.write_record(&key, &[b'a'; RECORD_LEN]).unwrap();
            tier.write_record(&key, &[b'b'; RECORD_LEN]).unwrap();
            assert_eq!(tier.read_record(&key), Some([b'b'; RECORD_LEN]));
            assert_eq!(tier.bytes(), RECORD_LEN as u64);
            // A record is not an object, whatever asks for it.
            assert!(!tier.contains(&key));
            assert!(tier.read_small(&key, false).is_none());
        }
        let other = Sha256Digest::of(b"another name");
        std::fs::create_dir_all(record_path(dir.path(), &other).parent().unwrap()).unwrap();
        std::fs::write(record_path(dir.path(), &other), b"too short").unwrap();

        let tier = DiskTier::load(dir.path(), 1 << 20, 16, Arc::new(Metrics::new())).unwrap();
        assert_eq!(tier.read_record(&key), Some([b'b'; RECORD_LEN]));
        assert!(!record_path(dir.path(), &other).exists());
        assert_eq!(tier.bytes(), RECORD_LEN as u64);
        // Dropped on the reader's word, its file goes too.
        tier.drop_record(&key);
        tier.flush();
        assert!(!record_path(dir.path(), &key).exists());
        assert_eq!(tier.bytes(), 0);
    }

    #[test]
    fn records_are_evicted_within_the_budget_like_objects() {
        let dir = tempfile::tempdir().unwrap();
        // Room for 100 records, and 1,000 written.
        let budget = 100 * RECORD_LEN as u64;
        let tier = DiskTier::load(dir.path(), budget, 16, Arc::new(Metrics::new())).unwrap();
        for i in 0..1000u32 {
            let key = Sha256Digest::of(&i.to_le_bytes());
            tier.write_record(&key, &[b'r'; RECORD_LEN]).unwrap();
        }
        tier.flush();
        assert!(du(dir.path()) <= budget, "{} of {budget}", du(dir.path()));
        assert!(tier.bytes() <= budget);
    }
}

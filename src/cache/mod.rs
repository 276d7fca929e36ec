//! The daemon's local cache: a memory tier for small objects, a disk tier
//! for everything, and coalesced fills from the origin.
//!
//! Objects are keyed by sha256 in both tiers, so a cached object never needs
//! invalidating: a new release that changes a file names a new sha256.
//! Plain-tree files have no sha256 until they are read once; a plain record
//! in the disk tier remembers `(volume, path) → sha256, size, mtime` for
//! them (see `plain`).
//!
//! A lookup goes memory → disk → fill. See `fill` for how misses are shared
//! and verified, and `disk` for eviction and verification on read.

pub mod direct;
pub mod disk;
pub mod docs;
pub mod fill;
pub mod manifests;
pub mod plain;

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use crate::config::CacheSettings;
use crate::digest::Sha256Digest;
use crate::metrics::{Metrics, Tier};
use disk::{DiskTier, OpenEntry};
use fill::{Fill, FillRequest, Fills};

/// What identifies one object for coalescing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKey {
    /// An object of a release, by its sha256: the same content in two
    /// volumes or two releases is one object.
    Content(Sha256Digest),
    /// A plain-tree file as `stat` last saw it.
    Plain {
        volume: Arc<str>,
        path: Arc<[u8]>,
        size: u64,
        mtime_ns: i128,
    },
}

/// Where the bytes of one response come from.
pub enum Source {
    Memory(Bytes),
    /// A small disk entry, read whole.
    DiskBytes(Bytes),
    /// A disk entry kept open (large ones are sent from its mapping).
    Disk(Arc<OpenEntry>),
    /// A fill from the origin.
    Fill(Joined),
    /// Straight from the origin, uncached: the cache disk is full.
    Direct(FillRequest),
}

/// How a request met the fill of its object.
pub enum Joined {
    /// It started the fill (a miss).
    Started(Arc<Fill>),
    /// A fill was already running, and it joined (coalesced).
    Coalesced(Arc<Fill>),
}

impl Joined {
    pub fn fill(&self) -> &Arc<Fill> {
        match self {
            Joined::Started(f) | Joined::Coalesced(f) => f,
        }
    }
}

/// The memory tier: quick_cache (S3-FIFO, sharded locks) weighed in bytes.
/// A read is a shard's read lock and a probe, with no bookkeeping beyond a
/// bit: the cheapest read of the concurrent caches measured (see
/// docs/architecture.md, "One crate per job").
type MemoryTier = quick_cache::sync::Cache<Sha256Digest, Bytes, ByLength, ByDigest, CountEvictions>;

/// Weighs a memory entry by its length.
#[derive(Clone)]
struct ByLength;

impl quick_cache::Weighter<Sha256Digest, Bytes> for ByLength {
    fn weight(&self, _: &Sha256Digest, b: &Bytes) -> u64 {
        // Never 0: zero-weight entries would never be evicted.
        b.len().max(1) as u64
    }
}

/// Counts memory-tier evictions in the metrics.
#[derive(Clone)]
struct CountEvictions(Arc<Metrics>);

impl quick_cache::Lifecycle<Sha256Digest, Bytes> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _: Sha256Digest, _: Bytes) {
        self.0.cache_evictions(Tier::Memory).inc();
    }
}

/// A range of a memory-mapped cache file as `Bytes`, keeping the mapping
/// alive while hyper holds it. Sending from the mapping copies the bytes
/// once (into the socket) and needs no trip to the blocking pool.
pub fn mapped_bytes(map: &Arc<memmap2::Mmap>, range: std::ops::Range<usize>) -> Bytes {
    struct Mapped {
        map: Arc<memmap2::Mmap>,
        range: std::ops::Range<usize>,
    }
    impl AsRef<[u8]> for Mapped {
        fn as_ref(&self) -> &[u8] {
            &self.map[self.range.clone()]
        }
    }
    Bytes::from_owner(Mapped {
        map: map.clone(),
        range,
    })
}

/// Hashes a [`Sha256Digest`] key by its first eight bytes: they are
/// already uniformly random, and SipHash over all 32 was a visible share of
/// a memory hit. (Keys come from releases, not from clients, so there is no
/// flooding to defend against.)
#[derive(Clone, Copy, Default)]
pub struct ByDigest;

impl std::hash::BuildHasher for ByDigest {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        // The digest arrives as one 32-byte write (after its length).
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(first);
    }
    fn write_usize(&mut self, _len: usize) {}
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The settings fills and lookups need.
#[derive(Clone, Debug)]
pub struct Settings {
    pub memory_max_object: u64,
    pub origin_timeout: Duration,
}

pub struct Cache {
    settings: Settings,
    metrics: Arc<Metrics>,
    memory: Option<MemoryTier>,
    disk: Arc<DiskTier>,
    fills: Fills,
    /// Fills reading the origin at once (`cache.max_fills`); more wait.
    fill_slots: Arc<tokio::sync::Semaphore>,
    /// The disk budget in KiB, taken by fills in flight for their
    /// temporary files (the room itself is made by `DiskTier::reserve`).
    fill_budget: Arc<tokio::sync::Semaphore>,
    /// Its size (five eighths of `cache.disk_size`): objects larger than
    /// this are never cached.
    fill_budget_kib: u64,
    /// The thread that writes fills and documents into the disk tier.
    writer: std::sync::mpsc::Sender<Job>,
    /// Proxy volumes' pages, packed (see `docs`).
    documents: Arc<docs::Documents>,
    /// The bytes of the documents waiting for the writer (see
    /// [`MAX_DOCUMENTS_QUEUED`]).
    documents_queued: Arc<AtomicU64>,
    /// Plain-tree files read since start: their sha256 without an index
    /// read (and before the commit has written the index).
    plain_shas: quick_cache::sync::Cache<ObjectKey, Sha256Digest>,
}

/// What [`Cache::describe`] found of an object.
#[derive(Debug, Clone, Copy)]
pub struct Cached {
    pub size: u64,
    /// The fastest tier holding it: memory (then also usually on disk) or
    /// disk.
    pub tier: Tier,
    /// Unix seconds of its last hit since start, else of when it was
    /// stored; unknown for an object only the memory tier still holds.
    pub last_hit: Option<u64>,
}

impl Cache {
    /// Opens the disk tier (sweeping and re-admitting what is there) and
    /// creates the memory tier.
    pub fn open(
        config: &CacheSettings,
        origin_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Arc<Cache>> {
        let disk = Arc::new(DiskTier::load(
            &config.dir,
            config.disk_size,
            descriptors_to_keep(config.open_files()),
            metrics.clone(),
        )?);
        metrics
            .cache_budget(Tier::Disk)
            .set(config.disk_size as i64);
        metrics
            .cache_budget(Tier::Memory)
            .set(config.memory_size as i64);
        let memory = (config.memory_size > 0).then(|| {
            // Estimated entries: the budget over a typical small object.
            let items = (config.memory_size / (16 << 10)).clamp(64, 1 << 22) as usize;
            MemoryTier::with(
                items,
                config.memory_size,
                ByLength,
                ByDigest,
                CountEvictions(metrics.clone()),
            )
        });
        let documents_queued = Arc::new(AtomicU64::new(0));
        // The rest is for manifest copies and the packs of pages, so that
        // the three never hold more than the whole budget together.
        let documents_share = config.disk_size / DOCUMENTS_SHARE;
        let fill_budget_kib =
            (config.disk_size - config.disk_size / manifests::SHARE - documents_share) >> 10;
        let fill_budget = Arc::new(tokio::sync::Semaphore::new(fill_budget_kib as usize));
        let documents = Arc::new(docs::Documents::open(
            &config.dir,
            disk.clone(),
            documents_share,
        )?);
        let writer = spawn_writer(disk.clone(), documents.clone(), documents_queued.clone());
        Ok(Arc::new(Cache {
            writer,
            documents,
            documents_queued,
            fill_slots: Arc::new(tokio::sync::Semaphore::new(config.max_fills)),
            fill_budget,
            fill_budget_kib,
            settings: Settings {
                memory_max_object: config.memory_max_object,
                origin_timeout,
            },
            metrics,
            memory,
            disk,
            fills: Fills::default(),
            plain_shas: quick_cache::sync::Cache::new(100_000),
        }))
    }

    /// The object of `sha` (of `size` bytes) from the memory or the disk
    /// tier, if either has it; else the caller asks for its [`miss`].
    ///
    /// [`miss`]: Cache::miss
    pub async fn hit(self: &Arc<Self>, sha: &Sha256Digest, size: u64) -> Option<Source> {
        if let Some(bytes) = self.memory.as_ref().and_then(|m| m.get(sha)) {
            self.disk.note_hit(sha);
            return Some(Source::Memory(bytes));
        }
        let memory_size = size <= self.settings.memory_max_object && self.memory_enabled();
        if size <= disk::SMALL {
            let bytes = self.disk.read_small(sha, !memory_size)?;
            if memory_size {
                self.memory_insert(*sha, bytes.clone());
            }
            return Some(Source::DiskBytes(bytes));
        }
        let file = self.disk.open_entry(sha).await?;
        if memory_size {
            self.promote(*sha, file.clone(), size);
        }
        Some(Source::Disk(file))
    }

    /// Joins or starts the fill of an object the tiers do not have, or
    /// reads it straight from the origin when the cache disk is full.
    pub fn miss(self: &Arc<Self>, req: FillRequest) -> Source {
        // One atomic load unless the disk was found full.
        if !self.disk.has_room(req.size()) && !self.fills.running(&req.key) {
            return Source::Direct(req);
        }
        // Larger than the fills' share of the disk budget: it could never
        // be cached, and its temporary file alone would overrun the share.
        if kib(req.size()) > self.fill_budget_kib {
            return Source::Direct(req);
        }
        Source::Fill(self.fills.join_or_start(self, req))
    }

    /// The size of object `sha` if a tier holds it: what a proxy volume
    /// need not ask its upstream for.
    pub fn stored_size(&self, sha: &Sha256Digest) -> Option<u64> {
        if let Some(b) = self.memory.as_ref().and_then(|m| m.get(sha)) {
            return Some(b.len() as u64);
        }
        self.disk.size_of(sha)
    }

    /// What the plain record of `(volume, path)` says, whatever its size
    /// and mtime. May block (reads the record).
    pub fn plain_record(&self, volume: &str, path: &[u8]) -> Option<plain::PlainRecord> {
        let key = plain::record_key(volume, path);
        let bytes = self.disk.read_record(&key)?;
        let record = plain::PlainRecord::parse(&bytes);
        if record.is_none() {
            // Not one this cache wrote: dropped, a miss from now on.
            self.disk.drop_record(&key);
        }
        record
    }

    /// Where object `sha` is cached, its size and its last hit, for
    /// `unimirror cache ls`; `None` if no tier holds it.
    pub fn describe(&self, sha: &Sha256Digest) -> Option<Cached> {
        let disk = self.disk.describe(sha);
        let memory = self.memory.as_ref().and_then(|m| m.peek(sha));
        match (memory, disk) {
            (Some(bytes), disk) => Some(Cached {
                size: bytes.len() as u64,
                tier: Tier::Memory,
                last_hit: disk.map(|(_, t)| t),
            }),
            (None, Some((size, t))) => Some(Cached {
                size,
                tier: Tier::Disk,
                last_hit: Some(t),
            }),
            (None, None) => None,
        }
    }

    /// Whether the disk tier holds `sha` (without verifying it).
    pub fn on_disk(&self, sha: &Sha256Digest) -> bool {
        self.disk.contains(sha)
    }

    /// Re-hashes every disk entry once, at most `rate` bytes per second;
    /// returns how many were corrupt (and dropped). Blocking.
    pub fn scrub(&self, rate: u64) -> usize {
        self.disk.scrub(rate)
    }

    /// Whether a file can be created in the cache directory now.
    pub fn check_writable(&self) -> std::io::Result<()> {
        let (probe, _) = self.disk.create_temp()?;
        std::fs::remove_file(probe)
    }

    /// The manifest copies, kept in this cache's directory and charged to
    /// its disk budget (see `manifests`).
    pub fn manifest_copies(&self) -> anyhow::Result<manifests::ManifestCopies> {
        manifests::ManifestCopies::open(self.disk.clone())
    }

    /// Whether the memory tier holds `sha`.
    pub fn in_memory(&self, sha: &Sha256Digest) -> bool {
        self.memory.as_ref().is_some_and(|m| m.contains_key(sha))
    }

    pub fn memory_enabled(&self) -> bool {
        self.memory.is_some()
    }

    fn memory_insert(&self, sha: Sha256Digest, bytes: Bytes) {
        if let Some(m) = &self.memory {
            m.insert(sha, bytes);
        }
    }

    /// Copies a small disk entry into the memory tier, in the background.
    fn promote(self: &Arc<Self>, sha: Sha256Digest, open: Arc<OpenEntry>, size: u64) {
        let cache = self.clone();
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0u8; size as usize];
            if open.file().read_exact_at(&mut buf, 0).is_ok() {
                cache.memory_insert(sha, Bytes::from(buf));
            }
        });
    }

    /// Waits for a free fill slot and for `size` bytes of the disk budget,
    /// then reserves them (see [`disk::DiskTier::reserve`]). `None` when
    /// that took longer than `wait`.
    async fn admit_fill(self: &Arc<Self>, size: u64, wait: Duration) -> Option<Admitted> {
        let permits = u32::try_from(kib(size)).expect("checked against the budget by `miss`");
        let queued = async {
            let slot = self.fill_slots.clone().acquire_owned().await;
            let budget = self.fill_budget.clone().acquire_many_owned(permits).await;
            (slot.expect("never closed"), budget.expect("never closed"))
        };
        let (slot, budget) = tokio::time::timeout(wait, queued).await.ok()?;
        let disk = self.disk.clone();
        // Deleting evicted files may be needed first: blocking.
        let reservation = tokio::task::spawn_blocking(move || disk.reserve(size))
            .await
            .ok()?;
        Some(Admitted {
            reservation,
            _slot: slot,
            _budget: budget,
        })
    }

    /// Commits a fill to the disk tier (see [`write_entry`]) and returns
    /// once it is there, so that the fill stays registered until then and
    /// a request arriving meanwhile joins it instead of filling again.
    async fn commit(
        &self,
        copied: fill::Copied,
        sha: Sha256Digest,
        req: &FillRequest,
        reservation: disk::Reservation,
    ) {
        let (done, committed) = tokio::sync::oneshot::channel();
        let named = match &req.key {
            ObjectKey::Plain {
                volume,
                path,
                size,
                mtime_ns,
            } => Named::Plain(
                plain::record_key(volume, path),
                plain::PlainRecord {
                    size: *size,
                    mtime_ns: *mtime_ns,
                    sha,
                },
            ),
            ObjectKey::Content(_) => Named::Object,
        };
        let write = Write {
            copied,
            sha,
            size: req.size(),
            named,
            reservation,
            done,
        };
        if self.writer.send(Job::Fill(write)).is_err() {
            tracing::error!(%sha, "the cache writer is gone; not cached");
            return;
        }
        let _ = committed.await;
    }

    /// Keeps a document (a proxy volume's page) in the disk tier under
    /// `(volume, path)`, stamped with `stamp_ns`: a record in the newest
    /// pack (see `docs`), which replaces the one kept before.
    ///
    /// `render` makes the bytes, and the cache's writer thread calls it:
    /// serializing and hashing a page cost a cold page's client a sixth of
    /// its wait when done before the answer. `estimate` (about its size)
    /// bounds the queue. The writer also makes room for it; the caller
    /// does not wait.
    pub fn keep_document(
        &self,
        volume: &str,
        path: &[u8],
        stamp_ns: i128,
        estimate: u64,
        render: Box<dyn FnOnce() -> Option<Bytes> + Send>,
    ) {
        // The writer yields to the responses (see `spawn_writer`): under a
        // long burst its queue is bounded, and a page past the bound is
        // not kept (it is in memory; only a restart would miss it).
        let queued = self.documents_queued.fetch_add(estimate, Ordering::Relaxed);
        if queued + estimate > MAX_DOCUMENTS_QUEUED {
            self.documents_queued.fetch_sub(estimate, Ordering::Relaxed);
            tracing::debug!(volume, "a document not kept: the cache writer is behind");
            return;
        }
        let job = Job::Document(Document {
            key: plain::document_key(volume, path),
            stamp_ns,
            estimate,
            render,
        });
        let _ = self.writer.send(job);
    }

    /// The document kept under `(volume, path)` and its stamp, if the disk
    /// tier has it and it is whole: its line must parse and name the size
    /// and sha256 of the bytes after it, or it is dropped.
    pub async fn document(self: &Arc<Self>, volume: &str, path: &[u8]) -> Option<(i128, Bytes)> {
        let key = plain::document_key(volume, path);
        // Most documents asked for were never kept: the index in memory
        // says so without a trip to the blocking pool.
        if !self.documents.has(&key) {
            return None;
        }
        let documents = self.documents.clone();
        tokio::task::spawn_blocking(move || {
            let kept = documents.read(&key)?;
            let whole = kept.bytes.get(..disk::RECORD_LEN).and_then(|line| {
                let record = plain::PlainRecord::parse(line.try_into().ok()?)?;
                let bytes = kept.bytes.slice(disk::RECORD_LEN..);
                (record.size == bytes.len() as u64 && Sha256Digest::of(&bytes) == record.sha)
                    .then_some((record.mtime_ns, bytes))
            });
            if whole.is_none() {
                tracing::warn!(%key, "a kept page is not whole; dropped, to be fetched again");
                documents.forget(&key, &kept);
            }
            whole
        })
        .await
        .ok()?
    }

    fn remember_plain(&self, key: &ObjectKey, sha: Sha256Digest) {
        if matches!(key, ObjectKey::Plain { .. }) {
            self.plain_shas.insert(key.clone(), sha);
        }
    }

    /// The sha256 a fill of `key` found since start, without reading its
    /// record: a fill remembers it before its clients see the end, while
    /// its record may still wait for the cache writer.
    pub fn remembered_plain(&self, key: &ObjectKey) -> Option<Sha256Digest> {
        self.plain_shas.get(key)
    }

    /// The sha256 recorded for a plain-tree file, if the recorded size and
    /// mtime are still the file's. May block (reads the index).
    pub fn plain_sha(&self, key: &ObjectKey) -> Option<Sha256Digest> {
        let ObjectKey::Plain {
            volume,
            path,
            size,
            mtime_ns,
        } = key
        else {
            return None;
        };
        if let Some(sha) = self.plain_shas.get(key) {
            return Some(sha);
        }
        let record = self.plain_record(volume, path)?;
        (record.size == *size && record.mtime_ns == *mtime_ns).then_some(record.sha)
    }

    /// Refreshes the gauges that are cheaper to read than to maintain.
    pub fn update_gauges(&self) {
        if let Some(m) = &self.memory {
            self.metrics.cache_entries(Tier::Memory).set(m.len() as i64);
            self.metrics
                .cache_bytes(Tier::Memory)
                .set(m.weight() as i64);
        }
    }

    /// At shutdown: lets running fills finish (up to `deadline`), so their
    /// objects are committed, and applies pending evictions, so the disk
    /// tier is within its budget when the process exits.
    pub async fn settle(self: &Arc<Self>, deadline: Duration) {
        let started = std::time::Instant::now();
        while !self.fills.is_empty() && started.elapsed() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let cache = self.clone();
        let _ = tokio::task::spawn_blocking(move || cache.disk.flush()).await;
    }
}

/// How many cache descriptors to keep open: `wanted`, within half of the
/// process's descriptor limit (raised to its hard limit first), so that
/// connections and origin reads always have room. Only a `configured`
/// number that does not fit is warned about: the default takes what fits.
fn descriptors_to_keep((wanted, configured): (usize, bool)) -> usize {
    if wanted == 0 {
        return 0;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return wanted.min(256);
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        limit.rlim_cur
    };
    let room = usize::try_from(soft / 2).unwrap_or(usize::MAX);
    if wanted > room && configured {
        tracing::warn!(
            wanted,
            kept = room,
            descriptor_limit = soft,
            "cache.open_files is more than half the descriptor limit; keeping fewer open"
        );
    }
    wanted.min(room)
}

/// A fill let through: its slot, its share of the budget and the room
/// made for it, all given back when it is dropped.
pub struct Admitted {
    pub reservation: disk::Reservation,
    _slot: tokio::sync::OwnedSemaphorePermit,
    _budget: tokio::sync::OwnedSemaphorePermit,
}

/// A size in KiB, rounded up (the unit of the fills' budget).
fn kib(size: u64) -> u64 {
    size.div_ceil(1024).max(1)
}

/// One fill for the cache writer to commit.
struct Write {
    copied: fill::Copied,
    sha: Sha256Digest,
    size: u64,
    /// What names the entry on disk.
    named: Named,
    /// The fill's room in the budget.
    reservation: disk::Reservation,
    done: tokio::sync::oneshot::Sender<()>,
}

/// Work for the cache writer.
enum Job {
    /// A verified fill to commit.
    Fill(Write),
    /// A document to render and keep (see [`Cache::keep_document`]).
    Document(Document),
}

struct Document {
    key: Sha256Digest,
    stamp_ns: i128,
    /// Counted in `documents_queued` until the writer takes it.
    estimate: u64,
    render: Box<dyn FnOnce() -> Option<Bytes> + Send>,
}

/// What names a disk entry the writer commits.
enum Named {
    /// Its sha256 alone.
    Object,
    /// Its sha256, and the plain record (key and text) of the plain-tree
    /// file it was read as.
    Plain(Sha256Digest, plain::PlainRecord),
}

/// Documents' packs take at most this part of `disk_size` (an eighth);
/// fills the rest that manifest copies leave (five eighths).
const DOCUMENTS_SHARE: u64 = 8;

/// At most this many bytes of documents wait for the cache writer; more
/// are not kept.
const MAX_DOCUMENTS_QUEUED: u64 = 64 << 20;

/// The cache writer's nice value: a CPU share of about a tenth against
/// the threads that answer clients, when they want the whole CPU.
const WRITER_NICE: libc::c_int = 10;

/// Starts the thread that commits fills, one after the other.
///
/// One thread rather than a blocking-pool task per fill: under a burst of
/// cold small objects each task cost two thread switches, more than the
/// file creation itself, while one thread that finds its queue full just
/// goes on. Creating files in one directory tree is serialised by the
/// filesystem anyway.
///
/// It runs at a lower priority ([`WRITER_NICE`]): creating a file is most
/// of what a cold page costs (ext4 allocating an inode), and nobody waits
/// for it, while clients wait for their answers. Under a burst the writes
/// fall behind and catch up when the burst is over; its waiting fills stay
/// registered meanwhile (and answered from their temporary files), and
/// waiting documents are bounded by [`MAX_DOCUMENTS_QUEUED`].
fn spawn_writer(
    disk: Arc<DiskTier>,
    documents: Arc<docs::Documents>,
    documents_queued: Arc<AtomicU64>,
) -> std::sync::mpsc::Sender<Job> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("cache-write".into())
        .spawn(move || {
            lower_own_priority(WRITER_NICE);
            for job in rx {
                match job {
                    Job::Fill(w) => {
                        let mut reservation = w.reservation;
                        let written = write_entry(
                            &disk,
                            w.copied,
                            &w.sha,
                            w.size,
                            &w.named,
                            &mut reservation,
                        );
                        // The room is given back (or was handed to the
                        // entry) before the fill is told it is done.
                        drop(reservation);
                        if let Err(e) = written {
                            disk.write_failed(&e);
                            tracing::error!(sha = %w.sha, "cannot commit to the disk cache: {e}");
                        }
                        let _ = w.done.send(());
                    }
                    Job::Document(d) => {
                        documents_queued.fetch_sub(d.estimate, Ordering::Relaxed);
                        let key = d.key;
                        if let Err(e) = write_document(&documents, d) {
                            disk.write_failed(&e);
                            tracing::error!(%key, "cannot keep a document in the disk cache: {e}");
                        }
                    }
                }
            }
        })
        .expect("spawning a thread");
    tx
}

/// Renders a document and appends it to the newest pack.
fn write_document(documents: &docs::Documents, d: Document) -> std::io::Result<()> {
    let Some(bytes) = (d.render)() else {
        return Ok(());
    };
    let record = plain::PlainRecord {
        size: bytes.len() as u64,
        mtime_ns: d.stamp_ns,
        sha: Sha256Digest::of(&bytes),
    };
    if !documents.append(&d.key, &record, &bytes)? {
        tracing::debug!(key = %d.key, "a page not kept: no room for it now");
    }
    Ok(())
}

/// Lowers the calling thread's priority to `nice` (Linux keeps a nice
/// value per thread). A failure only costs the ordering, so it is logged.
fn lower_own_priority(nice: libc::c_int) {
    // SAFETY: plain system calls on the calling thread's own id.
    let failed = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice) != 0
    };
    if failed {
        let e = std::io::Error::last_os_error();
        tracing::warn!("cannot lower the cache writer's priority: {e}");
    }
}

/// Writes a verified fill into the disk tier, and the plain record that
/// names it, if it has one.
///
/// Not fsynced: the cache is not the copy of record. After a restart every
/// entry is hashed again on its first read, so a file a power cut left
/// short or empty is caught there, dropped and refetched. An fsync per fill
/// cost cold requests milliseconds each on a real disk (Varnish and nginx's
/// proxy_cache do not sync either).
fn write_entry(
    disk: &DiskTier,
    copied: fill::Copied,
    sha: &Sha256Digest,
    size: u64,
    named: &Named,
    reservation: &mut disk::Reservation,
) -> std::io::Result<()> {
    let temp = match copied {
        fill::Copied::File(temp) => temp,
        fill::Copied::Bytes(data) => {
            let (temp, file) = reservation.create_temp()?;
            let written = std::os::unix::fs::FileExt::write_all_at(&file, &data, 0);
            if let Err(e) = written {
                let _ = std::fs::remove_file(&temp);
                return Err(e);
            }
            temp
        }
    };
    // The record first: once the entry can be seen on disk (a HEAD says
    // `hit-disk`), a restart finds it by its record too. A record whose
    // entry is then refused is a miss, never wrong bytes.
    let recorded = match named {
        Named::Plain(key, record) => disk.write_record(key, &record.encode()),
        Named::Object => Ok(()),
    };
    disk.commit(&temp, sha, size, Some(reservation))?;
    recorded
}

/// A file's mtime in nanoseconds since the epoch.
pub fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
}

//! Coalesced fills: one origin read per object, however many clients ask.
//!
//! A fill runs in its own task (`tokio::spawn`), so it goes on when the
//! client that started it disconnects.
//!
//! At most `cache.max_fills` fills read at once, and each first holds the
//! size of its object in the disk budget (`DiskTier::reserve`: committed
//! entries are evicted to make that room before the temporary file
//! exists). A fill past the cap *waits* for its turn, still registered, so
//! a herd on one object joins it as before. Waiting, rather than reading
//! past the cap straight from the origin (`direct`), keeps both the origin
//! reads and the daemon's memory bounded whatever the number of clients:
//! a waiting fill holds no buffer, no file and no origin descriptor, where
//! each uncached response reads its own copy. The wait is bounded by
//! `origin_timeout` (then 503). A fill whose clients have all gone by the
//! time its turn comes is dropped without reading anything: nobody is
//! left to serve, and a flood of requests that hang up at once then costs
//! no origin reads. Once a fill has started it runs to the end, whoever
//! leaves.
//!
//! A fill copies the origin object into a
//! temporary file in the cache directory while hashing it, and publishes
//! its progress on a `watch` channel. Every client — the first one too —
//! is a *waiter*: it reads the temporary file through a shared read handle,
//! up to the published number of bytes, and waits for more.
//!
//! The last byte of every response is withheld until the fill has verified
//! the whole object (sha256 for a release, an unchanged `stat` for a plain
//! tree). So when verification fails, every response ends short of its
//! Content-Length: an incomplete download, never a complete-looking wrong
//! file. Only then is the file committed to the disk tier (not fsynced:
//! entries are hashed again on their first read after a restart).
//!
//! The states a waiter can meet, each handled by name:
//! - [`Progress::Waiting`]: the origin is being opened and first read; wait.
//! - [`Progress::Streaming`]: bytes up to `ready` can be read; wait for more.
//! - [`Progress::Done`]: all bytes are verified; finish.
//! - [`Progress::Failed`]: the fill failed (origin missing, I/O, integrity,
//!   changed, timed out); abort the response.
//! - [`Progress::Uncached`]: the cache could not hold the object (its disk
//!   is full or failing); each waiter reads the rest straight from the
//!   origin ([`super::direct`]).
//! - [`Progress::Busy`]: the fill waited `origin_timeout` for a slot
//!   (`cache.max_fills`) or for disk budget without getting one; 503.
//! - *timed out* (waiter side): no progress for longer than the origin
//!   timeout plus a margin; abort.
//! - *abandoned*: the fill's task ended without a final state (it panicked
//!   or the runtime is shutting down); abort.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use super::disk::Reservation;
use super::{Cache, Joined, ObjectKey};
use crate::digest::Sha256Digest;
use crate::metrics::{OriginError, Tier};
use crate::origin;

/// What a fill has published so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Waiting,
    Streaming {
        ready: u64,
    },
    Done,
    Failed(OriginError),
    Uncached,
    /// It waited `origin_timeout` for a free slot (`cache.max_fills`) or
    /// for room in the disk budget, and gave up without reading.
    Busy,
}

/// Why a waiter gave up on a fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitError {
    Failed(OriginError),
    TimedOut,
    Abandoned,
    /// The fill could not write the cache: read from the origin instead.
    Uncached,
    /// Too many fills were in flight for this one to start in time.
    Busy,
}

impl std::fmt::Display for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitError::Failed(OriginError::Upstream) => f.write_str(
                "the upstream of this file (an on-demand release) could not be reached or refused it; nothing was cached",
            ),
            WaitError::Failed(e) => write!(f, "the origin read failed ({})", e.as_str()),
            WaitError::TimedOut => f.write_str("the origin read made no progress in time"),
            WaitError::Abandoned => f.write_str("the origin read was abandoned"),
            WaitError::Uncached => f.write_str("the cache could not hold the object"),
            WaitError::Busy => f.write_str("too many origin reads in flight; try again later"),
        }
    }
}

/// Everything a fill needs to know about the object it reads.
#[derive(Clone, Debug)]
pub struct FillRequest {
    pub key: ObjectKey,
    /// The volume, for metrics and logs.
    pub volume: Arc<str>,
    /// Where it is read from, and what it must turn out to be.
    pub origin: origin::Object,
}

impl FillRequest {
    pub fn size(&self) -> u64 {
        self.origin.size()
    }
}

/// One fill in progress, shared by its waiters.
pub struct Fill {
    pub size: u64,
    /// What is filled, for waiters that must read it from the origin
    /// themselves.
    pub request: FillRequest,
    reader: OnceLock<Reader>,
    /// A small object's verified bytes: clients are served from them while
    /// the cache file is written.
    data: OnceLock<Bytes>,
    progress: watch::Receiver<Progress>,
    pub stall_timeout: Duration,
}

/// How waiters read a fill's temporary file.
enum Reader {
    /// Mapped whole (the file was sized first): reads are slices.
    Mapped(Arc<memmap2::Mmap>),
    /// Read on the blocking pool, where mapping failed.
    File(Arc<File>),
}

/// The fills in progress, by object.
#[derive(Default)]
pub struct Fills {
    running: Mutex<HashMap<ObjectKey, Arc<Fill>>>,
}

impl Fills {
    /// The fill for `req.key`: a running one, or a new one started in
    /// its own task.
    pub fn join_or_start(&self, cache: &Arc<Cache>, req: FillRequest) -> Joined {
        let mut running = self.running.lock().expect("not poisoned");
        if let Some(f) = running.get(&req.key) {
            return Joined::Coalesced(f.clone());
        }
        let (tx, rx) = watch::channel(Progress::Waiting);
        let fill = Arc::new(Fill {
            size: req.size(),
            request: req.clone(),
            reader: OnceLock::new(),
            data: OnceLock::new(),
            progress: rx,
            stall_timeout: cache.settings.origin_timeout + Duration::from_secs(5),
        });
        running.insert(req.key.clone(), fill.clone());
        let cache = cache.clone();
        let registered = Registered {
            cache: cache.clone(),
            fill: fill.clone(),
        };
        tokio::spawn(async move {
            // Removes the entry whatever happens to this task.
            let registered = registered;
            run(&cache, &registered, req, tx).await;
        });
        Joined::Started(fill)
    }

    /// Whether a fill of `key` is running.
    pub fn running(&self, key: &ObjectKey) -> bool {
        self.running.lock().expect("not poisoned").contains_key(key)
    }

    /// How many fills are running.
    pub fn len(&self) -> usize {
        self.running.lock().expect("not poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A running fill's entry in `Fills`, removed when its task ends.
struct Registered {
    cache: Arc<Cache>,
    fill: Arc<Fill>,
}

/// The references to a fill that are not its clients': the entry in
/// `Fills::running` and the one `Registered` holds. Every client holds
/// another (from `join_or_start` to the end of its response).
const OWN_REFERENCES: usize = 2;

impl Registered {
    /// Removes the entry if no client holds the fill any more (`true`).
    /// Under the map's lock, so no client can join it meanwhile.
    fn forget_if_unwanted(&self) -> bool {
        let mut running = self.cache.fills.running.lock().expect("not poisoned");
        if Arc::strong_count(&self.fill) > OWN_REFERENCES {
            return false;
        }
        self.remove_from(&mut running);
        true
    }

    fn remove_from(&self, running: &mut HashMap<ObjectKey, Arc<Fill>>) {
        // Only its own entry: once forgotten, a new fill may hold the key.
        let key = &self.fill.request.key;
        if running.get(key).is_some_and(|f| Arc::ptr_eq(f, &self.fill)) {
            running.remove(key);
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut running = self.cache.fills.running.lock().expect("not poisoned");
        self.remove_from(&mut running);
    }
}

/// Reads in chunks of this size from the origin.
const CHUNK: usize = 1 << 20;

async fn run(
    cache: &Arc<Cache>,
    registered: &Registered,
    req: FillRequest,
    tx: watch::Sender<Progress>,
) {
    let fill = &registered.fill;
    let volume = req.volume.clone();
    cache.metrics.fills_waiting.inc();
    let admitted = cache
        .admit_fill(req.size(), cache.settings.origin_timeout)
        .await;
    cache.metrics.fills_waiting.dec();
    let Some(admitted) = admitted else {
        tracing::warn!(volume = %volume, origin = %req.origin.location().display(), "fill not started: no free slot (cache.max_fills) or disk budget within daemon.origin_timeout; answering 503");
        let _ = tx.send(Progress::Busy);
        return;
    };
    if registered.forget_if_unwanted() {
        tracing::debug!(volume = %volume, origin = %req.origin.location().display(), "fill dropped before it started: its clients are gone");
        return;
    }
    let _running = Running::new(&cache.metrics);
    cache.metrics.fills(&volume, req.origin.source()).inc();
    let mut reservation = Some(admitted.reservation);
    let started = Instant::now();
    let result = if req.size() <= SMALL {
        copy_small(cache, &req).await
    } else {
        copy(cache, fill, &req, &tx, &mut reservation).await
    };
    cache
        .metrics
        .fill_seconds(&volume, req.origin.source())
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok((copied, sha, small)) => {
            // Before `Done`: a client that saw its response end and asks
            // again finds the object in memory, not a fill finishing.
            if let Some(bytes) = small {
                cache.memory_insert(sha, bytes);
            }
            cache.remember_plain(&req.key, sha);
            if let Copied::Bytes(b) = &copied {
                let _ = fill.data.set(b.clone());
            }
            let _ = tx.send(Progress::Done);
            let reservation = reservation.expect("given back by `copy`");
            cache.commit(copied, sha, &req, reservation).await;
        }
        Err((failure, temp)) => {
            if let Some(t) = temp {
                let _ = std::fs::remove_file(t);
            }
            // Its room is given back once the file is gone.
            drop(reservation);
            let (kind, msg) = match failure {
                Failure::Origin(e) => (e.kind, e.detail),
                Failure::Uncached(e) => {
                    cache.disk.write_failed(&e);
                    tracing::warn!(volume = %volume, origin = %req.origin.location().display(), "not cached, read from the origin instead: writing the cache's temporary file: {e}");
                    let _ = tx.send(Progress::Uncached);
                    return;
                }
            };
            cache
                .metrics
                .origin_errors
                .with_label_values(&[&volume, kind.as_str()])
                .inc();
            if kind == OriginError::Integrity {
                cache.metrics.integrity_failures(Tier::Origin).inc();
            }
            tracing::error!(volume = %volume, origin = %req.origin.location().display(), kind = kind.as_str(), "origin read failed: {msg}");
            let _ = tx.send(Progress::Failed(kind));
        }
    }
}

/// Counts a fill as running while it lives.
struct Running<'a>(&'a crate::metrics::Metrics);

impl<'a> Running<'a> {
    fn new(metrics: &'a crate::metrics::Metrics) -> Self {
        metrics.fills_running.inc();
        Running(metrics)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fills_running.dec();
    }
}

/// Why a fill did not complete.
enum Failure {
    /// The origin could not give the object.
    Origin(origin::Error),
    /// The cache could not take it.
    Uncached(std::io::Error),
}

/// A failure, and the temporary file to remove.
type CopyError = (Failure, Option<PathBuf>);

/// What a successful copy leaves to commit.
pub enum Copied {
    /// A verified temporary file.
    File(PathBuf),
    /// A small object's verified bytes, written to the cache after the
    /// clients have them.
    Bytes(Bytes),
}

/// Copies the origin object to a temporary file, publishing progress;
/// returns the temp file, the content's sha256, and the bytes themselves
/// when the object is small enough for the memory tier.
async fn copy(
    cache: &Cache,
    fill: &Fill,
    req: &FillRequest,
    tx: &watch::Sender<Progress>,
    reservation: &mut Option<Reservation>,
) -> Result<(Copied, Sha256Digest, Option<Bytes>), CopyError> {
    let timeout = cache.settings.origin_timeout;
    let timed_out = |detail: String| origin::Error::new(OriginError::Timeout, detail);
    let mut from = match tokio::time::timeout(timeout, req.origin.open()).await {
        Ok(r) => r.map_err(|e| (Failure::Origin(e), None))?,
        Err(_) => {
            let e = timed_out("opening took too long".into());
            return Err((Failure::Origin(e), None));
        }
    };

    // Made only once the files on disk leave room for it (which may mean
    // waiting for evictions to be deleted): on the blocking pool.
    let mut held = reservation.take().expect("a fill's reservation");
    let (created, held) = tokio::task::spawn_blocking(move || (held.create_temp(), held))
        .await
        .map_err(|e| (Failure::Uncached(std::io::Error::other(e)), None))?;
    *reservation = Some(held);
    let (temp, writer) = created.map_err(|e| (Failure::Uncached(e), None))?;
    let local = |e: std::io::Error, temp: &PathBuf| (Failure::Uncached(e), Some(temp.clone()));
    let writer = Arc::new(writer);
    // Sized first, so that the whole file can be mapped for the waiters
    // (a mapping past the end of a file faults).
    writer.set_len(req.size()).map_err(|e| local(e, &temp))?;
    let reader = File::open(&temp).map_err(|e| local(e, &temp))?;
    // SAFETY: the temporary file is this fill's own: only its `ready`
    // prefix is read, it is only written below, and never truncated; the
    // map stays valid after it is renamed or unlinked.
    let reader = match unsafe { memmap2::Mmap::map(&reader) } {
        Ok(map) => Reader::Mapped(Arc::new(map)),
        Err(_) => Reader::File(Arc::new(reader)),
    };
    // `Streaming` is first published after the first read, so an origin
    // that fails or stalls at once still becomes an error status.
    let _ = fill.reader.set(reader);

    let keep_small = req.size() <= cache.settings.memory_max_object && cache.memory_enabled();
    let mut small = Vec::new();
    let mut verifier = origin::Verifier::for_object(&req.origin);
    let mut buf = vec![0u8; CHUNK];
    let origin_bytes = cache.metrics.read_bytes(&req.volume, req.origin.source());
    loop {
        let n = match tokio::time::timeout(timeout, from.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err((Failure::Origin(e), Some(temp))),
            Err(_) => {
                let e = timed_out(format!(
                    "no data for {}",
                    humantime::format_duration(timeout)
                ));
                return Err((Failure::Origin(e), Some(temp)));
            }
        };
        if n == 0 {
            break;
        }
        origin_bytes.inc_by(n as u64);
        // Counted, so that the check tells a file that grew.
        verifier.update(&buf[..n]);
        let total = verifier.total();
        if total > req.size() {
            break;
        }
        if keep_small {
            small.extend_from_slice(&buf[..n]);
        }
        // Written before `ready` moves, so waiters never read past the data.
        let (w, offset) = (writer.clone(), total - n as u64);
        let written = tokio::task::spawn_blocking(move || {
            let r = w.write_all_at(&buf[..n], offset);
            (r, buf)
        })
        .await
        .map_err(|e| local(std::io::Error::other(e), &temp))?;
        buf = written.1;
        written.0.map_err(|e| local(e, &temp))?;
        // Hold back the last byte until the whole object is verified.
        let _ = tx.send(Progress::Streaming {
            ready: total.min(req.size().saturating_sub(1)),
        });
    }
    let sha = verifier
        .finish(&req.origin)
        .await
        .map_err(|e| (Failure::Origin(e), Some(temp.clone())))?;
    Ok((
        Copied::File(temp),
        sha,
        keep_small.then(|| Bytes::from(small)),
    ))
}

/// Objects up to this size are filled by [`copy_small`].
const SMALL: u64 = super::disk::SMALL;

/// Fills a small object in one trip to the blocking pool: open, read, hash
/// and check. Waiters see no byte before the whole object is verified, and
/// then get it from memory; the cache file is written afterwards, off their
/// path (creating files is the slow part of a cold small object).
async fn copy_small(
    cache: &Cache,
    req: &FillRequest,
) -> Result<(Copied, Sha256Digest, Option<Bytes>), CopyError> {
    let origin_bytes = cache.metrics.read_bytes(&req.volume, req.origin.source());
    let job = {
        let req = req.clone();
        tokio::task::spawn_blocking(move || -> Result<_, CopyError> {
            use std::io::Read;
            let failed = |e| (Failure::Origin(e), None);
            let mut data = Vec::with_capacity(req.size() as usize + 1);
            // One byte past its size tells a file that grew.
            req.origin
                .open_blocking()
                .map_err(failed)?
                .take(req.size() + 1)
                .read_to_end(&mut data)
                .map_err(|e| failed(origin::Error::io(e)))?;
            origin_bytes.inc_by(data.len() as u64);
            let mut verifier = origin::Verifier::for_object(&req.origin);
            verifier.update(&data);
            let sha = verifier.finish_blocking(&req.origin).map_err(failed)?;
            Ok((Bytes::from(data), sha))
        })
    };
    let (data, sha) = match tokio::time::timeout(cache.settings.origin_timeout, job).await {
        Ok(Ok(result)) => result?,
        Ok(Err(e)) => {
            let e = origin::Error::new(OriginError::Io, e.to_string());
            return Err((Failure::Origin(e), None));
        }
        Err(_) => {
            let msg = format!(
                "no answer in {}",
                humantime::format_duration(cache.settings.origin_timeout)
            );
            let e = origin::Error::new(OriginError::Timeout, msg);
            return Err((Failure::Origin(e), None));
        }
    };
    let keep = data.len() as u64 <= cache.settings.memory_max_object && cache.memory_enabled();
    Ok((Copied::Bytes(data.clone()), sha, keep.then_some(data)))
}

impl Fill {
    /// Waits until the fill has opened the origin (or failed), so that a
    /// failure to start can still become an error status.
    pub async fn started(&self) -> Result<(), WaitError> {
        let mut rx = self.progress.clone();
        loop {
            match *rx.borrow_and_update() {
                Progress::Waiting => {}
                Progress::Failed(e) => return Err(WaitError::Failed(e)),
                Progress::Uncached => return Err(WaitError::Uncached),
                Progress::Busy => return Err(WaitError::Busy),
                Progress::Streaming { .. } | Progress::Done => return Ok(()),
            }
            self.changed(&mut rx).await?;
        }
    }

    async fn changed(&self, rx: &mut watch::Receiver<Progress>) -> Result<(), WaitError> {
        match tokio::time::timeout(self.stall_timeout, rx.changed()).await {
            Err(_) => Err(WaitError::TimedOut),
            Ok(Ok(())) => Ok(()),
            // The sender is gone: fine if it left a final state.
            Ok(Err(_)) => match *rx.borrow() {
                Progress::Done | Progress::Failed(_) | Progress::Uncached | Progress::Busy => {
                    Ok(())
                }
                _ => Err(WaitError::Abandoned),
            },
        }
    }

    /// Reads up to `max` bytes at `pos` once they are available, withholding
    /// the response's last byte (`pos + max == end`) until the fill is done.
    /// Returns an empty buffer only when `pos` reached `end`.
    pub async fn read(&self, pos: u64, end: u64, max: usize) -> Result<Bytes, WaitError> {
        if pos >= end {
            return Ok(Bytes::new());
        }
        let mut rx = self.progress.clone();
        loop {
            let limit = match *rx.borrow_and_update() {
                Progress::Waiting => 0,
                Progress::Streaming { ready } => ready.min(end - 1),
                Progress::Done => end,
                Progress::Failed(e) => return Err(WaitError::Failed(e)),
                Progress::Uncached => return Err(WaitError::Uncached),
                Progress::Busy => return Err(WaitError::Busy),
            };
            if pos < limit {
                if let Some(data) = self.data.get() {
                    let to = limit.min(pos + max as u64).min(data.len() as u64);
                    return Ok(data.slice(pos as usize..to as usize));
                }
                let len = (limit - pos).min(max as u64) as usize;
                let reader = match self.reader.get().expect("set before streaming") {
                    Reader::Mapped(map) => {
                        return Ok(super::mapped_bytes(map, pos as usize..pos as usize + len));
                    }
                    Reader::File(file) => file.clone(),
                };
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; len];
                    reader.read_exact_at(&mut buf, pos).map(|()| buf)
                })
                .await;
                return match read {
                    Ok(Ok(buf)) => Ok(Bytes::from(buf)),
                    _ => Err(WaitError::Failed(OriginError::Io)),
                };
            }
            self.changed(&mut rx).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::FillSource;

    fn fill(rx: watch::Receiver<Progress>, stall: Duration) -> Fill {
        Fill {
            size: 10,
            request: FillRequest {
                key: ObjectKey::Content(Sha256Digest([0; 32])),
                volume: "t".into(),
                origin: origin::Object::Stored {
                    file: PathBuf::new(),
                    elsewhere: None,
                    sha: Sha256Digest([0; 32]),
                    size: 10,
                },
            },
            reader: OnceLock::new(),
            data: OnceLock::new(),
            progress: rx,
            stall_timeout: stall,
        }
    }

    /// A cache with one fill slot and a short origin timeout, and a
    /// 100 KiB origin file.
    fn one_slot_cache(dir: &std::path::Path) -> (Arc<Cache>, FillRequest) {
        let text = format!(
            "origin = \"/o\"\nstaging = \"/s\"\n[cache]\ndir = {:?}\nmax_fills = 1\n",
            dir.join("cache").display().to_string()
        );
        let config = crate::config::Config::parse(&dir.join("t.toml"), &text).unwrap();
        let cache = Cache::open(
            &config.cache,
            Duration::from_millis(300),
            Arc::new(crate::metrics::Metrics::new()),
        )
        .unwrap();
        let data = vec![5u8; 100 << 10];
        let file = dir.join("object");
        std::fs::write(&file, &data).unwrap();
        let sha = Sha256Digest::of(&data);
        let req = FillRequest {
            key: ObjectKey::Content(sha),
            volume: "t".into(),
            origin: origin::Object::Stored {
                file,
                elsewhere: None,
                sha,
                size: data.len() as u64,
            },
        };
        (cache, req)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queued_fill_whose_clients_left_reads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, req) = one_slot_cache(dir.path());
        let sha = match req.key {
            ObjectKey::Content(s) => s,
            _ => unreachable!(),
        };
        // The one slot is taken, so the fill queues; its client leaves.
        let slot = cache.fill_slots.clone().acquire_owned().await.unwrap();
        let joined = cache.fills.join_or_start(&cache, req.clone());
        assert!(matches!(joined, Joined::Started(_)));
        drop(joined);
        drop(slot);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cache.fills.is_empty() {
            assert!(Instant::now() < deadline, "the fill never ended");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let read = cache.metrics.read_bytes("t", FillSource::Origin).get();
        assert_eq!(read, 0, "a fill nobody waits for read the origin");
        assert!(!cache.disk.contains(&sha));
        // Asked again, it is filled as usual.
        let fill = cache.fills.join_or_start(&cache, req).fill().clone();
        fill.started().await.unwrap();
        let mut got = 0;
        while got < 100 << 10 {
            got += fill.read(got, 100 << 10, 1 << 20).await.unwrap().len() as u64;
        }
        assert!(cache.metrics.read_bytes("t", FillSource::Origin).get() >= 100 << 10);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fill_that_gets_no_slot_in_time_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, req) = one_slot_cache(dir.path());
        let _slot = cache.fill_slots.clone().acquire_owned().await.unwrap();
        let fill = cache.fills.join_or_start(&cache, req).fill().clone();
        // Waits out the origin timeout (300 ms), then says so.
        assert_eq!(fill.started().await, Err(WaitError::Busy));
        assert_eq!(cache.metrics.fills_waiting.get(), 0);
    }

    #[tokio::test]
    async fn a_fill_whose_task_vanishes_is_abandoned() {
        let (tx, rx) = watch::channel(Progress::Waiting);
        let f = fill(rx, Duration::from_secs(60));
        drop(tx);
        assert_eq!(f.started().await, Err(WaitError::Abandoned));
        assert_eq!(f.read(0, 10, 4).await, Err(WaitError::Abandoned));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fill_without_progress_times_out() {
        let (_tx, rx) = watch::channel(Progress::Waiting);
        let f = fill(rx, Duration::from_secs(5));
        assert_eq!(f.started().await, Err(WaitError::TimedOut));
    }

    #[tokio::test]
    async fn failed_and_done_are_final_even_after_the_task_ended() {
        let (tx, rx) = watch::channel(Progress::Waiting);
        let f = fill(rx, Duration::from_secs(60));
        tx.send(Progress::Failed(OriginError::Integrity)).unwrap();
        drop(tx);
        assert_eq!(
            f.started().await,
            Err(WaitError::Failed(OriginError::Integrity))
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, b"0123456789").unwrap();
        let (tx, rx) = watch::channel(Progress::Waiting);
        let f = fill(rx, Duration::from_secs(60));
        let _ = f
            .reader
            .set(Reader::File(Arc::new(File::open(&path).unwrap())));
        tx.send(Progress::Streaming { ready: 10 }).unwrap();
        // The last byte waits for Done.
        assert_eq!(f.read(0, 10, 100).await.unwrap(), &b"012345678"[..]);
        tx.send(Progress::Done).unwrap();
        drop(tx);
        assert_eq!(f.read(9, 10, 100).await.unwrap(), &b"9"[..]);
        assert_eq!(f.read(10, 10, 100).await.unwrap(), &b""[..]);
    }
}

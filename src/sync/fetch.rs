//! Downloading from an upstream: one HTTP client (rustls), a bound on
//! downloads in flight, retries with backoff, and files written the durable
//! way (temporary file, verified, fsynced, renamed).
//!
//! A file already in the staging tree with the expected size and sha256 is
//! kept, which makes a sync resumable and incremental: a rerun fetches only
//! what is missing, changed or was cut short.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use reqwest::{StatusCode, Url};
use tokio::sync::Semaphore;

use crate::config::SyncSettings;
use crate::digest::{HashingWriter, Sha256Digest, copy_hashing, sha256_of_reader};

/// What a downloaded file must be.
#[derive(Clone, Copy, Debug)]
pub struct Want {
    pub sha256: Sha256Digest,
    pub size: Option<u64>,
}

/// The digest an index gives for a file. Most give sha256; a yum
/// repository may give sha512 instead (`createrepo_c -s sha512`), and then
/// the file is checked against that, and its sha256 (which the release
/// records) is computed from the same bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digest {
    Sha256(Sha256Digest),
    Sha512([u8; 64]),
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Digest::Sha256(d) => write!(f, "sha256 {d}"),
            Digest::Sha512(d) => write!(f, "sha512 {}", hex::encode(d)),
        }
    }
}

/// sha512 of what is written to it.
struct Sha512Sink(sha2::Sha512);

impl Write for Sha512Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(&mut self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An HTTP status the upstream answered with; 404s are often expected
/// (optional files), so callers can tell them apart.
#[derive(Debug, thiserror::Error)]
#[error("{url}: HTTP {status}")]
pub struct HttpStatus {
    pub url: String,
    pub status: u16,
}

/// A file whose bytes did not match what the upstream's index says.
#[derive(Debug, thiserror::Error)]
#[error("{url}: expected {want} bytes with {digest}, got {got_size} bytes with {got}")]
pub struct Mismatch {
    pub url: String,
    pub want: String,
    pub digest: Digest,
    pub got_size: u64,
    pub got: String,
}

/// A body past what it may be: its index's size, `sync.max_download_size`
/// or `sync.max_metadata_size`. The download stops there; retrying would
/// only fetch the same bytes again.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {what}; aborted")]
pub struct TooLarge {
    pub url: String,
    pub what: String,
}

/// A download attempt that did not finish in `sync.download_deadline`
/// (an upstream that trickles bytes just fast enough to defeat the
/// no-progress timeout).
#[derive(Debug, thiserror::Error)]
#[error("{url}: not finished within {deadline} (sync.download_deadline)")]
pub struct Deadline {
    pub url: String,
    pub deadline: String,
}

/// Counters for the progress line, the summary and the metrics file.
pub struct Stats {
    pub fetched_files: AtomicU64,
    pub fetched_bytes: AtomicU64,
    pub kept_files: AtomicU64,
    /// Files asked for so far and the sum of their known sizes: the total
    /// the progress counts towards. It grows as indexes are read (a phase's
    /// downloads are all queued at once, so it is the phase's total).
    queued_files: AtomicU64,
    queued_bytes: AtomicU64,
    /// Known sizes of the queued files that are done (kept or fetched).
    done_bytes: AtomicU64,
    started: Instant,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            fetched_files: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
            kept_files: AtomicU64::new(0),
            queued_files: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            done_bytes: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    fn queue(&self, size: Option<u64>) {
        self.queued_files.fetch_add(1, Ordering::Relaxed);
        self.queued_bytes
            .fetch_add(size.unwrap_or(0), Ordering::Relaxed);
    }

    fn done(&self, size: Option<u64>) {
        self.done_bytes
            .fetch_add(size.unwrap_or(0), Ordering::Relaxed);
    }

    /// The progress so far: a line for operators, and (done, total) bytes
    /// for a bar. The rate and ETA count only downloads (present files cost
    /// nothing).
    pub fn progress(&self) -> (String, (u64, u64)) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let files = load(&self.fetched_files) + load(&self.kept_files);
        let (done, total) = (load(&self.done_bytes), load(&self.queued_bytes));
        let elapsed = self.started.elapsed();
        let fetched = load(&self.fetched_bytes);
        // Before the first index is read nothing is queued: a 0/0 with an
        // ETA of 0s would say the work was done.
        if load(&self.queued_files) == 0 {
            return ("listing…".into(), (0, 0));
        }
        let line = format!(
            "{files}/{} files, {}/{} ({} fetched, {} already present), {}/s, ETA {}",
            load(&self.queued_files),
            crate::progress::bytes(done),
            crate::progress::bytes(total),
            load(&self.fetched_files),
            load(&self.kept_files),
            crate::progress::bytes(rate(fetched, elapsed)),
            crate::progress::eta(total.saturating_sub(done), rate(fetched, elapsed)),
        );
        (line, (done, total))
    }
}

/// Bytes per second over `elapsed`.
fn rate(bytes: u64, elapsed: Duration) -> u64 {
    (bytes as f64 / elapsed.as_secs_f64().max(0.001)) as u64
}

pub struct Fetcher {
    client: reqwest::Client,
    slots: Arc<Semaphore>,
    retries: u32,
    allow_http: bool,
    /// This sync asked for an HTTPS URL (see `check_url`).
    used_https: AtomicBool,
    /// Bounds on what an upstream can make the sync take (see
    /// `SyncSettings`).
    max_download_size: u64,
    pub max_metadata_size: u64,
    deadline: Duration,
    /// Where temporary files go: on the staging filesystem, outside the tree.
    tmp: PathBuf,
    pub stats: Stats,
    /// Every file this run fetched or found correct: path → sha256. The
    /// consistency gate checks against it instead of hashing again.
    verified: Mutex<HashMap<PathBuf, Sha256Digest>>,
    pub dry_run: bool,
}

impl Fetcher {
    pub fn new(settings: &SyncSettings, tmp: &Path, dry_run: bool) -> Result<Fetcher> {
        let allow_http = settings.allow_http;
        let client = crate::upstream::client(&crate::upstream::ClientRules {
            user_agent: concat!("unimirror-update/", env!("CARGO_PKG_VERSION")),
            allow_http,
            redirect_hosts: &settings.allow_redirect_hosts,
            connect_timeout: Duration::from_secs(30),
            read_timeout: settings.timeout,
        })?;
        if !dry_run {
            std::fs::create_dir_all(tmp).with_context(|| format!("creating {}", tmp.display()))?;
        }
        Ok(Fetcher {
            client,
            slots: Arc::new(Semaphore::new(settings.concurrency)),
            retries: settings.retries,
            allow_http,
            used_https: AtomicBool::new(false),
            max_download_size: settings.max_download_size,
            max_metadata_size: settings.max_metadata_size,
            deadline: settings.download_deadline,
            tmp: tmp.to_path_buf(),
            stats: Stats::new(),
            verified: Mutex::new(HashMap::new()),
            dry_run,
        })
    }

    /// Refuses plain-HTTP upstreams unless the config allows them, and
    /// plain HTTP altogether once this sync has used HTTPS: an HTTPS
    /// index must not lead to files over plain HTTP.
    pub fn check_url(&self, url: &Url) -> Result<()> {
        match url.scheme() {
            "https" => {
                self.used_https.store(true, Ordering::Relaxed);
                Ok(())
            }
            "http" if self.used_https.load(Ordering::Relaxed) => {
                bail!("{url}: refusing plain HTTP from an HTTPS upstream")
            }
            "http" if self.allow_http => Ok(()),
            "http" => bail!("{url}: plain HTTP upstreams need `allow_http = true` in [sync]"),
            other => bail!("{url}: unsupported scheme `{other}`"),
        }
    }

    /// A small file (an index), in memory: at most `max_metadata_size`.
    pub async fn bytes(&self, url: &Url) -> Result<Bytes> {
        self.check_url(url)?;
        let _slot = self.slots.acquire().await.expect("never closed");
        self.retrying(url, || {
            self.within_deadline(url, async {
                let resp = self.get(url, None).await?;
                self.body(url, resp).await
            })
        })
        .await
    }

    /// A response's whole body in memory, refused past `max_metadata_size`
    /// (by its Content-Length at once, or while it streams).
    async fn body(&self, url: &Url, mut resp: reqwest::Response) -> Result<Bytes> {
        let limit = self.max_metadata_size;
        let too_large = || TooLarge {
            url: url.to_string(),
            what: format!("larger than sync.max_metadata_size ({limit} bytes)"),
        };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large().into());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .with_context(|| format!("reading {url}"))?
        {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large().into());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.into())
    }

    /// Runs one attempt of a request under the whole-file deadline.
    async fn within_deadline<T>(
        &self,
        url: &Url,
        attempt: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.deadline, attempt).await {
            Ok(r) => r,
            Err(_) => Err(Deadline {
                url: url.to_string(),
                deadline: humantime::format_duration(self.deadline).to_string(),
            }
            .into()),
        }
    }

    /// An index page, asked for with `accept`; returns its Content-Type
    /// and body.
    pub async fn page(&self, url: &Url, accept: &'static str) -> Result<(String, Bytes)> {
        self.check_url(url)?;
        let _slot = self.slots.acquire().await.expect("never closed");
        self.retrying(url, || {
            self.within_deadline(url, async {
                let resp = self.get(url, Some(accept)).await?;
                let ct = resp
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_ascii_lowercase();
                let body = self.body(url, resp).await?;
                Ok((ct, body))
            })
        })
        .await
    }

    /// Downloads `url` to `dest`, which must end up with `want`'s sha256 and
    /// size; keeps `dest` if it already has them. Returns whether it was
    /// downloaded.
    pub async fn file(&self, url: &Url, dest: &Path, want: Want) -> Result<bool> {
        self.file_checked(url, dest, Digest::Sha256(want.sha256), want.size)
            .await
            .map(|(fetched, _)| fetched)
    }

    /// Downloads `url` to `dest`, which must end up with `digest` and
    /// `size`; keeps `dest` if it already has them. Returns whether it was
    /// downloaded, and its sha256 (in a dry run, of what is there if
    /// anything: nothing is fetched to compute it).
    pub async fn file_checked(
        &self,
        url: &Url,
        dest: &Path,
        digest: Digest,
        size: Option<u64>,
    ) -> Result<(bool, Option<Sha256Digest>)> {
        self.check_url(url)?;
        self.stats.queue(size);
        if let Some(sha256) = self.present(dest, digest, size).await? {
            self.stats.kept_files.fetch_add(1, Ordering::Relaxed);
            self.stats.done(size);
            self.mark(dest, sha256);
            return Ok((false, Some(sha256)));
        }
        if self.dry_run {
            println!("would fetch {url}");
            return Ok((true, None));
        }
        let _slot = self.slots.acquire().await.expect("never closed");
        let sha256 = self
            .retrying(url, || self.download(url, dest, digest, size))
            .await?;
        self.stats.done(size);
        self.mark(dest, sha256);
        Ok((true, Some(sha256)))
    }

    /// Records a file as checked this run (written by the sync itself).
    pub fn mark(&self, path: &Path, sha: Sha256Digest) {
        self.verified
            .lock()
            .expect("not poisoned")
            .insert(path.to_path_buf(), sha);
    }

    /// Whether `path` was checked this run and had `sha`.
    pub fn checked(&self, path: &Path, sha: &Sha256Digest) -> bool {
        self.verified.lock().expect("not poisoned").get(path) == Some(sha)
    }

    /// Writes bytes the sync got (and verified) itself into the tree.
    pub fn write(&self, dest: &Path, bytes: &[u8]) -> Result<()> {
        // Unchanged files keep their mtime, so an unchanged upstream makes
        // an unchanged tree (and no new release).
        if self.dry_run || std::fs::read(dest).is_ok_and(|b| b == bytes) {
            self.mark(dest, Sha256Digest::of(bytes));
            return Ok(());
        }
        let parent = dest.parent().expect("a file in the tree");
        std::fs::create_dir_all(parent)?;
        crate::durable::write_atomic(dest, &self.tmp, bytes)
            .with_context(|| format!("writing {}", dest.display()))?;
        self.mark(dest, Sha256Digest::of(bytes));
        Ok(())
    }

    /// The sha256 of `dest` if it is already there with `digest` and `size`.
    pub async fn present(
        &self,
        dest: &Path,
        digest: Digest,
        size: Option<u64>,
    ) -> Result<Option<Sha256Digest>> {
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<Option<Sha256Digest>> {
            let f = match std::fs::File::open(&dest) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e).with_context(|| format!("reading {}", dest.display())),
            };
            let len = f.metadata()?.len();
            if size.is_some_and(|s| s != len) {
                return Ok(None);
            }
            Ok(match digest {
                Digest::Sha256(want) => {
                    let got = sha256_of_reader(f)?;
                    (got == want).then_some(got)
                }
                Digest::Sha512(want) => {
                    let mut sink = Sha512Sink(sha2::Sha512::default());
                    let (got, _) = copy_hashing(f, &mut sink)?;
                    (sha2::Digest::finalize(sink.0)[..] == want[..]).then_some(got)
                }
            })
        })
        .await?
    }

    /// A file's size by its `Content-Length` (a HEAD request), for an
    /// on-demand release of an index that lists files without their sizes
    /// (PEP 503 HTML). The size is only what `Content-Length` announces;
    /// the daemon checks the bytes against it and the index's sha256.
    pub async fn size_of(&self, url: &Url) -> Result<u64> {
        self.check_url(url)?;
        let _slot = self.slots.acquire().await.expect("never closed");
        self.retrying(url, || {
            self.within_deadline(url, async {
                let resp = ok_answer(url, self.client.head(url.clone())).await?;
                // reqwest gives a HEAD answer's length as 0 (no body);
                // the header says what a GET would send.
                resp.headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .ok_or_else(|| anyhow!("{url}: the upstream gives no Content-Length"))
            })
        })
        .await
    }

    /// A GET that must answer 200; any other status is an [`HttpStatus`].
    async fn get(&self, url: &Url, accept: Option<&str>) -> Result<reqwest::Response> {
        let mut request = self.client.get(url.clone());
        if let Some(accept) = accept {
            request = request.header(reqwest::header::ACCEPT, accept);
        }
        ok_answer(url, request).await
    }

    /// Downloads `url` to `dest` (through a temporary file, verified,
    /// fsynced, renamed) and returns its sha256.
    async fn download(
        &self,
        url: &Url,
        dest: &Path,
        digest: Digest,
        size: Option<u64>,
    ) -> Result<Sha256Digest> {
        let temp = self.tmp.join(crate::durable::temp_name("fetch"));
        // The index's size when it gives one, else the configured ceiling:
        // an upstream cannot fill the disk with a file that never ends.
        let (limit, what) = match size {
            Some(s) => (s, format!("more than the {s} bytes its index lists")),
            None => (
                self.max_download_size,
                format!(
                    "larger than sync.max_download_size ({} bytes)",
                    self.max_download_size
                ),
            ),
        };
        let too_large = || TooLarge {
            url: url.to_string(),
            what: what.clone(),
        };
        let result = self
            .within_deadline(url, async {
                let mut resp = self.get(url, None).await?;
                if resp.content_length().is_some_and(|n| n > limit) {
                    return Err(too_large().into());
                }
                let mut out = HashingWriter::new(crate::durable::create_new(&temp)?);
                let mut sha512 = matches!(digest, Digest::Sha512(_))
                    .then(|| Sha512Sink(sha2::Sha512::default()));
                while let Some(chunk) = resp
                    .chunk()
                    .await
                    .with_context(|| format!("reading {url}"))?
                {
                    if out.written() + chunk.len() as u64 > limit {
                        return Err(too_large().into());
                    }
                    out.write_all(&chunk)?;
                    if let Some(h) = &mut sha512 {
                        h.write_all(&chunk)?;
                    }
                }
                let (out, sha256, got_size) = out.finish();
                let got = match (digest, sha512) {
                    (Digest::Sha512(_), Some(h)) => {
                        let mut d = [0u8; 64];
                        d.copy_from_slice(&sha2::Digest::finalize(h.0));
                        Digest::Sha512(d)
                    }
                    _ => Digest::Sha256(sha256),
                };
                if got != digest || size.is_some_and(|s| s != got_size) {
                    return Err(anyhow!(Mismatch {
                        url: url.to_string(),
                        want: size.map_or("?".into(), |s| s.to_string()),
                        digest,
                        got_size,
                        got: got.to_string(),
                    }));
                }
                out.sync_all()?;
                std::fs::create_dir_all(dest.parent().expect("a file in the tree"))?;
                std::fs::rename(&temp, dest)?;
                self.stats.fetched_files.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .fetched_bytes
                    .fetch_add(got_size, Ordering::Relaxed);
                Ok(sha256)
            })
            .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    /// Runs `attempt` until it succeeds, retrying transient failures
    /// (connection errors, 5xx, short reads, a missed deadline) with
    /// exponential backoff; a 4xx, a hash mismatch or an oversized body is
    /// final.
    async fn retrying<T, F, Fut>(&self, url: &Url, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut tries = 0;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let final_error = e
                        .downcast_ref::<HttpStatus>()
                        .is_some_and(|s| s.status < 500)
                        || e.downcast_ref::<Mismatch>().is_some()
                        || e.downcast_ref::<TooLarge>().is_some();
                    if final_error || tries >= self.retries {
                        return Err(e);
                    }
                    tries += 1;
                    let wait = Duration::from_millis(500 * (1 << tries.min(6)));
                    tracing::warn!(%url, attempt = tries, "retrying in {wait:?}: {e:#}");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// Sends a request that must answer 200; any other status is an
/// [`HttpStatus`].
async fn ok_answer(url: &Url, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
    let resp = request
        .send()
        .await
        .with_context(|| format!("fetching {url}"))?;
    if resp.status() != StatusCode::OK {
        return Err(HttpStatus {
            url: url.to_string(),
            status: resp.status().as_u16(),
        }
        .into());
    }
    Ok(resp)
}

/// Whether an error is the upstream saying 404.
pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<HttpStatus>()
        .is_some_and(|s| s.status == 404)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_towards_the_queued_total() {
        let s = Stats::new();
        assert_eq!(s.progress().0, "listing…");
        s.queue(Some(3 << 20));
        s.queue(Some(1 << 20));
        s.queue(None);
        s.kept_files.fetch_add(1, Ordering::Relaxed);
        s.done(Some(1 << 20));
        let (line, bytes) = s.progress();
        assert_eq!(bytes, (1 << 20, 4 << 20));
        assert!(
            line.starts_with(
                "1/3 files, 1.0 MiB/4.0 MiB (0 fetched, 1 already present), 0 B/s, ETA ?"
            ),
            "{line}"
        );
    }
}

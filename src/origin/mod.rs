//! Where objects' bytes come from. Fills and uncached reads ask this module
//! to open an object at its origin, read it, and check that what they read
//! is the object they were asked for; they never touch origin paths
//! themselves.
//!
//! Every origin is a filesystem today (the shared, read-only volume), and
//! an [`Object`] is one of two things:
//!
//! - [`Object::Stored`]: an object of a release, stored in its volume's
//!   `objects/` by its sha256. What is read must have that sha256 and size,
//!   or it is an integrity failure.
//! - [`Object::Plain`]: a file of a plain tree, read where it is. It has no
//!   sha256 to check; what is read must be the size `stat` saw, and the file
//!   must still have that size and mtime afterwards, or it changed under
//!   the read.
//!
//! - [`Object::Upstream`]: a remote entry of an on-demand release, fetched
//!   from its upstream URL over HTTP(S) (see [`Upstreams`]). What is read
//!   must have the sha256 and size the release took from the upstream's
//!   verified index, exactly as a stored object.
//!
//! - [`Object::InStore`]: an object of a release on an S3 origin (see
//!   [`s3`]), read with a GET and checked exactly as a stored object.
//!
//! The metadata of volumes (release pointers, manifests, listings, the
//! `stat` of plain-tree paths) is read by `volume`, `cache::manifests` and
//! `serve::plain`, not here: this module is about objects' bytes.

use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::digest::Sha256Digest;
use crate::metrics::{FillSource, OriginError};

pub mod s3;

/// One object at its origin, and what it must turn out to be.
#[derive(Clone, Debug)]
pub enum Object {
    /// A released object, in a volume's store under its sha256; where
    /// else it may be while its volume migrates to the shared store (read
    /// when `file` is not there).
    Stored {
        file: PathBuf,
        elsewhere: Option<PathBuf>,
        sha: Sha256Digest,
        size: u64,
    },
    /// A released object on an S3 origin: `rel` is its key under the
    /// origin's prefix, `url` the same for logs.
    InStore {
        origin: Arc<s3::S3Origin>,
        rel: Arc<str>,
        url: PathBuf,
        sha: Sha256Digest,
        size: u64,
    },
    /// A plain-tree file, as `stat` saw it before the read.
    Plain {
        file: PathBuf,
        size: u64,
        mtime_ns: i128,
    },
    /// A file at an upstream: a remote entry of an on-demand release, or
    /// a file of a proxy volume.
    Upstream {
        url: Arc<str>,
        check: Check,
        size: u64,
        upstreams: Arc<Upstreams>,
    },
}

/// What an upstream file must hash to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The sha256 a release or an index page names.
    Sha256(Sha256Digest),
    /// The BLAKE2b-256 its path names (PyPI's file host).
    Blake2b([u8; 32]),
}

/// The daemon's HTTP client for upstreams, and how long it keeps trying
/// one: retries with backoff end before `daemon.origin_timeout` does, so
/// that an unreachable upstream is a clear 502, not a timeout.
#[derive(Debug)]
pub struct Upstreams {
    client: reqwest::Client,
    timeout: Duration,
}

impl Upstreams {
    /// `client` follows redirects under the sync's rules (see
    /// `crate::upstream`); `timeout` is `daemon.origin_timeout`.
    pub fn new(client: reqwest::Client, timeout: Duration) -> Upstreams {
        Upstreams { client, timeout }
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// GETs `url` until it answers 200, retrying what may pass (no
    /// connection, 5xx, 429) with doubling waits; a 404 or another 4xx is
    /// final. Gives up when the next wait would end past three quarters
    /// of the timeout.
    async fn get(&self, url: &str, size: u64) -> Result<reqwest::Response, Error> {
        let started = Instant::now();
        let budget = self.timeout.mul_f64(0.75);
        let mut wait = Duration::from_millis(100);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let last = match self.client.get(url).send().await {
                Ok(resp) => match resp.status().as_u16() {
                    200 => {
                        // Announced at once: a length other than the
                        // index's is other bytes, whatever they are.
                        if let Some(n) = resp.content_length()
                            && n != size
                        {
                            return Err(Error::new(
                                OriginError::Integrity,
                                format!(
                                    "{url}: the upstream announces {n} bytes; the release records {size}"
                                ),
                            ));
                        }
                        return Ok(resp);
                    }
                    404 | 410 => {
                        return Err(Error::new(
                            OriginError::Missing,
                            format!("{url}: the upstream answered {}", resp.status()),
                        ));
                    }
                    429 | 500..=599 => format!("answered {}", resp.status()),
                    _ => {
                        return Err(Error::new(
                            OriginError::Upstream,
                            format!("{url}: the upstream answered {}", resp.status()),
                        ));
                    }
                },
                // A certificate refused or a redirect refused will not
                // pass by retrying.
                Err(e) if crate::upstream::is_refusal(&e) => {
                    return Err(Error::new(
                        OriginError::Upstream,
                        format!("{url}: {}", crate::upstream::error_chain(&e)),
                    ));
                }
                Err(e) => crate::upstream::error_chain(&e),
            };
            if started.elapsed() + wait > budget {
                return Err(Error::new(
                    OriginError::Upstream,
                    format!(
                        "{url}: the upstream could not be reached ({attempts} attempts in {:.1} s; the last {last})",
                        started.elapsed().as_secs_f64()
                    ),
                ));
            }
            tracing::debug!(%url, attempt = attempts, "upstream {last}; retrying in {wait:?}");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }
}

/// Why the origin did not give an object: a kind from the closed set the
/// metrics count, and what happened, for the log.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: OriginError,
    pub detail: String,
}

impl Error {
    pub fn new(kind: OriginError, detail: impl Into<String>) -> Error {
        Error {
            kind,
            detail: detail.into(),
        }
    }

    /// An error of the filesystem: a missing file is `missing`, anything
    /// else `io`.
    pub fn io(e: io::Error) -> Error {
        let kind = match e.kind() {
            io::ErrorKind::NotFound => OriginError::Missing,
            _ => OriginError::Io,
        };
        Error::new(kind, e.to_string())
    }
}

impl Object {
    /// The size the object must have.
    pub fn size(&self) -> u64 {
        match self {
            Object::Stored { size, .. }
            | Object::InStore { size, .. }
            | Object::Plain { size, .. }
            | Object::Upstream { size, .. } => *size,
        }
    }

    /// Where it is read from, for logs.
    pub fn location(&self) -> &Path {
        match self {
            Object::Stored { file, .. } | Object::Plain { file, .. } => file,
            Object::InStore { url, .. } => url,
            Object::Upstream { url, .. } => Path::new(&**url),
        }
    }

    /// Where else a stored object may be (see [`Object::Stored`]).
    fn elsewhere(&self) -> Option<&Path> {
        match self {
            Object::Stored { elsewhere, .. } => elsewhere.as_deref(),
            _ => None,
        }
    }

    /// Which source it is read from, for the metrics.
    pub fn source(&self) -> FillSource {
        match self {
            Object::Stored { .. } | Object::InStore { .. } | Object::Plain { .. } => {
                FillSource::Origin
            }
            Object::Upstream { .. } => FillSource::Upstream,
        }
    }

    /// Opens it, on the runtime (fills).
    pub async fn open(&self) -> Result<Reader, Error> {
        if let Object::Upstream {
            url,
            size,
            upstreams,
            ..
        } = self
        {
            let response = upstreams.get(url, *size).await?;
            return Ok(Reader::Http {
                response,
                pending: Bytes::new(),
            });
        }
        if let Object::InStore {
            origin, rel, size, ..
        } = self
        {
            let (found, stream) = origin.open(rel).await.map_err(|e| match e {
                s3::OpenError::Missing => Error::new(OriginError::Missing, "no such object"),
                s3::OpenError::Failed(why) => Error::new(OriginError::Io, why),
            })?;
            // Another size is other bytes, whatever they are.
            if found != *size {
                return Err(Error::new(
                    OriginError::Integrity,
                    format!("the store holds {found} bytes, the release records {size}"),
                ));
            }
            return Ok(Reader::Store {
                stream,
                pending: Bytes::new(),
            });
        }
        let file = match (
            tokio::fs::File::open(self.location()).await,
            self.elsewhere(),
        ) {
            (Err(e), Some(other)) if e.kind() == io::ErrorKind::NotFound => {
                tokio::fs::File::open(other).await
            }
            (opened, _) => opened,
        };
        Ok(Reader::File(file.map_err(Error::io)?))
    }

    /// Opens it on a blocking thread (small fills, uncached reads); the
    /// reader reads from the start, in order. An upstream's response is
    /// read through the runtime, each read blocking this thread.
    pub fn open_blocking(&self) -> Result<BlockingReader, Error> {
        if let Object::Upstream { .. } | Object::InStore { .. } = self {
            let runtime = tokio::runtime::Handle::try_current()
                .map_err(|e| Error::new(OriginError::Io, e.to_string()))?;
            let reader = runtime.block_on(self.open())?;
            return Ok(BlockingReader::Http { runtime, reader });
        }
        let file = match (std::fs::File::open(self.location()), self.elsewhere()) {
            (Err(e), Some(other)) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::File::open(other)
            }
            (opened, _) => opened,
        };
        Ok(BlockingReader::File(file.map_err(Error::io)?))
    }

    /// The error for an object that ends before its size.
    pub fn ended_early(&self) -> Error {
        let kind = match self {
            Object::Stored { .. } | Object::InStore { .. } | Object::Upstream { .. } => {
                OriginError::Integrity
            }
            Object::Plain { .. } => OriginError::Changed,
        };
        Error::new(
            kind,
            format!("the file ends before its {} bytes", self.size()),
        )
    }

    /// Whether bytes read (`total` of them, hashing to `sha`, and to
    /// `blake2` when the object is checked by it) are this object; `now`
    /// is a plain file's metadata after the read.
    fn check(
        &self,
        total: u64,
        sha: &Sha256Digest,
        blake2: Option<[u8; 32]>,
        now: Option<&Metadata>,
    ) -> Result<(), Error> {
        let (expected, size) = match self {
            Object::Stored { sha, size, .. } | Object::InStore { sha, size, .. } => {
                (Check::Sha256(*sha), *size)
            }
            Object::Upstream { check, size, .. } => (*check, *size),
            Object::Plain { size, mtime_ns, .. } => {
                let same =
                    now.is_some_and(|m| m.len() == *size && crate::cache::mtime_ns(m) == *mtime_ns);
                if total != *size || !same {
                    return Err(Error::new(
                        OriginError::Changed,
                        "the file changed while it was read",
                    ));
                }
                return Ok(());
            }
        };
        let (matches, want, got) = match expected {
            Check::Sha256(want) => (
                *sha == want,
                format!("sha256 {want}"),
                format!("sha256 {sha}"),
            ),
            Check::Blake2b(want) => {
                let got = blake2.map(hex::encode).unwrap_or_default();
                (
                    blake2 == Some(want),
                    format!("BLAKE2b-256 {}", hex::encode(want)),
                    format!("BLAKE2b-256 {got}"),
                )
            }
        };
        if total != size || !matches {
            return Err(Error::new(
                OriginError::Integrity,
                format!(
                    "expected {size} bytes with {want}, read {total}{} bytes with {got}",
                    if total > size { "+" } else { "" }
                ),
            ));
        }
        Ok(())
    }
}

/// What one read of an upstream's response gathers before it returns.
const GATHER: usize = 256 << 10;

/// An object being read on the runtime.
pub enum Reader {
    File(tokio::fs::File),
    /// An upstream's response, and what is left of its last chunk.
    Http {
        response: reqwest::Response,
        pending: Bytes,
    },
    /// An object of an S3 origin, and what is left of its last chunk.
    Store {
        stream: s3::ByteStream,
        pending: Bytes,
    },
}

impl Reader {
    /// Reads the next bytes into `buf`; 0 at the end.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        match self {
            Reader::File(f) => f
                .read(buf)
                .await
                .map_err(|e| Error::new(OriginError::Io, e.to_string())),
            // A response arrives in chunks of a few KiB, and each read
            // costs its caller a write to the cache on the blocking pool:
            // gathered up to a quarter MiB (or the end) first, a 200 MiB
            // file is a thousand writes, not thirteen thousand.
            Reader::Http { .. } | Reader::Store { .. } => {
                let want = buf.len().min(GATHER);
                let mut filled = 0;
                while filled < want {
                    if self.pending().is_empty() {
                        match self.next_chunk().await? {
                            Some(chunk) => *self.pending() = chunk,
                            None => break,
                        }
                    }
                    let pending = self.pending();
                    let n = pending.len().min(buf.len() - filled);
                    buf[filled..filled + n].copy_from_slice(&pending.split_to(n));
                    filled += n;
                }
                Ok(filled)
            }
        }
    }

    /// What is left of the last chunk of a response or a stream.
    fn pending(&mut self) -> &mut Bytes {
        match self {
            Reader::Http { pending, .. } | Reader::Store { pending, .. } => pending,
            Reader::File(_) => unreachable!("a file is read straight into the buffer"),
        }
    }

    /// The next chunk of a response or a stream; `None` at its end.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        match self {
            Reader::Http { response, .. } => response.chunk().await.map_err(|e| {
                let detail = format!(
                    "{}: reading the upstream's answer: {}",
                    response.url(),
                    crate::upstream::error_chain(&e)
                );
                Error::new(OriginError::Upstream, detail)
            }),
            Reader::Store { stream, .. } => {
                use futures_util::StreamExt;
                stream
                    .next()
                    .await
                    .transpose()
                    .map_err(|e| Error::new(OriginError::Io, crate::upstream::error_chain(&e)))
            }
            Reader::File(_) => unreachable!("a file is read straight into the buffer"),
        }
    }
}

/// An object being read on a blocking thread, from its start.
pub enum BlockingReader {
    File(std::fs::File),
    /// An upstream's response, read through the runtime.
    Http {
        runtime: tokio::runtime::Handle,
        reader: Reader,
    },
}

impl io::Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BlockingReader::File(f) => f.read(buf),
            BlockingReader::Http { runtime, reader } => runtime
                .block_on(reader.read(buf))
                .map_err(|e| io::Error::other(e.detail)),
        }
    }
}

/// Hashes and counts the bytes read of one object, in order; at the end,
/// checks them against it.
#[derive(Clone, Default)]
pub struct Verifier {
    hasher: Sha256,
    /// Only for an object checked by its BLAKE2b-256.
    blake2: Option<Blake2b256>,
    total: u64,
}

type Blake2b256 = blake2::Blake2b<blake2::digest::consts::U32>;

impl Verifier {
    /// A verifier for `object`: every object is hashed with sha256 (the
    /// cache's name for it); one checked by BLAKE2b-256 with that too.
    pub fn for_object(object: &Object) -> Verifier {
        let blake2 = matches!(
            object,
            Object::Upstream {
                check: Check::Blake2b(_),
                ..
            }
        )
        .then(Blake2b256::default);
        Verifier {
            blake2,
            ..Verifier::default()
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        if let Some(b) = &mut self.blake2 {
            b.update(bytes);
        }
        self.total += bytes.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The sha256 of what was read, if it is `object`.
    pub async fn finish(self, object: &Object) -> Result<Sha256Digest, Error> {
        let now = match object {
            Object::Plain { file, .. } => tokio::fs::metadata(file).await.ok(),
            Object::Stored { .. } | Object::InStore { .. } | Object::Upstream { .. } => None,
        };
        self.finish_with(object, now.as_ref())
    }

    /// [`Verifier::finish`] on a blocking thread.
    pub fn finish_blocking(self, object: &Object) -> Result<Sha256Digest, Error> {
        let now = match object {
            Object::Plain { file, .. } => std::fs::metadata(file).ok(),
            Object::Stored { .. } | Object::InStore { .. } | Object::Upstream { .. } => None,
        };
        self.finish_with(object, now.as_ref())
    }

    fn finish_with(self, object: &Object, now: Option<&Metadata>) -> Result<Sha256Digest, Error> {
        let total = self.total;
        let blake2 = self.blake2.map(|b| b.finalize().into());
        let sha = Sha256Digest::from_hasher(self.hasher);
        object.check(total, &sha, blake2, now)?;
        Ok(sha)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn stored(dir: &Path, data: &[u8]) -> Object {
        let file = dir.join("object");
        std::fs::write(&file, data).unwrap();
        Object::Stored {
            file,
            elsewhere: None,
            sha: Sha256Digest::of(data),
            size: data.len() as u64,
        }
    }

    fn read_all(object: &Object) -> Result<Sha256Digest, Error> {
        let mut r = object.open_blocking()?;
        let mut v = Verifier::for_object(object);
        let mut buf = [0u8; 7];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            v.update(&buf[..n]);
        }
        v.finish_blocking(object)
    }

    #[test]
    fn a_stored_object_must_have_its_sha256_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let object = stored(dir.path(), b"the object's bytes");
        assert_eq!(
            read_all(&object).unwrap(),
            Sha256Digest::of(b"the object's bytes")
        );

        // Same length, other bytes; then one byte more.
        std::fs::write(object.location(), b"the object's BYTES").unwrap();
        let e = read_all(&object).unwrap_err();
        assert_eq!(e.kind, OriginError::Integrity);
        std::fs::write(object.location(), b"the object's bytes!").unwrap();
        let e = read_all(&object).unwrap_err();
        assert!(e.detail.contains("read 19+ bytes"), "{}", e.detail);
        assert_eq!(object.ended_early().kind, OriginError::Integrity);
    }

    #[test]
    fn a_plain_file_must_keep_its_size_and_mtime_through_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"plain bytes").unwrap();
        let m = std::fs::metadata(&file).unwrap();
        let object = Object::Plain {
            file: file.clone(),
            size: m.len(),
            mtime_ns: crate::cache::mtime_ns(&m),
        };
        assert!(read_all(&object).is_ok());
        // Touched to another mtime, same bytes: changed all the same.
        let later = m.modified().unwrap() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(read_all(&object).unwrap_err().kind, OriginError::Changed);
        assert_eq!(object.ended_early().kind, OriginError::Changed);
    }

    #[test]
    fn a_stored_object_is_read_from_where_else_it_may_be_while_its_volume_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let mut object = stored(dir.path(), b"moved content");
        let Object::Stored {
            file, elsewhere, ..
        } = &mut object
        else {
            unreachable!()
        };
        *elsewhere = Some(file.clone());
        *file = dir.path().join("not-yet-linked");
        assert_eq!(
            read_all(&object).unwrap(),
            Sha256Digest::of(b"moved content")
        );
        if let Object::Stored { elsewhere, .. } = &mut object {
            *elsewhere = Some(dir.path().join("nor-here"));
        }
        assert_eq!(
            object.open_blocking().err().unwrap().kind,
            OriginError::Missing
        );
    }

    #[test]
    fn a_missing_object_is_missing_and_other_failures_are_io() {
        let dir = tempfile::tempdir().unwrap();
        let gone = Object::Stored {
            file: dir.path().join("gone"),
            elsewhere: None,
            sha: Sha256Digest::of(b""),
            size: 0,
        };
        assert_eq!(
            gone.open_blocking().err().unwrap().kind,
            OriginError::Missing
        );
        // A path through a file (ENOTDIR): there, but unreadable.
        std::fs::write(dir.path().join("f"), b"").unwrap();
        let through = Object::Stored {
            file: dir.path().join("f/child"),
            elsewhere: None,
            sha: Sha256Digest::of(b""),
            size: 0,
        };
        assert_eq!(through.open_blocking().err().unwrap().kind, OriginError::Io);
    }
}

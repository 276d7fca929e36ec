//! Reading an object straight from the origin, uncached, for when the cache
//! cannot hold it: its disk is full, or a fill could not write its
//! temporary file.
//!
//! The promise is a fill's: the chunk holding a response's last byte is
//! sent only once the whole object has been read and checked (sha256 and
//! size for a release; an unchanged size and mtime for a plain tree), so a
//! wrong object always ends short of its Content-Length. A response that
//! does not start at byte 0 (a range, or a fill that gave up part way
//! through a response) first hashes the bytes before its start without
//! sending them. Nothing is coalesced: in this degraded mode every client
//! reads the origin itself, which is what the origin served before there
//! was a cache.
//!
//! Each blocking step does a bounded amount of work under the origin
//! timeout, so a stalled origin aborts the response instead of hanging it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::fill::{FillRequest, WaitError, check};
use super::{Cache, ObjectKey};
use crate::digest::Sha256Digest;
use crate::metrics::{Metrics, OriginError};

/// Bytes read from the origin per blocking step.
const STEP: usize = 1 << 20;

/// One response's reader of one origin file.
pub struct Direct {
    req: FillRequest,
    timeout: Duration,
    metrics: Arc<Metrics>,
    /// `None` once a step failed or timed out (the blocking task kept it).
    state: Option<State>,
}

struct State {
    file: Option<Arc<File>>,
    hasher: Sha256,
    /// Bytes hashed from the start of the object.
    hashed: u64,
    /// The response's last chunk, read and waiting for the check.
    last: Option<Vec<u8>>,
}

/// What one blocking step achieved.
enum Step {
    /// Hashed bytes that are not sent; step again.
    More,
    /// The next bytes to send.
    Data(Vec<u8>),
}

type StepError = (OriginError, String);

impl Direct {
    pub fn new(cache: &Cache, req: FillRequest) -> Direct {
        Direct {
            req,
            timeout: cache.settings.origin_timeout,
            metrics: cache.metrics.clone(),
            state: Some(State {
                file: None,
                hasher: Sha256::new(),
                hashed: 0,
                last: None,
            }),
        }
    }

    /// Opens the origin file, so that a missing or hung one can still
    /// become an error status before the response starts.
    pub async fn open(&mut self) -> Result<(), WaitError> {
        self.run(|req, st| st.file(req).map(|_| Step::More)).await?;
        Ok(())
    }

    /// Up to `max` bytes at `pos` of a response that ends at `end`; the
    /// chunk holding its last byte only once the whole object is checked.
    pub async fn read(&mut self, pos: u64, end: u64, max: usize) -> Result<Bytes, WaitError> {
        if pos >= end {
            return Ok(Bytes::new());
        }
        loop {
            let step = self.run(move |req, st| st.step(req, pos, end, max)).await?;
            if let Step::Data(b) = step {
                return Ok(Bytes::from(b));
            }
        }
    }

    /// Runs one step on the blocking pool under the origin timeout;
    /// failures are counted and logged like a fill's.
    async fn run(
        &mut self,
        f: impl FnOnce(&FillRequest, &mut State) -> Result<Step, StepError> + Send + 'static,
    ) -> Result<Step, WaitError> {
        let Some(mut state) = self.state.take() else {
            return Err(WaitError::Abandoned);
        };
        let req = self.req.clone();
        let origin_bytes = self
            .metrics
            .origin_read_bytes
            .with_label_values(&[&self.req.volume]);
        let job = tokio::task::spawn_blocking(move || {
            let before = state.hashed;
            let r = f(&req, &mut state);
            origin_bytes.inc_by(state.hashed - before);
            (state, r)
        });
        let failure = match tokio::time::timeout(self.timeout, job).await {
            Ok(Ok((state, Ok(step)))) => {
                self.state = Some(state);
                return Ok(step);
            }
            Ok(Ok((_, Err(e)))) => e,
            Ok(Err(e)) => (OriginError::Io, e.to_string()),
            Err(_) => (
                OriginError::Timeout,
                format!("no data for {}", humantime::format_duration(self.timeout)),
            ),
        };
        let (kind, msg) = failure;
        self.metrics
            .origin_errors
            .with_label_values(&[&self.req.volume, kind.as_str()])
            .inc();
        if kind == OriginError::Integrity {
            self.metrics
                .integrity_failures
                .with_label_values(&["origin"])
                .inc();
        }
        tracing::error!(volume = %self.req.volume, origin = %self.req.origin.display(), kind = kind.as_str(), "uncached origin read failed: {msg}");
        Err(WaitError::Failed(kind))
    }
}

impl State {
    fn file(&mut self, req: &FillRequest) -> Result<Arc<File>, StepError> {
        if let Some(f) = &self.file {
            return Ok(f.clone());
        }
        let f = File::open(&req.origin).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound {
                OriginError::Missing
            } else {
                OriginError::Io
            };
            (kind, e.to_string())
        })?;
        let f = Arc::new(f);
        self.file = Some(f.clone());
        Ok(f)
    }

    fn step(
        &mut self,
        req: &FillRequest,
        pos: u64,
        end: u64,
        max: usize,
    ) -> Result<Step, StepError> {
        let file = self.file(req)?;
        if self.last.is_none() {
            if self.hashed < pos {
                // What precedes the response, hashed and not sent.
                let n = ((pos - self.hashed) as usize).min(STEP);
                let buf = self.read_exact(req, &file, n)?;
                drop(buf);
                return Ok(Step::More);
            }
            debug_assert_eq!(self.hashed, pos, "responses are read in order");
            let n = ((end - pos) as usize).min(max);
            let buf = self.read_exact(req, &file, n)?;
            if pos + (n as u64) < end {
                return Ok(Step::Data(buf));
            }
            self.last = Some(buf);
        }
        // The rest of the object up to its end (reading one byte past it
        // tells a grown file), then the check.
        let mut buf = vec![0u8; STEP];
        let n = file
            .read_at(&mut buf, self.hashed)
            .map_err(|e| (OriginError::Io, e.to_string()))?;
        if n > 0 && self.hashed <= req.size {
            self.hasher.update(&buf[..n]);
            self.hashed += n as u64;
            if self.hashed <= req.size {
                return Ok(Step::More);
            }
        }
        let sha = Sha256Digest(self.hasher.clone().finalize().into());
        let now = match req.key {
            ObjectKey::Plain { .. } => std::fs::metadata(&req.origin).ok(),
            ObjectKey::Content(_) => None,
        };
        check(req, self.hashed, &sha, now.as_ref())?;
        Ok(Step::Data(self.last.take().expect("set above")))
    }

    /// Reads and hashes the next `n` bytes; a file that ends first fails
    /// the check it would fail at its end.
    fn read_exact(
        &mut self,
        req: &FillRequest,
        file: &File,
        n: usize,
    ) -> Result<Vec<u8>, StepError> {
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, self.hashed).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                let kind = match req.key {
                    ObjectKey::Content(_) => OriginError::Integrity,
                    ObjectKey::Plain { .. } => OriginError::Changed,
                };
                (kind, format!("the file ends before its {} bytes", req.size))
            } else {
                (OriginError::Io, e.to_string())
            }
        })?;
        self.hasher.update(&buf);
        self.hashed += n as u64;
        Ok(buf)
    }
}

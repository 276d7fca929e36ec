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

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::Cache;
use super::fill::{FillRequest, WaitError};
use crate::metrics::{Metrics, OriginError, Tier};
use crate::origin;

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
    /// Opened by the first step; read in order from the start.
    reader: Option<origin::BlockingReader>,
    /// What was read so far, hashed.
    verifier: origin::Verifier,
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

type StepError = origin::Error;

impl Direct {
    pub fn new(cache: &Cache, req: FillRequest) -> Direct {
        let verifier = origin::Verifier::for_object(&req.origin);
        Direct {
            req,
            timeout: cache.settings.origin_timeout,
            metrics: cache.metrics.clone(),
            state: Some(State {
                reader: None,
                verifier,
                last: None,
            }),
        }
    }

    /// Opens the origin file, so that a missing or hung one can still
    /// become an error status before the response starts.
    pub async fn open(&mut self) -> Result<(), WaitError> {
        self.run(|req, st| st.reader(req).map(|_| Step::More))
            .await?;
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
            .read_bytes(&self.req.volume, self.req.origin.source());
        let job = tokio::task::spawn_blocking(move || {
            let before = state.verifier.total();
            let r = f(&req, &mut state);
            origin_bytes.inc_by(state.verifier.total() - before);
            (state, r)
        });
        let failure = match tokio::time::timeout(self.timeout, job).await {
            Ok(Ok((state, Ok(step)))) => {
                self.state = Some(state);
                return Ok(step);
            }
            Ok(Ok((_, Err(e)))) => e,
            Ok(Err(e)) => origin::Error::new(OriginError::Io, e.to_string()),
            Err(_) => origin::Error::new(
                OriginError::Timeout,
                format!("no data for {}", humantime::format_duration(self.timeout)),
            ),
        };
        let (kind, msg) = (failure.kind, failure.detail);
        self.metrics
            .origin_errors
            .with_label_values(&[&self.req.volume, kind.as_str()])
            .inc();
        if kind == OriginError::Integrity {
            self.metrics.integrity_failures(Tier::Origin).inc();
        }
        tracing::error!(volume = %self.req.volume, origin = %self.req.origin.location().display(), kind = kind.as_str(), "uncached origin read failed: {msg}");
        Err(WaitError::Failed(kind))
    }
}

impl State {
    fn reader(&mut self, req: &FillRequest) -> Result<&mut origin::BlockingReader, StepError> {
        if self.reader.is_none() {
            self.reader = Some(req.origin.open_blocking()?);
        }
        Ok(self.reader.as_mut().expect("opened above"))
    }

    fn step(
        &mut self,
        req: &FillRequest,
        pos: u64,
        end: u64,
        max: usize,
    ) -> Result<Step, StepError> {
        if self.last.is_none() {
            let hashed = self.verifier.total();
            if hashed < pos {
                // What precedes the response, hashed and not sent.
                let n = ((pos - hashed) as usize).min(STEP);
                self.read_exact(req, n)?;
                return Ok(Step::More);
            }
            debug_assert_eq!(hashed, pos, "responses are read in order");
            let n = ((end - pos) as usize).min(max);
            let buf = self.read_exact(req, n)?;
            if pos + (n as u64) < end {
                return Ok(Step::Data(buf));
            }
            self.last = Some(buf);
        }
        // The rest of the object up to its end (reading one byte past it
        // tells a grown file), then the check.
        let mut buf = vec![0u8; STEP];
        let n = self
            .reader(req)?
            .read(&mut buf)
            .map_err(|e| origin::Error::new(OriginError::Io, e.to_string()))?;
        if n > 0 && self.verifier.total() <= req.size() {
            self.verifier.update(&buf[..n]);
            if self.verifier.total() <= req.size() {
                return Ok(Step::More);
            }
        }
        self.verifier.clone().finish_blocking(&req.origin)?;
        Ok(Step::Data(self.last.take().expect("set above")))
    }

    /// Reads and hashes the next `n` bytes; a file that ends first fails
    /// the check it would fail at its end.
    fn read_exact(&mut self, req: &FillRequest, n: usize) -> Result<Vec<u8>, StepError> {
        let mut buf = vec![0u8; n];
        self.reader(req)?.read_exact(&mut buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                req.origin.ended_early()
            } else {
                origin::Error::new(OriginError::Io, e.to_string())
            }
        })?;
        self.verifier.update(&buf);
        Ok(buf)
    }
}

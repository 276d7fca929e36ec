//! The one response body type and its constructors, and the wrapper that
//! counts what was sent and writes the access log line when a response
//! ends.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::cache::fill::Fill;
use crate::metrics::{Metrics, Outcome, Tier, status_class};

/// A boxed stream of bytes that may end in an I/O error; an error aborts
/// the response (the client sees it cut short) rather than completing it.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// Bytes read per chunk from a file or a fill.
const CHUNK: usize = 256 * 1024;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn bytes(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// `len` bytes of a cached file from `start`.
pub fn file(file: Arc<File>, start: u64, len: u64) -> Body {
    chunks(start, start + len, move |pos, max| {
        let file = file.clone();
        async move {
            let buf = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; max];
                file.read_exact_at(&mut buf, pos).map(|()| buf)
            })
            .await
            .map_err(std::io::Error::other)??;
            Ok(Bytes::from(buf))
        }
    })
}

/// `len` bytes of an object being filled, from `start`, as they arrive.
pub fn fill(fill: Arc<Fill>, start: u64, len: u64) -> Body {
    let end = start + len;
    chunks(start, end, move |pos, max| {
        let fill = fill.clone();
        async move {
            fill.read(pos, end, max)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
        }
    })
}

/// A body read in chunks from `start` to `end` by `read(pos, max)`, which
/// returns between 1 and `max` bytes.
fn chunks<F, Fut>(start: u64, end: u64, read: F) -> Body
where
    F: FnMut(u64, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = std::io::Result<Bytes>> + Send + 'static,
{
    let stream = futures_util::stream::unfold(
        (start, read, false),
        move |(pos, mut read, failed)| async move {
            if pos >= end || failed {
                return None;
            }
            let max = ((end - pos) as usize).min(CHUNK);
            match read(pos, max).await {
                Ok(b) if b.is_empty() => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the object is shorter than its size",
                    )),
                    (pos, read, true),
                )),
                Ok(b) => {
                    let next = pos + b.len() as u64;
                    Some((Ok(Frame::data(b)), (next, read, false)))
                }
                Err(e) => Some((Err(e), (pos, read, true))),
            }
        },
    );
    BodyExt::boxed_unsync(StreamBody::new(stream))
}

/// What the access log and the metrics need to know about one response.
pub struct Access {
    pub metrics: Arc<Metrics>,
    pub started: Instant,
    pub peer: std::net::SocketAddr,
    pub method: hyper::Method,
    pub path: String,
    pub volume: Arc<str>,
    pub status: u16,
    pub outcome: Outcome,
    pub tier: Tier,
    pub release: Option<u64>,
}

/// A body that counts the bytes it yields and, when it is dropped (the
/// response ended, completely or not), logs the request and counts it.
pub struct Metered {
    inner: Body,
    sent: u64,
    failed: bool,
    ended: bool,
    /// The body's length, when known (hyper stops polling at it).
    length: Option<u64>,
    access: Access,
}

impl Metered {
    pub fn new(inner: Body, access: Access, length: Option<u64>) -> Metered {
        Metered {
            length,
            inner,
            sent: 0,
            failed: false,
            ended: false,
            access,
        }
    }
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.sent += d.len() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => self.failed = true,
            Poll::Ready(None) => self.ended = true,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        let a = &self.access;
        let complete = !self.failed
            && (self.ended || self.inner.is_end_stream() || Some(self.sent) == self.length);
        a.metrics
            .requests
            .with_label_values(&[&a.volume, a.outcome.as_str(), status_class(a.status)])
            .inc();
        if self.sent > 0 {
            a.metrics
                .bytes_served
                .with_label_values(&[&a.volume, a.tier.as_str()])
                .inc_by(self.sent);
        }
        tracing::info!(
            target: "access",
            peer = %a.peer,
            method = %a.method,
            path = %a.path,
            volume = %a.volume,
            status = a.status,
            bytes = self.sent,
            tier = a.tier.as_str(),
            outcome = a.outcome.as_str(),
            release = a.release,
            complete,
            micros = a.started.elapsed().as_micros() as u64,
            "request"
        );
    }
}

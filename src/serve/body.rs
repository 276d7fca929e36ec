//! The one response body type and its constructors, and the wrapper that
//! counts what was sent and writes the access log line when a response
//! ends.

use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::cache::Cache;
use crate::cache::direct::Direct;
use crate::cache::disk::OpenEntry;
use crate::cache::fill::{Fill, WaitError};
use crate::metrics::{Outcome, Served, Tier};

/// A response body. Most answers are one buffer (a memory or small disk
/// hit, a page, an error) or nothing; those skip the box and the dynamic
/// calls a stream costs. Files and fills are streams of chunks. A stream
/// that ends in an I/O error aborts the response (the client sees it cut
/// short) rather than completing it.
pub struct Body(Inner);

enum Inner {
    /// The whole body, until it is sent.
    Full(Option<Bytes>),
    Stream(UnsyncBoxBody<Bytes, std::io::Error>),
}

type UnsyncBoxBody<D, E> = http_body_util::combinators::UnsyncBoxBody<D, E>;

/// Bytes read per chunk from a file or a fill.
const CHUNK: usize = 256 * 1024;

pub fn empty() -> Body {
    Body(Inner::Full(None))
}

pub fn bytes(b: impl Into<Bytes>) -> Body {
    let b = b.into();
    Body(Inner::Full((!b.is_empty()).then_some(b)))
}

fn stream<S>(s: S) -> Body
where
    S: futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + 'static,
{
    Body(Inner::Stream(BodyExt::boxed_unsync(StreamBody::new(s))))
}

impl Body {
    /// Whether the body tells its exact length (one buffer, or nothing),
    /// from which hyper writes the Content-Length.
    pub fn is_sized(&self) -> bool {
        matches!(self.0, Inner::Full(_))
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match &mut self.get_mut().0 {
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Stream(s) => Pin::new(s).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Full(b) => b.is_none(),
            Inner::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Stream(s) => s.size_hint(),
        }
    }
}

/// `len` bytes of a cached file from `start`.
///
/// The file is sent from its mapping, so the bytes are copied once (into
/// the socket) instead of twice, and no blocking-pool hop is needed per
/// chunk. The mapping is the kept entry's (`OpenEntry::mapped`), made once:
/// a hot entry's pages are already mapped when it is sent again. Cache
/// files are never changed once committed (a commit renames a complete
/// file in; eviction unlinks it, and a mapping outlives the unlink), so
/// the mapping stays valid. Each chunk asks the kernel to read the next
/// one ahead, so a cold file does not stall the writer on every page. If
/// the file cannot be mapped it is read in chunks instead.
pub fn file(entry: Arc<OpenEntry>, start: u64, len: u64) -> Body {
    let map = match entry.mapped() {
        Some(map) if map.len() as u64 >= start + len => map.clone(),
        _ => return read_in_chunks(entry, start, len),
    };
    let (start, end) = (start as usize, (start + len) as usize);
    let stream = futures_util::stream::unfold(start, move |pos| {
        let map = map.clone();
        async move {
            if pos >= end {
                return None;
            }
            let next = (pos + MAPPED_CHUNK).min(end);
            if next < end {
                // A hint; the bytes are right either way.
                let _ = map.advise_range(
                    memmap2::Advice::WillNeed,
                    next,
                    (end - next).min(MAPPED_CHUNK),
                );
            }
            let chunk = crate::cache::mapped_bytes(&map, pos..next);
            Some((Ok(Frame::data(chunk)), next))
        }
    });
    self::stream(stream)
}

/// Bytes per frame of a mapped file: large, so that hyper hands the kernel
/// big writes.
const MAPPED_CHUNK: usize = 1 << 20;

/// `len` bytes of a file from `start`, read chunk by chunk on the blocking
/// pool.
fn read_in_chunks(entry: Arc<OpenEntry>, start: u64, len: u64) -> Body {
    chunks(start, start + len, move |pos, max| {
        let entry = entry.clone();
        async move {
            let buf = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; max];
                entry.file().read_exact_at(&mut buf, pos).map(|()| buf)
            })
            .await
            .map_err(std::io::Error::other)??;
            Ok(Bytes::from(buf))
        }
    })
}

/// `len` bytes of an object being filled, from `start`, as they arrive.
/// If the fill finds it cannot cache the object, the rest of the response
/// is read straight from the origin.
pub fn fill(cache: Arc<Cache>, fill: Arc<Fill>, start: u64, len: u64) -> Body {
    filled(Feed::Fill(cache, fill), start, len)
}

/// `len` bytes of an object from `start`, read straight from the origin.
pub fn direct(direct: Direct, start: u64, len: u64) -> Body {
    filled(Feed::Origin(Box::new(direct)), start, len)
}

/// Where [`filled`] reads.
enum Feed {
    Fill(Arc<Cache>, Arc<Fill>),
    Origin(Box<Direct>),
}

fn filled(feed: Feed, start: u64, len: u64) -> Body {
    let end = start + len;
    let stream = futures_util::stream::unfold((start, Some(feed)), move |(pos, feed)| async move {
        let mut feed = feed?;
        if pos >= end {
            return None;
        }
        let max = ((end - pos) as usize).min(MAPPED_CHUNK);
        let read = loop {
            let read = match &mut feed {
                Feed::Fill(_, fill) => fill.read(pos, end, max).await,
                Feed::Origin(direct) => direct.read(pos, end, max).await,
            };
            match (read, &feed) {
                (Err(WaitError::Uncached), Feed::Fill(cache, fill)) => {
                    feed = Feed::Origin(Box::new(Direct::new(cache, fill.request.clone())));
                }
                (read, _) => break read,
            }
        };
        Some(match read {
            Ok(b) if !b.is_empty() => {
                let next = pos + b.len() as u64;
                (Ok(Frame::data(b)), (next, Some(feed)))
            }
            Ok(_) => (
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the object is shorter than its size",
                )),
                (pos, None),
            ),
            Err(e) => (Err(std::io::Error::other(e.to_string())), (pos, None)),
        })
    });
    self::stream(stream)
}

/// A body read in chunks from `start` to `end` by `read(pos, max)`, which
/// returns between 1 and `max` bytes.
fn chunks<F, Fut>(start: u64, end: u64, read: F) -> Body
where
    F: FnMut(u64, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = std::io::Result<Bytes>> + Send + 'static,
{
    chunks_of(CHUNK, start, end, read)
}

/// [`chunks`] with at most `chunk` bytes per read.
fn chunks_of<F, Fut>(chunk: usize, start: u64, end: u64, read: F) -> Body
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
            let max = ((end - pos) as usize).min(chunk);
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
    self::stream(stream)
}

/// What the access log and the metrics need to know about one response.
pub struct Access {
    pub started: Instant,
    pub peer: std::net::SocketAddr,
    pub method: hyper::Method,
    pub path: String,
    /// The volume's counters, and its name.
    pub volume: Arc<Served>,
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
        a.volume.request(a.outcome, a.status);
        if self.sent > 0 {
            a.volume.bytes(a.tier, self.sent);
        }
        super::log::access(&super::log::AccessLine {
            peer: a.peer,
            method: a.method.as_str(),
            path: &a.path,
            volume: &a.volume.volume,
            status: a.status,
            bytes: self.sent,
            tier: a.tier.as_str(),
            outcome: a.outcome.as_str(),
            release: a.release,
            complete,
            micros: a.started.elapsed().as_micros() as u64,
        });
    }
}

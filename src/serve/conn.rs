//! Listeners and connections: HTTP/1.1 and HTTP/2 (cleartext, or over TLS
//! by ALPN) through hyper-util's auto builder, with the limits a public
//! mirror needs and a graceful stop.
//!
//! Limits, and why each is here rather than in hyper:
//! - **Connections**: a semaphore; at the limit, new connections wait in
//!   the kernel's listen backlog instead of exhausting file descriptors.
//! - **Connections per client address**: counted per IP; a connection
//!   beyond `max_connections_per_ip` is closed as soon as it is accepted
//!   (it cannot be left in the backlog without holding back everyone's).
//! - **First byte**: hyper's header read timeout starts only once hyper-util
//!   has read enough to tell HTTP/1 from HTTP/2, so a socket that sends
//!   nothing would never be timed. Each connection first waits (a `peek`)
//!   at most `first_byte_timeout` for a byte, before TLS or hyper.
//! - **Header read timeout**: hyper's own, which needs a timer; it also
//!   closes idle keep-alive connections. The timer (`timer`) keeps one
//!   tokio sleep per connection instead of one per request. A connection
//!   whose first bytes leave the protocol undecided (a partial HTTP/2
//!   preface) gets as long, timed by the connection's task.
//! - **HTTP/2**: hyper's keep-alive PINGs (off by default) close a
//!   connection whose peer stops answering; the connection's task closes
//!   one with no open stream for `http2_idle_timeout` (GOAWAY, then a
//!   bounded wait), which hyper has no setting for.
//! - **Write timeout**: hyper has none, so a client that stops reading
//!   would hold its connection (and a fill's reader) forever. The socket is
//!   wrapped so that a write making no progress for the timeout fails. On
//!   HTTP/2 a client can instead keep a stream's flow-control window shut:
//!   the socket is idle, not blocked. So a response body that handed hyper
//!   a frame and is not asked for the next one counts as waiting on the
//!   client, and while one waits, the socket must take some bytes every
//!   `write_timeout` or the connection is closed (`Tracked`, `Watch`).
//! - **TLS handshake timeout**: the handshake runs inside the connection's
//!   task, under a timeout, so a slow handshake never blocks accepting.
//! - **URL length**: checked per request (`respond`), 414.
//! - **Bare LF**: httparse accepts a lone `\n` as a line end, which a proxy
//!   in front may read differently (request smuggling). On HTTP/1
//!   connections a lone `\n` is turned into a NUL byte before hyper parses
//!   it, so the request fails to parse and gets a 400. HTTP/2 (by its
//!   preface) is binary and left alone. Request bodies, and with them
//!   Content-Length/Transfer-Encoding conflicts, are refused in `respond`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::body::Metered;
use super::daemon::Daemon;
use super::respond;
use super::timer::ConnectionTimer;
use crate::config::DaemonSettings;

/// Connection limits, shared by all listeners.
pub struct Limits {
    connections: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
    first_byte_timeout: Duration,
    header_read_timeout: Duration,
    write_timeout: Duration,
    handshake_timeout: Duration,
    h2_keep_alive_interval: Duration,
    h2_keep_alive_timeout: Duration,
    h2_idle_timeout: Duration,
}

impl Limits {
    pub fn new(s: &DaemonSettings) -> Limits {
        Limits {
            connections: Arc::new(Semaphore::new(s.max_connections)),
            per_ip: Arc::new(PerIp {
                max: s.max_connections_per_ip,
                held: Mutex::new(HashMap::new()),
            }),
            first_byte_timeout: s.first_byte_timeout,
            header_read_timeout: s.header_read_timeout,
            write_timeout: s.write_timeout,
            handshake_timeout: s
                .tls
                .as_ref()
                .map_or(Duration::from_secs(10), |t| t.handshake_timeout),
            h2_keep_alive_interval: s.http2_keep_alive_interval,
            h2_keep_alive_timeout: s.http2_keep_alive_timeout,
            h2_idle_timeout: s.http2_idle_timeout,
        }
    }
}

/// Connections held per client address.
struct PerIp {
    max: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    /// A slot for one more connection from `ip`, unless it holds `max`.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        // An IPv4 client on a dual-stack listener arrives as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            per_ip: self.clone(),
            ip,
        })
    }
}

/// One connection's share of its address's limit, given back on drop.
struct IpSlot {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut held = self.per_ip.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // Only addresses with a connection open take memory.
                held.remove(&self.ip);
            }
        }
    }
}

/// Why the daemon closed a connection itself (the metric's label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClosedBecause {
    /// Over `max_connections_per_ip`.
    PerIp,
    /// Nothing arrived within `first_byte_timeout`.
    FirstByte,
    /// No request, or no HTTP/2 stream, in time.
    Idle,
    /// An HTTP/2 response the client took nothing of for `write_timeout`.
    Stalled,
}

impl ClosedBecause {
    fn as_str(self) -> &'static str {
        match self {
            ClosedBecause::PerIp => "per_ip",
            ClosedBecause::FirstByte => "first_byte",
            ClosedBecause::Idle => "idle",
            ClosedBecause::Stalled => "stalled",
        }
    }
}

/// Everything one listener needs.
#[derive(Clone)]
pub struct Server {
    pub daemon: Arc<Daemon>,
    pub limits: Arc<Limits>,
    /// Connections in flight, so a stop can wait for them.
    pub tracker: TaskTracker,
    /// Becomes `true` when the daemon stops.
    pub stopping: watch::Receiver<bool>,
}

impl Server {
    /// Accepts connections until the daemon stops; with `tls`, each one
    /// starts with a TLS handshake.
    pub async fn run(self, listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
        let mut stopping = self.stopping.clone();
        loop {
            let permit = tokio::select! {
                p = self.limits.connections.clone().acquire_owned() => p.expect("never closed"),
                () = stopped(&mut stopping) => return,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: do not spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = stopped(&mut stopping) => return,
            };
            // Closed at once rather than left in the backlog: waiting there
            // would hold back every other client's connections too.
            let Some(ip_slot) = self.limits.per_ip.take(peer.ip()) else {
                self.closed(peer, ClosedBecause::PerIp);
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            let tls = tls.clone();
            self.tracker.spawn(async move {
                let _permit = permit;
                let _ip_slot = ip_slot;
                if !server.first_byte(&stream, peer).await {
                    return;
                }
                match tls {
                    None => server.connection(stream, peer).await,
                    Some(acceptor) => {
                        let timeout = server.limits.handshake_timeout;
                        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => server.connection(s, peer).await,
                            Ok(Err(e)) => tracing::info!(%peer, "TLS handshake failed: {e}"),
                            Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            });
        }
    }

    /// Logs and counts a connection the daemon closes itself.
    fn closed(&self, peer: SocketAddr, why: ClosedBecause) {
        self.daemon
            .metrics
            .connections_closed
            .with_label_values(&[why.as_str()])
            .inc();
        let reason = match why {
            ClosedBecause::PerIp => "the address holds daemon.max_connections_per_ip connections",
            ClosedBecause::FirstByte => "nothing sent within daemon.first_byte_timeout",
            ClosedBecause::Idle => {
                "no request in time (daemon.header_read_timeout, or daemon.http2_idle_timeout)"
            }
            ClosedBecause::Stalled => {
                "an HTTP/2 response made no progress for daemon.write_timeout"
            }
        };
        if why == ClosedBecause::Idle {
            // Housekeeping, as hyper closing an idle HTTP/1 connection is.
            tracing::debug!(%peer, reason = why.as_str(), "connection closed: {reason}");
        } else {
            tracing::info!(%peer, reason = why.as_str(), "connection closed: {reason}");
        }
    }

    /// Waits up to `first_byte_timeout` for the client's first byte, before
    /// TLS or hyper look at the connection: hyper's header read timeout
    /// starts only once it has told HTTP/1 from HTTP/2, so a socket that
    /// sends nothing would otherwise hold its slot forever. `false` when
    /// the connection should be dropped.
    async fn first_byte(&self, stream: &TcpStream, peer: SocketAddr) -> bool {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(self.limits.first_byte_timeout, stream.peek(&mut byte)).await {
            Ok(Ok(n)) => n > 0, // 0: closed without a word
            Ok(Err(e)) => {
                tracing::debug!(%peer, "connection ended before its first byte: {e}");
                false
            }
            Err(_) => {
                self.closed(peer, ClosedBecause::FirstByte);
                false
            }
        }
    }

    async fn connection<I>(&self, io: I, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(WriteTimeout::new(
            StrictLines::new(io, activity.clone()),
            self.limits.write_timeout,
            activity.clone(),
        ));
        let daemon = self.daemon.clone();
        let streams = activity.clone();
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let daemon = daemon.clone();
            // HTTP/2 streams are counted, for the idle and stall checks;
            // HTTP/1 has hyper's header read timeout and the socket's write
            // timeout, and is left without the bookkeeping.
            let stream = (req.version() == hyper::Version::HTTP_2).then(|| streams.opened());
            async move {
                let response = respond::handle(&daemon, req, peer).await;
                Ok::<_, Infallible>(response.map(|body| Tracked {
                    inner: body,
                    stream,
                }))
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(ConnectionTimer::default())
            .header_read_timeout(self.limits.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.limits.h2_keep_alive_interval)
            .keep_alive_timeout(self.limits.h2_keep_alive_timeout);
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let mut stopping = self.stopping.clone();
        let mut watch = Watch::new();
        let result = loop {
            let deadline = match watch.next(&activity, &self.limits, Instant::now()) {
                Next::At(t) => Some(t),
                Next::Never => None,
                Next::Close(why) => {
                    self.closed(peer, why);
                    if why == ClosedBecause::Idle && activity.protocol() == Protocol::Http2 {
                        // GOAWAY first, so a well-behaved client knows
                        // not to start a stream; only as long as it takes
                        // to write it (a silent client answers nothing).
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(GOAWAY_GRACE, conn.as_mut()).await;
                    }
                    return;
                }
            };
            tokio::select! {
                // The connection first: it is what wakes the task nearly
                // every time.
                biased;
                r = conn.as_mut() => break r,
                () = stopped(&mut stopping) => {
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                    break conn.await
                }
                () = activity.changed.notified() => {}
                () = sleep_until(deadline) => {}
            }
        };
        if let Err(e) = result {
            // hyper answered a request it could not parse with a 400 (see
            // `StrictLines`); worth a line, unlike a client going away.
            match e.downcast_ref::<hyper::Error>() {
                Some(h) if h.is_parse() || h.is_parse_too_large() => {
                    tracing::info!(%peer, "refused a malformed request: {e}");
                }
                _ => tracing::debug!(%peer, "connection ended: {e}"),
            }
        }
    }
}

/// How long an idle HTTP/2 connection being closed gets to send its
/// GOAWAY (hyper's graceful shutdown would wait for the PING it sends
/// with it to be answered, which a hostile client never does).
const GOAWAY_GRACE: Duration = Duration::from_millis(200);

/// Completes once the daemon is stopping.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// What a connection's protocol turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    /// Not decided yet (fewer bytes than `PRI ` seen).
    Unknown = 0,
    Http1 = 1,
    Http2 = 2,
}

/// What the connection's task watches besides hyper: the HTTP/2 streams
/// open, responses waiting on the client, and socket writes.
struct Activity {
    /// Streams open and since when none has been, to close an idle
    /// HTTP/2 connection.
    streams: Mutex<Streams>,
    /// Responses whose last frame hyper has not yet passed to the client:
    /// one whose flow-control window the client keeps shut stays here.
    waiting: AtomicUsize,
    /// Socket writes that made progress, the sign that the client takes
    /// what it is sent.
    writes: AtomicU64,
    /// A `Protocol`, set by `StrictLines`.
    protocol: AtomicU8,
    /// Wakes the connection's task when the first stream opens or the last
    /// one closes.
    changed: Notify,
}

struct Streams {
    open: usize,
    idle_since: Instant,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            streams: Mutex::new(Streams {
                open: 0,
                idle_since: Instant::now(),
            }),
            waiting: AtomicUsize::new(0),
            writes: AtomicU64::new(0),
            protocol: AtomicU8::new(Protocol::Unknown as u8),
            changed: Notify::new(),
        }
    }

    fn protocol(&self) -> Protocol {
        match self.protocol.load(Ordering::Relaxed) {
            1 => Protocol::Http1,
            2 => Protocol::Http2,
            _ => Protocol::Unknown,
        }
    }

    /// Counts a stream open until the returned guard is dropped (with the
    /// response body, or the request if it never got one).
    fn opened(self: &Arc<Self>) -> StreamGuard {
        let mut s = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        s.open += 1;
        if s.open == 1 {
            self.changed.notify_one();
        }
        StreamGuard {
            activity: self.clone(),
            waiting: false,
        }
    }
}

/// One open HTTP/2 stream.
struct StreamGuard {
    activity: Arc<Activity>,
    /// Its body gave hyper a frame and has not been asked for the next.
    waiting: bool,
}

impl StreamGuard {
    fn set_waiting(&mut self, waiting: bool) {
        if waiting != self.waiting {
            self.waiting = waiting;
            if waiting {
                self.activity.waiting.fetch_add(1, Ordering::Relaxed);
            } else {
                self.activity.waiting.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.set_waiting(false);
        let mut s = self
            .activity
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        s.open -= 1;
        if s.open == 0 {
            s.idle_since = Instant::now();
            self.activity.changed.notify_one();
        }
    }
}

/// A response body and, on HTTP/2, its stream's guard.
///
/// HTTP/2 flow control stalls a stream without blocking the socket, so the
/// socket's write timeout never sees a client that keeps a stream's window
/// shut. hyper asks a body for its next frame only once the previous one
/// fitted in the window; a frame handed over and not followed by another
/// request is a response waiting on the client, which the connection's
/// task times (see `Watch`).
pub struct Tracked {
    inner: Metered,
    stream: Option<StreamGuard>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Some(stream) = &mut this.stream {
            let handed = matches!(&polled, Poll::Ready(Some(Ok(f))) if f.is_data());
            stream.set_waiting(handed);
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

/// What the connection's task does next about its own deadlines.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Look again at this time (or when woken).
    At(Instant),
    /// Nothing to time (HTTP/1: hyper and the socket's timeouts do it).
    Never,
    Close(ClosedBecause),
}

/// The connection task's view of its deadlines between two looks.
struct Watch {
    /// When it started looking: an undecided protocol is timed from here.
    started: Instant,
    /// While a response waits on the client: the socket writes counted
    /// when it was last seen making progress, and when.
    stall: Option<(u64, Instant)>,
}

impl Watch {
    fn new() -> Watch {
        Watch {
            started: Instant::now(),
            stall: None,
        }
    }

    fn next(&mut self, activity: &Activity, limits: &Limits, now: Instant) -> Next {
        match activity.protocol() {
            Protocol::Http1 => Next::Never,
            // A partial HTTP/2 preface (or the first bytes of a request
            // line) that stops: hyper has not started its own clock yet.
            Protocol::Unknown => {
                let until = self.started + limits.header_read_timeout;
                if now >= until {
                    Next::Close(ClosedBecause::Idle)
                } else {
                    Next::At(until)
                }
            }
            Protocol::Http2 => {
                let (open, idle_since) = {
                    let s = activity.streams.lock().unwrap_or_else(|e| e.into_inner());
                    (s.open, s.idle_since)
                };
                if open == 0 {
                    self.stall = None;
                    let until = idle_since.max(self.started) + limits.h2_idle_timeout;
                    return if now >= until {
                        Next::Close(ClosedBecause::Idle)
                    } else {
                        Next::At(until)
                    };
                }
                // Streams open: while any response waits on the client,
                // the socket must take something every `write_timeout`.
                // Looked at four times per period, as a frame's wait
                // starts and ends without waking this task.
                let look = limits.write_timeout / 4;
                if activity.waiting.load(Ordering::Relaxed) == 0 {
                    self.stall = None;
                    return Next::At(now + look);
                }
                let writes = activity.writes.load(Ordering::Relaxed);
                match self.stall {
                    Some((w, since)) if w == writes => {
                        if now >= since + limits.write_timeout {
                            return Next::Close(ClosedBecause::Stalled);
                        }
                    }
                    _ => self.stall = Some((writes, now)),
                }
                Next::At(now + look)
            }
        }
    }
}

/// A stream whose writes fail when they make no progress for `timeout`.
struct WriteTimeout<I> {
    io: I,
    timeout: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Counts the writes that made progress.
    activity: Arc<Activity>,
}

impl<I> WriteTimeout<I> {
    fn new(io: I, timeout: Duration, activity: Arc<Activity>) -> Self {
        WriteTimeout {
            io,
            timeout,
            stalled: None,
            activity,
        }
    }

    /// Called when a write is pending: starts or checks the clock.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Counts a write that took bytes (for the HTTP/2 stall check).
    fn wrote(&self, p: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = p
            && *n > 0
        {
            self.activity.writes.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn progress<T>(&mut self, cx: &mut Context<'_>, p: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match p {
            Poll::Pending => self.pending(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteTimeout<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(&p);
        this.progress(cx, p)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(&p);
        this.progress(cx, p)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_flush(cx);
        this.progress(cx, p)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_shutdown(cx);
        this.progress(cx, p)
    }
}

/// A stream whose HTTP/1 input has every `\n` not preceded by `\r` turned
/// into a NUL, which no part of a request may contain (see the module
/// documentation). Undecided while the input could still be the HTTP/2
/// preface (`PRI * HTTP/2.0…`), whose first four bytes contain no `\n`.
struct StrictLines<I> {
    io: I,
    /// Told the protocol once it is decided.
    activity: Arc<Activity>,
    /// How many bytes of `PRI ` have been seen; `PREFACE.len()` once
    /// decided.
    seen: usize,
    http2: bool,
    last_cr: bool,
}

const PREFACE: &[u8] = b"PRI ";

impl<I> StrictLines<I> {
    fn new(io: I, activity: Arc<Activity>) -> Self {
        StrictLines {
            io,
            activity,
            seen: 0,
            http2: false,
            last_cr: false,
        }
    }

    /// Looks at bytes just read.
    fn check(&mut self, new: &mut [u8]) {
        let mut from = 0;
        while self.seen < PREFACE.len() {
            let Some(&b) = new.get(from) else {
                return;
            };
            if b != PREFACE[self.seen] {
                // Not HTTP/2: checked from here (the bytes before were a
                // prefix of `PRI `, so no `\n`).
                self.seen = PREFACE.len();
                self.activity
                    .protocol
                    .store(Protocol::Http1 as u8, Ordering::Relaxed);
                break;
            }
            self.seen += 1;
            self.http2 = self.seen == PREFACE.len();
            if self.http2 {
                self.activity
                    .protocol
                    .store(Protocol::Http2 as u8, Ordering::Relaxed);
            }
            from += 1;
        }
        if self.http2 {
            return;
        }
        // memchr finds the few line ends; a loop over every byte was a
        // visible part of reading a request.
        let rest = &mut new[from..];
        let mut start = 0;
        while let Some(found) = memchr::memchr(b'\n', &rest[start..]) {
            let at = start + found;
            let after_cr = match at {
                0 => self.last_cr,
                _ => rest[at - 1] == b'\r',
            };
            if !after_cr {
                rest[at] = 0;
            }
            start = at + 1;
        }
        if let Some(&last) = rest.last() {
            self.last_cr = last == b'\r';
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for StrictLines<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let p = Pin::new(&mut this.io).poll_read(cx, buf);
        if p.is_ready() && !this.http2 {
            this.check(&mut buf.filled_mut()[before..]);
        }
        p
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for StrictLines<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(daemon: &str) -> Limits {
        let text = format!("origin = \"/o\"\nstaging = \"/s\"\n[daemon]\n{daemon}");
        let config = crate::config::Config::parse(std::path::Path::new("/t.toml"), &text).unwrap();
        Limits::new(&config.daemon)
    }

    #[test]
    fn one_address_holds_at_most_its_share_of_connections() {
        let l = limits("max_connections_per_ip = 2\n");
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = l.per_ip.take(a).unwrap();
        // The same client through a dual-stack listener is the same address.
        let second = l.per_ip.take(mapped).unwrap();
        assert!(l.per_ip.take(a).is_none());
        assert!(
            l.per_ip.take(b).is_some(),
            "another address is not held back"
        );
        drop(first);
        let third = l.per_ip.take(a).expect("a slot given back is free again");
        drop((second, third));
        assert!(l.per_ip.held.lock().unwrap().is_empty(), "no entry stays");
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_connection_without_streams_is_closed_when_idle() {
        let l = limits("http2_idle_timeout = \"10s\"\n");
        let a = Arc::new(Activity::new());
        a.protocol.store(Protocol::Http2 as u8, Ordering::Relaxed);
        let mut w = Watch::new();
        let t0 = Instant::now();
        assert_eq!(w.next(&a, &l, t0), Next::At(t0 + Duration::from_secs(10)));
        // A stream keeps it open however long it runs ...
        let stream = a.opened();
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(matches!(w.next(&a, &l, Instant::now()), Next::At(_)));
        // ... and the idle clock starts again when the last one ends.
        drop(stream);
        let ended = Instant::now();
        assert_eq!(
            w.next(&a, &l, ended),
            Next::At(ended + Duration::from_secs(10))
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            w.next(&a, &l, Instant::now()),
            Next::Close(ClosedBecause::Idle)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_the_client_takes_nothing_of_is_a_stall() {
        let l = limits("write_timeout = \"8s\"\n");
        let a = Arc::new(Activity::new());
        a.protocol.store(Protocol::Http2 as u8, Ordering::Relaxed);
        let mut w = Watch::new();
        let mut stream = a.opened();
        // A body waiting for its origin (no frame handed over) is not the
        // client's doing.
        for _ in 0..8 {
            tokio::time::advance(Duration::from_secs(2)).await;
            assert!(matches!(w.next(&a, &l, Instant::now()), Next::At(_)));
        }
        // A frame handed over while the socket keeps taking bytes: fine.
        stream.set_waiting(true);
        for _ in 0..8 {
            a.writes.fetch_add(1, Ordering::Relaxed);
            tokio::time::advance(Duration::from_secs(2)).await;
            assert!(matches!(w.next(&a, &l, Instant::now()), Next::At(_)));
        }
        // The socket takes nothing for the write timeout: closed.
        let mut verdict = Next::Never;
        for _ in 0..6 {
            tokio::time::advance(Duration::from_secs(2)).await;
            verdict = w.next(&a, &l, Instant::now());
            if verdict == Next::Close(ClosedBecause::Stalled) {
                break;
            }
        }
        assert_eq!(verdict, Next::Close(ClosedBecause::Stalled));
        drop(stream);
        assert_eq!(a.waiting.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_undecided_protocol_gets_the_header_read_timeout_and_http1_is_left_to_hyper() {
        let l = limits("header_read_timeout = \"5s\"\n");
        let a = Activity::new();
        let mut w = Watch::new();
        let t0 = Instant::now();
        assert_eq!(w.next(&a, &l, t0), Next::At(t0 + Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            w.next(&a, &l, Instant::now()),
            Next::Close(ClosedBecause::Idle)
        );
        a.protocol.store(Protocol::Http1 as u8, Ordering::Relaxed);
        assert_eq!(w.next(&a, &l, Instant::now()), Next::Never);
    }

    fn checked(chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = StrictLines::new((), Arc::new(Activity::new()));
        let mut out = Vec::new();
        for c in chunks {
            let mut c = c.to_vec();
            if !s.http2 {
                s.check(&mut c);
            }
            out.extend(c);
        }
        out
    }

    #[test]
    fn a_lone_lf_becomes_nul_in_http1_only() {
        assert_eq!(
            checked(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]),
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        assert_eq!(
            checked(&[b"GET / HTTP/1.1\nHost: x\n\n"]),
            b"GET / HTTP/1.1\0Host: x\0\0"
        );
        // Split anywhere, a CR before the LF still counts.
        assert_eq!(
            checked(&[b"GET / HTTP/1.1\r", b"\nX: y\n"]),
            b"GET / HTTP/1.1\r\nX: y\0"
        );
        // `P`, `PR`, then not HTTP/2: checked from the first differing byte.
        assert_eq!(checked(&[b"P", b"R", b"OPFIND\n"]), b"PROPFIND\0");
        assert_eq!(checked(&[b"PUT\n"]), b"PUT\0");
        // The HTTP/2 preface, and binary frames after it, are left alone.
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\n\n";
        assert_eq!(checked(&[&h2[..2], &h2[2..]]), h2);
    }
}

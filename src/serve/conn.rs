//! Listeners and connections: HTTP/1.1 and HTTP/2 (cleartext, or over TLS
//! by ALPN) through hyper-util's auto builder, with the limits a public
//! mirror needs and a graceful stop.
//!
//! Limits, and why each is here rather than in hyper:
//! - **Connections**: a semaphore; at the limit, new connections wait in
//!   the kernel's listen backlog instead of exhausting file descriptors.
//! - **Header read timeout**: hyper's own, which needs a timer; it also
//!   closes idle keep-alive connections. The timer (`timer`) keeps one
//!   tokio sleep per connection instead of one per request.
//! - **Write timeout**: hyper has none, so a client that stops reading
//!   would hold its connection (and a fill's reader) forever. The socket is
//!   wrapped so that a write making no progress for the timeout fails.
//! - **TLS handshake timeout**: the handshake runs inside the connection's
//!   task, under a timeout, so a slow handshake never blocks accepting.
//! - **URL length**: checked per request (`respond`), 414.
//! - **Bare LF**: httparse accepts a lone `\n` as a line end, which a proxy
//!   in front may read differently (request smuggling). On HTTP/1
//!   connections a lone `\n` is turned into a NUL byte before hyper parses
//!   it, so the request fails to parse and gets a 400. HTTP/2 (by its
//!   preface) is binary and left alone. Request bodies, and with them
//!   Content-Length/Transfer-Encoding conflicts, are refused in `respond`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;

use super::Daemon;
use super::respond;
use super::timer::ConnectionTimer;
use crate::config::DaemonSettings;

/// Connection limits, shared by all listeners.
pub struct Limits {
    connections: Arc<Semaphore>,
    header_read_timeout: Duration,
    write_timeout: Duration,
    handshake_timeout: Duration,
}

impl Limits {
    pub fn new(s: &DaemonSettings) -> Limits {
        Limits {
            connections: Arc::new(Semaphore::new(s.max_connections)),
            header_read_timeout: s.header_read_timeout,
            write_timeout: s.write_timeout,
            handshake_timeout: s
                .tls
                .as_ref()
                .map_or(Duration::from_secs(10), |t| t.handshake_timeout),
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
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            let tls = tls.clone();
            self.tracker.spawn(async move {
                let _permit = permit;
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

    async fn connection<I>(&self, io: I, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(WriteTimeout::new(
            StrictLines::new(io),
            self.limits.write_timeout,
        ));
        let daemon = self.daemon.clone();
        let service = service_fn(move |req| {
            let daemon = daemon.clone();
            async move { Ok::<_, Infallible>(respond::handle(&daemon, req, peer).await) }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(ConnectionTimer::default())
            .header_read_timeout(self.limits.header_read_timeout);
        builder.http2().timer(TokioTimer::new());
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let mut stopping = self.stopping.clone();
        let result = tokio::select! {
            r = conn.as_mut() => r,
            () = stopped(&mut stopping) => {
                // Finish the request in flight, then close.
                conn.as_mut().graceful_shutdown();
                conn.await
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

/// Completes once the daemon is stopping.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// A stream whose writes fail when they make no progress for `timeout`.
struct WriteTimeout<I> {
    io: I,
    timeout: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> WriteTimeout<I> {
    fn new(io: I, timeout: Duration) -> Self {
        WriteTimeout {
            io,
            timeout,
            stalled: None,
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
        this.progress(cx, p)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
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
    /// How many bytes of `PRI ` have been seen; `PREFACE.len()` once
    /// decided.
    seen: usize,
    http2: bool,
    last_cr: bool,
}

const PREFACE: &[u8] = b"PRI ";

impl<I> StrictLines<I> {
    fn new(io: I) -> Self {
        StrictLines {
            io,
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
                break;
            }
            self.seen += 1;
            self.http2 = self.seen == PREFACE.len();
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

    fn checked(chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = StrictLines::new(());
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

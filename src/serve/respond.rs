//! Turning one request into one response: routing to a volume, resolving
//! the path in its current release, and the HTTP rules (methods, ranges,
//! conditional requests, headers, listings, redirects).

use std::io::SeekFrom;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::path::CleanPath;
use super::range::{self, RangeAnswer};
use super::released::LoadedRelease;
use super::{Body, Daemon};
use crate::volume::manifest::{Entry, Kind, lossy};

/// Longest symlink chain followed inside a release.
const MAX_LINK_HOPS: usize = 16;

pub async fn handle<B>(daemon: &Daemon, req: Request<B>) -> Response<Body> {
    let method = req.method().clone();
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let raw = req.uri().path();
    let path = match CleanPath::parse(raw) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(path = raw, "bad request path: {e}");
            return text(StatusCode::BAD_REQUEST, &format!("bad path: {e}\n"));
        }
    };
    if path.segments.len() == 1 && path.segments[0] == b"healthz" {
        return text(StatusCode::OK, "ok\n");
    }
    let Some((volume, skip)) = daemon.route(&path) else {
        return text(StatusCode::NOT_FOUND, "no such volume\n");
    };
    let Some(release) = volume.current() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "this volume has no release yet\n",
        );
    };
    let rel = path.joined(skip);
    let head = method == Method::HEAD;
    match resolve(&release, &rel) {
        Err(e) => {
            tracing::error!(volume = %volume.dir.name, "manifest read failed: {e:#}");
            text(StatusCode::INTERNAL_SERVER_ERROR, "manifest error\n")
        }
        Ok(None) => text(StatusCode::NOT_FOUND, "not found\n"),
        Ok(Some((resolved, entry))) => match entry.kind {
            Kind::Dir if !path.trailing_slash => redirect(&format!("{raw}/")),
            Kind::Dir => {
                let index = join(&resolved, b"index.html");
                match resolve(&release, &index) {
                    Ok(Some((_, e))) if e.kind == Kind::File => {
                        serve_file(volume, &index, &e, req.headers(), head).await
                    }
                    _ => listing(&release, &resolved, raw, head),
                }
            }
            _ => serve_file(volume, &resolved, &entry, req.headers(), head).await,
        },
    }
}

/// Looks a path up, following symlinks inside the release. Returns the
/// final path and its entry (a file or a directory).
fn resolve(release: &LoadedRelease, path: &[u8]) -> anyhow::Result<Option<(Vec<u8>, Entry)>> {
    if path.is_empty() {
        return Ok(Some((Vec::new(), root_entry(release))));
    }
    let mut path = path.to_vec();
    for _ in 0..MAX_LINK_HOPS {
        // Resolve each parent directory first: a link may sit in the middle.
        let mut resolved: Vec<u8> = Vec::new();
        let segments: Vec<Vec<u8>> = path.split(|&b| b == b'/').map(<[u8]>::to_vec).collect();
        let mut restart = None;
        for (i, seg) in segments.iter().enumerate() {
            let candidate = join(&resolved, seg);
            let Some(entry) = release.manifest.get(&candidate)? else {
                return Ok(None);
            };
            let last = i + 1 == segments.len();
            match entry.kind {
                Kind::Symlink => {
                    let Some(target) = link_target(&resolved, &entry.target) else {
                        return Ok(None);
                    };
                    let mut next = target;
                    for rest in &segments[i + 1..] {
                        next = join(&next, rest);
                    }
                    restart = Some(next);
                    break;
                }
                Kind::File if last => return Ok(Some((candidate, entry))),
                Kind::File => return Ok(None),
                Kind::Dir if last => return Ok(Some((candidate, entry))),
                Kind::Dir => resolved = candidate,
            }
        }
        match restart {
            Some(next) if next.is_empty() => return Ok(Some((next, root_entry(release)))),
            Some(next) => path = next,
            None => return Ok(None),
        }
    }
    Ok(None)
}

/// The path a relative symlink target names, from the link's directory;
/// `None` if it would climb above the root.
fn link_target(dir: &[u8], target: &[u8]) -> Option<Vec<u8>> {
    let mut parts: Vec<&[u8]> = dir
        .split(|&b| b == b'/')
        .filter(|s| !s.is_empty())
        .collect();
    if target.starts_with(b"/") {
        return None;
    }
    for seg in target.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join(&b'/'))
}

fn root_entry(release: &LoadedRelease) -> Entry {
    Entry {
        kind: Kind::Dir,
        size: 0,
        mtime: release.meta.created_unix as i64,
        mtime_nsec: 0,
        sha256: Default::default(),
        target: Vec::new(),
        source_inode: 0,
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    crate::release::scan::join(dir, name)
}

async fn serve_file(
    volume: &super::released::ReleasedVolume,
    path: &[u8],
    entry: &Entry,
    headers: &HeaderMap,
    head: bool,
) -> Response<Body> {
    let etag = format!("\"{}\"", entry.sha256.hex());
    let mtime = UNIX_EPOCH + Duration::from_secs(entry.mtime.max(0) as u64);
    let mut builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, httpdate::fmt_http_date(mtime))
        .header(header::CONTENT_TYPE, content_type(path))
        .header(header::CACHE_CONTROL, cache_control(path))
        .header(header::ACCEPT_RANGES, "bytes");
    if not_modified(headers, &etag, mtime) {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(empty())
            .expect("valid response");
    }
    let size = entry.size;
    let answer = headers
        .get(header::RANGE)
        .map(|h| range::parse(h.as_bytes(), size))
        .unwrap_or(RangeAnswer::Whole);
    let (status, start, len) = match answer {
        RangeAnswer::Whole => (StatusCode::OK, 0, size),
        RangeAnswer::Part { start, end } => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeAnswer::Unsatisfiable => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .header(header::CONTENT_LENGTH, 0)
                .body(empty())
                .expect("valid response");
        }
    };
    builder = builder.status(status).header(header::CONTENT_LENGTH, len);
    if head {
        return builder.body(empty()).expect("valid response");
    }
    let object = volume.dir.object_file(&entry.sha256);
    let file = match tokio::fs::File::open(&object).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(volume = %volume.dir.name, path = %lossy(path), "origin object unreadable: {e}");
            return text(StatusCode::BAD_GATEWAY, "origin unreadable\n");
        }
    };
    builder
        .body(file_body(file, start, len))
        .expect("valid response")
}

/// Streams `len` bytes of `file` from `start`, in 256 KiB chunks.
fn file_body(mut file: tokio::fs::File, start: u64, len: u64) -> Body {
    let stream = async_stream(move |tx| async move {
        if start > 0 {
            file.seek(SeekFrom::Start(start)).await?;
        }
        let mut reader = file.take(len);
        let mut left = len;
        while left > 0 {
            let mut buf = vec![0u8; (256 * 1024).min(left as usize)];
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "origin object shorter than its manifest entry",
                ));
            }
            buf.truncate(n);
            left -= n as u64;
            if tx.send(Ok(Frame::data(Bytes::from(buf)))).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    });
    BodyExt::boxed(StreamBody::new(stream))
}

type Chunk = Result<Frame<Bytes>, std::io::Error>;

/// Runs `produce` in its own task, feeding a channel the body reads from;
/// an error ends the body early, so the client sees an incomplete response.
fn async_stream<F, Fut>(produce: F) -> tokio_util_stream::ReceiverStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Chunk>) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let fut = produce(tx.clone());
    tokio::spawn(async move {
        if let Err(e) = fut.await {
            tracing::error!("reading origin object: {e}");
            let _ = tx.send(Err(e)).await;
        }
    });
    tokio_util_stream::ReceiverStream(rx)
}

mod tokio_util_stream {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A channel receiver as a stream of body chunks.
    pub struct ReceiverStream(pub tokio::sync::mpsc::Receiver<super::Chunk>);

    impl futures_util::Stream for ReceiverStream {
        type Item = super::Chunk;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }
}

fn not_modified(headers: &HeaderMap, etag: &str, mtime: SystemTime) -> bool {
    if let Some(inm) = headers.get(header::IF_NONE_MATCH) {
        let inm = inm.to_str().unwrap_or("");
        return inm
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag);
    }
    if let Some(ims) = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    {
        return mtime <= ims;
    }
    false
}

/// Content-Type by file name.
pub fn content_type(path: &[u8]) -> &'static str {
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    let ext = |e: &[u8]| name.ends_with(e);
    if ext(b".html") || ext(b".htm") {
        "text/html; charset=utf-8"
    } else if ext(b".json") {
        "application/json"
    } else if ext(b".xml") {
        "application/xml"
    } else if ext(b".txt")
        || ext(b".asc")
        || [&b"Release"[..], b"InRelease", b"Packages", b"Sources"].contains(&name)
    {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// Package files never change under their name; indexes do.
pub fn cache_control(path: &[u8]) -> &'static str {
    let immutable = [
        &b".whl"[..],
        b".tar.gz",
        b".zip",
        b".deb",
        b".udeb",
        b".rpm",
        b".metadata",
    ]
    .iter()
    .any(|e| path.ends_with(e))
        || path.windows(9).any(|w| w == b"/by-hash/");
    if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=60"
    }
}

fn listing(release: &LoadedRelease, dir: &[u8], raw: &str, head: bool) -> Response<Body> {
    let entries = match release.manifest.list(dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("listing failed: {e:#}");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "manifest error\n");
        }
    };
    let title = escape(raw);
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n<body><h1>Index of {title}</h1>\n<table>\n"
    );
    if !dir.is_empty() {
        html += "<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n";
    }
    for (name, e) in entries {
        let shown = String::from_utf8_lossy(&name).into_owned();
        let slash = if e.kind == Kind::Dir { "/" } else { "" };
        let href: String = percent_encode(&name);
        let when = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(e.mtime.max(0) as u64));
        let size = if e.kind == Kind::File {
            e.size.to_string()
        } else {
            "-".into()
        };
        html += &format!(
            "<tr><td><a href=\"{href}{slash}\">{}{slash}</a></td><td>{size}</td><td>{when}</td></tr>\n",
            escape(&shown)
        );
    }
    html += "</table></body></html>\n";
    let len = html.len();
    Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "public, max-age=60")
        .header(header::CONTENT_LENGTH, len)
        .body(if head { empty() } else { full(html) })
        .expect("valid response")
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a name for use in an `href`.
fn percent_encode(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name {
        if b.is_ascii_alphanumeric() || b"-_.~+".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn redirect(to: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::MOVED_PERMANENTLY)
        .header(header::LOCATION, to)
        .header(header::CONTENT_LENGTH, 0)
        .body(empty())
        .expect("valid response")
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CONTENT_LENGTH, msg.len())
        .body(full(msg.to_string()))
        .expect("valid response")
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn full(s: String) -> Body {
    Full::new(Bytes::from(s))
        .map_err(|never| match never {})
        .boxed()
}

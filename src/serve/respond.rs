//! Turning one request into one response: the guards every request passes
//! (method, no body, target length, a clean path), the daemon's own pages,
//! routing to a volume and its lookup (`lookup`); then the headers every
//! response carries, and the access record the body writes when it ends.

use std::sync::Arc;
use std::time::Instant;

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response};

use super::answer::{Answer, Ask};
use super::body::{Access, Metered};
use super::daemon::{Daemon, VolumeKind};
use super::pages;
use super::path::CleanPath;
use super::refusal::Refusal;
use super::reply::VOLUME_HTML_POLICY;

/// Answers one request, and wraps the body so the request is logged and
/// counted when the response ends.
pub async fn handle<B>(
    daemon: &Arc<Daemon>,
    req: Request<B>,
    peer: std::net::SocketAddr,
) -> Response<Metered> {
    let started = Instant::now();
    let a = answer(daemon, &req).await;
    let (mut parts, inner) = a.response.into_parts();
    harden(&mut parts.headers);
    let length = if req.method() == Method::HEAD {
        Some(0)
    } else {
        parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
    };
    let access = Access {
        started,
        peer,
        method: req.method().clone(),
        path: req.uri().path().to_string(),
        volume: a.volume.unwrap_or_else(|| daemon.unrouted.clone()),
        status: parts.status.as_u16(),
        outcome: a.outcome,
        tier: a.tier,
        release: a.release,
    };
    Response::from_parts(parts, Metered::new(inner, access, length))
}

async fn answer<B>(daemon: &Arc<Daemon>, req: &Request<B>) -> Answer {
    let path = match admit(daemon, req) {
        Ok(path) => path,
        Err(refusal) => return Answer::plain(refusal.response()),
    };
    let head = req.method() == Method::HEAD;
    if let Some(r) = pages::own_page(daemon, &path, req.headers(), head).await {
        return Answer::plain(r);
    }
    let Some((volume, skip)) = daemon.route(&path) else {
        return Answer::plain(Refusal::NoVolume.response());
    };
    let ask = Ask {
        daemon,
        volume: &volume,
        path: &path,
        headers: req.headers(),
        head,
    };
    let looked = match &volume.kind {
        VolumeKind::Released(r) => match ask.released(r, skip).await {
            // What the release lacks, its fallback proxy may have.
            Err(Refusal::NotFound) if let Some(p) = &volume.fallback => {
                ask.fallback(p, path.rest(skip)).await
            }
            looked => looked,
        },
        VolumeKind::Plain(p) => ask.plain(p, path.rest(skip)).await,
        VolumeKind::Proxy(p) => ask.proxy(p, path.rest(skip)).await,
    };
    looked.unwrap_or_else(|refusal| ask.refused(refusal))
}

/// The checks before any lookup: GET or HEAD, without a body, a target
/// within `daemon.max_url_length`, a path `serve::path` accepts (which it
/// returns).
fn admit<B>(daemon: &Daemon, req: &Request<B>) -> Result<CleanPath, Refusal> {
    let method = req.method();
    if method != Method::GET && method != Method::HEAD {
        return Err(Refusal::Method);
    }
    // GET and HEAD carry no body here. One that comes with a body (or with
    // Transfer-Encoding, or Content-Length and Transfer-Encoding at odds) is
    // how request smuggling starts: refused, and the connection closed so
    // that the body is never read as a request.
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0");
    if has_body {
        tracing::info!("refused: a request body on {method}");
        return Err(Refusal::Body);
    }
    let target_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target_len > daemon.max_url_length {
        tracing::info!(length = target_len, "refused: request target too long");
        return Err(Refusal::TooLong);
    }
    let raw = req.uri().path();
    CleanPath::parse(raw).map_err(|e| {
        tracing::info!(path = raw, "bad request path: {e}");
        Refusal::BadPath(e)
    })
}

/// The headers every response carries, whatever produced it: `nosniff`, so
/// a browser never reads a file as another type than the one sent (an
/// upstream `.txt` as HTML, say); and, on an HTML body that set no policy
/// of its own (the daemon's pages do), the volume HTML policy.
fn harden(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        const { HeaderValue::from_static("nosniff") },
    );
    let html = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| memchr::memmem::find(t.as_bytes(), b"html").is_some());
    if html && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            const { HeaderValue::from_static(VOLUME_HTML_POLICY) },
        );
    }
}

//! What responses are built of, for every module that makes one: plain
//! text answers, directory redirects, header values, and the cache and
//! security policies. Imports nothing of `serve` but `body` and `path`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use super::body::{self, Body};
use super::path::CleanPath;
use crate::html::percent_encode;

pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub const SHORT: &str = "public, max-age=60";

/// The Cache-Control header of content that never changes, or of the rest.
/// (`const` blocks: a header value made from a string checks each byte
/// when made at run time.)
pub fn cache_control_value(immutable: bool) -> HeaderValue {
    match immutable {
        true => const { HeaderValue::from_static(IMMUTABLE) },
        false => const { HeaderValue::from_static(SHORT) },
    }
}

/// The policy of HTML that came from a volume (an upstream's file, such as
/// a project page or a stray `index.html`): no scripts, no loads, no forms,
/// a unique origin. pip and the other clients ignore it; a browser shows
/// an inert page, so an upstream cannot run script under the mirror's
/// name.
pub const VOLUME_HTML_POLICY: &str = "default-src 'none'; sandbox";
/// The policy of the daemon's own pages and listings: they need their
/// inline styles and nothing else.
pub const OWN_PAGE_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A response of these parts.
pub fn response(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// A header value of text `serve` formatted (digits, `bytes`, `-`, `/`,
/// `*`): always valid.
pub fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("formatted header values are visible ASCII")
}

/// The time of a manifest's or a stat's seconds. Any value is accepted:
/// an upstream file can carry an mtime past year 9999, which dates (and
/// `Last-Modified`) clamp when they show it.
pub fn unix(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

/// Redirects a directory to its URL with a trailing slash, built from the
/// clean segments (so `//host`-style paths cannot become an open redirect).
pub fn redirect(path: &CleanPath) -> Response<Body> {
    let mut to = String::new();
    for s in path.segments() {
        to.push('/');
        to.push_str(&percent_encode(s));
    }
    to.push('/');
    Response::builder()
        .status(StatusCode::MOVED_PERMANENTLY)
        .header(header::LOCATION, to)
        .header(header::CONTENT_LENGTH, 0)
        .body(body::empty())
        .expect("valid response")
}

/// A plain text response.
pub fn text(status: StatusCode, msg: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CONTENT_LENGTH, msg.len())
        .body(body::bytes(Bytes::from(msg.to_string())))
        .expect("valid response")
}

//! Why a request is not served, and the one place where that becomes a
//! status and a message (as garage's `http_status_code`). The code that
//! refuses logs why, with what it knows; this module only answers.

use std::borrow::Cow;

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::body::Body;
use super::path::PathError;
use super::reply::text;
use crate::cache::fill::WaitError;
use crate::metrics::OriginError;

/// Why a request gets no object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Neither GET nor HEAD (405, with `Allow`).
    Method,
    /// A GET or HEAD that comes with a body, or with `Transfer-Encoding`:
    /// how request smuggling starts (400, and the connection is closed so
    /// that the body is never read as a request).
    Body,
    /// A request target over `daemon.max_url_length` (414).
    TooLong,
    /// A path `serve::path` refuses (400).
    BadPath(PathError),
    /// No volume's prefix matches (404).
    NoVolume,
    /// The volume has had no release yet (503).
    NoRelease,
    /// A pinned release that was never published, or cannot be loaded
    /// (404).
    NoSuchRelease,
    /// Nothing by that name (404).
    NotFound,
    /// A plain-tree path that resolves outside the tree, through a symlink
    /// (404, as if not there).
    Outside,
    /// A plain tree that cannot be read at all, with nothing recent enough
    /// known of the path (502, not a 404 a client might believe).
    Unreachable,
    /// A release's manifest could not be read (500).
    Manifest,
    /// A lookup task failed (500).
    Internal,
    /// An origin read that failed before the response began: 404 for a
    /// plain-tree file gone since its `stat`, 504 for a timeout, 503 when
    /// the fill never got a slot, 502 otherwise.
    Origin { error: WaitError, plain: bool },
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Method => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Body | Refusal::BadPath(_) => StatusCode::BAD_REQUEST,
            Refusal::TooLong => StatusCode::URI_TOO_LONG,
            Refusal::NoVolume | Refusal::NoSuchRelease | Refusal::NotFound | Refusal::Outside => {
                StatusCode::NOT_FOUND
            }
            Refusal::NoRelease => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Unreachable => StatusCode::BAD_GATEWAY,
            Refusal::Manifest | Refusal::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Refusal::Origin { error, plain } => match error {
                WaitError::Failed(OriginError::Missing) if *plain => StatusCode::NOT_FOUND,
                WaitError::Failed(OriginError::Timeout) | WaitError::TimedOut => {
                    StatusCode::GATEWAY_TIMEOUT
                }
                WaitError::Busy => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_GATEWAY,
            },
        }
    }

    /// The text the response says.
    fn message(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Refusal::Method => "only GET and HEAD\n",
            Refusal::Body => "GET and HEAD requests take no body\n",
            Refusal::TooLong => "request target too long\n",
            Refusal::BadPath(e) => return format!("bad path: {e}\n").into(),
            Refusal::NoVolume => "no such volume\n",
            Refusal::NoRelease => "this volume has no release yet\n",
            Refusal::NoSuchRelease => "no such release\n",
            Refusal::NotFound | Refusal::Outside => "not found\n",
            Refusal::Unreachable => "the origin tree cannot be read\n",
            Refusal::Manifest => "manifest error\n",
            Refusal::Internal => "error\n",
            Refusal::Origin { error, .. } => return format!("{error}\n").into(),
        })
    }

    /// The response: the status, the message as plain text, and the
    /// headers some refusals need.
    pub fn response(&self) -> Response<Body> {
        let mut r = text(self.status(), &self.message());
        match self {
            Refusal::Method => {
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            }
            Refusal::Body => {
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_failures_map_by_kind() {
        let origin = |error, plain| Refusal::Origin { error, plain }.status().as_u16();
        let missing = WaitError::Failed(OriginError::Missing);
        assert_eq!(origin(missing, true), 404);
        assert_eq!(origin(missing, false), 502);
        assert_eq!(origin(WaitError::TimedOut, false), 504);
        assert_eq!(origin(WaitError::Failed(OriginError::Timeout), true), 504);
        assert_eq!(origin(WaitError::Busy, true), 503);
        assert_eq!(origin(WaitError::Abandoned, true), 502);
    }

    #[test]
    fn refusals_carry_their_headers() {
        let r = Refusal::Method.response();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
        let r = Refusal::Body.response();
        assert_eq!(r.headers()[header::CONNECTION], "close");
        let r = Refusal::BadPath(PathError::DotSegment).response();
        assert_eq!(r.status(), 400);
        assert_eq!(
            r.headers()[header::CONTENT_LENGTH],
            "bad path: a '.' or '..' segment\n"
                .len()
                .to_string()
                .as_str()
        );
    }
}

//! Media types: a file's Content-Type by its name, and PEP 691
//! negotiation (which index file answers a directory, by the request's
//! Accept header).

use hyper::Response;
use hyper::header::{self, HeaderMap, HeaderValue};

use super::body::Body;

pub const PEP691_JSON: &str = "application/vnd.pypi.simple.v1+json";
pub const PEP691_HTML: &str = "application/vnd.pypi.simple.v1+html";

/// The index files a directory may be answered by, best first for this
/// request's Accept header: the PEP 691 JSON page when the client prefers
/// it, else the HTML page.
pub fn index_candidates(headers: &HeaderMap) -> &'static [&'static [u8]] {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if prefers_json(accept) {
        &[b"index.v1_json", b"index.html", b"index.v1_html"]
    } else {
        &[b"index.html", b"index.v1_html"]
    }
}

/// Whether an Accept header ranks the PEP 691 JSON form above HTML.
pub fn prefers_json(accept: &str) -> bool {
    let (mut json, mut html) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .filter_map(|q| q.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        match media.as_str() {
            "application/vnd.pypi.simple.v1+json" | "application/vnd.pypi.simple.latest+json" => {
                json = json.max(q)
            }
            "text/html"
            | "application/vnd.pypi.simple.v1+html"
            | "application/vnd.pypi.simple.latest+html"
            | "text/*"
            | "*/*" => html = html.max(q),
            _ => {}
        }
    }
    json > 0.0 && json > html
}

/// Marks a directory's answer as chosen by the Accept header.
pub fn vary_accept(r: &mut Response<Body>) {
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
}

/// Content-Type by file name.
pub fn content_type(path: &[u8]) -> HeaderValue {
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    let ext = |e: &[u8]| name.ends_with(e);
    if ext(b".html") || ext(b".htm") {
        const { HeaderValue::from_static("text/html; charset=utf-8") }
    } else if ext(b".v1_json") {
        const { HeaderValue::from_static(PEP691_JSON) }
    } else if ext(b".v1_html") {
        const { HeaderValue::from_static(PEP691_HTML) }
    } else if ext(b".json") {
        const { HeaderValue::from_static("application/json") }
    } else if ext(b".xml") {
        const { HeaderValue::from_static("application/xml") }
    } else if ext(b".txt")
        || ext(b".asc")
        || [&b"Release"[..], b"InRelease", b"Packages", b"Sources"].contains(&name)
    {
        const { HeaderValue::from_static("text/plain; charset=utf-8") }
    } else {
        const { HeaderValue::from_static("application/octet-stream") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        // What pip sends.
        assert!(prefers_json(
            "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
        ));
        // Browsers and curl.
        assert!(!prefers_json(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!prefers_json("*/*"));
        assert!(!prefers_json(""));
        assert!(!prefers_json("application/vnd.pypi.simple.v1+json;q=0"));
        assert!(prefers_json("application/vnd.pypi.simple.latest+json"));
        assert!(!prefers_json(
            "application/vnd.pypi.simple.v1+json;q=0.5, text/html"
        ));
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(b"simple/x/index.v1_json"), PEP691_JSON);
        assert_eq!(content_type(b"a/b.whl"), "application/octet-stream");
        assert_eq!(
            content_type(b"dists/jammy/InRelease"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(content_type(b"repodata/repomd.xml"), "application/xml");
    }
}

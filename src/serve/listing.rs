//! Directory listings: HTML pages of a directory's entries, for releases
//! (cached per release, since a release never changes) and plain trees.
//!
//! Both the size of one page and the memory of the cache are bounded: a
//! directory can hold a million entries, and a hostile client can ask for
//! every directory of every release.

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::body::{self, Body};
use super::path::CleanPath;
use super::reply::{OWN_PAGE_POLICY, SHORT, unix};
use crate::html::{escape, percent_encode};

/// The most entries one listing shows. Past it the page ends with a line
/// saying how many were left out (they are still served by name): a page
/// of this many rows is about 1.5 MB already, and no one reads further.
pub const MAX_LISTED: usize = 10_000;

/// The memory all cached release listings may take together.
const CACHE_BYTES: u64 = 16 << 20;

/// One line of a directory listing.
pub struct ListEntry {
    pub name: Vec<u8>,
    pub is_dir: bool,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
}

/// A directory's entries as read: the first `MAX_LISTED`, and how many more
/// there were.
pub struct Listed {
    pub entries: Vec<ListEntry>,
    pub left_out: u64,
}

/// Which listing: the volume, the release, and the request path (the page
/// shows the path, and a pinned `@<id>` path differs from the current one).
type Key = (Arc<str>, u64, Box<[u8]>);

/// Weighs a cached page by its length.
#[derive(Clone)]
struct ByLength;

impl quick_cache::Weighter<Key, Bytes> for ByLength {
    fn weight(&self, key: &Key, page: &Bytes) -> u64 {
        (page.len() + key.2.len()).max(1) as u64
    }
}

/// Rendered listings of released directories. A release never changes, so
/// a page is good for as long as its release is served; pages of releases
/// no longer asked for are evicted like any other.
pub struct Listings {
    pages: quick_cache::sync::Cache<Key, Bytes, ByLength>,
}

impl Default for Listings {
    fn default() -> Listings {
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(1024)
            .weight_capacity(CACHE_BYTES)
            // One shard, so that the largest page fits in the budget.
            .shards(1)
            .build()
            .expect("valid cache options");
        Listings {
            pages: quick_cache::sync::Cache::with_options(
                options,
                ByLength,
                Default::default(),
                Default::default(),
            ),
        }
    }
}

impl Listings {
    /// The page of a released directory: from the cache, or made by
    /// `list` (on the blocking pool: a large directory is a long walk of
    /// the manifest) and kept.
    pub async fn release_page(
        &self,
        volume: &Arc<str>,
        release: u64,
        path: &CleanPath,
        list: impl FnOnce() -> anyhow::Result<Listed> + Send + 'static,
    ) -> anyhow::Result<Bytes> {
        let key: Key = (volume.clone(), release, path.as_bytes().into());
        if let Some(page) = self.pages.get(&key) {
            return Ok(page);
        }
        let title = title(path);
        let root = path.is_root();
        let page =
            tokio::task::spawn_blocking(move || list().map(|listed| render(&title, root, listed)))
                .await??;
        self.pages.insert(key, page.clone());
        Ok(page)
    }
}

/// The `/path/` a page is titled with.
pub fn title(path: &CleanPath) -> String {
    format!("/{}/", String::from_utf8_lossy(path.as_bytes()))
}

/// An HTML page listing a directory.
pub fn render(title: &str, root: bool, listed: Listed) -> Bytes {
    let title = escape(title);
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n<body><h1>Index of {title}</h1>\n<table>\n"
    );
    if !root {
        html += "<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n";
    }
    for ListEntry {
        name,
        is_dir,
        size,
        mtime,
    } in listed.entries
    {
        let shown = String::from_utf8_lossy(&name).into_owned();
        let slash = if is_dir { "/" } else { "" };
        let href = percent_encode(&name);
        // Clamped to year 9999: an upstream's mtime can be anything.
        let when = crate::dates::http_date(unix(mtime));
        let when = String::from_utf8_lossy(&when);
        let size = if is_dir { "-".into() } else { size.to_string() };
        html += &format!(
            "<tr><td><a href=\"{href}{slash}\">{}{slash}</a></td><td>{size}</td><td>{when}</td></tr>\n",
            escape(&shown)
        );
    }
    html += "</table>\n";
    if listed.left_out > 0 {
        html += &format!(
            "<p>{} more entries are not listed (a listing shows at most {MAX_LISTED}); each is served by its name.</p>\n",
            listed.left_out
        );
    }
    html += "</body></html>\n";
    Bytes::from(html)
}

/// The response for a listing page.
pub fn response(page: Bytes, head: bool) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(
            header::CONTENT_SECURITY_POLICY,
            const { HeaderValue::from_static(OWN_PAGE_POLICY) },
        )
        .header(header::CACHE_CONTROL, SHORT)
        .header(header::CONTENT_LENGTH, page.len())
        .body(if head {
            body::empty()
        } else {
            body::bytes(page)
        })
        .expect("valid response")
}

/// Keeps the first `MAX_LISTED` of `entries` and counts the rest.
pub fn bounded(entries: impl Iterator<Item = ListEntry>) -> Listed {
    let mut listed = Listed {
        entries: Vec::new(),
        left_out: 0,
    };
    for e in entries {
        if listed.entries.len() < MAX_LISTED {
            listed.entries.push(e);
        } else {
            listed.left_out += 1;
        }
    }
    listed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> ListEntry {
        ListEntry {
            name: format!("f{i}").into_bytes(),
            is_dir: false,
            size: 1,
            mtime: 0,
        }
    }

    #[test]
    fn a_long_directory_is_cut_at_the_bound_and_says_how_many_were_left_out() {
        let listed = bounded((0..MAX_LISTED + 7).map(entry));
        assert_eq!(listed.entries.len(), MAX_LISTED);
        assert_eq!(listed.left_out, 7);
        let page = render("/v/d/", false, listed);
        let page = std::str::from_utf8(&page).unwrap();
        assert!(page.contains("7 more entries are not listed"), "{page}");
        assert!(page.contains(&format!("f{}", MAX_LISTED - 1)));
        assert!(!page.contains(&format!("\"f{}\"", MAX_LISTED)));
    }

    #[test]
    fn an_mtime_past_year_9999_is_shown_as_its_last_second() {
        let listed = bounded(
            [ListEntry {
                name: b"far".to_vec(),
                is_dir: false,
                size: 1,
                mtime: i64::MAX,
            }]
            .into_iter(),
        );
        let page = render("/v/", true, listed);
        assert!(
            std::str::from_utf8(&page)
                .unwrap()
                .contains("Fri, 31 Dec 9999 23:59:59 GMT")
        );
    }
}

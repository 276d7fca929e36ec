//! Finding a volume's path: in a release (the current one, then those
//! still in their grace period; or a pinned `@<id>`), following symlinks
//! inside it; or in a plain tree. A directory is answered by its index
//! file (PEP 691 negotiated), its listing, or a redirect to its slash.
//! A lookup ends in an answer or a refusal; `respond` maps the refusal.

use std::borrow::Cow;
use std::sync::Arc;

use hyper::header::{self, HeaderValue};

use super::answer::{Answer, Ask};
use super::listing::{self, ListEntry, Listed};
use super::media::{index_candidates, vary_accept};
use super::plain::{Looked, PlainVolume};
use super::refusal::Refusal;
use super::released::{LoadedRelease, PinnedError, ReleasedVolume};
use super::reply::{redirect, unix};
use super::send::{Meta, Object};
use crate::cache::ObjectKey;
use crate::metrics::Outcome;
use crate::volume::manifest::{Entry, Kind};

/// Longest symlink chain followed inside a release.
const MAX_LINK_HOPS: usize = 16;

/// Set when a plain tree could not be read and what was last seen of it
/// answered instead.
const X_STALE: header::HeaderName = header::HeaderName::from_static("x-unimirror-stale");
/// The release that answered.
const X_RELEASE: header::HeaderName = header::HeaderName::from_static("x-unimirror-release");

impl Ask<'_> {
    /// A released volume's path: `skip` segments are the volume's prefix.
    pub async fn released(
        &self,
        vol: &Arc<ReleasedVolume>,
        skip: usize,
    ) -> Result<Answer, Refusal> {
        let mut rel = self.path.rest(skip);
        // `@<name>` that no tag has is an ordinary path (a tree may have a
        // directory named so).
        let pin = match rel.split(|&b| b == b'/').next().and_then(pin) {
            Some(Pin::Tag(tag)) => vol.tagged(tag).map(Pinned::Tag),
            Some(Pin::Id(id)) => Some(Pinned::Id(id)),
            None => None,
        };
        if pin.is_some() {
            rel = super::path::rest_after(rel, 1);
        }
        let (first, snapshot) = match pin {
            // A tag follows its moves as the pointer does: its release
            // first, then those it named within the grace period.
            Some(Pinned::Tag(s)) => (s.current.clone(), Some(s)),
            Some(Pinned::Id(id)) => match vol.pinned(id).await {
                Ok(r) => (r, None),
                Err(PinnedError::Unknown) => {
                    tracing::info!(volume = %self.volume.name, "pinned release #{id} was never published");
                    return Err(Refusal::NoSuchRelease);
                }
                Err(PinnedError::Unavailable(e)) => {
                    tracing::warn!(volume = %self.volume.name, "pinned release #{id} cannot be loaded: {e}");
                    return Err(Refusal::NoSuchRelease);
                }
            },
            None => match vol.snapshot() {
                Some(s) => (s.current.clone(), Some(s)),
                None => return Err(Refusal::NoRelease),
            },
        };
        // The current (or pinned) release first; then, for a path the
        // current one lacks, the recent ones still in their grace period,
        // from the same snapshot (a pinned release has none).
        let pinned = snapshot.is_none();
        let previous = snapshot.iter().flat_map(|s| s.previous().cloned());
        let candidates = std::iter::once(first).chain(previous);
        let mut found = None;
        for (i, r) in candidates.enumerate() {
            match resolve(&r, rel) {
                Ok(Some(hit)) => {
                    found = Some((r, hit, i > 0));
                    break;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(volume = %self.volume.name, release = r.meta.id, "manifest read failed: {e:#}");
                    return Err(Refusal::Manifest);
                }
            }
        }
        let Some((release, (resolved, entry), stale)) = found else {
            return Err(Refusal::NotFound);
        };
        // A pinned release never changes under its path.
        let immutable = |path: &[u8]| pinned || self.volume.is_immutable(path);
        let object = |path, e| Object::released(&vol.dir, path, e, immutable(path));
        let mut a = match entry.kind {
            Kind::Dir if !self.path.trailing_slash => self.answer(redirect(self.path)),
            Kind::Dir => {
                let mut a = None;
                for name in index_candidates(self.headers) {
                    let index = join(&resolved, name);
                    if let Ok(Some((_, e))) = resolve(&release, &index)
                        && e.is_file()
                    {
                        let sent = self.send(object(&index, &e)).await;
                        a = Some(sent.unwrap_or_else(|r| self.refused(r)));
                        break;
                    }
                }
                match a {
                    Some(mut a) => {
                        vary_accept(&mut a.response);
                        a
                    }
                    None => self.listing_of_release(&release, &resolved).await,
                }
            }
            _ => {
                let sent = self.send(object(&resolved, &entry)).await;
                sent.unwrap_or_else(|r| self.refused(r))
            }
        };
        a.release = Some(release.meta.id);
        a.response
            .headers_mut()
            .insert(X_RELEASE, release.id_header.clone());
        if stale && a.outcome != Outcome::None {
            a.outcome = Outcome::Stale;
        }
        Ok(a)
    }

    /// A plain tree's path `rel` (the volume's prefix taken off).
    pub async fn plain(&self, vol: &Arc<PlainVolume>, rel: &[u8]) -> Result<Answer, Refusal> {
        let rel = rel.to_vec();
        let Looked { seen, mut stale } = {
            let (v, r) = (vol.clone(), rel.clone());
            match tokio::task::spawn_blocking(move || v.lookup(&r)).await {
                Ok(looked) => looked?,
                Err(e) => {
                    tracing::error!("plain lookup: {e}");
                    return Err(Refusal::Internal);
                }
            }
        };
        if seen.is_dir && !self.path.trailing_slash {
            return Ok(self.answer(redirect(self.path)));
        }
        let mut target = (rel.clone(), seen.clone());
        let directory = seen.is_dir;
        if directory {
            let mut index = None;
            for name in index_candidates(self.headers) {
                let path = join(&rel, name);
                let (v, p) = (vol.clone(), path.clone());
                if let Ok(Ok(l)) = tokio::task::spawn_blocking(move || v.lookup(&p)).await
                    && !l.seen.is_dir
                {
                    stale |= l.stale;
                    index = Some((path, l.seen));
                    break;
                }
            }
            match index {
                Some(i) => target = i,
                None => {
                    let v = vol.clone();
                    let dir = seen.clone();
                    let (title, root) = (listing::title(self.path), self.path.is_root());
                    let page = tokio::task::spawn_blocking(move || {
                        v.list(&dir).map(|l| listing::render(&title, root, l))
                    })
                    .await;
                    return match page {
                        Ok(Ok(page)) => Ok(self.answer(listing::response(page, self.head))),
                        _ if stale => Err(Refusal::Unreachable),
                        _ => Err(Refusal::NotFound),
                    };
                }
            }
        }
        let (rel, seen) = target;
        let key = ObjectKey::Plain {
            volume: vol.name.clone(),
            path: rel.as_slice().into(),
            size: seen.size,
            mtime_ns: seen.mtime_ns,
        };
        let mut sha = seen.sha.get().copied();
        if sha.is_none() {
            let (cache, k, s) = (self.daemon.cache.clone(), key.clone(), seen.clone());
            sha = tokio::task::spawn_blocking(move || {
                let found = cache.plain_sha(&k);
                if let Some(f) = found {
                    let _ = s.sha.set(f);
                }
                found
            })
            .await
            .ok()
            .flatten();
        }
        let object = Object::Plain {
            meta: Meta {
                size: seen.size,
                mtime: unix((seen.mtime_ns / 1_000_000_000) as i64),
                // Strong: the same (size, mtime) is taken to be the same
                // bytes, which is what revalidation by stat relies on
                // anyway.
                etag: HeaderValue::from_str(&format!("\"{:x}-{:x}\"", seen.size, seen.mtime_ns))
                    .expect("hex digits are a valid header value"),
                name: &rel,
                immutable: self.volume.is_immutable(&rel),
            },
            key,
            sha,
            real: seen.real.clone(),
            mtime_ns: seen.mtime_ns,
        };
        let mut a = self.send(object).await.unwrap_or_else(|r| self.refused(r));
        if directory {
            vary_accept(&mut a.response);
        }
        if stale {
            a.response
                .headers_mut()
                .insert(X_STALE, HeaderValue::from_static("origin-unreachable"));
            if a.outcome != Outcome::None {
                a.outcome = Outcome::Stale;
            }
        }
        Ok(a)
    }

    /// A released directory's listing, from the daemon's cache of them or
    /// made off the async threads.
    async fn listing_of_release(&self, release: &Arc<LoadedRelease>, dir: &[u8]) -> Answer {
        let (r, dir) = (release.clone(), dir.to_vec());
        let list = move || {
            let (entries, left_out) = r.manifest.list_first(&dir, listing::MAX_LISTED)?;
            let entries = entries.into_iter().map(|(name, e)| ListEntry {
                name,
                is_dir: e.kind == Kind::Dir,
                size: e.size,
                mtime: e.mtime,
            });
            Ok(Listed {
                entries: entries.collect(),
                left_out,
            })
        };
        let page = self
            .daemon
            .listings
            .release_page(&self.volume.name, release.meta.id, self.path, list)
            .await;
        match page {
            Ok(page) => self.answer(listing::response(page, self.head)),
            Err(e) => {
                tracing::error!(volume = %self.volume.name, release = release.meta.id, "listing failed: {e:#}");
                self.refused(Refusal::Manifest)
            }
        }
    }
}

/// A request's pin, once its tag is looked up.
enum Pinned {
    Id(u64),
    Tag(Arc<super::released::Snapshot>),
}

/// What `@...` as the first segment after a prefix names.
#[derive(Debug, PartialEq, Eq)]
enum Pin<'p> {
    /// `@<id>`: a release, forever.
    Id(u64),
    /// `@<tag>`: whatever the tag names now.
    Tag(&'p str),
}

/// `@<id>` pins a release, `@<tag>` follows a tag (tag names are never all
/// digits, so the two never clash).
fn pin(seg: &[u8]) -> Option<Pin<'_>> {
    let rest = seg.strip_prefix(b"@")?;
    if !rest.is_empty() && rest.iter().all(u8::is_ascii_digit) {
        if rest.len() > 19 {
            return None;
        }
        return std::str::from_utf8(rest).ok()?.parse().ok().map(Pin::Id);
    }
    let tag = std::str::from_utf8(rest).ok()?;
    crate::volume::tags::check_name(tag).ok()?;
    Some(Pin::Tag(tag))
}

/// Looks a path up, following symlinks inside the release. Returns the
/// final path (borrowed when no link was followed) and its entry (a file
/// or a directory).
fn resolve<'p>(
    release: &LoadedRelease,
    path: &'p [u8],
) -> anyhow::Result<Option<(Cow<'p, [u8]>, Entry)>> {
    if path.is_empty() {
        return Ok(Some((Cow::Borrowed(path), root_entry(release))));
    }
    // The common case in one lookup: the release walk never descends into
    // a symlink, so a path the manifest lists as a file or directory has
    // only real directories above it.
    if let Some(entry) = release.entry(path)?
        && entry.kind != Kind::Symlink
    {
        return Ok(Some((Cow::Borrowed(path), entry)));
    }
    // Walk segment by segment from the root. The segments still to walk
    // are a stack (next on top): a link pushes its target's segments, so
    // each hop costs the length of its target, never a rebuild of the rest
    // of the path. `resolved` is always a real directory of the release.
    let mut todo: Vec<Cow<'_, [u8]>> = path.rsplit(|&b| b == b'/').map(Cow::Borrowed).collect();
    let mut resolved: Vec<u8> = Vec::new();
    // What `resolved` is: the root until a directory is entered.
    let mut here = root_entry(release);
    let mut hops = 0;
    while let Some(seg) = todo.pop() {
        match &*seg {
            b"" | b"." => continue,
            b".." => {
                // Only a link's target can climb; above the root is outside.
                if resolved.is_empty() {
                    return Ok(None);
                }
                let cut = resolved.iter().rposition(|&b| b == b'/').unwrap_or(0);
                resolved.truncate(cut);
                here = match resolved.is_empty() {
                    true => root_entry(release),
                    false => match release.entry(&resolved)? {
                        Some(e) => e,
                        None => return Ok(None),
                    },
                };
                continue;
            }
            _ => {}
        }
        let candidate = join(&resolved, &seg);
        let Some(entry) = release.entry(&candidate)? else {
            return Ok(None);
        };
        match entry.kind {
            Kind::Symlink => {
                hops += 1;
                let escapes = crate::volume::check_symlink(&resolved, &entry.target).is_err();
                if hops > MAX_LINK_HOPS || escapes {
                    return Ok(None);
                }
                todo.extend(
                    entry
                        .target
                        .rsplit(|&b| b == b'/')
                        .map(|s| Cow::Owned(s.to_vec())),
                );
            }
            // A file ends the walk; anything after it (even a slash) is
            // not there.
            Kind::File | Kind::Remote if todo.is_empty() => {
                return Ok(Some((candidate.into(), entry)));
            }
            Kind::File | Kind::Remote => return Ok(None),
            Kind::Dir => {
                resolved = candidate;
                here = entry;
            }
        }
    }
    Ok(Some((resolved.into(), here)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins() {
        assert_eq!(pin(b"@12"), Some(Pin::Id(12)));
        assert_eq!(pin(b"@"), None);
        assert_eq!(pin(b"@1a"), Some(Pin::Tag("1a")));
        assert_eq!(
            pin(b"@current-passed-ci"),
            Some(Pin::Tag("current-passed-ci"))
        );
        assert_eq!(pin(b"12"), None);
        assert_eq!(pin(b"passed"), None);
        assert_eq!(pin(b"@99999999999999999999"), None);
        assert_eq!(pin(b"@.hidden"), None);
        assert_eq!(pin(b"@a@b"), None);
        assert_eq!(pin(b"@\xff"), None);
    }
}

//! Serving a plain directory tree (an rsync or reprepro mirror, an AFS
//! read-only path) as it is.
//!
//! A file is known by `(path, size, mtime)`. Files matching the immutable
//! patterns are trusted until evicted once seen; everything else (index
//! pages, `Release`, `Packages*`, `repodata/`) is checked again by `stat`
//! at most every `revalidate_after`. A changed size or mtime makes a new
//! object, so the cache never serves an old index for a new one.
//!
//! No path may leave the tree: the request path is already free of `..`
//! (see `path`), and the resolved path (symlinks followed) must still lie
//! under the tree's own resolved root.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use globset::GlobSet;

use super::respond::ListEntry;

use crate::volume::manifest::Sha256Digest;

/// What `stat` said about a path, and when.
#[derive(Debug)]
pub struct Seen {
    pub is_dir: bool,
    pub size: u64,
    pub mtime_ns: i128,
    /// The resolved path on the origin.
    pub real: PathBuf,
    checked: Instant,
    /// The content's sha256, once a fill recorded it.
    pub sha: OnceLock<Sha256Digest>,
}

/// Why a path is not served.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    /// It resolves outside the tree (a symlink pointing out).
    Outside,
}

pub struct PlainVolume {
    pub name: Arc<str>,
    /// The tree as configured.
    pub root: PathBuf,
    immutable: Arc<GlobSet>,
    revalidate_after: Duration,
    seen: moka::sync::Cache<Vec<u8>, Arc<Seen>>,
}

impl PlainVolume {
    pub fn new(
        name: &str,
        root: &Path,
        immutable: Arc<GlobSet>,
        revalidate_after: Duration,
    ) -> PlainVolume {
        PlainVolume {
            name: name.into(),
            root: root.to_path_buf(),
            immutable,
            revalidate_after,
            // Bounded by the bytes of the paths it remembers.
            seen: moka::sync::Cache::builder()
                .max_capacity(16 << 20)
                .weigher(|k: &Vec<u8>, _| (k.len() + 200) as u32)
                .build(),
        }
    }

    /// Whether a file never changes under its name.
    pub fn is_immutable(&self, rel: &[u8]) -> bool {
        self.immutable.is_match(Path::new(OsStr::from_bytes(rel)))
    }

    /// Looks a path up: from memory when still fresh, else by `stat`.
    /// Blocking.
    pub fn lookup(&self, rel: &[u8]) -> Result<Arc<Seen>, Refusal> {
        if let Some(s) = self.seen.get(rel) {
            let fresh = s.checked.elapsed() < self.revalidate_after
                || (!s.is_dir && self.is_immutable(rel));
            if fresh {
                return Ok(s);
            }
        }
        let seen = Arc::new(self.stat(rel)?);
        self.seen.insert(rel.to_vec(), seen.clone());
        Ok(seen)
    }

    fn stat(&self, rel: &[u8]) -> Result<Seen, Refusal> {
        let root = std::fs::canonicalize(&self.root).map_err(|e| {
            tracing::error!(volume = %self.name, root = %self.root.display(), "tree unreadable: {e}");
            Refusal::NotFound
        })?;
        let real = std::fs::canonicalize(root.join(OsStr::from_bytes(rel)))
            .map_err(|_| Refusal::NotFound)?;
        if !real.starts_with(&root) {
            tracing::warn!(volume = %self.name, path = %String::from_utf8_lossy(rel), "refused: resolves outside the tree");
            return Err(Refusal::Outside);
        }
        let m = std::fs::metadata(&real).map_err(|_| Refusal::NotFound)?;
        if !m.is_dir() && !m.is_file() {
            return Err(Refusal::NotFound);
        }
        Ok(Seen {
            is_dir: m.is_dir(),
            size: if m.is_file() { m.len() } else { 0 },
            mtime_ns: crate::cache::mtime_ns(&m),
            real,
            checked: Instant::now(),
            sha: OnceLock::new(),
        })
    }

    /// A directory's entries: name, whether a directory, size, mtime in
    /// seconds. Entries that resolve outside the tree are left out.
    pub fn list(&self, dir: &Seen) -> std::io::Result<Vec<ListEntry>> {
        let root = std::fs::canonicalize(&self.root)?;
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir.real)? {
            let e = e?;
            let Ok(real) = std::fs::canonicalize(e.path()) else {
                continue;
            };
            if !real.starts_with(&root) {
                continue;
            }
            let Ok(m) = std::fs::metadata(&real) else {
                continue;
            };
            out.push(ListEntry {
                name: e.file_name().as_bytes().to_vec(),
                is_dir: m.is_dir(),
                size: m.len(),
                mtime: (crate::cache::mtime_ns(&m) / 1_000_000_000) as i64,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Whether the tree's root can be read.
    pub fn readable(&self) -> bool {
        std::fs::read_dir(&self.root).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(root: &Path) -> PlainVolume {
        let mut globs = globset::GlobSetBuilder::new();
        for g in crate::config::DEFAULT_IMMUTABLE {
            globs.add(globset::Glob::new(g).unwrap());
        }
        let globs = Arc::new(globs.build().unwrap());
        PlainVolume::new("t", root, globs, Duration::from_secs(60))
    }

    #[test]
    fn default_immutable_patterns() {
        let v = volume(Path::new("/nonexistent"));
        for p in [
            "packages/ab/cd/pkg-1.0.tar.gz",
            "web/packages/ab/pkg-1.0.tar.gz",
            "pkg-1.0-py3-none-any.whl",
            "pool/main/h/hello/hello_2.10_amd64.deb",
            "Packages/x.rpm",
            "dists/jammy/main/binary-amd64/by-hash/SHA256/abc",
        ] {
            assert!(v.is_immutable(p.as_bytes()), "{p}");
        }
        for p in [
            "simple/pkg/index.html",
            "dists/jammy/InRelease",
            "dists/jammy/main/binary-amd64/Packages.gz",
            "repodata/repomd.xml",
            "pkg-1.0.tar.gz",
        ] {
            assert!(!v.is_immutable(p.as_bytes()), "{p}");
        }
    }

    #[test]
    fn symlinks_out_of_the_tree_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::fs::write(root.join("sub/ok"), b"ok").unwrap();
        std::os::unix::fs::symlink("../../secret", root.join("sub/out")).unwrap();
        std::os::unix::fs::symlink("ok", root.join("sub/in")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
        let v = volume(&root);
        assert_eq!(v.lookup(b"sub/out").unwrap_err(), Refusal::Outside);
        assert_eq!(v.lookup(b"up/secret").unwrap_err(), Refusal::Outside);
        assert_eq!(v.lookup(b"sub/in").unwrap().size, 2);
        assert_eq!(v.lookup(b"missing").unwrap_err(), Refusal::NotFound);
        let listed: Vec<Vec<u8>> = v
            .list(&v.lookup(b"sub").unwrap())
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(listed, vec![b"in".to_vec(), b"ok".to_vec()]);
    }
}

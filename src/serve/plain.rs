//! Serving a plain directory tree (an rsync or reprepro mirror, an AFS
//! read-only path) as it is.
//!
//! A file is known by `(path, size, mtime)`. Files matching the immutable
//! patterns are trusted until evicted once seen; everything else (index
//! pages, `Release`, `Packages*`, `repodata/`) is checked again by `stat`
//! at most every `revalidate_after`. A changed size or mtime makes a new
//! object, so the cache never serves an old index for a new one.
//!
//! When the tree cannot be read at all (its root is gone, unreadable, or
//! empty after having had files: an unmounted network filesystem shows its
//! bare mount point), what was last seen of a path is served for up to
//! `stale_if_unreachable` more, marked stale, so builds go on against the
//! cache; a path never seen gets a 502, not a 404 a client might believe.
//!
//! No path may leave the tree: the request path is already free of `..`
//! (see `path`), and the resolved path (symlinks followed) must still lie
//! under the tree's own resolved root.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::immutable::Immutable;
use super::listing::{ListEntry, Listed, MAX_LISTED};
use super::refusal::Refusal;

use crate::digest::Sha256Digest;

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

/// A path looked up: what is known of it, and whether that is only what
/// was last seen before the tree became unreachable.
pub struct Looked {
    pub seen: Arc<Seen>,
    pub stale: bool,
}

/// Weighs a remembered path by its length and the entry beside it.
#[derive(Clone)]
pub struct ByPathLength;

impl quick_cache::Weighter<Vec<u8>, Arc<Seen>> for ByPathLength {
    fn weight(&self, path: &Vec<u8>, _: &Arc<Seen>) -> u64 {
        path.len() as u64 + 200
    }
}

pub struct PlainVolume {
    pub name: Arc<str>,
    /// The tree as configured.
    pub root: PathBuf,
    immutable: Arc<Immutable>,
    revalidate_after: Duration,
    stale_if_unreachable: Duration,
    seen: quick_cache::sync::Cache<Vec<u8>, Arc<Seen>, ByPathLength>,
    /// Some path was found in the tree since start (so an empty root now
    /// means unmounted, not a tree that is empty).
    had_files: AtomicBool,
}

impl PlainVolume {
    pub fn new(
        name: &str,
        root: &Path,
        immutable: Arc<Immutable>,
        revalidate_after: Duration,
        stale_if_unreachable: Duration,
    ) -> PlainVolume {
        PlainVolume {
            name: name.into(),
            root: root.to_path_buf(),
            immutable,
            revalidate_after,
            stale_if_unreachable,
            had_files: AtomicBool::new(false),
            // Bounded by the bytes of the paths it remembers.
            seen: quick_cache::sync::Cache::with_weighter(16 << 10, 16 << 20, ByPathLength),
        }
    }

    /// Whether a file never changes under its name.
    pub fn is_immutable(&self, rel: &[u8]) -> bool {
        self.immutable.is_match(rel)
    }

    /// Looks a path up: from memory when still fresh, else by `stat`; when
    /// the tree is unreachable, from memory while the stale limit allows.
    /// Blocking.
    pub fn lookup(&self, rel: &[u8]) -> Result<Looked, Refusal> {
        let known = self.seen.get(rel);
        if let Some(s) = &known {
            let age = s.checked.elapsed();
            if age < self.revalidate_after || (!s.is_dir && self.is_immutable(rel)) {
                return Ok(Looked {
                    seen: s.clone(),
                    stale: false,
                });
            }
        }
        match self.stat(rel) {
            Ok(seen) => {
                self.had_files.store(true, Ordering::Relaxed);
                let seen = Arc::new(seen);
                self.seen.insert(rel.to_vec(), seen.clone());
                Ok(Looked { seen, stale: false })
            }
            Err(Refusal::NotFound) if !self.reachable() => {
                let limit = self.revalidate_after + self.stale_if_unreachable;
                match known {
                    Some(seen) if seen.checked.elapsed() < limit => {
                        tracing::warn!(volume = %self.name, path = %String::from_utf8_lossy(rel), "tree unreachable: serving what was last seen");
                        Ok(Looked { seen, stale: true })
                    }
                    _ => {
                        tracing::error!(volume = %self.name, root = %self.root.display(), path = %String::from_utf8_lossy(rel), "tree unreachable");
                        Err(Refusal::Unreachable)
                    }
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the tree can be read: its root lists, and is not empty
    /// when it once had files.
    fn reachable(&self) -> bool {
        match std::fs::read_dir(&self.root) {
            Ok(mut entries) => entries.next().is_some() || !self.had_files.load(Ordering::Relaxed),
            Err(_) => false,
        }
    }

    fn stat(&self, rel: &[u8]) -> Result<Seen, Refusal> {
        let root = std::fs::canonicalize(&self.root).map_err(|_| Refusal::NotFound)?;
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

    /// A directory's entries (name, whether a directory, size, mtime in
    /// seconds): the first `MAX_LISTED` names in byte order, and how many
    /// more there were. Only the names shown are stat'ed, and memory holds
    /// only those, however large the directory. Entries that resolve
    /// outside the tree are left out.
    pub fn list(&self, dir: &Seen) -> std::io::Result<Listed> {
        let root = std::fs::canonicalize(&self.root)?;
        // The smallest names seen so far, largest on top to be dropped.
        let mut first = std::collections::BinaryHeap::new();
        let mut left_out = 0;
        for e in std::fs::read_dir(&dir.real)? {
            first.push(e?.file_name());
            if first.len() > MAX_LISTED {
                first.pop();
                left_out += 1;
            }
        }
        let mut entries = Vec::with_capacity(first.len());
        for name in first.into_sorted_vec() {
            let path = dir.real.join(&name);
            let Ok(real) = std::fs::canonicalize(&path) else {
                continue;
            };
            if !real.starts_with(&root) {
                continue;
            }
            let Ok(m) = std::fs::metadata(&real) else {
                continue;
            };
            entries.push(ListEntry {
                name: name.as_bytes().to_vec(),
                is_dir: m.is_dir(),
                size: m.len(),
                mtime: (crate::cache::mtime_ns(&m) / 1_000_000_000) as i64,
            });
        }
        Ok(Listed { entries, left_out })
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
        let globs = Arc::new(Immutable::new(crate::config::DEFAULT_IMMUTABLE).unwrap());
        PlainVolume::new(
            "t",
            root,
            globs,
            Duration::from_secs(60),
            Duration::from_secs(60),
        )
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
        assert_eq!(v.lookup(b"sub/out").err(), Some(Refusal::Outside));
        assert_eq!(v.lookup(b"up/secret").err(), Some(Refusal::Outside));
        assert_eq!(v.lookup(b"sub/in").unwrap().seen.size, 2);
        assert_eq!(v.lookup(b"missing").err(), Some(Refusal::NotFound));
        let listed: Vec<Vec<u8>> = v
            .list(&v.lookup(b"sub").unwrap().seen)
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(listed, vec![b"in".to_vec(), b"ok".to_vec()]);
    }

    #[test]
    fn a_huge_directory_lists_its_first_names_in_order_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir_all(root.join("big")).unwrap();
        let n = MAX_LISTED + 25;
        // Created in an order unlike the listing's, so the bound must pick.
        for i in (0..n).rev() {
            std::fs::write(root.join(format!("big/{i:06}")), b"").unwrap();
        }
        let v = volume(&root);
        let listed = v.list(&v.lookup(b"big").unwrap().seen).unwrap();
        assert_eq!(listed.left_out, 25);
        assert_eq!(listed.entries.len(), MAX_LISTED);
        let names: Vec<String> = listed
            .entries
            .iter()
            .map(|e| String::from_utf8(e.name.clone()).unwrap())
            .collect();
        let expected: Vec<String> = (0..MAX_LISTED).map(|i| format!("{i:06}")).collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn an_unreachable_tree_is_served_stale_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), b"hi").unwrap();
        let globs = Arc::new(Immutable::new::<&str>(&[]).unwrap());
        // Revalidated on every lookup; stale for an hour, or not at all.
        let lenient = PlainVolume::new(
            "t",
            &root,
            globs.clone(),
            Duration::ZERO,
            Duration::from_secs(3600),
        );
        let strict = PlainVolume::new("t", &root, globs, Duration::ZERO, Duration::ZERO);
        for v in [&lenient, &strict] {
            assert!(!v.lookup(b"index.html").unwrap().stale);
        }
        // Unmounted: the mount point is left, empty.
        std::fs::rename(&root, dir.path().join("away")).unwrap();
        std::fs::create_dir_all(&root).unwrap();
        let l = lenient.lookup(b"index.html").unwrap();
        assert!(l.stale);
        assert_eq!(l.seen.size, 2);
        assert_eq!(
            strict.lookup(b"index.html").err(),
            Some(Refusal::Unreachable)
        );
        // Never seen: unreachable, not missing.
        assert_eq!(lenient.lookup(b"other").err(), Some(Refusal::Unreachable));
        // Gone altogether.
        std::fs::remove_dir(&root).unwrap();
        assert!(lenient.lookup(b"index.html").unwrap().stale);
        // Back: fresh again, and a missing file is missing.
        std::fs::rename(dir.path().join("away"), &root).unwrap();
        assert!(!lenient.lookup(b"index.html").unwrap().stale);
        assert_eq!(lenient.lookup(b"other").err(), Some(Refusal::NotFound));
    }
}

//! Walks a directory tree in manifest key order.
//!
//! Directories are visited in byte order of their relative paths (a
//! min-heap of the directories still to visit), and each directory's
//! entries in byte order of their names. Together that is exactly the order
//! of manifest keys (`<dir>\0<name>`), so a release streams the walk
//! against the previous manifest and into the new one without ever holding
//! the whole tree. Memory is bounded by the directories waiting in the heap
//! and the names of the largest single directory.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::volume::check_symlink;
use crate::volume::manifest::lossy;

/// One entry of the tree.
pub struct Found {
    /// Relative path of the directory holding it (empty for the root).
    pub dir: Vec<u8>,
    pub name: Vec<u8>,
    /// Absolute path on disk.
    pub path: PathBuf,
    pub meta: Metadata,
    /// The target, for a symlink.
    pub target: Option<Vec<u8>>,
}

impl Found {
    pub fn rel_path(&self) -> Vec<u8> {
        join(&self.dir, &self.name)
    }
}

pub struct Walker {
    root: PathBuf,
    pending: BinaryHeap<Reverse<Vec<u8>>>,
    dir: Vec<u8>,
    names: std::vec::IntoIter<Vec<u8>>,
}

impl Walker {
    pub fn new(root: &Path) -> Result<Walker> {
        let meta =
            fs::metadata(root).with_context(|| format!("cannot read tree {}", root.display()))?;
        if !meta.is_dir() {
            bail!("{} is not a directory", root.display());
        }
        let mut pending = BinaryHeap::new();
        pending.push(Reverse(Vec::new()));
        Ok(Walker {
            root: root.to_path_buf(),
            pending,
            dir: Vec::new(),
            names: Vec::new().into_iter(),
        })
    }

    fn abs(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(OsStr::from_bytes(rel))
        }
    }

    /// The next entry in key order, or `None` at the end.
    pub fn next_entry(&mut self) -> Option<Result<Found>> {
        loop {
            if let Some(name) = self.names.next() {
                return Some(self.found(name));
            }
            let Reverse(dir) = self.pending.pop()?;
            if let Err(e) = self.enter(dir) {
                return Some(Err(e));
            }
        }
    }

    fn enter(&mut self, dir: Vec<u8>) -> Result<()> {
        let abs = self.abs(&dir);
        let mut names = Vec::new();
        let rd = fs::read_dir(&abs).with_context(|| format!("cannot read {}", abs.display()))?;
        for ent in rd {
            let ent = ent.with_context(|| format!("cannot read {}", abs.display()))?;
            names.push(ent.file_name().as_bytes().to_vec());
        }
        names.sort_unstable();
        self.dir = dir;
        self.names = names.into_iter();
        Ok(())
    }

    fn found(&mut self, name: Vec<u8>) -> Result<Found> {
        let rel = join(&self.dir, &name);
        let path = self.abs(&rel);
        let meta = fs::symlink_metadata(&path)
            .with_context(|| format!("cannot stat {}", path.display()))?;
        let ft = meta.file_type();
        let mut target = None;
        if ft.is_dir() {
            self.pending.push(Reverse(rel));
        } else if ft.is_symlink() {
            let t = fs::read_link(&path)
                .with_context(|| format!("cannot read symlink {}", path.display()))?;
            let t = t.as_os_str().as_bytes().to_vec();
            check_symlink(&self.dir, &t).with_context(|| {
                format!(
                    "symlink {} -> {} points outside the tree",
                    lossy(&rel),
                    lossy(&t)
                )
            })?;
            target = Some(t);
        } else if !ft.is_file() {
            bail!(
                "{}: unsupported file type (only files, directories and symlinks can be released)",
                path.display()
            );
        }
        Ok(Found {
            dir: self.dir.clone(),
            name,
            path,
            meta,
            target,
        })
    }
}

/// Joins a relative directory and a name.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::manifest::key;

    #[test]
    fn walk_yields_keys_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in ["a/b", "a-b", "a/c/d", "z"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        for f in ["a/b/x", "a-b/y", "a/c/d/e", "a/file", "top", "a/b/ü"] {
            fs::write(r.join(f), f).unwrap();
        }
        std::os::unix::fs::symlink("../top", r.join("a/ln")).unwrap();
        let mut w = Walker::new(r).unwrap();
        let mut keys = Vec::new();
        while let Some(f) = w.next_entry() {
            let f = f.unwrap();
            keys.push(key(&f.dir, &f.name));
        }
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys.len(), 13);
    }

    #[test]
    fn escaping_symlink_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("../../etc", dir.path().join("bad")).unwrap();
        let mut w = Walker::new(dir.path()).unwrap();
        let err = w.next_entry().unwrap().err().unwrap();
        assert!(format!("{err:#}").contains("bad -> ../../etc"), "{err:#}");
    }
}

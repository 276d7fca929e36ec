//! inotify watches: an independent count of the daemon's origin reads, and
//! a record of every change made under a tree.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::walk;

/// Counts opens of one file through inotify: an independent count of the
/// daemon's origin reads.
pub struct OpenWatch {
    fd: i32,
}

impl OpenWatch {
    pub fn new(file: &Path) -> OpenWatch {
        use std::os::unix::ffi::OsStrExt;
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1");
        let c = std::ffi::CString::new(file.as_os_str().as_bytes()).unwrap();
        let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_OPEN) };
        assert!(wd >= 0, "inotify_add_watch {}", file.display());
        OpenWatch { fd }
    }

    /// Opens seen since the last call.
    pub fn opens(&self) -> usize {
        let mut n = 0;
        let mut buf = [0u8; 4096];
        loop {
            let r = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if r <= 0 {
                return n;
            }
            let mut at = 0usize;
            while at < r as usize {
                let ev = unsafe { &*(buf.as_ptr().add(at) as *const libc::inotify_event) };
                if ev.mask & libc::IN_OPEN != 0 {
                    n += 1;
                }
                at += std::mem::size_of::<libc::inotify_event>() + ev.len as usize;
            }
        }
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        unsafe { libc::close(self.fd) };
    }
}

/// Every change made under a tree, seen through inotify on each of its
/// directories: writes (and opens for writing), creations, deletions,
/// renames and metadata changes. Reads, and the access times they update,
/// are not changes.
pub struct ChangeWatch {
    fd: i32,
    dirs: std::collections::HashMap<i32, PathBuf>,
}

const CHANGES: u32 = libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_ATTRIB
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_MOVE_SELF;

impl ChangeWatch {
    /// Watches `root` and every directory below it (a directory created
    /// later shows as a creation in its parent).
    pub fn new(root: &Path) -> ChangeWatch {
        // SAFETY: no preconditions.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1");
        let mut watch = ChangeWatch {
            fd,
            dirs: Default::default(),
        };
        let dirs = std::iter::once(root.to_path_buf()).chain(
            walk(root)
                .into_iter()
                .filter(|p| fs::symlink_metadata(p).unwrap().is_dir()),
        );
        for dir in dirs {
            let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
            // SAFETY: a valid fd and NUL-terminated path.
            let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), CHANGES | libc::IN_ONLYDIR) };
            assert!(wd >= 0, "inotify_add_watch {}", dir.display());
            watch.dirs.insert(wd, dir);
        }
        watch
    }

    /// The changes seen since the last call, as `path: events`.
    pub fn changes(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u64; 1024];
        let size = std::mem::size_of_val(&buf);
        loop {
            // SAFETY: reading into our own buffer, aligned for the events.
            let r = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), size) };
            if r <= 0 {
                return out;
            }
            let bytes = buf.as_ptr().cast::<u8>();
            let mut at = 0usize;
            while at < r as usize {
                // SAFETY: the kernel wrote whole events; `at` is at one.
                let ev = unsafe { &*(bytes.add(at) as *const libc::inotify_event) };
                let header = std::mem::size_of::<libc::inotify_event>();
                // SAFETY: the name follows the header, `len` bytes long.
                let name =
                    unsafe { std::slice::from_raw_parts(bytes.add(at + header), ev.len as usize) };
                let name = String::from_utf8_lossy(name)
                    .trim_end_matches('\0')
                    .to_string();
                let dir = self
                    .dirs
                    .get(&ev.wd)
                    .map_or("?".into(), |d| d.display().to_string());
                out.push(format!("{dir}/{name}: {:#x}", ev.mask));
                at += header + ev.len as usize;
            }
        }
    }
}

impl Drop for ChangeWatch {
    fn drop(&mut self) {
        // SAFETY: our own fd.
        unsafe { libc::close(self.fd) };
    }
}

/// Every path under `root` with its type, size, mtime, mode and (for
/// files) content hash, (for symlinks) target: two snapshots are equal
/// only if nothing under `root` was written, created, removed or touched.
pub fn tree_snapshot(root: &Path) -> Vec<(PathBuf, String)> {
    use std::os::unix::fs::MetadataExt;
    let mut all: Vec<(PathBuf, String)> = walk(root)
        .into_iter()
        .map(|p| {
            let m = fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else if m.is_file() {
                unimirror::volume::manifest::Sha256Digest::of(&fs::read(&p).unwrap()).hex()
            } else {
                "dir".to_string()
            };
            let state = format!(
                "{what} size={} mtime={}.{:09} ctime={}.{:09} mode={:o} ino={}",
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
                m.mode(),
                m.ino()
            );
            (p, state)
        })
        .collect();
    all.sort();
    all
}

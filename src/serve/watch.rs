//! Noticing a new release at once where the kernel can tell us.
//!
//! The updater replaces `<volume>/current` and `<volume>/tags/<name>` by a
//! rename; inotify reports that on a local filesystem, and the daemon
//! refreshes the volume right away.
//! On network filesystems (NFS, AFS, CephFS) inotify stays silent about
//! changes made by other hosts, so the pointer is also polled every
//! `daemon.poll_interval`: the watcher only makes the common case faster.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Notify;

/// Watches the volume directories that exist now, on a thread of its own,
/// and wakes `wake` whenever a `current` pointer or a tag is written in one
/// of them (a `tags/` directory made later is watched from then on).
/// Returns how many volume directories are watched.
pub fn spawn(dirs: Vec<PathBuf>, wake: Arc<Notify>) -> usize {
    // SAFETY: plain syscalls on a descriptor this function owns.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        tracing::info!("inotify unavailable; polling only");
        return 0;
    }
    let mut roots = HashMap::new();
    let mut tag_dirs = HashSet::new();
    for dir in dirs {
        if let Some(wd) = add_watch(fd, &dir) {
            tag_dirs.extend(add_watch(fd, &dir.join("tags")));
            roots.insert(wd, dir);
        }
    }
    let watched = roots.len();
    if watched == 0 {
        // SAFETY: closing the descriptor opened above.
        unsafe { libc::close(fd) };
        return 0;
    }
    let spawned = std::thread::Builder::new()
        .name("release-watch".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                // SAFETY: reading into a buffer we own, of the given length.
                let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    tracing::warn!("inotify read failed; polling only from now on");
                    return;
                }
                let mut changed = false;
                for (wd, name) in events(&buf[..n as usize]) {
                    if tag_dirs.contains(&wd) || name == b"current" {
                        changed = true;
                    } else if name == b"tags"
                        && let Some(root) = roots.get(&wd)
                    {
                        tag_dirs.extend(add_watch(fd, &root.join("tags")));
                        changed = true;
                    }
                }
                if changed {
                    wake.notify_one();
                }
            }
        });
    if spawned.is_err() {
        return 0;
    }
    watched
}

/// Watches `dir` for files renamed in, written or created; its watch
/// descriptor, unless it cannot be watched (it does not exist).
fn add_watch(fd: i32, dir: &Path) -> Option<i32> {
    let c = CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mask = libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE | libc::IN_CREATE;
    // SAFETY: `c` is a valid C string for the duration of the call.
    let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), mask) };
    (wd >= 0).then_some(wd)
}

/// The watch descriptors and file names in a buffer of inotify events.
fn events(mut buf: &[u8]) -> impl Iterator<Item = (i32, &[u8])> {
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    std::iter::from_fn(move || {
        if buf.len() < HEADER {
            return None;
        }
        // The `len` field: the last u32 of the header.
        let len = u32::from_ne_bytes(buf[HEADER - 4..HEADER].try_into().ok()?) as usize;
        // The `wd` field: the first i32.
        let wd = i32::from_ne_bytes(buf[..4].try_into().ok()?);
        let end = (HEADER + len).min(buf.len());
        let name = &buf[HEADER..end];
        buf = &buf[end..];
        // The name is NUL-padded.
        let trimmed = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        Some((wd, trimmed))
    })
}

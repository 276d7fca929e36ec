//! Named fault points, so tests can kill or stop a real process at an exact
//! step of a multi-step write and then check what survives.
//!
//! `UNIMIRROR_FAULT=<point>:<kill|stop>[@<n>]` makes the process send itself
//! SIGKILL (a real `kill -9`: no destructors, no flushing) or SIGSTOP (so a
//! test can hold it mid-operation) the `n`th time it passes `<point>`
//! (default: the first). Unset, a fault point costs one relaxed load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Fault {
    point: String,
    signal: i32,
    nth: u64,
    seen: AtomicU64,
}

fn configured() -> Option<&'static Fault> {
    static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
    FAULT
        .get_or_init(|| {
            let spec = std::env::var("UNIMIRROR_FAULT").ok()?;
            let (point, action) = spec.split_once(':')?;
            let (action, nth) = match action.split_once('@') {
                Some((a, n)) => (a, n.parse().ok()?),
                None => (action, 1),
            };
            let signal = match action {
                "kill" => libc::SIGKILL,
                "stop" => libc::SIGSTOP,
                _ => return None,
            };
            Some(Fault {
                point: point.to_string(),
                signal,
                nth,
                seen: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Marks a step; see the module documentation.
pub fn point(name: &str) {
    let Some(f) = configured() else { return };
    if f.point != name {
        return;
    }
    if f.seen.fetch_add(1, Ordering::Relaxed) + 1 == f.nth {
        // SAFETY: raising a signal at ourselves has no preconditions.
        unsafe {
            libc::raise(f.signal);
        }
    }
}

/// A point only a release to an S3 origin passes, after each part of a
/// multipart upload (an object over 64 MiB): killed there, the updater
/// leaves an upload for `gc` to abort.
pub const S3_PART_UPLOADED: &str = "object-part-uploaded";

/// The names of every fault point a release to a filesystem origin
/// passes, for tests that visit them all.
pub const POINTS: &[&str] = &[
    "locked",
    "object-temp-written",
    "objects-renamed",
    "manifest-written",
    "manifest-renamed",
    "meta-written",
    "signature-written",
    "pointer-before-rename",
    "pointer-renamed",
];

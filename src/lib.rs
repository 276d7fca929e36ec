//! unimirror: a caching mirror daemon for package ecosystems (`unimirror`)
//! and the updater that publishes the volumes it serves (`unimirror-update`).
//!
//! Where to start reading:
//! - [`volume`]: the on-origin format of a released volume (manifest,
//!   objects, pointer, history); every guarantee rests on it.
//! - [`release`]: publishing a tree as a new release, and `status`,
//!   `rollback`, `gc`.
//! - [`config`]: the configuration file both binaries read.
//! - [`serve`]: the daemon's HTTP side (routing, releases, responses,
//!   connections); [`cache`]: its memory and disk tiers.
//! - [`cli`]: the two command lines; the binaries in `src/bin` only call it.

pub mod allocator;
pub mod cache;
pub mod cli;
pub mod config;
pub mod dates;
pub mod digest;
pub mod durable;
pub mod fault;
pub mod html;
pub mod metrics;
pub mod origin;
pub mod progress;
pub mod release;
pub mod serve;
pub mod sync;
pub mod upstream;
pub mod volume;

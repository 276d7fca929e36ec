//! The daemon's HTTP side: what it serves, how one request becomes one
//! response, and the server that runs it all ([`run`]).
//!
//! Modules by concern, each importing only those listed before it (no
//! import circles; `mod.rs` itself only declares and re-exports):
//! - `log`: the daemon's log output, batched, and the access log line.
//! - `path`: request paths, decoded once and checked; `range`: the Range
//!   header; `immutable`: which paths never change.
//! - `body`: the response body type, and the wrapper that counts and logs
//!   a response when it ends.
//! - `reply`: what responses are built of (text answers, redirects, header
//!   values, cache and security policies); `refusal`: why a request is not
//!   served, and the one place a refusal becomes a status.
//! - `media`: content types by name, and PEP 691 negotiation.
//! - `listing`: directory pages.
//! - `recent`, `released`, `plain`: the two kinds of volume (`recent`:
//!   where a release's recently asked-for paths are in its manifest);
//!   `watch`: inotify on the volumes' pointers.
//! - `daemon`: what the daemon serves (`Daemon`, `Volume`), shared by
//!   every connection.
//! - `answer`: a request for a volume's path (`Ask`) and what it ends in
//!   (`Answer`).
//! - `send`: sending one object (`Object`): conditional requests, ranges,
//!   HEAD, and the cache tiers.
//! - `lookup`: finding a volume's path: releases (current, grace period,
//!   pinned `@<id>`, tags `@<tag>`, symlinks inside them), plain trees,
//!   index files, directory redirects and listings.
//! - `api`: the status API (`/-/api/v1/…`, JSON); `pages`: the daemon's
//!   own pages (`/`, which shows the API's data, `/metrics`, `/readyz`).
//! - `respond`: one request to one response: the guards, routing, the
//!   access record, the headers every response carries.
//! - `timer`, `tls`, `conn`: listeners, TLS, connection limits and their
//!   timeouts.
//! - `server`: the daemon's life: bind, signals, reload, scrub, drain.

pub mod answer;
pub mod api;
pub mod body;
pub mod conn;
pub mod daemon;
pub mod immutable;
pub mod listing;
pub mod log;
pub mod lookup;
pub mod media;
pub mod pages;
pub mod path;
pub mod plain;
pub mod proxy;
pub mod range;
pub mod recent;
pub mod refusal;
pub mod released;
pub mod reply;
pub mod respond;
pub mod send;
pub mod server;
pub mod timer;
pub mod tls;
pub mod watch;

pub use body::Body;
pub use daemon::{Daemon, Volume, VolumeKind};
pub use server::{Control, run, run_with};

//! The integration tests, one binary with a module per area (as ripgrep
//! does): `common` compiles once and every module shares it.
//!
//! They drive the real binaries (`unimirror`, `unimirror-update`) over
//! loopback HTTP with real clients (curl, pip, apt-get, dnf, gpgv). Tests
//! that need root are `#[ignore]`d with the reason; CI runs as root and
//! runs them with `cargo test -- --include-ignored`.

mod common;

mod api;
mod config;
mod daemon;
mod faults;
mod hostile;
mod kit;
mod ondemand;
mod openpgp;
mod operations;
mod proxy;
mod release;
mod s3;
mod serve;
mod shared;
mod signing;
mod sync;
mod tags;

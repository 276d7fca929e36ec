//! The daemon: what it serves (`Daemon`), and the listeners that serve it
//! (`conn`).
//!
//! - `path`: request paths, decoded once and checked.
//! - `range`: the Range header.
//! - `immutable`: which paths never change (`freshness.immutable`).
//! - `released`, `plain`: the two kinds of volume; `recent`: where a
//!   release's recently asked-for paths are in its manifest.
//! - `respond`: one request to one response; `listing`: directory pages.
//! - `pages`: the daemon's own pages (`/`, `/metrics`, `/readyz`).
//! - `body`: the response body type and the access log.
//! - `conn`: listeners, TLS, connection limits and graceful shutdown;
//!   `timer`: the header read timeout's clock, one per connection.
//! - `watch`: inotify on the volumes' pointers, besides polling.

pub mod body;
pub mod conn;
pub mod immutable;
pub mod listing;
pub mod pages;
pub mod path;
pub mod plain;
pub mod range;
pub mod recent;
pub mod released;
pub mod respond;
pub mod timer;
pub mod tls;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;

use crate::cache::Cache;
use crate::cache::manifests::ManifestCopies;
use crate::config::{Config, VolumeSource};
use crate::metrics::{Metrics, Served};
use crate::volume::VolumeDir;
use immutable::Immutable;
use path::CleanPath;
use plain::PlainVolume;
use released::ReleasedVolume;

pub use body::Body;

/// One configured volume, as served.
pub struct Volume {
    pub name: Arc<str>,
    /// Its request and byte counters.
    pub served: Arc<Served>,
    pub prefix: String,
    segments: Vec<Vec<u8>>,
    pub kind: VolumeKind,
    /// What `sync` fetches it from (the home page's client hints use it).
    pub upstream: Option<crate::config::Upstream>,
    /// Paths whose content never changes under their name.
    pub immutable: Arc<Immutable>,
}

pub enum VolumeKind {
    Released(Arc<ReleasedVolume>),
    Plain(Arc<PlainVolume>),
}

/// What the daemon serves, shared by every connection.
pub struct Daemon {
    /// Replaced as a whole when SIGHUP reloads the config.
    volumes: ArcSwap<Vec<Arc<Volume>>>,
    pub cache: Arc<Cache>,
    pub metrics: Arc<Metrics>,
    /// The counters of requests outside any volume (`volume="-"`).
    pub unrouted: Arc<Served>,
    pub max_url_length: usize,
    /// Rendered listings of released directories.
    pub listings: listing::Listings,
    /// The local copies release manifests are mapped from.
    manifests: Arc<ManifestCopies>,
    pub started: std::time::SystemTime,
    /// The origin root (where released volumes live).
    origin: std::path::PathBuf,
}

impl Daemon {
    /// Opens the cache and sets up the configured volumes, loading the
    /// current release of each released one.
    pub fn new(config: &Config) -> Result<Daemon> {
        let metrics = Arc::new(Metrics::new());
        let cache = Cache::open(&config.cache, config.daemon.origin_timeout, metrics.clone())
            .with_context(|| {
                format!(
                    "{}: cache.dir: cannot use {}",
                    config.file.display(),
                    config.cache.dir.display()
                )
            })?;
        let manifests = ManifestCopies::open(&config.cache.dir).with_context(|| {
            format!(
                "{}: cache.dir: cannot keep manifest copies in {}",
                config.file.display(),
                config.cache.dir.display()
            )
        })?;
        let daemon = Daemon {
            manifests: Arc::new(manifests),
            volumes: ArcSwap::from_pointee(Vec::new()),
            cache,
            unrouted: Arc::new(Served::new(&metrics, "-".into())),
            metrics,
            max_url_length: config.daemon.max_url_length,
            listings: listing::Listings::default(),
            started: std::time::SystemTime::now(),
            origin: config.origin.clone(),
        };
        daemon.set_volumes(config);
        Ok(daemon)
    }

    /// Applies the volumes of a (re)loaded config. Released volumes already
    /// served keep their loaded releases.
    pub fn set_volumes(&self, config: &Config) {
        let old = self.volumes.load();
        // Checked when the config was loaded.
        let immutable = Arc::new(Immutable::new(&config.freshness.immutable).expect("valid globs"));
        let mut volumes = Vec::new();
        for v in config.volumes.values() {
            let kind = match &v.source {
                VolumeSource::Tree(root) => VolumeKind::Plain(Arc::new(PlainVolume::new(
                    &v.name,
                    root,
                    immutable.clone(),
                    config.freshness.revalidate_after,
                    config.freshness.stale_if_unreachable,
                ))),
                VolumeSource::Released => {
                    let dir = VolumeDir::new(&config.origin, &v.name);
                    let kept = old.iter().find_map(|o| match &o.kind {
                        VolumeKind::Released(r)
                            if r.dir.root == dir.root && r.grace == config.release.grace =>
                        {
                            Some(r.clone())
                        }
                        _ => None,
                    });
                    let r = kept.unwrap_or_else(|| {
                        let r = Arc::new(ReleasedVolume::new(
                            dir,
                            config.release.grace,
                            self.manifests.clone(),
                            &self.metrics,
                        ));
                        self.refresh(&r);
                        r
                    });
                    VolumeKind::Released(r)
                }
            };
            let segments = v.prefix[1..]
                .split('/')
                .map(|s| s.as_bytes().to_vec())
                .collect();
            let name: Arc<str> = v.name.as_str().into();
            volumes.push(Arc::new(Volume {
                served: Arc::new(Served::new(&self.metrics, name.clone())),
                name,
                prefix: v.prefix.clone(),
                segments,
                kind,
                upstream: v.upstream.clone(),
                immutable: immutable.clone(),
            }));
        }
        self.volumes.store(Arc::new(volumes));
    }

    pub fn volumes(&self) -> Arc<Vec<Arc<Volume>>> {
        self.volumes.load_full()
    }

    /// The volume a path belongs to, and how many leading segments its
    /// prefix takes.
    pub fn route(&self, path: &CleanPath) -> Option<(Arc<Volume>, usize)> {
        self.volumes
            .load()
            .iter()
            .find(|v| {
                let mut segments = path.segments();
                v.segments.iter().all(|s| segments.next() == Some(s))
            })
            .map(|v| (v.clone(), v.segments.len()))
    }

    /// Checks every released volume's pointer every `interval`, and at
    /// once when inotify reports a pointer written, forever.
    pub async fn follow_releases(self: Arc<Self>, interval: Duration) {
        let wake = Arc::new(tokio::sync::Notify::new());
        let dirs = self
            .volumes()
            .iter()
            .filter_map(|v| match &v.kind {
                VolumeKind::Released(r) => Some(r.dir.root.clone()),
                VolumeKind::Plain(_) => None,
            })
            .collect();
        let watched = watch::spawn(dirs, wake.clone());
        tracing::info!(
            watched,
            "following releases (inotify, and polling every {})",
            humantime::format_duration(interval)
        );
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = wake.notified() => {}
            }
            for v in self.volumes().iter() {
                if let VolumeKind::Released(r) = &v.kind {
                    let (daemon, r) = (self.clone(), r.clone());
                    // Reading a manifest is blocking file I/O.
                    let _ = tokio::task::spawn_blocking(move || daemon.refresh(&r)).await;
                }
            }
        }
    }

    fn refresh(&self, vol: &ReleasedVolume) {
        match vol.refresh() {
            Ok(Some(id)) => tracing::info!(volume = %vol.dir.name, release = id, "serving release"),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(volume = %vol.dir.name, "cannot load the current release: {e:#}")
            }
        }
        if let Some(s) = vol.snapshot() {
            let name = vol.dir.name.as_str();
            self.metrics
                .release_id
                .with_label_values(&[name])
                .set(s.current.meta.id as i64);
            self.metrics
                .release_created
                .with_label_values(&[name])
                .set(s.current.meta.created_unix as i64);
        }
    }

    /// Why the daemon should not get traffic, if it should not: the
    /// origin or a served volume on it is unreadable, or the cache is not
    /// writable. A volume never released yet is not a reason: it answers
    /// 503 itself while the others serve.
    pub fn unready(&self) -> Option<String> {
        let volumes = self.volumes();
        let released = volumes
            .iter()
            .any(|v| matches!(v.kind, VolumeKind::Released(_)));
        if released && std::fs::read_dir(&self.origin).is_err() {
            return Some(format!("origin {} not readable", self.origin.display()));
        }
        for v in volumes.iter() {
            let ok = match &v.kind {
                VolumeKind::Released(r) => {
                    r.snapshot().is_none() || std::fs::read_dir(&r.dir.root).is_ok()
                }
                VolumeKind::Plain(p) => p.readable(),
            };
            if !ok {
                return Some(format!("volume `{}`: origin not readable", v.name));
            }
        }
        match self.cache.disk.create_temp() {
            Ok((probe, _)) => {
                let _ = std::fs::remove_file(&probe);
                None
            }
            Err(e) => Some(format!("cache not writable: {e}")),
        }
    }
}

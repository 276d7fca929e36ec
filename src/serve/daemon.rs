//! What the daemon serves, shared by every connection: the configured
//! volumes (swapped whole on reload), the cache, the metrics; following
//! the volumes' release pointers, and the readiness probe.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;

use super::immutable::Immutable;
use super::listing;
use super::path::CleanPath;
use super::plain::PlainVolume;
use super::proxy::ProxyVolume;
use super::released::ReleasedVolume;
use super::watch;
use crate::cache::Cache;
use crate::cache::manifests::ManifestCopies;
use crate::config::{Config, VolumeSource};
use crate::metrics::{Metrics, Served};
use crate::volume::signature::ReleaseKeys;

/// One configured volume, as served.
pub struct Volume {
    pub name: Arc<str>,
    /// Its request and byte counters.
    pub served: Arc<Served>,
    pub prefix: String,
    segments: Vec<Vec<u8>>,
    pub kind: VolumeKind,
    /// A released volume's fallback: the proxy volume that answers the
    /// project pages its release lacks.
    pub fallback: Option<Arc<ProxyVolume>>,
    /// What `sync` fetches it from (the home page's client hints use it).
    pub upstream: Option<crate::config::Upstream>,
    /// Paths whose content never changes under their name.
    pub immutable: Arc<Immutable>,
}

impl Volume {
    /// Whether a path names content that never changes (by the configured
    /// immutable patterns).
    pub fn is_immutable(&self, path: &[u8]) -> bool {
        self.immutable.is_match(path)
    }
}

pub enum VolumeKind {
    Released(Arc<ReleasedVolume>),
    Plain(Arc<PlainVolume>),
    Proxy(Arc<ProxyVolume>),
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
    /// Where released volumes live (a directory, or an S3 origin).
    origin: crate::volume::Origin,
    /// The readiness probe in flight, if one is: later `/readyz` requests
    /// wait for it rather than start another (on a hung origin each would
    /// hold a blocking thread for good).
    probe: Arc<std::sync::Mutex<Option<Probe>>>,
    /// How long a first load of a volume's release may take before start
    /// goes on without it (it then answers 503 until the load completes).
    origin_timeout: Duration,
    /// The client that fetches remote entries of on-demand releases.
    pub upstreams: Arc<crate::origin::Upstreams>,
    /// The keys releases must be signed by (`daemon.release_keys`), if
    /// any; shared with every released volume, replaced on reload.
    release_keys: ReleaseKeysInUse,
    /// When the drain began (SIGUSR1 or SIGTERM): from then on `/readyz`
    /// answers 503 `draining`, whatever else holds. Never undone.
    draining: std::sync::OnceLock<std::time::Instant>,
}

/// The keys releases must be signed by, as every released volume reads
/// them at each load.
pub type ReleaseKeysInUse = Arc<arc_swap::ArcSwapOption<ReleaseKeys>>;

/// Reads `daemon.release_keys`; `None` when none are configured.
fn load_release_keys(config: &Config) -> Result<Option<Arc<ReleaseKeys>>> {
    let Some(keys) = ReleaseKeys::of_config(config)? else {
        return Ok(None);
    };
    tracing::info!(keys = %keys, "serving only releases signed by these keys");
    Ok(Some(Arc::new(keys)))
}

/// The outcome of a readiness probe, once it has one.
type Probe = tokio::sync::watch::Receiver<Option<Option<String>>>;

/// How long `/readyz` waits for its probe: a hung origin answers 503
/// within 2 s, as load balancers expect.
const READY_DEADLINE: Duration = Duration::from_millis(1500);

/// How long a reload waits for the releases of new volumes to load before
/// it applies the config anyway: the signal loop must not stall on a hung
/// origin.
const RELOAD_DEADLINE: Duration = Duration::from_secs(2);

impl Daemon {
    /// Opens the cache and sets up the configured volumes, loading the
    /// current release of each released one (waiting at most
    /// `origin_timeout` for them).
    pub async fn new(config: &Config) -> Result<Daemon> {
        let metrics = Arc::new(Metrics::new());
        let cache = Cache::open(&config.cache, config.daemon.origin_timeout, metrics.clone())
            .with_context(|| {
                format!(
                    "{}: cache.dir: cannot use {}",
                    config.file.display(),
                    config.cache.dir.display()
                )
            })?;
        let manifests = cache.manifest_copies().with_context(|| {
            format!(
                "{}: cache.dir: cannot keep manifest copies in {}",
                config.file.display(),
                config.cache.dir.display()
            )
        })?;
        // The sync's redirect rules, so that a remote entry is fetched
        // from where the sync that listed it would have fetched it.
        let client = crate::upstream::client(&crate::upstream::ClientRules {
            user_agent: concat!("unimirror/", env!("CARGO_PKG_VERSION")),
            allow_http: config.sync.allow_http,
            redirect_hosts: &config.sync.allow_redirect_hosts,
            connect_timeout: config.daemon.origin_timeout.min(Duration::from_secs(10)),
            read_timeout: config.daemon.origin_timeout,
        })?;
        let upstreams = crate::origin::Upstreams::new(client, config.daemon.origin_timeout);
        let release_keys = Arc::new(arc_swap::ArcSwapOption::new(load_release_keys(config)?));
        let daemon = Daemon {
            release_keys,
            upstreams: Arc::new(upstreams),
            manifests: Arc::new(manifests),
            volumes: ArcSwap::from_pointee(Vec::new()),
            cache,
            unrouted: Arc::new(Served::new(&metrics, "-".into())),
            metrics,
            max_url_length: config.daemon.max_url_length,
            listings: listing::Listings::default(),
            started: std::time::SystemTime::now(),
            origin: crate::volume::Origin::of_config(config, &config.cache.dir.join("s3-origin"))
                .with_context(|| format!("{}: origin", config.file.display()))?,
            probe: Arc::default(),
            origin_timeout: config.daemon.origin_timeout,
            draining: std::sync::OnceLock::new(),
        };
        daemon.set_volumes(config, daemon.origin_timeout).await;
        Ok(daemon)
    }

    /// Applies the volumes of a reloaded config; see [`Daemon::set_volumes`].
    pub async fn reload_volumes(&self, config: &Config) {
        match load_release_keys(config) {
            Ok(keys) => self.release_keys.store(keys),
            Err(e) => tracing::error!("release keys not reloaded, keeping the old ones: {e:#}"),
        }
        self.set_volumes(config, RELOAD_DEADLINE).await;
    }

    /// Applies the volumes of a (re)loaded config. Released volumes already
    /// served keep their loaded releases; new ones are loaded on the
    /// blocking pool (manifests are files on the origin), waiting at most
    /// `deadline` for them. A volume whose origin does not answer by then
    /// is served anyway, as a volume with no release yet (503), until its
    /// load completes; the load is logged either way.
    async fn set_volumes(&self, config: &Config, deadline: Duration) {
        let old = self.volumes.load();
        let mut loads = Vec::new();
        // Checked when the config was loaded.
        let immutable = Arc::new(Immutable::new(&config.freshness.immutable).expect("valid globs"));
        let mut volumes = Vec::new();
        let mut proxies: HashMap<String, Arc<ProxyVolume>> = HashMap::new();
        for v in config.volumes.values() {
            let VolumeSource::Proxy(p) = &v.source else {
                continue;
            };
            // Kept across a reload when unchanged: its pages stay in memory.
            let kept = old.iter().find_map(|o| match &o.kind {
                VolumeKind::Proxy(k)
                    if *o.name == *v.name && k.config == *p && k.prefix == v.prefix =>
                {
                    Some(k.clone())
                }
                _ => None,
            });
            let proxy = match kept {
                Some(k) => k,
                None => match ProxyVolume::new(&v.name, &v.prefix, p) {
                    Ok(k) => Arc::new(k),
                    Err(e) => {
                        tracing::error!(volume = %v.name, "proxy volume not served: {e:#}");
                        continue;
                    }
                },
            };
            proxies.insert(v.name.clone(), proxy);
        }
        for v in config.volumes.values() {
            let kind = match &v.source {
                VolumeSource::Proxy(_) => match proxies.get(&v.name) {
                    Some(p) => VolumeKind::Proxy(p.clone()),
                    None => continue,
                },
                VolumeSource::Tree(root) => VolumeKind::Plain(Arc::new(PlainVolume::new(
                    &v.name,
                    root,
                    immutable.clone(),
                    config.freshness.revalidate_after,
                    config.freshness.stale_if_unreachable,
                ))),
                VolumeSource::Released => {
                    let dir = self.origin.volume(&v.name);
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
                            self.release_keys.clone(),
                            &self.metrics,
                        ));
                        let (metrics, vol) = (self.metrics.clone(), r.clone());
                        loads.push((
                            v.name.clone(),
                            tokio::task::spawn_blocking(move || refresh(&metrics, &vol)),
                        ));
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
            self.metrics.touch_volume(
                &name,
                matches!(kind, VolumeKind::Released(_)),
                matches!(kind, VolumeKind::Proxy(_)),
            );
            volumes.push(Arc::new(Volume {
                served: Arc::new(Served::new(&self.metrics, name.clone())),
                name,
                prefix: v.prefix.clone(),
                segments,
                kind,
                fallback: v.fallback.as_ref().and_then(|f| proxies.get(f).cloned()),
                upstream: v.upstream.clone(),
                immutable: immutable.clone(),
            }));
        }
        let waited = tokio::time::Instant::now() + deadline;
        for (name, load) in loads {
            if tokio::time::timeout_at(waited, load).await.is_err() {
                tracing::error!(volume = %name, "origin not responding: the release is still loading after {}; the volume answers 503 until it has loaded", humantime::format_duration(deadline));
            }
        }
        self.volumes.store(Arc::new(volumes));
    }

    /// How long the origin (or an upstream) may take to answer.
    pub fn origin_timeout(&self) -> Duration {
        self.origin_timeout
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
                // An S3 origin has no directory to watch: polled only.
                VolumeKind::Released(r) if r.dir.s3.is_none() => Some(r.dir.root.clone()),
                VolumeKind::Released(_) => None,
                VolumeKind::Plain(_) | VolumeKind::Proxy(_) => None,
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
        // Checks still running, by volume directory (and whether the hang
        // was logged): a volume whose origin hangs is skipped (one blocked
        // thread, not one per tick) while the others go on being followed.
        let mut running: std::collections::HashMap<
            std::path::PathBuf,
            (tokio::task::JoinHandle<()>, bool),
        > = Default::default();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = wake.notified() => {}
            }
            running.retain(|_, (check, _)| !check.is_finished());
            let mut started = Vec::new();
            for v in self.volumes().iter() {
                if let VolumeKind::Released(r) = &v.kind {
                    if let Some((_, logged)) = running.get_mut(&r.dir.root) {
                        if !*logged {
                            *logged = true;
                            tracing::warn!(volume = %v.name, "origin not responding: the previous check of the release pointer is still running; skipping the volume until it ends");
                        }
                        continue;
                    }
                    let (metrics, r) = (self.metrics.clone(), r.clone());
                    let root = r.dir.root.clone();
                    // Reading a manifest is blocking file I/O.
                    let check = tokio::task::spawn_blocking(move || refresh(&metrics, &r));
                    running.insert(root.clone(), (check, false));
                    started.push(root);
                }
            }
            // Waited for (a tick at a time) so that checks do not pile up
            // on a slow but live origin.
            for root in started {
                if let Some((check, _)) = running.get_mut(&root) {
                    let _ = tokio::time::timeout(interval.max(Duration::from_secs(1)), check).await;
                }
            }
        }
    }

    /// Starts draining, if it has not begun; returns when it began.
    pub fn drain(&self) -> std::time::Instant {
        *self.draining.get_or_init(std::time::Instant::now)
    }

    /// Where released volumes are read from: a directory, or an `s3://`
    /// URL.
    pub fn origin_location(&self) -> String {
        match &self.origin {
            crate::volume::Origin::Dir(root) => root.display().to_string(),
            crate::volume::Origin::S3 { store, .. } => store.url(""),
        }
    }

    pub fn draining(&self) -> bool {
        self.draining.get().is_some()
    }

    /// Why the daemon should not get traffic, if it should not (see
    /// [`probe`]). The probe touches the origin and the cache directory,
    /// so it runs on the blocking pool, one at a time; if it has not
    /// answered within [`READY_DEADLINE`], the origin is reported as not
    /// responding (the probe goes on, and the next request waits for the
    /// same one).
    pub async fn unready(&self) -> Option<String> {
        if self.draining() {
            return Some("draining".into());
        }
        let mut outcome = {
            let mut slot = self.probe.lock().unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Some(running) => running.clone(),
                None => {
                    let (tx, rx) = tokio::sync::watch::channel(None);
                    *slot = Some(rx.clone());
                    let (origin, volumes, cache) =
                        (self.origin.clone(), self.volumes(), self.cache.clone());
                    let done = self.probe.clone();
                    tokio::task::spawn_blocking(move || {
                        let why = probe(&origin, &volumes, &cache);
                        *done.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        let _ = tx.send(Some(why));
                    });
                    rx
                }
            }
        };
        match tokio::time::timeout(READY_DEADLINE, outcome.wait_for(Option::is_some)).await {
            Ok(Ok(why)) => why.clone().flatten(),
            Ok(Err(_)) => Some("the readiness probe was abandoned".into()),
            Err(_) => Some(format!(
                "origin not responding (no answer to the readiness probe within {})",
                humantime::format_duration(READY_DEADLINE)
            )),
        }
    }
}

/// Loads a released volume's current release if the pointer moved, and
/// updates its gauges. Blocking: reads the origin.
fn refresh(metrics: &Metrics, vol: &ReleasedVolume) {
    match vol.refresh() {
        Ok(found) => {
            vol.note_refresh(None);
            if let Some(id) = found {
                tracing::info!(volume = %vol.dir.name, release = id, "serving release")
            }
        }
        // Logged when it is new: the same refusal is met at every poll
        // until the pointer moves.
        Err(e) => match vol.note_refresh(Some(format!("{e:#}"))) {
            true => {
                tracing::error!(volume = %vol.dir.name, "cannot load the current release: {e:#}")
            }
            false => {
                tracing::debug!(volume = %vol.dir.name, "still cannot load the current release: {e:#}")
            }
        },
    }
    if let Some(s) = vol.snapshot() {
        let name = vol.dir.name.as_str();
        metrics
            .release_id
            .with_label_values(&[name])
            .set(s.current.meta.id as i64);
        metrics
            .release_created
            .with_label_values(&[name])
            .set(s.current.meta.created_unix as i64);
    }
}

/// Why the daemon should not get traffic, if it should not: the origin or
/// a served volume on it is unreadable (its directory, and for a released
/// volume its pointer, which a network filesystem cannot answer from its
/// directory cache), or the cache is not writable. A volume never released
/// yet is not a reason: it answers 503 itself while the others serve.
/// Blocking: may hang as long as the origin does.
fn probe(origin: &crate::volume::Origin, volumes: &[Arc<Volume>], cache: &Cache) -> Option<String> {
    let released = volumes
        .iter()
        .any(|v| matches!(v.kind, VolumeKind::Released(_)));
    if released
        && let crate::volume::Origin::Dir(root) = origin
        && std::fs::read_dir(root).is_err()
    {
        return Some(format!("origin {} not readable", root.display()));
    }
    for v in volumes.iter() {
        let ok = match &v.kind {
            // On S3, reading the pointer (a conditional GET) is the
            // store's answer.
            VolumeKind::Released(r) => {
                r.snapshot().is_none()
                    || ((r.dir.s3.is_some() || std::fs::read_dir(&r.dir.root).is_ok())
                        && r.dir.current().is_ok())
            }
            VolumeKind::Plain(p) => p.readable(),
            // Its upstream being down is no reason to take the daemon out
            // of service: kept pages and files are still served.
            VolumeKind::Proxy(_) => true,
        };
        if !ok {
            return Some(format!("volume `{}`: origin not readable", v.name));
        }
    }
    match cache.check_writable() {
        Ok(()) => None,
        Err(e) => Some(format!("cache not writable: {e}")),
    }
}

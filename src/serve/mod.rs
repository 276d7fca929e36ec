//! The daemon's HTTP side (issue #3, being built).
//!
//! Built so far: serving released volumes straight from the origin, over
//! HTTP/1.1 and cleartext HTTP/2, following the pointer to new releases.
//! Still to come: the cache tiers, coalesced fills, plain-tree volumes,
//! grace and pinned releases, metrics, TLS and the operational limits.

pub mod path;
pub mod range;
pub mod released;
pub mod respond;

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::config::{Config, VolumeSource};
use crate::volume::VolumeDir;
use path::CleanPath;
use released::ReleasedVolume;

/// The one response body type: a boxed stream of bytes that may end in an
/// I/O error (which aborts the response rather than completing it).
pub type Body = BoxBody<Bytes, std::io::Error>;

/// What the daemon serves.
pub struct Daemon {
    volumes: Vec<(Vec<Vec<u8>>, Arc<ReleasedVolume>)>,
}

impl Daemon {
    /// Sets up the configured volumes and loads their current releases.
    pub fn new(config: &Config) -> Daemon {
        let mut volumes = Vec::new();
        for v in config.volumes.values() {
            if let VolumeSource::Tree(p) = &v.source {
                tracing::warn!(
                    volume = %v.name,
                    "plain-tree volumes are not served yet; {} is skipped",
                    p.display()
                );
                continue;
            }
            let segs = v.prefix[1..]
                .split('/')
                .map(|s| s.as_bytes().to_vec())
                .collect();
            let vol = Arc::new(ReleasedVolume::new(VolumeDir::new(&config.origin, &v.name)));
            refresh(&vol);
            volumes.push((segs, vol));
        }
        Daemon { volumes }
    }

    /// The volume a path belongs to, and how many leading segments its
    /// prefix takes.
    pub fn route(&self, path: &CleanPath) -> Option<(&ReleasedVolume, usize)> {
        self.volumes
            .iter()
            .find(|(segs, _)| path.segments.starts_with(segs))
            .map(|(segs, v)| (v.as_ref(), segs.len()))
    }

    /// Checks every volume's pointer every `interval`, forever.
    pub async fn follow_releases(self: Arc<Self>, interval: std::time::Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for (_, vol) in &self.volumes {
                let vol = vol.clone();
                // Reading a manifest is blocking file I/O.
                let _ = tokio::task::spawn_blocking(move || refresh(&vol)).await;
            }
        }
    }
}

fn refresh(vol: &ReleasedVolume) {
    match vol.refresh() {
        Ok(Some(id)) => tracing::info!(volume = %vol.dir.name, release = id, "serving release"),
        Ok(None) => {}
        Err(e) => tracing::error!(volume = %vol.dir.name, "cannot load the current release: {e:#}"),
    }
}

/// Serves connections from `listener` until `shutdown` completes.
pub async fn run(listener: TcpListener, daemon: Arc<Daemon>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let daemon = daemon.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let daemon = daemon.clone();
                async move {
                    let started = std::time::Instant::now();
                    let (method, path) = (req.method().clone(), req.uri().path().to_string());
                    let resp = respond::handle(&daemon, req).await;
                    tracing::info!(
                        %peer, %method, path, status = resp.status().as_u16(),
                        micros = started.elapsed().as_micros() as u64, "request"
                    );
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let conn = auto::Builder::new(TokioExecutor::new());
            if let Err(e) = conn.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

//! `unimirror`: the mirror daemon's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use super::{DEFAULT_CONFIG, exit, report};
use crate::config::{Config, LogFormat};
use crate::serve::Daemon;
use crate::serve::conn::{Limits, Server};
use crate::serve::tls::Tls;

#[derive(Parser, Debug)]
#[command(
    name = "unimirror",
    version,
    about = "Caching mirror daemon for package ecosystems"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the configured volumes over HTTP.
    Serve {
        #[arg(long, short, env = "UNIMIRROR_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Check a configuration file and print what it configures.
    CheckConfig {
        #[arg(long, short, env = "UNIMIRROR_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let code = match run(cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => report(&e),
    };
    super::log_output::flush();
    code
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { config: file } => {
            let config = Config::load(&file)?;
            super::init_logging(
                config.daemon.log_format == LogFormat::Json,
                super::Output::Batched,
            );
            serve(file, config)
        }
        Command::CheckConfig { config } => {
            let c = Config::load(&config)?;
            println!("{}: OK", config.display());
            println!("origin:  {}", c.origin.display());
            println!("staging: {}", c.staging.display());
            println!("cache:   {}", c.cache.dir.display());
            for v in c.volumes.values() {
                println!("volume {:<12} {:<12} {}", v.name, v.prefix, v.source);
            }
            Ok(())
        }
    }
}

fn serve(file: PathBuf, config: Config) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        // Handlers first: a SIGHUP that arrives once we look ready must
        // reload, not kill (its default action).
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let daemon = Arc::new(Daemon::new(&config).await?);
        tokio::spawn(daemon.clone().follow_releases(config.daemon.poll_interval));
        spawn_scrub(&daemon, &config);
        let tls = match &config.daemon.tls {
            Some(t) => Some(Arc::new(Tls::new(&t.cert, &t.key).with_context(|| {
                format!(
                    "{}: daemon.tls: cannot load the certificate",
                    file.display()
                )
            })?)),
            None => None,
        };
        let (stop, stopping) = watch::channel(false);
        let server = Server {
            daemon: daemon.clone(),
            limits: Arc::new(Limits::new(&config.daemon)),
            tracker: TaskTracker::new(),
            stopping,
        };
        let mut listeners = Vec::new();
        for addr in &config.daemon.listen {
            listeners.push((bind(addr).await?, None));
        }
        if let (Some(t), Some(tls)) = (&config.daemon.tls, &tls) {
            for addr in &t.listen {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
                listeners.push((bind(addr).await?, Some(acceptor)));
            }
        }
        let mut accepting = Vec::new();
        for (listener, tls) in listeners {
            // Printed on stdout (port 0 picks a free one; tests read it).
            let scheme = if tls.is_some() { "https" } else { "http" };
            let _ = writeln!(
                std::io::stdout(),
                "listening on {scheme}://{}",
                listener.local_addr()?
            );
            accepting.push(tokio::spawn(server.clone().run(listener, tls)));
        }
        notify(&[NotifyState::Ready]);
        tracing::info!("serving {} volume(s)", daemon.volumes().len());

        let mut config = config;
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    let mut states = vec![NotifyState::Reloading];
                    states.extend(NotifyState::monotonic_usec_now().ok());
                    notify(&states);
                    reload(&file, &mut config, &daemon, tls.as_deref()).await;
                    notify(&[NotifyState::Ready]);
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }

        notify(&[NotifyState::Stopping]);
        tracing::info!("stopping: draining requests in flight");
        let _ = stop.send(true);
        for a in accepting {
            let _ = a.await;
        }
        server.tracker.close();
        if tokio::time::timeout(config.daemon.drain_timeout, server.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = server.tracker.len(),
                "drain timeout reached; closing the remaining connections"
            );
        }
        daemon.cache.settle(config.daemon.drain_timeout).await;
        tracing::info!("stopped");
        Ok(())
    });
    // A read stuck on a hung origin must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

async fn bind(addr: &std::net::SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))
}

/// SIGHUP: reads the config again and applies what can change while
/// running (volumes, freshness, the TLS certificate). A bad file keeps the
/// old config in service.
async fn reload(file: &std::path::Path, config: &mut Config, daemon: &Daemon, tls: Option<&Tls>) {
    let new = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload refused, keeping the running config: {e}");
            return;
        }
    };
    daemon.reload_volumes(&new).await;
    if let (Some(tls), Some(t)) = (tls, &new.daemon.tls) {
        match tls.reload(&t.cert, &t.key) {
            Ok(()) => tracing::info!("TLS certificate reloaded"),
            Err(e) => tracing::error!("TLS certificate not reloaded, keeping the old one: {e:#}"),
        }
    }
    let needs_restart = new.daemon.listen != config.daemon.listen
        || new.daemon.tls.as_ref().map(|t| &t.listen)
            != config.daemon.tls.as_ref().map(|t| &t.listen)
        || new.cache.dir != config.cache.dir
        || new.cache.disk_size != config.cache.disk_size
        || new.cache.memory_size != config.cache.memory_size
        || new.origin != config.origin;
    if needs_restart {
        tracing::warn!("listeners, origin and cache settings change only on restart");
    }
    tracing::info!("configuration reloaded from {}", file.display());
    *config = new;
}

/// Re-verifies the disk tier in the background, one pass per interval.
fn spawn_scrub(daemon: &Arc<Daemon>, config: &Config) {
    let (interval, rate) = (config.cache.scrub_interval, config.cache.scrub_rate);
    if interval.is_zero() {
        return;
    }
    let disk = daemon.cache.disk.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let d = disk.clone();
            let bad = tokio::task::spawn_blocking(move || d.scrub(rate)).await;
            tracing::info!(corrupt = bad.unwrap_or(0), "disk cache scrub finished");
        }
    });
}

/// Tells systemd (when it started us with Type=notify) how we are doing.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify: {e}");
    }
}

//! The daemon's life, as a library function (as mini-redis's
//! `server::run`): [`run`] binds the listeners, serves, reloads on SIGHUP
//! (or when asked through [`Control`]), scrubs the disk tier, and on
//! SIGTERM, SIGINT or its `shutdown` future stops accepting and drains
//! the requests in flight. `cli::daemon` only parses arguments, sets up
//! logging and the runtime, and calls it; tests run it in-process.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use sd_notify::NotifyState;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::task::TaskTracker;

use super::conn::{Limits, Server};
use super::daemon::Daemon;
use super::tls::Tls;
use crate::config::Config;

/// How a running server is told to reload or stop besides its `shutdown`
/// future, and what it tells back.
pub struct Control {
    /// Reload on SIGHUP, stop on SIGTERM and SIGINT: the daemon's. Off
    /// in-process, where the signals are the test process's own.
    pub signals: bool,
    /// Reload requests besides SIGHUP; each is answered once the reload is
    /// over (applied, or refused for a bad file).
    pub reload: Option<mpsc::Receiver<oneshot::Sender<()>>>,
    /// Told each listener's scheme (`http`, `https`) and address once it is
    /// bound, before the server says it is ready.
    pub listening: Box<dyn FnMut(&'static str, SocketAddr) + Send>,
}

impl Control {
    /// The daemon's: signals, and each address printed on stdout (port 0
    /// picks a free one; the integration tests read it).
    pub fn daemon() -> Control {
        Control {
            signals: true,
            reload: None,
            listening: Box::new(|scheme, addr| {
                let _ = writeln!(std::io::stdout(), "listening on {scheme}://{addr}");
            }),
        }
    }
}

/// Serves `config` until a signal, or `shutdown`, stops it; see
/// [`run_with`]. The daemon's entry point.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    run_with(config, shutdown, Control::daemon()).await
}

/// Serves `config`: opens the cache and the volumes, binds the listeners,
/// follows the releases and scrubs the disk tier in the background, and
/// reloads the config file (`config.file`) on request. When `shutdown`
/// completes (or SIGTERM or SIGINT comes, with `control.signals`), stops
/// accepting, waits up to `daemon.drain_timeout` for the connections in
/// flight, lets the cache settle, and returns.
pub async fn run_with(
    config: Config,
    shutdown: impl Future<Output = ()>,
    mut control: Control,
) -> Result<()> {
    // Handlers first: a SIGHUP that arrives once we look ready must
    // reload, not kill (its default action).
    let (mut hup, mut term, mut int, mut usr1) = match control.signals {
        true => (
            Some(signal(SignalKind::hangup())?),
            Some(signal(SignalKind::terminate())?),
            Some(signal(SignalKind::interrupt())?),
            Some(signal(SignalKind::user_defined1())?),
        ),
        false => (None, None, None, None),
    };
    let daemon = Arc::new(Daemon::new(&config).await?);
    let following = tokio::spawn(daemon.clone().follow_releases(config.daemon.poll_interval));
    let scrubbing = spawn_scrub(&daemon, &config);
    let tls = match &config.daemon.tls {
        Some(t) => Some(Arc::new(Tls::new(&t.cert, &t.key).with_context(|| {
            format!(
                "{}: daemon.tls: cannot load the certificate",
                config.file.display()
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
        let scheme = if tls.is_some() { "https" } else { "http" };
        (control.listening)(scheme, listener.local_addr()?);
        accepting.push(tokio::spawn(server.clone().run(listener, tls)));
    }
    notify(&[NotifyState::Ready]);
    tracing::info!("serving {} volume(s)", daemon.volumes().len());

    let mut config = config;
    tokio::pin!(shutdown);
    // SIGINT is a terminal's Ctrl-C: nobody's load balancer to wait for.
    let delay = loop {
        tokio::select! {
            _ = next(&mut hup) => {
                let mut states = vec![NotifyState::Reloading];
                states.extend(NotifyState::monotonic_usec_now().ok());
                notify(&states);
                reload(&mut config, &daemon, tls.as_deref()).await;
                notify(&[NotifyState::Ready]);
            }
            done = requested(&mut control.reload) => {
                reload(&mut config, &daemon, tls.as_deref()).await;
                let _ = done.send(());
            }
            _ = next(&mut usr1) => {
                if !daemon.draining() {
                    tracing::info!("draining (SIGUSR1): /readyz answers 503 `draining`; still serving until SIGTERM");
                }
                daemon.drain();
            }
            _ = next(&mut term) => break true,
            _ = next(&mut int) => break false,
            () = &mut shutdown => break true,
        }
    };

    // Unready first, still serving, for drain_delay (counted from SIGUSR1
    // when that came first): load balancers see /readyz fail and take the
    // host out before it stops accepting. A second SIGTERM or SIGINT cuts
    // the wait short.
    notify(&[NotifyState::Stopping]);
    let since = daemon.drain();
    let left = config.daemon.drain_delay.saturating_sub(since.elapsed());
    if delay && !left.is_zero() {
        tracing::info!(
            "stopping: /readyz answers 503 `draining`; still serving for {}",
            humantime::format_duration(left)
        );
        tokio::select! {
            () = tokio::time::sleep(left) => {}
            _ = next(&mut term) => {}
            _ = next(&mut int) => {}
        }
    }
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
    following.abort();
    if let Some(s) = scrubbing {
        s.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// The next delivery of a signal handled, or never without one.
async fn next(signal: &mut Option<Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// The next reload request, or never (without a channel, or once its
/// senders are gone).
async fn requested(
    requests: &mut Option<mpsc::Receiver<oneshot::Sender<()>>>,
) -> oneshot::Sender<()> {
    if let Some(r) = requests
        && let Some(done) = r.recv().await
    {
        return done;
    }
    std::future::pending().await
}

async fn bind(addr: &SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))
}

/// Reads the config file again and applies what can change while running
/// (volumes, freshness, the TLS certificate). A bad file keeps the old
/// config in service.
async fn reload(config: &mut Config, daemon: &Daemon, tls: Option<&Tls>) {
    let file = config.file.clone();
    let new = match Config::load(&file) {
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
    let (applied, restart) = changes(config, &new);
    if !restart.is_empty() {
        tracing::warn!(
            "changed, but applied only on restart: {}",
            restart.join(", ")
        );
    }
    match applied.is_empty() {
        true => tracing::info!(
            "configuration reloaded from {}: nothing changed that a reload applies",
            file.display()
        ),
        false => tracing::info!(
            "configuration reloaded from {}: {}",
            file.display(),
            applied.join("; ")
        ),
    }
    *config = new;
}

/// What a reloaded config changes: what the reload applies (volumes one by
/// one, and the other settings by key), and the keys only a restart
/// applies (listeners, limits, the origin, the cache).
fn changes(old: &Config, new: &Config) -> (Vec<String>, Vec<&'static str>) {
    let differ =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let mut applied = Vec::new();
    for (name, v) in &new.volumes {
        match old.volumes.get(name) {
            None => applied.push(format!("volume `{name}` added")),
            Some(o) if differ(o, v) => applied.push(format!("volume `{name}` changed")),
            Some(_) => {}
        }
    }
    for name in old.volumes.keys().filter(|n| !new.volumes.contains_key(*n)) {
        applied.push(format!("volume `{name}` removed"));
    }
    let tls = |c: &Config| {
        c.daemon
            .tls
            .as_ref()
            .map(|t| (t.cert.clone(), t.key.clone()))
    };
    let (o, n) = (&old.daemon, &new.daemon);
    for (key, changed) in [
        ("freshness", differ(&old.freshness, &new.freshness)),
        (
            "daemon.release_keys",
            differ(&o.release_keys, &n.release_keys),
        ),
        ("daemon.tls.cert and key", differ(&tls(old), &tls(new))),
        ("daemon.drain_delay", differ(&o.drain_delay, &n.drain_delay)),
        (
            "daemon.drain_timeout",
            differ(&o.drain_timeout, &n.drain_timeout),
        ),
    ] {
        if changed {
            applied.push(format!("{key} changed"));
        }
    }
    let tls_rest = |c: &Config| {
        c.daemon
            .tls
            .as_ref()
            .map(|t| (t.listen.clone(), t.handshake_timeout))
    };
    let (oc, nc) = (&old.cache, &new.cache);
    let restart = [
        (
            "origin",
            differ(
                &(&old.origin, &old.origin_s3, &old.s3),
                &(&new.origin, &new.origin_s3, &new.s3),
            ),
        ),
        ("daemon.listen", differ(&o.listen, &n.listen)),
        (
            "daemon.tls.listen and handshake_timeout",
            differ(&tls_rest(old), &tls_rest(new)),
        ),
        (
            "daemon.poll_interval",
            differ(&o.poll_interval, &n.poll_interval),
        ),
        ("daemon.log_format", differ(&o.log_format, &n.log_format)),
        (
            "daemon.max_connections",
            differ(&o.max_connections, &n.max_connections),
        ),
        (
            "daemon.max_connections_per_ip",
            differ(&o.max_connections_per_ip, &n.max_connections_per_ip),
        ),
        (
            "daemon.first_byte_timeout",
            differ(&o.first_byte_timeout, &n.first_byte_timeout),
        ),
        (
            "daemon.header_read_timeout",
            differ(&o.header_read_timeout, &n.header_read_timeout),
        ),
        (
            "daemon.write_timeout",
            differ(&o.write_timeout, &n.write_timeout),
        ),
        (
            "daemon.max_url_length",
            differ(&o.max_url_length, &n.max_url_length),
        ),
        (
            "daemon.origin_timeout",
            differ(&o.origin_timeout, &n.origin_timeout),
        ),
        ("cache.dir", differ(&oc.dir, &nc.dir)),
        ("cache.disk_size", differ(&oc.disk_size, &nc.disk_size)),
        (
            "cache.memory_size",
            differ(&oc.memory_size, &nc.memory_size),
        ),
        (
            "cache.memory_max_object",
            differ(&oc.memory_max_object, &nc.memory_max_object),
        ),
        (
            "cache.scrub_interval",
            differ(&oc.scrub_interval, &nc.scrub_interval),
        ),
        ("cache.scrub_rate", differ(&oc.scrub_rate, &nc.scrub_rate)),
        ("cache.open_files", differ(&oc.open_files, &nc.open_files)),
        ("cache.max_fills", differ(&oc.max_fills, &nc.max_fills)),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect();
    (applied, restart)
}

/// Re-verifies the disk tier in the background, one pass per interval.
fn spawn_scrub(daemon: &Arc<Daemon>, config: &Config) -> Option<tokio::task::JoinHandle<()>> {
    let (interval, rate) = (config.cache.scrub_interval, config.cache.scrub_rate);
    if interval.is_zero() {
        return None;
    }
    let (cache, metrics) = (daemon.cache.clone(), daemon.metrics.clone());
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let c = cache.clone();
            match tokio::task::spawn_blocking(move || c.scrub(rate)).await {
                Ok(bad) => {
                    let now = std::time::SystemTime::now();
                    metrics.scrub_last_pass.set(crate::volume::unix(now) as i64);
                    tracing::info!(corrupt = bad, "disk cache scrub finished");
                }
                Err(e) => tracing::error!("disk cache scrub failed: {e}"),
            }
        }
    }))
}

/// Tells systemd (when it started us with Type=notify) how we are doing.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify: {e}");
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// A config in `dir` with plain-tree volumes (name, tree) and a cache,
    /// listening on a free loopback port.
    fn write_config(dir: &Path, volumes: &[(&str, &str)]) -> PathBuf {
        let mut text = String::from(
            "origin = \"origin\"\nstaging = \"staging\"\n\
             [daemon]\nlisten = [\"127.0.0.1:0\"]\ndrain_timeout = \"20s\"\ndrain_delay = \"0s\"\n\
             [cache]\ndir = \"cache\"\n",
        );
        for (name, tree) in volumes {
            text += &format!("\n[volumes.{name}]\ntree = \"{tree}\"\n");
        }
        let file = dir.join("unimirror.toml");
        std::fs::write(&file, text).unwrap();
        file
    }

    /// A server run in-process: where it listens, and how to reload and
    /// stop it.
    struct Running {
        addr: SocketAddr,
        reload: mpsc::Sender<oneshot::Sender<()>>,
        stop: oneshot::Sender<()>,
        done: tokio::task::JoinHandle<Result<()>>,
    }

    async fn start(file: &Path) -> Running {
        let config = Config::load(file).unwrap();
        let (reload, requests) = mpsc::channel(1);
        let (addr_tx, addr_rx) = oneshot::channel();
        let mut addr_tx = Some(addr_tx);
        let control = Control {
            signals: false,
            reload: Some(requests),
            listening: Box::new(move |_, addr| {
                if let Some(tx) = addr_tx.take() {
                    let _ = tx.send(addr);
                }
            }),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(run_with(
            config,
            async {
                let _ = stopped.await;
            },
            control,
        ));
        Running {
            addr: addr_rx.await.expect("the server listens"),
            reload,
            stop,
            done,
        }
    }

    impl Running {
        async fn reload(&self) {
            let (done, applied) = oneshot::channel();
            self.reload.send(done).await.unwrap();
            applied.await.unwrap();
        }
    }

    /// Sends a GET and reads the whole response: its status and body.
    async fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        s.read_to_end(&mut response).await.unwrap();
        split(&response)
    }

    fn split(response: &[u8]) -> (u16, Vec<u8>) {
        let end = memchr::memmem::find(response, b"\r\n\r\n").expect("a complete head");
        let status = std::str::from_utf8(&response[9..12])
            .unwrap()
            .parse()
            .unwrap();
        (status, response[end + 4..].to_vec())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_applies_new_volumes_and_a_bad_file_keeps_the_running_config() {
        let dir = tempfile::tempdir().unwrap();
        for (tree, file) in [("a", "hello.txt"), ("b", "other.txt")] {
            std::fs::create_dir_all(dir.path().join(tree)).unwrap();
            std::fs::write(dir.path().join(tree).join(file), tree).unwrap();
        }
        let file = write_config(dir.path(), &[("a", "a")]);
        let server = start(&file).await;
        assert_eq!(get(server.addr, "/a/hello.txt").await, (200, b"a".to_vec()));
        assert_eq!(get(server.addr, "/b/other.txt").await.0, 404);

        write_config(dir.path(), &[("a", "a"), ("b", "b")]);
        server.reload().await;
        assert_eq!(get(server.addr, "/b/other.txt").await, (200, b"b".to_vec()));

        std::fs::write(&file, "this is not a config [").unwrap();
        server.reload().await;
        assert_eq!(get(server.addr, "/b/other.txt").await, (200, b"b".to_vec()));
        assert_eq!(get(server.addr, "/a/hello.txt").await.0, 200);

        server.stop.send(()).unwrap();
        server.done.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shutdown_stops_accepting_and_drains_the_requests_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("t")).unwrap();
        // Larger than the socket buffers: the response is still being
        // sent when the shutdown comes.
        let big: Vec<u8> = (0..32u32 << 20).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("t/big.bin"), &big).unwrap();
        let file = write_config(dir.path(), &[("t", "t")]);
        let server = start(&file).await;

        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /t/big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = vec![0; 64 << 10];
        let mut got = 0;
        while memchr::memmem::find(&response[..got], b"\r\n\r\n").is_none() {
            let n = s.read(&mut response[got..]).await.unwrap();
            assert!(n > 0, "the response began");
            got += n;
        }
        response.truncate(got);

        server.stop.send(()).unwrap();
        // New connections are refused once the listeners stop...
        let refused = async {
            while TcpStream::connect(server.addr).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), refused)
            .await
            .expect("the listener closes");
        // ...while the request in flight holds the server up...
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !server.done.is_finished(),
            "the drain waits for the request"
        );

        // ...and ends whole.
        s.read_to_end(&mut response).await.unwrap();
        let (status, body) = split(&response);
        assert_eq!(status, 200);
        assert!(body == big, "the body arrived whole ({} bytes)", body.len());
        tokio::time::timeout(Duration::from_secs(10), server.done)
            .await
            .expect("the drain ends with the request")
            .unwrap()
            .unwrap();
    }
}

//! Running the daemon: TLS and HTTP/2, signals (reload, drain), limits,
//! its own pages and its logs — with the real binary and real clients.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// `curl` fetching `url`; returns (HTTP version, body) or the error text.
fn curl(args: &[&str], url: &str) -> Result<(String, Vec<u8>), String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("body");
    let o = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "30", "-o"])
        .arg(&out)
        .args(["-w", "%{http_version}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl is installed");
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    Ok((
        String::from_utf8_lossy(&o.stdout).into_owned(),
        fs::read(out).unwrap(),
    ))
}

#[test]
fn tls_with_http2_over_alpn_h2c_and_a_certificate_reload_that_keeps_connections() {
    let env = Env::new();
    env.write("pkg/file.whl", b"over tls");
    env.release();
    let first = make_cert(env.path());
    fs::write(env.path().join("first.pem"), &first).unwrap();
    let opts = DaemonOpts {
        daemon:
            "[daemon.tls]\nlisten = [\"127.0.0.1:0\"]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n"
                .into(),
        ..Default::default()
    };
    let mut d = Daemon::start_with(&env, &opts);
    let https = d.next_line();
    let port = https.rsplit(':').next().unwrap().to_string();
    let url = format!("https://localhost:{port}/vol/pkg/file.whl");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let trust_first = env.path().join("first.pem");
    let trust = |pem: &Path, version: &str| {
        curl(
            &[
                "--resolve",
                &resolve,
                "--cacert",
                pem.to_str().unwrap(),
                version,
            ],
            &url,
        )
    };
    assert_eq!(
        trust(&trust_first, "--http2").unwrap(),
        ("2".into(), b"over tls".to_vec())
    );
    assert_eq!(
        trust(&trust_first, "--http1.1").unwrap(),
        ("1.1".into(), b"over tls".to_vec())
    );
    // Cleartext HTTP/2 on the plain listener.
    let h2c = curl(
        &["--http2-prior-knowledge"],
        &format!("http://{}/vol/pkg/file.whl", d.addr),
    );
    assert_eq!(h2c.unwrap(), ("2".into(), b"over tls".to_vec()));

    // A keep-alive connection open across the reload keeps working.
    let mut kept = connect(d.addr);
    let ask = "GET /vol/pkg/file.whl HTTP/1.1\r\nHost: x\r\n\r\n";
    kept.write_all(ask.as_bytes()).unwrap();
    assert_eq!(read_response(&mut kept).1, b"over tls");

    let second = make_cert(env.path());
    fs::write(env.path().join("second.pem"), &second).unwrap();
    signal(&d.child, libc::SIGHUP);
    wait_for("the certificate reload", 10, || {
        d.log_text().contains("TLS certificate reloaded")
    });
    assert!(trust(&env.path().join("second.pem"), "--http2").is_ok());
    assert!(
        trust(&trust_first, "--http2").is_err(),
        "the old certificate is still served"
    );
    kept.write_all(ask.as_bytes()).unwrap();
    assert_eq!(read_response(&mut kept).1, b"over tls");

    // A broken certificate on reload keeps the working one.
    fs::write(env.path().join("cert.pem"), "not a certificate").unwrap();
    signal(&d.child, libc::SIGHUP);
    wait_for("the refused reload", 10, || {
        d.log_text().contains("TLS certificate not reloaded")
    });
    assert!(trust(&env.path().join("second.pem"), "--http2").is_ok());
}

#[test]
fn sighup_reloads_volumes_and_a_bad_file_keeps_the_running_config() {
    let env = Env::new();
    fs::create_dir_all(env.path().join("extra")).unwrap();
    fs::write(env.path().join("extra/hello.txt"), b"added by reload").unwrap();
    env.write("x.txt", b"x");
    env.release();
    let d = Daemon::start(&env);
    assert_eq!(d.get("/extra/hello.txt").status, 404);
    let serve_config = env.path().join("serve.toml");
    let text = fs::read_to_string(&serve_config).unwrap();
    assert!(text.contains("poll_interval = \"200ms\""), "{text}");
    let slower = text.replace("poll_interval = \"200ms\"", "poll_interval = \"300ms\"");
    fs::write(
        &serve_config,
        format!("{slower}\n[volumes.extra]\ntree = \"extra\"\n"),
    )
    .unwrap();
    signal(&d.child, libc::SIGHUP);
    wait_for("the reload", 10, || {
        d.log_text().contains("configuration reloaded")
    });
    // The log says what changed, and what waits for a restart.
    let log = d.log_text();
    assert!(log.contains("volume `extra` added"), "{log}");
    assert!(
        log.contains("changed, but applied only on restart: daemon.poll_interval"),
        "{log}"
    );
    assert_eq!(d.get("/extra/hello.txt").body, b"added by reload");
    assert_eq!(d.get("/vol/x.txt").body, b"x");

    fs::write(
        &serve_config,
        format!("{text}\n[volumes.extra]\ntree = 5\n"),
    )
    .unwrap();
    signal(&d.child, libc::SIGHUP);
    wait_for("the refused reload", 10, || {
        d.log_text().contains("reload refused")
    });
    assert!(d.log_text().contains("volumes.extra.tree"));
    assert_eq!(d.get("/extra/hello.txt").body, b"added by reload");
}

/// The body of a GET of `path` during which the daemon gets SIGTERM (after
/// the first bytes arrived), read to the end of the connection.
fn download_across_sigterm(d: &Daemon, path: &str) -> Vec<u8> {
    let mut s = connect(d.addr);
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = vec![0u8; 4096];
    let n = s.read(&mut first).unwrap();
    assert!(n > 0);
    signal(&d.child, libc::SIGTERM);
    let mut all = first[..n].to_vec();
    s.read_to_end(&mut all).unwrap();
    let body_at = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    all.split_off(body_at)
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits() {
    let env = Env::new();
    let big: Vec<u8> = (0..(24u32 << 20)).map(|i| (i * 31 % 251) as u8).collect();
    env.write("big.bin", &big);
    env.release();
    let mut d = Daemon::start(&env);
    let body = download_across_sigterm(&d, "/vol/big.bin");
    assert_eq!(body.len(), big.len(), "the response in flight was cut");
    assert!(body == big);
    let status = d.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(d.log_text().contains("stopped"));
    assert!(TcpStream::connect(d.addr).is_err());
}

/// A load balancer's view of a drain: `/readyz` polled all along, while a
/// download is in flight and new requests keep coming.
#[test]
fn a_drain_turns_readyz_unready_first_keeps_serving_for_the_delay_then_stops() {
    let env = Env::new();
    let big: Vec<u8> = (0..(24u32 << 20)).map(|i| (i * 7 % 253) as u8).collect();
    env.write("big.bin", &big);
    env.write("small", b"small");
    env.release();
    let mut d = Daemon::start_with(
        &env,
        &DaemonOpts {
            daemon: "drain_delay = \"1500ms\"\n".into(),
            ..DaemonOpts::default()
        },
    );
    assert_eq!(d.get("/readyz").status, 200);

    // SIGUSR1: unready, but everything is still served, for as long as it
    // takes (the host is being taken out of rotation).
    signal(&d.child, libc::SIGUSR1);
    wait_for("readyz to say draining", 10, || {
        let r = d.get("/readyz");
        r.status == 503 && r.text().contains("draining")
    });
    assert_eq!(d.get("/vol/small").body, b"small");
    assert!(d.child.try_wait().unwrap().is_none(), "still running");

    // A download in flight, then SIGTERM: the drain delay was served since
    // SIGUSR1, so the daemon stops accepting at once and finishes it.
    let body = download_across_sigterm(&d, "/vol/big.bin");
    assert!(body == big, "the download in flight was cut");
    assert!(d.child.wait().unwrap().success());

    // SIGTERM alone: unready at once, still serving new requests during
    // the delay, then no more connections, and exit 0.
    let mut d = Daemon::start_with(
        &env,
        &DaemonOpts {
            daemon: "drain_delay = \"3s\"\n".into(),
            ..DaemonOpts::default()
        },
    );
    signal(&d.child, libc::SIGTERM);
    wait_for("readyz to say draining", 10, || {
        let r = d.get("/readyz");
        r.status == 503 && r.text().contains("draining")
    });
    let r = d.get("/vol/small");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"small"[..]));
    assert!(d.child.wait().unwrap().success());
    assert!(TcpStream::connect(d.addr).is_err());
    let log = d.log_text();
    assert!(log.contains("still serving for"), "{log}");
}

#[test]
fn a_silent_connection_to_the_tls_listener_is_closed_after_the_first_byte_timeout() {
    let env = Env::new();
    env.write("a.whl", b"a");
    env.release();
    make_cert(env.path());
    // The handshake timeout alone would keep a silent socket for a minute.
    let opts = DaemonOpts {
        daemon: "first_byte_timeout = \"1s\"\n[daemon.tls]\nlisten = [\"127.0.0.1:0\"]\n\
                 cert = \"cert.pem\"\nkey = \"key.pem\"\nhandshake_timeout = \"60s\"\n"
            .into(),
        ..Default::default()
    };
    let mut d = Daemon::start_with(&env, &opts);
    let https = d.next_line();
    let addr: std::net::SocketAddr = https
        .strip_prefix("listening on https://")
        .unwrap()
        .parse()
        .unwrap();
    let started = std::time::Instant::now();
    let mut silent = connect(addr);
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 16];
    // Closed by the daemon (EOF, or a reset), without a byte sent.
    assert!(matches!(silent.read(&mut buf), Ok(0) | Err(_)));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "closed after {took:?}");
    assert_eq!(
        d.metric(
            "unimirror_connections_closed_total",
            &[("reason", "first_byte")]
        ),
        1.0
    );
}

#[test]
fn slow_and_silent_clients_are_cut_off() {
    let env = Env::new();
    let big = vec![7u8; 32 << 20];
    env.write("big.bin", &big);
    env.release();
    let opts = DaemonOpts {
        daemon: "header_read_timeout = \"300ms\"\nwrite_timeout = \"300ms\"\n".into(),
        ..Default::default()
    };
    let d = Daemon::start_with(&env, &opts);

    // Headers that never finish: the connection is closed.
    let mut silent = connect(d.addr);
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    silent.write_all(b"GET /vol/big.bin HTTP/1.1\r\n").unwrap();
    let mut buf = [0u8; 1024];
    let n = silent.read(&mut buf).unwrap_or(0);
    assert!(
        n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    // A client that stops reading: the response is abandoned, the
    // connection closed, and the access log says it was incomplete.
    let mut stalled = connect(d.addr);
    stalled
        .write_all(b"GET /vol/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    wait_for("the stalled response to be dropped", 30, || {
        d.log_text()
            .lines()
            .any(|l| l.contains("/vol/big.bin") && l.contains("complete=false"))
    });
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = 0usize;
    let mut chunk = vec![0u8; 1 << 20];
    while let Ok(n) = stalled.read(&mut chunk) {
        if n == 0 {
            break;
        }
        got += n;
    }
    assert!(got < big.len(), "all {got} bytes arrived");
}

#[test]
fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let env = Env::new();
    env.write("a.txt", b"a");
    env.release();
    let opts = DaemonOpts {
        daemon: "max_connections = 1\n".into(),
        ..Default::default()
    };
    let d = Daemon::start_with(&env, &opts);
    let ask = b"GET /vol/a.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = connect(d.addr);
    first.write_all(ask).unwrap();
    assert_eq!(read_response(&mut first).1, b"a");
    let mut second = connect(d.addr);
    second.write_all(ask).unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut b = [0u8; 1];
    let e = second.read(&mut b).unwrap_err();
    assert!(matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    drop(first);
    second
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(read_response(&mut second).1, b"a");
}

#[test]
fn own_pages_health_readiness_metrics_and_home() {
    let env = Env::new();
    env.write("a.txt", b"a");
    env.write("simple/index.html", b"<html></html>");
    env.release();
    let d = Daemon::start(&env);
    // Before any event, the series alerts watch exist, at zero.
    for (name, labels) in [
        (
            "unimirror_integrity_failures_total",
            vec![("where", "origin")],
        ),
        (
            "unimirror_integrity_failures_total",
            vec![("where", "disk")],
        ),
        ("unimirror_cache_evictions_total", vec![("tier", "disk")]),
        (
            "unimirror_cache_write_failures_total",
            vec![("reason", "full")],
        ),
        (
            "unimirror_origin_errors_total",
            vec![("volume", "vol"), ("kind", "missing")],
        ),
        (
            "unimirror_manifest_loads_total",
            vec![("volume", "vol"), ("result", "refused")],
        ),
        (
            "unimirror_connections_closed_total",
            vec![("reason", "first_byte")],
        ),
        (
            "unimirror_requests_total",
            vec![("volume", "vol"), ("outcome", "miss"), ("status", "5xx")],
        ),
    ] {
        assert_eq!(d.metric(name, &labels), 0.0, "{name} {labels:?}");
    }
    assert_eq!(d.get("/healthz").status, 200);
    assert_eq!(d.get("/readyz").status, 200);
    d.get("/vol/a.txt");
    let m = d.get("/metrics");
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let text = m.text();
    for name in [
        "unimirror_requests_total",
        "unimirror_bytes_served_total",
        "unimirror_origin_fetch_seconds_bucket",
        "unimirror_cache_bytes",
        "unimirror_release_id",
        "unimirror_release_created_seconds",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    assert!(text.contains("le=\"600\""), "buckets up to 10 minutes");
    assert_eq!(d.metric("unimirror_release_id", &[("volume", "vol")]), 1.0);

    let home = d.request(
        "GET",
        "/",
        &[("Host", "mirror.example<script>alert(1)</script>")],
    );
    assert_eq!(home.status, 200);
    let page = home.text();
    assert!(page.contains("mirror.example&lt;script&gt;"));
    assert!(!page.contains("<script>"));
    assert!(page.contains("vol") && page.contains("#1"));
    assert!(page.contains("plain tree"));
    // The volume looks like a PyPI index: the page says how to use it.
    assert!(
        page.contains(
            "index-url = http://mirror.example&lt;script&gt;alert(1)&lt;/script&gt;/vol/simple/"
        ),
        "{page}"
    );
    let h = d.request("HEAD", "/", &[]);
    assert!(h.body.is_empty());

    assert_eq!(d.request("POST", "/vol/a.txt", &[]).status, 405);
    assert_eq!(d.request("DELETE", "/", &[]).status, 405);

    // An unreadable origin makes the daemon unready, and it recovers.
    assert_eq!(d.metric("unimirror_ready", &[]), 1.0);
    let vol = env.origin().join("vol");
    let moved = env.origin().join("vol.away");
    fs::rename(&vol, &moved).unwrap();
    // The gauge an alert watches: each scrape runs the probe, with no
    // /readyz asked in between.
    assert_eq!(d.metric("unimirror_ready", &[]), 0.0);
    let r = d.get("/readyz");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("vol"));
    fs::rename(&moved, &vol).unwrap();
    assert_eq!(d.metric("unimirror_ready", &[]), 1.0);
    assert_eq!(d.get("/readyz").status, 200);
}

#[test]
fn json_logs_carry_one_access_line_per_request() {
    let env = Env::new();
    env.write("a.txt", b"abc");
    env.release();
    let opts = DaemonOpts {
        daemon: "log_format = \"json\"\n".into(),
        ..Default::default()
    };
    let d = Daemon::start_with(&env, &opts);
    d.get("/vol/a.txt");
    d.get("/vol/missing");
    let lines = || -> Vec<serde_json::Value> {
        d.log_text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
            .collect()
    };
    wait_for("two access lines", 10, || {
        lines()
            .iter()
            .filter(|l| l["fields"]["message"] == "request")
            .count()
            >= 2
    });
    let all = lines();
    let hit = all
        .iter()
        .find(|l| l["fields"]["path"] == "/vol/a.txt")
        .unwrap();
    let f = &hit["fields"];
    assert_eq!(
        (f["volume"].as_str(), f["status"].as_u64()),
        (Some("vol"), Some(200))
    );
    assert_eq!(
        (f["bytes"].as_u64(), f["tier"].as_str()),
        (Some(3), Some("origin"))
    );
    assert!(f["micros"].is_u64());
    let miss = all
        .iter()
        .find(|l| l["fields"]["path"] == "/vol/missing")
        .unwrap();
    assert_eq!(miss["fields"]["status"].as_u64(), Some(404));
}

/// `UNIMIRROR_LOG=info,access=off` drops the access lines (as the
/// benchmarks run it, like nginx with `access_log off`) and keeps the
/// rest; requests are still counted.
#[test]
fn the_access_log_can_be_filtered_off() {
    let env = Env::new();
    env.write("a.txt", b"abc");
    env.release();
    let opts = DaemonOpts {
        env: vec![("UNIMIRROR_LOG".into(), "info,access=off".into())],
        ..Default::default()
    };
    let mut d = Daemon::start_with(&env, &opts);
    assert_eq!(d.get("/vol/a.txt").status, 200);
    let counted = [("volume", "vol"), ("outcome", "miss"), ("status", "2xx")];
    assert_eq!(d.metric("unimirror_requests_total", &counted), 1.0);
    // The daemon writes out every buffered line as it stops.
    signal(&d.child, libc::SIGTERM);
    assert!(d.child.wait().unwrap().success());
    let log = d.log_text();
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains("INFO request "), "{log}");
}

#[test]
fn a_bad_config_stops_the_start_with_file_key_and_reason() {
    let env = Env::new();
    let config = env.path().join("bad.toml");
    let text = fs::read_to_string(env.config()).unwrap();
    fs::write(&config, format!("{text}\n[cache]\ndisk_size = \"lots\"\n")).unwrap();
    let out = Command::new(DAEMON)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("cache.disk_size") && err.contains("lots"),
        "{err}"
    );

    // A cache directory that cannot be created is named too.
    fs::write(
        &config,
        format!("{text}\n[cache]\ndir = \"/proc/unimirror-cache\"\n"),
    )
    .unwrap();
    let out = Command::new(DAEMON)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cache.dir") && err.contains("/proc/unimirror-cache"),
        "{err}"
    );
}

#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let env = Env::new();
    env.write("a.txt", b"a");
    env.release();
    let socket_path = env.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let opts = DaemonOpts {
        env: vec![("NOTIFY_SOCKET".into(), socket_path.to_str().unwrap().into())],
        ..Default::default()
    };
    let mut d = Daemon::start_with(&env, &opts);
    let next = || {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next().trim(), "READY=1");
    signal(&d.child, libc::SIGHUP);
    let reloading = next();
    assert!(
        reloading.contains("RELOADING=1") && reloading.contains("MONOTONIC_USEC="),
        "{reloading}"
    );
    assert_eq!(next().trim(), "READY=1");
    signal(&d.child, libc::SIGTERM);
    assert_eq!(next().trim(), "STOPPING=1");
    assert!(d.child.wait().unwrap().success());
}

#[test]
fn an_origin_that_stops_answering_times_the_fill_out() {
    let env = Env::new();
    let content = b"a file whose origin will hang".to_vec();
    env.write("hang.whl", &content);
    env.release();
    // A FIFO with no writer: opening it blocks, like a hung network mount.
    let object = env
        .vol()
        .object_file(&unimirror::volume::manifest::Sha256Digest::of(&content));
    fs::remove_file(&object).unwrap();
    let c = std::ffi::CString::new(object.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let opts = DaemonOpts {
        daemon: "origin_timeout = \"300ms\"\n".into(),
        ..Default::default()
    };
    let d = Daemon::start_with(&env, &opts);
    let r = d.get("/vol/hang.whl");
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(
        d.metric("unimirror_origin_errors_total", &[("kind", "timeout")]),
        1.0
    );
    assert_eq!(d.get("/healthz").status, 200);
}

#[test]
fn the_default_open_files_fits_a_low_descriptor_limit_quietly_and_a_configured_one_is_warned() {
    let env = Env::new();
    env.write("a.txt", b"a");
    env.release();
    let low = DaemonOpts {
        nofile: Some(4096),
        ..DaemonOpts::default()
    };
    let d = Daemon::start_with(&env, &low);
    assert_eq!(d.get("/vol/a.txt").status, 200);
    // Logged in order: once the request's line is out, so is anything
    // the start logged.
    wait_for("the access line", 10, || {
        d.log_text().contains("/vol/a.txt")
    });
    assert!(
        !d.log_text().contains("cache.open_files"),
        "a default start warned: {}",
        d.log_text()
    );
    drop(d);
    let configured = DaemonOpts {
        nofile: Some(4096),
        cache: "open_files = 100000".into(),
        ..DaemonOpts::default()
    };
    let d = Daemon::start_with(&env, &configured);
    assert_eq!(d.get("/vol/a.txt").status, 200);
    wait_for("the warning logged", 10, || {
        d.log_text()
            .contains("cache.open_files is more than half the descriptor limit")
    });
}

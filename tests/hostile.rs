//! Hostile and heavy clients against the real daemon: request smuggling,
//! markup in names and headers, many connections, slow clients.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// Sends raw bytes on one connection and reads until the daemon closes it
/// (or 10 s pass); returns everything received.
fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The statuses of the responses in a stream of them (the bodies here
/// never contain `HTTP/1.1 `).
fn statuses(responses: &str) -> Vec<String> {
    responses
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| responses[i + 9..i + 12].to_string())
        .collect()
}

fn served() -> (Env, Daemon) {
    let env = Env::new();
    env.write("a.whl", b"the public file");
    env.write(
        "secret.whl",
        b"should never be answered to a smuggled request",
    );
    env.release();
    let d = Daemon::start(&env);
    (env, d)
}

#[test]
fn smuggling_attempts_are_refused_with_400_and_a_closed_connection() {
    let (_env, d) = served();
    // The control: two pipelined requests, two answers.
    let ok = raw_exchange(
        d.addr,
        b"GET /vol/a.whl HTTP/1.1\r\nHost: x\r\n\r\nGET /vol/a.whl HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(statuses(&ok), ["200", "200"], "{ok}");

    let smuggled = "GET /vol/secret.whl HTTP/1.1\r\nHost: x\r\n\r\n";
    let attempts: Vec<(&str, String)> = vec![
        (
            "Content-Length and Transfer-Encoding",
            format!(
                "GET /vol/a.whl HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "two Content-Lengths",
            format!(
                "GET /vol/a.whl HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
        ),
        (
            "a body on GET",
            format!(
                "GET /vol/a.whl HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
        ),
        (
            "chunked GET",
            format!(
                "GET /vol/a.whl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
                smuggled.len()
            ),
        ),
        (
            "obs-fold",
            format!("GET /vol/a.whl HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n{smuggled}"),
        ),
        (
            "bare LF line ends",
            format!("GET /vol/a.whl HTTP/1.1\nHost: x\n\n{smuggled}"),
        ),
        (
            "one bare LF among CRLFs",
            format!("GET /vol/a.whl HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n{smuggled}"),
        ),
    ];
    for (what, request) in attempts {
        let got = raw_exchange(d.addr, request.as_bytes());
        assert_eq!(statuses(&got), ["400"], "{what}: {got}");
        assert!(!got.contains("never be answered"), "{what}: {got}");
    }
    // Both kinds are logged: bodies refused here, unparsable requests by
    // hyper (info lines reach the log within 100 ms).
    for line in ["refused: a request body", "refused a malformed request"] {
        wait_for(line, 10, || d.log_text().contains(line));
    }
    // And the daemon is fine.
    assert_eq!(d.get("/vol/a.whl").body, b"the public file");
}

#[test]
fn names_and_the_host_header_are_escaped_wherever_they_reach_html() {
    let env = Env::new();
    // `<script>alert(1)</script>` as a path: a directory
    // `<script>alert(1)<` holding a file `script>`; and a name with quotes.
    let evil = env.tree().join("<script>alert(1)<");
    fs::create_dir_all(&evil).unwrap();
    fs::write(evil.join("script>"), b"x").unwrap();
    fs::write(env.tree().join("a\"b'<i>&.txt"), b"x").unwrap();
    env.write("ok.whl", b"x");
    env.release();
    let d = Daemon::start(&env);
    for dir in ["/plain/", "/vol/"] {
        let html = d.get(dir).text();
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/"),
            "{dir}: {html}"
        );
        assert!(
            html.contains("a&quot;b&#39;&lt;i&gt;&amp;.txt"),
            "{dir}: {html}"
        );
        assert!(
            !html.contains("<script>") && !html.contains("<i>"),
            "{dir}: {html}"
        );
        let inner = format!("{dir}%3Cscript%3Ealert(1)%3C/");
        let html = d.get(&inner).text();
        let title = format!("Index of {dir}&lt;script&gt;alert(1)&lt;/");
        assert!(html.contains(&title), "{inner}: {html}");
        assert!(html.contains(">script&gt;</a>"), "{inner}: {html}");
        assert!(!html.contains("<script>"), "{inner}: {html}");
    }
    // The home page names this host in its client set-up lines.
    let r = d.request("GET", "/", &[("Host", "\"><script>alert(2)</script>")]);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("&lt;script&gt;alert(2)"), "{}", r.text());
    assert!(!r.text().contains("<script>"), "{}", r.text());
}

/// The daemon's resident memory, in KiB.
fn rss_kib(d: &Daemon) -> u64 {
    let status = fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

/// Lets this test process hold a few thousand sockets.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only touch the struct given.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(65_536);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

#[test]
fn a_thousand_keep_alive_clients_are_served_beside_slow_ones_in_bounded_memory() {
    raise_fd_limit();
    let env = Env::new();
    let content = blob(1, 4000);
    let big = blob(2, 8 << 20);
    env.write("f.whl", &content);
    env.write("big.whl", &big);
    env.release();
    let opts = DaemonOpts {
        daemon: "header_read_timeout = \"5s\"\nwrite_timeout = \"2s\"\n".into(),
        ..Default::default()
    };
    let d = Daemon::start_with(&env, &opts);
    assert_eq!(d.get("/vol/f.whl").body, content);
    let idle = rss_kib(&d);

    // Slow-loris: 200 connections that send half a header and stop; a
    // slow reader that asks for 8 MiB and reads nothing.
    let mut loris: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(d.addr).unwrap();
            s.write_all(b"GET /vol/f.whl HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    let mut slow_reader = TcpStream::connect(d.addr).unwrap();
    slow_reader
        .write_all(b"GET /vol/big.whl HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();

    // A thousand keep-alive clients, two requests each, all answered.
    let mut clients: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(d.addr).unwrap())
        .collect();
    for round in 0..2 {
        for c in &mut clients {
            c.write_all(b"GET /vol/f.whl HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
        }
        for (i, c) in clients.iter_mut().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let (head, body) = read_response(c);
            assert!(
                head.starts_with("HTTP/1.1 200"),
                "client {i}, round {round}: {head}"
            );
            assert_eq!(body, content, "client {i}, round {round}");
        }
    }
    let loaded = rss_kib(&d);
    eprintln!(
        "daemon RSS: {idle} KiB idle, {loaded} KiB with 1,000 keep-alive clients, 200 slow-loris and a slow reader"
    );
    assert!(
        loaded < idle + 100 * 1024,
        "RSS grew from {idle} to {loaded} KiB"
    );

    // The slow ones are cut off by the timeouts.
    for s in &mut loris {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap_or(0);
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || got.starts_with("HTTP/1.1 408"), "{got}");
    }
    wait_for("the slow reader to be cut off", 30, || {
        d.log_text()
            .lines()
            .any(|l| l.contains("/vol/big.whl") && l.contains("complete=false"))
    });
    drop(slow_reader);
    loris.clear();
    drop(clients);
    assert_eq!(d.get("/vol/f.whl").body, content);
}

//! On-demand releases (`fetch = "on-demand"`): the sync verifies and
//! releases the metadata and leaves the artifacts upstream as remote
//! entries; the daemon fetches each on first request, verifies it and
//! caches it. Upstreams are the same fixtures the sync tests build with
//! the real tools, served by a real HTTP server that logs every request,
//! and the clients are the real ones.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::Digest;
use unimirror::volume::manifest::{Kind, Manifest, Verify};

use crate::common::*;
use crate::sync::{
    AptArchive, YUM_REPO, apt_env, apt_source, dnf_downloads_greet,
    greet_installs_with_hashes_and_pulls_its_dependency, one_repo, pypi_upstream, set_upstream,
    yum_baseurl, yum_env, yum_upstream,
};

const GREET_DEB: &str = "pool/main/g/greet/greet_1.0_all.deb";
const LIBGREET_DEB: &str = "pool/main/l/libgreet/libgreet_1.0_all.deb";
const GREET_DSC: &str = "pool/main/g/greet/greet_1.0.dsc";

/// The current release's manifest.
fn manifest(env: &Env, id: u64) -> Manifest {
    let vol = env.vol();
    let meta = vol.meta(id).unwrap();
    vol.manifest(&meta).unwrap()
}

/// The manifest header's version of release `id`.
fn header_version(env: &Env, id: u64) -> u32 {
    let bytes = fs::read(env.vol().manifest_file(id)).unwrap();
    u32::from_le_bytes(bytes[8..12].try_into().unwrap())
}

/// Whether the origin's store holds an object with these bytes.
fn stored(env: &Env, content: &[u8]) -> bool {
    object_path(env, content).exists()
}

/// An apt archive, a logged upstream serving it, and an env whose volume
/// `vol` syncs it on demand (sources too) and has synced it once.
fn apt_on_demand(dir: &Path) -> (AptArchive, Upstream, Env) {
    let archive = AptArchive::new(dir);
    let upstream = Upstream::logged(&archive.archive(), &dir.join("upstream.log"));
    let env = apt_env(
        &upstream,
        &archive.keyring,
        "sources = true\nfetch = \"on-demand\"",
    );
    let out = env.update_ok(&["sync", "vol"]);
    assert!(out.contains("released vol #1"), "{out}");
    (archive, upstream, env)
}

#[test]
fn an_on_demand_apt_release_holds_no_artifact_and_apt_get_installs_through_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, upstream, env) = apt_on_demand(dir.path());
    let pool = |rel: &str| fs::read(archive.archive().join(rel)).unwrap();

    // The sync read the signed indexes and no artifact.
    assert_eq!(upstream.requests("GET", ".deb"), 0);
    assert_eq!(upstream.requests("GET", ".dsc"), 0);
    let m = manifest(&env, 1);
    for rel in [GREET_DEB, LIBGREET_DEB, GREET_DSC] {
        let e = m.get(rel.as_bytes()).unwrap().expect(rel);
        assert_eq!(e.kind, Kind::Remote, "{rel}");
        assert_eq!(e.size, pool(rel).len() as u64, "{rel}");
        assert_eq!(
            e.remote_url(),
            Some(format!("{}{rel}", upstream.url()).as_str())
        );
        assert!(!stored(&env, &pool(rel)), "{rel} is on the origin");
    }
    let meta = env.vol().meta(1).unwrap();
    assert_eq!(meta.remote_files, m.counts().remote);
    assert!(meta.remote_files >= 4, "{meta:?}");
    assert_eq!(header_version(&env, 1), 2);
    // The signed metadata itself is on the origin, as with a mirror.
    let inrelease = fs::read(archive.archive().join("dists/stable/InRelease")).unwrap();
    assert!(stored(&env, &inrelease));

    // A rerun with nothing new upstream releases nothing.
    let out = env.update_ok(&["sync", "vol"]);
    assert!(out.contains("nothing released"), "{out}");
    assert_eq!(env.current(), Some(1));

    // apt, with signature checking on, installs through the daemon.
    let d = Daemon::start(&env);
    let source = apt_source(&d, &archive.keyring);
    let source = format!("{source}\n{}", source.replacen("deb ", "deb-src ", 1));
    for client in ["apt1", "apt2"] {
        let apt = env.path().join(client);
        let o = apt_get(&apt, &source, &["update"]);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        let o = apt_get(
            &apt,
            &source,
            &["install", "--download-only", "-y", "greet"],
        );
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        let cached = apt.join("var/cache/apt/archives");
        for rel in [GREET_DEB, LIBGREET_DEB] {
            let name = Path::new(rel).file_name().unwrap();
            assert_eq!(fs::read(cached.join(name)).unwrap(), pool(rel), "{rel}");
        }
    }
    // Each artifact was read from the upstream once, for both clients.
    assert_eq!(
        upstream.requests("GET", "greet_1.0_all.deb"),
        2,
        "greet and libgreet"
    );
    assert_eq!(upstream.requests("GET", "/greet_1.0_all.deb"), 1);
    let upstream_fills = d.metric(
        "unimirror_fills_total",
        &[("volume", "vol"), ("source", "upstream")],
    );
    assert_eq!(upstream_fills, 2.0);
    let bytes = d.metric("unimirror_upstream_read_bytes_total", &[("volume", "vol")]);
    assert_eq!(
        bytes as usize,
        pool(GREET_DEB).len() + pool(LIBGREET_DEB).len()
    );
    // And it is still not on the origin.
    assert!(!stored(&env, &pool(GREET_DEB)));
}

#[test]
fn materialized_and_cached_artifacts_outlive_their_upstream_and_the_rest_get_502() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, mut upstream, env) = apt_on_demand(dir.path());
    let pool = |rel: &str| fs::read(archive.archive().join(rel)).unwrap();
    // Retries end within three quarters of the origin timeout: a short
    // one keeps the unreachable case quick.
    let d = Daemon::start_with(
        &env,
        &DaemonOpts {
            daemon: "origin_timeout = \"4s\"\n".into(),
            ..DaemonOpts::default()
        },
    );
    let greet = d.get(&format!("/vol/{GREET_DEB}"));
    assert_eq!(greet.status, 200);
    assert_eq!(greet.body, pool(GREET_DEB));
    assert_eq!(greet.header("x-cache"), Some("miss"));

    // libgreet pinned onto the origin, named as a client asked for it.
    let paths = env.path().join("paths");
    fs::write(
        &paths,
        format!("# pinned\n/vol/{LIBGREET_DEB}\n/vol/no/such.deb\n"),
    )
    .unwrap();
    let out = env.update_ok(&["materialize", "vol", "--paths", paths.to_str().unwrap()]);
    assert!(out.contains("materialized 1 remote files"), "{out}");
    assert!(
        out.contains("1 listed paths are not remote entries"),
        "{out}"
    );
    assert_eq!(env.current(), Some(2));
    assert!(stored(&env, &pool(LIBGREET_DEB)));
    let m = manifest(&env, 2);
    assert_eq!(
        m.get(LIBGREET_DEB.as_bytes()).unwrap().unwrap().kind,
        Kind::File
    );
    assert_eq!(
        m.get(GREET_DEB.as_bytes()).unwrap().unwrap().kind,
        Kind::Remote
    );
    assert_eq!(m.counts().remote, manifest(&env, 1).counts().remote - 1);
    // The next sync keeps it on the origin: nothing changes.
    let out = env.update_ok(&["sync", "vol"]);
    assert!(out.contains("nothing released"), "{out}");
    assert_eq!(env.current(), Some(2));
    // gc keeps what the current release names.
    env.update_ok(&["gc", "vol"]);
    assert!(stored(&env, &pool(LIBGREET_DEB)));

    wait_for("the daemon to serve release 2", 10, || {
        d.get("/vol/dists/stable/InRelease")
            .header("x-unimirror-release")
            == Some("2")
    });
    upstream.stop();
    // Cached: served. Materialized: read from the origin.
    let again = d.get(&format!("/vol/{GREET_DEB}"));
    assert_eq!((again.status, again.body), (200, pool(GREET_DEB)));
    let lib = d.get(&format!("/vol/{LIBGREET_DEB}"));
    assert_eq!(lib.header("x-cache"), Some("miss"));
    assert_eq!((lib.status, lib.body), (200, pool(LIBGREET_DEB)));
    // Neither: a clear 502, and nothing cached.
    for _ in 0..2 {
        let dsc = d.get(&format!("/vol/{GREET_DSC}"));
        assert_eq!(dsc.status, 502, "{}", dsc.text());
        assert!(dsc.text().contains("upstream"), "{}", dsc.text());
    }
    assert!(!cache_entry(&env, &pool(GREET_DSC)).exists());
    assert_eq!(
        d.metric(
            "unimirror_origin_errors_total",
            &[("volume", "vol"), ("kind", "upstream")]
        ),
        2.0
    );
    // A remote entry whose object reached the origin after its release
    // (another release stored it) is read from the origin.
    let object = object_path(&env, &pool(GREET_DSC));
    fs::create_dir_all(object.parent().unwrap()).unwrap();
    fs::write(&object, pool(GREET_DSC)).unwrap();
    let dsc = d.get(&format!("/vol/{GREET_DSC}"));
    assert_eq!((dsc.status, dsc.body), (200, pool(GREET_DSC)));
}

#[test]
fn a_corrupted_upstream_artifact_is_never_served_complete_or_cached() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, upstream, env) = apt_on_demand(dir.path());
    let path = archive.archive().join(GREET_DEB);
    let good = fs::read(&path).unwrap();
    // Same size, other bytes: replaced upstream under the same name.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    fs::write(&path, &bad).unwrap();

    let d = Daemon::start(&env);
    for attempt in 1..=2 {
        let r = d.get(&format!("/vol/{GREET_DEB}"));
        // A small file is checked whole before its first byte (502); a
        // large one would be cut short of its Content-Length.
        assert!(
            !(r.status == 200 && r.complete()),
            "attempt {attempt}: the wrong bytes were served whole"
        );
        assert_ne!(r.body, bad);
        assert_eq!(upstream.requests("GET", "/greet_1.0_all.deb"), attempt);
    }
    assert!(!cache_entry(&env, &good).exists() && !cache_entry(&env, &bad).exists());
    assert_eq!(
        d.metric("unimirror_integrity_failures_total", &[("where", "origin")]),
        2.0
    );
    assert_eq!(
        d.metric(
            "unimirror_origin_errors_total",
            &[("volume", "vol"), ("kind", "integrity")]
        ),
        2.0
    );
    // Fixed upstream: served and cached.
    fs::write(&path, &good).unwrap();
    let r = d.get(&format!("/vol/{GREET_DEB}"));
    assert_eq!((r.status, r.body.len()), (200, good.len()));
    assert_eq!(r.body, good);
    wait_for("the cache entry", 10, || cache_entry(&env, &good).exists());
}

#[test]
fn an_on_demand_yum_release_serves_dnf_from_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = yum_upstream(dir.path());
    let root = dir.path().join("mirror");
    let upstream = Upstream::logged(&root, &dir.path().join("upstream.log"));
    let env = yum_env(&upstream, &key);
    let text = fs::read_to_string(env.config()).unwrap();
    fs::write(
        env.config(),
        text.replace("type = \"yum\"", "type = \"yum\"\nfetch = \"on-demand\""),
    )
    .unwrap();
    env.update_ok(&["sync", "vol"]);
    assert_eq!(upstream.requests("GET", ".rpm"), 0);
    let rpms: Vec<PathBuf> = fs::read_dir(repo.join("Packages"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(rpms.len(), 2);
    for rpm in &rpms {
        assert!(!stored(&env, &fs::read(rpm).unwrap()));
    }

    let d = Daemon::start(&env);
    let dl = env.path().join("dl");
    dnf_downloads_greet(
        &env.path().join("dnf"),
        &one_repo(&yum_baseurl(&d), &key),
        &dl,
    );
    for rpm in &rpms {
        let name = rpm.file_name().unwrap();
        assert_eq!(fs::read(dl.join(name)).unwrap(), fs::read(rpm).unwrap());
        let asked = format!("/{YUM_REPO}/Packages/{}", name.to_str().unwrap());
        assert_eq!(upstream.requests("GET", &asked), 1, "{asked}");
        assert!(!stored(&env, &fs::read(rpm).unwrap()));
    }
}

#[test]
fn an_on_demand_pypi_release_serves_pip_from_the_file_host() {
    let dir = tempfile::tempdir().unwrap();
    let root = pypi_upstream(dir.path());
    let upstream = Upstream::logged(&root, &dir.path().join("upstream.log"));
    let env = Env::new();
    set_upstream(
        &env,
        &format!(
            "type = \"pypi\"\nurl = \"{}simple/\"\nprojects = [\"greet\", \"greet-lib\"]\nfetch = \"on-demand\"",
            upstream.url()
        ),
    );
    env.update_ok(&["sync", "vol"]);
    let files = root.join("files");
    let wheels: Vec<PathBuf> = fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    assert_eq!(wheels.len(), 2);
    // The sizes came from HEAD requests (the pages are PEP 503 HTML),
    // the core metadata was fetched, the files were not.
    assert_eq!(upstream.requests("GET", ".whl"), 0);
    assert!(upstream.requests("HEAD", ".whl") >= 2);
    assert_eq!(upstream.requests("GET", ".whl.metadata"), 2);

    let d = Daemon::start(&env);
    let index = format!("http://{}/vol/simple/", d.addr);
    greet_installs_with_hashes_and_pulls_its_dependency(&env, &index, &files);
    // uv, the second client, from the same release.
    uv_installs_greet(env.path(), &index);
    for w in &wheels {
        let name = w.file_name().unwrap().to_str().unwrap();
        assert_eq!(upstream.requests("GET", &format!("/{name}")), 1, "{name}");
        assert!(!stored(&env, &fs::read(w).unwrap()));
    }
}

#[test]
fn remote_entries_are_fetched_over_https_from_an_upstream_the_daemon_trusts() {
    let dir = tempfile::tempdir().unwrap();
    let root = pypi_upstream(dir.path());
    make_cert(dir.path());
    let p = |f: &str| dir.path().join(f);
    let tls = Upstream::serve_tls(&root, &p("cert.pem"), &p("key.pem"), None);
    let env = Env::new();
    set_upstream(
        &env,
        &format!(
            "type = \"pypi\"\nurl = \"https://localhost:{}/simple/\"\nprojects = [\"greet-lib\"]\nfetch = \"on-demand\"",
            tls.port
        ),
    );
    let out = env
        .update_cmd(&["sync", "vol"])
        .env("SSL_CERT_FILE", p("ca.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let m = manifest(&env, 1);
    let wheel = "greet_lib-1.0-py3-none-any.whl";
    let bytes = fs::read(root.join("files").join(wheel)).unwrap();
    let e = m.get(format!("files/{wheel}").as_bytes()).unwrap().unwrap();
    assert_eq!(e.kind, Kind::Remote);
    assert!(e.remote_url().unwrap().starts_with("https://localhost:"));

    // A daemon that does not trust the upstream's CA (the system's roots
    // only) fetches nothing, and says so at once: a refused certificate is
    // not retried (with a minute's origin timeout, retries took 41 s).
    let untrusting = Daemon::start_with(
        &env,
        &DaemonOpts {
            daemon: "origin_timeout = \"60s\"\n".into(),
            ..DaemonOpts::default()
        },
    );
    let asked = std::time::Instant::now();
    let r = untrusting.get(&format!("/vol/files/{wheel}"));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(30),
        "a refused certificate was retried for {:?}",
        asked.elapsed()
    );
    wait_for("the refusal in the log", 10, || {
        untrusting.log_text().to_lowercase().contains("certificate")
    });
    drop(untrusting);
    // One that does: verified and served.
    let d = Daemon::start_with(
        &env,
        &DaemonOpts {
            env: vec![("SSL_CERT_FILE".into(), p("ca.pem").display().to_string())],
            ..DaemonOpts::default()
        },
    );
    let r = d.get(&format!("/vol/files/{wheel}"));
    assert_eq!((r.status, r.body == bytes), (200, true));
}

/// A PyPI-style upstream with one project, `big`, whose one file is
/// `size` bytes of noise; returns the upstream's root and the file's
/// bytes.
fn big_upstream(dir: &Path, size: usize) -> (PathBuf, Vec<u8>) {
    let root = dir.join("upstream");
    fs::create_dir_all(root.join("files")).unwrap();
    fs::create_dir_all(root.join("simple/big")).unwrap();
    let mut bytes = vec![0u8; size];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    fs::write(root.join("files/big-1.0.tar.gz"), &bytes).unwrap();
    let sha = unimirror::volume::manifest::Sha256Digest::of(&bytes);
    fs::write(
        root.join("simple/big/index.html"),
        format!("<!DOCTYPE html><html><body><a href=\"../../files/big-1.0.tar.gz#sha256={sha}\">big-1.0.tar.gz</a></body></html>\n"),
    )
    .unwrap();
    (root, bytes)
}

/// GETs `path` and returns the status, the body's length and sha256,
/// without holding the body.
fn get_hashed(addr: std::net::SocketAddr, path: &str) -> (u16, u64, [u8; 32]) {
    let mut s = connect(addr);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let got = s.read(&mut buf).unwrap_or(0);
        if got == 0 {
            break;
        }
        hasher.update(&buf[..got]);
        n += got as u64;
    }
    (status, n, hasher.finalize().into())
}

#[test]
fn fifty_clients_on_one_cold_100_mib_artifact_read_the_upstream_once() {
    let dir = tempfile::tempdir().unwrap();
    let (root, bytes) = big_upstream(dir.path(), 100 << 20);
    let upstream = Upstream::logged(&root, &dir.path().join("upstream.log"));
    let env = Env::new();
    set_upstream(
        &env,
        &format!(
            "type = \"pypi\"\nurl = \"{}simple/\"\nprojects = [\"big\"]\nfetch = \"on-demand\"",
            upstream.url()
        ),
    );
    env.update_ok(&["sync", "vol"]);
    assert_eq!(upstream.requests("GET", "big-1.0.tar.gz"), 0);
    let d = Daemon::start_with(
        &env,
        &DaemonOpts {
            cache: "disk_size = \"1GiB\"".into(),
            ..DaemonOpts::default()
        },
    );
    let want: [u8; 32] = sha2::Sha256::digest(&bytes).into();
    let addr = d.addr;
    let clients: Vec<_> = (0..50)
        .map(|_| std::thread::spawn(move || get_hashed(addr, "/vol/files/big-1.0.tar.gz")))
        .collect();
    for c in clients {
        let (status, n, sha) = c.join().unwrap();
        assert_eq!((status, n), (200, bytes.len() as u64));
        assert!(sha == want, "a client got other bytes");
    }
    assert_eq!(upstream.requests("GET", "/files/big-1.0.tar.gz"), 1);
    assert_eq!(
        d.metric(
            "unimirror_fills_total",
            &[("volume", "vol"), ("source", "upstream")]
        ),
        1.0
    );
}

#[test]
fn a_daemon_refuses_a_manifest_version_it_does_not_know_by_name() {
    // Checked on the reader itself: a version past the ones it reads is
    // refused with both named, never read as if it were known.
    let env = Env::new();
    env.write("a.txt", b"a");
    env.release();
    let mut bytes = fs::read(env.vol().manifest_file(1)).unwrap();
    assert_eq!(header_version(&env, 1), 1, "no remote entries, version 1");
    bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
    let file = env.path().join("future.manifest");
    fs::write(&file, &bytes).unwrap();
    let e = format!("{:#}", Manifest::open(&file, Verify::No).unwrap_err());
    assert!(
        e.contains("format 3 is not supported") && e.contains("1 and 2"),
        "{e}"
    );
    env.write("b.txt", b"b");
    env.release();
    assert_eq!(header_version(&env, 2), 1);
}

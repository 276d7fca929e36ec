//! `unimirror serve` over real HTTP: the released-volume serving built so
//! far (issue #3 is in progress).

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn served() -> (Env, Daemon) {
    let env = Env::new();
    env.write("simple/index.html", b"<html>root</html>");
    env.write("packages/pkg-1.0.whl", b"0123456789");
    env.write("packages/empty.whl", b"");
    env.write("docs/<img src=x onerror=\"alert(1)\">.txt", b"x");
    symlink(
        "../packages/pkg-1.0.whl",
        env.tree().join("simple/latest.whl"),
    )
    .unwrap();
    symlink("packages", env.tree().join("pkgs")).unwrap();
    env.release();
    let d = Daemon::start(&env);
    (env, d)
}

#[test]
fn serves_files_with_headers_and_head_matches_get() {
    let (_env, d) = served();
    let r = d.get("/vol/packages/pkg-1.0.whl");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"0123456789");
    assert_eq!(r.header("content-length"), Some("10"));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let sha = unimirror::volume::manifest::Sha256Digest::of(b"0123456789").hex();
    assert_eq!(r.header("etag"), Some(format!("\"{sha}\"").as_str()));
    assert!(r.header("last-modified").is_some());
    let h = d.request("HEAD", "/vol/packages/pkg-1.0.whl", &[]);
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    for name in [
        "content-length",
        "content-type",
        "etag",
        "last-modified",
        "cache-control",
    ] {
        assert_eq!(h.header(name), r.header(name), "{name}");
    }
    let e = d.get("/vol/packages/empty.whl");
    assert_eq!((e.status, e.body.len()), (200, 0));
    assert_eq!(e.header("content-length"), Some("0"));
}

#[test]
fn streamed_bodies_carry_their_length_not_chunks() {
    // Two MiB: larger than the disk tier reads whole, so the miss is sent
    // from the fill and the hit from the mapped file, both as streams.
    let env = Env::new();
    let big: Vec<u8> = (0..2u32 << 20).map(|i| (i % 251) as u8).collect();
    env.write("big.bin", &big);
    env.release();
    let d = Daemon::start(&env);
    for (round, x_cache) in [(1, "miss"), (2, "hit-disk")] {
        let r = d.get("/vol/big.bin");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-cache"), Some(x_cache), "round {round}");
        assert_eq!(r.header("content-length"), Some("2097152"), "round {round}");
        assert_eq!(r.header("transfer-encoding"), None, "round {round}");
        assert!(r.body == big, "round {round}: the body differs");
        let part = d.request("GET", "/vol/big.bin", &[("Range", "bytes=100-199")]);
        assert_eq!(part.header("content-length"), Some("100"));
        assert_eq!(part.body, &big[100..200]);
    }
}

#[test]
fn ranges_and_conditional_requests() {
    let (_env, d) = served();
    let p = "/vol/packages/pkg-1.0.whl";
    let r = d.request("GET", p, &[("Range", "bytes=2-5")]);
    assert_eq!((r.status, r.body.as_slice()), (206, &b"2345"[..]));
    assert_eq!(r.header("content-range"), Some("bytes 2-5/10"));
    let r = d.request("GET", p, &[("Range", "bytes=-3")]);
    assert_eq!((r.status, r.body.as_slice()), (206, &b"789"[..]));
    let r = d.request("GET", p, &[("Range", "bytes=7-")]);
    assert_eq!((r.status, r.body.as_slice()), (206, &b"789"[..]));
    let r = d.request("GET", p, &[("Range", "bytes=10-")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */10"));
    let r = d.request("GET", p, &[("Range", "bytes=5-2")]);
    assert_eq!((r.status, r.body.len()), (200, 10));

    let etag = d.get(p).header("etag").unwrap().to_string();
    let r = d.request("GET", p, &[("If-None-Match", &etag)]);
    assert_eq!((r.status, r.body.len()), (304, 0));
    let r = d.request("GET", p, &[("If-None-Match", "\"other\"")]);
    assert_eq!(r.status, 200);
    let lm = d.get(p).header("last-modified").unwrap().to_string();
    let r = d.request("GET", p, &[("If-Modified-Since", &lm)]);
    assert_eq!(r.status, 304);
    let r = d.request(
        "GET",
        p,
        &[("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")],
    );
    assert_eq!(r.status, 200);
}

#[test]
fn directories_redirect_use_index_html_or_list_escaped() {
    let (_env, d) = served();
    let r = d.get("/vol/simple");
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("/vol/simple/"))
    );
    let r = d.get("/vol/simple/");
    assert_eq!((r.status, r.text().as_str()), (200, "<html>root</html>"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = d.get("/vol/docs/");
    assert_eq!(r.status, 200);
    let html = r.text();
    assert!(
        html.contains("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;.txt"),
        "{html}"
    );
    assert!(!html.contains("<img"), "{html}");
    let r = d.get("/vol/");
    assert!(r.text().contains("href=\"packages/\""), "{}", r.text());
}

#[test]
fn symlinks_resolve_inside_the_release() {
    let (_env, d) = served();
    assert_eq!(d.get("/vol/simple/latest.whl").body, b"0123456789");
    assert_eq!(d.get("/vol/pkgs/pkg-1.0.whl").body, b"0123456789");
}

#[test]
fn bad_requests_get_clear_statuses() {
    let (_env, d) = served();
    for p in [
        "/vol/../etc/passwd",
        "/vol/%2e%2e/etc/passwd",
        "/vol/packages%2f..%2f..%2fx",
        "/vol/a%00b",
        "/vol/a\\b",
        "/vol/%zz",
    ] {
        assert_eq!(d.get(p).status, 400, "{p}");
    }
    assert_eq!(d.get("/vol/nope").status, 404);
    assert_eq!(d.get("/nowhere/x").status, 404);
    assert_eq!(d.get("/vol/packages/pkg-1.0.whl/x").status, 404);
    let r = d.request("POST", "/vol/packages/pkg-1.0.whl", &[]);
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    assert_eq!(d.get("/healthz").status, 200);
}

#[test]
fn follows_a_new_release() {
    let (env, d) = served();
    env.write("packages/pkg-1.0.whl", b"new bytes");
    env.release();
    // Poll the observable state, bounded: the daemon checks the pointer
    // every 200 ms in this test's config.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = d.get("/vol/packages/pkg-1.0.whl");
        assert_eq!(r.status, 200);
        if r.body == b"new bytes" {
            break;
        }
        assert_eq!(r.body, b"0123456789", "never a mix");
        assert!(Instant::now() < deadline, "release #2 was not picked up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn pip_installs_from_the_demo_volume_with_hashes() {
    let env = Env::new();
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo/pypi");
    env.update_ok(&["release", "vol", "--from", fixtures.to_str().unwrap()]);
    let d = Daemon::start(&env);
    let wheel = fs::read(fixtures.join("packages/hello_unimirror-1.0-py3-none-any.whl")).unwrap();
    let sha = unimirror::volume::manifest::Sha256Digest::of(&wheel).hex();
    let target = env.path().join("site");
    // pip wants the hash in a requirements file for --require-hashes.
    let req = env.path().join("req.txt");
    fs::write(&req, format!("hello-unimirror==1.0 --hash=sha256:{sha}\n")).unwrap();
    // Only the mirror: no site pip configuration or find-links.
    let out = Command::new("python3")
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env_remove("PIP_FIND_LINKS")
        .args([
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--require-hashes",
            "--no-deps",
        ])
        .arg("--index-url")
        .arg(format!("http://{}/vol/simple/", d.addr))
        .arg("--target")
        .arg(&target)
        .arg("-r")
        .arg(&req)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pip failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(target.join("hello_unimirror/__init__.py").exists());
}

#[test]
fn apt_get_verifies_and_downloads_from_the_demo_archive() {
    let env = Env::new();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo");
    env.update_ok(&[
        "release",
        "vol",
        "--from",
        fixtures.join("ubuntu").to_str().unwrap(),
    ]);
    let d = Daemon::start(&env);
    let keyring = fixtures.join("demo-archive-keyring.gpg");
    let deb =
        fs::read(fixtures.join("ubuntu/pool/main/h/hello-unimirror/hello-unimirror_1.0_all.deb"))
            .unwrap();
    for volume in ["vol", "plain"] {
        if volume == "plain" {
            // The same archive as a plain tree.
            fs::remove_dir_all(env.tree()).unwrap();
            run(Command::new("cp")
                .arg("-a")
                .arg(fixtures.join("ubuntu"))
                .arg(env.tree()));
        }
        let apt = env.path().join(format!("apt-{volume}"));
        let source = format!(
            "deb [signed-by={}] http://{}/{volume} demo main",
            keyring.display(),
            d.addr
        );
        let out = apt_get(&apt, &source, &["update"]);
        let log = format!("{}\n{}", stdout(&out), stderr(&out));
        assert!(out.status.success(), "apt-get update: {log}");
        assert!(
            !log.contains("NO_PUBKEY") && !log.contains("not signed"),
            "{log}"
        );
        let out = apt_get(&apt, &source, &["download", "hello-unimirror"]);
        assert!(out.status.success(), "apt-get download: {}", stderr(&out));
        assert_eq!(
            fs::read(apt.join("hello-unimirror_1.0_all.deb")).unwrap(),
            deb
        );

        // With the wrong key, apt refuses the archive.
        let other = env.path().join(format!("apt-wrong-{volume}"));
        let wrong = format!(
            "deb [signed-by={}] http://{}/{volume} demo main",
            env.path().join("empty-keyring.gpg").display(),
            d.addr
        );
        fs::write(env.path().join("empty-keyring.gpg"), b"").unwrap();
        let out = apt_get(&other, &wrong, &["update"]);
        let log = format!("{}\n{}", stdout(&out), stderr(&out));
        assert!(
            !out.status.success(),
            "apt accepted an archive it cannot verify: {log}"
        );
        let out = apt_get(&other, &wrong, &["download", "hello-unimirror"]);
        assert!(
            !out.status.success(),
            "downloaded from an unverified archive"
        );
    }
}

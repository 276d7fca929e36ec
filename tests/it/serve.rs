//! `unimirror serve` over real HTTP: the released-volume serving built so
//! far (issue #3 is in progress).

use std::fs;
use std::os::unix::fs::symlink;
use std::process::Command;

use crate::common::*;

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
    wait_for("release #2 to be picked up", 10, || {
        let r = d.get("/vol/packages/pkg-1.0.whl");
        assert_eq!(r.status, 200);
        if r.body == b"new bytes" {
            return true;
        }
        assert_eq!(r.body, b"0123456789", "never a mix");
        false
    });
}

#[test]
fn pip_installs_from_the_demo_volume_with_hashes() {
    let env = Env::new();
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo/pypi");
    env.update_ok(&["release", "vol", "--from", fixtures.to_str().unwrap()]);
    let d = Daemon::start(&env);
    let target = pip_install_with_hashes(
        env.path(),
        &format!("http://{}/vol/simple/", d.addr),
        &[(
            "hello-unimirror==1.0",
            &fixtures.join("packages/hello_unimirror-1.0-py3-none-any.whl"),
        )],
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

#[test]
fn if_range_serves_the_range_only_for_the_version_the_client_has() {
    let (_env, d) = served();
    let p = "/vol/packages/pkg-1.0.whl";
    let whole = d.get(p);
    let etag = whole.header("etag").unwrap().to_string();
    let lm = whole.header("last-modified").unwrap().to_string();
    // The client's partial copy is of this version: the range applies.
    for validator in [etag.as_str(), lm.as_str()] {
        let r = d.request("GET", p, &[("Range", "bytes=4-"), ("If-Range", validator)]);
        assert_eq!(
            (r.status, r.body.as_slice()),
            (206, &b"456789"[..]),
            "{validator}"
        );
    }
    // Of another version (another tag, a weak tag, another date): the
    // whole current object with 200, never a tail to stitch onto it.
    let weak = format!("W/{etag}");
    for validator in [
        "\"0000\"",
        weak.as_str(),
        "Thu, 01 Jan 1970 00:00:00 GMT",
        "not a validator",
    ] {
        let r = d.request("GET", p, &[("Range", "bytes=4-"), ("If-Range", validator)]);
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"0123456789"[..]),
            "{validator}"
        );
        assert_eq!(r.header("content-range"), None);
        // A start past this version's end is not 416 either: the client's
        // copy was longer, and it gets the whole new file.
        let r = d.request("GET", p, &[("Range", "bytes=50-"), ("If-Range", validator)]);
        assert_eq!((r.status, r.body.len()), (200, 10), "{validator}");
    }
}

#[test]
fn every_response_says_nosniff_and_html_from_a_volume_is_sandboxed() {
    let (_env, d) = served();
    for p in [
        "/",
        "/healthz",
        "/metrics",
        "/vol/packages/pkg-1.0.whl",
        "/vol/simple/",
        "/vol/docs/",
        "/vol/nope",
        "/vol/%zz",
        "/vol/simple",
        "/nowhere/x",
    ] {
        let r = d.get(p);
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{p}");
    }
    // An upstream's HTML (here an index.html answering for its directory)
    // is inert in a browser.
    let r = d.get("/vol/simple/");
    assert_eq!(r.text(), "<html>root</html>");
    assert_eq!(
        r.header("content-security-policy"),
        Some("default-src 'none'; sandbox")
    );
    let r = d.get("/vol/simple/index.html");
    assert_eq!(
        r.header("content-security-policy"),
        Some("default-src 'none'; sandbox")
    );
    // The daemon's own pages and listings have their strict policy.
    for p in ["/", "/vol/docs/", "/plain/"] {
        let csp = d
            .get(p)
            .header("content-security-policy")
            .map(str::to_string);
        let csp = csp.unwrap_or_else(|| panic!("{p}: no policy"));
        assert!(csp.starts_with("default-src 'none'"), "{p}: {csp}");
        assert!(!csp.contains("script-src"), "{p}: {csp}");
    }
    // Not HTML: no policy needed, nosniff is enough.
    let r = d.get("/vol/packages/pkg-1.0.whl");
    assert_eq!(r.header("content-security-policy"), None);
}

#[test]
fn symlink_chains_resolve_up_to_sixteen_hops_and_loops_are_not_found() {
    let env = Env::new();
    env.write("file", b"at the end");
    env.write("deep/a/b/c/leaf", b"leaf");
    for i in 0..17 {
        let to = if i == 16 {
            "file".to_string()
        } else {
            format!("l{}", i + 1)
        };
        symlink(to, env.tree().join(format!("l{i}"))).unwrap();
    }
    symlink("b", env.tree().join("a")).unwrap();
    symlink("a", env.tree().join("b")).unwrap();
    // A link in the middle of a long path, whose target climbs and comes
    // back down.
    fs::create_dir_all(env.tree().join("x/y")).unwrap();
    symlink("../../deep/a", env.tree().join("x/y/to-a")).unwrap();
    env.release();
    let d = Daemon::start(&env);
    // l1 → … → l16 → file is sixteen hops; from l0 it is seventeen.
    assert_eq!(d.get("/vol/l1").body, b"at the end");
    assert_eq!(d.get("/vol/l0").status, 404);
    assert_eq!(d.get("/vol/a").status, 404);
    assert_eq!(d.get("/vol/b/x").status, 404);
    assert_eq!(d.get("/vol/x/y/to-a/b/c/leaf").body, b"leaf");
    assert_eq!(d.get("/vol/x/y/to-a/b/c/leaf/more").status, 404);
    assert_eq!(d.get("/vol/x/y/to-a/b/c/").status, 200);
}

#[test]
#[ignore = "needs root: mounts a tmpfs (ext4 cannot hold the mtime)"]
fn an_mtime_past_year_9999_is_shown_as_its_last_second() {
    assert_root();
    let env = Env::new();
    // ext4 stops at year 2446; tmpfs keeps any 64-bit time.
    let _m = Mount::tmpfs(&env.tree(), "1m");
    env.write("far/future.txt", b"from the future");
    run(Command::new("touch")
        .args(["-d", "@300000000000"])
        .arg(env.tree().join("far/future.txt")));
    env.release();
    let d = Daemon::start(&env);
    for volume in ["vol", "plain"] {
        let r = d.get(&format!("/{volume}/far/future.txt"));
        assert_eq!(r.status, 200, "{volume}");
        assert_eq!(r.body, b"from the future");
        assert_eq!(
            r.header("last-modified"),
            Some("Fri, 31 Dec 9999 23:59:59 GMT"),
            "{volume}"
        );
        let r = d.get(&format!("/{volume}/far/"));
        assert_eq!(r.status, 200, "{volume}");
        assert!(
            r.text().contains("Fri, 31 Dec 9999 23:59:59 GMT"),
            "{}",
            r.text()
        );
    }
    assert!(d.get("/healthz").status == 200, "the daemon is alive");
}

#[test]
fn a_manifest_truncated_on_the_origin_never_crashes_the_daemon() {
    // No grace: only the current release and the two before it are loaded
    // at start, so release #1 is loaded when first pinned.
    let env = Env::with_config("[release]\ngrace = \"0s\"\n");
    for generation in 1..=4 {
        for i in 0..50 {
            env.write(&format!("d{i}/f"), format!("{generation}-{i}").as_bytes());
        }
        env.release();
    }
    let d = Daemon::start(&env);
    assert_eq!(d.get("/vol/d0/f").body, b"4-0");
    // The current release's manifest on the shared origin is cut to
    // nothing (another host, a bad copy): lookups go on from the daemon's
    // own verified copy, for paths asked before and never asked.
    let vol = env.vol();
    for id in [4, 1] {
        fs::OpenOptions::new()
            .write(true)
            .open(vol.manifest_file(id))
            .unwrap()
            .set_len(0)
            .unwrap();
    }
    for i in 0..50 {
        let r = d.get(&format!("/vol/d{i}/f"));
        assert_eq!((r.status, r.text()), (200, format!("4-{i}")));
    }
    // A release not loaded yet whose manifest is damaged: refused, counted,
    // logged; the others still serve.
    assert_eq!(d.get("/vol/@1/d0/f").status, 404);
    assert_eq!(
        d.metric("unimirror_manifest_loads_total", &[("result", "refused")]),
        1.0
    );
    assert!(
        d.log_text().contains("damaged or truncated"),
        "{}",
        d.log_text()
    );
    assert_eq!(d.get("/vol/@2/d7/f").body, b"2-7");
    assert_eq!(d.get("/vol/d9/f").body, b"4-9");
}

#[test]
fn random_pinned_ids_load_each_published_manifest_at_most_once() {
    let env = Env::new();
    const RELEASES: u64 = 12;
    for id in 1..=RELEASES {
        env.write("f", format!("release {id}").as_bytes());
        env.release();
    }
    let d = Daemon::start(&env);
    let addr = d.addr;
    // 1,000 requests from 8 clients over ids 0..40 (a third of them
    // published), beyond the 8 pinned releases kept loaded.
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut x = t * 7919 + 1;
                for _ in 0..125 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let id = (x >> 33) % 40;
                    let r = http(addr, "GET", &format!("/vol/@{id}/f"), &[]).unwrap();
                    if (1..=RELEASES).contains(&id) {
                        assert_eq!((r.status, r.text()), (200, format!("release {id}")));
                    } else {
                        assert_eq!(r.status, 404, "@{id}");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let loads = d.metric("unimirror_manifest_loads_total", &[("result", "loaded")]);
    assert!(
        loads >= 1.0 && loads <= RELEASES as f64,
        "{loads} manifest loads"
    );
}

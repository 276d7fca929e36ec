//! The daemon's cache, integrity and release-following guarantees, over
//! real HTTP against the real binaries.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::common::*;
use unimirror::volume::manifest::Sha256Digest;

fn small_memory() -> DaemonOpts {
    DaemonOpts {
        cache: "memory_max_object = \"16KiB\"\n".into(),
        ..Default::default()
    }
}

#[test]
fn each_tier_hits_and_misses_and_survives_a_restart() {
    let env = Env::new();
    let small = blob(1, 3000);
    let large = blob(2, 300 << 10);
    env.write("simple/index.html", &small);
    env.write("packages/big.whl", &large);
    env.release();
    let d = Daemon::start_with(&env, &small_memory());

    let r = d.get("/vol/simple/index.html");
    assert_eq!((r.status, r.header("x-cache")), (200, Some("miss")));
    assert_eq!(r.body, small);
    let r = d.get("/vol/simple/index.html");
    assert_eq!(r.header("x-cache"), Some("hit-memory"));
    assert_eq!(r.body, small);

    let r = d.get("/vol/packages/big.whl");
    assert_eq!((r.status, r.header("x-cache")), (200, Some("miss")));
    assert_eq!(r.body, large);
    // The fill commits after the response; wait until the disk tier has it.
    wait_for("the large object on disk", 10, || {
        d.request("HEAD", "/vol/packages/big.whl", &[])
            .header("x-cache")
            == Some("hit-disk")
    });
    let r = d.get("/vol/packages/big.whl");
    assert_eq!(r.header("x-cache"), Some("hit-disk"));
    assert_eq!(r.body, large);
    assert_eq!(
        d.metric("unimirror_requests_total", &[("outcome", "miss")]),
        2.0
    );
    assert_eq!(
        d.metric("unimirror_requests_total", &[("outcome", "hit-memory")]),
        1.0
    );
    assert_eq!(
        d.metric("unimirror_requests_total", &[("outcome", "hit-disk")]),
        1.0
    );
    assert_eq!(
        d.metric("unimirror_bytes_served_total", &[("tier", "disk")]),
        large.len() as f64
    );
    assert!(
        d.metric("unimirror_cache_bytes", &[("tier", "disk")])
            >= (large.len() + small.len()) as f64
    );
    drop(d);

    // A new process finds both on disk (the memory tier starts empty),
    // verifies them on first use, and reads nothing from the origin.
    let origin_opens = OpenWatch::new(&object_path(&env, &large));
    let d = Daemon::start_with(&env, &small_memory());
    let r = d.get("/vol/packages/big.whl");
    assert_eq!(
        (r.header("x-cache"), r.body == large),
        (Some("hit-disk"), true)
    );
    let r = d.get("/vol/simple/index.html");
    assert_eq!(
        (r.header("x-cache"), r.body == small),
        (Some("hit-disk"), true)
    );
    wait_for("promotion to memory", 10, || {
        d.request("HEAD", "/vol/simple/index.html", &[])
            .header("x-cache")
            == Some("hit-memory")
    });
    assert_eq!(origin_opens.opens(), 0);
    assert_eq!(
        d.metric_or_zero("unimirror_integrity_failures_total", &[]),
        0.0
    );
}

#[test]
fn ranges_from_every_tier_and_a_cold_range_fills_the_whole_object() {
    let env = Env::new();
    let large = blob(3, 200 << 10);
    let small = blob(4, 1000);
    env.write("a/large.bin", &large);
    env.write("a/small.bin", &small);
    env.release();
    let d = Daemon::start_with(&env, &small_memory());
    for (path, content) in [("/vol/a/large.bin", &large), ("/vol/a/small.bin", &small)] {
        let n = content.len();
        for tier in 0..3 {
            let cases: [(String, usize, usize); 4] = [
                ("bytes=0-0".into(), 0, 1),
                (format!("bytes={}-", n - 10), n - 10, 10),
                ("bytes=-7".into(), n - 7, 7),
                (format!("bytes=100-{}", n + 500), 100, n - 100),
            ];
            for (range, start, len) in cases {
                let r = d.request("GET", path, &[("Range", &range)]);
                assert_eq!(r.status, 206, "{path} {range} pass {tier}");
                assert_eq!(r.body, &content[start..start + len], "{path} {range}");
                assert_eq!(
                    r.header("content-range"),
                    Some(format!("bytes {}-{}/{n}", start, start + len - 1).as_str())
                );
            }
            let r = d.request("GET", path, &[("Range", &format!("bytes={n}-"))]);
            assert_eq!(r.status, 416);
            wait_for("the object in the cache", 10, || {
                d.request("HEAD", path, &[]).header("x-cache") != Some("miss")
            });
        }
    }
    // Each object was read from the origin once: the first range started
    // a fill of the whole object.
    assert_eq!(
        d.metric("unimirror_origin_fetch_seconds_count", &[("volume", "vol")]),
        2.0
    );
}

#[test]
fn fifty_concurrent_cold_requests_read_the_origin_once() {
    let env = Env::new();
    let big = blob(5, 16 << 20);
    env.write("images/disk.img", &big);
    env.release();
    let expected = Sha256Digest::of(&big);
    let opens = OpenWatch::new(&object_path(&env, &big));
    let d = Arc::new(Daemon::start(&env));
    let barrier = Arc::new(std::sync::Barrier::new(50));
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let (d, barrier) = (d.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let r = d.get("/vol/images/disk.img");
                (
                    r.status,
                    r.sha256(),
                    r.header("x-cache").map(str::to_string),
                )
            })
        })
        .collect();
    let mut outcomes = std::collections::HashMap::<String, usize>::new();
    for t in threads {
        let (status, sha, x) = t.join().unwrap();
        assert_eq!((status, sha), (200, expected));
        *outcomes.entry(x.unwrap()).or_default() += 1;
    }
    assert_eq!(opens.opens(), 1, "origin opened once: {outcomes:?}");
    assert_eq!(outcomes.get("miss"), Some(&1), "{outcomes:?}");
    assert_eq!(
        d.metric("unimirror_origin_fetch_seconds_count", &[("volume", "vol")]),
        1.0
    );
    assert_eq!(
        d.metric("unimirror_origin_read_bytes_total", &[("volume", "vol")]),
        big.len() as f64,
        "the origin's bytes were read once"
    );
}

#[test]
fn a_fill_goes_on_when_its_first_client_disconnects() {
    let env = Env::new();
    let big = blob(6, 32 << 20);
    env.write("big.bin", &big);
    env.release();
    let d = Daemon::start(&env);
    {
        use std::io::{Read, Write};
        let mut s = connect(d.addr);
        write!(s, "GET /vol/big.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut first = [0u8; 1024];
        let n = s.read(&mut first).unwrap();
        assert!(String::from_utf8_lossy(&first[..n]).contains("x-cache: miss"));
        // Dropped here, mid-body.
    }
    wait_for("the abandoned fill to be committed", 20, || {
        d.request("HEAD", "/vol/big.bin", &[]).header("x-cache") == Some("hit-disk")
    });
    let r = d.get("/vol/big.bin");
    assert_eq!(
        (r.header("x-cache"), r.sha256()),
        (Some("hit-disk"), Sha256Digest::of(&big))
    );
}

#[test]
fn a_corrupted_origin_object_is_never_served_nor_cached() {
    let env = Env::new();
    for (name, size) in [("small.whl", 2000usize), ("large.whl", 3 << 20)] {
        let good = blob(7, size);
        env.write(name, &good);
        env.release();
        let object = object_path(&env, &good);
        let mut bad = good.clone();
        bad[size / 2] ^= 0x40;
        fs::set_permissions(&object, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&object, &bad).unwrap();
        let d = Daemon::start(&env);
        for _ in 0..2 {
            let r = d.try_request("GET", &format!("/vol/{name}"), &[]);
            // Either a 502 (the fill failed before the response started)
            // or a 200 cut short; never the wrong bytes in full.
            if let Ok(r) = r {
                match r.status {
                    200 => assert!(!r.complete(), "{name}: a complete-looking response"),
                    s => assert_eq!(s, 502, "{name}"),
                }
                assert_ne!(r.body, bad);
            }
        }
        // Nothing committed, and it was counted and logged.
        assert!(!cache_entry(&env, &good).exists());
        assert!(!cache_entry(&env, &bad).exists());
        assert_eq!(
            d.metric("unimirror_integrity_failures_total", &[("where", "origin")]),
            2.0
        );
        assert_eq!(
            d.metric("unimirror_origin_errors_total", &[("kind", "integrity")]),
            2.0
        );
        assert!(d.log_text().contains("origin read failed"));
        fs::remove_file(env.tree().join(name)).unwrap();
    }
}

#[test]
fn a_flipped_byte_in_the_disk_cache_is_dropped_and_refetched() {
    let env = Env::new();
    // Verified on first use after a start: a large entry (read through
    // its file) and a small one (read whole).
    for (round, (name, size)) in [("small.whl", 3000), ("pkg.whl", 500 << 10)]
        .into_iter()
        .enumerate()
    {
        let content = blob(8 + round as u8, size);
        env.write(name, &content);
        env.release();
        let entry = cache_entry(&env, &content);
        {
            let d = Daemon::start(&env);
            assert_eq!(d.get(&format!("/vol/{name}")).body, content);
            wait_for("the entry on disk", 10, || entry.exists());
        }
        let mut b = fs::read(&entry).unwrap();
        b[1234] ^= 1;
        fs::write(&entry, b).unwrap();
        let d = Daemon::start(&env);
        let r = d.get(&format!("/vol/{name}"));
        assert_eq!(
            (r.header("x-cache"), r.body == content),
            (Some("miss"), true),
            "{name}"
        );
        assert_eq!(
            d.metric("unimirror_integrity_failures_total", &[("where", "disk")]),
            1.0,
            "{name}"
        );
        assert!(d.log_text().contains("corrupt cache entry dropped"));
        wait_for("the refetched entry", 10, || {
            fs::read(&entry).is_ok_and(|b| b == content)
        });
    }
    let content = blob(9, 500 << 10);
    let entry = cache_entry(&env, &content);
    let flip = || {
        let mut b = fs::read(&entry).unwrap();
        b[1234] ^= 1;
        fs::write(&entry, b).unwrap();
    };

    // While running: the scrub finds it.
    let opts = DaemonOpts {
        cache: "scrub_interval = \"100ms\"\nmemory_size = \"0\"\n".into(),
        ..Default::default()
    };
    let d = Daemon::start_with(&env, &opts);
    assert_eq!(d.get("/vol/pkg.whl").header("x-cache"), Some("hit-disk"));
    // Its progress is exposed: bytes re-hashed and the last pass's time.
    wait_for("a finished scrub pass", 20, || {
        d.metric("unimirror_scrub_last_pass_timestamp_seconds", &[]) > 0.0
    });
    assert!(d.metric("unimirror_scrub_bytes_total", &[]) >= content.len() as f64);
    flip();
    wait_for("the scrub to find the flipped byte", 20, || {
        d.metric_or_zero("unimirror_integrity_failures_total", &[("where", "disk")]) == 1.0
    });
    let r = d.get("/vol/pkg.whl");
    assert_eq!(
        (r.header("x-cache"), r.body == content),
        (Some("miss"), true)
    );
}

#[test]
fn a_workload_five_times_the_disk_budget_stays_within_it() {
    let env = Env::new();
    let budget: u64 = 2 << 20;
    let files: Vec<Vec<u8>> = (0..40).map(|i| blob(20 + i, 256 << 10)).collect();
    for (i, f) in files.iter().enumerate() {
        env.write(&format!("p/{i}.whl"), f);
    }
    env.release();
    let opts = DaemonOpts {
        cache: "disk_size = \"2MiB\"\nmemory_size = \"0\"\n".into(),
        ..Default::default()
    };
    let mut d = Daemon::start_with(&env, &opts);
    // The budget is exposed, for dashboards to draw usage against.
    assert_eq!(
        d.metric("unimirror_cache_budget_bytes", &[("tier", "disk")]) as u64,
        budget
    );
    assert_eq!(
        d.metric("unimirror_cache_budget_bytes", &[("tier", "memory")]),
        0.0
    );
    let content = env.path().join("cache/content-v2");
    let mut peak = 0;
    for round in 0..2 {
        for (i, f) in files.iter().enumerate() {
            let r = d.get(&format!("/vol/p/{i}.whl"));
            assert_eq!(r.body, *f, "round {round} file {i}");
            let accounted = d.metric("unimirror_cache_bytes", &[("tier", "disk")]) as u64;
            peak = peak.max(accounted);
        }
    }
    assert!(d.metric("unimirror_cache_evictions_total", &[("tier", "disk")]) > 0.0);
    assert!(peak <= budget, "peak {peak}");
    signal(&d.child, libc::SIGTERM);
    assert!(d.child.wait().unwrap().success());
    let on_disk = du(&content);
    assert!(
        on_disk <= budget,
        "{on_disk} bytes on disk, budget {budget}"
    );
    assert!(on_disk > 0);
}

/// A tree whose index names one file, different in every release.
fn write_generation(env: &Env, generation: usize) -> Sha256Digest {
    let old = env.tree().join("packages");
    if old.exists() {
        fs::remove_dir_all(&old).unwrap();
    }
    let content = blob(generation as u8, 20_000 + generation * 7);
    let sha = Sha256Digest::of(&content);
    let name = format!("pkg-{generation}.whl");
    env.write(&format!("packages/{name}"), &content);
    env.write(
        "simple/pkg/index.html",
        format!("<a href=\"../../packages/{name}#sha256={sha}\">{name}</a>\n").as_bytes(),
    );
    sha
}

#[test]
fn twenty_release_switches_under_load_give_no_errors_and_no_mismatches() {
    let env = Env::new();
    write_generation(&env, 0);
    env.release();
    let d = Arc::new(Daemon::start(&env));
    let stop = Arc::new(AtomicBool::new(false));
    let fetched = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (d, stop, fetched) = (d.clone(), stop.clone(), fetched.clone());
            std::thread::spawn(move || {
                let mut releases = std::collections::BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    let index = d.get("/vol/simple/pkg/");
                    assert_eq!(index.status, 200, "index: {}", index.text());
                    releases.insert(index.header("x-unimirror-release").unwrap().to_string());
                    let text = index.text();
                    let href = text.split('"').nth(1).unwrap();
                    let (file, sha) = href.split_once("#sha256=").unwrap();
                    let name = file.trim_start_matches("../../");
                    let r = d.get(&format!("/vol/{name}"));
                    assert_eq!(r.status, 200, "{name} named by the index: {}", r.text());
                    assert_eq!(r.sha256().hex(), sha, "{name}: hash mismatch");
                    fetched.fetch_add(1, Ordering::Relaxed);
                }
                releases
            })
        })
        .collect();
    for generation in 1..=20 {
        write_generation(&env, generation);
        env.release();
        let want = env.current().unwrap().to_string();
        wait_for("the daemon to switch", 10, || {
            d.get("/vol/simple/pkg/").header("x-unimirror-release") == Some(want.as_str())
        });
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = std::collections::BTreeSet::new();
    for c in clients {
        seen.extend(c.join().unwrap());
    }
    assert!(fetched.load(Ordering::Relaxed) > 20);
    assert!(seen.len() > 2, "clients saw releases {seen:?}");
    assert_eq!(
        d.metric_or_zero("unimirror_requests_total", &[("status", "5xx")]),
        0.0
    );
    assert_eq!(
        d.metric_or_zero("unimirror_requests_total", &[("status", "4xx")]),
        0.0
    );
}

#[test]
fn pinned_urls_and_grace_fallback() {
    let env = Env::with_config("[release]\ngrace = \"0s\"\nretain = 10\n");
    env.write("a.txt", b"only in the first release");
    env.write("index.txt", b"1");
    env.release();
    let d = Daemon::start(&env);
    fs::remove_file(env.tree().join("a.txt")).unwrap();
    for n in 2..=4 {
        env.write("index.txt", n.to_string().as_bytes());
        env.release();
        let want = n.to_string();
        wait_for("the switch", 10, || {
            d.get("/vol/index.txt").header("x-unimirror-release") == Some(want.as_str())
        });
        let r = d.get("/vol/a.txt");
        if n <= 3 {
            // Among the two releases before the current one: still answered.
            assert_eq!(
                (r.status, r.body.as_slice()),
                (200, &b"only in the first release"[..])
            );
            assert_eq!(r.header("x-unimirror-release"), Some("1"));
        } else {
            // Grace 0s and three releases back: gone from the current URL.
            assert_eq!(r.status, 404);
        }
    }
    assert_eq!(
        d.metric("unimirror_requests_total", &[("outcome", "stale")]),
        2.0
    );

    // Pinned: any retained release, immutable.
    let r = d.get("/vol/@1/a.txt");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"only in the first release"[..])
    );
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(r.header("x-unimirror-release"), Some("1"));
    assert_eq!(d.get("/vol/@2/index.txt").body, b"2");
    assert_eq!(d.get("/vol/@3/index.txt").body, b"3");
    assert_eq!(d.get("/vol/@4/a.txt").status, 404);
    assert_eq!(d.get("/vol/@99/index.txt").status, 404);
    assert_eq!(d.get("/vol/@x/index.txt").status, 404);
    let r = d.get("/vol/@2/");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("index.txt"));
}

#[test]
fn plain_tree_revalidation_and_immutable_patterns() {
    let env = Env::with_config("[freshness]\nrevalidate_after = \"1h\"\n");
    env.write("simple/pkg/index.html", b"old index");
    env.write("packages/pkg-1.0.whl", b"wheel v1");
    let d = Daemon::start(&env);
    assert_eq!(d.get("/plain/simple/pkg/").body, b"old index");
    let r = d.get("/plain/simple/pkg/index.html");
    assert_eq!(
        (r.body.as_slice(), r.header("x-cache")),
        (&b"old index"[..], Some("hit-memory"))
    );
    assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
    let w = d.get("/plain/packages/pkg-1.0.whl");
    assert_eq!(w.body, b"wheel v1");
    assert_eq!(
        w.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    env.write("simple/pkg/index.html", b"new index, longer");
    // Within revalidate_after, the daemon does not look again.
    assert_eq!(d.get("/plain/simple/pkg/index.html").body, b"old index");
    drop(d);

    let env2_config = fs::read_to_string(env.config())
        .unwrap()
        .replace("revalidate_after = \"1h\"", "revalidate_after = \"0s\"");
    fs::write(env.config(), env2_config).unwrap();
    let d = Daemon::start(&env);
    assert_eq!(d.get("/plain/packages/pkg-1.0.whl").body, b"wheel v1");
    assert_eq!(
        d.get("/plain/simple/pkg/index.html").body,
        b"new index, longer"
    );
    env.write("simple/pkg/index.html", b"newest");
    env.write("packages/pkg-1.0.whl", b"wheel v2 (never do this)");
    assert_eq!(d.get("/plain/simple/pkg/index.html").body, b"newest");
    // Immutable by pattern: never looked at again once seen.
    assert_eq!(d.get("/plain/packages/pkg-1.0.whl").body, b"wheel v1");
    // Directories, listings, redirects.
    let r = d.get("/plain/packages");
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("/plain/packages/"))
    );
    let r = d.get("/plain/packages/");
    assert!(r.text().contains("pkg-1.0.whl"));
    assert_eq!(d.get("/plain/missing.whl").status, 404);
}

#[test]
fn pep691_json_is_chosen_by_accept() {
    let env = Env::new();
    env.write("simple/pkg/index.html", b"<html>pkg</html>");
    env.write(
        "simple/pkg/index.v1_json",
        b"{\"meta\":{\"api-version\":\"1.1\"}}",
    );
    env.release();
    let d = Daemon::start(&env);
    let pip_accept = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";
    for prefix in ["/vol", "/plain"] {
        let r = d.request(
            "GET",
            &format!("{prefix}/simple/pkg/"),
            &[("Accept", pip_accept)],
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/vnd.pypi.simple.v1+json"),
            "{prefix}"
        );
        assert!(r.text().contains("api-version"));
        assert_eq!(r.header("vary"), Some("Accept"));
        let r = d.request(
            "GET",
            &format!("{prefix}/simple/pkg/"),
            &[("Accept", "text/html")],
        );
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.body, b"<html>pkg</html>");
    }
}

#[test]
fn path_traversal_never_leaves_the_volume() {
    let env = Env::new();
    fs::write(env.path().join("secret.txt"), b"TOP SECRET").unwrap();
    env.write("ok.txt", b"fine");
    env.write("sub/inside.txt", b"inside");
    // A release refuses links out of its tree; a plain tree may have them.
    std::os::unix::fs::symlink("sub/inside.txt", env.tree().join("in")).unwrap();
    env.release();
    std::os::unix::fs::symlink("../secret.txt", env.tree().join("out")).unwrap();
    std::os::unix::fs::symlink(env.path(), env.tree().join("up")).unwrap();
    let d = Daemon::start(&env);
    let long = format!("/vol/{}", "a/".repeat(3000));
    let attempts = [
        "/vol/../secret.txt",
        "/vol/%2e%2e/secret.txt",
        "/vol/%2E%2E/%2e%2e/secret.txt",
        "/vol/sub%2f..%2f..%2fsecret.txt",
        "/vol/..%2fsecret.txt",
        "/vol/sub/..%5c..%5csecret.txt",
        "/vol/ok.txt%00.whl",
        "/vol/%c0%ae%c0%ae/secret.txt",
        "/plain/../secret.txt",
        "/plain/%2e%2e/secret.txt",
        "/plain/out",
        "/plain/up/secret.txt",
        "/vol/out",
        "/vol/up/secret.txt",
        "/plain/up/",
        &long,
    ];
    for a in attempts {
        let r = d.get(a);
        assert!(
            [400, 404, 414].contains(&r.status),
            "{a}: {} {}",
            r.status,
            r.text()
        );
        assert!(!r.text().contains("TOP SECRET"), "{a}");
    }
    assert_eq!(d.get("/plain/ok.txt").body, b"fine");
    assert_eq!(d.get(&long).status, 414);
    assert_eq!(d.get("/vol/sub/inside.txt").body, b"inside");
    assert_eq!(d.get("/vol/in").body, b"inside");
    assert_eq!(d.get("/plain/in").body, b"inside");
}

#[test]
fn a_new_release_is_noticed_through_inotify_long_before_the_next_poll() {
    let env = Env::new();
    env.write("v.txt", b"1");
    env.release();
    // Polling once a minute: only inotify can make the switch quick.
    let opts = DaemonOpts {
        daemon: "poll_interval = \"60s\"\n".into(),
        ..Default::default()
    };
    let d = Daemon::start_with(&env, &opts);
    assert_eq!(d.get("/vol/v.txt").body, b"1");
    env.write("v.txt", b"2");
    env.release();
    wait_for("the switch to release 2", 30, || {
        d.get("/vol/v.txt").body == b"2"
    });
}

#[test]
fn a_plain_tree_file_is_remembered_across_restarts_by_one_record_however_often_it_changes() {
    let env = Env::with_config("[freshness]\nrevalidate_after = \"0s\"\n");
    // An index page: not immutable by pattern, so every request looks.
    let path = "simple/a/index.html";
    let records = env.path().join("cache/plain-v1");
    let record_files = || walk_files(&records).len();
    // Sizes differ too: two writes within one clock tick share an mtime.
    let version = |n: u8| blob(n, (200 << 10) + n as usize);
    env.write(path, &version(1));
    let d = Daemon::start_with(&env, &small_memory());
    assert_eq!(d.get("/plain/simple/a/index.html").body, version(1));
    wait_for("the file on disk", 10, || {
        d.request("HEAD", "/plain/simple/a/index.html", &[])
            .header("x-cache")
            == Some("hit-disk")
    });
    drop(d);

    // A new process reads its record: a disk hit without opening the file.
    let opens = OpenWatch::new(&env.tree().join(path));
    let d = Daemon::start_with(&env, &small_memory());
    let r = d.get("/plain/simple/a/index.html");
    assert_eq!(
        (r.header("x-cache"), r.body == version(1)),
        (Some("hit-disk"), true)
    );
    assert_eq!(opens.opens(), 0);

    // Each change is read again; the path keeps one record of fixed size.
    for n in 2..6u8 {
        env.write(path, &version(n));
        let r = d.get("/plain/simple/a/index.html");
        assert_eq!(
            (r.header("x-cache"), r.body == version(n)),
            (Some("miss"), true)
        );
        wait_for("the new version on disk", 10, || {
            d.request("HEAD", "/plain/simple/a/index.html", &[])
                .header("x-cache")
                == Some("hit-disk")
        });
    }
    assert_eq!(record_files(), 1);
    drop(d);

    // A damaged record is a miss that writes a good one, never wrong bytes.
    let record = walk_files(&records).pop().unwrap();
    assert_eq!(fs::metadata(&record).unwrap().len(), 130);
    fs::write(&record, [b'7'; 130]).unwrap();
    let d = Daemon::start_with(&env, &small_memory());
    let r = d.get("/plain/simple/a/index.html");
    assert_eq!(
        (r.header("x-cache"), r.body == version(5)),
        (Some("miss"), true)
    );
    // The record is written by the cache writer after the answer (a HEAD
    // may say `hit-disk` before it is: the fill remembers the sha256).
    wait_for("a good record again", 10, || {
        fs::read(&record).is_ok_and(|r| r.starts_with(b"p1 "))
    });
    assert_eq!(
        d.request("HEAD", "/plain/simple/a/index.html", &[])
            .header("x-cache"),
        Some("hit-disk")
    );
    // The cacache index of earlier versions is gone for good.
    assert!(!env.path().join("cache/index-v5").exists());
}

/// Every file under `dir`.
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    walk(dir).into_iter().filter(|p| p.is_file()).collect()
}

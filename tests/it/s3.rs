//! An origin on S3 (`origin = "s3://bucket/prefix"`), against a real S3
//! server (SeaweedFS) the tests start: releases, rollbacks and gc through
//! the store's conditional writes, racing updaters, crashes at every step,
//! and daemons following the store, losing it and getting it back.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::*;

/// An env whose origin is `s3://mirrors/<prefix>` on `server`, with `extra`
/// config (TOML tables) besides its `[s3]`.
fn s3_env(server: &Seaweed, prefix: &str, extra: &str) -> Env {
    let env = Env::with_config(&format!("{}{extra}", server.config()));
    env.write_config(Path::new(&format!("s3://{BUCKET}/{prefix}")));
    env
}

/// `status --json` of volume `vol`: (current id, every release id).
fn releases(env: &Env) -> (Option<u64>, Vec<u64>) {
    let out = env.update_ok(&["status", "vol", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let vol = &v[0];
    let current = vol["current"]["id"].as_u64();
    let ids = vol["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    (current, ids)
}

fn release_from(env: &Env, volume: &str, tree: &Path) -> Output {
    env.update(&["release", volume, "--from", tree.to_str().unwrap()])
}

#[test]
fn releases_on_s3_are_served_to_pip_and_apt_rolled_back_and_collected() {
    let server = Seaweed::start(&tempfile::tempdir().unwrap().keep());
    let env = s3_env(
        &server,
        "region-1",
        "[release]\ngrace = \"0s\"\nretain = 3\n",
    );
    let check = Command::new(DAEMON)
        .args(["check-config", "--config"])
        .arg(env.config())
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(
        stdout(&check).contains("s3://mirrors/region-1: reachable, empty"),
        "{}",
        stdout(&check)
    );

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo");
    let out = release_from(&env, "vol", &fixtures.join("pypi"));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = release_from(&env, "other", &fixtures.join("ubuntu"));
    assert!(out.status.success(), "{}", stderr(&out));
    let check = Command::new(DAEMON)
        .args(["check-config", "--config"])
        .arg(env.config())
        .output()
        .unwrap();
    assert!(
        stdout(&check).contains("\"unimirror-origin 2\", volumes: other, vol"),
        "{}",
        stdout(&check)
    );
    assert_eq!(releases(&env), (Some(1), vec![1]));
    // Nothing of the volume is on the local disk but the updater's own
    // files (its lock and the manifests it fetched).
    assert!(!env.origin().exists());

    let d = Daemon::start(&env);
    let target = pip_install_with_hashes(
        env.path(),
        &format!("http://{}/vol/simple/", d.addr),
        &[(
            "hello-unimirror==1.0",
            &fixtures.join("pypi/packages/hello_unimirror-1.0-py3-none-any.whl"),
        )],
    );
    assert!(target.join("hello_unimirror/__init__.py").exists());
    let apt = env.path().join("apt");
    let source = format!(
        "deb [signed-by={}] http://{}/other demo main",
        fixtures.join("demo-archive-keyring.gpg").display(),
        d.addr
    );
    let o = apt_get(&apt, &source, &["update"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let o = apt_get(&apt, &source, &["download", "hello-unimirror"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        fs::read(apt.join("hello-unimirror_1.0_all.deb")).unwrap(),
        fs::read(fixtures.join("ubuntu/pool/main/h/hello-unimirror/hello-unimirror_1.0_all.deb"))
            .unwrap()
    );

    // Releases #2 to #5 of `vol`, each with a file of its own.
    let tree = env.tree();
    for n in 2..=5u32 {
        fs::remove_dir_all(&tree).unwrap();
        fs::create_dir_all(&tree).unwrap();
        env.write("only", format!("release {n}").as_bytes());
        env.release();
        wait_for("the daemon to follow", 10, || {
            d.get("/vol/only").body == format!("release {n}").as_bytes()
        });
    }
    assert_eq!(releases(&env).0, Some(5));

    // Rollback: the pointer moves back, and the daemon follows.
    let out = env.update_ok(&["rollback", "vol"]);
    assert!(out.contains("#5") && out.contains("#4"), "{out}");
    assert_eq!(releases(&env).0, Some(4));
    wait_for("the daemon to follow the rollback", 10, || {
        d.get("/vol/only").body == b"release 4"
    });
    // A published release answers by its id (the history objects say
    // which were published); an id never published does not.
    assert_eq!(d.get("/vol/@5/only").body, b"release 5");
    assert_eq!(d.get("/vol/@9/only").status, 404);

    // gc keeps the current release and the two before it (#4, #5 and #3
    // in the order they were current); #1 and #2 go, with the objects only
    // they named. `other`'s objects are shared in the store: kept.
    let out = env.update_ok(&["gc", "vol"]);
    assert!(out.contains("removed releases #1, #2"), "{out}");
    assert!(!out.contains(" 0 objects"), "the wheel only #1 had: {out}");
    assert_eq!(releases(&env), (Some(4), vec![3, 4, 5]));
    let o = apt_get(&apt, &source, &["update"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(d.get("/vol/only").body, b"release 4");
    // A daemon with an empty cache finds everything kept in the store.
    let fresh = s3_env(&server, "region-1", "");
    let d2 = Daemon::start(&fresh);
    assert_eq!(d2.get("/vol/only").body, b"release 4");
    assert_eq!(
        d2.get("/other/pool/main/h/hello-unimirror/hello-unimirror_1.0_all.deb")
            .status,
        200
    );
}

#[test]
fn an_apt_sync_on_s3_checks_new_metadata_against_the_released_one_and_apt_installs() {
    use crate::sync::{AptArchive, apt_source, set_field, set_upstream};
    let server = Seaweed::start(&tempfile::tempdir().unwrap().keep());
    let dir = tempfile::tempdir().unwrap();
    let archive = AptArchive::new(dir.path());
    let upstream = Upstream::serve(&archive.archive());
    let env = s3_env(&server, "apt", "");
    set_upstream(
        &env,
        &format!(
            "type = \"apt\"\nurl = \"{}\"\nsuites = [\"stable\"]\ncomponents = [\"main\"]\narchitectures = [\"amd64\"]\nkeyring = {:?}\n",
            upstream.url(),
            archive.keyring.display().to_string()
        ),
    );
    let out = env.update_ok(&["sync", "vol"]);
    assert!(out.contains("released vol #1"), "{out}");
    // An older InRelease is refused: the sync read the released one back
    // from the store to compare.
    archive.index();
    archive.resign(|t| set_field(&t, "Date", "Thu, 01 Jan 2026 00:00:00 UTC"));
    let out = env.update(&["sync", "vol"]);
    assert!(
        stderr(&out).contains("is older than that of the current release #1"),
        "{}",
        stderr(&out)
    );
    assert_eq!(releases(&env).0, Some(1));
    archive.index();
    archive.resign(|t| t);
    env.update_ok(&["sync", "vol"]);
    let d = Daemon::start(&env);
    let apt = env.path().join("apt");
    let source = apt_source(&d, &archive.keyring);
    let o = apt_get(&apt, &source, &["update"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let o = apt_get(&apt, &source, &["download", "greet"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn a_file_larger_than_one_put_is_uploaded_in_parts_and_served_whole() {
    let server = Seaweed::start(&tempfile::tempdir().unwrap().keep());
    let env = s3_env(&server, "large", "");
    // Two parts: 64 MiB and one byte more.
    let size = unimirror::origin::s3::SINGLE_PUT_MAX as usize + 1;
    let content = blob(7, size);
    env.write("big.bin", &content);
    let out = env.release();
    assert!(out.contains("1 new objects"), "{out}");
    let d = Daemon::start(&env);
    let r = d.get("/vol/big.bin");
    assert_eq!(r.status, 200);
    assert!(r.complete());
    assert_eq!(
        r.sha256(),
        unimirror::volume::manifest::Sha256Digest::of(&content)
    );
    let range = d.request("GET", "/vol/big.bin", &[("Range", "bytes=67108860-")]);
    assert_eq!(
        (range.status, range.body.as_slice()),
        (206, &content[67108860..])
    );
}

#[test]
fn an_upload_a_killed_updater_left_is_aborted_by_gc_after_the_grace_period() {
    let server = Seaweed::start(&tempfile::tempdir().unwrap().keep());
    let env = s3_env(&server, "parts", "[release]\ngrace = \"0s\"\n");
    env.write("small", b"kept");
    env.release();
    env.write(
        "big.bin",
        &blob(3, unimirror::origin::s3::SINGLE_PUT_MAX as usize + 1),
    );
    let out = env
        .update_cmd(&["release", "vol", "--from", env.tree().to_str().unwrap()])
        .env(
            "UNIMIRROR_FAULT",
            format!("{}:kill", unimirror::fault::S3_PART_UPLOADED),
        )
        .output()
        .unwrap();
    assert!(killed(&out.status), "{}", stderr(&out));
    assert_eq!(releases(&env).0, Some(1));
    // The store lists the upload (its first part is there): gc finds it,
    // a dry run leaves it, a real run aborts it, and then it is gone.
    let out = env.update_ok(&["gc", "vol", "--dry-run"]);
    assert!(out.contains(", 1 abandoned uploads"), "{out}");
    let out = env.update_ok(&["gc", "vol"]);
    assert!(out.contains(", 1 abandoned uploads"), "{out}");
    let out = env.update_ok(&["gc", "vol"]);
    assert!(out.contains(", 0 abandoned uploads"), "{out}");
    // The release that was cut short goes through on the next run.
    env.release();
    let d = Daemon::start(&env);
    assert_eq!(d.get("/vol/small").body, b"kept");
    assert!(d.get("/vol/big.bin").complete());
}

/// Two updaters with their own staging (as on two hosts) release `vol`
/// at once: `first` is held by SIGSTOP at `point`, the other runs whole,
/// then `first` goes on.
fn race_at(point: &str) {
    let server = Seaweed::start(&tempfile::tempdir().unwrap().keep());
    let a = s3_env(&server, "race", "");
    let b = s3_env(&server, "race", "");
    a.write("f", b"base");
    a.release();
    a.write("f", b"from a");
    b.write("f", b"from b");
    let mut first = a.update_cmd(&["release", "vol", "--from", a.tree().to_str().unwrap()]);
    first.env("UNIMIRROR_FAULT", format!("{point}:stop"));
    let child = first.stderr(std::process::Stdio::piped()).spawn().unwrap();
    wait_until_stopped(&child);
    b.release();
    signal(&child, libc::SIGCONT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(75),
        "{point}: the held updater must find the volume taken: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("another updater"), "{}", stderr(&out));
    // One consistent history: the base, then b's release; a's never
    // became current.
    let (current, _) = releases(&a);
    let d = Daemon::start(&b);
    assert_eq!(d.get("/vol/f").body, b"from b", "{point}");
    assert_eq!(
        d.get("/vol/f").header("x-unimirror-release"),
        Some(current.unwrap().to_string().as_str())
    );
    // And the loser's next run succeeds, on top of b's release.
    let out = a.release();
    assert!(out.contains("released vol"), "{out}");
    wait_for("the daemon to serve a's release", 10, || {
        d.get("/vol/f").body == b"from a"
    });
}

#[test]
fn gc_on_another_host_leaves_a_release_that_is_about_to_be_published() {
    let server = Seaweed::start(&tempfile::tempdir().unwrap().keep());
    let a = s3_env(&server, "busy", "");
    let b = s3_env(&server, "busy", "");
    for n in 1..=4 {
        a.write("f", format!("release {n}").as_bytes());
        a.release();
    }
    // a's fifth release, held just before its pointer moves: complete on
    // the store, published by nobody yet.
    a.write("f", b"release 5");
    let mut held = a.update_cmd(&["release", "vol", "--from", a.tree().to_str().unwrap()]);
    held.env("UNIMIRROR_FAULT", "pointer-before-rename:stop");
    let child = held
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_stopped(&child);
    // Before, gc removed a release the pointer never named as debris, at
    // once: here the pointer would then have moved to a release gone.
    let out = b.update_ok(&["gc", "vol"]);
    assert!(out.contains("kept releases #1, #2, #3, #4, #5;"), "{out}");
    let plan = b.update_ok(&["gc", "vol", "--dry-run"]);
    assert!(
        plan.contains("#5      keep: never published, but made"),
        "{plan}"
    );
    signal(&child, libc::SIGCONT);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let d = Daemon::start(&b);
    assert_eq!(d.get("/vol/f").body, b"release 5");
}

#[test]
fn two_updaters_racing_for_a_release_id_one_wins_and_the_other_exits_75() {
    race_at("manifest-written");
}

#[test]
fn two_updaters_racing_for_the_pointer_one_wins_and_the_other_exits_75() {
    race_at("pointer-before-rename");
}

#[test]
fn a_kill_at_every_step_of_a_release_on_s3_leaves_the_previous_release_current() {
    let server = Seaweed::start(&tempfile::tempdir().unwrap().keep());
    let env = s3_env(&server, "crash", "");
    env.write("f", b"release 1");
    env.release();
    let d = Daemon::start(&env);
    let mut expected = (1u64, b"release 1".to_vec());
    // On S3 an object is uploaded straight from the tree (no temporary
    // copy), and these releases are not signed: every other point.
    let points = unimirror::fault::POINTS
        .iter()
        .filter(|p| !matches!(**p, "object-temp-written" | "signature-written"));
    for (n, point) in points.enumerate() {
        let content = format!("killed at {point} ({n})");
        env.write("f", content.as_bytes());
        let out = env
            .update_cmd(&["release", "vol", "--from", env.tree().to_str().unwrap()])
            .env("UNIMIRROR_FAULT", format!("{point}:kill"))
            .output()
            .unwrap();
        assert!(killed(&out.status), "{point}: {}", stderr(&out));
        // Killed after the pointer moved: that release is current (and
        // complete); before: the previous one still is.
        let (current, _) = releases(&env);
        if *point == "pointer-renamed" {
            expected = (current.unwrap(), content.into_bytes());
            assert!(expected.0 > 1);
        } else {
            assert_eq!(current, Some(expected.0), "{point}");
        }
        wait_for("the daemon to serve the current release", 10, || {
            let r = d.get("/vol/f");
            r.header("x-unimirror-release") == Some(expected.0.to_string().as_str())
        });
        assert_eq!(d.get("/vol/f").body, expected.1, "{point}");
        // The next release succeeds, and records the move a kill left
        // without its history object.
        env.write("f", format!("after {point}").as_bytes());
        env.release();
        let (current, _) = releases(&env);
        expected = (current.unwrap(), format!("after {point}").into_bytes());
        wait_for("the daemon to follow", 10, || {
            d.get("/vol/f").body == expected.1
        });
    }
}

#[test]
fn a_store_that_ignores_conditional_writes_is_refused_before_anything_is_written() {
    // A stub that accepts every PUT, as Garage 2.x does with conditions,
    // and logs what it was asked.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stub.log");
    let mut stub = Upstream::python(
        r#"
import http.server, re, sys
out = open(sys.argv[1], "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    def reply(self, code):
        out.write("%s %s %s\n" % (self.command, self.path, code))
        self.send_response(code)
        self.send_header("ETag", '"1"')
        self.send_header("Content-Length", "0")
        self.end_headers()
    def do_PUT(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.reply(200)
    def do_DELETE(self):
        self.reply(204)
    def do_POST(self):
        # A bulk delete: every key asked for is deleted.
        asked = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        keys = re.findall(r"<Key>(.*?)</Key>", asked)
        body = ('<?xml version="1.0" encoding="UTF-8"?><DeleteResult>%s</DeleteResult>' % "".join(
            "<Deleted><Key>%s</Key></Deleted>" % k for k in keys)).encode()
        out.write("POST %s 200\n" % self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.reply(404)
    do_HEAD = do_GET
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#,
        &[log.as_os_str()],
    );
    stub.log = Some(log.clone());
    fs::write(dir.path().join("id"), "k").unwrap();
    fs::write(dir.path().join("secret"), "s").unwrap();
    let env = Env::with_config(&format!(
        "[s3]\nendpoint = \"{}\"\npath_style = true\naccess_key_id_file = {:?}\nsecret_access_key_file = {:?}\n",
        stub.url().trim_end_matches('/'),
        dir.path().join("id").display().to_string(),
        dir.path().join("secret").display().to_string()
    ));
    env.write_config(Path::new("s3://mirrors/garage"));
    env.write("f", b"x");
    let out = release_from(&env, "vol", &env.tree());
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("does not enforce If-None-Match") && err.contains("s3.single_writer"),
        "{err}"
    );
    // Only the probe's own key was written (one per run: two twice).
    let puts: Vec<String> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("PUT "))
        .map(str::to_string)
        .collect();
    assert!(puts.len() >= 2, "{puts:?}");
    let key = puts[0].split(' ').nth(1).unwrap();
    assert!(key.starts_with("/mirrors/garage/.probe/"), "{puts:?}");
    assert!(
        puts.iter().all(|p| p.split(' ').nth(1) == Some(key)),
        "{puts:?}"
    );
}

/// A client that fetches `index` and then the file it names, from one
/// daemon: both answers must come from the same release.
fn fetch_pair(d: &Daemon) -> (u64, String) {
    let index = d.get("/vol/index");
    assert_eq!(index.status, 200);
    let name = index.text();
    let file = d.get(&format!("/vol/{name}"));
    assert_eq!(file.status, 200, "{name} named by the index must be there");
    let id: u64 = index
        .header("x-unimirror-release")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        file.text(),
        format!("content of {name}"),
        "mixed releases: the index of #{id} named {name}"
    );
    (id, name)
}

#[test]
fn three_daemons_follow_one_s3_origin_without_mixing_releases_and_survive_its_outage() {
    let mut server = Seaweed::start(&tempfile::tempdir().unwrap().keep());
    let updater = s3_env(&server, "fleet", "");
    let write_release = |n: u32| {
        updater.write("index", format!("file-{n}").as_bytes());
        updater.write(
            &format!("file-{n}"),
            format!("content of file-{n}").as_bytes(),
        );
        updater.write("never-read", format!("uncached {n}").as_bytes());
        updater.release();
    };
    write_release(0);
    // poll_interval is 200 ms in the tests' daemon config.
    let poll = Duration::from_millis(200);
    let envs: Vec<Env> = (0..3).map(|_| s3_env(&server, "fleet", "")).collect();
    let daemons: Vec<Daemon> = envs.iter().map(Daemon::start).collect();
    for d in &daemons {
        assert_eq!(fetch_pair(d).1, "file-0");
    }
    for n in 1..=20u32 {
        write_release(n);
        let moved = Instant::now();
        let want = format!("file-{n}");
        for d in &daemons {
            loop {
                let (_, name) = fetch_pair(d);
                if name == want {
                    break;
                }
                assert!(
                    moved.elapsed() <= poll + Duration::from_secs(1),
                    "release {n} not served within poll_interval + 1 s"
                );
            }
        }
    }

    // The store goes away: what is cached is still served, /readyz says
    // 503 within 2 s, and an object never fetched cannot be had.
    server.stop();
    for d in &daemons {
        let (_, name) = fetch_pair(d);
        assert_eq!(name, "file-20");
        let asked = Instant::now();
        let ready = d.get("/readyz");
        assert_eq!(ready.status, 503, "{}", ready.text());
        assert!(asked.elapsed() < Duration::from_secs(2));
        let r = d.get("/vol/never-read");
        assert!(matches!(r.status, 502 | 503), "{}", r.status);
    }

    // It comes back: the daemons recover with no restart.
    server.restart();
    for d in &daemons {
        wait_for("readiness after the store came back", 30, || {
            d.get("/readyz").status == 200
        });
        // Its volume server may register a moment after its S3 port
        // answers: a fill fails until then, and is not remembered.
        wait_for("the uncached object after the outage", 30, || {
            let r = d.get("/vol/never-read");
            assert!(matches!(r.status, 200 | 502 | 503), "{}", r.status);
            r.status == 200
        });
        assert_eq!(d.get("/vol/never-read").body, b"uncached 20");
    }
    write_release(21);
    for d in &daemons {
        wait_for("the release made after the outage", 10, || {
            fetch_pair(d).1 == "file-21"
        });
    }
}

#[test]
fn a_release_on_s3_signed_by_an_unknown_key_is_refused_and_the_previous_one_served() {
    let server = Seaweed::start(&tempfile::tempdir().unwrap().keep());
    let env = s3_env(
        &server,
        "signed",
        "[release]\nsigning_key = \"signing.pem\"\n",
    );
    for name in ["a", "b"] {
        openssl_key_pair(env.path(), name);
    }
    fs::copy(env.path().join("a.pem"), env.path().join("signing.pem")).unwrap();
    env.write("f", b"signed by a");
    env.release();
    let d = Daemon::start_with(
        &env,
        &DaemonOpts {
            daemon: "release_keys = [\"a.pub\"]\n".into(),
            ..DaemonOpts::default()
        },
    );
    assert_eq!(d.get("/vol/f").body, b"signed by a");
    fs::copy(env.path().join("b.pem"), env.path().join("signing.pem")).unwrap();
    env.write("f", b"signed by b");
    env.release();
    assert_eq!(releases(&env).0, Some(2));
    wait_for("the refusal", 10, || {
        d.metric_or_zero(
            "unimirror_manifest_loads_total",
            &[("volume", "vol"), ("result", "refused")],
        ) >= 1.0
    });
    assert_eq!(d.get("/vol/f").body, b"signed by a");
    assert!(d.log_text().contains("release #2 of `vol` refused"));
}

#[test]
fn tags_on_s3_move_by_compare_and_swap_are_served_and_kept_by_gc() {
    let server = Seaweed::start(&tempfile::tempdir().unwrap().keep());
    let a = s3_env(&server, "tags", "[release]\ngrace = \"0s\"\n");
    let b = s3_env(&server, "tags", "[release]\ngrace = \"0s\"\n");
    for n in 1..=5 {
        a.write("f", format!("release {n}").as_bytes());
        a.release();
    }
    a.update_ok(&["tag", "vol", "1", "ci"]);
    // a's next move, held before its write: b moves the tag meanwhile, so
    // a's compare-and-swap must fail rather than overwrite b's move.
    let mut held = a.update_cmd(&["tag", "vol", "3", "ci"]);
    held.env("UNIMIRROR_FAULT", "tag-before-rename:stop");
    let child = held.stderr(std::process::Stdio::piped()).spawn().unwrap();
    wait_until_stopped(&child);
    b.update_ok(&["tag", "vol", "2", "ci"]);
    signal(&child, libc::SIGCONT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another updater moved tag `ci`"),
        "{}",
        stderr(&out)
    );

    let d = Daemon::start(&b);
    assert_eq!(d.get("/vol/@ci/f").body, b"release 2");
    a.update_ok(&["tag", "vol", "ci", "--undo"]);
    wait_for("the undone tag served", 10, || {
        d.get("/vol/@ci/f").body == b"release 1"
    });
    let status = a.update_ok(&["status", "vol"]);
    assert!(status.contains("@ci -> #1"), "{status}");
    // Staging released from the tag: on S3 every volume shares the
    // objects, so only the manifest and metadata are written.
    let out = a.update_ok(&["release", "other", "--from-release", "vol@ci"]);
    assert!(out.contains("0 new objects"), "{out}");
    wait_for("staging served", 10, || {
        d.get("/other/f").body == b"release 1"
    });
    let out = a.update_ok(&["gc", "vol", "--keep", "3"]);
    assert!(
        out.contains("kept releases #1, #3, #4, #5; removed releases #2"),
        "{out}"
    );
    assert_eq!(d.get("/vol/@ci/f").body, b"release 1");
    assert_eq!(d.get("/other/f").body, b"release 1");
}

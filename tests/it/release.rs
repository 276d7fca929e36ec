//! `unimirror-update release`, `status`, `rollback` and `gc`, driven through
//! the real binary against a private origin.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Command;

use crate::common::*;
use unimirror::volume::Action;
use unimirror::volume::manifest::Kind;

/// Nested directories, an empty file, an empty directory, symlinks, names
/// with spaces and non-ASCII bytes.
fn varied_tree(env: &Env) {
    env.write("simple/index.html", b"<html>index</html>");
    env.write("simple/my project/index.html", b"spaces");
    env.write("pool/main/ü/zstd_1.5_amd64.deb", &vec![7u8; 100_000]);
    env.write("pool/main/empty", b"");
    env.write("dists/jammy/Release", b"Origin: test\n");
    fs::create_dir_all(env.tree().join("empty-dir/deeper")).unwrap();
    symlink("jammy", env.tree().join("dists/stable")).unwrap();
    symlink("../dists/jammy/Release", env.tree().join("simple/rel")).unwrap();
    // A name that is not UTF-8 at all.
    let odd = std::ffi::OsStr::from_bytes(b"latin1-\xe9.txt");
    fs::write(env.tree().join(odd), b"bytes").unwrap();
}

#[test]
fn release_publishes_every_kind_of_entry() {
    let env = Env::new();
    varied_tree(&env);
    let out = env.release();
    assert!(
        out.starts_with("released vol #1: 6 files, 9 directories, 2 symlinks"),
        "{out}"
    );
    assert_eq!(env.current(), Some(1));
    assert_matches_tree(&env.vol(), 1, &env.tree());
    let m = check_release(&env.vol(), 1);
    assert_eq!(m.get(b"pool/main/empty").unwrap().unwrap().size, 0);
    assert_eq!(m.get(b"dists/stable").unwrap().unwrap().target, b"jammy");
    let names: Vec<_> = m
        .list(b"empty-dir")
        .unwrap()
        .into_iter()
        .map(|(n, e)| (n, e.kind))
        .collect();
    assert_eq!(names, vec![(b"deeper".to_vec(), Kind::Dir)]);
    let h = env.vol().history().unwrap();
    assert_eq!((h.len(), h[0].action, h[0].to), (1, Action::Release, 1));
}

#[test]
fn release_defaults_to_the_staging_tree() {
    let env = Env::new();
    let out = env.update(&["release", "vol"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("run `sync` first"),
        "{}",
        stderr(&out)
    );
    fs::create_dir_all(env.path().join("staging/vol")).unwrap();
    fs::write(env.path().join("staging/vol/f"), b"x").unwrap();
    env.update_ok(&["release", "vol"]);
    assert_matches_tree(&env.vol(), 1, &env.path().join("staging/vol"));
}

#[test]
fn unchanged_tree_makes_no_release() {
    let env = Env::new();
    varied_tree(&env);
    env.release();
    let history = env.vol().history().unwrap();
    let out = env.release();
    assert!(
        out.contains("identical to the current release #1; nothing released"),
        "{out}"
    );
    assert_eq!(env.current(), Some(1));
    assert_eq!(env.vol().release_ids().unwrap(), vec![1]);
    assert_eq!(env.vol().history().unwrap(), history);
    assert_eq!(fs::read_dir(env.vol().tmp_dir()).unwrap().count(), 0);
}

#[test]
fn one_changed_file_shares_every_other_object() {
    let env = Env::new();
    for i in 0..50 {
        env.write(
            &format!("d{}/f{i}", i % 5),
            format!("content {i}").as_bytes(),
        );
    }
    env.release();
    let before = object_count(&env.vol());
    env.write("d3/f13", b"new content");
    let out = env.release();
    assert!(out.contains("1 new objects"), "{out}");
    assert_eq!(object_count(&env.vol()), before + 1);
    let (m1, m2) = (check_release(&env.vol(), 1), check_release(&env.vol(), 2));
    for i in 0..50 {
        let p = format!("d{}/f{i}", i % 5);
        let (a, b) = (
            m1.get(p.as_bytes()).unwrap().unwrap(),
            m2.get(p.as_bytes()).unwrap().unwrap(),
        );
        assert_eq!(a.sha256 == b.sha256, p != "d3/f13", "{p}");
    }
    assert_eq!(env.vol().meta(2).unwrap().parent, Some(1));
    assert_matches_tree(&env.vol(), 2, &env.tree());
}

#[test]
fn removed_and_touched_files_make_a_new_release() {
    let env = Env::new();
    env.write("a", b"1");
    env.write("b", b"2");
    env.release();
    fs::remove_file(env.tree().join("b")).unwrap();
    env.release();
    assert_matches_tree(&env.vol(), 2, &env.tree());
    // Same content, new mtime: served metadata changes, so it is a release.
    let f = fs::File::options()
        .write(true)
        .open(env.tree().join("a"))
        .unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
        .unwrap();
    let out = env.release();
    assert!(
        out.contains("released vol #3") && out.contains("0 new objects"),
        "{out}"
    );
}

#[test]
fn verify_rehashes_a_file_whose_content_changed_behind_its_metadata() {
    let env = Env::new();
    env.write("f", b"aaaa");
    env.release();
    // Rewrite in place with the same size and mtime: size/mtime/inode reuse
    // cannot see it; --verify must.
    let path = env.tree().join("f");
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    fs::write(&path, b"bbbb").unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let out = env.release();
    assert!(
        out.contains("identical"),
        "without --verify the change is invisible: {out}"
    );
    let tree = env.tree();
    let out = env.update_ok(&[
        "release",
        "vol",
        "--from",
        tree.to_str().unwrap(),
        "--verify",
    ]);
    assert!(out.contains("released vol #2"), "{out}");
    assert_matches_tree(&env.vol(), 2, &env.tree());
}

#[test]
fn rollback_moves_the_pointer_and_records_it() {
    let env = Env::new();
    for i in 1..=3 {
        env.write("f", format!("v{i}").as_bytes());
        env.release();
    }
    assert_eq!(
        env.update_ok(&["rollback", "vol"]).trim(),
        "rolled vol back from #3 to #2"
    );
    assert_eq!(env.current(), Some(2));
    env.update_ok(&["rollback", "vol"]);
    assert_eq!(env.current(), Some(1));
    let out = env.update(&["rollback", "vol"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no retained release older"),
        "{}",
        stderr(&out)
    );
    env.update_ok(&["rollback", "vol", "--to", "3"]);
    assert_eq!(env.current(), Some(3));
    for bad in ["3", "9"] {
        let out = env.update(&["rollback", "vol", "--to", bad]);
        assert_eq!(out.status.code(), Some(1), "--to {bad}");
    }
    let actions: Vec<_> = env
        .vol()
        .history()
        .unwrap()
        .iter()
        .map(|h| (h.action, h.to))
        .collect();
    assert_eq!(
        actions,
        vec![
            (Action::Release, 1),
            (Action::Release, 2),
            (Action::Release, 3),
            (Action::Rollback, 2),
            (Action::Rollback, 1),
            (Action::Rollback, 3)
        ]
    );
    // A release after a rollback builds on the rolled-back-to release.
    env.update_ok(&["rollback", "vol", "--to", "1"]);
    env.write("g", b"new");
    env.release();
    let meta = env.vol().meta(4).unwrap();
    assert_eq!(meta.parent, Some(1));
}

#[test]
fn rollback_refuses_a_release_with_missing_objects() {
    let env = Env::new();
    env.write("f", b"one");
    env.release();
    env.write("f", b"two");
    env.release();
    let m1 = check_release(&env.vol(), 1);
    let sha = m1.get(b"f").unwrap().unwrap().sha256;
    fs::remove_file(env.vol().object_file(&sha)).unwrap();
    let out = env.update(&["rollback", "vol"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("missing from the store"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.current(), Some(2));
}

#[test]
fn gc_keeps_what_is_needed_and_removes_the_rest() {
    let env = Env::with_config("[release]\ngrace = \"0s\"\n");
    env.write("shared", b"in every release");
    for i in 1..=6 {
        env.write("f", format!("unique {i}").as_bytes());
        env.release();
    }
    assert_eq!(object_count(&env.vol()), 7);
    let dry = env.update_ok(&["gc", "vol", "--keep", "3", "--dry-run"]);
    assert!(
        dry.contains("would remove releases #1, #2, #3, 3 objects"),
        "{dry}"
    );
    assert_eq!(env.vol().release_ids().unwrap().len(), 6);
    assert_eq!(object_count(&env.vol()), 7);

    let out = env.update_ok(&["gc", "vol", "--keep", "3"]);
    assert!(
        out.contains("kept releases #4, #5, #6; removed releases #1, #2, #3, 3 objects"),
        "{out}"
    );
    assert_eq!(env.vol().release_ids().unwrap(), vec![4, 5, 6]);
    assert_eq!(object_count(&env.vol()), 4);
    for id in [4, 5, 6] {
        check_release(&env.vol(), id);
    }
    // --keep below 3 still keeps the current release and two before it.
    let out = env.update_ok(&["gc", "vol", "--keep", "1"]);
    assert!(out.contains("kept releases #4, #5, #6"), "{out}");
}

#[test]
fn gc_orders_by_when_releases_were_current_not_by_id() {
    let env = Env::with_config("[release]\ngrace = \"0s\"\n");
    for i in 1..=5 {
        env.write("f", format!("v{i}").as_bytes());
        env.release();
    }
    // Back to #1: #1 is current, #5 and #4 were current just before it.
    env.update_ok(&["rollback", "vol", "--to", "1"]);
    let out = env.update_ok(&["gc", "vol", "--keep", "3"]);
    assert!(
        out.contains("kept releases #1, #4, #5; removed releases #2, #3"),
        "{out}"
    );
}

#[test]
fn gc_never_removes_what_was_current_within_the_grace_period() {
    let env = Env::new(); // default grace: 1 hour
    for i in 1..=6 {
        env.write("f", format!("v{i}").as_bytes());
        env.release();
    }
    let out = env.update_ok(&["gc", "vol", "--keep", "3"]);
    assert!(out.contains("removed releases none, 0 objects"), "{out}");
    assert_eq!(env.vol().release_ids().unwrap().len(), 6);
}

#[test]
fn status_reports_current_release_age_counts_and_retained() {
    let env = Env::new();
    varied_tree(&env);
    env.release();
    env.write("more", b"12345");
    env.release();
    let out = env.update_ok(&["status", "vol", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let vol = &v[0];
    assert_eq!(vol["volume"], "vol");
    assert_eq!(vol["current"]["id"], 2);
    assert_eq!(vol["current"]["files"], 7);
    assert_eq!(vol["current"]["bytes"], 100_000 + 18 + 6 + 13 + 5 + 5);
    assert!(vol["current"]["age_seconds"].as_u64().unwrap() < 3600);
    assert_eq!(vol["releases"].as_array().unwrap().len(), 2);
    let text = env.update_ok(&["status"]);
    assert!(text.contains("vol (/vol): release #2"), "{text}");
    assert!(text.contains("other (/other): never released"), "{text}");
    assert!(text.contains("plain (/plain): plain tree"), "{text}");
}

#[test]
fn two_concurrent_releases_exclude_each_other() {
    let env = Env::new();
    env.write("f", b"1");
    env.release();
    env.write("f", b"2");
    let tree = env.tree();
    let tree = tree.to_str().unwrap();
    // The first release stops right after taking the lock.
    let mut first = env.update_cmd(&["release", "vol", "--from", tree]);
    first.env("UNIMIRROR_FAULT", "locked:stop");
    let first = first.spawn().unwrap();
    wait_until_stopped(&first);

    let second = env.update(&["release", "vol", "--from", tree]);
    assert_eq!(second.status.code(), Some(75), "{}", stderr(&second));
    let msg = stderr(&second);
    assert!(msg.contains("volume `vol` is busy: release (pid"), "{msg}");
    // gc and rollback take the same lock.
    for cmd in [&["gc", "vol"][..], &["rollback", "vol"][..]] {
        let out = env.update(cmd);
        assert_eq!(out.status.code(), Some(75), "{cmd:?}: {}", stderr(&out));
    }

    // With --wait the second one queues behind the first: it gets the lock
    // (and stops there) only after the first has published its release.
    let waiting = env
        .update_cmd(&["release", "vol", "--from", tree, "--wait"])
        .env("UNIMIRROR_FAULT", "locked:stop")
        .spawn()
        .unwrap();
    signal(&first, libc::SIGCONT);
    wait_until_stopped(&waiting);
    assert_eq!(
        env.current(),
        Some(2),
        "the waiting release got the lock too early"
    );
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    env.write("g", b"3");
    signal(&waiting, libc::SIGCONT);
    let waiting = waiting.wait_with_output().unwrap();
    assert!(waiting.status.success(), "{}", stderr(&waiting));
    assert_eq!(env.vol().release_ids().unwrap(), vec![1, 2, 3]);
    assert_eq!(env.vol().meta(3).unwrap().parent, Some(2));
    check_release(&env.vol(), 2);
    assert_matches_tree(&env.vol(), 3, &env.tree());
}

/// Kills the release with SIGKILL at every named step and checks that the
/// volume is always either at the old release or at the complete new one,
/// that the next release succeeds, and that gc leaves no debris. Releases
/// are signed, so that the signature's step is visited too.
#[test]
fn kill_9_at_every_step_leaves_a_consistent_volume() {
    let points: Vec<String> = unimirror::fault::POINTS
        .iter()
        .map(|p| format!("{p}:kill"))
        .chain(["object-temp-written:kill@3".to_string()])
        .collect();
    for fault in points {
        let env = Env::with_config("[release]\ngrace = \"0s\"\nsigning_key = \"key.pem\"\n");
        openssl_key_pair(env.path(), "key");
        for i in 0..20 {
            env.write(
                &format!("dir{}/file{i}", i % 3),
                format!("old {i}").as_bytes(),
            );
        }
        env.release();
        let old_tree = snapshot(&env);
        for i in 0..10 {
            env.write(
                &format!("dir{}/new{i}", i % 4),
                format!("new {i}").as_bytes(),
            );
        }
        let tree = env.tree();
        let out = env
            .update_cmd(&["release", "vol", "--from", tree.to_str().unwrap()])
            .env("UNIMIRROR_FAULT", &fault)
            .output()
            .unwrap();
        assert!(killed(&out.status), "{fault}: not killed: {}", out.status);

        // Either the old release, intact, or the new one, complete.
        let current = env.current().unwrap();
        if fault.starts_with("pointer-renamed") {
            assert_eq!(current, 2, "{fault}");
            assert_matches_tree(&env.vol(), 2, &env.tree());
        } else {
            assert_eq!(current, 1, "{fault}");
            assert_matches_tree(&env.vol(), 1, &old_tree.path().join("tree"));
        }

        // The next release succeeds (or finds the tree already released).
        let out = env.release();
        assert!(
            out.contains("released vol #") || out.contains("identical"),
            "{fault}: {out}"
        );
        let now = env.current().unwrap();
        assert_matches_tree(&env.vol(), now, &env.tree());
        assert!(env.vol().signature_file(now).exists(), "{fault}");
        // The history explains every pointer change.
        assert_eq!(
            env.vol().history().unwrap().last().unwrap().to,
            now,
            "{fault}"
        );

        // gc sweeps what the crash left; nothing unreferenced remains.
        env.update_ok(&["gc", "vol", "--keep", "3"]);
        assert_eq!(
            fs::read_dir(env.vol().tmp_dir()).unwrap().count(),
            0,
            "{fault}"
        );
        let dry = env.update_ok(&["gc", "vol", "--dry-run"]);
        assert!(
            dry.contains("would remove releases none, 0 objects (0 B), 0 temporary"),
            "{fault}: {dry}"
        );
        for id in env.vol().release_ids().unwrap() {
            check_release(&env.vol(), id);
        }
    }
}

/// The same, with kills at arbitrary moments of a larger release.
#[test]
fn kill_9_at_random_moments_leaves_a_consistent_volume() {
    let env = Env::new();
    env.write("seed", b"first");
    env.release();
    let old = snapshot(&env);
    for i in 0..2000 {
        env.write(
            &format!("d{}/f{i}", i % 17),
            &vec![(i % 251) as u8; 1000 + i * 37],
        );
    }
    let tree = env.tree();
    let mut kills = 0;
    for round in 0..12u64 {
        let mut child = env
            .update_cmd(&["release", "vol", "--from", tree.to_str().unwrap()])
            .spawn()
            .unwrap();
        // Not a synchronisation: the kill lands wherever the release is.
        std::thread::sleep(std::time::Duration::from_millis(3 + round * 9));
        signal(&child, libc::SIGKILL);
        let status = child.wait().unwrap();
        let current = env.current().unwrap();
        if current == 1 {
            assert_matches_tree(&env.vol(), 1, &old.path().join("tree"));
        } else {
            assert_matches_tree(&env.vol(), current, &env.tree());
        }
        if killed(&status) {
            kills += 1;
        }
    }
    assert!(kills > 0, "no kill landed during a release");
    env.release();
    let now = env.current().unwrap();
    assert_matches_tree(&env.vol(), now, &env.tree());
    env.update_ok(&["gc", "vol"]);
    assert_eq!(fs::read_dir(env.vol().tmp_dir()).unwrap().count(), 0);
}

/// A copy of the current tree, to compare an old release against later.
fn snapshot(env: &Env) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run(Command::new("cp")
        .arg("-a")
        .arg(env.tree())
        .arg(dir.path().join("tree")));
    dir
}

#[test]
fn unknown_volume_and_tree_volume_are_refused() {
    let env = Env::new();
    let out = env.update(&["release", "nope", "--from", "/tmp"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown volume `nope`"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("other, plain, vol"),
        "{}",
        stderr(&out)
    );
    let out = env.update(&["release", "plain"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("serves the plain tree"),
        "{}",
        stderr(&out)
    );
    assert!(!env.origin().join("nope").exists());
}

#[test]
fn symlink_out_of_the_tree_is_refused_and_nothing_changes() {
    let env = Env::new();
    env.write("f", b"1");
    env.release();
    env.write("g", b"2");
    symlink("../../etc/passwd", env.tree().join("escape")).unwrap();
    let tree = env.tree();
    let out = env.update(&["release", "vol", "--from", tree.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(
        msg.contains("symlink escape -> ../../etc/passwd points outside the tree"),
        "{msg}"
    );
    assert!(msg.contains("the current release is unchanged"), "{msg}");
    assert_eq!(env.current(), Some(1));
    assert_eq!(env.vol().release_ids().unwrap(), vec![1]);
    assert_eq!(fs::read_dir(env.vol().tmp_dir()).unwrap().count(), 0);
}

#[test]
fn unreadable_file_is_named_and_nothing_changes() {
    let env = Env::new();
    env.write("f", b"1");
    env.release();
    env.write("secret", b"2");
    fs::set_permissions(env.tree().join("secret"), fs::Permissions::from_mode(0o000)).unwrap();
    let tree = env.tree();
    let mut cmd = env.update_cmd(&["release", "vol", "--from", tree.to_str().unwrap()]);
    if is_root() {
        // Root reads anything: run as an unprivileged user, as the updater
        // service would, with the origin writable by it.
        fs::set_permissions(env.path(), fs::Permissions::from_mode(0o755)).unwrap();
        run(Command::new("chown")
            .arg("-R")
            .arg("nobody")
            .arg(env.origin()));
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(UPDATE)
            .arg("--config")
            .arg(env.config())
            .args(["release", "vol", "--from", tree.to_str().unwrap()]);
        cmd = c;
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let msg = stderr(&out);
    assert!(
        msg.contains("secret") && msg.contains("Permission denied"),
        "{msg}"
    );
    assert_eq!(env.current(), Some(1));
    assert_eq!(env.vol().release_ids().unwrap(), vec![1]);
}

#[test]
#[ignore = "needs root: mounts a tmpfs origin and remounts it read-only"]
fn read_only_origin_fails_clearly_and_stays_readable() {
    assert_root();
    let env = Env::new();
    let mount = Mount::tmpfs(&env.path().join("ro-origin"), "8m");
    env.write_config(&mount.path);
    env.write("f", b"1");
    env.release();
    mount.remount("ro");
    env.write("g", b"2");
    let tree = env.tree();
    let out = env.update(&["release", "vol", "--from", tree.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(msg.contains("Read-only file system"), "{msg}");
    let vol = unimirror::volume::VolumeDir::new(&mount.path, "vol");
    assert_eq!(vol.current().unwrap(), Some(1));
    check_release(&vol, 1);
}

#[test]
#[ignore = "needs root: mounts a small tmpfs as the origin"]
fn full_origin_disk_fails_clearly_and_recovers() {
    assert_root();
    let env = Env::with_config("[release]\ngrace = \"0s\"\n");
    let mount = Mount::tmpfs(&env.path().join("small-origin"), "1m");
    env.write_config(&mount.path);
    env.write("small", b"fits");
    env.release();
    env.write("big", &vec![1u8; 3 << 20]);
    let tree = env.tree();
    let out = env.update(&["release", "vol", "--from", tree.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(msg.contains("No space left on device"), "{msg}");
    assert!(msg.contains("the current release is unchanged"), "{msg}");
    let vol = unimirror::volume::VolumeDir::new(&mount.path, "vol");
    assert_eq!(vol.current().unwrap(), Some(1));
    check_release(&vol, 1);
    // gc runs on a full disk and leaves no debris.
    env.update_ok(&["gc", "vol"]);
    assert_eq!(fs::read_dir(vol.tmp_dir()).unwrap().count(), 0);
    // With room again the same release goes through.
    mount.remount("size=16m");
    env.release();
    assert_matches_tree(&vol, 2, &env.tree());
}

fn many_files(env: &Env, n: usize) {
    for i in 0..n {
        env.write(&format!("d{}/f{i}", i % 7), format!("{i}").as_bytes());
    }
}

#[test]
fn without_a_terminal_progress_is_logged_and_ends_in_one_summary_line() {
    let env = Env::new();
    many_files(&env, 3000);
    let tree = env.tree();
    let out = env
        .update_cmd(&["release", "vol", "--from", tree.to_str().unwrap()])
        .env("UNIMIRROR_PROGRESS_INTERVAL", "0")
        .output()
        .unwrap();
    assert!(out.status.success());
    let (so, se) = (stdout(&out), stderr(&out));
    assert_eq!(so.lines().count(), 1, "one summary line on stdout: {so}");
    assert!(
        so.starts_with("released vol #1: 3000 files") && so.ends_with(" s\n"),
        "{so}"
    );
    assert!(se.contains("release vol: 2048 entries scanned"), "{se}");
    assert!(!se.contains('\r'), "no terminal control in logs: {se:?}");
}

#[test]
fn on_a_terminal_progress_is_a_live_bar() {
    let env = Env::new();
    many_files(&env, 3000);
    // `script` gives the updater a pseudo-terminal, as an operator's shell would.
    let cmd = format!(
        "{UPDATE} --config {} release vol --from {}",
        env.config().display(),
        env.tree().display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("\x1b[2K"), "no redrawn line: {text:?}");
    assert!(text.contains("entries scanned"), "{text:?}");
    assert!(text.contains("released vol #1: 3000 files"), "{text:?}");
}

#[test]
fn release_ids_are_never_reused_after_gc() {
    let env = Env::with_config("[release]\ngrace = \"0s\"\n");
    for i in 1..=5 {
        env.write("f", format!("v{i}").as_bytes());
        env.release();
    }
    // Step back to #1: #1, #2, #3 are now the most recently current.
    for _ in 0..4 {
        env.update_ok(&["rollback", "vol"]);
    }
    let out = env.update_ok(&["gc", "vol", "--keep", "3"]);
    assert!(out.contains("removed releases #4, #5"), "{out}");
    env.write("f", b"v6");
    let out = env.release();
    assert!(out.starts_with("released vol #6"), "{out}");
}

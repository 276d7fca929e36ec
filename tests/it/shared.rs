//! The origin's shared store (volume format 2 on a filesystem): a volume
//! released from another's release without copying, the migration of a
//! format-1 volume, and gc across volumes under kill -9.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::common::*;
use unimirror::volume::VolumeDir;

/// Bytes the directory really takes on disk: each inode's blocks once,
/// however many names it has (hard links), directories included.
fn disk_usage(dir: &Path) -> u64 {
    let mut seen = HashSet::new();
    walk(dir)
        .iter()
        .chain([dir.to_path_buf()].iter())
        .filter_map(|p| fs::symlink_metadata(p).ok())
        .filter(|m| seen.insert((m.dev(), m.ino())))
        .map(|m| m.blocks() * 512)
        .sum()
}

fn staging(env: &Env) -> VolumeDir {
    VolumeDir::new(&env.origin(), "other")
}

/// Release `n` of `vol`: a 2 MiB file of its own, and one every release
/// shares.
fn release_big(env: &Env, n: u8) -> u64 {
    env.write("shared.bin", &blob(0, 1 << 20));
    env.write("own.bin", &blob(n, 2 << 20));
    env.write("index", format!("release {n}").as_bytes());
    env.release();
    env.current().unwrap()
}

#[test]
fn a_staging_volume_released_from_production_copies_no_byte_and_follows_a_refresh() {
    let env = Env::new();
    release_big(&env, 1);
    env.update_ok(&["tag", "vol", "current", "passed"]);
    let before = disk_usage(&env.origin());
    let out = env.update_ok(&["release", "other", "--from-release", "vol@passed"]);
    assert!(out.contains("released other #1"), "{out}");
    let after = disk_usage(&env.origin());
    // Metadata, a history line, directories: nothing near the 3 MiB of
    // content (the manifest is the same inode as production's).
    assert!(
        after - before < 64 << 10,
        "{} bytes more on the origin after a zero-copy release",
        after - before
    );
    let meta = staging(&env).meta(1).unwrap();
    assert_eq!((meta.new_objects, meta.new_bytes), (0, 0));
    assert!(
        meta.source.contains("release #1 of vol (vol@passed)"),
        "{}",
        meta.source
    );
    check_release(&staging(&env), 1);

    let d = Daemon::start(&env);
    assert_eq!(d.get("/other/own.bin").body, blob(1, 2 << 20));
    assert_eq!(d.get("/other/index").text(), "release 1");

    // A refresh: production moves on, the tag follows, staging is
    // released from the tag again.
    release_big(&env, 2);
    env.update_ok(&["tag", "vol", "current", "passed"]);
    env.update_ok(&["release", "other", "--from-release", "vol@passed"]);
    wait_for("the refreshed staging release served", 10, || {
        d.get("/other/index").text() == "release 2"
    });
    assert_eq!(d.get("/other/own.bin").body, blob(2, 2 << 20));
    let again = env.update_ok(&["release", "other", "--from-release", "vol@passed"]);
    assert!(again.contains("nothing released"), "{again}");

    // gc of production keeps every object staging's releases name.
    let grace = fs::read_to_string(env.config()).unwrap();
    fs::write(
        env.config(),
        format!("{grace}\n[release]\ngrace = \"0s\"\n"),
    )
    .unwrap();
    for n in 3..=6 {
        release_big(&env, n);
    }
    env.update_ok(&["untag", "vol", "passed"]);
    let out = env.update_ok(&["gc", "vol", "--keep", "3"]);
    assert!(out.contains("removed releases #1, #2, #3"), "{out}");
    for id in [1, 2] {
        check_release(&staging(&env), id);
    }
    assert_eq!(d.get("/other/own.bin").body, blob(2, 2 << 20));

    for (spec, why) in [
        ("vol@9", "not a retained published release"),
        ("vol@nosuchtag", "has no tag `nosuchtag`"),
        ("other@1", "names the volume being released"),
        ("vol", "expected <volume>@"),
    ] {
        let out = env.update(&["release", "other", "--from-release", spec]);
        assert!(!out.status.success(), "{spec}");
        assert!(stderr(&out).contains(why), "{spec}: {}", stderr(&out));
    }
}

#[test]
fn a_format_1_volume_migrates_by_links_while_a_daemon_serves_it_and_under_kill_9() {
    for fault in [
        None,
        Some("migrate-linked:kill@3"),
        Some("migrate-committed:kill"),
    ] {
        let env = Env::with_config("[release]\nvolume_format = 1\n");
        for n in 1..=3 {
            release_big(&env, n);
        }
        // As today's format 1 lays it out.
        let vol = env.vol();
        assert_eq!(
            fs::read_to_string(vol.format_file()).unwrap(),
            "unimirror-volume 1\n"
        );
        assert!(vol.own_objects_dir().is_dir());
        assert!(!env.origin().join("objects").exists());
        let d = Daemon::start(&env);
        assert_eq!(d.get("/vol/index").text(), "release 3");
        let before = disk_usage(&env.origin());

        if let Some(fault) = fault {
            let mut cmd = env.update_cmd(&["migrate", "vol"]);
            cmd.env("UNIMIRROR_FAULT", fault);
            assert!(killed(&cmd.status().unwrap()), "{fault}");
            // Killed at any step, every release is whole and served.
            for id in 1..=3 {
                check_release(&env.vol(), id);
            }
            assert_eq!(d.get("/vol/@2/own.bin").body, blob(2, 2 << 20), "{fault}");
        }
        let out = env.update_ok(&["migrate", "vol"]);
        assert!(
            out.contains("0 bytes copied") || out.contains("format 2 already"),
            "{out}"
        );
        let vol = env.vol();
        assert_eq!(
            fs::read_to_string(vol.format_file()).unwrap(),
            "unimirror-volume 2\n"
        );
        assert!(!env.origin().join("vol/objects").exists(), "{fault:?}");
        let after = disk_usage(&env.origin());
        assert!(
            after <= before + (64 << 10),
            "{fault:?}: {before} bytes before, {after} after: content was copied"
        );
        for id in 1..=3 {
            check_release(&vol, id);
        }
        // Files never asked for before are read from the shared store now.
        assert_eq!(d.get("/vol/@1/own.bin").body, blob(1, 2 << 20));
        assert_eq!(d.get("/vol/own.bin").body, blob(3, 2 << 20));
        // And the volume goes on: a release, a zero-copy one beside it (in
        // a volume the config now creates in format 2).
        let config = fs::read_to_string(env.config()).unwrap();
        fs::write(
            env.config(),
            config.replace("volume_format = 1", "volume_format = 2"),
        )
        .unwrap();
        release_big(&env, 4);
        check_release(&env.vol(), 4);
        env.update_ok(&["release", "other", "--from-release", "vol@current"]);
        check_release(&staging(&env), 1);
        let again = env.update_ok(&["migrate", "vol"]);
        assert!(again.contains("format 2 already"), "{again}");
    }
}

#[test]
fn gc_across_volumes_killed_at_every_step_never_removes_what_a_kept_release_needs() {
    // Every named point of gc's removals, and the third object removal.
    let points = [
        "gc-surveyed:kill",
        "gc-release-unlisted:kill",
        "gc-releases-removed:kill",
        "gc-object-removed:kill",
        "gc-object-removed:kill@3",
    ];
    for point in points {
        let env = Env::with_config("[release]\ngrace = \"0s\"\n");
        release_big(&env, 1);
        release_big(&env, 2);
        // Staging holds production's #2, which production's gc will drop.
        env.update_ok(&["release", "other", "--from-release", "vol@2"]);
        for n in 3..=6 {
            release_big(&env, n);
        }
        let mut cmd = env.update_cmd(&["gc", "vol", "--keep", "3"]);
        cmd.env("UNIMIRROR_FAULT", point);
        assert!(killed(&cmd.status().unwrap()), "{point}: gc was not killed");
        let check_all = || {
            for id in [4, 5, 6] {
                check_release(&env.vol(), id);
            }
            check_release(&staging(&env), 1);
        };
        check_all();
        let out = env.update_ok(&["gc", "vol", "--keep", "3"]);
        assert!(out.contains("kept releases #4, #5, #6"), "{point}: {out}");
        check_all();
        // What only the removed releases named is gone: #1's and #3's own
        // file; #2's stays, for staging.
        let vol = env.vol();
        for (n, kept) in [(1u8, false), (2, true), (3, false)] {
            let content = blob(n, 2 << 20);
            let digest = unimirror::volume::manifest::Sha256Digest::of(&content);
            assert_eq!(
                vol.object_file(&digest).exists(),
                kept,
                "{point}: release {n}'s file"
            );
        }
    }
}

#[test]
fn gc_waits_for_a_writer_of_another_volume_in_the_shared_store() {
    let env = Env::with_config("[release]\ngrace = \"0s\"\n");
    for n in 1..=4 {
        release_big(&env, n);
    }
    env.write("own.bin", &blob(9, 1 << 20));
    // A release of `other` held after it stored its objects, before its
    // pointer moved: no release names them yet.
    let mut held = env.update_cmd(&["release", "other", "--from", env.tree().to_str().unwrap()]);
    held.env("UNIMIRROR_FAULT", "manifest-written:stop");
    let child = held.stderr(std::process::Stdio::piped()).spawn().unwrap();
    wait_until_stopped(&child);
    let out = env.update(&["gc", "vol", "--keep", "3"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("shared store"), "{}", stderr(&out));
    signal(&child, libc::SIGCONT);
    assert!(child.wait_with_output().unwrap().status.success());
    env.update_ok(&["gc", "vol", "--keep", "3"]);
    check_release(&staging(&env), 1);
}

#[test]
fn a_writer_waits_for_a_gc_of_another_volume_and_then_publishes() {
    let env = Env::with_config("[release]\ngrace = \"0s\"\n");
    for n in 1..=4 {
        release_big(&env, n);
    }
    let mut gc = env.update_cmd(&["gc", "vol", "--keep", "3"]);
    gc.env("UNIMIRROR_FAULT", "gc-surveyed:stop");
    let gc = gc.stdout(std::process::Stdio::piped()).spawn().unwrap();
    wait_until_stopped(&gc);
    // Without --wait: a writer that did its work waits for the store
    // rather than fail at its end.
    let writer = env
        .update_cmd(&["release", "other", "--from", env.tree().to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = writer.id().to_string();
    wait_for("the writer blocked on the store's lock", 10, || {
        fs::read_to_string("/proc/locks")
            .unwrap()
            .lines()
            .any(|l| l.contains("->") && l.split_whitespace().nth(5) == Some(pid.as_str()))
    });
    signal(&gc, libc::SIGCONT);
    assert!(gc.wait_with_output().unwrap().status.success());
    let out = writer.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    check_release(&staging(&env), 1);
}

#[test]
fn a_format_1_volume_keeps_its_own_copy_of_what_the_shared_store_has() {
    let env = Env::new();
    env.write("f", &blob(7, 100_000));
    env.update_ok(&["release", "other", "--from", env.tree().to_str().unwrap()]);
    let config = fs::read_to_string(env.config()).unwrap();
    fs::write(
        env.config(),
        format!("{config}\n[release]\nvolume_format = 1\n"),
    )
    .unwrap();
    let out = env.release();
    // The shared store has the content, but a format-1 volume's gc does not
    // guard it there and older daemons do not look there: stored again.
    assert!(out.contains("1 new objects"), "{out}");
    let digest = unimirror::volume::manifest::Sha256Digest::of(&blob(7, 100_000));
    let vol = env.vol();
    assert_eq!(vol.layout(), unimirror::volume::Layout::Own);
    let [own, shared] = vol.object_files(&digest);
    assert!(own.starts_with(env.origin().join("vol/objects")), "{own:?}");
    assert!(own.is_file() && shared.is_file());
    check_release(&vol, 1);
}

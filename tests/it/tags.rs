//! Tags (promotion): `unimirror-update tag`/`untag`, `/<prefix>/@<tag>/`
//! served by the real daemon while the tag moves, and gc keeping what tags
//! name.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::*;

/// Makes release `n` of the env's tree: `index` names `file-<n>`, which
/// holds `content of file-<n>`; the previous release's file is gone, so a
/// stale index answered from one release and its file from the next would
/// show as a 404 or a wrong body.
fn release_numbered(env: &Env, n: u32) -> u64 {
    let _ = fs::remove_file(env.tree().join(format!("file-{}", n - 1)));
    env.write("index", format!("file-{n}").as_bytes());
    env.write(
        &format!("file-{n}"),
        format!("content of file-{n}").as_bytes(),
    );
    env.release();
    env.current().unwrap()
}

/// One client's pass: the index under the tag, then the file it names,
/// both under the tag. Returns the release that answered the index, or
/// why the pair was mixed.
fn fetch_pair(d: &Daemon, tag: &str) -> Result<u64, String> {
    let index = d.get(&format!("/vol/@{tag}/index"));
    if index.status != 200 {
        return Err(format!("index: {}", index.status));
    }
    let name = index.text();
    let id: u64 = index
        .header("x-unimirror-release")
        .unwrap()
        .parse()
        .unwrap();
    let file = d.get(&format!("/vol/@{tag}/{name}"));
    if file.status != 200 || file.text() != format!("content of {name}") {
        return Err(format!(
            "the index of #{id} named {name}, which answered {} {:?}",
            file.status,
            file.text()
        ));
    }
    Ok(id)
}

#[test]
fn a_tag_moved_twenty_times_under_four_clients_never_mixes_releases() {
    let env = Env::new();
    let first = release_numbered(&env, 1);
    env.update_ok(&["tag", "vol", &first.to_string(), "ci"]);
    let d = Daemon::start(&env);
    wait_for("the tag served", 10, || {
        d.get("/vol/@ci/index").status == 200
    });

    let stop = AtomicBool::new(false);
    let seen = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let mut seen = std::collections::BTreeSet::new();
                    let mut mixed = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        match fetch_pair(&d, "ci") {
                            Ok(id) => {
                                seen.insert(id);
                            }
                            Err(e) => mixed.push(e),
                        }
                    }
                    (seen, mixed)
                })
            })
            .collect();
        for n in 2..=21 {
            // A release does not move the tag; the tag command does.
            let id = release_numbered(&env, n);
            assert_eq!(
                fetch_pair(&d, "ci").unwrap(),
                id - 1,
                "the tag moved with the release"
            );
            let out = env.update_ok(&["tag", "vol", "current", "ci"]);
            assert!(out.contains(&format!("to #{id}")), "{out}");
            wait_for("the tag's move served", 10, || {
                d.get("/vol/@ci/index").header("x-unimirror-release") == Some(&id.to_string())
            });
        }
        stop.store(true, Ordering::Relaxed);
        let mut seen = std::collections::BTreeSet::new();
        for c in clients {
            let (ids, mixed) = c.join().unwrap();
            assert!(mixed.is_empty(), "mixed responses: {mixed:?}");
            seen.extend(ids);
        }
        seen
    });
    assert!(seen.len() > 2, "the clients saw the tag move: {seen:?}");

    // Under a tag, answers follow its moves: a short Cache-Control; under
    // an id, forever.
    let tagged = d.get("/vol/@ci/index");
    assert!(
        !tagged
            .header("cache-control")
            .unwrap()
            .contains("immutable"),
        "{:?}",
        tagged.header("cache-control")
    );
    let pinned = d.get("/vol/@21/index");
    assert!(
        pinned
            .header("cache-control")
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(d.get("/vol/@nosuchtag/index").status, 404);
}

#[test]
fn undo_untag_status_and_bad_names() {
    let env = Env::new();
    // A directory whose name reads like a tag is still a directory.
    env.write("@scope/pkg", b"scoped");
    for n in 1..=3 {
        release_numbered(&env, n);
    }
    env.update_ok(&["tag", "vol", "1", "passed"]);
    env.update_ok(&["tag", "vol", "3", "passed"]);
    let out = env.update_ok(&["tag", "vol", "passed", "--undo"]);
    assert!(out.contains("from #3 to #1"), "{out}");
    assert_eq!(env.vol().tag("passed").unwrap().unwrap().release, Some(1));

    // Untag, and undo the untag.
    env.update_ok(&["untag", "vol", "passed"]);
    let d = Daemon::start(&env);
    assert_eq!(d.get("/vol/@passed/index").status, 404);
    assert_eq!(d.get("/vol/@scope/pkg").text(), "scoped");
    env.update_ok(&["tag", "vol", "passed", "--undo"]);
    wait_for("the restored tag served", 10, || {
        d.get("/vol/@passed/index").header("x-unimirror-release") == Some("1")
    });
    // Undos walk back: the untag's undo, the untag, the 3→1 undo… until
    // nothing is left to undo.
    let tag = env.vol().tag("passed").unwrap().unwrap();
    let actions: Vec<String> = tag
        .moves
        .iter()
        .map(|m| format!("{:?}", m.action))
        .collect();
    assert_eq!(actions, ["Tag", "Tag", "Undo", "Untag", "Undo"]);
    assert!(
        tag.moves
            .iter()
            .all(|m| !m.user.is_empty() && m.time_unix > 0)
    );
    env.update_ok(&["tag", "vol", "passed", "--undo"]);
    assert_eq!(env.vol().tag("passed").unwrap().unwrap().release, None);

    env.update_ok(&["tag", "vol", "2", "passed"]);
    let text = env.update_ok(&["status", "vol"]);
    assert!(text.contains("@passed -> #2"), "{text}");
    assert!(text.contains("#2 ") && text.contains(" @passed"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&env.update_ok(&["status", "vol", "--json"])).unwrap();
    assert_eq!(json[0]["tags"][0]["name"], "passed");
    assert_eq!(json[0]["tags"][0]["release"], 2);

    for (bad, why) in [
        ("42", "all digits"),
        ("a/b", "only letters"),
        ("@x", "only letters"),
        (".x", "starts with"),
    ] {
        let out = env.update(&["tag", "vol", "1", bad]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(why), "{bad}: {}", stderr(&out));
    }
    let out = env.update(&["tag", "vol", "99", "passed"]);
    assert!(
        stderr(&out).contains("release #99 of `vol` is not a retained published release"),
        "{}",
        stderr(&out)
    );
    let out = env.update(&["untag", "vol", "never"]);
    assert!(
        stderr(&out).contains("has no tag `never`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.vol().tag("passed").unwrap().unwrap().release, Some(2));
}

#[test]
fn gc_keeps_tagged_releases_and_those_a_tag_left_within_the_grace_period() {
    let env = Env::with_config("[release]\ngrace = \"1h\"\n");
    for n in 1..=6 {
        release_numbered(&env, n);
    }
    // The releases were made two hours ago, as far as gc can tell: only
    // the tags' moves, made now, are within the grace period.
    let history = env.origin().join("vol/history.jsonl");
    let aged: String = fs::read_to_string(&history)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["time_unix"] = (v["time_unix"].as_u64().unwrap() - 7200).into();
            format!("{v}\n")
        })
        .collect();
    fs::write(&history, aged).unwrap();
    env.update_ok(&["tag", "vol", "1", "old"]);
    env.update_ok(&["tag", "vol", "2", "moving"]);
    env.update_ok(&["tag", "vol", "6", "moving"]);
    let dry = env.update_ok(&["gc", "vol", "--keep", "3", "--dry-run"]);
    assert!(dry.contains("#1      keep: tagged old"), "{dry}");
    assert!(
        dry.contains("#2      keep: a tag moved onto or off it"),
        "{dry}"
    );
    assert!(dry.contains("#3      remove: not among"), "{dry}");

    // Without a grace period, only the tag itself keeps a release.
    let config = fs::read_to_string(env.config()).unwrap();
    fs::write(
        env.config(),
        config.replace("grace = \"1h\"", "grace = \"0s\""),
    )
    .unwrap();
    let out = env.update_ok(&["gc", "vol", "--keep", "3"]);
    assert!(
        out.contains("kept releases #1, #4, #5, #6; removed releases #2, #3"),
        "{out}"
    );
    check_release(&env.vol(), 1);
    let d = Daemon::start(&env);
    let r = d.get("/vol/@old/file-1");
    assert_eq!((r.status, r.text().as_str()), (200, "content of file-1"));
}

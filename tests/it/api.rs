//! The status API (`/-/api/v1/…`) against its schema in `docs/api.md`, and
//! the documented examples against a real run.
//!
//! `UNIMIRROR_WRITE_API_EXAMPLES=1 cargo test --test it api::` rewrites the
//! examples in `docs/api.md` from this run (then review the diff).

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::*;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md");
/// What the test's private directory is shown as in the examples.
const SHOWN_ROOT: &str = "/srv/unimirror";
/// Fields that differ from run to run: compared by presence only.
const VOLATILE: &[&str] = &[
    "created",
    "created_unix",
    "age_seconds",
    "time",
    "time_unix",
    "duration_seconds",
    "user",
    "host",
    // What the daemon served depends on how often the test polled it.
    "served",
    "last_hit",
    "last_hit_unix",
];

/// A wheel volume synced twice (the first release tagged `passed-ci`) and
/// a plain tree, served; returns each documented request's answer, with
/// the test's directory shown as [`SHOWN_ROOT`].
fn real_answers() -> Vec<(&'static str, u16, Value)> {
    let env = wheel_env();
    env.update_ok(&["sync", "wheel"]);
    env.update_ok(&["tag", "wheel", "current", "passed-ci"]);
    platform(&env, "centos-9-x86_64");
    env.update_ok(&["sync", "wheel"]);
    let d = Daemon::start(&env);
    wait_for("release #2 served", 10, || {
        d.get("/wheel/centos-9-x86_64/").status == 200
    });
    wait_for("the tag served", 10, || {
        d.get("/wheel/@passed-ci/").status == 200
    });
    // One file cached, for the cache listing.
    let wheel = "/wheel/centos-9-x86_64/hello-unimirror/hello_unimirror-1.0-py3-none-any.whl";
    assert_eq!(d.get(wheel).status, 200);
    // Until its disk copy is written too (a fill's bytes are in the
    // memory tier first): then each entry has its last hit.
    wait_for("the wheel cached on disk", 10, || {
        let list: Value =
            serde_json::from_str(&d.get("/-/api/v1/volumes/wheel/cache").text()).unwrap();
        let entries = list["entries"].as_array().unwrap();
        entries.iter().any(|e| e["path"] == wheel)
            && entries.iter().all(|e| e["last_hit_unix"].is_u64())
    });
    let root = env.path().display().to_string();
    [
        ("volumes", "/-/api/v1/volumes"),
        ("releases", "/-/api/v1/volumes/wheel/releases"),
        ("release", "/-/api/v1/volumes/wheel/releases/passed-ci"),
        ("cache", "/-/api/v1/volumes/wheel/cache"),
        ("error", "/-/api/v1/volumes/docs/releases"),
    ]
    .into_iter()
    .map(|(name, path)| {
        let r = d.get(path);
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        let text = r.text().replace(&root, SHOWN_ROOT);
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}\n{text}"));
        (name, r.status, value)
    })
    .collect()
}

/// Adds platform `name` to the build output, with the demo's wheel.
fn platform(env: &Env, name: &str) {
    let wheel = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/demo/pypi/packages/hello_unimirror-1.0-py3-none-any.whl"
    );
    let dir = env.path().join("build").join(name);
    fs::create_dir_all(&dir).unwrap();
    fs::copy(wheel, dir.join("hello_unimirror-1.0-py3-none-any.whl")).unwrap();
}

/// A wheel volume fed from `<env>/build` (one platform so far), and a
/// plain tree.
fn wheel_env() -> Env {
    let env = Env::new();
    platform(&env, "ubuntu-24.04-x86_64");
    fs::write(
        env.config(),
        "origin = \"origin\"\nstaging = \"staging\"\n\n\
         [volumes.wheel]\nprefix = \"/wheel\"\n\n\
         [volumes.wheel.upstream]\ntype = \"wheel\"\ndirectory = \"build\"\n\n\
         [volumes.docs]\nprefix = \"/docs\"\ntree = \"tree\"\n",
    )
    .unwrap();
    env
}

/// The fenced JSON block after `<!-- {marker} -->` in `doc`: (start, end)
/// of its content.
fn block(doc: &str, marker: &str) -> (usize, usize) {
    let tag = format!("<!-- {marker} -->\n```json\n");
    let start = doc
        .find(&tag)
        .unwrap_or_else(|| panic!("docs/api.md has no {tag:?}"))
        + tag.len();
    let end = start + doc[start..].find("\n```").expect("a closed block") + 1;
    (start, end)
}

/// `value` with every volatile field's value replaced by its type.
fn normalized(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match VOLATILE.contains(&k.as_str()) {
                        true => Value::String(format!("<{}>", kind(v))),
                        false => normalized(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        v => v.clone(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Validates `instance` against definition `def` of the schema, with
/// Python's `jsonschema` (Draft 2020-12); the validator's message if not.
fn validate(schema: &str, def: &str, instance: &Value) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let (s, i) = (
        dir.path().join("schema.json"),
        dir.path().join("instance.json"),
    );
    fs::write(&s, schema).unwrap();
    fs::write(&i, instance.to_string()).unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import json, sys, jsonschema\n\
             schema = json.load(open(sys.argv[1]))\n\
             schema = dict(schema, **{'$ref': '#/$defs/' + sys.argv[3]})\n\
             jsonschema.Draft202012Validator.check_schema(schema)\n\
             try:\n    jsonschema.Draft202012Validator(schema).validate(json.load(open(sys.argv[2])))\n\
             except jsonschema.ValidationError as e:\n    sys.exit(str(e))\n",
        )
        .args([s.as_os_str(), i.as_os_str(), Path::new(def).as_os_str()])
        .output()
        .unwrap();
    match out.status.success() {
        true => Ok(()),
        false => Err(stderr(&out)),
    }
}

#[test]
fn every_answer_follows_the_documented_schema_and_the_examples_come_from_a_real_run() {
    let answers = real_answers();
    let mut doc = fs::read_to_string(DOC).unwrap();
    if std::env::var_os("UNIMIRROR_WRITE_API_EXAMPLES").is_some() {
        // From the last block up, so that offsets stay valid.
        for (name, _, value) in answers.iter().rev() {
            let (start, end) = block(&doc, &format!("example: {name}"));
            let text = serde_json::to_string_pretty(value).unwrap() + "\n";
            doc.replace_range(start..end, &text);
        }
        fs::write(DOC, &doc).unwrap();
    }
    let (start, end) = block(&doc, "schema");
    let schema = &doc[start..end];
    for (name, status, value) in &answers {
        let want = if *name == "error" { 404 } else { 200 };
        assert_eq!(*status, want, "{name}: {value}");
        if let Err(e) = validate(schema, name, value) {
            panic!("the {name} answer breaks the schema: {e}\n{value:#}");
        }
        let (start, end) = block(&doc, &format!("example: {name}"));
        let example: Value = serde_json::from_str(&doc[start..end])
            .unwrap_or_else(|e| panic!("the {name} example is not JSON: {e}"));
        validate(schema, name, &example)
            .unwrap_or_else(|e| panic!("the documented {name} example breaks the schema: {e}"));
        assert_eq!(
            normalized(&example),
            normalized(value),
            "docs/api.md's {name} example differs from a real run's (other than in times, ages, user and host); \
             rerun with UNIMIRROR_WRITE_API_EXAMPLES=1 and review"
        );
    }
    // The schema is strict: an answer with a field it does not document,
    // or without one it requires, is refused.
    let (_, _, volumes) = &answers[0];
    let mut extra = volumes.clone();
    extra["volumes"][0]["surprise"] = true.into();
    assert!(validate(schema, "volumes", &extra).is_err());
    let mut missing = volumes.clone();
    missing["volumes"][0]
        .as_object_mut()
        .unwrap()
        .remove("current");
    assert!(validate(schema, "volumes", &missing).is_err());
}

#[test]
fn the_volumes_answer_says_what_is_served_and_the_release_routes_read_the_origin() {
    let answers = real_answers();
    let (_, _, volumes) = &answers[0];
    let by_name = |name: &str| {
        volumes["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap()
            .clone()
    };
    let wheel = by_name("wheel");
    assert_eq!(wheel["name"], "wheel");
    assert_eq!(wheel["current"]["id"], 2);
    assert_eq!(wheel["tags"]["passed-ci"], 1);
    assert_eq!(wheel["upstream"]["type"], "wheel");
    assert_eq!(wheel["last_sync"]["outcome"], "released");
    assert_eq!(wheel["last_sync"]["release"], 2);
    assert_eq!(by_name("docs")["kind"], "tree");
    let (_, _, releases) = &answers[1];
    let ids: Vec<u64> = releases["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(releases["history"].as_array().unwrap().len(), 2);
    let (_, _, one) = &answers[2];
    assert_eq!(one["release"]["id"], 1);
    assert_eq!(one["release"]["tags"][0], "passed-ci");
    assert_eq!(one["tag_moves"][0]["tag"], "passed-ci");
}

#[test]
fn a_failed_sync_is_recorded_on_the_origin_and_shown_by_the_api() {
    let env = wheel_env();
    env.update_ok(&["sync", "wheel"]);
    fs::remove_dir_all(env.path().join("build")).unwrap();
    let out = env.update(&["sync", "wheel"]);
    assert!(!out.status.success());
    let record: Value =
        serde_json::from_slice(&fs::read(env.origin().join("wheel/last-sync.json")).unwrap())
            .unwrap();
    assert_eq!(record["outcome"], "failed");
    let status = env.update_ok(&["status", "wheel"]);
    assert!(status.contains("  upstream: wheel "), "{status}");
    assert!(status.contains("  last sync: failed at "), "{status}");
    assert_eq!(record["release"], 1, "the release current after it");
    let error = record["error"].as_str().unwrap();
    assert!(stderr(&out).contains(error), "{error}");
    let d = Daemon::start(&env);
    let v: Value = serde_json::from_str(&d.get("/-/api/v1/volumes").text()).unwrap();
    let wheel = v["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "wheel")
        .unwrap()
        .clone();
    assert_eq!(wheel["last_sync"]["outcome"], "failed");
    let page = d.get("/").text();
    assert!(
        page.contains("failed"),
        "the / page shows the same record: {page}"
    );
    assert_eq!(d.get("/-/api/v1/volumes/wheel/releases/7").status, 404);
    assert_eq!(d.get("/-/api/v1/volumes/nope/releases").status, 404);
    assert_eq!(d.get("/-/api/v1/nothing").status, 404);
}

#[test]
fn stats_and_the_home_page_show_each_volumes_hit_ratio() {
    let (_env, d) = served();
    let vol = || -> Value {
        let v: Value = serde_json::from_str(&d.get("/-/api/v1/volumes").text()).unwrap();
        let vols = v["volumes"].as_array().unwrap().clone();
        vols.into_iter().find(|v| v["name"] == "vol").unwrap()
    };
    // Until one answer comes from a cache tier (the first fills it).
    wait_for("a hit", 10, || {
        d.get("/vol/a.whl");
        vol()["served"]["hits"].as_u64().unwrap() > 0
    });
    let vol = vol();
    let served = &vol["served"];
    let (requests, hits) = (
        served["object_requests"].as_u64().unwrap(),
        served["hits"].as_u64().unwrap(),
    );
    assert!(hits > 0 && requests > hits, "{served}");
    let ratio = served["hit_ratio"].as_f64().unwrap();
    assert!((ratio - hits as f64 / requests as f64).abs() < 1e-9);

    let out = Command::new(DAEMON)
        .args(["stats", "--url", &format!("http://{}", d.addr)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let line = table.lines().find(|l| l.starts_with("vol ")).unwrap();
    let shown = format!("{:.1}%", ratio * 100.0);
    assert!(line.contains(&shown) && line.contains(" #1 "), "{table}");

    let page = d.get("/").text();
    assert!(
        page.contains(&format!("{shown} of {requests}")),
        "the / page shows the same ratio: {page}"
    );
    // A daemon that is not there is a clear error.
    let out = Command::new(DAEMON)
        .args(["stats", "--url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("http://127.0.0.1:9/-/api/v1/volumes"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn cache_ls_lists_cached_paths_with_tier_size_and_last_hit_live_and_offline() {
    let opts = DaemonOpts {
        cache: "memory_size = \"0\"\n".into(),
        ..Default::default()
    };
    let (env, mut d) = served_with(&opts);
    let url = format!("http://{}", d.addr);
    let ls = |args: &[&str]| {
        Command::new(DAEMON)
            .args(["cache", "ls", "--url", &url])
            .args(args)
            .output()
            .unwrap()
    };
    // Nothing asked for yet: nothing listed.
    let out = ls(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("vol (release #1): 0 paths cached"),
        "{}",
        stdout(&out)
    );

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(d.get("/vol/packages/pkg-1.0.whl").body, b"0123456789");
    let list =
        || -> Value { serde_json::from_str(&d.get("/-/api/v1/volumes/vol/cache").text()).unwrap() };
    wait_for("the file cached", 10, || list()["paths"] == 1);
    let list = list();
    let entry = &list["entries"][0];
    assert_eq!(entry["path"], "/vol/packages/pkg-1.0.whl");
    assert_eq!(
        (entry["size"].as_u64(), entry["tier"].as_str()),
        (Some(10), Some("disk"))
    );
    let hit = entry["last_hit_unix"].as_u64().unwrap();
    assert!(hit >= before && hit <= before + 60, "{entry}");

    let out = ls(&["--volume", "vol"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.ends_with("/vol/packages/pkg-1.0.whl"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains(" disk ") && line.contains("10 B"), "{line}");
    // Paths alone: what `unimirror-update materialize --paths` takes.
    let out = ls(&["--volume", "vol", "--paths"]);
    assert_eq!(stdout(&out), "/vol/packages/pkg-1.0.whl\n");

    // Not a volume: the API's reason. Not a volume name: said before
    // anything is asked.
    let out = ls(&["--volume", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no such volume"), "{}", stderr(&out));
    let out = ls(&["--volume", "vol/../x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("volume name `vol/../x` must be"),
        "{}",
        stderr(&out)
    );

    // Offline, with the daemon stopped: its cache directory and the
    // origin say the same, with when the file was stored.
    signal(&d.child, libc::SIGTERM);
    assert!(d.child.wait().unwrap().success());
    let serve_config = env.path().join("serve.toml");
    let offline = |args: &[&str]| {
        Command::new(DAEMON)
            .args(["cache", "ls", "--offline", "--config"])
            .arg(&serve_config)
            .args(args)
            .output()
            .unwrap()
    };
    let out = offline(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("vol (release #1, offline): 1 paths cached, 10 B"),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.ends_with("/vol/packages/pkg-1.0.whl"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains(" disk ") && line.contains("10 B"), "{line}");
    let out = offline(&["--volume", "vol", "--paths"]);
    assert_eq!(stdout(&out), "/vol/packages/pkg-1.0.whl\n");
    let out = offline(&["--volume", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no volume `nope`"),
        "{}",
        stderr(&out)
    );
}

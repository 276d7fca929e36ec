//! The operator's kit against the real thing: the alert rules pass
//! `promtool check rules` and their unit tests, every metric they query is
//! in a live daemon's `/metrics` or the updater's textfile, and both pass
//! `promtool check metrics`.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/contrib/prometheus/unimirror-alerts.yml"
);

fn promtool(args: &[&str], stdin: Option<&str>, dir: &Path) -> std::process::Output {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; test.sh installs it)");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// The metric names (`unimirror_…`) a text mentions.
fn names(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("unimirror_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        found.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    found
}

#[test]
fn alert_rules_pass_promtool_and_query_only_metrics_that_exist() {
    let dir = Path::new(RULES).parent().unwrap();
    let out = promtool(&["check", "rules", "unimirror-alerts.yml"], None, dir);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = promtool(&["test", "rules", "unimirror-alerts.test.yml"], None, dir);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // A daemon serving a synced volume, and the updater's textfile.
    let env = Env::new();
    let build = env.path().join("build/ubuntu-24.04-x86_64");
    fs::create_dir_all(&build).unwrap();
    fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/demo/pypi/packages/hello_unimirror-1.0-py3-none-any.whl"
        ),
        build.join("hello_unimirror-1.0-py3-none-any.whl"),
    )
    .unwrap();
    let config = fs::read_to_string(env.config()).unwrap();
    fs::write(
        env.config(),
        format!("{config}\n[volumes.vol.upstream]\ntype = \"wheel\"\ndirectory = \"build\"\n\n[sync]\nmetrics_dir = \"metrics\"\n"),
    )
    .unwrap();
    env.update_ok(&["sync", "vol"]);
    let textfile =
        fs::read_to_string(env.path().join("metrics/unimirror_update_vol.prom")).unwrap();
    let d = Daemon::start(&env);
    assert_eq!(d.get("/readyz").status, 200);
    let live = d.get("/metrics").text();

    let exposed: BTreeSet<String> = names(&live).union(&names(&textfile)).cloned().collect();
    let queried = names(&fs::read_to_string(RULES).unwrap());
    assert!(queried.len() >= 7, "{queried:?}");
    for name in &queried {
        assert!(
            exposed.contains(name),
            "the rules query {name}, which neither /metrics nor the textfile has"
        );
    }

    for (what, text) in [("/metrics", &live), ("the textfile", &textfile)] {
        let out = promtool(&["check", "metrics"], Some(text), dir);
        assert!(
            out.status.success(),
            "promtool check metrics on {what}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
}

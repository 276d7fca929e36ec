//! The operator's kit against the real thing: the alert rules pass
//! `promtool check rules` and their unit tests, every metric they and the
//! Grafana dashboard query is in a live daemon's `/metrics` or the
//! updater's textfile, and both pass `promtool check metrics`.

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
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/contrib/grafana/unimirror.json"
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

/// Every PromQL expression in a Grafana dashboard's panels.
fn exprs(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => found.push(e.clone()),
                    _ => exprs(v, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, found)),
        _ => {}
    }
}

/// The dashboard has what the issue asks of it: the two variables, the
/// four rows, and queries in each.
fn dashboard() -> Vec<String> {
    let text = fs::read_to_string(DASHBOARD).unwrap();
    let board: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let variables: Vec<&str> = board["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for wanted in ["instance", "volume"] {
        assert!(variables.contains(&wanted), "{variables:?}");
    }
    let panels = board["panels"].as_array().unwrap();
    let rows: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        rows,
        ["Overview", "Origin and upstream", "Cache", "Releases"]
    );
    // Each row holds panels with queries.
    let mut row = 0;
    let mut queried = vec![0; rows.len()];
    for p in panels {
        if p["type"] == "row" {
            row += 1;
        } else {
            let mut found = Vec::new();
            exprs(p, &mut found);
            queried[row - 1] += found.len();
        }
    }
    assert!(queried.iter().all(|&n| n > 0), "{queried:?}");
    let mut all = Vec::new();
    exprs(&board, &mut all);
    all
}

#[test]
fn alert_rules_and_dashboard_pass_promtool_and_query_only_metrics_that_exist() {
    let dir = Path::new(RULES).parent().unwrap();
    let out = promtool(&["check", "rules", "unimirror-alerts.yml"], None, dir);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = promtool(&["test", "rules", "unimirror-alerts.test.yml"], None, dir);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // A daemon serving a synced volume and a proxy (its upstream never
    // asked here), and the updater's textfile.
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
        format!("{config}\n[volumes.vol.upstream]\ntype = \"wheel\"\ndirectory = \"build\"\n\n[sync]\nmetrics_dir = \"metrics\"\n\n[volumes.proxied]\nproxy = {{ type = \"pypi\", url = \"http://127.0.0.1:9/simple/\" }}\n"),
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
    // The dashboard's queries parse: promtool checks them as recording
    // rules, with Grafana's variables put in as Grafana would.
    let queries = dashboard();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        let q = q
            .replace("$__rate_interval", "5m")
            .replace("$__range", "6h")
            .replace("$instance", ".*")
            .replace("$volume", ".*");
        let quoted = serde_json::to_string(&q).unwrap();
        rules += &format!("      - record: dashboard_{i}\n        expr: {quoted}\n");
    }
    let scratch = tempfile::tempdir().unwrap();
    fs::write(scratch.path().join("dashboard.yml"), rules).unwrap();
    let out = promtool(&["check", "rules", "dashboard.yml"], None, scratch.path());
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    let panels = names(&queries.join("\n"));
    assert!(panels.len() >= 25, "{panels:?}");
    for name in &panels {
        assert!(
            exposed.contains(name),
            "the dashboard queries {name}, which neither /metrics nor the textfile has"
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

/// Runs Debian's chromium headless on `args` (after the flags that keep
/// it off the network and out of the way), with a fresh profile.
fn chromium(args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let profile_flag = format!("--user-data-dir={}", profile.path().display());
    // A browser that hangs must not hold CI.
    Command::new("timeout")
        .args([
            "120",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            &profile_flag,
        ])
        .args(args)
        .output()
        .expect("chromium (Debian's chromium package; test.sh installs it)")
}

/// The status page in a real browser: chromium renders `/` under the
/// page's own security policy without a violation, takes a screenshot,
/// and the DOM it built holds what the page promises.
#[test]
fn the_status_page_renders_in_headless_chromium_within_its_policy() {
    let env = Env::new();
    env.write("packages/pkg-1.0.whl", b"0123456789");
    env.write("simple/pkg/index.html", b"<html></html>");
    // A page that breaks the policy volumes' HTML is served under: the
    // browser must be seen to report it, or its silence proves nothing.
    env.write(
        "docs/styled.html",
        b"<html><body><p style=\"color:red\">x</p><script>1</script></body></html>",
    );
    env.release();
    env.update_ok(&["tag", "vol", "current", "stable"]);
    let d = Daemon::start(&env);
    wait_for("the tag served", 10, || {
        d.get("/vol/@stable/packages/pkg-1.0.whl").status == 200
    });
    // A miss, then hits: the ratio and the cache have something to show.
    wait_for("a memory hit", 10, || {
        d.get("/vol/packages/pkg-1.0.whl").header("x-cache") == Some("hit-memory")
    });
    // And its disk copy written (after the fill answered), so the page
    // shows it in both tiers.
    wait_for("the disk copy", 10, || {
        d.metric("unimirror_cache_entries", &[("tier", "disk")]) >= 1.0
    });
    let home = d.get("/");
    let policy = home.header("content-security-policy").unwrap().to_string();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert_eq!(home.header("x-content-type-options"), Some("nosniff"));
    let url = format!("http://{}/", d.addr);

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = fs::remove_file(&shot);
    let out = chromium(&[
        "--window-size=1280,1024",
        &format!("--screenshot={}", shot.display()),
        &url,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let png = fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // IHDR: width and height, big-endian, at bytes 16 and 20.
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(width, 1280);

    let out = chromium(&["--dump-dom", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        !["Content Security Policy", "violates", "Refused to"]
            .iter()
            .any(|w| log.contains(w)),
        "the page breaks its own policy: {log}"
    );
    let dom = stdout(&out);
    let text = dom.replace("&nbsp;", " ");
    for wanted in [
        format!("unimirror on {}", d.addr),
        "Volumes".into(),
        "#1 (".into(),
        "@stable #1".into(),
        "hit ratio since start".into(),
        "% of ".into(),
        "Cache".into(),
        "memory".into(),
        "disk".into(),
        "of budget".into(),
        "Using this mirror".into(),
        format!("index-url = http://{}/vol/simple/", d.addr),
    ] {
        assert!(
            text.contains(&wanted),
            "the rendered page lacks {wanted:?}:\n{dom}"
        );
    }
    // The hit file is in both tiers, counted as it is now.
    for tier in ["memory", "disk"] {
        let row = format!("<td>{tier}</td><td class=\"n\">10 B</td>");
        assert!(dom.contains(&row), "no {row:?} in {dom}");
    }
    // The bars: the hit ratio's, and one per tier with a budget.
    assert!(dom.matches("<svg").count() >= 3, "{dom}");
    assert!(!dom.contains("<script"), "{dom}");

    // Last (it caches a page too): a page that breaks its policy is seen.
    let out = chromium(&[
        "--dump-dom",
        &format!("http://{}/vol/docs/styled.html", d.addr),
    ]);
    assert!(
        stderr(&out).contains("Content Security Policy"),
        "chromium reported no violation on a page that breaks its policy: {}",
        stderr(&out)
    );
}

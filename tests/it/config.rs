//! `unimirror check-config` and config errors as operators see them.

use std::fs;
use std::process::Command;

use crate::common::*;

fn check(path: &std::path::Path) -> std::process::Output {
    Command::new(DAEMON)
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn bundled_configs_are_valid_and_check_config_checks_what_sync_and_serve_need() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = check(&root.join("config/demo.toml"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(": OK"), "{}", stdout(&out));

    // The example names key files, a requirements file and a build output
    // that this machine does not have: each is reported, by its key.
    let out = check(&root.join("config/unimirror.toml"));
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    for key in [
        "volumes.centos.upstream.key: ",
        "volumes.pypi.upstream.requirements: ",
        "volumes.ubuntu.upstream.keyring: ",
        "volumes.wheel.upstream.directory: /srv/wheel-builds/output: No such file",
    ] {
        assert!(stderr(&out).contains(key), "{key}: {}", stderr(&out));
    }
    assert!(!stdout(&out).contains("OK"));

    // With them in place it passes, and says where each volume syncs from.
    let dir = tempfile::tempdir().unwrap();
    let text = fs::read_to_string(root.join("config/unimirror.toml"))
        .unwrap()
        .replace("/srv/wheel-builds/output", "wheels");
    for made in [
        "keys/RPM-GPG-KEY-centosofficial",
        "keys/ubuntu-archive-keyring.gpg",
        "constraints/ci-constraints.txt",
    ] {
        fs::create_dir_all(dir.path().join(made).parent().unwrap()).unwrap();
        fs::write(dir.path().join(made), "").unwrap();
    }
    fs::create_dir(dir.path().join("wheels")).unwrap();
    let file = dir.path().join("unimirror.toml");
    fs::write(&file, &text).unwrap();
    let out = check(&file);
    assert!(out.status.success(), "{}", stderr(&out));
    for v in [
        "/pypi",
        "/wheel",
        "/centos",
        "/ubuntu",
        "upstream apt https://archive.ubuntu.com/ubuntu",
    ] {
        assert!(stdout(&out).contains(v), "{v} missing: {}", stdout(&out));
    }
    // A plain-HTTP upstream needs allow_http.
    fs::write(
        &file,
        text.replace("https://archive.ubuntu.com", "http://archive.ubuntu.com"),
    )
    .unwrap();
    let out = check(&file);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "volumes.ubuntu.upstream.url: http://archive.ubuntu.com/ubuntu is plain HTTP"
        ) && stderr(&out).contains("allow_http = true"),
        "{}",
        stderr(&out)
    );
}

/// systemd kills the daemon `TimeoutStopSec` after SIGTERM: that must
/// leave it the whole drain (the delay, the requests in flight, then the
/// cache's writes, each of the last two up to `drain_timeout`), as the
/// example config and the defaults set them.
#[test]
fn the_systemd_unit_waits_out_the_whole_drain() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = fs::read_to_string(root.join("systemd/unimirror.service")).unwrap();
    let stop = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .expect("TimeoutStopSec in the unit");
    let stop = humantime::parse_duration(stop.trim()).unwrap();
    let example = unimirror::config::Config::load(&root.join("config/unimirror.toml")).unwrap();
    let defaults = unimirror::config::DaemonSettings::default();
    for d in [&example.daemon, &defaults] {
        assert!(
            stop > d.drain_delay + 2 * d.drain_timeout,
            "TimeoutStopSec={stop:?} leaves no room for drain_delay {:?} + 2 × drain_timeout {:?}",
            d.drain_delay,
            d.drain_timeout
        );
    }
}

#[test]
fn bad_configs_name_file_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    for (text, expect) in [
        (
            "origin = \"/o\"\nstaging = \"/s\"\n[volumes.pypi]\nprefx = \"/p\"\n",
            "bad.toml: volumes.pypi.prefx: unknown field `prefx`",
        ),
        (
            // A typo inside an upstream table: its own dotted key and line.
            "origin = \"/o\"\nstaging = \"/s\"\n[volumes.pypi]\n\n[volumes.pypi.upstream]\ntype = \"pypi\"\nurl = \"https://pypi.org/simple/\"\n\nlatst = 3\n",
            "bad.toml: volumes.pypi.upstream.latst: unknown field `latst`, expected one of",
        ),
        (
            "origin = \"/o\"\nstaging = \"/s\"\n[volumes.pypi]\n\n[volumes.pypi.upstream]\ntype = \"pypi\"\nurl = \"https://pypi.org/simple/\"\n\nlatst = 3\n",
            "`fetch` (line 9)",
        ),
        (
            "origin = \"/o\"\nstaging = \"/s\"\n[volumes.pypi]\nupstream = { type = \"apt\", url = \"https://x/\", suitez = [] }\n",
            "bad.toml: volumes.pypi.upstream.suitez: unknown field `suitez`",
        ),
        (
            "origin = \"/o\"\nstaging = \"/s\"\n[release]\ngrace = \"forever\"\n",
            "bad.toml: release.grace: `forever` is not a duration",
        ),
        (
            "origin = \"/o\"\nstaging = \"/s\"\n[volumes.a]\nprefix = \"/x\"\n[volumes.b]\nprefix = \"/x\"\n",
            "bad.toml: volumes.b.prefix: `/x` overlaps `/x` of volume `a`",
        ),
        (
            "origin = \"/o\"\nstaging = \"/s\"\n[sync]\nmax_metadata_size = \"512\"\n",
            "bad.toml: sync.max_metadata_size: 512 bytes is too small (at least 1KiB)",
        ),
        (
            "origin = \"/o\"\nstaging = \"/s\"\n[sync]\nallow_redirect_hosts = [\"https://cdn.example\"]\n",
            "bad.toml: sync.allow_redirect_hosts: `https://cdn.example` is not a host or host:port",
        ),
        (
            "origin = \"/o\"\nstaging = \"/s\"\n[volumes.centos.upstream]\ntype = \"yum\"\nurls = [\"https://m.example/9-stream/BaseOS/x86_64/os/\", \"https://m.example/9-stream/AppStream/x86_64/os/\"]\n",
            "bad.toml: volumes.centos.upstream.urls: `urls` is replaced by `url` (the mirror's root) and `repos` (each repository's path under it, mirrored and served at that path under the volume's prefix); for these URLs: url = \"https://m.example/9-stream/\", repos = [\"BaseOS/x86_64/os\", \"AppStream/x86_64/os\"] (line 5)",
        ),
        (
            "origin = \"/o\"\nstaging = \"/s\"\n[volumes.centos.upstream]\ntype = \"yum\"\nurl = \"https://m.example/\"\nrepos = [\"../BaseOS\"]\n",
            "bad.toml: volumes.centos.upstream.repos: `../BaseOS`: segment `..` must be",
        ),
        (
            "origin = \"/o\"\nstaging = \"/s\"\n[volumes.keys]\nprefix = \"/-/keys\"\n",
            "bad.toml: volumes.keys.prefix: `/-/keys` collides with the daemon's own `/-`",
        ),
        ("origin = [\n", "bad.toml: "),
    ] {
        fs::write(&file, text).unwrap();
        let out = check(&file);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(stderr(&out).contains(expect), "{text}: {}", stderr(&out));
    }
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let out = check(std::path::Path::new("/nonexistent/unimirror.toml"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/unimirror.toml: (file): cannot read"),
        "{}",
        stderr(&out)
    );
    // And says how to name another file.
    assert!(
        stderr(&out).contains("--config FILE or UNIMIRROR_CONFIG"),
        "{}",
        stderr(&out)
    );
    // The updater reads the same file the same way.
    let out = Command::new(UPDATE)
        .args(["--config", "/nonexistent/unimirror.toml", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(UPDATE).args(["release"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(UPDATE).args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

//! Release signatures (`[release] signing_key`, `[daemon] release_keys`):
//! a daemon with keys serves only releases one of them signed, and keeps
//! serving the previous release when a new one is refused.

use std::fs;
use std::process::Command;

use crate::common::*;

/// The key id a release's `.sig` names.
fn signer_of(env: &Env, id: u64) -> String {
    let sig = fs::read_to_string(env.vol().signature_file(id)).unwrap();
    sig.split(' ').nth(1).unwrap().to_string()
}

/// Releases the tree, holding `content` in `f`, with the updater's config
/// (signed with whatever `signing.pem` holds) or, `unsigned`, with the
/// same config less its `[release]` table.
fn release(env: &Env, content: &str, unsigned: bool) {
    env.write("f", content.as_bytes());
    if !unsigned {
        env.release();
        return;
    }
    let plain = env.path().join("unsigned.toml");
    let text = fs::read_to_string(env.config()).unwrap();
    fs::write(&plain, text.replace("signing_key = \"signing.pem\"", "")).unwrap();
    run(Command::new(UPDATE)
        .arg("--config")
        .arg(&plain)
        .args(["release", "vol", "--from"])
        .arg(env.tree()));
}

#[test]
fn a_daemon_with_release_keys_serves_only_what_they_signed_and_keeps_the_previous_release() {
    let env = Env::with_config("[release]\nsigning_key = \"signing.pem\"\n");
    for name in ["a", "b"] {
        openssl_key_pair(env.path(), name);
    }
    // A signing key that cannot be read stops the updater before any work.
    let out = env.update(&["release", "vol", "--from", env.tree().to_str().unwrap()]);
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("release.signing_key") && err.contains("signing.pem"),
        "{err}"
    );
    assert_eq!(env.current(), None);

    let use_key = |name: &str| {
        fs::copy(
            env.path().join(format!("{name}.pem")),
            env.path().join("signing.pem"),
        )
        .unwrap();
    };
    use_key("a");
    release(&env, "one", false);
    let trusting_a = DaemonOpts {
        daemon: "release_keys = [\"a.pub\"]\n".into(),
        ..Default::default()
    };
    let a = signer_of(&env, 1);
    let d = Daemon::start_with(&env, &trusting_a);
    let r = d.get("/vol/f");
    assert_eq!(
        (r.status, r.text(), r.header("x-unimirror-release")),
        (200, "one".to_string(), Some("1"))
    );
    wait_for("the daemon naming the keys it accepts", 10, || {
        d.log_text().contains(&a)
    });

    // Signed by a key the daemon does not hold: refused, #1 stays.
    use_key("b");
    release(&env, "two", false);
    let b = signer_of(&env, 2);
    assert_ne!(a, b);
    wait_for("release #2 refused", 10, || {
        d.log_text().contains(&format!(
            "release #2 of `vol` refused: it is signed by key {b}"
        ))
    });
    // Met at every poll (200 ms here), logged once.
    wait_for("three polls refusing #2", 10, || {
        d.metric(
            "unimirror_manifest_loads_total",
            &[("volume", "vol"), ("result", "refused")],
        ) >= 3.0
    });
    assert_eq!(
        d.log_text().matches("release #2 of `vol` refused").count(),
        1
    );
    // Not signed at all: refused too.
    release(&env, "three", true);
    assert!(!env.vol().signature_file(3).exists());
    wait_for("release #3 refused", 10, || {
        d.log_text()
            .contains("release #3 of `vol` refused: it is not signed")
    });
    let r = d.get("/vol/f");
    assert_eq!(
        (r.text(), r.header("x-unimirror-release")),
        ("one".to_string(), Some("1"))
    );
    assert!(
        d.metric(
            "unimirror_manifest_loads_total",
            &[("volume", "vol"), ("result", "refused")]
        ) >= 2.0
    );
    // Asked for by id, a refused release is not served either.
    assert_ne!(d.get("/vol/@2/f").status, 200);

    // Signed by A again: served.
    use_key("a");
    release(&env, "four", false);
    wait_for("release #4 served", 10, || d.get("/vol/f").text() == "four");

    // A signed release replayed under another id by someone who can write
    // the origin (its files copied as #5, the pointer moved there by hand):
    // refused, #4 stays.
    let vol = env.vol();
    for (from, to) in [
        (vol.meta_file(4), vol.meta_file(5)),
        (vol.signature_file(4), vol.signature_file(5)),
        (vol.manifest_file(4), vol.manifest_file(5)),
    ] {
        fs::copy(from, to).unwrap();
    }
    let pointer = vol.pointer_file();
    let forged = fs::read_to_string(&pointer)
        .unwrap()
        .replace("\"release\":4", "\"release\":5");
    fs::write(pointer.with_extension("forged"), forged).unwrap();
    fs::rename(pointer.with_extension("forged"), &pointer).unwrap();
    assert_eq!(env.current(), Some(5));
    wait_for("release #5 refused", 10, || {
        d.log_text().contains(
            "release #5 of `vol` refused: its signed metadata is that of release #4 of `vol`",
        )
    });
    let r = d.get("/vol/f");
    assert_eq!(
        (r.text(), r.header("x-unimirror-release")),
        ("four".to_string(), Some("4"))
    );
    drop(d);
    for file in [
        vol.meta_file(5),
        vol.signature_file(5),
        vol.manifest_file(5),
    ] {
        fs::remove_file(file).unwrap();
    }
    let pointer_text = fs::read_to_string(&pointer)
        .unwrap()
        .replace("\"release\":5", "\"release\":4");
    fs::write(&pointer, pointer_text).unwrap();

    // Metadata changed after it was signed: its signature no longer holds.
    let meta = env.vol().meta_file(4);
    let text = fs::read_to_string(&meta).unwrap();
    fs::write(&meta, text.replace("\"source\": \"", "\"source\": \"x")).unwrap();
    let d = Daemon::start_with(&env, &trusting_a);
    wait_for("release #4 refused", 10, || {
        d.log_text().contains(&format!(
            "release #4 of `vol` refused: its signature by key {a} does not match its metadata"
        ))
    });
    assert_eq!(d.get("/vol/f").status, 503);
}

#[test]
fn check_config_reads_the_key_files_and_names_a_bad_one() {
    let env = Env::with_config(
        "[release]\nsigning_key = \"a.pem\"\n[daemon]\nrelease_keys = [\"a.pub\"]\n",
    );
    openssl_key_pair(env.path(), "a");
    let out = Command::new(crate::common::DAEMON)
        .args(["check-config", "--config"])
        .arg(env.config())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    let signed = text
        .lines()
        .find(|l| l.starts_with("releases signed with key"))
        .unwrap();
    let id = signed.rsplit(' ').next().unwrap();
    assert!(
        text.contains(&format!("serving only releases signed by key {id}")),
        "{text}"
    );

    fs::write(
        env.path().join("a.pub"),
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let out = Command::new(crate::common::DAEMON)
        .args(["check-config", "--config"])
        .arg(env.config())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("daemon.release_keys") && err.contains("a.pub"),
        "{err}"
    );
}

//! `unimirror-update sync` against upstreams built with the real tools and
//! served over HTTP, then checked with the real clients through the daemon.

mod common;

use std::fs;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;

/// A directory served over HTTP by Python's `http.server`, stopped on drop.
struct Upstream {
    child: Child,
    port: u16,
}

impl Upstream {
    fn serve(dir: &Path) -> Upstream {
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .unwrap_or_else(|| panic!("unexpected {line:?}"))
            .parse()
            .unwrap();
        Upstream { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A signed apt archive built with dpkg-deb, apt-ftparchive and gpg.
struct AptArchive {
    root: PathBuf,
    gnupg: PathBuf,
    keyring: PathBuf,
}

fn deb(root: &Path, name: &str, version: &str, depends: Option<&str>) {
    let build = root.join("build").join(format!("{name}-{version}"));
    fs::create_dir_all(build.join("DEBIAN")).unwrap();
    fs::create_dir_all(build.join("usr/share").join(name)).unwrap();
    fs::write(
        build.join("usr/share").join(name).join("README"),
        format!("{name} {version}\n"),
    )
    .unwrap();
    let mut control = format!(
        "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.invalid>\nDescription: test package {name}\n"
    );
    if let Some(d) = depends {
        control += &format!("Depends: {d}\n");
    }
    fs::write(build.join("DEBIAN/control"), control).unwrap();
    let pool = root.join("archive/pool/main").join(&name[..1]).join(name);
    fs::create_dir_all(&pool).unwrap();
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&build)
        .arg(pool.join(format!("{name}_{version}_all.deb"))));
}

impl AptArchive {
    fn new(dir: &Path) -> AptArchive {
        let gnupg = dir.join("gnupg");
        fs::create_dir_all(&gnupg).unwrap();
        fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let a = AptArchive {
            root: dir.to_path_buf(),
            keyring: dir.join("keyring.gpg"),
            gnupg,
        };
        a.gpg(&[
            "--quick-gen-key",
            "test archive <archive@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ]);
        let out = a.gpg_output(&["--export"]);
        fs::write(&a.keyring, out).unwrap();
        deb(dir, "libgreet", "1.0", None);
        deb(dir, "greet", "1.0", Some("libgreet (>= 1.0)"));
        a.index();
        a
    }

    fn gpg(&self, args: &[&str]) {
        run(Command::new("gpg")
            .env("GNUPGHOME", &self.gnupg)
            .args(["--batch", "--quiet", "--yes", "--passphrase", ""])
            .args(args));
    }

    fn gpg_output(&self, args: &[&str]) -> Vec<u8> {
        let o = Command::new("gpg")
            .env("GNUPGHOME", &self.gnupg)
            .args(["--batch", "--quiet"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success());
        o.stdout
    }

    fn archive(&self) -> PathBuf {
        self.root.join("archive")
    }

    /// Indexes the pool and signs the suite `stable`, the way a real
    /// archive does (with by-hash copies).
    fn index(&self) {
        let archive = self.archive();
        let dist = archive.join("dists/stable");
        let bin = dist.join("main/binary-amd64");
        fs::create_dir_all(&bin).unwrap();
        let packages = Command::new("apt-ftparchive")
            .args(["packages", "pool"])
            .current_dir(&archive)
            .output()
            .unwrap();
        assert!(packages.status.success());
        fs::write(bin.join("Packages"), &packages.stdout).unwrap();
        let _ = fs::remove_file(bin.join("Packages.gz"));
        run(Command::new("gzip")
            .args(["-9n", "-k"])
            .arg(bin.join("Packages")));
        for f in ["Release", "InRelease", "Release.gpg"] {
            let _ = fs::remove_file(dist.join(f));
        }
        let release = Command::new("apt-ftparchive")
            .args([
                "-o",
                "APT::FTPArchive::Release::Suite=stable",
                "-o",
                "APT::FTPArchive::Release::Codename=stable",
                "-o",
                "APT::FTPArchive::Release::Architectures=amd64",
                "-o",
                "APT::FTPArchive::Release::Components=main",
                "-o",
                "APT::FTPArchive::Release::Acquire-By-Hash=yes",
                "release",
            ])
            .arg(&dist)
            .output()
            .unwrap();
        assert!(release.status.success());
        fs::write(dist.join("Release"), &release.stdout).unwrap();
        let d = dist.to_str().unwrap();
        self.gpg(&[
            "--clearsign",
            "-o",
            &format!("{d}/InRelease"),
            &format!("{d}/Release"),
        ]);
        self.gpg(&[
            "--detach-sign",
            "--armor",
            "-o",
            &format!("{d}/Release.gpg"),
            &format!("{d}/Release"),
        ]);
    }
}

fn apt_env(upstream: &Upstream, keyring: &Path, extra_sync: &str) -> Env {
    let env = Env::new();
    let text = fs::read_to_string(env.config()).unwrap();
    fs::write(
        env.config(),
        format!(
            "{text}\n[volumes.vol.upstream]\ntype = \"apt\"\nurl = \"{}\"\nsuites = [\"stable\"]\ncomponents = [\"main\"]\narchitectures = [\"amd64\"]\nkeyring = {:?}\n\n[sync]\nallow_http = true\nretries = 0\nmetrics_dir = \"metrics\"\n{extra_sync}",
            upstream.url(),
            keyring.display().to_string()
        ),
    )
    .unwrap();
    env
}

fn apt_source(d: &Daemon, keyring: &Path) -> String {
    format!(
        "deb [signed-by={}] http://{}/vol stable main",
        keyring.display(),
        d.addr
    )
}

#[test]
fn apt_sync_releases_a_verified_copy_that_apt_get_installs_from() {
    let dir = tempfile::tempdir().unwrap();
    let archive = AptArchive::new(dir.path());
    let upstream = Upstream::serve(&archive.archive());
    let env = apt_env(&upstream, &archive.keyring, "");

    let out = env.update_ok(&["sync", "vol"]);
    assert!(out.contains("synced vol"), "{out}");
    assert_eq!(env.current(), Some(1));
    let staged = env.path().join("staging/vol/dists/stable");
    for f in [
        "InRelease",
        "Release",
        "Release.gpg",
        "main/binary-amd64/Packages",
        "main/binary-amd64/Packages.gz",
    ] {
        assert_eq!(
            fs::read(staged.join(f)).unwrap(),
            fs::read(archive.archive().join("dists/stable").join(f)).unwrap(),
            "{f} byte for byte"
        );
    }
    let metrics = fs::read_to_string(env.path().join("metrics/unimirror_update_vol.prom")).unwrap();
    assert!(
        metrics.contains("unimirror_update_success{volume=\"vol\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("unimirror_update_release_id{volume=\"vol\"} 1"));

    // A rerun with nothing new fetches nothing and releases nothing new.
    let out = env.update_ok(&["sync", "vol"]);
    assert!(out.contains("0 files fetched"), "{out}");
    assert_eq!(env.current(), Some(1));

    let d = Daemon::start(&env);
    let apt = env.path().join("apt");
    let source = apt_source(&d, &archive.keyring);
    let o = apt_get(&apt, &source, &["update"]);
    let log = format!("{}{}", stdout(&o), stderr(&o));
    assert!(o.status.success(), "{log}");
    // apt falls back silently when a by-hash or compressed index is
    // missing: an `Ign:` line is a failure here.
    assert!(!log.contains("Ign:"), "{log}");
    let o = apt_get(
        &apt,
        &source,
        &["install", "--download-only", "-y", "greet"],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let cached = apt.join("var/cache/apt/archives");
    for name in ["greet_1.0_all.deb", "libgreet_1.0_all.deb"] {
        assert_eq!(
            fs::read(cached.join(name)).unwrap(),
            fs::read(
                archive
                    .archive()
                    .join("pool/main")
                    .join(&name[..1])
                    .join(name.split('_').next().unwrap())
                    .join(name)
            )
            .unwrap()
        );
    }
}

#[test]
fn a_tampered_package_or_a_bad_signature_releases_nothing_and_a_fixed_upstream_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let archive = AptArchive::new(dir.path());
    let upstream = Upstream::serve(&archive.archive());
    let env = apt_env(&upstream, &archive.keyring, "");
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(1));
    let d = Daemon::start(&env);
    let served = d.get("/vol/dists/stable/InRelease").body;

    // A new package whose bytes change after it was indexed.
    deb(dir.path(), "extra", "2.0", None);
    archive.index();
    let extra = archive
        .archive()
        .join("pool/main/e/extra/extra_2.0_all.deb");
    let mut bytes = fs::read(&extra).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&extra, &bytes).unwrap();
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("extra_2.0_all.deb") && err.contains("sha256"),
        "{err}"
    );
    assert_eq!(env.current(), Some(1), "nothing released");
    assert_eq!(
        d.get("/vol/dists/stable/InRelease").body,
        served,
        "the previous release is still served"
    );
    let metrics = fs::read_to_string(env.path().join("metrics/unimirror_update_vol.prom")).unwrap();
    assert!(
        metrics.contains("unimirror_update_success{volume=\"vol\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("unimirror_update_last_success_timestamp_seconds"));

    // A signature by another key.
    deb(dir.path(), "extra", "2.0", None);
    archive.index();
    let stranger = AptArchive::new(&dir.path().join("stranger"));
    let dist = archive.archive().join("dists/stable");
    let release = dist.join("Release");
    let inrelease = stranger.gpg_output(&["--clearsign", "-o", "-", release.to_str().unwrap()]);
    fs::write(dist.join("InRelease"), inrelease).unwrap();
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not signed by a key in the keyring"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.current(), Some(1));

    // Fixed upstream: the rerun keeps what it has and releases.
    archive.index();
    let out = env.update_ok(&["sync", "vol"]);
    assert!(out.contains("already present"), "{out}");
    assert_eq!(env.current(), Some(2));
    let apt = env.path().join("apt");
    wait_for("the daemon to serve release 2", 10, || {
        d.get("/vol/dists/stable/InRelease")
            .header("x-unimirror-release")
            == Some("2")
    });
    let source = apt_source(&d, &archive.keyring);
    let o = apt_get(&apt, &source, &["update"]);
    assert!(
        o.status.success() && !stdout(&o).contains("Ign:"),
        "{}{}\n{}",
        stdout(&o),
        stderr(&o),
        d.log_text()
    );
    let o = apt_get(
        &apt,
        &source,
        &["install", "--download-only", "-y", "extra"],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn a_dead_upstream_fails_the_sync_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let archive = AptArchive::new(dir.path());
    let upstream = Upstream::serve(&archive.archive());
    let env = apt_env(&upstream, &archive.keyring, "");
    drop(upstream);
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("InRelease"), "{}", stderr(&out));
    assert_eq!(env.current(), None);
}

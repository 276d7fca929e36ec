//! `unimirror-update sync` against upstreams built with the real tools and
//! served over HTTP, then checked with the real clients through the daemon.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

/// A signed apt archive built with dpkg-deb, apt-ftparchive and gpg.
pub(crate) struct AptArchive {
    pub root: PathBuf,
    gnupg: PathBuf,
    pub keyring: PathBuf,
}

pub(crate) fn deb(root: &Path, name: &str, version: &str, depends: Option<&str>) {
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

/// A native source package built with dpkg-source into the pool.
pub(crate) fn dsc(root: &Path, name: &str, version: &str) {
    let src = root.join("build-src").join(format!("{name}-{version}"));
    fs::create_dir_all(src.join("debian/source")).unwrap();
    fs::write(src.join("debian/source/format"), "3.0 (native)\n").unwrap();
    fs::write(
        src.join("debian/control"),
        format!("Source: {name}\nMaintainer: t <t@example.invalid>\n\nPackage: {name}\nArchitecture: all\nDescription: test package {name}\n"),
    )
    .unwrap();
    fs::write(
        src.join("debian/changelog"),
        format!("{name} ({version}) stable; urgency=low\n\n  * Test.\n\n -- t <t@example.invalid>  Mon, 23 Nov 2026 00:00:00 +0000\n"),
    )
    .unwrap();
    fs::write(src.join("README"), format!("{name} {version} source\n")).unwrap();
    run(Command::new("dpkg-source")
        .arg("-b")
        .arg(src.file_name().unwrap())
        .current_dir(src.parent().unwrap()));
    let pool = root.join("archive/pool/main").join(&name[..1]).join(name);
    for f in [
        format!("{name}_{version}.dsc"),
        format!("{name}_{version}.tar.xz"),
    ] {
        fs::rename(src.parent().unwrap().join(&f), pool.join(&f)).unwrap();
    }
}

impl AptArchive {
    pub(crate) fn new(dir: &Path) -> AptArchive {
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
        dsc(dir, "greet", "1.0");
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

    pub(crate) fn archive(&self) -> PathBuf {
        self.root.join("archive")
    }

    /// Indexes the pool and signs the suite `stable`, the way a real
    /// archive does (with by-hash copies).
    pub(crate) fn index(&self) {
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
        let src = dist.join("main/source");
        fs::create_dir_all(&src).unwrap();
        let sources = Command::new("apt-ftparchive")
            .args(["sources", "pool"])
            .current_dir(&archive)
            .output()
            .unwrap();
        assert!(sources.status.success());
        fs::write(src.join("Sources"), &sources.stdout).unwrap();
        for index in [bin.join("Packages"), src.join("Sources")] {
            let _ = fs::remove_file(index.with_extension("gz"));
            run(Command::new("gzip").args(["-9n", "-k"]).arg(index));
        }
        self.other_indexes(&packages.stdout);
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
                // cnf's files are not among apt-ftparchive's default
                // patterns; real archives list them.
                "-o",
                "APT::FTPArchive::Release::Patterns::=*Commands-*",
                "release",
            ])
            .arg(&dist)
            .output()
            .unwrap();
        assert!(release.status.success());
        fs::write(dist.join("Release"), &release.stdout).unwrap();
        for arch in ["amd64", "i386"] {
            let _ = fs::remove_file(dist.join(format!("main/Contents-{arch}")));
        }
        self.sign();
    }

    /// What a real component lists beside its `Packages`: `Contents`
    /// (made by apt-ftparchive, compressed only, as Debian ships it, for
    /// apt-file), a translation with its `i18n/Index`, dep11 metadata (in
    /// two forms) and cnf commands; and an architecture the mirror does not
    /// select (i386).
    fn other_indexes(&self, packages: &[u8]) {
        let archive = self.archive();
        let main = archive.join("dists/stable/main");
        let contents = Command::new("apt-ftparchive")
            .args(["contents", "pool"])
            .current_dir(&archive)
            .output()
            .unwrap();
        assert!(contents.status.success());
        let write = |rel: &str, bytes: &[u8], gzip: bool| {
            let path = main.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            let _ = fs::remove_file(path.with_extension("gz"));
            fs::write(&path, bytes).unwrap();
            if gzip {
                run(Command::new("gzip").arg("-9nf").arg(&path));
            }
        };
        // Both forms while Release is made, so that it lists the
        // uncompressed one, which apt looks for; `index` then removes it,
        // as Debian serves only the compressed one.
        for arch in ["amd64", "i386"] {
            let name = format!("Contents-{arch}");
            write(&name, &contents.stdout, false);
            let o = Command::new("gzip")
                .arg("-9nc")
                .arg(main.join(&name))
                .output()
                .unwrap();
            fs::write(main.join(format!("{name}.gz")), o.stdout).unwrap();
        }
        write("binary-i386/Packages", packages, true);
        write(
            "i18n/Translation-en",
            b"Package: greet\nDescription-md5: 0\nDescription-en: test package greet\n\n",
            true,
        );
        write("i18n/Index", b"SHA1:\n", false);
        let dep11 = b"---\nFile: DEP-11\nVersion: '0.14'\nOrigin: stable-main\n";
        write("dep11/Components-amd64.yml", dep11, false);
        let gz = main.join("dep11/Components-amd64.yml.gz");
        let o = Command::new("gzip")
            .arg("-9nc")
            .arg(main.join("dep11/Components-amd64.yml"))
            .output()
            .unwrap();
        fs::write(gz, o.stdout).unwrap();
        write(
            "cnf/Commands-amd64",
            b"suite: stable\ncomponent: main\narch: amd64\n",
            true,
        );
    }

    /// Signs the suite's `Release` as `InRelease` and `Release.gpg`.
    pub(crate) fn sign(&self) {
        let dist = self.archive().join("dists/stable");
        for f in ["InRelease", "Release.gpg"] {
            let _ = fs::remove_file(dist.join(f));
        }
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

/// Gives volume `vol` the upstream table `upstream` (TOML lines), and sync
/// settings for a local plain-HTTP upstream that fails at once.
pub(crate) fn set_upstream(env: &Env, upstream: &str) {
    let text = fs::read_to_string(env.config()).unwrap();
    fs::write(
        env.config(),
        format!("{text}\n[volumes.vol.upstream]\n{upstream}\n\n[sync]\nallow_http = true\nretries = 0\nmetrics_dir = \"metrics\"\n"),
    )
    .unwrap();
}

/// An env whose volume `vol` syncs the archive; `extra` adds keys to the
/// upstream table.
pub(crate) fn apt_env(upstream: &Upstream, keyring: &Path, extra: &str) -> Env {
    let env = Env::new();
    set_upstream(
        &env,
        &format!(
            "type = \"apt\"\nurl = \"{}\"\nsuites = [\"stable\"]\ncomponents = [\"main\"]\narchitectures = [\"amd64\"]\nkeyring = {:?}\n{extra}",
            upstream.url(),
            keyring.display().to_string()
        ),
    );
    env
}

pub(crate) fn apt_source(d: &Daemon, keyring: &Path) -> String {
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
    let env = apt_env(&upstream, &archive.keyring, "sources = true");

    // Through a pipe: periodic progress lines on stderr, the summary on
    // stdout.
    let o = env
        .update_cmd(&["sync", "vol"])
        .env("UNIMIRROR_PROGRESS_INTERVAL", "0")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // Each line: `listing…` until something is queued, then done/total
    // files, done/total bytes, rate and ETA; and a last line at the end.
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("sync vol: ")).collect();
    assert!(!lines.is_empty(), "{}", stderr(&o));
    for l in &lines {
        assert!(
            l.contains("sync vol: listing…") || (l.contains(" files, ") && l.contains("/s, ETA ")),
            "a progress line without a total and ETA: {l}"
        );
        assert!(!l.contains("0/0 files"), "{l}");
    }
    let last = lines.last().unwrap();
    assert!(
        last.contains("sync vol: finished: ") && last.contains(" files, "),
        "{last}"
    );
    assert!(stdout(&o).contains("synced vol"), "{}", stdout(&o));
    assert_eq!(env.current(), Some(1));
    let staged = env.path().join("staging/vol/dists/stable");
    for f in [
        "InRelease",
        "Release",
        "Release.gpg",
        "main/binary-amd64/Packages",
        "main/binary-amd64/Packages.gz",
        "main/source/Sources.gz",
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
    let binary = apt_source(&d, &archive.keyring);
    let source = format!("{binary}\n{}", binary.replacen("deb ", "deb-src ", 1));
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
    // The source package, through deb-src, byte for byte.
    let o = apt_get(&apt, &source, &["source", "--download-only", "greet"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    for name in ["greet_1.0.dsc", "greet_1.0.tar.xz"] {
        assert_eq!(
            fs::read(apt.join(name)).unwrap(),
            fs::read(archive.archive().join("pool/main/g/greet").join(name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn a_suite_with_a_slash_is_mirrored_and_apt_installs_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let archive = AptArchive::new(dir.path());
    // As the Ubuntu Cloud Archive's `jammy-updates/caracal`: the suite is
    // a directory below another, and its Release names its family.
    let suite = "stable-updates/caracal";
    let dist = archive.archive().join("dists").join(suite);
    let bin = dist.join("main/binary-amd64");
    fs::create_dir_all(&bin).unwrap();
    for f in ["Packages", "Packages.gz"] {
        fs::copy(
            archive
                .archive()
                .join("dists/stable/main/binary-amd64")
                .join(f),
            bin.join(f),
        )
        .unwrap();
    }
    let release = Command::new("apt-ftparchive")
        .args(["-o", "APT::FTPArchive::Release::Suite=stable-updates"])
        .args(["-o", "APT::FTPArchive::Release::Codename=caracal"])
        .args(["-o", "APT::FTPArchive::Release::Architectures=amd64"])
        .args(["-o", "APT::FTPArchive::Release::Components=main"])
        .arg("release")
        .arg(&dist)
        .output()
        .unwrap();
    assert!(release.status.success());
    fs::write(dist.join("Release"), &release.stdout).unwrap();
    let d_ = dist.to_str().unwrap();
    archive.gpg(&[
        "--clearsign",
        "-o",
        &format!("{d_}/InRelease"),
        &format!("{d_}/Release"),
    ]);
    let upstream = Upstream::serve(&archive.archive());
    let env = Env::new();
    set_upstream(
        &env,
        &format!(
            "type = \"apt\"\nurl = \"{}\"\nsuites = [\"{suite}\"]\ncomponents = [\"main\"]\narchitectures = [\"amd64\"]\nkeyring = {:?}",
            upstream.url(),
            archive.keyring.display().to_string()
        ),
    );
    env.update_ok(&["sync", "vol"]);
    let d = Daemon::start(&env);
    assert_eq!(
        d.get(&format!("/vol/dists/{suite}/InRelease")).body,
        fs::read(dist.join("InRelease")).unwrap()
    );
    let apt = env.path().join("apt");
    let source = format!(
        "deb [signed-by={}] http://{}/vol {suite} main",
        archive.keyring.display(),
        d.addr
    );
    let o = apt_get(&apt, &source, &["update"]);
    let log = format!("{}{}", stdout(&o), stderr(&o));
    assert!(o.status.success() && !log.contains("Ign:"), "{log}");
    let o = apt_get(
        &apt,
        &source,
        &["install", "--download-only", "-y", "greet"],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn an_apt_dry_run_lists_what_a_sync_would_fetch_pool_included_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let archive = AptArchive::new(dir.path());
    // As on real archives: Release lists an uncompressed Packages the
    // upstream does not serve.
    fs::remove_file(
        archive
            .archive()
            .join("dists/stable/main/binary-amd64/Packages"),
    )
    .unwrap();
    let upstream = Upstream::serve(&archive.archive());
    let env = apt_env(&upstream, &archive.keyring, "");
    let out = env.update_ok(&["sync", "vol", "--dry-run"]);
    let base = format!("{}dists/stable/", upstream.url());
    for would in [
        format!("would fetch {base}main/binary-amd64/Packages.gz"),
        format!("would fetch {base}main/Contents-amd64.gz"),
        format!(
            "would fetch {}pool/main/g/greet/greet_1.0_all.deb",
            upstream.url()
        ),
        format!(
            "would fetch {}pool/main/l/libgreet/libgreet_1.0_all.deb",
            upstream.url()
        ),
    ] {
        assert!(out.contains(&would), "{would} not in:\n{out}");
    }
    assert!(!out.contains("binary-amd64/Packages\n"), "{out}");
    assert!(
        !env.path().join("staging").exists(),
        "the dry run created staging/"
    );
    assert_eq!(env.current(), None);
}

/// A volume's block of client settings on the home page, as a browser
/// shows it (HTML entities decoded).
pub(crate) fn home_block(page: &str, volume: &str) -> String {
    page.split(&format!("<h3>{volume}</h3>\n<pre>"))
        .nth(1)
        .and_then(|b| b.split("</pre>").next())
        .unwrap_or_else(|| panic!("no block for {volume}:\n{page}"))
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Removes a file when dropped (a test's file outside its directory).
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn the_home_pages_apt_lines_work_verbatim_with_the_keyring_the_mirror_serves() {
    let dir = tempfile::tempdir().unwrap();
    let archive = AptArchive::new(dir.path());
    let upstream = Upstream::serve(&archive.archive());
    let env = apt_env(&upstream, &archive.keyring, "");
    env.update_ok(&["sync", "vol"]);
    let d = Daemon::start(&env);
    let block = home_block(&d.get("/").text(), "vol");
    // The keyring the sync verified with, from the mirror.
    let key = d.get("/-/keys/vol.gpg");
    assert_eq!(key.status, 200);
    assert!(key.body == fs::read(&archive.keyring).unwrap());
    // Fetched as the block says (the command run as written), to where its
    // lines' signed-by points.
    let curl = block
        .lines()
        .find_map(|l| l.strip_prefix("#   "))
        .unwrap_or_else(|| panic!("no fetch command:\n{block}"));
    assert!(
        curl.starts_with("curl -fsSLo /etc/apt/keyrings/vol.gpg http://"),
        "{curl}"
    );
    fs::create_dir_all("/etc/apt/keyrings").unwrap();
    let _key = RemovedOnDrop("/etc/apt/keyrings/vol.gpg".into());
    let o = Command::new("sh").arg("-c").arg(curl).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // The lines (comments and all) are the sources.list, unchanged.
    assert!(
        block.contains(&format!(
            "deb [signed-by=/etc/apt/keyrings/vol.gpg arch=amd64] http://{}/vol/ stable main",
            d.addr
        )),
        "{block}"
    );
    let apt = env.path().join("apt");
    let o = apt_get(&apt, &block, &["update"]);
    let log = format!("{}{}", stdout(&o), stderr(&o));
    assert!(o.status.success() && !log.contains("Ign:"), "{log}");
    let o = apt_get(&apt, &block, &["install", "--download-only", "-y", "greet"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn apt_mirrors_everything_its_components_list_for_its_architectures_and_apt_file_searches_it() {
    let dir = tempfile::tempdir().unwrap();
    let archive = AptArchive::new(dir.path());
    let dist = archive.archive().join("dists/stable");
    // Listed in the signed Release, but the upstream does not serve it
    // (real archives have such files): left out, not a failure.
    fs::remove_file(dist.join("main/dep11/Components-amd64.yml")).unwrap();
    let upstream = Upstream::serve(&archive.archive());
    let env = apt_env(&upstream, &archive.keyring, "");
    env.update_ok(&["sync", "vol"]);
    let d = Daemon::start(&env);

    // Every file of the suite at the same path under the prefix, byte for
    // byte, except the other architecture's and (with sources off) the
    // sources'.
    let mut checked = 0;
    for file in walk(&dist).into_iter().filter(|p| p.is_file()) {
        let rel = file
            .strip_prefix(&dist)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let r = d.get(&format!("/vol/dists/stable/{rel}"));
        let left_out = rel.contains("i386") || rel.starts_with("main/source/");
        if left_out {
            assert_eq!(r.status, 404, "{rel} is not selected");
        } else {
            assert_eq!(r.status, 200, "{rel}");
            assert!(r.body == fs::read(&file).unwrap(), "{rel} byte for byte");
            checked += 1;
        }
    }
    // The three signed files, Packages in two forms, Contents, a
    // translation, i18n/Index, dep11 and cnf.
    assert_eq!(checked, 10, "files checked");
    // The pool: every package, byte for byte; the source package's files
    // only with `sources` on (off here).
    for file in walk(&archive.archive().join("pool"))
        .into_iter()
        .filter(|p| p.is_file())
    {
        let rel = file
            .strip_prefix(archive.archive())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let r = d.get(&format!("/vol/{rel}"));
        if rel.ends_with(".deb") {
            assert_eq!(r.status, 200, "{rel}");
            assert!(r.body == fs::read(&file).unwrap(), "{rel} byte for byte");
        } else {
            assert_eq!(r.status, 404, "{rel}: a source file, with sources off");
        }
    }
    for rel in [
        "main/Contents-amd64.gz",
        "main/i18n/Index",
        "main/dep11/Components-amd64.yml.gz",
        "main/cnf/Commands-amd64.gz",
    ] {
        assert_eq!(
            d.get(&format!("/vol/dists/stable/{rel}")).status,
            200,
            "{rel}"
        );
    }
    assert_eq!(
        d.get("/vol/dists/stable/main/dep11/Components-amd64.yml")
            .status,
        404
    );

    // apt with apt-file's index targets (Contents), asking only by hash,
    // through the mirror; then apt-file searches what it fetched.
    let apt = env.path().join("apt");
    fs::create_dir_all(apt.join("etc/apt/apt.conf.d")).unwrap();
    fs::copy(
        "/etc/apt/apt.conf.d/50apt-file.conf",
        apt.join("etc/apt/apt.conf.d/50apt-file.conf"),
    )
    .expect("apt-file is installed (./test.sh installs it)");
    let source = apt_source(&d, &archive.keyring);
    let o = apt_get(&apt, &source, &["-o", "Acquire::By-Hash=force", "update"]);
    let log = format!("{}{}", stdout(&o), stderr(&o));
    assert!(o.status.success() && !log.contains("Ign:"), "{log}");
    assert!(
        log.contains("Contents (deb)"),
        "apt fetched no Contents: {log}"
    );
    let root = apt.to_str().unwrap();
    let o = Command::new("apt-file")
        .args(["-o", &format!("Dir={root}")])
        .args([
            "-o",
            &format!("Dir::State::status={root}/var/lib/dpkg/status"),
        ])
        .args([
            "-o",
            "APT::Architecture=amd64",
            "search",
            "/usr/share/greet/README",
        ])
        .output()
        .expect("apt-file runs");
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("greet: /usr/share/greet/README"),
        "{}",
        stdout(&o)
    );
}

/// apt resumes a partial file with `Range: bytes=N-` and `If-Range: <the
/// partial file's mtime>`. Across a release switch the daemon must answer
/// with the new file whole: a tail of it after the old head is a file
/// whose signature no longer splits or verifies.
#[test]
fn apt_get_resuming_a_partial_inrelease_across_a_release_switch_gets_the_new_one_whole() {
    let dir = tempfile::tempdir().unwrap();
    let archive = AptArchive::new(dir.path());
    // The first state is dated in the past, as an archive published
    // earlier would be, so its files differ from the next in Last-Modified.
    run(Command::new("find").arg(archive.archive()).args([
        "-exec",
        "touch",
        "-h",
        "-d",
        "2026-01-01 00:00:00Z",
        "{}",
        "+",
    ]));
    let env = Env::new();
    let from = archive.archive();
    let from = from.to_str().unwrap();
    env.update_ok(&["release", "vol", "--from", from]);
    let d = Daemon::start(&env);
    let old = d.get("/vol/dists/stable/InRelease");
    assert_eq!(old.status, 200);
    let old_modified = old.header("last-modified").unwrap().to_string();

    // The archive moves on: greet 2.0, indexed and signed again.
    deb(dir.path(), "greet", "2.0", Some("libgreet (>= 1.0)"));
    archive.index();
    env.update_ok(&["release", "vol", "--from", from]);
    let new = fs::read(archive.archive().join("dists/stable/InRelease")).unwrap();
    wait_for("the daemon to serve the new release", 10, || {
        d.get("/vol/dists/stable/InRelease").body == new
    });

    // A client that was cut off half way through the old InRelease.
    let apt = env.path().join("apt");
    let source = apt_source(&d, &archive.keyring);
    apt_get(&apt, &source, &["--version"]);
    let partial = apt
        .join("var/lib/apt/lists/partial")
        .join(format!("{}_vol_dists_stable_InRelease", d.addr));
    fs::write(&partial, &old.body[..old.body.len() / 2]).unwrap();
    run(Command::new("touch")
        .args(["-d", &old_modified])
        .arg(&partial));

    let out = apt_get(
        &apt,
        &source,
        &[
            "-o",
            "Debug::Acquire::http=true",
            "-o",
            "Acquire::By-Hash=no",
            "update",
        ],
    );
    let log = format!("{}\n{}", stdout(&out), stderr(&out));
    // apt did resume: the test is about its Range and If-Range.
    assert!(log.contains("Range: bytes="), "{log}");
    assert!(log.contains("If-Range:"), "{log}");
    assert!(out.status.success(), "apt-get update: {log}");
    for bad in [
        "Splitting up",
        "not signed",
        "NO_PUBKEY",
        "Hash Sum mismatch",
        "Err:",
    ] {
        assert!(!log.contains(bad), "{bad}: {log}");
    }
    let lists = apt.join("var/lib/apt/lists");
    let got = fs::read(lists.join(format!("{}_vol_dists_stable_InRelease", d.addr))).unwrap();
    assert!(got == new, "apt kept an InRelease that is not the new one");
    let out = apt_get(&apt, &source, &["download", "greet=2.0"]);
    assert!(out.status.success(), "apt-get download: {}", stderr(&out));
}

/// With by-hash (the archive's default), three apt clients updating and
/// downloading while the volume switches between two signed states see no
/// error at all.
#[test]
fn apt_clients_see_no_error_while_releases_switch_under_them() {
    let dir = tempfile::tempdir().unwrap();
    let archive = AptArchive::new(dir.path());
    let upstream = Upstream::serve(&archive.archive());
    // Synced, so that each release has the by-hash copies apt asks for.
    let env = apt_env(&upstream, &archive.keyring, "");
    env.update_ok(&["sync", "vol"]);
    let first = env.current().unwrap();
    deb(dir.path(), "greet", "2.0", Some("libgreet (>= 1.0)"));
    archive.index();
    env.update_ok(&["sync", "vol"]);
    let second = env.current().unwrap();
    assert_ne!(first, second);
    let d = Daemon::start(&env);
    let source = apt_source(&d, &archive.keyring);
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let done: std::sync::Arc<Vec<AtomicUsize>> =
        std::sync::Arc::new((0..3).map(|_| AtomicUsize::new(0)).collect());
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let apt = env.path().join(format!("apt-{i}"));
            let (source, stop, done) = (source.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut cycles = 0;
                while !stop.load(Ordering::Relaxed) {
                    for args in [&["update"][..], &["download", "greet"][..]] {
                        let out = apt_get(&apt, &source, args);
                        let log = format!("{}\n{}", stdout(&out), stderr(&out));
                        assert!(out.status.success(), "apt-get {args:?}: {log}");
                        for bad in ["Hash Sum mismatch", "not signed", "Splitting up", "Err:"] {
                            assert!(!log.contains(bad), "{bad}: {log}");
                        }
                    }
                    cycles += 1;
                    done[i].store(cycles, Ordering::Relaxed);
                }
                cycles
            })
        })
        .collect();
    // At least twenty switches, each waited for until the daemon serves
    // it, and on until every client has done five update-and-download
    // cycles across them (bounded).
    let mut n = 0;
    while n < 20 || done.iter().any(|c| c.load(Ordering::Relaxed) < 5) {
        assert!(n < 1000, "the clients made no progress");
        n += 1;
        let to = if n % 2 == 1 { first } else { second };
        env.update_ok(&["rollback", "vol", "--to", &to.to_string()]);
        wait_for("the daemon to follow the rollback", 10, || {
            d.get("/vol/dists/stable/InRelease")
                .header("x-unimirror-release")
                .is_some_and(|r| r == to.to_string())
        });
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        assert!(c.join().unwrap() >= 5);
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
    // Sources are not mirrored unless asked for.
    let staged = env.path().join("staging/vol");
    assert!(!staged.join("dists/stable/main/source").exists());
    assert!(!staged.join("pool/main/g/greet/greet_1.0.dsc").exists());
    assert!(staged.join("pool/main/g/greet/greet_1.0_all.deb").exists());
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

/// A PyPI-style upstream: wheels built by `pip wheel` and an sdist built
/// by setuptools, from two projects (`greet` depends on `greet-lib`), with
/// a PEP 503 index written the way PyPI writes it (sha256 fragments,
/// requires-python, core-metadata files for the wheels).
pub(crate) fn pypi_upstream(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    let files = dir.join("upstream/files");
    fs::create_dir_all(&files).unwrap();
    for (name, module, deps) in [
        ("greet-lib", "greet_lib", "[]"),
        ("greet", "greet", "[\"greet-lib>=1.0\"]"),
    ] {
        let p = src.join(name);
        fs::create_dir_all(p.join(module)).unwrap();
        fs::write(
            p.join(module).join("__init__.py"),
            format!("NAME = {name:?}\n"),
        )
        .unwrap();
        fs::write(
            p.join("pyproject.toml"),
            format!(
                "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n\n[project]\nname = \"{name}\"\nversion = \"1.0\"\nrequires-python = \">=3.8\"\ndependencies = {deps}\n"
            ),
        )
        .unwrap();
        run(Command::new("python3")
            .args([
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-build-isolation",
                "--no-deps",
                "--disable-pip-version-check",
                "-w",
            ])
            .arg(&files)
            .arg(&p));
    }
    run(Command::new("python3")
        .current_dir(src.join("greet-lib"))
        .arg("-c")
        .arg(format!(
            "import setuptools.build_meta as b; b.build_sdist({:?})",
            files.display().to_string()
        )));
    let simple = dir.join("upstream/simple");
    let mut names: Vec<String> = fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for project in ["greet-lib", "greet"] {
        let prefix = project.replace('-', "_");
        let mut html = String::from("<!DOCTYPE html><html><body>\n");
        for f in names.iter().filter(|f| {
            let stem = f.replace('-', "_");
            stem.starts_with(&format!("{prefix}_1.0")) || stem.starts_with(&format!("{prefix}-1.0"))
        }) {
            let bytes = fs::read(files.join(f)).unwrap();
            let sha = unimirror::volume::manifest::Sha256Digest::of(&bytes);
            let mut attrs = " data-requires-python=\"&gt;=3.8\"".to_string();
            if f.ends_with(".whl") {
                let meta = Command::new("python3")
                    .arg("-c")
                    .arg("import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); sys.stdout.buffer.write(z.read([n for n in z.namelist() if n.endswith('.dist-info/METADATA')][0]))")
                    .arg(files.join(f))
                    .output()
                    .unwrap();
                assert!(meta.status.success());
                fs::write(files.join(format!("{f}.metadata")), &meta.stdout).unwrap();
                let msha = unimirror::volume::manifest::Sha256Digest::of(&meta.stdout);
                attrs += &format!(" data-dist-info-metadata=\"sha256={msha}\"");
            }
            html += &format!("<a href=\"../../files/{f}#sha256={sha}\"{attrs}>{f}</a><br>\n");
        }
        html += "</body></html>\n";
        fs::create_dir_all(simple.join(project)).unwrap();
        fs::write(simple.join(project).join("index.html"), html).unwrap();
    }
    dir.join("upstream")
}

#[test]
fn pypi_sync_mirrors_projects_that_pip_installs_with_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let root = pypi_upstream(dir.path());
    let upstream = Upstream::serve(&root);
    let env = Env::new();
    fs::write(
        env.path().join("constraints.txt"),
        "greet==1.0  # the app\n",
    )
    .unwrap();
    set_upstream(
        &env,
        &format!(
            "type = \"pypi\"\nurl = \"{}simple/\"\nprojects = [\"Greet_Lib\"]\nrequirements = [\"constraints.txt\"]",
            upstream.url()
        ),
    );
    let out = env.update_ok(&["sync", "vol"]);
    assert!(out.contains("synced vol"), "{out}");
    assert_eq!(env.current(), Some(1));
    let out = env.update_ok(&["sync", "vol"]);
    assert!(out.contains("0 files fetched"), "{out}");
    assert_eq!(
        env.current(),
        Some(1),
        "an unchanged upstream makes no release"
    );

    // A staging tree in the earlier layout (packages/<project>/<file>)
    // moves to the upstream paths on the next sync without downloading
    // anything or storing a new object (the release differs only by its
    // directories' times).
    let staged = env.path().join("staging/vol");
    for e in fs::read_dir(staged.join("files")).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let project = if name.starts_with("greet_lib") || name.starts_with("greet-lib") {
            "greet-lib"
        } else {
            "greet"
        };
        let old = staged.join("packages").join(project);
        fs::create_dir_all(&old).unwrap();
        fs::rename(&path, old.join(&name)).unwrap();
    }
    fs::remove_dir(staged.join("files")).unwrap();
    // A dry run leaves the old layout as it is.
    env.update_ok(&["sync", "vol", "--dry-run"]);
    assert!(!staged.join("files").exists() && staged.join("packages/greet").is_dir());
    let out = env.update_ok(&["sync", "vol"]);
    assert!(
        out.contains("0 files fetched") && out.contains("0 new objects"),
        "{out}"
    );
    assert!(!staged.join("packages").exists(), "old paths pruned");

    let d = Daemon::start(&env);
    let page = d.get("/vol/simple/greet-lib/").text();
    assert!(page.contains("data-requires-python=\"&gt;=3.8\""), "{page}");
    assert!(
        page.contains("#sha256=") && page.contains("data-core-metadata=\"sha256="),
        "{page}"
    );
    let json = d.request(
        "GET",
        "/vol/simple/greet-lib/",
        &[("Accept", "application/vnd.pypi.simple.v1+json")],
    );
    assert_eq!(
        json.header("content-type"),
        Some("application/vnd.pypi.simple.v1+json")
    );
    let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(v["name"], "greet-lib");
    assert_eq!(
        v["files"].as_array().unwrap().len(),
        2,
        "the wheel and the sdist"
    );
    assert!(d.get("/vol/simple/").text().contains("greet/"));

    // --require-hashes with both pinned.
    let index = format!("http://{}/vol/simple/", d.addr);
    let files = root.join("files");
    greet_installs_with_hashes_and_pulls_its_dependency(&env, &index, &files);

    // Fidelity: every file of the upstream's file tree is at the same path
    // under the prefix, byte for byte (the index pages are the mirror's
    // own: they link relatively and come as PEP 691 JSON too).
    let mut checked = 0;
    for file in walk(&root.join("files"))
        .into_iter()
        .filter(|p| p.is_file())
    {
        let rel = file.strip_prefix(&root).unwrap().to_str().unwrap();
        let r = d.get(&format!("/vol/{rel}"));
        assert_eq!(r.status, 200, "{rel}");
        assert!(r.body == fs::read(&file).unwrap(), "{rel} byte for byte");
        checked += 1;
    }
    // Two wheels with their metadata, and an sdist.
    assert_eq!(checked, 5);

    // The home page's pip.conf, used as it is.
    let conf = env.path().join("pip.conf");
    fs::write(&conf, home_block(&d.get("/").text(), "vol")).unwrap();
    greet_installs(&env, "site-conf", &conf, &[]);

    // A lockfile made against the upstream (pip's report of what it would
    // install), with the upstream's host swapped for the mirror's,
    // installs with --require-hashes: every file is at its upstream path.
    let report = env.path().join("report.json");
    let o = pip(&[
        "install",
        "--dry-run",
        "--ignore-installed",
        "--report",
        report.to_str().unwrap(),
        "--index-url",
        &format!("{}simple/", upstream.url()),
        "greet",
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    let mirror = format!("http://{}/vol/", d.addr);
    let mut lock = String::new();
    for item in report["install"].as_array().unwrap() {
        let info = &item["download_info"];
        let url = info["url"].as_str().unwrap();
        assert!(url.starts_with(&upstream.url()), "{url}");
        let hash = info["archive_info"]["hashes"]["sha256"].as_str().unwrap();
        lock += &format!(
            "{} @ {} --hash=sha256:{hash}\n",
            item["metadata"]["name"].as_str().unwrap(),
            url.replacen(&upstream.url(), &mirror, 1)
        );
    }
    assert_eq!(lock.lines().count(), 2, "{lock}");
    fs::write(env.path().join("lock.txt"), &lock).unwrap();
    let target = env.path().join("site-lock");
    let o = pip(&[
        "install",
        "--no-deps",
        "--require-hashes",
        "--target",
        target.to_str().unwrap(),
        "-r",
        env.path().join("lock.txt").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{lock}{}{}", stdout(&o), stderr(&o));
    assert!(target.join("greet_lib/__init__.py").exists());

    // The sdist is there too, and pip can fetch it.
    let dl = env.path().join("dl");
    let o = pip(&[
        "download",
        "--no-deps",
        "--no-build-isolation",
        "--no-binary",
        ":all:",
        "--index-url",
        &index,
        "-d",
        dl.to_str().unwrap(),
        "greet-lib",
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn an_https_upstream_is_verified_and_never_downgraded_to_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let root = pypi_upstream(dir.path());
    make_cert(dir.path());
    let (cert, key, ca) = (
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
        dir.path().join("ca.pem"),
    );
    let tls = Upstream::serve_tls(&root, &cert, &key, None);
    let plain = Upstream::serve(&root);
    let to_plain = format!("http://localhost:{}", plain.port);
    let downgrading = Upstream::serve_tls(&root, &cert, &key, Some(&to_plain));
    let env = Env::new();
    let pypi = |port: u16| {
        format!(
            "type = \"pypi\"\nurl = \"https://localhost:{port}/simple/\"\nprojects = [\"greet-lib\"]"
        )
    };
    // `allow_http = true` too: plain HTTP is allowed as an upstream, never
    // as a step down from HTTPS.
    set_upstream(&env, &pypi(tls.port));
    let config = fs::read_to_string(env.config()).unwrap();

    // A certificate from a CA the system does not trust: refused.
    let out = env
        .update_cmd(&["sync", "vol"])
        .env_remove("SSL_CERT_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out).to_lowercase();
    assert!(err.contains("certificate"), "{err}");
    assert_eq!(env.current(), None);

    // The same upstream, its CA trusted: synced.
    let out = env
        .update_cmd(&["sync", "vol"])
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.current(), Some(1));

    // An HTTPS upstream redirecting to plain HTTP on the same host.
    fs::write(
        env.config(),
        config.replace(&tls.port.to_string(), &downgrading.port.to_string()),
    )
    .unwrap();
    let out = env
        .update_cmd(&["sync", "vol"])
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("refusing a redirect"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.current(), Some(1));
}

#[test]
fn two_links_that_would_share_a_mirror_path_with_other_contents_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up");
    fs::create_dir_all(up.join("files")).unwrap();
    fs::write(up.join("files/x-1.0-py3-none-any.whl"), b"one").unwrap();
    // Two projects link the same file path with other hashes: whichever
    // came second would overwrite what the first one's page advertises.
    for (project, content) in [("a", &b"one"[..]), ("b", &b"two"[..])] {
        let sha = unimirror::digest::Sha256Digest::of(content);
        fs::create_dir_all(up.join("simple").join(project)).unwrap();
        fs::write(
            up.join("simple").join(project).join("index.html"),
            format!("<a href=\"../../files/x-1.0-py3-none-any.whl#sha256={sha}\">x-1.0-py3-none-any.whl</a>"),
        )
        .unwrap();
    }
    let upstream = Upstream::serve(&up);
    let env = Env::new();
    set_upstream(
        &env,
        &format!(
            "type = \"pypi\"\nurl = \"{}simple/\"\nprojects = [\"a\", \"b\"]",
            upstream.url()
        ),
    );
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("would both be mirrored at `files/x-1.0-py3-none-any.whl`"),
        "{err}"
    );
    assert_eq!(env.current(), None);
}

#[test]
fn with_dependencies_a_project_brings_what_its_files_require() {
    let dir = tempfile::tempdir().unwrap();
    let root = pypi_upstream(dir.path());
    let upstream = Upstream::serve(&root);
    let env = Env::new();
    // greet alone: its dependency, greet-lib, is not mirrored, and pip
    // cannot resolve greet.
    set_upstream(
        &env,
        &format!(
            "type = \"pypi\"\nurl = \"{}simple/\"\nprojects = [\"greet\"]",
            upstream.url()
        ),
    );
    env.update_ok(&["sync", "vol"]);
    let d = Daemon::start(&env);
    let index = format!("http://{}/vol/simple/", d.addr);
    let install = |target: &str| {
        pip(&[
            "install",
            "--index-url",
            &index,
            "--target",
            env.path().join(target).to_str().unwrap(),
            "greet",
        ])
    };
    assert!(!install("site1").status.success());
    assert!(!d.get("/vol/simple/").text().contains("greet-lib"));

    // With dependencies, the closure of Requires-Dist comes along.
    let config = fs::read_to_string(env.config()).unwrap();
    fs::write(
        env.config(),
        config.replace(
            "projects = [\"greet\"]",
            "projects = [\"greet\"]\ndependencies = true",
        ),
    )
    .unwrap();
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(2));
    wait_for("release 2", 10, || {
        d.get("/vol/simple/").header("x-unimirror-release") == Some("2")
    });
    assert!(d.get("/vol/simple/").text().contains("greet-lib"));
    greet_installs(
        &env,
        "site2",
        Path::new("/dev/null"),
        &["--index-url", &index],
    );
}

#[test]
fn a_pypi_file_whose_hash_does_not_match_releases_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = pypi_upstream(dir.path());
    let wheel = root.join("files/greet_lib-1.0-py3-none-any.whl");
    let mut bytes = fs::read(&wheel).unwrap();
    bytes.push(0);
    fs::write(&wheel, bytes).unwrap();
    let upstream = Upstream::serve(&root);
    let env = Env::new();
    set_upstream(
        &env,
        &format!(
            "type = \"pypi\"\nurl = \"{}simple/\"\nprojects = [\"greet-lib\"]",
            upstream.url()
        ),
    );
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("greet_lib-1.0-py3-none-any.whl"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.current(), None);
}

#[test]
fn wheel_sync_makes_each_platform_an_index_root_that_pip_installs_from_and_keeps_old_wheels() {
    let dir = tempfile::tempdir().unwrap();
    let built = pypi_upstream(dir.path()).join("files");
    let output = dir.path().join("build-output");
    // OpenDev's platform names, kept as they are.
    let platform = output.join("ubuntu-22.04-x86_64");
    fs::create_dir_all(&platform).unwrap();
    for w in [
        "greet-1.0-py3-none-any.whl",
        "greet_lib-1.0-py3-none-any.whl",
    ] {
        fs::copy(built.join(w), platform.join(w)).unwrap();
    }
    let env = Env::new();
    set_upstream(
        &env,
        &format!(
            "type = \"wheel\"\ndirectory = {:?}",
            output.display().to_string()
        ),
    );
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(1));
    // A plain tree beside it plays the /pypi index: it has greet, not its
    // dependency, which only the wheel index has.
    let greet = fs::read(built.join("greet-1.0-py3-none-any.whl")).unwrap();
    env.write("packages/greet-1.0-py3-none-any.whl", &greet);
    env.write(
        "simple/greet/index.html",
        b"<a href=\"../../packages/greet-1.0-py3-none-any.whl\">greet-1.0-py3-none-any.whl</a>",
    );
    env.write("simple/index.html", b"<a href=\"greet/\">greet</a>");
    let d = Daemon::start(&env);

    // The platform is the index root; a project's files sit beside its page.
    let root = d.get("/vol/ubuntu-22.04-x86_64/");
    assert!(
        root.text().contains("href=\"greet-lib/\""),
        "{}",
        root.text()
    );
    let page = d.get("/vol/ubuntu-22.04-x86_64/greet-lib/").text();
    assert!(page.contains("data-requires-python=\"&gt;=3.8\""), "{page}");
    assert!(page.contains("data-core-metadata=\"sha256="), "{page}");
    assert!(
        page.contains("href=\"greet_lib-1.0-py3-none-any.whl#sha256="),
        "{page}"
    );
    let json = d.request(
        "GET",
        "/vol/ubuntu-22.04-x86_64/greet-lib/",
        &[("Accept", "application/vnd.pypi.simple.v1+json")],
    );
    assert_eq!(
        json.header("content-type"),
        Some("application/vnd.pypi.simple.v1+json")
    );
    let meta = d.get("/vol/ubuntu-22.04-x86_64/greet-lib/greet_lib-1.0-py3-none-any.whl.metadata");
    assert!(meta.text().contains("Name: greet-lib"), "{}", meta.text());

    // As the only index, with hashes pinned, then a plain resolve.
    let index = format!("http://{}/vol/ubuntu-22.04-x86_64/", d.addr);
    greet_installs_with_hashes_and_pulls_its_dependency(&env, &index, &built);
    // As an extra index beside a PyPI index that lacks the dependency.
    let pypi = format!("http://{}/plain/simple/", d.addr);
    let no_config = Path::new("/dev/null");
    greet_installs(
        &env,
        "site-extra",
        no_config,
        &["--index-url", &pypi, "--extra-index-url", &index],
    );
    // The home page's pip.conf for the platform, used as it is, beside
    // the PyPI index.
    let conf = env.path().join("wheel-pip.conf");
    fs::write(&conf, home_block(&d.get("/").text(), "vol")).unwrap();
    greet_installs(&env, "site-conf", &conf, &["--index-url", &pypi]);
    // And by --find-links on the projects' directories, with no index.
    let (greet, greet_lib) = (format!("{index}greet/"), format!("{index}greet-lib/"));
    greet_installs(
        &env,
        "site-links",
        no_config,
        &[
            "--no-index",
            "--find-links",
            &greet,
            "--find-links",
            &greet_lib,
        ],
    );

    // The build output is cleaned: the mirror keeps what it imported.
    fs::remove_file(platform.join("greet_lib-1.0-py3-none-any.whl")).unwrap();
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(1), "nothing changed");
    // Until told to prune.
    env.update_ok(&["sync", "vol", "--prune"]);
    assert_eq!(env.current(), Some(2));
    wait_for("release 2", 10, || {
        d.get("/vol/ubuntu-22.04-x86_64/")
            .header("x-unimirror-release")
            == Some("2")
    });
    assert!(
        !d.get("/vol/ubuntu-22.04-x86_64/")
            .text()
            .contains("greet-lib")
    );
    assert!(
        d.get("/vol/ubuntu-22.04-x86_64/greet/")
            .text()
            .contains("greet-1.0")
    );
}

#[test]
fn a_wheel_tree_in_the_old_layout_moves_to_index_roots_on_the_next_sync() {
    let dir = tempfile::tempdir().unwrap();
    let built = pypi_upstream(dir.path()).join("files");
    let output = dir.path().join("build-output");
    fs::create_dir_all(output.join("centos-9-x86_64")).unwrap();
    let env = Env::new();
    set_upstream(
        &env,
        &format!(
            "type = \"wheel\"\ndirectory = {:?}",
            output.display().to_string()
        ),
    );
    // What an earlier version left in staging (and released): the wheel
    // under packages/<project>/, the pages under simple/.
    let old = env.path().join("staging/vol/centos-9-x86_64");
    let wheel = fs::read(built.join("greet-1.0-py3-none-any.whl")).unwrap();
    fs::create_dir_all(old.join("packages/greet")).unwrap();
    fs::write(
        old.join("packages/greet/greet-1.0-py3-none-any.whl"),
        &wheel,
    )
    .unwrap();
    fs::create_dir_all(old.join("simple/greet")).unwrap();
    fs::write(old.join("simple/greet/index.html"), b"old page").unwrap();
    env.update_ok(&[
        "release",
        "vol",
        "--from",
        env.path().join("staging/vol").to_str().unwrap(),
    ]);
    let objects_before = object_count(&env.vol());

    // The build output no longer has it (and --prune is not given): the
    // sync takes it from the old place to the new one.
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(2));
    let d = Daemon::start(&env);
    let moved = d.get("/vol/centos-9-x86_64/greet/greet-1.0-py3-none-any.whl");
    assert_eq!((moved.status, moved.body == wheel), (200, true));
    assert!(
        d.get("/vol/centos-9-x86_64/greet/")
            .text()
            .contains("greet-1.0")
    );
    // Gone from release 2 (the unpinned path may still be answered from
    // release 1 during its grace period).
    for gone in [
        "/vol/@2/centos-9-x86_64/packages/greet/greet-1.0-py3-none-any.whl",
        "/vol/@2/centos-9-x86_64/simple/greet/index.html",
    ] {
        assert_eq!(d.get(gone).status, 404, "{gone}");
    }
    // The wheel's object was already stored: only the new pages and the
    // metadata file are new objects.
    let new_objects = object_count(&env.vol()) - objects_before;
    assert!(new_objects <= 5, "{new_objects} new objects");
}

/// Where `yum_upstream` puts its repository under the mirror root, as
/// CentOS Stream lays out its own.
pub(crate) const YUM_REPO: &str = "9-stream/BaseOS/x86_64/os";

/// The mirror root the yum fixtures in `dir` put their repositories under.
pub(crate) fn yum_root(dir: &Path) -> PathBuf {
    dir.join("mirror")
}

/// The rpms of the yum fixtures, built once per `dir` by rpmbuild: `greet`
/// requires `greet-lib`. Returns the directory holding them.
pub(crate) fn yum_rpms(dir: &Path) -> PathBuf {
    let top = dir.join("rpmbuild");
    let rpms = top.join("RPMS/noarch");
    if rpms.is_dir() {
        return rpms;
    }
    for (name, requires) in [("greet-lib", ""), ("greet", "Requires: greet-lib\n")] {
        let spec = dir.join(format!("{name}.spec"));
        fs::write(
            &spec,
            format!(
                "Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: test package {name}\nLicense: MIT\nBuildArch: noarch\n{requires}\n%description\ntest package {name}\n\n%install\nmkdir -p %{{buildroot}}/usr/share/{name}\necho {name} > %{{buildroot}}/usr/share/{name}/README\n\n%files\n/usr/share/{name}/README\n"
            ),
        )
        .unwrap();
        run(Command::new("rpmbuild")
            .args(["-bb", "--quiet", "--define"])
            .arg(format!("_topdir {}", top.display()))
            .arg(&spec));
    }
    rpms
}

/// The armored public key of the gpg key the yum fixtures in `dir` sign
/// `repomd.xml` with (made on first use).
pub(crate) fn yum_key(dir: &Path) -> PathBuf {
    let key = dir.join("key.asc");
    if key.is_file() {
        return key;
    }
    let gnupg = dir.join("gnupg");
    fs::create_dir_all(&gnupg).unwrap();
    fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        run(Command::new("gpg")
            .env("GNUPGHOME", &gnupg)
            .args(["--batch", "--quiet", "--yes", "--passphrase", ""])
            .args(args))
    };
    gpg(&[
        "--quick-gen-key",
        "yum test <yum@example.invalid>",
        "ed25519",
        "sign",
        "never",
    ]);
    gpg(&["--armor", "--export", "-o", key.to_str().unwrap()]);
    key
}

/// A yum repository at `rel` under the mirror root in `dir`: the fixture
/// rpms whose names start with one of `packages`, indexed by createrepo_c
/// (`args` added), `repomd.xml` signed by gpg. Returns the repository.
pub(crate) fn yum_repo(dir: &Path, rel: &str, packages: &[&str], args: &[&str]) -> PathBuf {
    let repo = yum_root(dir).join(rel);
    fs::create_dir_all(repo.join("Packages")).unwrap();
    for e in fs::read_dir(yum_rpms(dir)).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap();
        if packages
            .iter()
            .any(|&n| name.starts_with(&format!("{n}-1.0")))
        {
            fs::copy(&p, repo.join("Packages").join(name)).unwrap();
        }
    }
    yum_key(dir);
    yum_reindex(dir, &repo, args);
    repo
}

/// The fixture repository with both rpms at `YUM_REPO`. Returns the
/// repository and the armored public key.
pub(crate) fn yum_upstream(dir: &Path) -> (PathBuf, PathBuf) {
    let repo = yum_repo(dir, YUM_REPO, &["greet", "greet-lib"], &[]);
    (repo, yum_key(dir))
}

/// `dnf` isolated in its own install root, with one repository.
fn dnf(root: &Path, baseurl: &str, key: &Path, args: &[&str]) -> std::process::Output {
    dnf_with(root, &one_repo(baseurl, key), args)
}

/// The `.repo` text of one repository at `baseurl`, its `repomd.xml`
/// verified with `key`.
pub(crate) fn one_repo(baseurl: &str, key: &Path) -> String {
    format!(
        "[mirror]\nname=mirror\nbaseurl={baseurl}\ngpgcheck=0\nrepo_gpgcheck=1\ngpgkey=file://{}\n",
        key.display()
    )
}

/// dnf, in its own install root with the repositories of `repo_file`,
/// downloads `greet` and what it requires into `dl`.
pub(crate) fn dnf_downloads_greet(root: &Path, repo_file: &str, dl: &Path) {
    let o = dnf_with(
        root,
        repo_file,
        &[
            "--enableplugin=download",
            "download",
            "--resolve",
            "--destdir",
            dl.to_str().unwrap(),
            "greet",
        ],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

/// `dnf` isolated in its own install root, with the repositories of
/// `repo_file` (a `.repo` file's text).
pub(crate) fn dnf_with(root: &Path, repo_file: &str, args: &[&str]) -> std::process::Output {
    for d in ["repos", "cache", "log", "persist"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("repos/mirror.repo"), repo_file).unwrap();
    let r = root.display();
    Command::new("dnf")
        .args(["-y", &format!("--installroot={r}")])
        .arg(format!("--setopt=reposdir={r}/repos"))
        .arg(format!("--setopt=cachedir={r}/cache"))
        .arg(format!("--setopt=logdir={r}/log"))
        .arg(format!("--setopt=persistdir={r}/persist"))
        // No platform in an empty install root: modules need one named.
        .arg("--setopt=module_platform_id=platform:el9")
        .args(["--releasever=9", "--disableplugin=*"])
        .args(args)
        .output()
        .expect("dnf is installed")
}

/// An env whose volume `vol` syncs `repos` from the mirror root `upstream`
/// serves, verified with `key`.
pub(crate) fn yum_env_repos(upstream: &Upstream, key: &Path, repos: &[&str]) -> Env {
    let env = Env::new();
    set_upstream(&env, &yum_upstream_table(upstream, key, repos));
    env
}

pub(crate) fn yum_upstream_table(upstream: &Upstream, key: &Path, repos: &[&str]) -> String {
    format!(
        "type = \"yum\"\nurl = \"{}\"\nrepos = {repos:?}\nkey = {:?}",
        upstream.url(),
        key.display().to_string()
    )
}

pub(crate) fn yum_env(upstream: &Upstream, key: &Path) -> Env {
    yum_env_repos(upstream, key, &[YUM_REPO])
}

/// The URL of the fixture repository on daemon `d`.
pub(crate) fn yum_baseurl(d: &Daemon) -> String {
    format!("http://{}/vol/{YUM_REPO}/", d.addr)
}

#[test]
fn yum_sync_mirrors_a_signed_repository_that_dnf_downloads_from() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = yum_upstream(dir.path());
    let upstream = Upstream::serve(&yum_root(dir.path()));
    let env = yum_env(&upstream, &key);
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(1));
    for f in ["repodata/repomd.xml", "repodata/repomd.xml.asc"] {
        assert_eq!(
            fs::read(env.path().join("staging/vol").join(YUM_REPO).join(f)).unwrap(),
            fs::read(repo.join(f)).unwrap()
        );
    }
    let d = Daemon::start(&env);
    let root = env.path().join("dnf");
    let baseurl = yum_baseurl(&d);
    let o = dnf(&root, &baseurl, &key, &["makecache"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let dl = root.join("dl");
    dnf_downloads_greet(&root, &one_repo(&baseurl, &key), &dl);
    for rpm in ["greet-1.0-1.noarch.rpm", "greet-lib-1.0-1.noarch.rpm"] {
        assert_eq!(
            fs::read(dl.join(rpm)).unwrap(),
            fs::read(repo.join("Packages").join(rpm)).unwrap()
        );
    }
}

#[test]
fn a_repomd_naming_a_missing_file_releases_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = yum_upstream(dir.path());
    let upstream = Upstream::serve(&yum_root(dir.path()));
    let env = yum_env(&upstream, &key);
    let victim = fs::read_dir(repo.join("repodata"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("filelists"))
        .unwrap();
    fs::remove_file(&victim).unwrap();
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(victim.file_name().unwrap().to_str().unwrap()),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.current(), None);
}

#[test]
fn an_upstream_dying_mid_sync_releases_nothing_and_the_rerun_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let archive = AptArchive::new(dir.path());
    // The three signed files, the nine indexes the Release lists for
    // main/amd64 (one of which, the uncompressed Contents, is a 404), and
    // one of the two pool files: then it is gone.
    let dying = Upstream::serve_dying(&archive.archive(), 13);
    let env = apt_env(&dying, &archive.keyring, "");
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert_eq!(env.current(), None, "nothing released");

    let upstream = Upstream::serve(&archive.archive());
    let text = fs::read_to_string(env.config())
        .unwrap()
        .replace(&dying.url(), &upstream.url());
    fs::write(env.config(), text).unwrap();
    let out = env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(1));
    // What the first run verified was kept, not fetched again.
    let kept: u64 = out
        .split(" already present")
        .next()
        .and_then(|s| s.rsplit(", ").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {out:?}"));
    assert!(kept >= 2, "{out}");
}

// Issue #17, items 9, 10, 11 and 15: what a sync releases.

impl AptArchive {
    /// Rewrites the suite's `Release` with `edit` and signs it again
    /// (`InRelease` and `Release.gpg`), as an upstream with the key would.
    pub(crate) fn resign(&self, edit: impl Fn(String) -> String) {
        let dist = self.archive().join("dists/stable");
        let text = edit(fs::read_to_string(dist.join("Release")).unwrap());
        fs::write(dist.join("Release"), text).unwrap();
        self.sign();
    }
}

/// `text` (a Release) with the field `key` set to `value`.
pub(crate) fn set_field(text: &str, key: &str, value: &str) -> String {
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with(&format!("{key}:")))
        .map(|l| format!("{l}\n"))
        .collect();
    format!("{key}: {value}\n{kept}")
}

/// The content of `path` in release `id` of volume `vol`, if it has it.
fn released_file(env: &Env, id: u64, path: &str) -> Option<Vec<u8>> {
    let vol = env.vol();
    let m = check_release(&vol, id);
    m.get(path.as_bytes())
        .unwrap()
        .map(|e| fs::read(vol.object_file(&e.sha256)).unwrap())
}

/// The files of release `id` below `dir/` (relative to it) with their sha256.
fn released_below(env: &Env, id: u64, dir: &str) -> Vec<(String, String)> {
    let m = check_release(&env.vol(), id);
    let mut out = Vec::new();
    let mut stream = m.stream();
    while let Some(item) = stream.next_entry() {
        let (key, e) = item.unwrap();
        let path = String::from_utf8(unimirror::volume::manifest::path_for_key(&key)).unwrap();
        if e.kind == unimirror::volume::manifest::Kind::File
            && let Some(rel) = path.strip_prefix(&format!("{dir}/"))
        {
            out.push((rel.to_string(), e.sha256.hex()));
        }
    }
    out
}

/// Checks that everything release `id` has under `dists/stable/` is what
/// its InRelease names, with the hash it names: the signed files, the
/// indexes (with their SHA256) and their by-hash copies (by SHA256 and
/// SHA512 of a listed index in the same directory). Returns the indexes.
fn assert_dists_as_listed(env: &Env, id: u64) -> Vec<String> {
    let inrelease = released_file(env, id, "dists/stable/InRelease").expect("an InRelease");
    let text = String::from_utf8(inrelease).unwrap();
    let (mut sha256, mut sha512) = (Vec::new(), Vec::new());
    let mut section = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(' ') {
            let p: Vec<&str> = rest.split_whitespace().collect();
            match section {
                "SHA256" => sha256.push((p[2].to_string(), p[0].to_string())),
                "SHA512" => sha512.push((p[2].to_string(), p[0].to_string())),
                _ => {}
            }
        } else {
            section = line.split(':').next().unwrap_or("");
        }
    }
    let in_dir = |list: &[(String, String)], dir: &str, hex: &str| {
        list.iter()
            .any(|(p, h)| h == hex && Path::new(p).parent().unwrap() == Path::new(dir))
    };
    let mut indexes = Vec::new();
    for (rel, hex) in released_below(env, id, "dists/stable") {
        if ["InRelease", "Release", "Release.gpg"].contains(&rel.as_str()) {
            continue;
        }
        if let Some((dir, h)) = rel.split_once("/by-hash/SHA256/") {
            assert_eq!(h, hex, "release #{id}: {rel} holds other content");
            assert!(
                in_dir(&sha256, dir, h),
                "release #{id}: {rel} is not listed"
            );
        } else if let Some((dir, h)) = rel.split_once("/by-hash/SHA512/") {
            assert!(
                in_dir(&sha512, dir, h),
                "release #{id}: {rel} is not listed"
            );
        } else {
            let listed = sha256.iter().find(|(p, _)| *p == rel).map(|(_, h)| h);
            assert_eq!(
                listed,
                Some(&hex),
                "release #{id}: {rel} is not listed in InRelease with its sha256"
            );
            indexes.push(rel);
        }
    }
    indexes
}

#[test]
fn an_expired_older_or_foreign_inrelease_releases_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let archive = AptArchive::new(dir.path());
    let upstream = Upstream::serve(&archive.archive());
    let env = apt_env(&upstream, &archive.keyring, "");
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(1));
    let refused = |what: &str, args: &[&str], says: &[&str]| {
        let out = env.update(args);
        assert!(!out.status.success(), "{what}: {}", stdout(&out));
        let err = stderr(&out);
        for s in says {
            assert!(err.contains(s), "{what}: no {s:?} in {err}");
        }
        assert!(err.contains("nothing was released"), "{what}: {err}");
        assert_eq!(env.current(), Some(1), "{what}: nothing released");
    };

    // Validly signed, but its Valid-Until has passed.
    archive.resign(|t| set_field(&t, "Valid-Until", "Wed, 01 Jan 2020 00:00:00 UTC"));
    refused(
        "expired",
        &["sync", "vol"],
        &["dists/stable/InRelease: Valid-Until Wed, 01 Jan 2020 00:00:00 UTC has passed"],
    );
    // --allow-older is about Date, not expiry.
    refused(
        "expired, --allow-older",
        &["sync", "vol", "--allow-older"],
        &["Valid-Until"],
    );

    // Validly signed, but older than what is released.
    archive.index();
    archive.resign(|t| set_field(&t, "Date", "Thu, 01 Jan 2026 00:00:00 UTC"));
    refused(
        "older",
        &["sync", "vol"],
        &[
            "Date Thu, 01 Jan 2026 00:00:00 UTC is older than that of the current release #1",
            "--allow-older",
        ],
    );
    // The operator says the upstream went back on purpose.
    let out = env.update_ok(&["sync", "vol", "--allow-older"]);
    assert!(out.contains("released vol #2"), "{out}");
    assert_eq!(env.current(), Some(2));

    // Validly signed, but for another suite.
    archive.index();
    archive.resign(|t| set_field(&set_field(&t, "Suite", "testing"), "Codename", "trixie"));
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "Suite `testing` and Codename `trixie` do not name the configured suite `stable`"
        ),
        "{err}"
    );
    assert_eq!(env.current(), Some(2), "nothing released");
    // Either field naming the suite is enough (Debian's `stable` is
    // Codename `bookworm`).
    archive.index();
    archive.resign(|t| set_field(&t, "Suite", "testing"));
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(3));
}

/// Signs `repo`'s repomd.xml again with the key `yum_upstream` made in `dir`.
fn yum_resign(dir: &Path, repo: &Path) {
    let repomd = repo.join("repodata/repomd.xml");
    run(Command::new("gpg")
        .env("GNUPGHOME", dir.join("gnupg"))
        .args(["--batch", "--quiet", "--yes", "--passphrase", ""])
        .args(["--detach-sign", "--armor", "-o"])
        .arg(format!("{}.asc", repomd.display()))
        .arg(&repomd));
}

/// Indexes `repo` again with createrepo_c (`args` added) and signs it.
pub(crate) fn yum_reindex(dir: &Path, repo: &Path, args: &[&str]) {
    run(Command::new("createrepo_c").arg("-q").args(args).arg(repo));
    yum_resign(dir, repo);
}

#[test]
fn a_repomd_whose_revision_goes_backwards_releases_nothing_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = yum_upstream(dir.path());
    yum_reindex(dir.path(), &repo, &["--revision", "2000"]);
    let upstream = Upstream::serve(&yum_root(dir.path()));
    let env = yum_env(&upstream, &key);
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(1));

    yum_reindex(dir.path(), &repo, &["--revision", "1000"]);
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{YUM_REPO}/repodata/repomd.xml: revision 1000 is older than that of the current release #1 (2000)"
        )) && err.contains("--allow-older")
            && err.contains("nothing was released"),
        "{err}"
    );
    assert_eq!(env.current(), Some(1), "nothing released");
    env.update_ok(&["sync", "vol", "--allow-older"]);
    assert_eq!(env.current(), Some(2));
    assert!(
        String::from_utf8(
            released_file(&env, 2, &format!("{YUM_REPO}/repodata/repomd.xml")).unwrap()
        )
        .unwrap()
        .contains("<revision>1000</revision>")
    );
}

/// Each repository is mirrored at its path under the mirror root, so a
/// client's URL is the upstream's with the host swapped, and a repository
/// added later moves none of the others. Each repository's `repomd.xml`
/// is held against its own in the current release.
#[test]
fn yum_repositories_are_mirrored_at_their_paths_and_a_new_one_moves_none() {
    const APPSTREAM: &str = "9-stream/AppStream/x86_64/os";
    const NEXT: &str = "10-stream/BaseOS/x86_64/os";
    let dir = tempfile::tempdir().unwrap();
    let key = yum_key(dir.path());
    yum_repo(
        dir.path(),
        YUM_REPO,
        &["greet-lib"],
        &["--revision", "2000"],
    );
    let app = yum_repo(dir.path(), APPSTREAM, &["greet"], &["--revision", "1000"]);
    // Lower than both: held against the others' it would be refused.
    yum_repo(
        dir.path(),
        NEXT,
        &["greet", "greet-lib"],
        &["--revision", "500"],
    );
    let root = yum_root(dir.path());
    let upstream = Upstream::serve(&root);
    let env = yum_env_repos(&upstream, &key, &[YUM_REPO, APPSTREAM]);
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(1));

    let d = Daemon::start(&env);
    let files = [
        format!("{YUM_REPO}/repodata/repomd.xml"),
        format!("{YUM_REPO}/repodata/repomd.xml.asc"),
        format!("{YUM_REPO}/Packages/greet-lib-1.0-1.noarch.rpm"),
        format!("{APPSTREAM}/repodata/repomd.xml"),
        format!("{APPSTREAM}/repodata/repomd.xml.asc"),
        format!("{APPSTREAM}/Packages/greet-1.0-1.noarch.rpm"),
    ];
    let served_as_upstream = |f: &str| {
        let r = d.get(&format!("/vol/{f}"));
        assert_eq!(r.status, 200, "{f}");
        assert!(r.body == fs::read(root.join(f)).unwrap(), "{f}");
    };
    files.iter().for_each(|f| served_as_upstream(f));
    assert_eq!(
        d.get("/vol/repodata/repomd.xml").status,
        404,
        "nothing at the root"
    );
    // dnf resolves greet (AppStream) with greet-lib (BaseOS), each
    // repository verified against the key.
    let repo_file = format!(
        "[baseos]\nname=b\nbaseurl=http://{a}/vol/{YUM_REPO}/\ngpgcheck=0\nrepo_gpgcheck=1\ngpgkey=file://{k}\n\n\
         [appstream]\nname=a\nbaseurl=http://{a}/vol/{APPSTREAM}/\ngpgcheck=0\nrepo_gpgcheck=1\ngpgkey=file://{k}\n",
        a = d.addr,
        k = key.display()
    );
    let dl = env.path().join("dl");
    dnf_downloads_greet(&env.path().join("dnf"), &repo_file, &dl);
    for rpm in ["greet-1.0-1.noarch.rpm", "greet-lib-1.0-1.noarch.rpm"] {
        assert!(dl.join(rpm).is_file(), "{rpm}");
    }

    // A third repository: the first two keep their paths and bytes.
    let two = format!("repos = {:?}", [YUM_REPO, APPSTREAM]);
    let three = format!("repos = {:?}", [YUM_REPO, APPSTREAM, NEXT]);
    let text = fs::read_to_string(env.config()).unwrap();
    assert!(text.contains(&two), "{text}");
    fs::write(env.config(), text.replace(&two, &three)).unwrap();
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(2));
    wait_for("release #2 served", 10, || {
        d.get(&format!("/vol/{NEXT}/repodata/repomd.xml")).status == 200
    });
    for f in &files {
        assert_eq!(released_file(&env, 2, f), released_file(&env, 1, f), "{f}");
        served_as_upstream(f);
    }
    served_as_upstream(&format!("{NEXT}/Packages/greet-1.0-1.noarch.rpm"));
    // Fidelity: every file of the upstream's three repositories is at its
    // path under the prefix, byte for byte.
    let all: Vec<_> = walk(&root).into_iter().filter(|p| p.is_file()).collect();
    assert!(all.len() >= 3 * 6, "{} files", all.len());
    for file in all {
        served_as_upstream(file.strip_prefix(&root).unwrap().to_str().unwrap());
    }

    // AppStream going back is refused, against AppStream's own revision.
    yum_reindex(dir.path(), &app, &["--revision", "999"]);
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{APPSTREAM}/repodata/repomd.xml: revision 999 is older than that of the current release #2 (1000)"
        )),
        "{err}"
    );
    assert_eq!(env.current(), Some(2));
}

/// `/` shows one dnf section per repository, with `repo_gpgcheck=1` and
/// `gpgkey=` at `/-/keys/<volume>.gpg`, which serves the key the volume is
/// verified with; dnf works with the section as shown.
#[test]
fn yum_home_page_shows_a_dnf_section_per_repository_that_dnf_uses_verbatim() {
    const APPSTREAM: &str = "9-stream/AppStream/x86_64/os";
    let dir = tempfile::tempdir().unwrap();
    let key = yum_key(dir.path());
    yum_repo(dir.path(), YUM_REPO, &["greet-lib"], &[]);
    yum_repo(dir.path(), APPSTREAM, &["greet"], &[]);
    let upstream = Upstream::serve(&yum_root(dir.path()));
    let env = yum_env_repos(&upstream, &key, &[YUM_REPO, APPSTREAM]);
    env.update_ok(&["sync", "vol"]);
    let d = Daemon::start(&env);

    let k = d.get("/-/keys/vol.gpg");
    assert_eq!(k.status, 200);
    assert_eq!(k.header("content-type"), Some("application/pgp-keys"));
    assert!(k.body == fs::read(&key).unwrap());
    let h = d.request("HEAD", "/-/keys/vol.gpg", &[]);
    assert_eq!((h.status, h.body.len()), (200, 0));
    for missing in [
        "/-/keys/nope.gpg",
        "/-/keys/vol",
        "/-/keys/vol.asc",
        "/-/",
        "/-/vol.gpg",
    ] {
        assert_eq!(d.get(missing).status, 404, "{missing}");
    }

    let host = d.addr.to_string();
    let page = d.request("GET", "/", &[("Host", &host)]).text();
    let section = |repo: &str| {
        format!(
            "[vol-{id}]\nname=vol {repo} (unimirror)\nbaseurl=http://{host}/vol/{repo}/\ngpgcheck=1\nrepo_gpgcheck=1\ngpgkey=http://{host}/-/keys/vol.gpg",
            id = repo.replace('/', "-")
        )
    };
    for repo in [YUM_REPO, APPSTREAM] {
        assert!(page.contains(&section(repo)), "{repo}:\n{page}");
    }
    // The volume's block, as a browser shows it, is the .repo file.
    let repo_file = home_block(&page, "vol");
    assert!(
        repo_file.starts_with("# /etc/yum.repos.d/vol.repo\n"),
        "{repo_file}"
    );
    // dnf fetches the key from the mirror and verifies both repomd.xml
    // with it (the fixture rpms are unsigned, and `download` does not
    // check them).
    let dl = env.path().join("dl");
    dnf_downloads_greet(&env.path().join("dnf"), &repo_file, &dl);
    assert!(dl.join("greet-lib-1.0-1.noarch.rpm").is_file());
}

/// Every metadata type `repomd.xml` lists is mirrored byte for byte
/// (primary, filelists, other, their sqlite and zchunk forms, comps plain
/// and compressed, modules, updateinfo), and dnf reads them through the
/// mirror with `repo_gpgcheck` on.
#[test]
fn yum_metadata_of_every_type_is_mirrored_and_dnf_reads_updateinfo_groups_and_modules() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(
        d.join("comps.xml"),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE comps PUBLIC \"-//Red Hat, Inc.//DTD Comps info//EN\" \"comps.dtd\">\n\
         <comps><group><id>greeting</id><name>Greeting Tools</name><description>Packages that greet</description>\
         <default>true</default><uservisible>true</uservisible><packagelist>\
         <packagereq type=\"mandatory\">greet</packagereq></packagelist></group></comps>\n",
    )
    .unwrap();
    let comps = d.join("comps.xml");
    let repo = yum_repo(
        d,
        YUM_REPO,
        &["greet", "greet-lib"],
        &["--zck", "-g", comps.to_str().unwrap()],
    );
    fs::write(
        d.join("updateinfo.xml"),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<updates><update from=\"test@example.invalid\" status=\"stable\" type=\"bugfix\" version=\"1\">\
         <id>GREET-2026-0001</id><title>greet bug fix</title><issued date=\"2026-12-01 00:00:00\"/><description>Fixes greeting.</description>\
         <pkglist><collection short=\"test\"><name>test</name>\
         <package name=\"greet\" version=\"1.0\" release=\"1\" epoch=\"0\" arch=\"noarch\" src=\"greet-1.0-1.src.rpm\">\
         <filename>greet-1.0-1.noarch.rpm</filename></package></collection></pkglist></update></updates>\n",
    )
    .unwrap();
    // A module whose rpm is not in the repository: a module's rpms are
    // hidden until it is enabled, and `greet` must stay installable.
    fs::write(
        d.join("modules.yaml"),
        "---\ndocument: modulemd\nversion: 2\ndata:\n  name: greeter\n  stream: \"1\"\n  version: 1\n  context: c0ffee42\n  arch: noarch\n  summary: greeting module\n  description: A module that greets.\n  license:\n    module: [MIT]\n  artifacts:\n    rpms:\n    - greet-extra-0:1.0-1.noarch\n...\n",
    )
    .unwrap();
    for (file, args) in [
        ("updateinfo.xml", &["--zck"][..]),
        ("modules.yaml", &["--mdtype=modules"][..]),
    ] {
        run(Command::new("modifyrepo_c")
            .args(args)
            .arg(d.join(file))
            .arg(repo.join("repodata")));
    }
    yum_resign(d, &repo);
    let key = yum_key(d);
    let upstream = Upstream::serve(&yum_root(d));
    let env = yum_env(&upstream, &key);
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(1));

    let listed =
        unimirror::sync::yum::parse_repomd(&fs::read(repo.join("repodata/repomd.xml")).unwrap())
            .unwrap();
    let kinds: Vec<&str> = listed.iter().filter_map(|l| l.kind.as_deref()).collect();
    for kind in [
        "primary",
        "filelists",
        "other",
        "primary_zck",
        "filelists_zck",
        "other_zck",
        "group",
        "group_gz",
        "group_zck",
        "modules",
        "updateinfo",
        "updateinfo_zck",
    ] {
        assert!(kinds.contains(&kind), "the fixture lists {kind}: {kinds:?}");
    }
    for l in &listed {
        assert_eq!(
            released_file(&env, 1, &format!("{YUM_REPO}/{}", l.href)),
            Some(fs::read(repo.join(&l.href)).unwrap()),
            "{:?} {}",
            l.kind,
            l.href
        );
    }

    let daemon = Daemon::start(&env);
    let root = env.path().join("dnf");
    let dnf_ok = |args: &[&str]| {
        let o = dnf(&root, &yum_baseurl(&daemon), &key, args);
        assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
        stdout(&o)
    };
    let groups = dnf_ok(&["group", "list"]);
    assert!(groups.contains("Greeting Tools"), "{groups}");
    let modules = dnf_ok(&["module", "list"]);
    assert!(
        modules.contains("greeter") && modules.contains("greeting module"),
        "{modules}"
    );
    // dnf lists the advisories of what is installed.
    dnf_ok(&["install", "greet"]);
    let advisories = dnf_ok(&["updateinfo", "list", "--all"]);
    assert!(
        advisories.contains("GREET-2026-0001") && advisories.contains("greet-1.0-1.noarch"),
        "{advisories}"
    );
}

/// sha256 and sha512 tie files to `repomd.xml`; anything weaker is refused
/// before anything is fetched, naming the file and the type.
#[test]
fn yum_checksums_must_be_sha256_or_sha512() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = yum_upstream(dir.path());
    yum_reindex(dir.path(), &repo, &["-s", "sha1"]);
    let upstream = Upstream::serve(&yum_root(dir.path()));
    let env = yum_env(&upstream, &key);
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("repository {YUM_REPO} ("))
            && err.contains("caused by: repomd.xml\n")
            && err.contains(
                "-primary.xml.gz: checksum type `sha1` is refused (sha256 or sha512 are accepted)"
            ),
        "{err}"
    );
    assert_eq!(env.current(), None);
    assert!(
        !env.path()
            .join("staging/vol")
            .join(YUM_REPO)
            .join("Packages")
            .exists(),
        "no package was fetched"
    );

    // sha512: each file is checked against it. A package changed after
    // indexing (same size) is refused ...
    yum_reindex(dir.path(), &repo, &["-s", "sha512"]);
    let rpm = repo.join("Packages/greet-lib-1.0-1.noarch.rpm");
    let good = fs::read(&rpm).unwrap();
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 1;
    fs::write(&rpm, &bad).unwrap();
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "greet-lib-1.0-1.noarch.rpm: expected {} bytes with sha512 ",
            good.len()
        )),
        "{err}"
    );
    assert_eq!(env.current(), None);
    // ... and the right one released, and read by dnf.
    fs::write(&rpm, &good).unwrap();
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(1));
    let d = Daemon::start(&env);
    let dl = env.path().join("dl");
    let repo_file = one_repo(&yum_baseurl(&d), &key);
    dnf_downloads_greet(&env.path().join("dnf"), &repo_file, &dl);
    assert_eq!(
        fs::read(dl.join("greet-lib-1.0-1.noarch.rpm")).unwrap(),
        good
    );
}

#[test]
fn release_and_release_gpg_beside_inrelease_are_published_only_when_they_verify_and_match() {
    let dir = tempfile::tempdir().unwrap();
    let archive = AptArchive::new(dir.path());
    let dist = archive.archive().join("dists/stable");
    let upstream = Upstream::serve(&archive.archive());
    let env = apt_env(&upstream, &archive.keyring, "");
    let staged = env.path().join("staging/vol/dists/stable");

    // A Release that is not what InRelease signed (nor what Release.gpg did).
    fs::write(dist.join("Release"), "GARBAGE\n").unwrap();
    let out = env.update_ok(&["sync", "vol"]);
    assert!(
        out.contains("not published: dists/stable/Release and dists/stable/Release.gpg: Release differs from the text InRelease signed"),
        "{out}"
    );
    assert_eq!(env.current(), Some(1));
    for f in ["Release", "Release.gpg"] {
        assert!(
            released_file(&env, 1, &format!("dists/stable/{f}")).is_none(),
            "{f}"
        );
        assert!(!staged.join(f).exists(), "{f}");
    }
    let d = Daemon::start(&env);
    assert_eq!(d.get("/vol/dists/stable/Release").status, 404);
    assert_eq!(d.get("/vol/dists/stable/Release.gpg").status, 404);
    assert_eq!(d.get("/vol/dists/stable/InRelease").status, 200);
    // Clients of InRelease are not affected.
    let apt = env.path().join("apt");
    let source = apt_source(&d, &archive.keyring);
    let o = apt_get(&apt, &source, &["update"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));

    // The text InRelease signed, with a Release.gpg that is a signature of
    // something else (what gpgv calls a BAD signature). A field of its own
    // makes this a new upstream state even within the same second (the
    // Date and the ed25519 signatures would otherwise come out the same).
    archive.index();
    archive.resign(|t| format!("Label: round two\n{t}"));
    let other = dir.path().join("other");
    fs::write(&other, "something else\n").unwrap();
    archive.gpg(&[
        "--detach-sign",
        "--armor",
        "-o",
        dist.join("Release.gpg").to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    let out = env.update_ok(&["sync", "vol"]);
    assert!(
        out.contains("not published: dists/stable/Release and dists/stable/Release.gpg: Release.gpg does not verify over Release with the keyring"),
        "{out}"
    );
    assert_eq!(env.current(), Some(2));
    for f in ["Release", "Release.gpg"] {
        assert!(
            released_file(&env, 2, &format!("dists/stable/{f}")).is_none(),
            "{f}"
        );
    }

    // A pair that verifies and matches: published, byte for byte.
    archive.index();
    let out = env.update_ok(&["sync", "vol"]);
    assert!(!out.contains("not published"), "{out}");
    assert_eq!(env.current(), Some(3));
    for f in ["Release", "Release.gpg"] {
        assert_eq!(
            released_file(&env, 3, &format!("dists/stable/{f}")).unwrap(),
            fs::read(dist.join(f)).unwrap(),
            "{f}"
        );
        let r = d.get(&format!("/vol/@3/dists/stable/{f}"));
        assert_eq!(r.status, 200, "{f}");
        assert_eq!(r.body, fs::read(dist.join(f)).unwrap(), "{f}");
    }
}

#[test]
fn core_metadata_without_an_upstream_hash_is_neither_mirrored_nor_advertised() {
    let dir = tempfile::tempdir().unwrap();
    let root = pypi_upstream(dir.path());
    // greet-lib's wheel: core metadata announced without a hash.
    let page = root.join("simple/greet-lib/index.html");
    let html = fs::read_to_string(&page).unwrap();
    let start = html.find("data-dist-info-metadata=\"sha256=").unwrap();
    let end = start + html[start..].find("\">").unwrap() + 1;
    fs::write(
        &page,
        format!(
            "{}data-dist-info-metadata=\"true\"{}",
            &html[..start],
            &html[end..]
        ),
    )
    .unwrap();
    let upstream = Upstream::serve(&root);
    let env = Env::new();
    set_upstream(
        &env,
        &format!(
            "type = \"pypi\"\nurl = \"{}simple/\"\nprojects = [\"greet\", \"greet-lib\"]",
            upstream.url()
        ),
    );
    let out = env.update_ok(&["sync", "vol"]);
    assert!(
        out.contains("not published: files/greet_lib-1.0-py3-none-any.whl.metadata: the upstream gives no sha256"),
        "{out}"
    );
    let d = Daemon::start(&env);
    let unhashed = "/vol/files/greet_lib-1.0-py3-none-any.whl.metadata";
    assert_eq!(d.get(unhashed).status, 404);
    assert!(!env.path().join("staging").join(&unhashed[5..]).exists());
    let page = d.get("/vol/simple/greet-lib/").text();
    assert!(page.contains("greet_lib-1.0-py3-none-any.whl"), "{page}");
    assert!(
        !page.contains("core-metadata") && !page.contains("dist-info-metadata"),
        "{page}"
    );
    let json = d.request(
        "GET",
        "/vol/simple/greet-lib/",
        &[("Accept", "application/vnd.pypi.simple.v1+json")],
    );
    let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    for f in v["files"].as_array().unwrap() {
        assert!(f.get("core-metadata").is_none(), "{f}");
        assert!(f.get("dist-info-metadata").is_none(), "{f}");
    }

    // With the upstream's hash: mirrored and advertised with that hash.
    let meta = fs::read(root.join("files/greet-1.0-py3-none-any.whl.metadata")).unwrap();
    let sha = unimirror::volume::manifest::Sha256Digest::of(&meta);
    let page = d.get("/vol/simple/greet/").text();
    assert!(
        page.contains(&format!("data-core-metadata=\"sha256={sha}\"")),
        "{page}"
    );
    let r = d.get("/vol/files/greet-1.0-py3-none-any.whl.metadata");
    assert_eq!((r.status, r.body), (200, meta));

    // pip resolves both (reading greet-lib's metadata from its wheel).
    let index = format!("http://{}/vol/simple/", d.addr);
    greet_installs(
        &env,
        "site",
        Path::new("/dev/null"),
        &["--index-url", &index],
    );
}

#[test]
fn an_index_form_the_upstream_drops_leaves_the_release_and_apt_still_updates() {
    let dir = tempfile::tempdir().unwrap();
    let archive = AptArchive::new(dir.path());
    let upstream = Upstream::serve(&archive.archive());
    let env = apt_env(&upstream, &archive.keyring, "");
    env.update_ok(&["sync", "vol"]);
    let gz = "main/binary-amd64/Packages.gz";
    assert!(assert_dists_as_listed(&env, 1).contains(&gz.to_string()));
    let staged = env.path().join("staging/vol/dists/stable").join(gz);
    let old_gz = fs::read(&staged).unwrap();

    // A new package; the upstream lists Packages.gz with its new hash but
    // no longer serves it (a 404 for one listed form).
    deb(dir.path(), "extra", "2.0", None);
    archive.index();
    let dist = archive.archive().join("dists/stable");
    fs::remove_file(dist.join(gz)).unwrap();
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(2));
    let indexes = assert_dists_as_listed(&env, 2);
    assert!(!indexes.contains(&gz.to_string()), "{indexes:?}");
    assert!(indexes.contains(&"main/binary-amd64/Packages".to_string()));
    assert!(
        !staged.exists(),
        "the stale Packages.gz is gone from staging too"
    );
    let old_sha = unimirror::volume::manifest::Sha256Digest::of(&old_gz).hex();
    assert!(
        !released_below(&env, 2, "dists/stable")
            .iter()
            .any(|(_, h)| *h == old_sha),
        "the old Packages.gz under no name"
    );

    // Then it no longer lists it either.
    archive.resign(|t| {
        t.lines()
            .filter(|l| !l.ends_with(gz))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(3));
    let indexes = assert_dists_as_listed(&env, 3);
    assert!(!indexes.contains(&gz.to_string()), "{indexes:?}");

    // apt, signatures checked, through the daemon.
    let d = Daemon::start(&env);
    let apt = env.path().join("apt");
    let source = apt_source(&d, &archive.keyring);
    let o = apt_get(&apt, &source, &["update"]);
    let log = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        o.status.success() && !log.contains("Ign:") && !log.contains("W:"),
        "{log}"
    );
    let o = apt_get(
        &apt,
        &source,
        &["install", "--download-only", "-y", "extra"],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn repodata_files_repomd_no_longer_lists_leave_the_release() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = yum_upstream(dir.path());
    let upstream = Upstream::serve(&yum_root(dir.path()));
    let env = yum_env(&upstream, &key);
    env.update_ok(&["sync", "vol"]);
    let listed = |id: u64| -> Vec<String> {
        let repomd = released_file(&env, id, &format!("{YUM_REPO}/repodata/repomd.xml")).unwrap();
        unimirror::sync::yum::parse_repomd(&repomd)
            .unwrap()
            .into_iter()
            .map(|l| l.href.strip_prefix("repodata/").unwrap().to_string())
            .collect()
    };
    let first = listed(1);

    // The same packages, indexed again with another compression: every
    // metadata file has a new name, and the old ones are gone upstream.
    yum_reindex(dir.path(), &repo, &["--general-compress-type", "xz"]);
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(2));
    let now = listed(2);
    assert!(first.iter().all(|f| !now.contains(f)), "{first:?} {now:?}");
    let mut released: Vec<String> = released_below(&env, 2, &format!("{YUM_REPO}/repodata"))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    released.sort();
    let mut expected = now.clone();
    expected.extend(["repomd.xml".to_string(), "repomd.xml.asc".to_string()]);
    expected.sort();
    assert_eq!(
        released, expected,
        "release #2's repodata is what repomd.xml lists"
    );

    let d = Daemon::start(&env);
    let o = dnf(
        &env.path().join("dnf"),
        &yum_baseurl(&d),
        &key,
        &["makecache"],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

/// A PyPI-style upstream with `greet-lib` 1.0, 2.0 and 3.0 as wheels (made
/// with zipfile: pip reads them, no build needed), each with core metadata.
fn pypi_versions_upstream(dir: &Path) -> PathBuf {
    let files = dir.join("upstream/files");
    fs::create_dir_all(&files).unwrap();
    let script = r#"
import base64, hashlib, sys, zipfile
out, version = sys.argv[1], sys.argv[2]
info = f"greet_lib-{version}.dist-info"
content = {
    "greet_lib/__init__.py": f"VERSION = {version!r}\n",
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: greet-lib\nVersion: {version}\n",
    f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = "".join(
    f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(c.encode()).digest()).rstrip(b'=').decode()},{len(c.encode())}\n"
    for n, c in content.items()
) + f"{info}/RECORD,,\n"
name = f"greet_lib-{version}-py3-none-any.whl"
with zipfile.ZipFile(f"{out}/{name}", "w") as z:
    for n, c in content.items():
        z.writestr(n, c)
    z.writestr(f"{info}/RECORD", record)
with open(f"{out}/{name}.metadata", "w") as f:
    f.write(content[f"{info}/METADATA"])
"#;
    let mut html = String::from("<!DOCTYPE html><html><body>\n");
    for version in ["1.0", "2.0", "3.0"] {
        run(Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&files)
            .arg(version));
        let f = format!("greet_lib-{version}-py3-none-any.whl");
        let sha = unimirror::volume::manifest::Sha256Digest::of(&fs::read(files.join(&f)).unwrap());
        let msha = unimirror::volume::manifest::Sha256Digest::of(
            &fs::read(files.join(format!("{f}.metadata"))).unwrap(),
        );
        html += &format!(
            "<a href=\"../../files/{f}#sha256={sha}\" data-core-metadata=\"sha256={msha}\">{f}</a><br>\n"
        );
    }
    html += "</body></html>\n";
    let simple = dir.join("upstream/simple/greet-lib");
    fs::create_dir_all(&simple).unwrap();
    fs::write(simple.join("index.html"), html).unwrap();
    dir.join("upstream")
}

#[test]
fn a_filter_change_makes_one_release_without_the_dropped_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = pypi_versions_upstream(dir.path());
    let upstream = Upstream::serve(&root);
    let env = Env::new();
    set_upstream(
        &env,
        &format!(
            "type = \"pypi\"\nurl = \"{}simple/\"\nprojects = [\"greet-lib\"]\nlatest = 3",
            upstream.url()
        ),
    );
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(1));
    let dropped = "files/greet_lib-1.0-py3-none-any.whl";
    assert!(released_file(&env, 1, dropped).is_some());

    let config = fs::read_to_string(env.config()).unwrap();
    fs::write(env.config(), config.replace("latest = 3", "latest = 2")).unwrap();
    let out = env.update_ok(&["sync", "vol"]);
    assert!(
        out.contains("2 pruned"),
        "the wheel and its metadata: {out}"
    );
    assert!(out.contains("released vol #2"), "{out}");
    assert_eq!(env.current(), Some(2));
    for f in [dropped.to_string(), format!("{dropped}.metadata")] {
        assert!(released_file(&env, 2, &f).is_none(), "{f} is in release #2");
    }
    for kept in ["2.0", "3.0"] {
        let f = format!("files/greet_lib-{kept}-py3-none-any.whl");
        assert!(released_file(&env, 2, &f).is_some(), "{f}");
    }
    let d = Daemon::start(&env);
    // The new release has neither the file nor a link to it. (Unpinned
    // paths that only an earlier release has are still answered from it
    // during the grace period, by design: clients holding the old page.)
    assert_eq!(d.get(&format!("/vol/@2/{dropped}")).status, 404);
    assert_eq!(d.get(&format!("/vol/@2/{dropped}.metadata")).status, 404);
    let page = d.get("/vol/simple/greet-lib/");
    assert_eq!(page.header("x-unimirror-release"), Some("2"));
    assert!(!page.text().contains("greet_lib-1.0"), "{}", page.text());
    assert!(page.text().contains("greet_lib-2.0"), "{}", page.text());

    // Nothing changed: no release.
    let out = env.update_ok(&["sync", "vol"]);
    assert!(
        out.contains("0 pruned") && out.contains("nothing released"),
        "{out}"
    );
    assert_eq!(env.current(), Some(2));
}

/// An archive signed while its key was valid, by a key that expired in
/// 2020: gpgv exits 0 on it (EXPKEYSIG), apt refuses it, and so does the
/// sync, through `InRelease` and through `Release.gpg` alike.
#[test]
fn an_upstream_signed_by_an_expired_key_releases_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let archive = AptArchive::new(dir.path());
    let uid = "expired archive <old@example.invalid>";
    let in_2019 = |args: &[&str]| {
        let mut all = vec!["--faked-system-time", "20190601T000000"];
        all.extend(args);
        archive.gpg(&all);
    };
    archive.gpg(
        &["--faked-system-time", "20190101T000000"]
            .iter()
            .chain(&["--quick-gen-key", uid, "ed25519", "sign", "1y"])
            .copied()
            .collect::<Vec<_>>(),
    );
    let keyring = dir.path().join("expired.gpg");
    fs::write(&keyring, archive.gpg_output(&["--export", uid])).unwrap();
    let dist = archive.archive().join("dists/stable");
    let (inrelease, release, release_gpg) = (
        dist.join("InRelease"),
        dist.join("Release"),
        dist.join("Release.gpg"),
    );
    let [i, r, g] = [&inrelease, &release, &release_gpg].map(|p| p.to_str().unwrap());
    in_2019(&["--local-user", uid, "--clearsign", "-o", i, r]);
    in_2019(&["--local-user", uid, "--armor", "--detach-sign", "-o", g, r]);
    let upstream = Upstream::serve(&archive.archive());
    let env = apt_env(&upstream, &keyring, "");

    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("InRelease") && err.contains("the key expired on 2020-01-01"),
        "{err}"
    );
    assert_eq!(env.current(), None, "nothing released");

    fs::remove_file(&inrelease).unwrap();
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("Release.gpg") && err.contains("the key expired on 2020-01-01"),
        "{err}"
    );
    assert_eq!(env.current(), None, "nothing released");
}

// ---------------------------------------------------------------------------
// Hostile upstreams: redirects, foreign URLs, oversized and endless
// downloads, compression bombs, symlinks in a build output.

/// Appends lines to the `[sync]` table `set_upstream` left at the end.
fn add_sync_settings(env: &Env, lines: &str) {
    let text = fs::read_to_string(env.config()).unwrap();
    fs::write(env.config(), format!("{text}{lines}\n")).unwrap();
}

/// A plain-HTTP server answering every GET with a redirect to `target`
/// plus the path.
fn redirector(target: &str) -> Upstream {
    let script = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", sys.argv[1] + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print("Redirecting on 127.0.0.1 port", s.server_address[1], flush=True)
s.serve_forever()
"#;
    Upstream::python(script, &[target.as_ref()])
}

#[test]
fn a_redirect_to_another_port_is_refused_and_to_an_allowed_host_followed() {
    let dir = tempfile::tempdir().unwrap();
    let root = pypi_upstream(dir.path());
    let upstream = Upstream::serve(&root);
    // The same host, another port: another service.
    let target = format!("http://127.0.0.1:{}", upstream.port);
    let redirecting = redirector(&target);
    let env = Env::new();
    set_upstream(
        &env,
        &format!(
            "type = \"pypi\"\nurl = \"{}simple/\"\nprojects = [\"greet-lib\"]",
            redirecting.url()
        ),
    );
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "refusing a redirect from {}simple/greet-lib/ to {target}/simple/greet-lib/: another host or port",
            redirecting.url()
        )),
        "{err}"
    );
    assert_eq!(env.current(), None, "nothing released");

    // Listed with its port: followed, for the pages and the files alike.
    add_sync_settings(
        &env,
        &format!("allow_redirect_hosts = [\"127.0.0.1:{}\"]", upstream.port),
    );
    let out = env.update_ok(&["sync", "vol"]);
    assert!(out.contains("synced vol"), "{out}");
    assert_eq!(env.current(), Some(1));
    let staged = env.path().join("staging/vol/files");
    assert_eq!(
        fs::read(staged.join("greet_lib-1.0-py3-none-any.whl")).unwrap(),
        fs::read(root.join("files/greet_lib-1.0-py3-none-any.whl")).unwrap()
    );
}

/// Runs `apt-ftparchive release` over the suite again and signs it, after
/// a test changed its indexes by hand.
fn resign(a: &AptArchive) {
    let dist = a.archive().join("dists/stable");
    for f in ["Release", "InRelease", "Release.gpg"] {
        let _ = fs::remove_file(dist.join(f));
    }
    let release = Command::new("apt-ftparchive")
        .args([
            "-o",
            "APT::FTPArchive::Release::Suite=stable",
            "-o",
            "APT::FTPArchive::Release::Components=main",
            "-o",
            "APT::FTPArchive::Release::Architectures=amd64",
            "release",
        ])
        .arg(&dist)
        .output()
        .unwrap();
    assert!(release.status.success());
    fs::write(dist.join("Release"), &release.stdout).unwrap();
    let d = dist.to_str().unwrap();
    a.gpg(&[
        "--clearsign",
        "-o",
        &format!("{d}/InRelease"),
        &format!("{d}/Release"),
    ]);
}

/// Replaces the suite's `main/binary-amd64/Packages` by `packages`, in
/// its `.gz` form only, and signs the suite again.
fn replace_packages(a: &AptArchive, packages_gz: &[u8]) {
    let bin = a.archive().join("dists/stable/main/binary-amd64");
    let _ = fs::remove_file(bin.join("Packages"));
    fs::write(bin.join("Packages.gz"), packages_gz).unwrap();
    resign(a);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn an_absolute_filename_or_a_foreign_pypi_link_is_refused_and_nothing_released() {
    // apt: a signed Packages naming a pool file by a URL on another host.
    let dir = tempfile::tempdir().unwrap();
    let archive = AptArchive::new(dir.path());
    let bin = archive.archive().join("dists/stable/main/binary-amd64");
    let packages = fs::read_to_string(bin.join("Packages")).unwrap();
    assert!(packages.contains("Filename: pool/main/g/greet/greet_1.0_all.deb"));
    let foreign = packages.replace(
        "Filename: pool/main/g/greet/greet_1.0_all.deb",
        "Filename: https://other.example/x.deb",
    );
    replace_packages(&archive, &gzip(foreign.as_bytes()));
    let upstream = Upstream::serve(&archive.archive());
    let env = apt_env(&upstream, &archive.keyring, "");
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "refusing the path `https://other.example/x.deb` from upstream metadata: a URL"
        ),
        "{err}"
    );
    assert_eq!(env.current(), None, "nothing released");

    // PyPI: a project page linking a file on another host (here another
    // port of the same one), which `allow_file_hosts` does not name.
    let root = pypi_upstream(&dir.path().join("pypi"));
    let elsewhere = Upstream::serve(&root);
    let page = root.join("simple/greet-lib/index.html");
    let html = fs::read_to_string(&page).unwrap().replace(
        "../../files/",
        &format!("http://127.0.0.1:{}/files/", elsewhere.port),
    );
    fs::write(&page, html).unwrap();
    let upstream = Upstream::serve(&root);
    let env = Env::new();
    let base = fs::read_to_string(env.config()).unwrap();
    let pypi = format!(
        "type = \"pypi\"\nurl = \"{}simple/\"\nprojects = [\"greet-lib\"]",
        upstream.url()
    );
    set_upstream(&env, &pypi);
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "refusing the file URL http://127.0.0.1:{}/files/",
            elsewhere.port
        )) && err.contains("allow_file_hosts"),
        "{err}"
    );
    assert!(
        !env.path().join("staging/vol/files").exists(),
        "nothing fetched"
    );
    assert_eq!(env.current(), None, "nothing released");
    // Allowed by the upstream's config: fetched from there.
    fs::write(env.config(), base).unwrap();
    set_upstream(
        &env,
        &format!(
            "{pypi}\nallow_file_hosts = [\"127.0.0.1:{}\"]",
            elsewhere.port
        ),
    );
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(1));
}

/// A PyPI-style upstream that lists one file per project (1000 bytes of
/// `x`, sha256 included) and misbehaves when asked for it:
/// - `sized` (PEP 691 JSON with the size) and `unsized` (PEP 503 HTML,
///   no size): the file is 4 MiB, not 1000 bytes;
/// - `drip`: the right 1000 bytes, one per second.
fn misbehaving_upstream() -> Upstream {
    let script = r#"
import hashlib, http.server, json, time
body = b"x" * 1000
sha = hashlib.sha256(body).hexdigest()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        name = self.path.strip("/").split("/")[-1]
        if self.path.startswith("/simple/sized/"):
            files = [{"filename": "sized-1.0.tar.gz", "url": "/files/sized/sized-1.0.tar.gz",
                      "hashes": {"sha256": sha}, "size": len(body)}]
            page = json.dumps({"meta": {"api-version": "1.1"}, "name": "sized", "files": files}).encode()
            ctype = "application/vnd.pypi.simple.v1+json"
        elif self.path.startswith("/simple/"):
            project = self.path.split("/")[2]
            page = f'<a href="/files/{project}/{project}-1.0.tar.gz#sha256={sha}">{project}-1.0.tar.gz</a>'.encode()
            ctype = "text/html"
        elif self.path.startswith("/files/drip/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for b in body:
                self.wfile.write(bytes([b]))
                self.wfile.flush()
                time.sleep(1)
            return
        elif self.path.startswith("/files/"):
            # No Content-Length: the size shows only as the bytes come.
            self.send_response(200)
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"x" * 65536)
            return
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print("Misbehaving on 127.0.0.1 port", s.server_address[1], flush=True)
s.serve_forever()
"#;
    Upstream::python(script, &[])
}

/// An env syncing `project` from `upstream` with extra `[sync]` lines.
fn misbehaving_env(upstream: &Upstream, project: &str, sync: &str) -> Env {
    let env = Env::new();
    set_upstream(
        &env,
        &format!(
            "type = \"pypi\"\nurl = \"{}simple/\"\nprojects = [\"{project}\"]",
            upstream.url()
        ),
    );
    add_sync_settings(&env, sync);
    env
}

/// Nothing of a cut-off download is left behind, in the tree or in the
/// temporary directory.
fn assert_no_partial_download(env: &Env) {
    let tmp = env.path().join("staging/.tmp-vol");
    let left: Vec<_> = fs::read_dir(&tmp)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    assert!(!env.path().join("staging/vol/files").exists());
}

#[test]
fn a_file_longer_than_its_index_size_is_aborted_while_streaming() {
    let upstream = misbehaving_upstream();
    let env = misbehaving_env(&upstream, "sized", "");
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}files/sized/sized-1.0.tar.gz: more than the 1000 bytes its index lists; aborted",
            upstream.url()
        )),
        "{err}"
    );
    assert_eq!(env.current(), None);
    assert_no_partial_download(&env);
}

#[test]
fn a_file_of_unknown_size_past_max_download_size_is_aborted() {
    let upstream = misbehaving_upstream();
    let env = misbehaving_env(&upstream, "unsized", "max_download_size = \"64KiB\"");
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "unsized-1.0.tar.gz: larger than sync.max_download_size (65536 bytes); aborted"
        ),
        "{err}"
    );
    assert_eq!(env.current(), None);
    assert_no_partial_download(&env);
}

#[test]
fn a_dripping_upstream_fails_by_the_whole_file_deadline() {
    let upstream = misbehaving_upstream();
    // A byte a second never trips the 30 s no-progress timeout; the
    // whole-file deadline ends it.
    let env = misbehaving_env(
        &upstream,
        "drip",
        "timeout = \"30s\"\ndownload_deadline = \"3s\"",
    );
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("drip-1.0.tar.gz: not finished within 3s (sync.download_deadline)"),
        "{err}"
    );
    assert_eq!(env.current(), None);
    assert_no_partial_download(&env);
}

/// Runs `unimirror-update <args>` and returns its exit status, stderr and
/// peak RSS in KiB. A python3 parent forks it from its own small image and
/// reports its `ru_maxrss`: a child spawned by this process would carry
/// this process's memory in its own peak (Linux records the spawning
/// image's high-water mark at exec), and in the one integration binary
/// that is every test's memory.
fn update_with_peak_rss(env: &Env, args: &[&str]) -> (std::process::ExitStatus, String, i64) {
    use std::os::unix::process::ExitStatusExt;
    let script = r#"
import os, sys
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, status, flush=True)
"#;
    let out = Command::new("python3")
        .args(["-c", script, UPDATE, "--config"])
        .arg(env.config())
        .args(args)
        .env_remove("UNIMIRROR_FAULT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report = stdout(&out);
    let (rss, status) = report
        .trim()
        .split_once(' ')
        .unwrap_or_else(|| panic!("no report from the wrapper: {report:?} {}", stderr(&out)));
    (
        std::process::ExitStatus::from_raw(status.parse().unwrap()),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        rss.parse().unwrap(),
    )
}

/// 256 MiB of zeros behind a few hundred KiB: what a bomb expands to is
/// far more than the 1 MiB allowed, and four times the peak memory the
/// test allows the updater (which needs about 15 MiB), so holding it would
/// show.
const BOMB_MIB: usize = 256;

#[test]
fn compression_bombs_are_refused_past_max_metadata_size_without_the_memory() {
    let dir = tempfile::tempdir().unwrap();
    let limits = "max_metadata_size = \"1MiB\"";

    // apt: a signed Packages.gz (concatenated gzip members, as
    // MultiGzDecoder reads them).
    let archive = AptArchive::new(dir.path());
    let member = gzip(&vec![0u8; 1 << 20]);
    let bomb = member.repeat(BOMB_MIB);
    assert!(bomb.len() < BOMB_MIB << 11, "{} bytes", bomb.len());
    replace_packages(&archive, &bomb);
    let upstream = Upstream::serve(&archive.archive());
    let env = apt_env(&upstream, &archive.keyring, "");
    add_sync_settings(&env, limits);
    let (status, err, rss_kib) = update_with_peak_rss(&env, &["sync", "vol"]);
    assert!(!status.success());
    assert!(
        err.contains(
            "main/binary-amd64/Packages.gz decompresses to more than 1048576 bytes (sync.max_metadata_size); refused"
        ),
        "{err}"
    );
    assert!(rss_kib < 64 << 10, "peak RSS {rss_kib} KiB");
    assert_eq!(env.current(), None);

    // yum: a primary.xml.xz, one xz stream, in the repository `repo`
    // under the mirror root `dir`.
    let repo = dir.path().join("repo");
    fs::create_dir_all(repo.join("repodata")).unwrap();
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 0);
    let zeros = vec![0u8; 1 << 20];
    std::io::Write::write_all(&mut xz, b"<metadata>").unwrap();
    for _ in 0..BOMB_MIB {
        std::io::Write::write_all(&mut xz, &zeros).unwrap();
    }
    let primary = xz.finish().unwrap();
    assert!(primary.len() < BOMB_MIB << 11, "{} bytes", primary.len());
    fs::write(repo.join("repodata/primary.xml.xz"), &primary).unwrap();
    let sha = unimirror::volume::manifest::Sha256Digest::of(&primary);
    fs::write(
        repo.join("repodata/repomd.xml"),
        format!(
            "<repomd><data type=\"primary\"><checksum type=\"sha256\">{sha}</checksum><location href=\"repodata/primary.xml.xz\"/><size>{}</size></data></repomd>",
            primary.len()
        ),
    )
    .unwrap();
    let upstream = Upstream::serve(dir.path());
    let env = Env::new();
    set_upstream(
        &env,
        &format!(
            "type = \"yum\"\nurl = \"{}\"\nrepos = [\"repo\"]",
            upstream.url()
        ),
    );
    add_sync_settings(&env, limits);
    let (status, err, rss_kib) = update_with_peak_rss(&env, &["sync", "vol"]);
    assert!(!status.success());
    assert!(
        err.contains("primary.xml.xz decompresses to more than 1048576 bytes (sync.max_metadata_size); refused"),
        "{err}"
    );
    assert!(rss_kib < 64 << 10, "peak RSS {rss_kib} KiB");
    assert_eq!(env.current(), None);
}

#[test]
fn symlinks_and_fifos_in_the_wheel_build_output_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let built = pypi_upstream(dir.path()).join("files");
    let output = dir.path().join("build-output");
    let platform = output.join("ubuntu-jammy-x86_64");
    fs::create_dir_all(&platform).unwrap();
    let good = "greet-1.0-py3-none-any.whl";
    fs::copy(built.join(good), platform.join(good)).unwrap();
    // A link to a zip the updater can read but nobody built for this
    // platform.
    let link = platform.join("greet_lib-1.0-py3-none-any.whl");
    std::os::unix::fs::symlink(built.join("greet_lib-1.0-py3-none-any.whl"), &link).unwrap();
    let env = Env::new();
    set_upstream(
        &env,
        &format!(
            "type = \"wheel\"\ndirectory = {:?}",
            output.display().to_string()
        ),
    );
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "refusing {}: a symlink, not a regular file",
            link.display()
        )),
        "{err}"
    );
    assert_eq!(env.current(), None);
    assert!(
        !env.path()
            .join("staging/vol/ubuntu-jammy-x86_64/greet-lib")
            .exists()
    );

    // A FIFO: reading it would wait for a writer for ever. A writer is
    // waiting here, so a sync that opened it would read junk instead of
    // hanging; it must not be opened at all.
    fs::remove_file(&link).unwrap();
    let fifo = platform.join("greet_lib-1.0-py3-none-any.whl");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let writer = fifo.clone();
    std::thread::spawn(move || {
        if let Ok(mut f) = fs::OpenOptions::new().write(true).open(writer) {
            let _ = std::io::Write::write_all(&mut f, b"not a wheel");
        }
    });
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "refusing {}: a FIFO, not a regular file",
            fifo.display()
        )),
        "{err}"
    );
    assert_eq!(env.current(), None);

    // A platform directory that is a link: refused too, not skipped.
    fs::remove_file(&fifo).unwrap();
    let linked = output.join("centos-9-x86_64");
    std::os::unix::fs::symlink(&built, &linked).unwrap();
    let out = env.update(&["sync", "vol"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("refusing {}: a symlink", linked.display())),
        "{}",
        stderr(&out)
    );
    fs::remove_file(&linked).unwrap();
    env.update_ok(&["sync", "vol"]);
    assert_eq!(env.current(), Some(1));
}

/// pip installs `greet` and `greet-lib` 1.0 from `index` with
/// `--require-hashes` (the wheels built in `wheels`), and a plain resolve
/// of `greet` pulls its dependency.
pub(crate) fn greet_installs_with_hashes_and_pulls_its_dependency(
    env: &Env,
    index: &str,
    wheels: &Path,
) {
    let target = pip_install_with_hashes(
        env.path(),
        index,
        &[
            ("greet==1.0", &wheels.join("greet-1.0-py3-none-any.whl")),
            (
                "greet-lib==1.0",
                &wheels.join("greet_lib-1.0-py3-none-any.whl"),
            ),
        ],
    );
    assert!(
        target.join("greet/__init__.py").exists() && target.join("greet_lib/__init__.py").exists()
    );

    // A plain resolve of the dependent project pulls its dependency.
    greet_installs(
        env,
        "site2",
        Path::new("/dev/null"),
        &["--index-url", index],
    );
}

/// pip, reading `config` (a pip.conf, or `/dev/null`), installs `greet`
/// into `<env>/<site>` with `options` saying where to look; its
/// dependency, greet-lib, must come along.
pub(crate) fn greet_installs(env: &Env, site: &str, config: &Path, options: &[&str]) {
    let target = env.path().join(site);
    let mut args = vec!["install"];
    args.extend_from_slice(options);
    args.extend_from_slice(&["--target", target.to_str().unwrap(), "greet"]);
    let o = pip_with_config(config, &args);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        target.join("greet_lib/__init__.py").exists(),
        "greet-lib did not come along"
    );
}

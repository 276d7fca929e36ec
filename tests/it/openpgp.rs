//! The updater's OpenPGP verdicts against gpgv's, case by case, with keys
//! and signatures made by gpg.
//!
//! gpgv's exit status alone is not what clients act on: it exits 0 for a
//! signature by an expired or revoked key and for SHA-1, and 2 when one of
//! two signatures is by an unknown key. apt reads gpgv's status lines and
//! decides (methods/gpgv.cc): at least one GOODSIG whose VALIDSIG digest is
//! not MD5, SHA-1 or RIPEMD-160, and no BADSIG. `apt_accepts` applies that
//! rule, and each test asserts both what gpgv said (so a change in gpgv
//! shows) and that unimirror's verdict equals apt's reading of it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use unimirror::sync::openpgp::Keyring;

const RELEASE: &str = "Origin: test\nSuite: stable\nCodename: stable\nArchitectures: amd64\nComponents: main\nSHA256:\n e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0 main/binary-amd64/Packages\n";

/// A private GNUPGHOME and a directory for the files of one case.
struct Gpg {
    dir: tempfile::TempDir,
}

impl Drop for Gpg {
    fn drop(&mut self) {
        // Each GNUPGHOME starts its own gpg-agent: stop it with the case.
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

impl Gpg {
    fn new() -> Gpg {
        let dir = tempfile::tempdir().unwrap();
        let g = Gpg { dir };
        fs::create_dir(g.home()).unwrap();
        fs::set_permissions(
            g.home(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        fs::write(g.path("Release"), RELEASE).unwrap();
        g
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("gnupg")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs gpg with `args` (after `--faked-system-time` when `at` is
    /// given) and returns its stdout.
    fn run(&self, at: Option<&str>, args: &[&str]) -> Vec<u8> {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", self.home())
            .args(["--batch", "--quiet", "--yes", "--no-tty"])
            .args(["--pinentry-mode", "loopback", "--passphrase", ""]);
        if let Some(t) = at {
            c.args(["--faked-system-time", t]);
        }
        let o = c.args(args).output().unwrap();
        assert!(
            o.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    }

    /// Fingerprints of `uid`'s primary key and subkeys, in that order.
    fn fingerprints(&self, uid: &str) -> Vec<String> {
        let out = self.run(None, &["--with-colons", "--list-keys", uid]);
        String::from_utf8(out)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_string())
            .collect()
    }

    /// A new key `uid` ("ed25519", `usage`, `expire`) made at `at`;
    /// returns its fingerprint.
    fn key(&self, at: Option<&str>, uid: &str, usage: &str, expire: &str) -> String {
        self.run(at, &["--quick-gen-key", uid, "ed25519", usage, expire]);
        self.fingerprints(uid).remove(0)
    }

    /// Adds a signing subkey to `primary` at `at`; returns its fingerprint.
    fn signing_subkey(&self, at: Option<&str>, uid: &str, primary: &str, expire: &str) -> String {
        self.run(at, &["--quick-add-key", primary, "ed25519", "sign", expire]);
        self.fingerprints(uid).pop().unwrap()
    }

    /// Runs gpg's `--edit-key` on `key` with the answers `commands`.
    fn edit(&self, key: &str, commands: &str) {
        let mut edit = Command::new("gpg")
            .env("GNUPGHOME", self.home())
            .args(["--batch", "--yes", "--expert", "--command-fd", "0"])
            // Options after the command would be taken as its arguments.
            .args(["--pinentry-mode", "loopback", "--passphrase", ""])
            .args(["--edit-key", key])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::io::Write::write_all(edit.stdin.as_mut().unwrap(), commands.as_bytes()).unwrap();
        assert!(edit.wait().unwrap().success(), "gpg --edit-key {key}");
    }

    fn export(&self, uid: &str) -> Vec<u8> {
        self.run(None, &["--export", uid])
    }

    /// Signs `Release` with the keys `by` (exact fingerprints) at `at`:
    /// writes `InRelease` and an armored `Release.gpg` (as Debian's).
    fn sign(&self, at: Option<&str>, by: &[&str], extra: &[&str]) {
        let mut args: Vec<String> = Vec::new();
        for k in by {
            args.extend(["--local-user".to_string(), format!("{k}!")]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let release = self.path("Release").display().to_string();
        for (out, mode) in [
            ("InRelease", "--clearsign"),
            ("Release.gpg", "--detach-sign"),
        ] {
            let mut a = args.clone();
            a.extend([
                "--armor".into(),
                "-o".into(),
                self.path(out).display().to_string(),
                mode.into(),
                release.clone(),
            ]);
            self.run(at, &a.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }

    /// gpgv and unimirror on `InRelease`, then on `Release` with
    /// `Release.gpg`, with `keyring` as the only keys.
    fn verdicts(&self, keyring: &[u8]) -> [Verdict; 2] {
        let kr = self.path("keyring.gpg");
        fs::write(&kr, keyring).unwrap();
        let inrelease = Verdict {
            gpgv: gpgv(&kr, &[&self.path("InRelease")]),
            ours: Keyring::load(&kr)
                .and_then(|k| {
                    let text = fs::read_to_string(self.path("InRelease")).unwrap();
                    k.verify_cleartext("dists/stable/InRelease", &text)
                })
                .map(|_| ())
                .map_err(|e| format!("{e:#}")),
        };
        let detached = Verdict {
            gpgv: gpgv(&kr, &[&self.path("Release.gpg"), &self.path("Release")]),
            ours: Keyring::load(&kr)
                .and_then(|k| {
                    k.verify_detached(
                        "dists/stable/Release.gpg",
                        RELEASE.as_bytes(),
                        &fs::read(self.path("Release.gpg")).unwrap(),
                    )
                })
                .map_err(|e| format!("{e:#}")),
        };
        for v in [&inrelease, &detached] {
            assert_eq!(
                v.ours.is_ok(),
                apt_accepts(&v.gpgv.status),
                "unimirror says {:?}, apt reading gpgv (exit {}) says otherwise:\n{}",
                v.ours,
                v.gpgv.exit,
                v.gpgv.status
            );
        }
        [inrelease, detached]
    }
}

struct Gpgv {
    exit: i32,
    /// Its `--status-fd` lines.
    status: String,
}

struct Verdict {
    gpgv: Gpgv,
    ours: Result<(), String>,
}

impl Verdict {
    /// Our refusal, which must name the file, each key in `keys` and the
    /// reason `reason`.
    fn refused(&self, file: &str, keys: &[&str], reason: &str) {
        let e = self.ours.as_ref().expect_err("refused");
        assert!(e.contains(file), "the file is not named: {e}");
        for k in keys {
            assert!(e.contains(k), "key {k} is not named: {e}");
        }
        assert!(e.contains(reason), "no reason {reason:?}: {e}");
    }
}

fn gpgv(keyring: &Path, files: &[&Path]) -> Gpgv {
    let o = Command::new("gpgv")
        .args(["--status-fd", "1", "--keyring"])
        .arg(keyring)
        .args(files)
        .output()
        .unwrap();
    Gpgv {
        exit: o.status.code().unwrap(),
        status: String::from_utf8(o.stdout).unwrap(),
    }
}

/// apt's verdict on gpgv's status lines (methods/gpgv.cc, keyring given as
/// a file): accepted with at least one good signature and no bad one; a
/// good signature whose digest apt does not trust (MD5, SHA-1, RIPEMD-160
/// or unknown) does not count. EXPKEYSIG, REVKEYSIG, EXPSIG and ERRSIG
/// replace GOODSIG, so they never count.
fn apt_accepts(status: &str) -> bool {
    let mut good: Vec<&str> = Vec::new();
    let mut untrusted: Vec<&str> = Vec::new();
    for line in status.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.get(1..) {
            Some(["BADSIG", ..]) | Some(["NODATA", ..]) => return false,
            Some(["GOODSIG", id, ..]) => good.push(id),
            Some(["VALIDSIG", fpr, rest @ ..]) => {
                // Field 8 of VALIDSIG is the digest algorithm.
                let digest: u32 = rest.get(6).and_then(|d| d.parse().ok()).unwrap_or(0);
                if matches!(digest, 0..=3) || digest >= 12 {
                    untrusted.push(fpr);
                }
            }
            _ => {}
        }
    }
    good.iter()
        .any(|g| !untrusted.iter().any(|u| u.ends_with(&g[g.len() - 16..])))
}

/// Whether gpgv reported the status keyword `what`.
fn said(v: &Verdict, what: &str) -> bool {
    v.gpgv
        .status
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(what))
}

#[test]
fn a_valid_key_is_accepted_as_gpgv_accepts_it() {
    let g = Gpg::new();
    let k = g.key(None, "valid <v@example.invalid>", "sign", "never");
    g.sign(None, &[&k], &[]);
    for v in g.verdicts(&g.export(&k)) {
        assert_eq!(v.gpgv.exit, 0);
        assert!(said(&v, "GOODSIG"));
        assert_eq!(v.ours, Ok(()));
    }
}

#[test]
fn a_key_that_expired_in_2020_is_refused_though_gpgv_exits_0() {
    let g = Gpg::new();
    // Made in 2019, valid for one year; the signature was made while it
    // was valid, but it is checked now, as gpgv does.
    let k = g.key(
        Some("20190101T000000"),
        "expired <e@example.invalid>",
        "sign",
        "1y",
    );
    g.sign(Some("20190601T000000"), &[&k], &[]);
    for (v, file) in g
        .verdicts(&g.export(&k))
        .iter()
        .zip(["InRelease", "Release.gpg"])
    {
        assert_eq!(v.gpgv.exit, 0, "gpgv accepts it by its exit status");
        assert!(said(v, "EXPKEYSIG"), "{}", v.gpgv.status);
        v.refused(file, &[&k], "the key expired on 2020-01-01");
    }
}

#[test]
fn a_revoked_key_is_refused_though_gpgv_exits_0() {
    let g = Gpg::new();
    let k = g.key(None, "revoked <r@example.invalid>", "sign", "never");
    g.sign(None, &[&k], &[]);
    // gpg wrote a revocation certificate when it made the key; its armor
    // line is escaped with a colon against an accidental import.
    let rev = fs::read_to_string(g.home().join(format!("openpgp-revocs.d/{k}.rev"))).unwrap();
    fs::write(g.path("rev.asc"), rev.replace(":-----BEGIN", "-----BEGIN")).unwrap();
    g.run(None, &["--import", g.path("rev.asc").to_str().unwrap()]);
    for (v, file) in g
        .verdicts(&g.export(&k))
        .iter()
        .zip(["InRelease", "Release.gpg"])
    {
        assert_eq!(v.gpgv.exit, 0, "gpgv accepts it by its exit status");
        assert!(said(v, "REVKEYSIG"), "{}", v.gpgv.status);
        v.refused(file, &[&k], "the key was revoked");
    }
}

#[test]
fn a_foreign_signing_subkey_grafted_onto_a_trusted_primary_is_refused() {
    let g = Gpg::new();
    let trusted = g.key(None, "trusted <t@example.invalid>", "cert", "never");
    let foreign = g.key(None, "foreign <f@example.invalid>", "cert", "never");
    let sub = g.signing_subkey(None, "foreign <f@example.invalid>", &foreign, "never");
    g.sign(None, &[&sub], &[]);
    // The trusted key, then the foreign subkey packet with its binding
    // signature (made by the foreign primary), as if it were the trusted
    // key's own.
    let mut keyring = g.export(&trusted);
    let foreign_key =
        <pgp::composed::SignedPublicKey as pgp::composed::Deserializable>::from_bytes(
            &g.export(&foreign)[..],
        )
        .unwrap();
    pgp::ser::Serialize::to_writer(&foreign_key.public_subkeys[0], &mut keyring).unwrap();
    for (v, file) in g
        .verdicts(&keyring)
        .iter()
        .zip(["InRelease", "Release.gpg"])
    {
        assert_eq!(v.gpgv.exit, 2);
        assert!(said(v, "ERRSIG"), "{}", v.gpgv.status);
        v.refused(
            file,
            &[&sub, &trusted],
            "no binding signature from its primary key",
        );
    }
}

#[test]
fn a_sha1_signature_is_refused_though_gpgv_exits_0() {
    let g = Gpg::new();
    let k = g.key(None, "sha1 <s@example.invalid>", "sign", "never");
    g.sign(None, &[&k], &["--digest-algo", "SHA1"]);
    for (v, file) in g
        .verdicts(&g.export(&k))
        .iter()
        .zip(["InRelease", "Release.gpg"])
    {
        assert_eq!(v.gpgv.exit, 0, "gpgv accepts SHA-1");
        assert!(said(v, "GOODSIG"), "{}", v.gpgv.status);
        v.refused(file, &[&k], "SHA1 digest, which is refused");
    }
}

#[test]
fn an_md5_signature_is_refused_as_gpgv_refuses_it() {
    let g = Gpg::new();
    let k = g.key(None, "md5 <m@example.invalid>", "sign", "never");
    // gpg 2.2 still makes them (with a warning).
    g.sign(None, &[&k], &["--digest-algo", "MD5"]);
    for (v, file) in g
        .verdicts(&g.export(&k))
        .iter()
        .zip(["InRelease", "Release.gpg"])
    {
        assert_eq!(v.gpgv.exit, 2);
        v.refused(file, &[&k], "MD5 digest, which is refused");
    }
}

#[test]
fn two_signatures_of_which_the_first_is_by_an_unknown_key_are_accepted() {
    let g = Gpg::new();
    let stranger = g.key(None, "stranger <x@example.invalid>", "sign", "never");
    let k = g.key(None, "archive <a@example.invalid>", "sign", "never");
    // The stranger's signature comes first: the old code read only that.
    g.sign(None, &[&stranger, &k], &[]);
    for v in g.verdicts(&g.export(&k)) {
        assert_eq!(v.gpgv.exit, 2, "gpgv fails on the missing key");
        let order: Vec<&str> = v
            .gpgv
            .status
            .lines()
            .filter(|l| l.contains(" ERRSIG ") || l.contains(" GOODSIG "))
            .collect();
        assert!(
            order.len() == 2 && order[0].contains("ERRSIG"),
            "{}",
            v.gpgv.status
        );
        assert_eq!(v.ours, Ok(()));
    }
    // Alone, the stranger's signature is refused, naming its key.
    g.sign(None, &[&stranger], &[]);
    for (v, file) in g
        .verdicts(&g.export(&k))
        .iter()
        .zip(["InRelease", "Release.gpg"])
    {
        assert!(said(v, "NO_PUBKEY"));
        v.refused(
            file,
            &[&stranger[24..]],
            "is not signed by a key in the keyring",
        );
    }
}

#[test]
fn a_subkey_that_expired_under_a_valid_primary_is_refused() {
    let g = Gpg::new();
    let uid = "subkey expired <se@example.invalid>";
    let primary = g.key(Some("20190101T000000"), uid, "cert", "never");
    let sub = g.signing_subkey(Some("20200101T000000"), uid, &primary, "1d");
    g.sign(Some("20200101T120000"), &[&sub], &[]);
    for (v, file) in g
        .verdicts(&g.export(&primary))
        .iter()
        .zip(["InRelease", "Release.gpg"])
    {
        assert_eq!(v.gpgv.exit, 0, "gpgv accepts it by its exit status");
        assert!(said(v, "EXPKEYSIG"), "{}", v.gpgv.status);
        v.refused(file, &[&sub, &primary], "the subkey expired on 2020-01-02");
    }
}

#[test]
fn a_key_whose_flags_no_longer_allow_signing_is_refused() {
    let g = Gpg::new();
    let k = g.key(None, "usage <u@example.invalid>", "sign", "never");
    g.sign(None, &[&k], &[]);
    // A newer self-signature drops the signing flag (certify only).
    g.edit(&k, "change-usage\nS\nQ\nsave\n");
    for (v, file) in g
        .verdicts(&g.export(&k))
        .iter()
        .zip(["InRelease", "Release.gpg"])
    {
        assert_eq!(v.gpgv.exit, 2);
        assert!(said(v, "ERRSIG"), "{}", v.gpgv.status);
        v.refused(file, &[&k], "key flags do not allow signing");
    }
}

#[test]
fn a_bad_signature_from_the_keyring_beside_a_good_one_is_refused_as_apt_does() {
    let g = Gpg::new();
    let a = g.key(None, "first <a@example.invalid>", "sign", "never");
    let b = g.key(None, "second <b@example.invalid>", "sign", "never");
    g.sign(None, &[&a], &[]);
    let good = g.run(
        None,
        &[
            "--dearmor",
            "-o",
            "-",
            g.path("Release.gpg").to_str().unwrap(),
        ],
    );
    // The second key's signature over other bytes.
    fs::write(g.path("Release"), "something else\n").unwrap();
    g.sign(None, &[&b], &[]);
    let other = g.run(
        None,
        &[
            "--dearmor",
            "-o",
            "-",
            g.path("Release.gpg").to_str().unwrap(),
        ],
    );
    fs::write(g.path("Release"), RELEASE).unwrap();
    fs::write(g.path("Release.gpg"), [good, other].concat()).unwrap();
    let mut keyring = g.export(&a);
    keyring.extend(g.export(&b));
    let [_, v] = g.verdicts(&keyring);
    assert_eq!(v.gpgv.exit, 1);
    assert!(
        said(&v, "GOODSIG") && said(&v, "BADSIG"),
        "{}",
        v.gpgv.status
    );
    v.refused("Release.gpg", &[&b], "does not verify");
}

#[test]
fn a_keyring_that_is_not_one_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.gpg");
    fs::write(&empty, b"").unwrap();
    let e = format!("{:#}", Keyring::load(&empty).err().expect("refused"));
    assert!(e.contains("empty.gpg") && e.contains("empty"), "{e}");
    let text = dir.path().join("text.gpg");
    fs::write(
        &text,
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64\n",
    )
    .unwrap();
    let e = format!("{:#}", Keyring::load(&text).err().expect("refused"));
    assert!(e.contains("text.gpg"), "{e}");
}

/// Debian's own files: `InRelease` of bookworm-security (2 December 2026),
/// signed by two RSA subkeys of two keys with SHA-512, and
/// debian-archive-keyring 2025.1, which holds eight more keys and subkeys.
/// (Its keys expire from 2029 on; gpgv and apt will then refuse it, and so
/// must we: the comparison holds either way.)
#[test]
fn a_real_debian_inrelease_signed_twice_gets_gpgvs_verdict() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openpgp");
    let keyring = fixtures.join("debian-archive-keyring.gpg");
    let inrelease = fixtures.join("debian-bookworm-security-InRelease");
    let g = gpgv(&keyring, &[&inrelease]);
    let text = fs::read_to_string(&inrelease).unwrap();
    let keys = Keyring::load(&keyring).unwrap();
    let ours = keys.verify_cleartext("InRelease", &text);
    assert_eq!(
        ours.is_ok(),
        apt_accepts(&g.status),
        "{ours:?}\n{}",
        g.status
    );
    assert_eq!(
        g.status
            .lines()
            .filter(|l| l.contains(" VALIDSIG "))
            .count(),
        2,
        "{}",
        g.status
    );
    // One byte changed in the signed text: both signatures are bad.
    let changed = text.replacen("Suite: oldstable-security", "Suite: oldstable-securitz", 1);
    let e = format!(
        "{:#}",
        keys.verify_cleartext("InRelease", &changed).unwrap_err()
    );
    assert!(e.contains("does not verify"), "{e}");
    assert_eq!(e.matches("does not verify (").count(), 2, "{e}");
}

#[test]
fn a_live_subkey_under_a_primary_that_expired_is_refused() {
    let g = Gpg::new();
    let uid = "primary expired <pe@example.invalid>";
    let primary = g.key(Some("20190101T000000"), uid, "cert", "1y");
    // The subkey itself never expires; its primary did, on 2020-01-01.
    let sub = g.signing_subkey(Some("20190102T000000"), uid, &primary, "never");
    g.sign(Some("20190601T000000"), &[&sub], &[]);
    for (v, file) in g
        .verdicts(&g.export(&primary))
        .iter()
        .zip(["InRelease", "Release.gpg"])
    {
        assert_eq!(v.gpgv.exit, 0, "gpgv accepts it by its exit status");
        assert!(said(v, "EXPKEYSIG"), "{}", v.gpgv.status);
        v.refused(file, &[&sub], "its primary key expired on 2020-01-01");
    }
}

#[test]
fn a_revoked_subkey_under_a_valid_primary_is_refused() {
    let g = Gpg::new();
    let uid = "subkey revoked <sr@example.invalid>";
    let primary = g.key(None, uid, "cert", "never");
    let sub = g.signing_subkey(None, uid, &primary, "never");
    g.sign(None, &[&sub], &[]);
    // Select subkey 1, revoke it (reason 0, no text), confirm, save.
    g.edit(&primary, "key 1\nrevkey\ny\n0\n\ny\nsave\n");
    for (v, file) in g
        .verdicts(&g.export(&primary))
        .iter()
        .zip(["InRelease", "Release.gpg"])
    {
        assert_eq!(v.gpgv.exit, 0, "gpgv accepts it by its exit status");
        assert!(said(v, "REVKEYSIG"), "{}", v.gpgv.status);
        v.refused(file, &[&sub], "the subkey was revoked");
    }
}

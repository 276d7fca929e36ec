//! The real clients the tests judge the mirror by (pip, apt-get) and the
//! certificates the TLS tests serve.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use unimirror::volume::manifest::Sha256Digest;

use super::{stderr, stdout};

/// `python3 -m pip <args>` with only what the test says: no site or user
/// pip configuration, no find-links, no index from the environment, no
/// cache.
pub fn pip(args: &[&str]) -> Output {
    pip_with_config(Path::new("/dev/null"), args)
}

/// [`pip`] reading `config` as its configuration file (a `pip.conf`).
pub fn pip_with_config(config: &Path, args: &[&str]) -> Output {
    Command::new("python3")
        .env("PIP_CONFIG_FILE", config)
        .env_remove("PIP_FIND_LINKS")
        .env_remove("PIP_INDEX_URL")
        .env_remove("PIP_EXTRA_INDEX_URL")
        .args(["-m", "pip", "--disable-pip-version-check", "--no-cache-dir"])
        .args(args)
        .output()
        .unwrap()
}

/// The pip `--require-hashes` flow: writes `<dir>/req.txt` pinning each
/// `(name==version, file)` to the sha256 of that file as the test built
/// it, installs exactly that from `index` (wheels only) into `<dir>/site`,
/// and fails the test unless pip succeeds. Returns `<dir>/site`.
pub fn pip_install_with_hashes(dir: &Path, index: &str, pins: &[(&str, &Path)]) -> PathBuf {
    let req = dir.join("req.txt");
    let lines: String = pins
        .iter()
        .map(|(pin, file)| {
            let sha = Sha256Digest::of(&fs::read(file).unwrap()).hex();
            format!("{pin} --hash=sha256:{sha}\n")
        })
        .collect();
    fs::write(&req, lines).unwrap();
    let target = dir.join("site");
    let out = pip(&[
        "install",
        "--require-hashes",
        "--only-binary",
        ":all:",
        "--index-url",
        index,
        "--target",
        target.to_str().unwrap(),
        "-r",
        req.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "pip install --require-hashes failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    target
}

/// Writes a certificate for `localhost` (`cert.pem`, `key.pem`) signed by
/// a fresh CA (`ca.pem`) in `dir`; returns the CA's PEM, what a client
/// trusts. A new call makes a new CA: a client trusting the old one no
/// longer trusts the new certificate.
pub fn make_cert(dir: &Path) -> String {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    // Names of their own: a leaf whose subject equals its issuer looks
    // self-signed to OpenSSL (curl).
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "unimirror test CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.distinguished_name = rcgen::DistinguishedName::new();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    ca_cert.pem()
}

/// Runs `apt-get` as an unprivileged-style client in its own root under
/// `dir`: its own sources, lists and cache, signatures checked against
/// `keyring` (no `trusted=yes`).
pub fn apt_get(dir: &Path, source: &str, args: &[&str]) -> Output {
    for d in [
        "etc/apt/apt.conf.d",
        "etc/apt/preferences.d",
        "etc/apt/sources.list.d",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "var/lib/dpkg",
    ] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::write(dir.join("var/lib/dpkg/status"), "").unwrap();
    fs::write(dir.join("etc/apt/sources.list"), format!("{source}\n")).unwrap();
    let root = dir.to_str().unwrap();
    Command::new("apt-get")
        .current_dir(dir)
        .args(["-q", "-o", &format!("Dir={root}")])
        .args([
            "-o",
            &format!("Dir::State::status={root}/var/lib/dpkg/status"),
        ])
        .args(["-o", "APT::Architecture=amd64", "-o", "Debug::NoLocking=1"])
        .args(["-o", "APT::Sandbox::User=root", "-o", "Acquire::Retries=0"])
        .args(args)
        .output()
        .expect("apt-get is installed")
}

/// uv (the second Python client, installed by test.sh) installs `greet`
/// from `index` into `<dir>/uv-site`, without a cache of its own; its
/// dependency, greet-lib, must come along.
pub fn uv_installs_greet(dir: &Path, index: &str) {
    let target = dir.join("uv-site");
    let o = Command::new("uv")
        .args([
            "pip",
            "install",
            "--no-cache",
            "--index-url",
            index,
            "--target",
        ])
        .arg(&target)
        .arg("greet")
        .output()
        .expect("uv is installed (test.sh)");
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        target.join("greet_lib/__init__.py").exists(),
        "greet-lib did not come along"
    );
}

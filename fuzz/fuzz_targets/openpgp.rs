//! OpenPGP: bytes as a keyring, as a clearsigned `InRelease` and as a
//! detached `Release.gpg`, against the real Debian archive keyring and the
//! demo keyring. Nothing may panic, and a clearsigned text that verifies
//! must be (as OpenPGP cleartext is compared) one that was really signed.
#![no_main]
use std::path::Path;
use std::sync::OnceLock;
use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use unimirror::sync::openpgp::Keyring;
use unimirror::sync::replay::same_release_text;

const DEBIAN_KEYRING: &[u8] =
    include_bytes!("../../tests/fixtures/openpgp/debian-archive-keyring.gpg");
const DEBIAN_INRELEASE: &str =
    include_str!("../../tests/fixtures/openpgp/debian-bookworm-security-InRelease");
const DEMO_KEYRING: &[u8] = include_bytes!("../../tests/fixtures/demo/demo-archive-keyring.gpg");
const DEMO_INRELEASE: &str = include_str!("../../tests/fixtures/demo/ubuntu/dists/demo/InRelease");
const DEMO_RELEASE: &[u8] = include_bytes!("../../tests/fixtures/demo/ubuntu/dists/demo/Release");
const DEMO_RELEASE_GPG: &[u8] =
    include_bytes!("../../tests/fixtures/demo/ubuntu/dists/demo/Release.gpg");

struct Fixed {
    keyrings: [Keyring; 2],
    /// The texts the fixtures' signatures really cover.
    signed: Vec<String>,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let now = SystemTime::now();
        let debian = Keyring::from_bytes(Path::new("debian.gpg"), DEBIAN_KEYRING, now).unwrap();
        let demo = Keyring::from_bytes(Path::new("demo.gpg"), DEMO_KEYRING, now).unwrap();
        let mut signed = Vec::new();
        // Whether these still verify depends on the date (key expiry); what
        // verifies is what the assertion below allows.
        for (keys, text) in [(&debian, DEBIAN_INRELEASE), (&demo, DEMO_INRELEASE)] {
            if let Ok(t) = keys.verify_cleartext("InRelease", text) {
                signed.push(t);
            }
        }
        eprintln!(
            "openpgp: {} of the 2 fixture InRelease files verify",
            signed.len()
        );
        Fixed {
            keyrings: [debian, demo],
            signed,
        }
    })
}

fuzz_target!(|bytes: &[u8]| {
    let fixed = fixed();
    // As a keyring; if it loads, the demo files are checked against it.
    if let Ok(keys) = Keyring::from_bytes(Path::new("fuzz.gpg"), bytes, SystemTime::now()) {
        let _ = keys.verify_cleartext("InRelease", DEMO_INRELEASE);
        let _ = keys.verify_detached("Release.gpg", DEMO_RELEASE, DEMO_RELEASE_GPG);
    }
    for keys in &fixed.keyrings {
        // As a detached signature over the demo Release, and over itself.
        let _ = keys.verify_detached("Release.gpg", DEMO_RELEASE, bytes);
        if keys
            .verify_detached("Release.gpg", bytes, DEMO_RELEASE_GPG)
            .is_ok()
        {
            let release = std::str::from_utf8(DEMO_RELEASE).unwrap();
            assert!(
                same_release_text(bytes, release),
                "Release.gpg verified over other bytes"
            );
        }
        // As a clearsigned message.
        if let Ok(text) = std::str::from_utf8(bytes)
            && let Ok(signed) = keys.verify_cleartext("InRelease", text)
        {
            assert!(
                fixed
                    .signed
                    .iter()
                    .any(|s| same_release_text(signed.as_bytes(), s)),
                "accepted a text nobody signed:\n{signed}"
            );
        }
    }
});

//! Release signatures: who published a release.
//!
//! Everyone who can write a shared origin (an NFS export, an S3 bucket)
//! can publish to it. With `[release] signing_key`, the updater signs each
//! release's metadata with an Ed25519 key; a daemon given `[daemon]
//! release_keys` serves only releases signed by one of them. The metadata
//! names the manifest's sha256 and size, and the manifest every object's
//! sha256, so the signature covers every byte the release serves.
//!
//! `releases/<id>.sig` is one line of text over the exact bytes of
//! `releases/<id>.json`:
//!
//! ```text
//! ed25519 <key id: 16 hex digits> <signature: 128 hex digits>\n
//! ```
//!
//! The key id is the first 8 bytes of the sha256 of the raw 32-byte
//! public key; it names the key in logs and picks the key to check with.
//! Keys are the PEM files OpenSSL writes: the private key as PKCS#8
//! (`openssl genpkey -algorithm ed25519`), public keys as
//! SubjectPublicKeyInfo (`openssl pkey -pubout`).
//!
//! A signature says who made a release, not which release is current: a
//! writer of the origin can still move `current` back to an older signed
//! release (what `rollback` does), never to one no key signed.

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};

use crate::digest::Sha256Digest;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the
/// algorithm identifier 1.3.101.112 and a 33-byte bit string whose last 32
/// bytes are the key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A public key's short name: the first 8 bytes of its sha256.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 8]);

impl KeyId {
    fn of(public: &[u8]) -> KeyId {
        let sha = Sha256Digest::of(public);
        KeyId(sha.0[..8].try_into().expect("8 of 32 bytes"))
    }

    fn parse(text: &str) -> Option<KeyId> {
        let mut id = [0u8; 8];
        hex::decode_to_slice(text, &mut id).ok()?;
        Some(KeyId(id))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The ids, comma-separated, for logs and `check-config`.
impl fmt::Display for ReleaseKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (id, _)) in self.keys.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{id}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The updater's private key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    id: KeyId,
}

impl SigningKey {
    /// Reads a PKCS#8 PEM file holding an Ed25519 private key.
    pub fn load(path: &Path) -> Result<SigningKey> {
        let der = PrivatePkcs8KeyDer::from_pem_file(path).map_err(|e| {
            anyhow::anyhow!("{}: not a PKCS#8 PEM private key: {e}", path.display())
        })?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
            .map_err(|e| anyhow::anyhow!("{}: not an Ed25519 private key: {e}", path.display()))?;
        let id = KeyId::of(pair.public_key().as_ref());
        Ok(SigningKey { pair, id })
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The signature file's text for metadata `meta`.
    pub fn sign(&self, meta: &[u8]) -> String {
        let sig = self.pair.sign(meta);
        format!("ed25519 {} {}\n", self.id, hex::encode(sig.as_ref()))
    }
}

/// The public keys a daemon accepts releases from.
#[derive(Clone)]
pub struct ReleaseKeys {
    keys: Vec<(KeyId, [u8; 32])>,
}

/// Why a release's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// There is no signature file.
    Unsigned,
    /// The signature file is not one line of the form above.
    Malformed,
    /// Signed by a key that is not among `release_keys`.
    UnknownKey(KeyId),
    /// The key is known, and the signature does not match the metadata.
    BadSignature(KeyId),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unsigned => f.write_str("it is not signed (no .sig file beside its metadata)"),
            Refusal::Malformed => f.write_str("its .sig file is not a unimirror signature"),
            Refusal::UnknownKey(id) => {
                write!(
                    f,
                    "it is signed by key {id}, which is not among daemon.release_keys"
                )
            }
            Refusal::BadSignature(id) => write!(
                f,
                "its signature by key {id} does not match its metadata (changed after signing?)"
            ),
        }
    }
}

impl ReleaseKeys {
    /// Reads SubjectPublicKeyInfo PEM files holding Ed25519 public keys.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<ReleaseKeys> {
        let mut keys = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let der = SubjectPublicKeyInfoDer::from_pem_file(path)
                .map_err(|e| anyhow::anyhow!("{}: not a PEM public key: {e}", path.display()))?;
            let Some(raw) = der.strip_prefix(&ED25519_SPKI_PREFIX[..]) else {
                bail!("{}: not an Ed25519 public key", path.display());
            };
            let raw: [u8; 32] = raw
                .try_into()
                .with_context(|| format!("{}: an Ed25519 key is 32 bytes", path.display()))?;
            keys.push((KeyId::of(&raw), raw));
        }
        Ok(ReleaseKeys { keys })
    }

    /// The ids of the keys, in the order given.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(|(id, _)| *id).collect()
    }

    /// The keys `daemon.release_keys` names in `config`; `None` when it
    /// names none. Errors name the config file, the key and the file.
    pub fn of_config(config: &crate::config::Config) -> Result<Option<ReleaseKeys>> {
        let paths = &config.daemon.release_keys;
        if paths.is_empty() {
            return Ok(None);
        }
        let keys = ReleaseKeys::load(paths)
            .with_context(|| format!("{}: daemon.release_keys", config.file.display()))?;
        Ok(Some(keys))
    }

    /// Checks `sig` (the signature file's bytes, if there is one) over
    /// `meta`; the signer's key id when it holds.
    pub fn verify(&self, meta: &[u8], sig: Option<&[u8]>) -> Result<KeyId, Refusal> {
        let sig = sig.ok_or(Refusal::Unsigned)?;
        let (id, signature) = parse(sig).ok_or(Refusal::Malformed)?;
        let (_, key) = self
            .keys
            .iter()
            .find(|(k, _)| *k == id)
            .ok_or(Refusal::UnknownKey(id))?;
        UnparsedPublicKey::new(&ED25519, key)
            .verify(meta, &signature)
            .map_err(|_| Refusal::BadSignature(id))?;
        Ok(id)
    }
}

/// The key id and signature of a signature file, if it is one.
fn parse(text: &[u8]) -> Option<(KeyId, Vec<u8>)> {
    let line = std::str::from_utf8(text).ok()?.strip_suffix('\n')?;
    let mut fields = line.split(' ');
    let (alg, id, sig) = (fields.next()?, fields.next()?, fields.next()?);
    if alg != "ed25519" || fields.next().is_some() {
        return None;
    }
    let mut signature = vec![0u8; 64];
    hex::decode_to_slice(sig, &mut signature).ok()?;
    Some((KeyId::parse(id)?, signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key pair made with OpenSSL's command line, as an operator would.
    fn openssl_keys(dir: &Path, name: &str) -> (SigningKey, ReleaseKeys) {
        let private = dir.join(format!("{name}.pem"));
        let public = dir.join(format!("{name}.pub"));
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let (private_s, public_s) = (private.to_str().unwrap(), public.to_str().unwrap());
        run(&["genpkey", "-algorithm", "ed25519", "-out", private_s]);
        run(&["pkey", "-in", private_s, "-pubout", "-out", public_s]);
        (
            SigningKey::load(&private).unwrap(),
            ReleaseKeys::load(&[&public]).unwrap(),
        )
    }

    #[test]
    fn a_release_signed_by_a_known_key_is_accepted_and_every_other_case_named() {
        let dir = tempfile::tempdir().unwrap();
        let (a, a_public) = openssl_keys(dir.path(), "a");
        let (b, _) = openssl_keys(dir.path(), "b");
        let meta = br#"{"id": 7}"#;
        let sig = a.sign(meta);
        assert_eq!(a_public.verify(meta, Some(sig.as_bytes())), Ok(a.id()));
        assert_eq!(a_public.ids(), vec![a.id()]);

        assert_eq!(a_public.verify(meta, None), Err(Refusal::Unsigned));
        let by_b = b.sign(meta);
        assert_eq!(
            a_public.verify(meta, Some(by_b.as_bytes())),
            Err(Refusal::UnknownKey(b.id()))
        );
        assert_eq!(
            a_public.verify(br#"{"id": 8}"#, Some(sig.as_bytes())),
            Err(Refusal::BadSignature(a.id()))
        );
        // B's signature under A's key id: the key id alone proves nothing.
        let forged = format!("ed25519 {} {}", a.id(), by_b.split(' ').nth(2).unwrap());
        assert_eq!(
            a_public.verify(meta, Some(forged.as_bytes())),
            Err(Refusal::BadSignature(a.id()))
        );
        for bad in [
            String::new(),
            sig.trim_end().to_string(),
            sig.replace("ed25519", "rsa"),
            sig.to_uppercase(),
            format!("{} extra\n", sig.trim_end()),
            sig[..sig.len() - 3].to_string() + "\n",
        ] {
            assert_eq!(
                a_public.verify(meta, Some(bad.as_bytes())),
                Err(Refusal::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn key_files_that_are_not_ed25519_pem_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a key\n").unwrap();
        let e = SigningKey::load(&junk).err().unwrap().to_string();
        assert!(e.contains("junk.pem") && e.contains("PKCS#8"), "{e}");
        let e = ReleaseKeys::load(&[&junk]).err().unwrap().to_string();
        assert!(
            e.contains("junk.pem") && e.contains("PEM public key"),
            "{e}"
        );

        // An EC key in the right wrapping is still not Ed25519.
        let ec = dir.path().join("ec.pem");
        let ec_pub = dir.path().join("ec.pub");
        for args in [
            vec![
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ],
            vec!["pkey", "-pubout", "-in", ec.to_str().unwrap(), "-out"],
        ] {
            let out_file = if args[0] == "genpkey" { &ec } else { &ec_pub };
            let ok = std::process::Command::new("openssl")
                .args(&args)
                .arg(out_file)
                .status()
                .unwrap()
                .success();
            assert!(ok);
        }
        let e = SigningKey::load(&ec).err().unwrap().to_string();
        assert!(e.contains("not an Ed25519 private key"), "{e}");
        let e = ReleaseKeys::load(&[&ec_pub]).err().unwrap().to_string();
        assert!(e.contains("not an Ed25519 public key"), "{e}");
    }
}

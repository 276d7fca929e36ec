//! OpenPGP checks of upstream metadata (apt's `InRelease` and `Release.gpg`,
//! yum's `repomd.xml.asc`) against an operator's keyring.
//!
//! rPGP's `Signature::verify` checks the mathematics and the issuer id, no
//! more: a key that expired years ago, a revoked key, or a signing subkey
//! of another key appended to a trusted primary all pass it. So the keyring
//! is evaluated here when it is loaded, the way GnuPG evaluates a key:
//!
//! - a primary key counts only with a self-signature that verifies (its
//!   newest one gives the expiry and the key flags), and not if a key
//!   revocation signature from it verifies;
//! - a subkey counts only with a binding signature from *its* primary that
//!   verifies (the newest gives expiry and flags), not if a subkey
//!   revocation verifies, and a signing subkey also needs its embedded
//!   back-signature (the subkey's own statement that it belongs to this
//!   primary), as GnuPG requires by default;
//! - a key signs only if its key flags allow signing (or, without flags,
//!   if its algorithm can sign).
//!
//! Expiry is checked when a file is verified, at the current time, as gpgv
//! does: a signature made while the key was valid is refused once the key
//! has expired (apt refuses gpgv's `EXPKEYSIG` too).
//!
//! Every signature of a file is tried. The file is accepted when at least
//! one signature from a usable key verifies with a strong digest, and no
//! signature from a key in the keyring fails to verify. That is apt's rule
//! over gpgv's status lines (methods/gpgv.cc): a signature by an unknown
//! key is fine beside a good one (Debian signs with several keys), a bad
//! signature from a known key is fatal, and expired, revoked, MD5, SHA-1
//! and RIPEMD-160 signatures count for nothing. Where gpgv's exit status
//! says otherwise (it exits 0 for expired and revoked keys and for SHA-1,
//! and 2 when one of two signatures is by an unknown key), apt's verdict is
//! the one clients act on, so it is the one the mirror follows.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Signature, SignatureType, SubpacketData};
use pgp::types::{Fingerprint, KeyDetails, KeyId, Tag, VerifyingKey};

/// The keys of one keyring file, evaluated once when loaded.
pub struct Keyring {
    path: PathBuf,
    certs: Vec<SignedPublicKey>,
    signers: Vec<Signer>,
}

/// A primary key or subkey of the keyring, with what its self-signatures
/// say about it.
struct Signer {
    /// Index in `Keyring::certs`.
    cert: usize,
    /// Index in that certificate's subkeys; `None` for the primary key.
    subkey: Option<usize>,
    fingerprint: Fingerprint,
    key_id: KeyId,
    /// The key as errors name it: fingerprint, primary for a subkey,
    /// user id.
    name: String,
    created: u64,
    /// When the key itself stops being valid.
    expires: Option<u64>,
    /// For a subkey: when its primary key stops being valid.
    primary_expires: Option<u64>,
    /// Why it can never make a valid signature, whatever the time.
    refused: Option<Refusal>,
}

enum Refusal {
    /// Not part of the certificate it sits in (no binding signature from
    /// its primary verifies): gpgv acts as if it were not there.
    Unbound(String),
    /// Part of the certificate but unusable: revoked, no valid
    /// self-signature, not allowed to sign.
    Unusable(String),
}

/// What became of one signature of a file.
enum Outcome {
    Good,
    /// Made by a key of the keyring but not over these bytes: apt refuses
    /// the file whatever the other signatures say.
    Bad(String),
    /// Counts for nothing (expired, revoked, unbound, weak digest, ...).
    Refused(String),
    /// No key of the keyring has the issuer's id.
    Unknown(String),
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `2020-01-01 00:00:00 UTC`.
fn date(secs: u64) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let full = crate::dates::rfc3339_micros(t);
    let s = std::str::from_utf8(&full[..19]).unwrap_or("?");
    format!("{} UTC", s.replacen('T', " ", 1))
}

fn created(sig: &Signature) -> u64 {
    sig.created().map_or(0, |t| u64::from(t.as_secs()))
}

/// Digests no self-signature may use: GnuPG refuses MD5 throughout.
fn broken_digest(h: HashAlgorithm) -> bool {
    matches!(
        h,
        HashAlgorithm::None | HashAlgorithm::Md5 | HashAlgorithm::Other(_)
    )
}

/// The signature was made at a time it could be valid: not before the key
/// existed, and not past its own expiration.
fn in_time(sig: &Signature, key_created: u64, now: u64) -> bool {
    let made = created(sig);
    let expired = sig
        .signature_expiration_time()
        .map(|d| std::time::Duration::from(d).as_secs())
        .is_some_and(|d| d != 0 && made + d <= now);
    made >= key_created && !expired
}

/// The key's expiry according to the self-signature `sig`.
fn expiry(sig: &Signature, key_created: u64) -> Option<u64> {
    sig.key_expiration_time()
        .map(|d| std::time::Duration::from(d).as_secs())
        .filter(|&d| d != 0)
        .map(|d| key_created + d)
}

/// Whether the self-signature `sig` lets the key make data signatures.
fn may_sign(sig: &Signature, algorithm: pgp::crypto::public_key::PublicKeyAlgorithm) -> bool {
    let has_flags = sig.config().is_some_and(|c| {
        c.hashed_subpackets()
            .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
    });
    if has_flags {
        sig.key_flags().sign()
    } else {
        // RFC 9580: without key flags, the algorithm says what a key can do.
        algorithm.can_sign()
    }
}

impl Keyring {
    /// Reads and evaluates a keyring file (binary or armored).
    pub fn load(path: &Path) -> Result<Keyring> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading keyring {}", path.display()))?;
        Keyring::from_bytes(path, &bytes, SystemTime::now())
    }

    /// Evaluates the keys in `bytes`, read from `path`, as of `now` (which
    /// only decides what revocations and self-signatures are in time).
    pub fn from_bytes(path: &Path, bytes: &[u8], now: SystemTime) -> Result<Keyring> {
        let now = unix(now);
        if bytes.is_empty() {
            bail!("keyring {} is empty", path.display());
        }
        let (keys, _) = SignedPublicKey::from_reader_many(std::io::Cursor::new(bytes))
            .with_context(|| format!("parsing keyring {}", path.display()))?;
        let mut certs = Vec::new();
        for k in keys {
            match k {
                Ok(k) => certs.push(k),
                // GnuPG also skips what it cannot read; the operator hears.
                Err(e) => tracing::warn!("keyring {}: skipping a key: {e}", path.display()),
            }
        }
        if certs.is_empty() {
            bail!("keyring {} holds no public key", path.display());
        }
        let mut signers = Vec::new();
        for (i, cert) in certs.iter().enumerate() {
            evaluate(i, cert, now, &mut signers);
        }
        for s in &signers {
            match &s.refused {
                Some(Refusal::Unusable(why) | Refusal::Unbound(why)) => {
                    tracing::info!(
                        "keyring {}: key {} can not sign: {why}",
                        path.display(),
                        s.name
                    )
                }
                None if s.expires.or(s.primary_expires).is_some_and(|e| e <= now) => {
                    tracing::info!("keyring {}: key {} has expired", path.display(), s.name)
                }
                None => {}
            }
        }
        Ok(Keyring {
            path: path.to_path_buf(),
            certs,
            signers,
        })
    }

    /// Checks a clearsigned file (`InRelease`) named `file` in errors, and
    /// returns the text that was signed.
    pub fn verify_cleartext(&self, file: &str, text: &str) -> Result<String> {
        self.verify_cleartext_at(file, text, SystemTime::now())
    }

    /// Checks the detached signature `signature` (`Release.gpg`,
    /// `repomd.xml.asc`, armored or binary, one or more signatures) over
    /// `data`; `file` names the signature in errors.
    pub fn verify_detached(&self, file: &str, data: &[u8], signature: &[u8]) -> Result<()> {
        self.verify_detached_at(file, data, signature, SystemTime::now())
    }

    fn verify_cleartext_at(&self, file: &str, text: &str, now: SystemTime) -> Result<String> {
        let (msg, _) = CleartextSignedMessage::from_string(text)
            .map_err(|e| anyhow!("{file} is not a clearsigned message: {e}"))?;
        let signed = msg.signed_text();
        self.judge(file, msg.signatures(), signed.as_bytes(), unix(now))?;
        Ok(signed)
    }

    fn verify_detached_at(
        &self,
        file: &str,
        data: &[u8],
        signature: &[u8],
        now: SystemTime,
    ) -> Result<()> {
        let not_sig = |e: pgp::errors::Error| anyhow!("{file} is not an OpenPGP signature: {e}");
        if signature.is_empty() {
            bail!("{file} is empty, not an OpenPGP signature");
        }
        let (sigs, _) = DetachedSignature::from_reader_many(std::io::Cursor::new(signature))
            .map_err(not_sig)?;
        let sigs = sigs
            .map(|s| s.map(|s| s.signature))
            .collect::<Result<Vec<_>, _>>()
            .map_err(not_sig)?;
        self.judge(file, &sigs, data, unix(now))
    }

    /// Applies apt's rule to every signature of `file` over `data`.
    fn judge(&self, file: &str, sigs: &[Signature], data: &[u8], now: u64) -> Result<()> {
        if sigs.is_empty() {
            bail!("{file} holds no signature");
        }
        let outcomes: Vec<Outcome> = sigs.iter().map(|s| self.check(s, data, now)).collect();
        let good = outcomes.iter().any(|o| matches!(o, Outcome::Good));
        let bad = outcomes.iter().any(|o| matches!(o, Outcome::Bad(_)));
        let mut details = String::new();
        for (i, o) in outcomes.iter().enumerate() {
            let text = match o {
                Outcome::Good => continue,
                Outcome::Bad(t) | Outcome::Refused(t) | Outcome::Unknown(t) => t,
            };
            let _ = write!(details, "; signature {} {text}", i + 1);
        }
        if good && !bad {
            if !details.is_empty() {
                tracing::info!("{file}: accepted on a good signature, ignoring{details}");
            }
            return Ok(());
        }
        let keyring = self.path.display();
        let headline = if bad {
            format!("{file} has a signature from the keyring {keyring} that does not verify")
        } else if outcomes.iter().all(|o| matches!(o, Outcome::Unknown(_))) {
            format!("{file} is not signed by a key in the keyring {keyring}")
        } else {
            format!("{file} has no valid signature from a key in the keyring {keyring}")
        };
        bail!("{headline}{details}")
    }

    fn key(&self, s: &Signer) -> &dyn VerifyingKeyRef {
        let cert = &self.certs[s.cert];
        match s.subkey {
            None => &cert.primary_key,
            Some(i) => &cert.public_subkeys[i].key,
        }
    }

    fn check(&self, sig: &Signature, data: &[u8], now: u64) -> Outcome {
        let fps = sig.issuer_fingerprint();
        let ids = sig.issuer_key_id();
        let issuer = fps
            .first()
            .map(|f| format!("{f:X}"))
            .or_else(|| ids.first().map(|i| i.to_string().to_uppercase()))
            .unwrap_or_else(|| "(no issuer given)".to_string());
        let Some(config) = sig.config() else {
            return Outcome::Refused(format!(
                "by key {issuer}: unsupported signature version {:?}",
                sig.version()
            ));
        };
        // A signature without issuer subpackets names no key: try them all.
        let candidates: Vec<&Signer> = self
            .signers
            .iter()
            .filter(|s| {
                (fps.is_empty() && ids.is_empty())
                    || fps.iter().any(|f| **f == s.fingerprint)
                    || ids.iter().any(|i| **i == s.key_id)
            })
            .collect();
        let Some(first) = candidates.first() else {
            return Outcome::Unknown(format!("by key {issuer}: no such key in the keyring"));
        };
        if !matches!(config.typ, SignatureType::Binary | SignatureType::Text) {
            return Outcome::Refused(format!(
                "by key {}: a {:?} signature, not one over a document",
                first.name, config.typ
            ));
        }
        let hash = config.hash_alg;
        // apt counts MD5, SHA-1 and RIPEMD-160 signatures for nothing, good
        // or bad (gpgv does not even compute MD5 ones), and any digest past
        // its table (SHA224 is its last), so SHA3 too. They are refused
        // before the mathematics, which rPGP would also refuse for SHA-1
        // with an Ed25519 key (RFC 9580 asks for 256-bit digests there).
        if matches!(
            hash,
            HashAlgorithm::Md5
                | HashAlgorithm::Sha1
                | HashAlgorithm::Ripemd160
                | HashAlgorithm::Sha3_256
                | HashAlgorithm::Sha3_512
                | HashAlgorithm::None
                | HashAlgorithm::Private10
                | HashAlgorithm::Other(_)
        ) {
            return Outcome::Refused(format!(
                "by key {}: made with the {hash} digest, which is refused",
                first.name
            ));
        }
        let Some(signer) = candidates
            .iter()
            .find(|s| self.key(s).verify_data(sig, data))
        else {
            // A key gpgv would not have in its keyring (an unbound subkey)
            // gives an error, not a bad signature.
            if let Some(Refusal::Unbound(why)) = &first.refused {
                return Outcome::Refused(format!("by key {}: {why}", first.name));
            }
            return Outcome::Bad(format!(
                "by key {}: does not verify (the file changed after it was signed, or the signature is corrupt)",
                first.name
            ));
        };
        let name = &signer.name;
        if let Some(Refusal::Unusable(why) | Refusal::Unbound(why)) = &signer.refused {
            return Outcome::Refused(format!("by key {name}: {why}"));
        }
        if let Some(e) = signer.primary_expires.filter(|&e| e <= now) {
            return Outcome::Refused(format!(
                "by key {name}: its primary key expired on {}",
                date(e)
            ));
        }
        if let Some(e) = signer.expires.filter(|&e| e <= now) {
            let what = if signer.subkey.is_some() {
                "subkey"
            } else {
                "key"
            };
            return Outcome::Refused(format!("by key {name}: the {what} expired on {}", date(e)));
        }
        let made = created(sig);
        if made < signer.created {
            return Outcome::Refused(format!(
                "by key {name}: made on {}, before the key existed",
                date(made)
            ));
        }
        if let Some(d) = sig.signature_expiration_time() {
            let d = std::time::Duration::from(d).as_secs();
            if d != 0 && made + d <= now {
                return Outcome::Refused(format!(
                    "by key {name}: the signature expired on {}",
                    date(made + d)
                ));
            }
        }
        Outcome::Good
    }
}

/// The one thing `check` needs of a primary key or a subkey.
trait VerifyingKeyRef {
    fn verify_data(&self, sig: &Signature, data: &[u8]) -> bool;
}

impl<K: VerifyingKey> VerifyingKeyRef for K {
    fn verify_data(&self, sig: &Signature, data: &[u8]) -> bool {
        sig.verify(self, data).is_ok()
    }
}

/// Adds the primary key and every subkey of `cert` (index `i`) to
/// `signers`, with what their self-signatures say as of `now`.
fn evaluate(i: usize, cert: &SignedPublicKey, now: u64, signers: &mut Vec<Signer>) {
    let primary = &cert.primary_key;
    let fpr = primary.fingerprint();
    let p_created = u64::from(primary.created_at().as_secs());
    let user = cert
        .details
        .users
        .iter()
        .find_map(|u| u.id.as_str().map(str::to_string));
    let label = |f: &Fingerprint, sub: bool| {
        let mut s = format!("{f:X}");
        if sub {
            let _ = write!(s, " (subkey of {fpr:X})");
        }
        if let Some(u) = &user {
            let _ = write!(s, " \"{u}\"");
        }
        s
    };

    // A key revocation from the key itself ends it, whatever its reason.
    let revoked = cert
        .details
        .revocation_signatures
        .iter()
        .chain(&cert.details.direct_signatures)
        .filter(|s| s.typ() == Some(SignatureType::KeyRevocation))
        .find(|s| s.verify_key(primary).is_ok());

    // The self-signature that says what the key is: the newest valid one
    // on a user id that is not revoked, as GnuPG takes expiry and flags
    // from the user id self-signatures; a direct-key signature only when
    // there is none (keys with no user id). A newer direct-key signature
    // without an expiry must not revive a key its user ids let expire.
    let usable_self =
        |s: &&Signature| !s.hash_alg().is_some_and(broken_digest) && in_time(s, p_created, now);
    let mut on_users: Vec<&Signature> = Vec::new();
    for u in &cert.details.users {
        let latest = u
            .signatures
            .iter()
            .filter(usable_self)
            .filter(|s| s.verify_certification(primary, Tag::UserId, &u.id).is_ok())
            .max_by_key(|s| created(s));
        // A user id whose newest self-signature revokes it adds nothing.
        if let Some(l) = latest
            && l.typ() != Some(SignatureType::CertRevocation)
        {
            on_users.push(l);
        }
    }
    let newest = on_users.into_iter().max_by_key(|s| created(s)).or_else(|| {
        cert.details
            .direct_signatures
            .iter()
            .filter(usable_self)
            .filter(|s| s.typ() == Some(SignatureType::Key) && s.verify_key(primary).is_ok())
            .max_by_key(|s| created(s))
    });

    let p_expires = newest.and_then(|s| expiry(s, p_created));
    let p_refused = if let Some(r) = revoked {
        Some(revocation_text("the key", r))
    } else if newest.is_none() {
        Some("the key has no valid self-signature".to_string())
    } else {
        None
    };
    let p_may_sign = newest.is_some_and(|s| may_sign(s, primary.algorithm()));
    signers.push(Signer {
        cert: i,
        subkey: None,
        fingerprint: fpr.clone(),
        key_id: primary.legacy_key_id(),
        name: label(&fpr, false),
        created: p_created,
        expires: p_expires,
        primary_expires: None,
        refused: match &p_refused {
            Some(why) => Some(Refusal::Unusable(why.clone())),
            None if !p_may_sign => Some(Refusal::Unusable(
                "its key flags do not allow signing".to_string(),
            )),
            None => None,
        },
    });

    for (j, sub) in cert.public_subkeys.iter().enumerate() {
        let key = &sub.key;
        let s_fpr = key.fingerprint();
        let s_created = u64::from(key.created_at().as_secs());
        let bound = |s: &&Signature| s.verify_subkey_binding(primary, key).is_ok();
        let revocation = sub
            .signatures
            .iter()
            .filter(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
            .find(bound);
        let binding = sub
            .signatures
            .iter()
            .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding))
            .filter(|s| !s.hash_alg().is_some_and(broken_digest) && in_time(s, s_created, now))
            .filter(bound)
            .max_by_key(|s| created(s));
        let refused = match (binding, revocation) {
            (None, _) => Some(Refusal::Unbound(format!(
                "no binding signature from its primary key {fpr:X} verifies, so it is not part of that key"
            ))),
            (Some(_), Some(r)) => Some(Refusal::Unusable(revocation_text("the subkey", r))),
            (Some(_), None) if p_refused.is_some() => Some(Refusal::Unusable(format!(
                "its primary key {fpr:X} is unusable: {}",
                p_refused.as_deref().unwrap_or_default()
            ))),
            (Some(b), None) if !may_sign(b, key.algorithm()) => Some(Refusal::Unusable(
                "its key flags do not allow signing".to_string(),
            )),
            // A signing subkey must also claim its primary (an embedded
            // primary key binding signature by the subkey), or anyone could
            // bind someone else's signing key to their own primary.
            (Some(b), None) if !back_signed(b, primary, key) => Some(Refusal::Unusable(
                "the signing subkey is not cross-certified (no valid back-signature to its primary key)"
                    .to_string(),
            )),
            (Some(_), None) => None,
        };
        signers.push(Signer {
            cert: i,
            subkey: Some(j),
            fingerprint: s_fpr.clone(),
            key_id: key.legacy_key_id(),
            name: label(&s_fpr, true),
            created: s_created,
            expires: binding.and_then(|b| expiry(b, s_created)),
            primary_expires: p_expires,
            refused,
        });
    }
}

fn back_signed(
    binding: &Signature,
    primary: &pgp::packet::PublicKey,
    subkey: &pgp::packet::PublicSubkey,
) -> bool {
    binding.embedded_signature().is_some_and(|back| {
        back.typ() == Some(SignatureType::KeyBinding)
            && back.verify_primary_key_binding(subkey, primary).is_ok()
    })
}

fn revocation_text(what: &str, sig: &Signature) -> String {
    let mut s = format!("{what} was revoked on {}", date(created(sig)));
    if let Some(code) = sig.revocation_reason_code() {
        let _ = write!(s, " ({code:?}");
        if let Some(text) = sig
            .revocation_reason_string()
            .and_then(|b| std::str::from_utf8(b).ok())
            .filter(|t| !t.is_empty())
        {
            let _ = write!(s, ": {text}");
        }
        s.push(')');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn dates_in_errors() {
        assert_eq!(date(1_577_836_800), "2020-01-01 00:00:00 UTC");
        assert_eq!(date(1_577_923_261), "2020-01-02 00:01:01 UTC");
    }

    /// gpg in a private home with `args`, at the faked time `at`.
    fn gpg(home: &Path, at: &str, args: &[&str]) -> Vec<u8> {
        let o = Command::new("gpg")
            .env("GNUPGHOME", home)
            .args(["--batch", "--quiet", "--yes", "--pinentry-mode", "loopback"])
            .args(["--passphrase", "", "--faked-system-time", at])
            .args(args)
            .output()
            .expect("gpg is installed");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    }

    fn at(s: &str) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(s.parse().unwrap())
    }

    /// Expiry is a property of the time of the check, not of the time of
    /// the load or of the signature: the same keyring and signature are
    /// good on the last day and refused the day after.
    #[test]
    fn expiry_is_judged_when_a_file_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("gnupg");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        // 2019-01-01, for 10 days: expires 2019-01-11 00:00:00.
        let uid = "ten days <t@example.invalid>";
        gpg(
            &home,
            "20190101T000000",
            &["--quick-gen-key", uid, "ed25519", "sign", "10d"],
        );
        let release = dir.path().join("Release");
        std::fs::write(&release, "Origin: test\n").unwrap();
        let r = release.to_str().unwrap();
        let signed = gpg(&home, "20190105T000000", &["--clearsign", "-o", "-", r]);
        let signed = String::from_utf8(signed).unwrap();
        let sig = gpg(&home, "20190105T000000", &["--detach-sign", "-o", "-", r]);
        let keyring = gpg(&home, "20190105T000000", &["--export", uid]);
        let path = Path::new("test.gpg");
        let keys = Keyring::from_bytes(path, &keyring, at("1546646400")).unwrap();
        let (last_second, expired) = (at("1547164799"), at("1547164800"));
        assert!(
            keys.verify_cleartext_at("InRelease", &signed, last_second)
                .is_ok()
        );
        assert!(
            keys.verify_detached_at("Release.gpg", b"Origin: test\n", &sig, last_second)
                .is_ok()
        );
        let e = keys
            .verify_cleartext_at("InRelease", &signed, expired)
            .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("the key expired on 2019-01-11 00:00:00 UTC"),
            "{e}"
        );
        assert!(e.contains("test.gpg") && e.contains("InRelease"), "{e}");
        let e = keys
            .verify_detached_at("Release.gpg", b"Origin: test\n", &sig, expired)
            .unwrap_err();
        assert!(format!("{e:#}").contains("expired"), "{e:#}");
        // Other bytes under the same signature: a bad signature.
        let e = keys
            .verify_detached_at("Release.gpg", b"Origin: other\n", &sig, last_second)
            .unwrap_err();
        assert!(format!("{e:#}").contains("does not verify"), "{e:#}");
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &home)
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

//! What a plain-tree file was last read as.
//!
//! Files of a plain tree have no release to name their sha256, so the
//! first read of one hashes it, and a record remembers
//! `(volume, path) → size, mtime, sha256`. While `stat` still gives that
//! size and mtime, later requests (after a restart too) go straight to the
//! cached object.
//!
//! A record is a disk-tier entry (see `disk`): a file of exactly
//! [`RECORD_LEN`] bytes named after its volume and path ([`record_key`]), so
//! records are charged to `cache.disk_size` and evicted like objects, and
//! one path has one record however often the file changes. The text is
//! plain ASCII, one line, fixed width:
//!
//! ```text
//! p1 <size, 20 digits> <mtime_ns, sign and 39 digits> <sha256, 64 hex>\n
//! ```
//!
//! Anything else (a damaged or foreign file) is dropped as a miss.

use super::disk::RECORD_LEN;
use crate::digest::Sha256Digest;

/// One plain-tree file as it was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlainRecord {
    pub size: u64,
    pub mtime_ns: i128,
    pub sha: Sha256Digest,
}

/// The name of the record of `path` in `volume`: a sha256 of both, every
/// byte then flipped. Records and objects share the disk tier's index, and
/// an object is named by the sha256 of its bytes: without the flip, an
/// upstream file whose bytes were this text would take the record's name.
/// With it, that takes a preimage of a chosen digest.
pub fn record_key(volume: &str, path: &[u8]) -> Sha256Digest {
    flipped_key(b"unimirror plain\0", volume, path)
}

/// The name of the document kept for `path` in `volume` (a proxy volume's
/// page): made like a record's, under another prefix, so that one path
/// never names both.
pub fn document_key(volume: &str, path: &[u8]) -> Sha256Digest {
    flipped_key(b"unimirror document\0", volume, path)
}

fn flipped_key(prefix: &[u8], volume: &str, path: &[u8]) -> Sha256Digest {
    let mut named = Vec::with_capacity(prefix.len() + volume.len() + 1 + path.len());
    named.extend_from_slice(prefix);
    named.extend_from_slice(volume.as_bytes());
    named.push(0);
    named.extend_from_slice(path);
    let mut key = Sha256Digest::of(&named);
    for b in &mut key.0 {
        *b = !*b;
    }
    key
}

impl PlainRecord {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let text = format!("p1 {:020} {:+040} {}\n", self.size, self.mtime_ns, self.sha);
        text.as_bytes()
            .try_into()
            .expect("the fields are fixed width")
    }

    /// The record in `bytes`, or `None` if they are not one.
    pub fn parse(bytes: &[u8; RECORD_LEN]) -> Option<PlainRecord> {
        let text = std::str::from_utf8(bytes).ok()?;
        let line = text.strip_prefix("p1 ")?.strip_suffix('\n')?;
        let mut fields = line.split(' ');
        let (size, mtime, sha) = (fields.next()?, fields.next()?, fields.next()?);
        if fields.next().is_some() || size.len() != 20 || mtime.len() != 40 {
            return None;
        }
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let (sign, mtime_digits) = mtime.split_at(1);
        if !digits(size) || !matches!(sign, "+" | "-") || !digits(mtime_digits) {
            return None;
        }
        Some(PlainRecord {
            size: size.parse().ok()?,
            mtime_ns: mtime.parse().ok()?,
            sha: Sha256Digest::from_hex(sha)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(size: u64, mtime_ns: i128) -> PlainRecord {
        PlainRecord {
            size,
            mtime_ns,
            sha: Sha256Digest::of(b"x"),
        }
    }

    #[test]
    fn records_round_trip_at_the_edges_of_their_fields() {
        for r in [
            record(0, 0),
            record(u64::MAX, i128::MAX),
            record(1, i128::MIN),
            record(12345, -1_000_000_000),
        ] {
            let bytes = r.encode();
            assert_eq!(bytes.len(), RECORD_LEN);
            assert_eq!(PlainRecord::parse(&bytes), Some(r), "{r:?}");
        }
    }

    #[test]
    fn anything_but_a_well_formed_record_is_refused() {
        let good = record(7, 1_700_000_000_000_000_000).encode();
        let mut cases: Vec<[u8; RECORD_LEN]> = vec![[0; RECORD_LEN], [b' '; RECORD_LEN]];
        // Every single-byte change to a separator, the prefix or the sign.
        for at in [0, 1, 2, 23, 24, 64, 129] {
            let mut bad = good;
            bad[at] = b'x';
            cases.push(bad);
        }
        // A digit field with a sign or space inside, and a short hex field.
        let mut bad = good;
        bad[3] = b'+';
        cases.push(bad);
        let mut bad = good;
        bad[30] = b' ';
        cases.push(bad);
        let mut bad = good;
        bad[128] = b'g';
        cases.push(bad);
        for bad in cases {
            assert_eq!(
                PlainRecord::parse(&bad),
                None,
                "{:?}",
                String::from_utf8_lossy(&bad)
            );
        }
    }

    #[test]
    fn keys_keep_volume_and_path_apart() {
        assert_ne!(record_key("a", b"bc"), record_key("ab", b"c"));
        assert_ne!(record_key("v", b"p"), record_key("v", b"p\0"));
        assert_eq!(record_key("v", b"\xff/x"), record_key("v", b"\xff/x"));
        assert_ne!(record_key("v", b"p"), document_key("v", b"p"));
        // Not the name of an object whose bytes are the text hashed.
        assert_ne!(
            record_key("v", b"p"),
            Sha256Digest::of(b"unimirror plain\0v\0p")
        );
    }
}

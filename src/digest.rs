//! sha256: the digest type every part of unimirror names content by (object
//! store, manifests, cache keys, upstream metadata), and the loops that
//! compute it over a reader, a copy or a writer.
//!
//! The loops that interleave hashing with their own I/O (a fill's origin
//! reads under a timeout, a download's chunks, an uncached response) keep
//! their own `Sha256` and end with [`Sha256Digest::from_hasher`].

use std::fmt;
use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

/// A sha256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Sha256Digest(pub [u8; 32]);

/// As its lowercase hex, in JSON.
impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Sha256Digest::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a sha256")))
    }
}

impl Sha256Digest {
    pub fn hex(&self) -> String {
        let mut out = [0u8; 64];
        hex::encode_to_slice(self.0, &mut out).expect("64 bytes for 32");
        std::str::from_utf8(&out).expect("hex is ASCII").to_owned()
    }

    pub fn from_hex(s: &str) -> Option<Sha256Digest> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Sha256Digest(out))
    }

    pub fn of(bytes: &[u8]) -> Sha256Digest {
        Sha256Digest(Sha256::digest(bytes).into())
    }

    /// The digest of what a hasher has been fed.
    pub fn from_hasher(hasher: Sha256) -> Sha256Digest {
        Sha256Digest(hasher.finalize().into())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// sha256 of everything a reader yields.
pub fn sha256_of_reader(r: impl Read) -> io::Result<Sha256Digest> {
    pump(r, io::sink(), 1 << 20).map(|(digest, _)| digest)
}

/// Copies `from` to `to`, hashing every byte; returns the digest and the
/// number of bytes.
pub fn copy_hashing(from: impl Read, to: impl Write) -> io::Result<(Sha256Digest, u64)> {
    pump(from, to, 256 * 1024)
}

/// The one read-hash-write loop, with a buffer of `buf_len` bytes (large
/// for whole-file verification, smaller where it runs once per file of a
/// release).
fn pump(
    mut from: impl Read,
    mut to: impl Write,
    buf_len: usize,
) -> io::Result<(Sha256Digest, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; buf_len];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok((Sha256Digest::from_hasher(hasher), total)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn finish(self) -> (W, Sha256Digest, u64) {
        (
            self.inner,
            Sha256Digest::from_hasher(self.hasher),
            self.written,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hex_round_trip_and_the_empty_digest() {
        let d = Sha256Digest::of(b"");
        assert_eq!(d.hex(), EMPTY);
        assert_eq!(Sha256Digest::from_hex(EMPTY), Some(d));
        assert_eq!(Sha256Digest::from_hex("zz"), None);
        assert_eq!(format!("{d}"), EMPTY);
    }

    #[test]
    fn every_loop_agrees() {
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        let want = Sha256Digest::of(&data);
        assert_eq!(sha256_of_reader(&data[..]).unwrap(), want);
        let mut copy = Vec::new();
        assert_eq!(
            copy_hashing(&data[..], &mut copy).unwrap(),
            (want, data.len() as u64)
        );
        assert_eq!(copy, data);
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(&data).unwrap();
        let (inner, digest, n) = w.finish();
        assert_eq!((digest, n), (want, data.len() as u64));
        assert_eq!(inner, data);
    }
}

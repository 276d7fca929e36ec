//! Readers with a ceiling, for metadata from an upstream that may be
//! hostile: a compressed index is small on the wire and verified against
//! its signed hash, but nothing says what it expands to. A gzip or xz
//! bomb of a few MiB expands to terabytes; the parsers read through these
//! readers, so they stop at `sync.max_metadata_size` instead.

use std::io::{self, BufRead, BufReader, Read};

use anyhow::{Result, bail};

/// Passes at most `limit` bytes through, then fails naming `what`.
pub struct Limited<R> {
    inner: R,
    left: u64,
    limit: u64,
    what: String,
}

impl<R: Read> Limited<R> {
    pub fn new(inner: R, limit: u64, what: impl Into<String>) -> Limited<R> {
        Limited {
            inner,
            left: limit,
            limit,
            what: what.into(),
        }
    }
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // One byte more tells "exactly at the limit" from "past it".
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(format!(
                    "{} decompresses to more than {} bytes (sync.max_metadata_size); refused",
                    self.what, self.limit
                ))),
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// A reader over `compressed` that decompresses by `name`'s suffix (gz,
/// xz, zst; anything else is read as it is) and fails once the output
/// passes `limit` bytes.
pub fn decompressing<'a>(
    name: &str,
    compressed: impl Read + 'a,
    limit: u64,
) -> Result<BufReader<Limited<Box<dyn Read + 'a>>>> {
    let r: Box<dyn Read + 'a> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(compressed))
    } else if name.ends_with(".xz") || name.ends_with(".lzma") {
        Box::new(liblzma::read::XzDecoder::new(compressed))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(compressed)?)
    } else if name.ends_with(".bz2") {
        bail!("{name}: bzip2 is not supported; the upstream has other forms");
    } else {
        Box::new(compressed)
    };
    Ok(BufReader::with_capacity(
        1 << 16,
        Limited::new(r, limit, name.to_string()),
    ))
}

/// Reads one line (up to and including `\n`) into `line`, refusing one
/// longer than `max` bytes rather than growing the buffer without end.
/// Returns 0 at the end of input.
pub fn read_line(r: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    line.clear();
    let n = r.take(max as u64 + 1).read_until(b'\n', line)?;
    if line.len() > max {
        return Err(io::Error::other(format!(
            "a line longer than {max} bytes; refused"
        )));
    }
    Ok(n)
}

/// A streaming XML reader's input, with a ceiling on the bytes one event
/// (a tag with its attributes, a text node) may take: quick-xml grows its
/// buffer to hold a whole event, so a 1 GiB attribute would otherwise be
/// 1 GiB of memory. The parser calls [`EventBound::reset`] after each event.
/// The count is checked whenever the reader refills, so an event stops
/// within one buffer (64 KiB here, 8 KiB by default) past `max`.
pub struct EventBound<R> {
    inner: R,
    used: usize,
    max: usize,
}

/// Far above any real element or text of `repomd.xml` or `primary.xml`
/// (a package description is a few KiB).
pub const MAX_XML_EVENT: usize = 1 << 20;

impl<R: BufRead> EventBound<R> {
    pub fn new(inner: R, max: usize) -> EventBound<R> {
        EventBound {
            inner,
            used: 0,
            max,
        }
    }

    /// An event ended: the next one starts counting from zero.
    pub fn reset(&mut self) {
        self.used = 0;
    }

    fn check(&self) -> io::Result<()> {
        if self.used > self.max {
            return Err(io::Error::other(format!(
                "an XML element or text longer than {} bytes; refused",
                self.max
            )));
        }
        Ok(())
    }
}

impl<R: BufRead> Read for EventBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.check()?;
        let n = self.inner.read(buf)?;
        self.used += n;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for EventBound<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.check()?;
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.used += n;
        self.inner.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// `copies` concatenated gzip members of 1 MiB of zeros: about 1 KiB
    /// each on the wire, 1 MiB each decompressed.
    pub(crate) fn gzip_bomb(copies: usize) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 1 << 20]).unwrap();
        let member = gz.finish().unwrap();
        member.repeat(copies)
    }

    /// One xz stream of `mib` MiB of zeros.
    pub(crate) fn xz_bomb(mib: usize) -> Vec<u8> {
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..mib {
            xz.write_all(&zeros).unwrap();
        }
        xz.finish().unwrap()
    }

    /// Reads to the end through a small buffer (the memory a streaming
    /// parser would use), returning the bytes seen or the error.
    fn drain(mut r: impl Read) -> (u64, Option<String>) {
        let mut buf = [0u8; 8192];
        let mut seen = 0u64;
        loop {
            match r.read(&mut buf) {
                Ok(0) => return (seen, None),
                Ok(n) => seen += n as u64,
                Err(e) => return (seen, Some(e.to_string())),
            }
        }
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let limit = 1 << 20;
        for (name, bomb) in [
            ("Packages.gz", gzip_bomb(64)),
            ("primary.xml.xz", xz_bomb(64)),
        ] {
            // 64 MiB behind well under 100 KiB.
            assert!(bomb.len() < 100 << 10, "{name}: {} bytes", bomb.len());
            let (seen, e) = drain(decompressing(name, &bomb[..], limit).unwrap());
            let e = e.unwrap_or_else(|| panic!("{name}: read to the end"));
            assert!(
                e.contains(name) && e.contains("sync.max_metadata_size"),
                "{e}"
            );
            assert_eq!(seen, limit, "{name}: stops exactly at the limit");
        }
    }

    #[test]
    fn a_file_exactly_at_the_limit_passes() {
        let bomb = gzip_bomb(2);
        let (seen, e) = drain(decompressing("x.gz", &bomb[..], 2 << 20).unwrap());
        assert_eq!((seen, e), (2 << 20, None));
        let (seen, e) = drain(decompressing("plain", &b"abc"[..], 3).unwrap());
        assert_eq!((seen, e), (3, None));
        let (_, e) = drain(decompressing("plain", &b"abcd"[..], 3).unwrap());
        assert!(e.is_some());
    }

    #[test]
    fn long_lines_are_refused() {
        let mut line = Vec::new();
        let mut r = BufReader::new(&b"short\nsomewhat longer\n"[..]);
        assert_eq!(read_line(&mut r, &mut line, 8).unwrap(), 6);
        assert!(read_line(&mut r, &mut line, 8).is_err());
        let mut r = BufReader::new(&b"12345678"[..]);
        assert_eq!(read_line(&mut r, &mut line, 8).unwrap(), 8);
        assert_eq!(read_line(&mut r, &mut line, 8).unwrap(), 0);
    }
}

//! The release manifest: an immutable, sorted, memory-mappable table of
//! path → (type, size, mtime, sha256 or symlink target).
//!
//! A manifest has to hold PyPI-scale releases (ten million entries) and be
//! read by a daemon that must stay within a small memory budget, so it is
//! never loaded as a whole: the file is mapped, an `fst` map finds a path's
//! record in microseconds, and listings and diffs stream it in order.
//!
//! Keys are `<directory>\0<name>` (the root directory is the empty string).
//! Because NUL sorts before every other byte, the direct children of a
//! directory are one contiguous, name-ordered range: listing a directory is
//! a range scan, and a tree walked directory by directory in byte order of
//! the directory paths produces keys in exactly sorted order, which lets a
//! release be built and diffed in one streaming pass.
//!
//! File layout (all integers little-endian), described in
//! `docs/volume-format.md`:
//!
//! ```text
//! "UNIMIRMF" u32 format u32 0      header, 16 bytes
//! records                          one per entry, variable length
//! fst map                          key -> offset of the record in `records`
//! footer                           counts and offsets, 88 bytes, ends in "UNIMIRMF"
//! ```

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use fst::{IntoStreamer, Streamer};
use memmap2::Mmap;

// The old paths of what moved to `crate::digest`, for code not yet moved.
pub use crate::digest::{HashingWriter, Sha256Digest, sha256_of_reader};

pub const MAGIC: &[u8; 8] = b"UNIMIRMF";
/// The header version of a manifest without remote entries: what every
/// release had before on-demand volumes, and still has without them, so
/// that such releases stay readable by daemons that predate them.
pub const FORMAT: u32 = 1;
/// The header version of a manifest holding remote entries. A daemon that
/// does not know it refuses the release by name (its check of the version
/// fails) instead of answering 404 for every artifact.
pub const FORMAT_REMOTE: u32 = 2;
const HEADER_LEN: u64 = 16;
const FOOTER_LEN: usize = 88;

/// Version 2's footer adds the remote count and bytes before the format.
fn footer_len(format: u32) -> usize {
    match format {
        FORMAT => FOOTER_LEN,
        _ => FOOTER_LEN + 16,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File = 1,
    Dir = 2,
    Symlink = 3,
    /// A file whose bytes are not on the origin: the daemon fetches them
    /// from the upstream URL the entry carries, on first request, and
    /// checks them against the entry's size and sha256.
    Remote = 4,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::File),
            2 => Some(Kind::Dir),
            3 => Some(Kind::Symlink),
            4 => Some(Kind::Remote),
            _ => None,
        }
    }
}

/// One manifest entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Bytes of a file's content (local or remote); 0 for directories and
    /// symlinks.
    pub size: u64,
    /// Modification time, seconds and nanoseconds since the Unix epoch.
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Content hash of a file (local or remote); zero for the other kinds.
    pub sha256: Sha256Digest,
    /// Target of a symlink, relative to the link's directory; the upstream
    /// URL of a remote file; empty otherwise.
    pub target: Vec<u8>,
    /// The inode the updater read the file from: a hint that lets the next
    /// release skip rehashing an unchanged file. Meaningless to readers.
    pub source_inode: u64,
}

impl Entry {
    /// Whether it has content to serve: a file, here or remote.
    pub fn is_file(&self) -> bool {
        matches!(self.kind, Kind::File | Kind::Remote)
    }

    /// The upstream URL of a remote file.
    pub fn remote_url(&self) -> Option<&str> {
        match self.kind {
            Kind::Remote => std::str::from_utf8(&self.target).ok(),
            _ => None,
        }
    }

    /// Same content and metadata as served (the source inode aside).
    pub fn same_as_served(&self, other: &Entry) -> bool {
        self.kind == other.kind
            && self.size == other.size
            && self.mtime == other.mtime
            && self.mtime_nsec == other.mtime_nsec
            && self.sha256 == other.sha256
            && self.target == other.target
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind as u8);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.mtime.to_le_bytes());
        out.extend_from_slice(&self.mtime_nsec.to_le_bytes());
        out.extend_from_slice(&self.source_inode.to_le_bytes());
        match self.kind {
            Kind::File => out.extend_from_slice(&self.sha256.0),
            Kind::Symlink => {
                out.extend_from_slice(&(self.target.len() as u32).to_le_bytes());
                out.extend_from_slice(&self.target);
            }
            Kind::Remote => {
                out.extend_from_slice(&self.sha256.0);
                out.extend_from_slice(&(self.target.len() as u32).to_le_bytes());
                out.extend_from_slice(&self.target);
            }
            Kind::Dir => {}
        }
    }

    fn decode(buf: &[u8]) -> Option<Entry> {
        let kind = Kind::from_u8(*buf.first()?)?;
        let u64_at = |o: usize| -> Option<u64> {
            Some(u64::from_le_bytes(buf.get(o..o + 8)?.try_into().ok()?))
        };
        let size = u64_at(1)?;
        let mtime = u64_at(9)? as i64;
        let mtime_nsec = u32::from_le_bytes(buf.get(17..21)?.try_into().ok()?);
        let source_inode = u64_at(21)?;
        let mut entry = Entry {
            kind,
            size,
            mtime,
            mtime_nsec,
            sha256: Sha256Digest::default(),
            target: Vec::new(),
            source_inode,
        };
        match kind {
            Kind::File => entry.sha256 = Sha256Digest(buf.get(29..61)?.try_into().ok()?),
            Kind::Symlink => {
                let len = u32::from_le_bytes(buf.get(29..33)?.try_into().ok()?) as usize;
                entry.target = buf.get(33..33usize.checked_add(len)?)?.to_vec();
            }
            Kind::Remote => {
                entry.sha256 = Sha256Digest(buf.get(29..61)?.try_into().ok()?);
                let len = u32::from_le_bytes(buf.get(61..65)?.try_into().ok()?) as usize;
                entry.target = buf.get(65..65usize.checked_add(len)?)?.to_vec();
            }
            Kind::Dir => {}
        }
        Some(entry)
    }
}

/// Builds the key of `name` in directory `dir` (both relative, `/`-separated,
/// the root being empty).
pub fn key(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(dir.len() + 1 + name.len());
    k.extend_from_slice(dir);
    k.push(0);
    k.extend_from_slice(name);
    k
}

/// Splits a relative path `a/b/c` into its key `a/b\0c`. The empty path
/// (the root) has no key.
pub fn key_for_path(path: &[u8]) -> Option<Vec<u8>> {
    if path.is_empty() {
        return None;
    }
    Some(match path.iter().rposition(|&b| b == b'/') {
        Some(i) => key(&path[..i], &path[i + 1..]),
        None => key(b"", path),
    })
}

/// Turns a key back into the relative path.
pub fn path_for_key(key: &[u8]) -> Vec<u8> {
    let i = key.iter().position(|&b| b == 0).unwrap_or(0);
    let (dir, name) = (&key[..i], &key[i + 1..]);
    if dir.is_empty() {
        name.to_vec()
    } else {
        let mut p = dir.to_vec();
        p.push(b'/');
        p.extend_from_slice(name);
        p
    }
}

/// Totals of a manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Sum of file sizes.
    pub bytes: u64,
    /// Of the files, those remote (header version 2 only), and their bytes.
    pub remote: u64,
    pub remote_bytes: u64,
}

// ---------------------------------------------------------------------------
// Writing

/// Writes a manifest sequentially. Entries must be pushed in key order.
pub struct ManifestWriter {
    path: PathBuf,
    out: HashingWriter<BufWriter<File>>,
    fst_path: PathBuf,
    fst: fst::MapBuilder<BufWriter<File>>,
    record_pos: u64,
    buf: Vec<u8>,
    counts: Counts,
    format: u32,
}

impl ManifestWriter {
    /// Creates the manifest at `path` (a temporary name: the caller renames it
    /// into place once finished). A scratch file for the index goes beside it.
    pub fn create(path: &Path) -> Result<ManifestWriter> {
        ManifestWriter::create_version(path, FORMAT)
    }

    /// [`ManifestWriter::create`] for a manifest that may hold remote
    /// entries (header version 2).
    pub fn create_with_remote(path: &Path) -> Result<ManifestWriter> {
        ManifestWriter::create_version(path, FORMAT_REMOTE)
    }

    fn create_version(path: &Path, format: u32) -> Result<ManifestWriter> {
        let file = crate::durable::create_new(path)
            .with_context(|| format!("creating {}", path.display()))?;
        let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        out.write_all(MAGIC)?;
        out.write_all(&format.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        let fst_path = path.with_extension("fst.tmp");
        let fst_file = crate::durable::create_new(&fst_path)
            .with_context(|| format!("creating {}", fst_path.display()))?;
        let fst = fst::MapBuilder::new(BufWriter::with_capacity(1 << 20, fst_file))?;
        Ok(ManifestWriter {
            path: path.to_path_buf(),
            out,
            fst_path,
            fst,
            record_pos: 0,
            buf: Vec::with_capacity(128),
            counts: Counts::default(),
            format,
        })
    }

    /// Adds an entry under its key (see [`key`]). Keys must increase.
    pub fn push(&mut self, key: &[u8], entry: &Entry) -> Result<()> {
        if entry.kind == Kind::Remote && self.format < FORMAT_REMOTE {
            bail!(
                "a remote entry ({}) in a manifest of version {}",
                lossy(key),
                self.format
            );
        }
        self.fst
            .insert(key, self.record_pos)
            .with_context(|| format!("manifest key out of order: {:?}", lossy(key)))?;
        self.buf.clear();
        entry.encode(&mut self.buf);
        self.out.write_all(&self.buf)?;
        self.record_pos += self.buf.len() as u64;
        self.counts.entries += 1;
        match entry.kind {
            Kind::File => {
                self.counts.files += 1;
                self.counts.bytes += entry.size;
            }
            Kind::Remote => {
                self.counts.files += 1;
                self.counts.bytes += entry.size;
                self.counts.remote += 1;
                self.counts.remote_bytes += entry.size;
            }
            Kind::Dir => self.counts.dirs += 1,
            Kind::Symlink => self.counts.symlinks += 1,
        }
        Ok(())
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Completes the file, fsyncs it and returns its sha256, size and counts.
    pub fn finish(self) -> Result<(Sha256Digest, u64, Counts)> {
        let ManifestWriter {
            path,
            mut out,
            fst_path,
            fst,
            record_pos,
            counts,
            format,
            ..
        } = self;
        fst.finish()?;
        let mut fst_file = File::open(&fst_path)?;
        let fst_len = io::copy(&mut fst_file, &mut out)?;
        let _ = std::fs::remove_file(&fst_path);
        let mut footer = Vec::with_capacity(footer_len(format));
        let mut fields = vec![
            counts.entries,
            counts.files,
            counts.dirs,
            counts.symlinks,
            counts.bytes,
            HEADER_LEN,
            record_pos,
            HEADER_LEN + record_pos,
            fst_len,
        ];
        if format >= FORMAT_REMOTE {
            fields.extend([counts.remote, counts.remote_bytes]);
        }
        for v in fields {
            footer.extend_from_slice(&v.to_le_bytes());
        }
        footer.extend_from_slice(&format.to_le_bytes());
        footer.extend_from_slice(&0u32.to_le_bytes());
        footer.extend_from_slice(MAGIC);
        debug_assert_eq!(footer.len(), footer_len(format));
        out.write_all(&footer)?;
        let (buf, digest, size) = out.finish();
        let file = buf.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
            .with_context(|| format!("fsync {}", path.display()))?;
        Ok((digest, size, counts))
    }

    /// Removes the partial files after a failure.
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(&self.fst_path);
    }
}

// ---------------------------------------------------------------------------
// Reading

/// A byte range of a shared memory map, for `fst` to read from.
#[derive(Clone)]
struct MappedRange {
    map: Arc<Mmap>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MappedRange {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.start..self.end]
    }
}

/// A directory's first entries (name, entry) and how many more it has.
pub type FirstEntries = (Vec<(Vec<u8>, Entry)>, u64);

/// Whether to check a manifest's sha256 when opening it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Read the whole file once and compare with this digest.
    Sha256(Sha256Digest),
    /// Trust the file (only for a manifest this process just wrote).
    No,
}

/// An open, memory-mapped manifest. Cheap to clone.
#[derive(Clone)]
pub struct Manifest {
    map: Arc<Mmap>,
    index: fst::Map<MappedRange>,
    records: (usize, usize),
    counts: Counts,
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("counts", &self.counts)
            .finish()
    }
}

impl Manifest {
    /// Opens and checks a manifest file.
    pub fn open(path: &Path, verify: Verify) -> Result<Manifest> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        if let Verify::Sha256(expected) = verify {
            // Read with plain reads rather than through the map, so checking
            // a large manifest does not leave it all resident in this process.
            let actual =
                sha256_of_reader(&file).with_context(|| format!("reading {}", path.display()))?;
            if actual != expected {
                bail!(
                    "{} is corrupt: its sha256 is {actual}, the release records {expected}",
                    path.display()
                );
            }
        }
        // SAFETY: manifests are immutable once renamed into place (they are
        // only ever replaced by a new file under a new name), so the mapped
        // bytes do not change under us.
        let map = Arc::new(unsafe { Mmap::map(&file) }?);
        Manifest::from_map(map).with_context(|| format!("reading manifest {}", path.display()))
    }

    fn from_map(map: Arc<Mmap>) -> Result<Manifest> {
        let len = map.len();
        if len < HEADER_LEN as usize + FOOTER_LEN || &map[..8] != MAGIC {
            bail!("not a unimirror manifest (bad magic or too short)");
        }
        let format = u32::from_le_bytes(map[8..12].try_into().unwrap());
        if format != FORMAT && format != FORMAT_REMOTE {
            bail!(
                "manifest format {format} is not supported (this unimirror reads {FORMAT} and {FORMAT_REMOTE})"
            );
        }
        let footer_len = footer_len(format);
        if len < HEADER_LEN as usize + footer_len {
            bail!("manifest is truncated (no footer)");
        }
        let footer = &map[len - footer_len..];
        if &footer[footer_len - 8..] != MAGIC {
            bail!("manifest is truncated (no footer)");
        }
        let f = |i: usize| u64::from_le_bytes(footer[i * 8..i * 8 + 8].try_into().unwrap());
        let counts = Counts {
            entries: f(0),
            files: f(1),
            dirs: f(2),
            symlinks: f(3),
            bytes: f(4),
            remote: if format >= FORMAT_REMOTE { f(9) } else { 0 },
            remote_bytes: if format >= FORMAT_REMOTE { f(10) } else { 0 },
        };
        let (rec_off, rec_len, fst_off, fst_len) = (f(5), f(6), f(7), f(8));
        let body_end = (len - footer_len) as u64;
        let fits = rec_off.checked_add(rec_len).is_some_and(|e| e <= body_end)
            && fst_off.checked_add(fst_len).is_some_and(|e| e <= body_end);
        if !fits {
            bail!("manifest footer points outside the file");
        }
        let range = MappedRange {
            map: map.clone(),
            start: fst_off as usize,
            end: (fst_off + fst_len) as usize,
        };
        let index = walk_index(|| fst::Map::new(range))?.context("manifest index is damaged")?;
        Ok(Manifest {
            map,
            index,
            records: (rec_off as usize, (rec_off + rec_len) as usize),
            counts,
        })
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The entry whose record starts at `offset` (as [`Manifest::locate`]
    /// found it); an offset from elsewhere gives an error or another entry,
    /// never a panic.
    pub fn entry_at(&self, offset: u64) -> Result<Entry> {
        let start = self.records.0 + offset as usize;
        let slice = self
            .map
            .get(start..self.records.1)
            .context("manifest record offset out of range")?;
        Entry::decode(slice).context("manifest record is damaged")
    }

    /// The entry under `key` (see [`key`]).
    pub fn get_key(&self, key: &[u8]) -> Result<Option<Entry>> {
        match walk_index(|| self.index.get(key))? {
            Some(off) => self.entry_at(off).map(Some),
            None => Ok(None),
        }
    }

    /// The entry at relative path `a/b/c`; `None` for the root and for paths
    /// the release does not have.
    pub fn get(&self, path: &[u8]) -> Result<Option<Entry>> {
        match self.locate(path)? {
            Some(off) => self.entry_at(off).map(Some),
            None => Ok(None),
        }
    }

    /// Where the record of relative path `a/b/c` starts, for
    /// [`Manifest::entry_at`]: the index walk alone, which is what a cache
    /// of lookups saves.
    pub fn locate(&self, path: &[u8]) -> Result<Option<u64>> {
        match key_for_path(path) {
            Some(k) => walk_index(|| self.index.get(&k)),
            None => Ok(None),
        }
    }

    /// The direct children of directory `dir` (relative, empty for the root),
    /// in name order.
    pub fn list(&self, dir: &[u8]) -> Result<Vec<(Vec<u8>, Entry)>> {
        Ok(self.list_first(dir, usize::MAX)?.0)
    }

    /// The first `max` entries of a directory (as `list`), and how many
    /// more it has: memory stays bounded by `max` however large the
    /// directory.
    pub fn list_first(&self, dir: &[u8], max: usize) -> Result<FirstEntries> {
        let mut lo = dir.to_vec();
        lo.push(0);
        let mut hi = dir.to_vec();
        hi.push(1);
        walk_index(|| {
            let mut stream = self.index.range().ge(&lo).lt(&hi).into_stream();
            let (mut out, mut more) = (Vec::new(), 0);
            while let Some((k, off)) = stream.next() {
                if out.len() < max {
                    out.push((k[lo.len()..].to_vec(), self.entry_at(off)?));
                } else {
                    more += 1;
                }
            }
            Ok((out, more))
        })?
    }

    /// The files `find` knows (by their sha256: the size it found and
    /// what else it says), in key order, each with the path clients ask
    /// for it by (`prefix`, then its path); and the bytes of the distinct
    /// objects among them (files with the same content count once).
    pub fn files_found<T>(
        &self,
        prefix: &str,
        mut find: impl FnMut(&crate::digest::Sha256Digest) -> Option<(u64, T)>,
    ) -> Result<FoundFiles<T>> {
        let (mut files, mut bytes) = (Vec::new(), 0);
        let mut counted = std::collections::HashSet::new();
        let mut stream = self.stream();
        while let Some(next) = stream.next_entry() {
            let (key, entry) = next?;
            if !entry.is_file() {
                continue;
            }
            let Some((size, what)) = find(&entry.sha256) else {
                continue;
            };
            if counted.insert(entry.sha256) {
                bytes += size;
            }
            let path = format!(
                "{}/{}",
                prefix.trim_end_matches('/'),
                String::from_utf8_lossy(&path_for_key(&key))
            );
            files.push(FoundFile { path, size, what });
        }
        Ok(FoundFiles { files, bytes })
    }

    /// Every (key, entry) in key order, without loading them all.
    pub fn stream(&self) -> ManifestStream<'_> {
        ManifestStream {
            manifest: self,
            state: StreamState::NotStarted,
        }
    }
}

/// Runs one walk of the fst index. fst trusts its bytes: an index sound
/// enough to open but damaged inside makes it index out of bounds. The
/// sha256 check keeps rot and truncation out, so only a manifest written
/// that way (a bug, or someone with write access to the origin) gets here;
/// it then fails the lookups it damages with an error, instead of a panic
/// per request.
fn walk_index<T>(walk: impl FnOnce() -> T) -> Result<T> {
    // The index is only read: a walk cut short leaves nothing half-changed.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(walk))
        .map_err(|_| anyhow!("manifest index is damaged"))
}

/// What [`Manifest::files_found`] found.
pub struct FoundFiles<T> {
    pub files: Vec<FoundFile<T>>,
    /// The bytes of the distinct objects among them.
    pub bytes: u64,
}

/// One file [`Manifest::files_found`] found.
pub struct FoundFile<T> {
    /// As clients ask for it: the prefix, then its path.
    pub path: String,
    pub size: u64,
    /// What the lookup said of it.
    pub what: T,
}

/// Streams a manifest in key order.
pub struct ManifestStream<'m> {
    manifest: &'m Manifest,
    state: StreamState<'m>,
}

enum StreamState<'m> {
    /// Started by the first `next_entry`, since starting walks the index.
    NotStarted,
    Streaming(fst::map::Stream<'m>),
    /// The end, or a damaged index.
    Stopped,
}

impl ManifestStream<'_> {
    /// The next key and its entry; after an error, `None`.
    pub fn next_entry(&mut self) -> Option<Result<(Vec<u8>, Entry)>> {
        let manifest: &Manifest = self.manifest;
        let index = &manifest.index;
        let state = &mut self.state;
        let next = walk_index(|| {
            if let StreamState::NotStarted = state {
                *state = StreamState::Streaming(index.stream());
            }
            match state {
                StreamState::Streaming(s) => s.next().map(|(k, off)| (k.to_vec(), off)),
                _ => None,
            }
        });
        match next {
            Ok(Some((key, off))) => Some(self.manifest.entry_at(off).map(|e| (key, e))),
            Ok(None) => {
                self.state = StreamState::Stopped;
                None
            }
            Err(e) => {
                self.state = StreamState::Stopped;
                Some(Err(e))
            }
        }
    }
}

/// A key or path as text for messages.
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `manifest` fuzz target: indexes that open, whose walks
    /// made fst index out of bounds (one in a lookup, one as soon as a
    /// stream starts). Every operation now answers, some with an error.
    #[test]
    fn a_damaged_index_fails_its_lookups_instead_of_panicking() {
        let found: [&[u8]; 2] = [
            include_bytes!("../../tests/fixtures/fuzz/manifest-fst-out-of-bounds"),
            include_bytes!("../../tests/fixtures/fuzz/manifest-fst-damaged-root"),
        ];
        for (i, bytes) in found.into_iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("m");
            std::fs::write(&path, bytes).unwrap();
            let m = Manifest::open(&path, Verify::No).unwrap();
            let mut errors = Vec::new();
            let mut stream = m.stream();
            let mut keys = Vec::new();
            while let Some(entry) = stream.next_entry() {
                match entry {
                    Ok((k, _)) => keys.push(k),
                    Err(e) => errors.push(format!("{e:#}")),
                }
            }
            for k in &keys {
                errors.extend(m.get_key(k).err().map(|e| format!("{e:#}")));
            }
            errors.extend(m.list(b"").err().map(|e| format!("{e:#}")));
            errors.extend(m.get(b"a/b").err().map(|e| format!("{e:#}")));
            assert!(
                errors.iter().any(|e| e == "manifest index is damaged"),
                "input {i}: {errors:?}"
            );
        }
    }

    fn file(size: u64, fill: u8) -> Entry {
        Entry {
            kind: Kind::File,
            size,
            mtime: 1_700_000_000,
            mtime_nsec: 5,
            sha256: Sha256Digest([fill; 32]),
            target: vec![],
            source_inode: 77,
        }
    }

    fn dir() -> Entry {
        Entry {
            kind: Kind::Dir,
            size: 0,
            mtime: -3,
            mtime_nsec: 0,
            sha256: Sha256Digest::default(),
            target: vec![],
            source_inode: 0,
        }
    }

    fn write(entries: &[(&[u8], Entry)]) -> (tempfile::TempDir, PathBuf, Sha256Digest) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        let mut w = ManifestWriter::create(&path).unwrap();
        for (p, e) in entries {
            w.push(&key_for_path(p).unwrap(), e).unwrap();
        }
        let (sha, size, _) = w.finish().unwrap();
        assert_eq!(size, std::fs::metadata(&path).unwrap().len());
        (dir, path, sha)
    }

    #[test]
    fn keys_round_trip() {
        for p in [&b"a"[..], b"a/b", b"a/b/c d", b"\xff/x"] {
            assert_eq!(path_for_key(&key_for_path(p).unwrap()), p);
        }
        assert_eq!(key_for_path(b""), None);
    }

    #[test]
    fn children_sort_before_deeper_and_longer_directories() {
        // The order a directory-by-directory walk produces must be key order.
        let mut keys = vec![
            key(b"a/b", b"x"),
            key(b"a", b"z"),
            key(b"", b"a"),
            key(b"a-b", b"y"),
            key(b"a", b"b"),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                key(b"", b"a"),
                key(b"a", b"b"),
                key(b"a", b"z"),
                key(b"a-b", b"y"),
                key(b"a/b", b"x"),
            ]
        );
    }

    #[test]
    fn write_then_read_every_kind() {
        let link = Entry {
            kind: Kind::Symlink,
            target: b"../b".to_vec(),
            ..dir()
        };
        let entries: Vec<(&[u8], Entry)> = vec![
            (b"a", dir()),
            (b"empty", file(0, 0)),
            (b"z", file(10, 1)),
            (b"a/link", link.clone()),
            (b"a/x y", file(3, 2)),
        ];
        let (_d, path, sha) = write(&entries);
        let m = Manifest::open(&path, Verify::Sha256(sha)).unwrap();
        assert_eq!(
            m.counts(),
            Counts {
                entries: 5,
                files: 3,
                dirs: 1,
                symlinks: 1,
                bytes: 13,
                ..Counts::default()
            }
        );
        for (p, e) in &entries {
            assert_eq!(m.get(p).unwrap().as_ref(), Some(e), "{}", lossy(p));
        }
        assert_eq!(m.get(b"a/missing").unwrap(), None);
        assert_eq!(m.get(b"").unwrap(), None);
        let root: Vec<Vec<u8>> = m.list(b"").unwrap().into_iter().map(|x| x.0).collect();
        assert_eq!(root, vec![b"a".to_vec(), b"empty".to_vec(), b"z".to_vec()]);
        let a: Vec<Vec<u8>> = m.list(b"a").unwrap().into_iter().map(|x| x.0).collect();
        assert_eq!(a, vec![b"link".to_vec(), b"x y".to_vec()]);
        let mut s = m.stream();
        let mut n = 0;
        while let Some(r) = s.next_entry() {
            r.unwrap();
            n += 1;
        }
        assert_eq!(n, 5);
    }

    /// Remote entries round-trip with their URL and are counted; they
    /// need the version-2 header, which a version-1 writer refuses to
    /// hold them in.
    #[test]
    fn remote_entries_take_header_version_2() {
        let remote = Entry {
            kind: Kind::Remote,
            target: b"https://deb.example/pool/a.deb".to_vec(),
            source_inode: 0,
            ..file(1234, 7)
        };
        let tmp = tempfile::tempdir().unwrap();
        let mut w = ManifestWriter::create(&tmp.path().join("v1")).unwrap();
        let e = w.push(&key(b"pool", b"a.deb"), &remote).unwrap_err();
        assert!(e.to_string().contains("version 1"), "{e}");

        let path = tmp.path().join("v2");
        let mut w = ManifestWriter::create_with_remote(&path).unwrap();
        w.push(&key(b"", b"pool"), &dir()).unwrap();
        w.push(&key(b"pool", b"a.deb"), &remote).unwrap();
        w.push(&key(b"pool", b"b.deb"), &file(10, 1)).unwrap();
        let (sha, _, _) = w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 2);
        let m = Manifest::open(&path, Verify::Sha256(sha)).unwrap();
        let got = m.get(b"pool/a.deb").unwrap().unwrap();
        assert_eq!(got, remote);
        assert!(got.is_file());
        assert_eq!(got.remote_url(), Some("https://deb.example/pool/a.deb"));
        assert_eq!(m.get(b"pool/b.deb").unwrap().unwrap().remote_url(), None);
        let c = m.counts();
        assert_eq!((c.files, c.bytes), (2, 1244));
        assert_eq!((c.remote, c.remote_bytes), (1, 1234));
        // Truncated records are refused, never read past.
        let mut record = Vec::new();
        remote.encode(&mut record);
        for cut in 0..record.len() {
            assert!(Entry::decode(&record[..cut]).is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn out_of_order_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ManifestWriter::create(&dir.path().join("m")).unwrap();
        w.push(&key(b"", b"b"), &file(1, 1)).unwrap();
        assert!(w.push(&key(b"", b"a"), &file(1, 1)).is_err());
    }

    #[test]
    fn corruption_is_detected() {
        let (_d, path, sha) = write(&[(b"f", file(1, 9))]);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = Manifest::open(&path, Verify::Sha256(sha)).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err:#}");
    }

    #[test]
    fn truncated_or_foreign_files_are_refused() {
        let (_d, path, _) = write(&[(b"f", file(1, 9))]);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(Manifest::open(&path, Verify::No).is_err());
        std::fs::write(&path, b"hello").unwrap();
        assert!(Manifest::open(&path, Verify::No).is_err());
    }
}

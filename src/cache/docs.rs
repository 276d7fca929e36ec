//! Documents: a proxy volume's pages, kept in the disk tier so that they
//! survive a restart, packed into append-only files.
//!
//! One file per page made a burst of cold pages a burst of file
//! creations, and on a filesystem that has seen many files deleted (a
//! cache's, by eviction) ext4's inode search cost more CPU than the rest
//! of a page's work, on the thread that answers clients too. So pages are
//! appended to *packs*, `docs-v2/<16 hex digits>`, numbered in the order
//! they were started; only the newest pack is written to.
//!
//! - **A record** is a line naming its key (`d2 <sha256 hex>\n`), a plain
//!   record's line (size, stamp, and sha256 of the bytes; see
//!   `cache::plain`), then the bytes. A later record of the same key
//!   replaces an earlier one; the earlier one's bytes stay in its pack.
//! - **An index in memory** maps each key to its newest record. At start
//!   it is rebuilt by reading every pack's record lines (not the bytes,
//!   which are checked on every read instead); a pack is cut at the first
//!   record that is not whole (a crash while appending).
//! - **Eviction is by pack, oldest first**, when a new pack would pass
//!   the packs' share of the budget. A page in use is kept again each time
//!   it is revalidated (every `revalidate_after` while clients ask for it),
//!   into the newest pack, so the oldest pack holds the pages nobody asked
//!   for longest, and the bytes of replaced copies. No compaction: the
//!   share bounds the dead bytes with the live ones.
//! - **The budget.** Each pack holds, while it exists, room of its size in
//!   the disk tier (a [`Reservation`], which evicts objects to make it).
//!   The packs' share is kept out of the fills' (see `Cache::open`), so
//!   that fills, packs and manifest copies together stay within
//!   `disk_size`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::disk::{DiskTier, RECORD_LEN, Reservation, remove_any};
use super::plain::PlainRecord;
use crate::digest::Sha256Digest;

/// The line that starts a record: `d2 `, the key in hex, a newline.
const KEY_LINE: usize = 3 + 64 + 1;
/// A record's lines, before its bytes.
const HEADER: usize = KEY_LINE + RECORD_LEN;

/// The packs of one cache directory, and where each document is.
pub struct Documents {
    dir: PathBuf,
    disk: Arc<DiskTier>,
    /// The bytes all packs may take together.
    share: u64,
    /// A pack is closed once it holds this much.
    pack_size: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Each key's newest record.
    index: HashMap<Sha256Digest, Place>,
    /// By number, oldest first; the last one is written to, unless it
    /// was found at start.
    packs: BTreeMap<u64, Pack>,
    /// The number of the next pack.
    next: u64,
    /// Whether the newest pack may be appended to (not one found at
    /// start, whose end a crash may have cut).
    appending: bool,
}

/// A record as read: from its plain record's line on.
pub struct Kept {
    pub bytes: Bytes,
    place: Place,
}

/// Where a record is: its pack, and its offset and length there (its
/// lines included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Place {
    pack: u64,
    offset: u64,
    len: u64,
}

struct Pack {
    file: Arc<File>,
    /// Bytes written.
    len: u64,
    /// The room it holds: `len` never passes it.
    room: u64,
    /// Its room in the disk tier, given back when the pack is deleted.
    _held: Reservation,
}

/// The directory packs live in.
fn packs_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("docs-v2")
}

impl Documents {
    /// Opens the packs under `cache_dir`, reading their records into the
    /// index and taking their room; packs beyond `share` bytes are deleted,
    /// oldest first, and anything else in the directory removed.
    pub fn open(cache_dir: &Path, disk: Arc<DiskTier>, share: u64) -> io::Result<Documents> {
        let dir = packs_dir(cache_dir);
        std::fs::create_dir_all(&dir)?;
        let docs = Documents {
            // Sixteen packs to a share, within bounds; two at least.
            pack_size: (share / 16).clamp(64 << 10, 64 << 20).min(share / 2),
            dir,
            disk,
            share,
            state: Mutex::new(State::default()),
        };
        docs.load()?;
        Ok(docs)
    }

    fn load(&self) -> io::Result<()> {
        let mut found = BTreeMap::new();
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            let name = e.file_name();
            // Exactly the name `pack_path` gives (no `+`, no upper case),
            // and not the last number, which would leave none after it.
            let number = name
                .to_str()
                .and_then(|t| {
                    u64::from_str_radix(t, 16)
                        .ok()
                        .filter(|n| pack_name(*n) == t)
                })
                .filter(|n| *n < u64::MAX);
            match number {
                Some(n) if e.file_type()?.is_file() => {
                    found.insert(n, e.path());
                }
                _ => {
                    tracing::warn!(path = %e.path().display(), "removing a stray file from the cache's packs");
                    remove_any(&e.path())?;
                }
            }
        }
        // Newest first, until the share is taken: that pack and every
        // older one go (an older copy of a page must not outlive a newer).
        let mut kept = Vec::new();
        let mut taken = 0u64;
        let mut full = false;
        for (n, path) in found.into_iter().rev() {
            let len = std::fs::metadata(&path)?.len();
            full = full || taken + len > self.share;
            if full {
                tracing::info!(pack = %path.display(), "removing a pack of pages beyond the cache's share for them");
                std::fs::remove_file(&path)?;
                continue;
            }
            taken += len;
            kept.push((n, path));
        }
        let mut state = self.state.lock().expect("not poisoned");
        for (n, path) in kept.into_iter().rev() {
            let file = File::options().read(true).write(true).open(&path)?;
            let len = scan(&file, n, &mut state.index)?;
            if len < file.metadata()?.len() {
                tracing::warn!(pack = %path.display(), whole = len, "a pack of pages ends in a record that is not whole; cut there");
                file.set_len(len)?;
            }
            // Empty (created just before a crash, or nothing whole in it).
            if len == 0 {
                std::fs::remove_file(&path)?;
                continue;
            }
            let Some(held) = self.room(len) else {
                std::fs::remove_file(&path)?;
                state.index.retain(|_, p| p.pack != n);
                continue;
            };
            state.packs.insert(
                n,
                Pack {
                    file: Arc::new(file),
                    len,
                    room: len,
                    _held: held,
                },
            );
            state.next = n + 1;
        }
        tracing::info!(
            packs = state.packs.len(),
            documents = state.index.len(),
            "pages in the disk cache loaded"
        );
        Ok(())
    }

    /// Takes `size` bytes of room in the disk tier for a pack (evicting
    /// objects to make it): `None` when the disk budget has none now.
    fn room(&self, size: u64) -> Option<Reservation> {
        let mut reservation = self.disk.reserve(size);
        reservation.count_file().ok()?;
        Some(reservation)
    }

    /// Whether a document is kept under `key` (without reading it).
    pub fn has(&self, key: &Sha256Digest) -> bool {
        self.state
            .lock()
            .expect("not poisoned")
            .index
            .contains_key(key)
    }

    /// The record kept under `key` from its plain record's line on, if
    /// there is one and its key line names it. May block (reads the
    /// pack). Whether its bytes are whole is the reader's to check (and
    /// [`Documents::forget`] what it finds bad).
    pub fn read(&self, key: &Sha256Digest) -> Option<Kept> {
        let (file, place) = {
            let state = self.state.lock().expect("not poisoned");
            let place = *state.index.get(key)?;
            (state.packs.get(&place.pack)?.file.clone(), place)
        };
        // A deleted pack's descriptor still reads what it held.
        let mut buf = vec![0u8; place.len as usize];
        if let Err(e) = file.read_exact_at(&mut buf, place.offset) {
            tracing::warn!(%key, "cannot read a kept page: {e}");
            self.forget_place(key, place);
            return None;
        }
        if buf.get(..KEY_LINE) != Some(&key_line(key)[..]) {
            tracing::error!(%key, "a kept page's record names another key; dropped");
            self.forget_place(key, place);
            return None;
        }
        Some(Kept {
            bytes: Bytes::from(buf).slice(KEY_LINE..),
            place,
        })
    }

    /// Forgets the record `read` gave for `key`, if it is still the key's
    /// newest (a newer one the writer just appended stays). Its bytes stay
    /// in their pack until the pack goes.
    pub fn forget(&self, key: &Sha256Digest, kept: &Kept) {
        self.forget_place(key, kept.place);
    }

    fn forget_place(&self, key: &Sha256Digest, place: Place) {
        let mut state = self.state.lock().expect("not poisoned");
        if state.index.get(key) == Some(&place) {
            state.index.remove(key);
        }
    }

    /// Appends a document to the newest pack, starting a new pack when it
    /// does not fit (and deleting the oldest ones while the packs would
    /// pass their share). Called by one thread only, the cache's writer:
    /// packs change nowhere else. Not fsynced, like every cache write: a
    /// record a crash cut is found at the next start. `Ok(false)` when it
    /// was not kept (larger than half the share, or no room now).
    pub fn append(
        &self,
        key: &Sha256Digest,
        record: &PlainRecord,
        bytes: &[u8],
    ) -> io::Result<bool> {
        let len = (HEADER + bytes.len()) as u64;
        if len > self.share / 2 {
            return Ok(false);
        }
        let fits = {
            let state = self.state.lock().expect("not poisoned");
            state.appending
                && state
                    .packs
                    .values()
                    .next_back()
                    .is_some_and(|p| p.len + len <= p.room)
        };
        if !fits && !self.start_pack(len)? {
            return Ok(false);
        }
        let mut head = Vec::with_capacity(HEADER + bytes.len());
        head.extend_from_slice(&key_line(key));
        head.extend_from_slice(&record.encode());
        head.extend_from_slice(bytes);
        let (n, file, offset) = {
            let state = self.state.lock().expect("not poisoned");
            let (n, p) = state.packs.iter().next_back().expect("a pack was started");
            (*n, p.file.clone(), p.len)
        };
        if let Err(e) = file.write_all_at(&head, offset) {
            // Cut back what part of it was written, so that a restart does
            // not take a whole-looking line for the key's newest record.
            let _ = file.set_len(offset);
            return Err(e);
        }
        let mut state = self.state.lock().expect("not poisoned");
        if let Some(p) = state.packs.get_mut(&n) {
            p.len += len;
            let place = Place {
                pack: n,
                offset,
                len,
            };
            state.index.insert(*key, place);
        }
        Ok(true)
    }

    /// Starts a new pack with room for at least `len` bytes, deleting the
    /// oldest packs first while all of them would pass the share.
    fn start_pack(&self, len: u64) -> io::Result<bool> {
        let room = self.pack_size.max(len);
        loop {
            let mut state = self.state.lock().expect("not poisoned");
            let held: u64 = state.packs.values().map(|p| p.room).sum();
            if held + room <= self.share {
                break;
            }
            let Some((n, pack)) = state.packs.pop_first() else {
                break;
            };
            state.index.retain(|_, p| p.pack != n);
            drop(state);
            // Its room is given back once its file is gone (dropping the
            // pack), not before: the files on disk stay within the budget.
            // A file that cannot be deleted keeps its room.
            match std::fs::remove_file(self.pack_path(n)) {
                Ok(()) => drop(pack),
                Err(e) if e.kind() == io::ErrorKind::NotFound => drop(pack),
                Err(e) => {
                    tracing::error!(pack = n, "cannot delete a pack of pages: {e}");
                    // Kept (with no pages in the index), to be tried again
                    // when the next pack is due.
                    self.state
                        .lock()
                        .expect("not poisoned")
                        .packs
                        .insert(n, pack);
                    return Ok(false);
                }
            }
        }
        let Some(held) = self.room(room) else {
            tracing::debug!("a page not kept: no room in the disk budget for a new pack now");
            return Ok(false);
        };
        let n = {
            let mut state = self.state.lock().expect("not poisoned");
            // The one found last at start is not appended to.
            state.appending = true;
            let n = state.next;
            state.next += 1;
            n
        };
        let create = || {
            File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(self.pack_path(n))
        };
        let file = create().or_else(|e| {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
            tracing::warn!(dir = %self.dir.display(), "the cache's packs directory vanished; making it again");
            std::fs::create_dir_all(&self.dir)?;
            create()
        })?;
        self.state.lock().expect("not poisoned").packs.insert(
            n,
            Pack {
                file: Arc::new(file),
                len: 0,
                room,
                _held: held,
            },
        );
        Ok(true)
    }

    fn pack_path(&self, n: u64) -> PathBuf {
        self.dir.join(pack_name(n))
    }

    /// Bytes in packs, and documents kept.
    #[cfg(test)]
    fn usage(&self) -> (u64, usize) {
        let state = self.state.lock().expect("not poisoned");
        (state.packs.values().map(|p| p.len).sum(), state.index.len())
    }
}

/// A pack's file name: its number in 16 lower-case hex digits.
fn pack_name(n: u64) -> String {
    format!("{n:016x}")
}

fn key_line(key: &Sha256Digest) -> [u8; KEY_LINE] {
    let mut line = [0u8; KEY_LINE];
    line[..3].copy_from_slice(b"d2 ");
    line[3..KEY_LINE - 1].copy_from_slice(key.hex().as_bytes());
    line[KEY_LINE - 1] = b'\n';
    line
}

/// Reads the record lines of pack `n` into `index` (later records of a
/// key replacing earlier ones) and returns how many bytes of it are whole
/// records.
fn scan(file: &File, n: u64, index: &mut HashMap<Sha256Digest, Place>) -> io::Result<u64> {
    let end = file.metadata()?.len();
    let mut offset = 0u64;
    let mut head = [0u8; HEADER];
    while offset + HEADER as u64 <= end {
        file.read_exact_at(&mut head, offset)?;
        let key = std::str::from_utf8(&head[3..KEY_LINE - 1])
            .ok()
            .and_then(Sha256Digest::from_hex)
            .filter(|k| head[..KEY_LINE] == key_line(k)[..]);
        let record = PlainRecord::parse(head[KEY_LINE..].try_into().expect("RECORD_LEN bytes"));
        let (Some(key), Some(record)) = (key, record) else {
            break;
        };
        // A size no pack could hold (a corrupt line) ends it like a torn one.
        let Some(len) = record
            .size
            .checked_add(HEADER as u64)
            .filter(|len| *len <= end - offset)
        else {
            break;
        };
        index.insert(
            key,
            Place {
                pack: n,
                offset,
                len,
            },
        );
        offset += len;
    }
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn record(bytes: &[u8], stamp: i128) -> PlainRecord {
        PlainRecord {
            size: bytes.len() as u64,
            mtime_ns: stamp,
            sha: Sha256Digest::of(bytes),
        }
    }

    /// A disk tier of `budget` bytes and its packs with `share` bytes.
    fn open(dir: &Path, budget: u64, share: u64) -> (Arc<Metrics>, Documents) {
        let metrics = Arc::new(Metrics::new());
        let disk = Arc::new(DiskTier::load(dir, budget, 16, metrics.clone()).unwrap());
        let docs = Documents::open(dir, disk, share).unwrap();
        (metrics, docs)
    }

    /// The path of the only pack in `dir`.
    fn the_pack(dir: &Path) -> PathBuf {
        let mut packs: Vec<_> = std::fs::read_dir(packs_dir(dir)).unwrap().collect();
        assert_eq!(packs.len(), 1);
        packs.pop().unwrap().unwrap().path()
    }

    /// What `read` gives for a document: its plain record's line, then it.
    fn kept(bytes: &[u8], stamp: i128) -> Bytes {
        let mut v = record(bytes, stamp).encode().to_vec();
        v.extend_from_slice(bytes);
        Bytes::from(v)
    }

    #[test]
    fn documents_are_appended_replaced_by_later_records_and_found_again_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Sha256Digest::of(b"a"), Sha256Digest::of(b"b"));
        {
            let (_, docs) = open(dir.path(), 64 << 20, 8 << 20);
            assert!(docs.append(&a, &record(b"first", 1), b"first").unwrap());
            assert!(docs.append(&b, &record(b"other", 2), b"other").unwrap());
            assert!(docs.append(&a, &record(b"second", 3), b"second").unwrap());
            assert_eq!(docs.read(&a).map(|k| k.bytes), Some(kept(b"second", 3)));
            assert_eq!(docs.read(&b).map(|k| k.bytes), Some(kept(b"other", 2)));
            // One file for all three.
            let packs: Vec<_> = std::fs::read_dir(packs_dir(dir.path())).unwrap().collect();
            assert_eq!(packs.len(), 1);
            assert_eq!(docs.usage(), ((3 * HEADER + 16) as u64, 2));
        }
        let (_, docs) = open(dir.path(), 64 << 20, 8 << 20);
        assert_eq!(docs.read(&a).map(|k| k.bytes), Some(kept(b"second", 3)));
        assert_eq!(docs.read(&b).map(|k| k.bytes), Some(kept(b"other", 2)));
        // The pack found at start is closed: new records start another.
        let c = Sha256Digest::of(b"c");
        assert!(docs.append(&c, &record(b"third", 4), b"third").unwrap());
        assert_eq!(std::fs::read_dir(packs_dir(dir.path())).unwrap().count(), 2);
        let old = docs.read(&b).unwrap();
        // A record read before a newer one was appended does not take the
        // newer one with it.
        assert!(docs.append(&b, &record(b"newer", 5), b"newer").unwrap());
        docs.forget(&b, &old);
        assert_eq!(docs.read(&b).map(|k| k.bytes), Some(kept(b"newer", 5)));
        let newer = docs.read(&b).unwrap();
        docs.forget(&b, &newer);
        assert!(!docs.has(&b) && docs.read(&b).is_none());
        assert_eq!(docs.read(&c).map(|k| k.bytes), Some(kept(b"third", 4)));
    }

    #[test]
    fn a_record_a_crash_cut_is_cut_off_and_strays_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Sha256Digest::of(b"a"), Sha256Digest::of(b"b"));
        {
            let (_, docs) = open(dir.path(), 64 << 20, 8 << 20);
            docs.append(&a, &record(b"whole", 1), b"whole").unwrap();
            docs.append(&b, &record(b"cut short", 2), b"cut short")
                .unwrap();
        }
        let pack = the_pack(dir.path());
        let whole = (HEADER + 5) as u64;
        let len = std::fs::metadata(&pack).unwrap().len();
        File::options()
            .write(true)
            .open(&pack)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let stray = packs_dir(dir.path()).join("not-a-pack");
        std::fs::write(&stray, b"?").unwrap();
        // A pack created just before a crash, with nothing in it yet.
        let empty = packs_dir(dir.path()).join(format!("{:016x}", 1u64 << 40));
        std::fs::write(&empty, b"").unwrap();

        let (_, docs) = open(dir.path(), 64 << 20, 8 << 20);
        assert_eq!(docs.read(&a).map(|k| k.bytes), Some(kept(b"whole", 1)));
        assert!(!docs.has(&b));
        assert_eq!(std::fs::metadata(&pack).unwrap().len(), whole);
        assert!(!stray.exists() && !empty.exists());

        // Garbage where a record's lines should be ends the pack there too.
        drop(docs);
        let mut bytes = std::fs::read(&pack).unwrap();
        bytes.extend_from_slice(&[b'x'; HEADER + 10]);
        std::fs::write(&pack, &bytes).unwrap();
        let (_, docs) = open(dir.path(), 64 << 20, 8 << 20);
        assert_eq!(docs.read(&a).map(|k| k.bytes), Some(kept(b"whole", 1)));
        assert_eq!(std::fs::metadata(&pack).unwrap().len(), whole);
    }

    #[test]
    fn packs_hold_room_in_the_budget_and_the_oldest_go_first_past_the_share() {
        let dir = tempfile::tempdir().unwrap();
        // Packs of 64 KiB (the smallest), four of them at most.
        let share = 256 << 10;
        let (metrics, docs) = open(dir.path(), 4 << 20, share);
        let page = vec![b'p'; 30 << 10];
        let keys: Vec<_> = (0..20u8).map(|i| Sha256Digest::of(&[i])).collect();
        for (i, key) in keys.iter().enumerate() {
            assert!(docs.append(key, &record(&page, i as i128), &page).unwrap());
            let packs = std::fs::read_dir(packs_dir(dir.path())).unwrap().count() as u64;
            assert!(packs * (64 << 10) <= share, "{packs} packs");
            // Each pack's room is held in the disk tier.
            assert_eq!(
                metrics.cache_reserved_bytes.get() as u64,
                packs * (64 << 10)
            );
        }
        // Two records a pack: the last eight are kept, the rest went with
        // their packs.
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(docs.has(key), i >= 12, "record {i}");
        }
        assert_eq!(docs.read(&keys[19]).map(|k| k.bytes), Some(kept(&page, 19)));
        // Larger than half the share: not kept.
        let big = vec![b'b'; 130 << 10];
        assert!(!docs.append(&keys[0], &record(&big, 0), &big).unwrap());
        drop(docs);
        assert_eq!(metrics.cache_reserved_bytes.get(), 0);
    }

    #[test]
    fn a_line_naming_a_size_no_pack_holds_ends_the_pack_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let a = Sha256Digest::of(b"a");
        {
            let (_, docs) = open(dir.path(), 64 << 20, 8 << 20);
            docs.append(&a, &record(b"whole", 1), b"whole").unwrap();
        }
        let pack = packs_dir(dir.path()).join(pack_name(0));
        let whole = std::fs::metadata(&pack).unwrap().len();
        // Sizes that would overflow the scan's arithmetic, or run past the
        // end: each ends the pack where its lines start.
        for size in [u64::MAX - HEADER as u64 + 1, u64::MAX, 1 << 40] {
            let mut bytes = std::fs::read(&pack).unwrap();
            let line = PlainRecord {
                size,
                mtime_ns: 2,
                sha: Sha256Digest::of(b"?"),
            };
            bytes.extend_from_slice(&key_line(&Sha256Digest::of(b"b")));
            bytes.extend_from_slice(&line.encode());
            bytes.extend_from_slice(b"short");
            std::fs::write(&pack, &bytes).unwrap();
            let (_, docs) = open(dir.path(), 64 << 20, 8 << 20);
            assert_eq!(docs.read(&a).map(|k| k.bytes), Some(kept(b"whole", 1)));
            assert_eq!(
                std::fs::metadata(&pack).unwrap().len(),
                whole,
                "size {size}"
            );
        }
    }

    #[test]
    fn past_the_share_at_start_the_first_pack_that_does_not_fit_goes_with_all_older() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<_> = (0..3u8).map(|i| Sha256Digest::of(&[i])).collect();
        let big = vec![b'b'; 300 << 10];
        // One pack each (a pack found at start is not appended to): a
        // small one, a large one, a small one.
        for (key, page) in keys.iter().zip([&b"old"[..], &big, b"new"]) {
            let (_, docs) = open(dir.path(), 64 << 20, 8 << 20);
            assert!(docs.append(key, &record(page, 1), page).unwrap());
        }
        assert_eq!(std::fs::read_dir(packs_dir(dir.path())).unwrap().count(), 3);
        let (_, docs) = open(dir.path(), 64 << 20, 256 << 10);
        assert_eq!(
            keys.iter().map(|k| docs.has(k)).collect::<Vec<_>>(),
            [false, false, true]
        );
        assert_eq!(std::fs::read_dir(packs_dir(dir.path())).unwrap().count(), 1);
    }

    #[test]
    fn only_the_names_packs_are_given_are_packs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(packs_dir(dir.path())).unwrap();
        let names = [
            "+000000000000001",
            "00000000000000AB",
            "ffffffffffffffff",
            "0000000000000001.tmp",
        ];
        for name in names {
            std::fs::write(packs_dir(dir.path()).join(name), b"x").unwrap();
        }
        let (_, docs) = open(dir.path(), 64 << 20, 8 << 20);
        assert_eq!(std::fs::read_dir(packs_dir(dir.path())).unwrap().count(), 0);
        let a = Sha256Digest::of(b"a");
        assert!(docs.append(&a, &record(b"page", 1), b"page").unwrap());
        assert!(packs_dir(dir.path()).join(pack_name(0)).exists());
    }

    #[test]
    fn a_record_that_names_another_key_is_not_given_out() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Sha256Digest::of(b"a"), Sha256Digest::of(b"b"));
        let (_, docs) = open(dir.path(), 64 << 20, 8 << 20);
        docs.append(&a, &record(b"page", 1), b"page").unwrap();
        let pack = the_pack(dir.path());
        let mut bytes = std::fs::read(&pack).unwrap();
        bytes[3..KEY_LINE - 1].copy_from_slice(b.hex().as_bytes());
        std::fs::write(&pack, &bytes).unwrap();
        assert!(docs.read(&a).is_none());
        assert!(!docs.has(&a));
    }
}

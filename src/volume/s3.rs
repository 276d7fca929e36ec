//! A released volume on an S3 origin: the keys it has, and the protocol
//! that keeps it consistent without a lock or an append
//! (`docs/volume-format.md`, "On S3").
//!
//! ```text
//! <prefix>/format                         "unimirror-origin 2"
//! <prefix>/objects/sha256/<ab>/<cd>/<hex> content, shared by the volumes
//! <prefix>/<volume>/format                "unimirror-volume 2"
//! <prefix>/<volume>/current               {"format":2,"release":42,"seq":17}
//! <prefix>/<volume>/history/<seq>-<release>.json  one per pointer move
//! <prefix>/<volume>/releases/<id>.json    metadata, .sig, .manifest
//! <prefix>/<volume>/tags/<name>           a tag and its moves
//! ```
//!
//! Every key but `current` and the tags is written once, with
//! `If-None-Match: *`, and never changed. `current` and each tag are
//! created the same way and then only moved with `If-Match: <its ETag>`,
//! from the state the writer read: of two writers, one moves it and the
//! other finds it moved, and stops.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::tags::Tag;
use super::{Busy, HistoryEntry};
use crate::digest::Sha256Digest;
use crate::origin::s3::{Created, IfChanged, S3Origin, Swapped};

/// The format of volumes on S3.
pub const FORMAT: u32 = 2;
pub const FORMAT_LINE: &str = "unimirror-volume 2";
/// The marker at the origin's prefix.
pub const ORIGIN_FORMAT_LINE: &str = "unimirror-origin 2";

/// `current` on S3: the release, and the number of the pointer move that
/// made it current (its history object's).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pointer {
    pub format: u32,
    pub release: u64,
    pub seq: u64,
}

/// The pointer as last read, with its ETag.
#[derive(Debug, Clone)]
struct Seen {
    etag: Option<String>,
    pointer: Option<Pointer>,
}

/// One volume of an S3 origin.
#[derive(Debug)]
pub struct OnS3 {
    pub origin: Arc<S3Origin>,
    name: String,
    /// The pointer as this process last read it: a daemon's poll asks
    /// only whether it changed, and a writer moves it from exactly that.
    seen: Mutex<Option<Seen>>,
    /// History objects read so far, by seq: they never change.
    history: Mutex<BTreeMap<u64, HistoryEntry>>,
    /// Tags as last read, with their ETags: a daemon's poll asks only
    /// whether each changed.
    tags: Mutex<HashMap<String, (Option<String>, Tag)>>,
    /// Other small keys read at every poll (`last-sync.json`), with their
    /// ETags.
    small: Mutex<HashMap<String, (Option<String>, Bytes)>>,
}

impl OnS3 {
    pub fn new(origin: Arc<S3Origin>, name: &str) -> OnS3 {
        OnS3 {
            origin,
            name: name.to_string(),
            seen: Mutex::new(None),
            history: Mutex::new(BTreeMap::new()),
            tags: Mutex::new(HashMap::new()),
            small: Mutex::new(HashMap::new()),
        }
    }

    /// The key of `rel` in this volume, relative to the origin's prefix.
    pub fn rel(&self, rel: &str) -> String {
        format!("{}/{rel}", self.name)
    }

    /// An object's key: shared by every volume of the origin.
    pub fn object_rel(digest: &Sha256Digest) -> String {
        let hex = digest.hex();
        format!("objects/sha256/{}/{}/{hex}", &hex[0..2], &hex[2..4])
    }

    pub fn read(&self, rel: &str) -> Result<Option<Bytes>> {
        Ok(self.origin.get(&self.rel(rel))?.map(|g| g.bytes))
    }

    /// The format marker's text, if the volume has one.
    pub fn format(&self) -> Result<Option<String>> {
        Ok(self
            .read("format")?
            .map(|b| String::from_utf8_lossy(&b).trim().to_string()))
    }

    /// The current pointer, read again only if it changed since this
    /// process last read it.
    pub fn pointer(&self) -> Result<Option<Pointer>> {
        let known = self.seen.lock().expect("not poisoned").clone();
        let etag = known.as_ref().and_then(|s| s.etag.clone());
        let rel = self.rel("current");
        let seen = match self.origin.get_if_changed(&rel, etag.as_deref())? {
            IfChanged::Same => return Ok(known.and_then(|s| s.pointer)),
            IfChanged::Missing => Seen {
                etag: None,
                pointer: None,
            },
            IfChanged::Changed(got) => {
                let p: Pointer = serde_json::from_slice(&got.bytes)
                    .with_context(|| format!("{} is not a valid pointer", self.origin.url(&rel)))?;
                if p.format != FORMAT {
                    bail!(
                        "{}: pointer format {} unknown",
                        self.origin.url(&rel),
                        p.format
                    );
                }
                Seen {
                    etag: got.etag,
                    pointer: Some(p),
                }
            }
        };
        let pointer = seen.pointer;
        *self.seen.lock().expect("not poisoned") = Some(seen);
        Ok(pointer)
    }

    /// The pointer's `seq` as this process last read it.
    pub fn seen_seq(&self) -> Option<u64> {
        let seen = self.seen.lock().expect("not poisoned");
        seen.as_ref().and_then(|s| s.pointer).map(|p| p.seq)
    }

    /// The history objects, by their names alone (`<seq>-<release>.json`),
    /// in order: (seq, release, name). One listing, no object read.
    fn listed(&self) -> Result<Vec<(u64, u64, String)>> {
        let mut listed: Vec<(u64, u64, String)> = self
            .origin
            .list(&self.rel("history"))?
            .into_iter()
            .filter_map(|name| {
                let (seq, to) = name.strip_suffix(".json")?.split_once('-')?;
                Some((seq.parse().ok()?, to.parse().ok()?, name))
            })
            .collect();
        listed.sort();
        Ok(listed)
    }

    /// The releases the pointer ever named, from the history objects'
    /// names: one listing however long the history.
    pub fn published_ids(&self) -> Result<Vec<u64>> {
        Ok(self.listed()?.into_iter().map(|(_, to, _)| to).collect())
    }

    /// The last `n` pointer moves, oldest first: what a daemon starting
    /// needs, read without fetching a long history whole. History objects
    /// are listed, and only those not read before are fetched; an
    /// unparsable one is skipped, as a torn line of format 1's history is.
    pub fn history_tail(&self, n: usize) -> Result<Vec<HistoryEntry>> {
        let listed = self.listed()?;
        let tail = &listed[listed.len().saturating_sub(n)..];
        let mut known = self.history.lock().expect("not poisoned").clone();
        for (seq, _, name) in tail {
            if known.contains_key(seq) {
                continue;
            }
            if let Some(bytes) = self.read(&format!("history/{name}"))?
                && let Ok(entry) = serde_json::from_slice(&bytes)
            {
                known.insert(*seq, entry);
            }
        }
        let entries = tail
            .iter()
            .filter_map(|(seq, _, _)| known.get(seq).cloned())
            .collect();
        *self.history.lock().expect("not poisoned") = known;
        Ok(entries)
    }

    /// Creates `rel` with `bytes` unless it exists. Existing with the same
    /// bytes is our own write whose answer was lost; with other bytes,
    /// another writer took it first: [`Busy`].
    pub fn create_once(&self, rel: &str, bytes: Bytes) -> Result<()> {
        let key = self.rel(rel);
        if self.origin.single_writer {
            return self.origin.overwrite(&key, bytes);
        }
        match self.origin.create(&key, bytes.clone())? {
            Created::New(_) => Ok(()),
            Created::Existed => match self.origin.get(&key)? {
                Some(got) if got.bytes == bytes => Ok(()),
                _ => Err(Busy {
                    volume: self.name.clone(),
                    holder: format!("another updater wrote {} first", self.origin.url(&key)),
                }
                .into()),
            },
        }
    }

    /// Creates the volume's format marker (and the origin's) if missing.
    pub fn init(&self) -> Result<()> {
        let origin_marker = Bytes::from(format!("{ORIGIN_FORMAT_LINE}\n"));
        if let Created::Existed = self.origin.create("format", origin_marker)? {
            let text = self
                .origin
                .get("format")?
                .map(|g| g.bytes)
                .unwrap_or_default();
            if String::from_utf8_lossy(&text).trim() != ORIGIN_FORMAT_LINE {
                bail!(
                    "{} says {:?}; this unimirror reads {ORIGIN_FORMAT_LINE:?}",
                    self.origin.url("format"),
                    String::from_utf8_lossy(&text).trim()
                );
            }
        }
        // One already there is checked by the caller.
        let marker = Bytes::from(format!("{FORMAT_LINE}\n"));
        self.origin.create(&self.rel("format"), marker)?;
        Ok(())
    }

    /// Moves the pointer from `from` (what this writer based its change
    /// on) to `to`, then records the move as history object `seq`. Fails
    /// with [`Busy`] if the pointer is no longer at `from`: another writer
    /// moved it since. `recovered` is the entry for the move that made
    /// `from` current, written first if that move has none (its writer
    /// died between its two writes): no move is ever left unrecorded.
    pub fn move_pointer(
        &self,
        from: Option<u64>,
        to: u64,
        entry: &HistoryEntry,
        recovered: &HistoryEntry,
    ) -> Result<()> {
        let before = self.seen.lock().expect("not poisoned").clone();
        let rel = self.rel("current");
        let base = before.as_ref().and_then(|s| s.pointer);
        if base.map(|p| p.release) != from {
            return Err(Busy {
                volume: self.name.clone(),
                holder: format!(
                    "another updater moved {} to release {:?} while this change was being made from release {from:?}",
                    self.origin.url(&rel),
                    base.map(|p| p.release)
                ),
            }
            .into());
        }
        if let Some(p) = base {
            self.record(p.seq, recovered)?;
        }
        let seq = base.map_or(1, |p| p.seq + 1);
        let next = Pointer {
            format: FORMAT,
            release: to,
            seq,
        };
        let bytes = Bytes::from(serde_json::to_vec(&next)?);
        crate::fault::point("pointer-before-rename");
        let etag = before.as_ref().and_then(|s| s.etag.clone());
        let moved = match (&etag, self.origin.single_writer) {
            (_, true) => self.origin.overwrite(&rel, bytes.clone()).map(|()| true),
            (None, false) => self
                .origin
                .create(&rel, bytes.clone())
                .map(|c| matches!(c, Created::New(_))),
            (Some(tag), false) => self.swap_pointer(&rel, bytes.clone(), tag),
        };
        // The answer may have been lost after the write landed (a retried
        // request then fails its own condition, or times out): what is
        // there now says.
        let now = {
            *self.seen.lock().expect("not poisoned") = None;
            self.pointer()
        };
        let (moved, now) = match (moved, now) {
            (_, Ok(now)) if now == Some(next) => (true, now),
            (Ok(moved), Ok(now)) => (moved, now),
            (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
        };
        if !moved && now != Some(next) {
            return Err(Busy {
                volume: self.name.clone(),
                holder: format!(
                    "another updater moved {} (now release {}) since this one read it",
                    self.origin.url(&rel),
                    now.map_or("none".into(), |p| format!(
                        "#{} at seq {}",
                        p.release, p.seq
                    ))
                ),
            }
            .into());
        }
        crate::fault::point("pointer-renamed");
        self.record(seq, entry)
    }

    /// `If-Match` with the ETag as read; a store that compares ETags
    /// without their quotes (Ceph RGW) refuses that, so if the pointer
    /// still has that ETag, once more without them.
    fn swap_pointer(&self, rel: &str, bytes: Bytes, etag: &str) -> Result<bool> {
        if let Swapped::Done(_) = self.origin.swap(rel, bytes.clone(), etag)? {
            return Ok(true);
        }
        let unquoted = etag.trim_matches('"');
        if unquoted == etag {
            return Ok(false);
        }
        match self.origin.get_if_changed(rel, Some(etag))? {
            IfChanged::Same => Ok(matches!(
                self.origin.swap(rel, bytes, unquoted)?,
                Swapped::Done(_)
            )),
            IfChanged::Changed(_) | IfChanged::Missing => Ok(false),
        }
    }

    /// Writes history object `seq`, unless it exists: one already there
    /// records this move already (a writer that repaired the history while
    /// this one was between its two writes), and nothing is lost. Its name
    /// carries the release the move made current, so that the releases
    /// ever published are known from one listing.
    fn record(&self, seq: u64, entry: &HistoryEntry) -> Result<()> {
        let rel = self.rel(&format!("history/{seq:020}-{}.json", entry.to));
        let bytes = Bytes::from(serde_json::to_vec(entry)?);
        match self.origin.single_writer {
            // No condition to rely on; the one writer asks first.
            true if self.origin.head(&rel)?.is_some() => Ok(()),
            true => self.origin.overwrite(&rel, bytes),
            false => self.origin.create(&rel, bytes).map(|_| ()),
        }
    }

    /// Records a pointer move that has no history object (its writer died
    /// between the two writes), as `entry`.
    pub fn repair(&self, entry: impl FnOnce(Option<u64>, u64) -> HistoryEntry) -> Result<()> {
        let Some(p) = self.pointer()? else {
            return Ok(());
        };
        let listed = self.listed()?;
        if listed.iter().any(|(seq, _, _)| *seq == p.seq) {
            return Ok(());
        }
        let last = listed.last().map(|(_, to, _)| *to);
        self.record(p.seq, &entry(last, p.release))
    }

    /// A small key of the volume, fetched again only if it changed since
    /// this process last read it.
    pub fn read_if_changed(&self, rel: &str) -> Result<Option<Bytes>> {
        let known = self.small.lock().expect("not poisoned").get(rel).cloned();
        let etag = known.as_ref().and_then(|(e, _)| e.clone());
        let found = match self
            .origin
            .get_if_changed(&self.rel(rel), etag.as_deref())?
        {
            IfChanged::Same => known,
            IfChanged::Missing => None,
            IfChanged::Changed(got) => Some((got.etag, got.bytes)),
        };
        let mut small = self.small.lock().expect("not poisoned");
        match &found {
            Some(f) => small.insert(rel.to_string(), f.clone()),
            None => small.remove(rel),
        };
        Ok(found.map(|(_, b)| b))
    }

    /// The names under `tags/`, from one listing.
    pub fn tag_names(&self) -> Result<Vec<String>> {
        self.origin.list(&self.rel("tags"))
    }

    /// Tag `name` with its ETag, read again only if it changed since this
    /// process last read it.
    pub fn tag(&self, name: &str) -> Result<Option<(Tag, Option<String>)>> {
        let rel = self.rel(&format!("tags/{name}"));
        let known = self.tags.lock().expect("not poisoned").get(name).cloned();
        let etag = known.as_ref().and_then(|(e, _)| e.clone());
        let found = match self.origin.get_if_changed(&rel, etag.as_deref())? {
            IfChanged::Same => known.map(|(e, t)| (t, e)),
            IfChanged::Missing => None,
            IfChanged::Changed(got) => {
                let tag = Tag::parse(name, &got.bytes)
                    .with_context(|| format!("reading {}", self.origin.url(&rel)))?;
                Some((tag, got.etag))
            }
        };
        let mut tags = self.tags.lock().expect("not poisoned");
        match &found {
            Some((t, e)) => tags.insert(name.to_string(), (e.clone(), t.clone())),
            None => tags.remove(name),
        };
        Ok(found)
    }

    /// Replaces tag `before` (as this writer read it) with `next` (its
    /// JSON: `bytes`), by compare-and-swap; [`Busy`] if another writer
    /// moved it since. As with the pointer, what the store holds after the
    /// write is what counts, whatever the write answered.
    pub fn write_tag(&self, before: &Tag, next: &Tag, bytes: Bytes) -> Result<()> {
        let rel = self.rel(&format!("tags/{}", next.name));
        let busy = |now: Option<Tag>| -> anyhow::Error {
            Busy {
                volume: self.name.clone(),
                holder: format!(
                    "another updater moved tag `{}` (now release {:?}) since this one read it",
                    next.name,
                    now.and_then(|t| t.release)
                ),
            }
            .into()
        };
        self.tags.lock().expect("not poisoned").remove(&next.name);
        let read = self.tag(&next.name)?;
        let etag = match &read {
            Some((t, etag)) if t == before => etag.clone(),
            None if before.moves.is_empty() => None,
            _ => return Err(busy(read.map(|(t, _)| t))),
        };
        crate::fault::point("tag-before-rename");
        let written = match (&etag, self.origin.single_writer) {
            (_, true) => self.origin.overwrite(&rel, bytes).map(|()| true),
            (None, false) => self
                .origin
                .create(&rel, bytes)
                .map(|c| matches!(c, Created::New(_))),
            (Some(tag), false) => self.swap_pointer(&rel, bytes, tag),
        };
        self.tags.lock().expect("not poisoned").remove(&next.name);
        let now = self.tag(&next.name);
        match (written, now) {
            (_, Ok(Some((t, _)))) if &t == next => Ok(()),
            (Err(e), _) | (_, Err(e)) => Err(e),
            (Ok(_), Ok(now)) => Err(busy(now.map(|(t, _)| t))),
        }
    }
}

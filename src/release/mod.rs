//! Publishing, inspecting and retiring releases of a volume: what
//! `unimirror-update release`, `status`, `rollback` and `gc` do.
//!
//! A release is made in one streaming pass over the source tree (see
//! [`scan`]), merged with the previous release's manifest: an unchanged
//! file (same size, mtime and inode) reuses its recorded sha256, anything
//! else is hashed. Content not yet in the object store is copied in,
//! verified while copying. Only when every object and the manifest are
//! durable does the pointer flip, so a crash at any moment leaves the
//! previous release current and intact; what the crash left behind is swept
//! by `gc`.

pub mod from_release;
pub mod gc;
pub mod materialize;
pub mod migrate;
pub mod rollback;
pub mod scan;
pub mod status;
pub mod tag;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};

use crate::config::{Config, VolumeConfig, VolumeSource};
use crate::digest::{Sha256Digest, copy_hashing};
use crate::durable;
use crate::fault;
use crate::progress::{self, Progress};
use crate::volume::manifest::{Entry, Kind, Manifest, ManifestWriter, key, lossy};
use crate::volume::signature::SigningKey;
use crate::volume::{Action, LockedVolume, Origin, ReleaseMeta, VolumeDir, VolumeLock};

/// Options of `unimirror-update release`.
#[derive(Debug, Clone, Default)]
pub struct ReleaseOptions {
    /// Publish this tree instead of the volume's staging tree.
    pub from: Option<PathBuf>,
    /// Rehash every file instead of trusting size, mtime and inode.
    pub verify: bool,
    /// Wait for a running writer instead of failing at once.
    pub wait: bool,
    /// Release another volume's release instead (`<volume>@<id|tag>`),
    /// copying nothing.
    pub from_release: Option<String>,
}

/// What a release run did.
#[derive(Debug)]
pub enum Outcome {
    Released {
        meta: ReleaseMeta,
        seconds: f64,
    },
    /// The tree is identical to the current release; nothing was published.
    Unchanged {
        current: u64,
        seconds: f64,
    },
}

impl Outcome {
    /// The release current after the run.
    pub fn id(&self) -> u64 {
        match self {
            Outcome::Released { meta, .. } => meta.id,
            Outcome::Unchanged { current, .. } => *current,
        }
    }

    /// The one-line summary printed at the end of a run.
    pub fn summary(&self, volume: &str) -> String {
        match self {
            Outcome::Released { meta, seconds } => format!(
                "released {volume} #{}: {} files, {} directories, {} symlinks, {}; {} new objects ({} copied) in {seconds:.1} s",
                meta.id,
                meta.files,
                meta.directories,
                meta.symlinks,
                progress::bytes(meta.bytes),
                meta.new_objects,
                progress::bytes(meta.new_bytes),
            ),
            Outcome::Unchanged { current, seconds } => format!(
                "{volume}: tree is identical to the current release #{current}; nothing released ({seconds:.1} s)"
            ),
        }
    }
}

/// The released volume a command acts on, or an error for plain-tree
/// volumes, which have no releases.
pub fn released_volume<'c>(
    config: &'c Config,
    name: &str,
) -> Result<(VolumeDir, &'c VolumeConfig)> {
    let vc = config.volume(name)?;
    match &vc.source {
        VolumeSource::Tree(path) => bail!(
            "volume `{name}` serves the plain tree {} and has no releases",
            path.display()
        ),
        VolumeSource::Proxy(p) => bail!(
            "volume `{name}` is a pull-through proxy of {} and has no releases",
            p.url
        ),
        VolumeSource::Released => {
            let mut dir = origin(config)?.volume(name);
            if config.release.volume_format == 1 {
                dir.new_layout = crate::volume::Layout::Own;
            }
            Ok((dir, vc))
        }
    }
}

/// The config's origin as the updater uses it: on S3, with its local
/// files for each volume (lock, manifests) under the staging directory.
pub fn origin(config: &Config) -> Result<Origin> {
    Origin::of_config(config, &config.staging.join(".s3-origin"))
}

/// What a writer needs of the volume before it takes the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The volume must have been released before, in this build's format
    /// (`rollback`, `gc`); its history is repaired once locked.
    Existing,
    /// The volume may not exist yet (`release`, `sync`): [`publish`]
    /// creates it and repairs its history.
    AnyState,
}

/// The writers' preamble, the same for every command that changes a
/// volume (resolved once, by [`released_volume`]): check it, take its
/// lock. `what` names the holder in a busy writer's message.
pub fn lock(dir: &VolumeDir, need: Need, wait: bool, what: &str) -> Result<LockedVolume> {
    if need == Need::Existing {
        if !dir.exists()? {
            bail!("volume `{}` has never been released", dir.name);
        }
        dir.check_format()?;
    }
    if let Some(s3) = &dir.s3
        && !s3.origin.single_writer
    {
        // Before anything is written: on a store that ignores the
        // conditions, two updaters could both publish.
        s3.origin.probe()?;
    }
    let vol = VolumeLock::acquire(dir, wait, what)?;
    // Read again with the lock held: a `migrate` that ran while this
    // writer waited changed it.
    if vol.s3.is_none() {
        vol.reread_layout();
    }
    fault::point("locked");
    if need == Need::Existing {
        vol.repair_history()?;
    }
    Ok(vol)
}

/// `unimirror-update release`: publishes a tree (the staging tree, or
/// `--from`) as the volume's next release.
pub fn release(config: &Config, volume: &str, opts: &ReleaseOptions) -> Result<Outcome> {
    if let Some(spec) = &opts.from_release {
        return from_release::release_from(config, volume, spec, opts.wait);
    }
    let (dir, _) = released_volume(config, volume)?;
    let source = opts
        .from
        .clone()
        .unwrap_or_else(|| config.staging.join(volume));
    if !source.is_dir() {
        bail!(
            "the tree to release, {}, is not a directory{}",
            source.display(),
            if opts.from.is_none() {
                " (run `sync` first, or pass --from DIR)"
            } else {
                ""
            }
        );
    }
    let signer = signer(config)?;
    let vol = lock(&dir, Need::AnyState, opts.wait, "release")?.signed_by(signer);
    publish(&vol, &source, opts.verify, &RemoteFiles::new())
}

/// The key releases are signed with (`release.signing_key`), if one is
/// configured: read before any work, so that a bad key fails at once.
pub fn signer(config: &Config) -> Result<Option<Arc<SigningKey>>> {
    let Some(path) = &config.release.signing_key else {
        return Ok(None);
    };
    let key = SigningKey::load(path)
        .with_context(|| format!("{}: release.signing_key", config.file.display()))?;
    Ok(Some(Arc::new(key)))
}

/// A file of a release whose bytes stay upstream until a client asks for
/// them (`fetch = "on-demand"`): what the upstream's verified index says
/// of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub size: u64,
    pub sha256: Sha256Digest,
    pub url: String,
}

/// Remote files by their path in the release (`a/b/c`).
pub type RemoteFiles = BTreeMap<Vec<u8>, RemoteFile>;

/// Publishes `source`, with the `remote` files beside its own, as the next
/// release of the locked volume, creating the volume if it is new;
/// `verify` rehashes every file. What `release` and `sync` both end with.
pub fn publish(
    vol: &LockedVolume,
    source: &Path,
    verify: bool,
    remote: &RemoteFiles,
) -> Result<Outcome> {
    let mut draft = Draft::begin(vol, "release")?;
    let remote = remote_entries(vol.dir(), remote, draft.previous.as_ref())?;
    let has_remote = remote.values().any(|e| e.kind == Kind::Remote);
    let mut writer = draft.writer(has_remote)?;
    let mut store = ObjectStore::new(vol.dir());
    if vol.s3.is_some() {
        // Objects already in the store that remote entries now name as
        // files: checked again before the pointer moves, as reused ones.
        let stored = remote.values().filter(|e| e.kind == Kind::File);
        store.reused.extend(stored.map(|e| e.sha256));
    }
    let built = build(
        source,
        remote,
        draft.previous.as_ref(),
        verify,
        &mut writer,
        &mut store,
        &mut draft.progress,
    );
    draft.finish(writer, store, built, &source.display().to_string())
}

/// A release being made: what it follows, its id, and its progress; what
/// `publish` and `materialize` share from taking the volume to moving
/// its pointer.
pub(crate) struct Draft<'v> {
    vol: &'v LockedVolume,
    started: Instant,
    id: u64,
    parent: Option<u64>,
    /// The current release's manifest, which the new one is merged with.
    pub previous: Option<Manifest>,
    pub progress: Progress,
    manifest_tmp: PathBuf,
    /// Held from the first look at the store to the pointer's move.
    _store: Option<crate::volume::StoreLock>,
}

impl<'v> Draft<'v> {
    /// Prepares the locked volume (created if new, its history repaired)
    /// and picks the next id; `what` names the run in its progress line.
    pub fn begin(vol: &'v LockedVolume, what: &str) -> Result<Draft<'v>> {
        let started = Instant::now();
        vol.init()?;
        let store = vol.store_lock(false)?;
        vol.repair_history()?;
        let parent = vol.current()?;
        vol.check_follows(parent)?;
        let previous = match parent {
            Some(id) => {
                let meta = vol.meta(id)?;
                Some(
                    vol.manifest(&meta)
                        .with_context(|| format!("reading the current release #{id}"))?,
                )
            }
            None => None,
        };
        // Ids never repeat: above every release on disk and every id the
        // history ever named (gc may have removed those releases since).
        let id = vol
            .taken_ids()?
            .into_iter()
            .chain(vol.published_ids()?)
            .chain(parent)
            .max()
            .unwrap_or(0)
            + 1;
        let progress = Progress::new(
            &format!("{what} {}", vol.name),
            previous.as_ref().map(|m| m.counts().entries),
        );
        let manifest_tmp = vol
            .tmp_dir()
            .join(durable::temp_name(&format!("{id}.manifest")));
        Ok(Draft {
            vol,
            started,
            id,
            parent,
            previous,
            progress,
            manifest_tmp,
            _store: store,
        })
    }

    /// The release the new one follows (the current one when it began).
    pub fn parent(&self) -> Option<u64> {
        self.parent
    }

    /// The new manifest's writer. Only a release that has remote entries
    /// takes the manifest version that can hold them, so every other
    /// release stays readable by daemons that predate them.
    pub fn writer(&self, has_remote: bool) -> Result<ManifestWriter> {
        match has_remote {
            true => ManifestWriter::create_with_remote(&self.manifest_tmp),
            false => ManifestWriter::create(&self.manifest_tmp),
        }
    }

    /// Ends the run: after a failed build, removes what it wrote; when
    /// nothing changed, releases nothing; else makes the objects and the
    /// manifest durable, writes the metadata and moves the pointer.
    /// `source` is what the metadata says the release was made from.
    pub fn finish(
        self,
        writer: ManifestWriter,
        mut store: ObjectStore,
        built: Result<bool>,
        source: &str,
    ) -> Result<Outcome> {
        let (vol, id, parent) = (self.vol, self.id, self.parent);
        let volume = vol.name.as_str();
        let built = built.and_then(|changed| store.flush().map(|()| changed));
        self.progress.finish();
        let changed = match built {
            Ok(changed) => changed,
            Err(e) => {
                writer.abandon();
                store.abandon();
                return Err(e.context(format!(
                    "release of volume `{volume}` failed; the current release is unchanged"
                )));
            }
        };
        if !changed && let Some(current) = parent {
            writer.abandon();
            return Ok(Outcome::Unchanged {
                current,
                seconds: self.started.elapsed().as_secs_f64(),
            });
        }

        let (sha, manifest_size, counts) = writer.finish()?;
        fault::point("manifest-written");
        vol.publish_manifest(id, &self.manifest_tmp)?;
        fault::point("manifest-renamed");

        let now = SystemTime::now();
        let meta = ReleaseMeta {
            format: match vol.s3 {
                Some(_) => crate::volume::s3::FORMAT,
                None => crate::volume::FORMAT,
            },
            volume: volume.to_string(),
            id,
            parent,
            created_unix: crate::volume::unix(now),
            created: humantime::format_rfc3339_seconds(now).to_string(),
            files: counts.files,
            directories: counts.dirs,
            symlinks: counts.symlinks,
            bytes: counts.bytes,
            remote_files: counts.remote,
            remote_bytes: counts.remote_bytes,
            manifest_sha256: sha.hex(),
            manifest_size,
            new_objects: self.progress.counters.new_objects,
            new_bytes: self.progress.counters.copied_bytes,
            source: source.to_string(),
        };
        let meta_bytes = serde_json::to_vec_pretty(&meta)?;
        vol.publish_release_file(&format!("{id}.json"), &meta_bytes)?;
        fault::point("meta-written");
        // Before the pointer moves: a daemon that checks signatures never
        // sees the new release current and unsigned.
        if let Some(key) = vol.signer() {
            vol.publish_release_file(&format!("{id}.sig"), key.sign(&meta_bytes).as_bytes())?;
            fault::point("signature-written");
        }
        store.check_reused()?;

        vol.move_pointer(Action::Release, parent, id, None)?;
        Ok(Outcome::Released {
            meta,
            seconds: self.started.elapsed().as_secs_f64(),
        })
    }
}

/// The manifest entries of the remote files, by key, with the
/// directories that hold them: a remote file whose object the store
/// already has (mirrored before, or materialized) is an ordinary file. An
/// entry the previous release has with the same content keeps its mtime,
/// so that a sync that finds nothing new releases nothing; a new one is
/// dated now.
fn remote_entries(
    vol: &VolumeDir,
    remote: &RemoteFiles,
    previous: Option<&Manifest>,
) -> Result<BTreeMap<Vec<u8>, Entry>> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut entries = BTreeMap::new();
    for (path, r) in remote {
        let Some(k) = crate::volume::manifest::key_for_path(path) else {
            bail!("a remote file without a path");
        };
        let stored = vol.has_object(&r.sha256)?;
        let mut entry = Entry {
            kind: if stored { Kind::File } else { Kind::Remote },
            size: r.size,
            mtime: now.as_secs() as i64,
            mtime_nsec: 0,
            sha256: r.sha256,
            target: if stored {
                Vec::new()
            } else {
                r.url.clone().into_bytes()
            },
            source_inode: 0,
        };
        if let Some(old) = previous.map(|m| m.get_key(&k)).transpose()?.flatten()
            && old.is_file()
            && old.sha256 == entry.sha256
            && old.size == entry.size
        {
            (entry.mtime, entry.mtime_nsec) = (old.mtime, old.mtime_nsec);
        }
        // Every directory above it, from the top.
        let mut at = 0;
        while let Some(i) = path[at..].iter().position(|&b| b == b'/') {
            let dir = &path[..at + i];
            let dk = crate::volume::manifest::key_for_path(dir).expect("not the root");
            if let std::collections::btree_map::Entry::Vacant(slot) = entries.entry(dk) {
                let mtime = match previous
                    .map(|m| m.get_key(slot.key()))
                    .transpose()?
                    .flatten()
                {
                    Some(old) if old.kind == Kind::Dir => (old.mtime, old.mtime_nsec),
                    _ => (now.as_secs() as i64, 0),
                };
                slot.insert(Entry {
                    kind: Kind::Dir,
                    size: 0,
                    mtime: mtime.0,
                    mtime_nsec: mtime.1,
                    sha256: Sha256Digest::default(),
                    target: Vec::new(),
                    source_inode: 0,
                });
            }
            at += i + 1;
        }
        entries.insert(k, entry);
    }
    Ok(entries)
}

/// What comes next in key order: from the tree, or a remote entry.
enum Next {
    Found(scan::Found),
    Remote(Entry),
}

/// Streams the tree, merged with the remote entries, into the manifest
/// writer, merging with the previous manifest. Returns whether anything
/// differs from it. A path both in the tree and remote is the tree's (a
/// directory they share, or a file mirrored after all).
fn build(
    source: &Path,
    remote: BTreeMap<Vec<u8>, Entry>,
    previous: Option<&Manifest>,
    verify: bool,
    writer: &mut ManifestWriter,
    store: &mut ObjectStore,
    progress: &mut Progress,
) -> Result<bool> {
    let mut walker = scan::Walker::new(source)?;
    let mut remote = remote.into_iter().peekable();
    let mut found_next = walker.next_entry().transpose()?;
    let mut next = move || -> Result<Option<(Vec<u8>, Next)>> {
        let found_key = found_next.as_ref().map(|f| key(&f.dir, &f.name));
        let order = match (&found_key, remote.peek()) {
            (_, None) => std::cmp::Ordering::Greater,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(fk), Some((rk, _))) => rk.cmp(fk),
        };
        if order == std::cmp::Ordering::Equal {
            remote.next();
        }
        let take_remote = order == std::cmp::Ordering::Less;
        if take_remote {
            let (k, e) = remote.next().expect("peeked");
            return Ok(Some((k, Next::Remote(e))));
        }
        match found_next.take() {
            Some(f) => {
                found_next = walker.next_entry().transpose()?;
                Ok(Some((found_key.expect("found"), Next::Found(f))))
            }
            None => Ok(None),
        }
    };
    let mut prev_stream = previous.map(|m| m.stream());
    let mut prev_next = || -> Result<Option<(Vec<u8>, Entry)>> {
        match prev_stream.as_mut().and_then(|s| s.next_entry()) {
            Some(r) => r.map(Some),
            None => Ok(None),
        }
    };
    let mut prev = prev_next()?;
    let mut changed = previous.is_none();

    while let Some((k, found)) = next()? {
        // Entries of the previous release that sort before this one are gone.
        let mut old = None;
        while let Some((pk, pe)) = prev.take() {
            if pk < k {
                changed = true;
                prev = prev_next()?;
            } else if pk == k {
                old = Some(pe);
                prev = prev_next()?;
                break;
            } else {
                prev = Some((pk, pe));
                break;
            }
        }
        let entry = match found {
            Next::Found(found) => entry_for(&found, old.as_ref(), verify, store, progress)?,
            Next::Remote(entry) => entry,
        };
        if !old.as_ref().is_some_and(|o| o.same_as_served(&entry)) {
            changed = true;
        }
        writer.push(&k, &entry)?;
        progress.counters.entries += 1;
        progress.update();
    }
    if prev.is_some() {
        changed = true;
    }
    Ok(changed)
}

/// The manifest entry for one found path, hashing and storing a file's
/// content unless the previous release already has it.
fn entry_for(
    found: &scan::Found,
    old: Option<&Entry>,
    verify: bool,
    store: &mut ObjectStore,
    progress: &mut Progress,
) -> Result<Entry> {
    let m = &found.meta;
    let mut entry = Entry {
        kind: Kind::Dir,
        size: 0,
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec() as u32,
        sha256: Sha256Digest::default(),
        target: Vec::new(),
        source_inode: m.ino(),
    };
    if let Some(target) = &found.target {
        entry.kind = Kind::Symlink;
        entry.target = target.clone();
        return Ok(entry);
    }
    if m.is_dir() {
        return Ok(entry);
    }
    entry.kind = Kind::File;
    entry.size = m.len();
    let reusable = old.filter(|o| {
        !verify
            && o.kind == Kind::File
            && o.size == entry.size
            && o.mtime == entry.mtime
            && o.mtime_nsec == entry.mtime_nsec
            && o.source_inode == entry.source_inode
    });
    match reusable {
        Some(o) => entry.sha256 = o.sha256,
        None => {
            entry.sha256 = hash_file(&found.path, entry.size)?;
            progress.counters.hashed_bytes += entry.size;
            store.ensure(&found.path, entry.sha256, entry.size, progress)?;
        }
    }
    if verify {
        // Also make sure every object the release names is really there.
        store.ensure(&found.path, entry.sha256, entry.size, progress)?;
    }
    Ok(entry)
}

/// sha256 of a file, checking that it still has the size it was listed with.
fn hash_file(path: &Path, size: u64) -> Result<Sha256Digest> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (digest, n) = copy_hashing(file, io::sink())
        .with_context(|| format!("cannot read {}", path.display()))?;
    if n != size {
        bail!(
            "{} changed while it was being released ({size} bytes listed, {n} read); run the release again",
            path.display()
        );
    }
    Ok(digest)
}

/// Adds content to the volume's object store in durable batches.
///
/// Copies go to temporary files first; a batch is made durable with one
/// `syncfs` and only then renamed to the objects' final names, so a name in
/// the store always holds complete, verified content, even after a crash
/// (an object that merely *exists* is trusted by later releases).
pub(crate) struct ObjectStore {
    vol: VolumeDir,
    /// On S3: objects the store had already, which this release names.
    reused: Vec<Sha256Digest>,
    /// On S3: objects this release uploaded, and when.
    uploaded: Vec<(Sha256Digest, Instant)>,
    pending: Vec<(PathBuf, Sha256Digest)>,
    pending_digests: HashSet<Sha256Digest>,
    pending_bytes: u64,
}

/// An object uploaded longer ago than this is checked again before the
/// pointer moves: shorter than any sensible `release.grace`.
const RECHECK_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

const BATCH_FILES: usize = 2048;
const BATCH_BYTES: u64 = 512 << 20;

impl ObjectStore {
    pub(crate) fn new(vol: &VolumeDir) -> ObjectStore {
        ObjectStore {
            vol: vol.clone(),
            reused: Vec::new(),
            uploaded: Vec::new(),
            pending: Vec::new(),
            pending_digests: HashSet::new(),
            pending_bytes: 0,
        }
    }

    /// Makes sure the store has the object `digest`, copying it from `path`
    /// if it does not.
    fn ensure(
        &mut self,
        path: &Path,
        digest: Sha256Digest,
        size: u64,
        progress: &mut Progress,
    ) -> Result<()> {
        if self.pending_digests.contains(&digest) {
            return Ok(());
        }
        if self.vol.s3.is_some() {
            return self.upload(path, digest, size, progress);
        }
        if self.vol.has_object(&digest)? {
            return Ok(());
        }
        let tmp = self.vol.tmp_dir().join(durable::temp_name("object"));
        let copied = (|| -> Result<()> {
            let src =
                File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            let dst = durable::create_new(&tmp)
                .with_context(|| format!("creating {} on the origin", tmp.display()))?;
            let mut out = io::BufWriter::with_capacity(256 * 1024, dst);
            let (actual, n) = copy_hashing(src, &mut out).with_context(|| {
                format!(
                    "copying {} to the origin at {}",
                    path.display(),
                    tmp.display()
                )
            })?;
            out.flush()
                .with_context(|| format!("writing {} on the origin", tmp.display()))?;
            if actual != digest || n != size {
                bail!(
                    "{} changed while it was being released (hashed {digest}, copied {actual}); run the release again",
                    path.display()
                );
            }
            Ok(())
        })();
        if let Err(e) = copied {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fault::point("object-temp-written");
        self.adopt(tmp, digest, size, progress)
    }

    /// Takes a verified temporary file in the volume's `tmp/` as the
    /// object `digest` (made durable and renamed with the next batch).
    pub(crate) fn adopt(
        &mut self,
        tmp: PathBuf,
        digest: Sha256Digest,
        size: u64,
        progress: &mut Progress,
    ) -> Result<()> {
        if self.vol.s3.is_some() && !self.pending_digests.contains(&digest) {
            let uploaded = self.upload(&tmp, digest, size, progress);
            let _ = fs::remove_file(tmp);
            return uploaded;
        }
        if self.pending_digests.contains(&digest) || self.vol.has_object(&digest)? {
            let _ = fs::remove_file(tmp);
            return Ok(());
        }
        self.pending.push((tmp, digest));
        self.pending_digests.insert(digest);
        self.pending_bytes += size;
        progress.counters.new_objects += 1;
        progress.counters.copied_bytes += size;
        if self.pending.len() >= BATCH_FILES || self.pending_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Uploads `path` as the object `digest` of an S3 origin. The store
    /// makes it durable before it answers; until a manifest names it, it is
    /// an object nobody reads, which gc removes after its grace period.
    ///
    /// An object the store already has is uploaded again all the same: the
    /// upload makes it young, and gc (which takes no lock on S3) removes
    /// no object younger than its grace period. Otherwise a gc of another
    /// volume, or on another host, could remove an old object this release
    /// is about to name. Such objects are checked once more just before
    /// the pointer moves ([`ObjectStore::check_reused`]).
    fn upload(
        &mut self,
        path: &Path,
        digest: Sha256Digest,
        size: u64,
        progress: &mut Progress,
    ) -> Result<()> {
        let s3 = self.vol.s3.as_ref().expect("an S3 origin");
        let rel = crate::volume::s3::OnS3::object_rel(&digest);
        let existed = s3.origin.head(&rel)?.is_some();
        s3.origin.upload_file(&rel, path, digest, size)?;
        fault::point("objects-renamed");
        // Known from now on: the same content twice is uploaded once.
        self.pending_digests.insert(digest);
        match existed {
            true => self.reused.push(digest),
            false => {
                progress.counters.new_objects += 1;
                progress.counters.copied_bytes += size;
            }
        }
        self.uploaded.push((digest, Instant::now()));
        Ok(())
    }

    /// On S3, before the pointer moves: that the objects a gc may have
    /// removed meanwhile are still there. Those the store had before this
    /// release (a gc that listed one as old before it was uploaded again
    /// may remove it), and those uploaded more than [`RECHECK_AFTER`] ago
    /// (no manifest names them until this one is published, so a gc sees
    /// them as unreferenced once they are older than its grace period).
    fn check_reused(&self) -> Result<()> {
        let old = self
            .uploaded
            .iter()
            .filter(|(_, at)| at.elapsed() >= RECHECK_AFTER)
            .map(|(d, _)| d);
        for digest in self.reused.iter().chain(old) {
            if !self.vol.has_object(digest)? {
                bail!(
                    "object {digest} was removed by a gc while this release was being made; nothing was published, run it again"
                );
            }
        }
        Ok(())
    }

    /// Makes the pending copies durable, then gives them their final names.
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            // On S3 nothing is pending: uploads are complete when made.
            return Ok(());
        }
        let tmp_dir = self.vol.tmp_dir();
        durable::syncfs(&tmp_dir).context("flushing new objects to the origin")?;
        for (tmp, digest) in self.pending.drain(..) {
            let dest = self.vol.object_file(&digest);
            let parent = dest.parent().expect("objects have a parent");
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            fs::rename(&tmp, &dest)
                .with_context(|| format!("renaming object into {}", dest.display()))?;
        }
        fault::point("objects-renamed");
        durable::syncfs(&tmp_dir).context("flushing new objects to the origin")?;
        self.pending_digests.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    /// Removes the temporary copies of a failed run.
    fn abandon(&mut self) {
        for (tmp, _) in self.pending.drain(..) {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// Fails, naming the first, if an object a manifest's files name is not
/// where `has` looks.
pub(crate) fn check_objects(
    manifest: &Manifest,
    mut has: impl FnMut(&Sha256Digest) -> Result<bool>,
) -> Result<()> {
    let mut stream = manifest.stream();
    while let Some(item) = stream.next_entry() {
        let (key, entry) = item?;
        if entry.kind == Kind::File && !has(&entry.sha256)? {
            bail!(
                "object {} of {} is missing from the store",
                entry.sha256,
                show(&crate::volume::manifest::path_for_key(&key))
            );
        }
    }
    Ok(())
}

/// Which releases count as published: those the pointer has named.
pub(crate) fn published(vol: &VolumeDir) -> Result<HashSet<u64>> {
    let mut ids: HashSet<u64> = vol.published_ids()?.into_iter().collect();
    ids.extend(vol.current()?);
    Ok(ids)
}

/// For messages: a path in a release.
pub(crate) fn show(path: &[u8]) -> String {
    lossy(path)
}

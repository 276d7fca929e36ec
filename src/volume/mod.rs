//! A released volume on the origin: its directory layout, the pointer to
//! its current release, the history of pointer changes, release metadata
//! and the lock that serialises writers. `docs/volume-format.md` is the
//! specification; this module is its implementation.
//!
//! ```text
//! <origin>/<volume>/
//!   format                      "unimirror-volume 1"
//!   current                     pointer: {"format":1,"release":42}
//!   history.jsonl               one line per pointer change
//!   releases/<id>.json          release metadata
//!   releases/<id>.manifest      the release's manifest
//!   objects/sha256/ab/cd/<hex>  content, stored once by sha256
//!   tags/<name>                 a tag: the release it names, its moves
//!   last-sync.json              the outcome of the last sync
//!   tmp/                        writers' temporary files (same filesystem)
//!   lock                        flock'ed by release, rollback and gc
//! ```

pub mod manifest;
pub mod s3;
pub mod signature;
pub mod tags;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::durable;
use manifest::{Manifest, Verify};

/// The number in pointers and release metadata on a filesystem origin
/// (both layouts keep them as format 1 wrote them).
pub const FORMAT: u32 = 1;
const FORMAT_LINE: &str = "unimirror-volume 1";
/// A volume whose objects are in the origin's shared store.
const SHARED_FORMAT_LINE: &str = "unimirror-volume 2";
/// The origin's own marker, once it holds the shared store.
const ORIGIN_FORMAT_LINE: &str = "unimirror-origin 2";

/// Where a volume on a filesystem origin keeps its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Format 1: `<volume>/objects/`, its own.
    Own,
    /// Format 2: `<origin>/objects/`, shared by every format-2 volume, so
    /// that one volume can be released from another's release without
    /// copying (`release --from-release`).
    Shared,
}

/// One released volume on the origin: on a filesystem, its paths; on an
/// S3 origin, its keys (see [`s3`]), read and written through the same
/// methods.
#[derive(Debug, Clone)]
pub struct VolumeDir {
    pub name: String,
    /// Its directory; on S3, its URL (for messages).
    pub root: PathBuf,
    /// Where this process keeps its own files for the volume (its lock,
    /// temporary files, manifests fetched from S3): `root` on a
    /// filesystem origin, a local directory on an S3 one.
    pub local: PathBuf,
    pub s3: Option<Arc<s3::OnS3>>,
    /// The origin's directory (a filesystem origin), where the shared
    /// store is.
    pub origin_root: PathBuf,
    /// The layout as last read from `format` (0: not read yet), so that
    /// each object path does not cost a read.
    layout: Arc<std::sync::atomic::AtomicU8>,
    /// The layout a volume created by this writer gets.
    pub new_layout: Layout,
}

/// Where a config's released volumes are.
#[derive(Debug, Clone)]
pub enum Origin {
    Dir(PathBuf),
    /// An S3 origin, and the local directory this process keeps its own
    /// files for its volumes in.
    S3 {
        store: Arc<crate::origin::s3::S3Origin>,
        local: PathBuf,
    },
}

impl Origin {
    /// The config's origin. An S3 origin's client is set up (no request is
    /// made yet); `local` is where this process keeps its files for it.
    pub fn of_config(config: &crate::config::Config, local: &Path) -> Result<Origin> {
        let Some(at) = &config.origin_s3 else {
            return Ok(Origin::Dir(config.origin.clone()));
        };
        let settings = config.s3.clone().unwrap_or_default();
        let store =
            crate::origin::s3::S3Origin::connect(&settings, at, config.daemon.origin_timeout)?;
        Ok(Origin::S3 {
            store,
            local: local.to_path_buf(),
        })
    }

    pub fn volume(&self, name: &str) -> VolumeDir {
        match self {
            Origin::Dir(root) => VolumeDir::new(root, name),
            Origin::S3 { store, local } => VolumeDir {
                name: name.to_string(),
                root: PathBuf::from(store.url(name)),
                local: local.join(name),
                s3: Some(Arc::new(s3::OnS3::new(store.clone(), name))),
                origin_root: local.clone(),
                layout: Default::default(),
                new_layout: Layout::Shared,
            },
        }
    }

    /// The S3 store, for an S3 origin.
    pub fn store(&self) -> Option<&Arc<crate::origin::s3::S3Origin>> {
        match self {
            Origin::Dir(_) => None,
            Origin::S3 { store, .. } => Some(store),
        }
    }
}

/// The pointer file's content.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pointer {
    pub format: u32,
    pub release: u64,
}

/// Metadata of one release, `releases/<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseMeta {
    pub format: u32,
    pub volume: String,
    pub id: u64,
    /// The release that was current when this one was made.
    pub parent: Option<u64>,
    /// Creation time, seconds since the Unix epoch, and the same as RFC 3339.
    pub created_unix: u64,
    pub created: String,
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    /// Sum of the file sizes.
    pub bytes: u64,
    /// Of the files, those left upstream until asked for (on-demand), and
    /// their bytes: absent from releases made before on-demand volumes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub remote_files: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub remote_bytes: u64,
    pub manifest_sha256: String,
    pub manifest_size: u64,
    /// Objects this release added to the store, and their bytes.
    pub new_objects: u64,
    pub new_bytes: u64,
    /// The tree it was made from.
    pub source: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What changed the pointer.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Release,
    Rollback,
    /// The pointer was found changed without a history line (the writer
    /// died between the two); the line was added afterwards.
    Recovered,
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HistoryEntry {
    pub time_unix: u64,
    pub time: String,
    pub action: Action,
    pub from: Option<u64>,
    pub to: u64,
    pub user: String,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `last-sync.json`: how the volume's last sync ended, replaced by each
/// sync (daemons show it in their status API and page).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LastSync {
    /// `released` (a new release), `unchanged` (nothing new upstream),
    /// `fetched` (`--no-release`) or `failed`.
    pub outcome: String,
    /// When it ended.
    pub time_unix: u64,
    pub time: String,
    pub duration_seconds: f64,
    pub fetched_files: u64,
    pub fetched_bytes: u64,
    /// The release current after it.
    pub release: Option<u64>,
    /// Why it failed, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub host: String,
}

impl LastSync {
    /// A record of a sync ending now.
    pub fn now(outcome: &str, duration_seconds: f64) -> LastSync {
        let (time_unix, time) = now();
        LastSync {
            outcome: outcome.to_string(),
            time_unix,
            time,
            duration_seconds,
            fetched_files: 0,
            fetched_bytes: 0,
            release: None,
            error: None,
            host: hostname(),
        }
    }
}

impl VolumeDir {
    pub fn new(origin: &Path, name: &str) -> VolumeDir {
        VolumeDir {
            name: name.to_string(),
            root: origin.join(name),
            local: origin.join(name),
            s3: None,
            origin_root: origin.to_path_buf(),
            layout: Default::default(),
            new_layout: Layout::Shared,
        }
    }

    pub fn format_file(&self) -> PathBuf {
        self.root.join("format")
    }
    pub fn pointer_file(&self) -> PathBuf {
        self.root.join("current")
    }
    pub fn history_file(&self) -> PathBuf {
        self.root.join("history.jsonl")
    }
    pub fn releases_dir(&self) -> PathBuf {
        self.root.join("releases")
    }
    pub fn meta_file(&self, id: u64) -> PathBuf {
        self.releases_dir().join(format!("{id}.json"))
    }
    /// The release's signature, when it was signed (see `signature`).
    pub fn signature_file(&self, id: u64) -> PathBuf {
        self.releases_dir().join(format!("{id}.sig"))
    }
    pub fn manifest_file(&self, id: u64) -> PathBuf {
        self.releases_dir().join(format!("{id}.manifest"))
    }
    pub fn tags_dir(&self) -> PathBuf {
        self.root.join("tags")
    }

    pub fn tag_file(&self, name: &str) -> PathBuf {
        self.tags_dir().join(name)
    }

    /// Where this volume's objects are written and collected: its own
    /// store, or the origin's shared one (by its `format`).
    pub fn objects_dir(&self) -> PathBuf {
        match self.layout() {
            Layout::Own => self.own_objects_dir(),
            Layout::Shared => self.shared_objects_dir(),
        }
    }

    /// Format 1's store, `<volume>/objects/sha256`.
    pub fn own_objects_dir(&self) -> PathBuf {
        self.root.join("objects").join("sha256")
    }

    /// The origin's shared store, `<origin>/objects/sha256`.
    pub fn shared_objects_dir(&self) -> PathBuf {
        self.origin_root.join("objects").join("sha256")
    }

    /// The store's lock: shared by writers, exclusive for gc's sweep.
    pub fn store_lock_file(&self) -> PathBuf {
        self.origin_root.join("store.lock")
    }

    /// The volume's layout on a filesystem origin, read from its `format`
    /// once (and again by [`VolumeDir::reread_layout`]). A volume without
    /// a readable marker reads as format 1's, and is asked again next time.
    pub fn layout(&self) -> Layout {
        use std::sync::atomic::Ordering;
        match self.layout.load(Ordering::Relaxed) {
            1 => Layout::Own,
            2 => Layout::Shared,
            _ => self.reread_layout().unwrap_or(Layout::Own),
        }
    }

    /// Reads the layout from `format` again (a daemon, at each check of the
    /// pointer: a volume may be migrated while it serves).
    pub fn reread_layout(&self) -> Option<Layout> {
        let text = fs::read_to_string(self.format_file()).ok()?;
        let layout = match text.trim() {
            FORMAT_LINE => Layout::Own,
            SHARED_FORMAT_LINE => Layout::Shared,
            _ => return None,
        };
        self.set_layout(layout);
        Some(layout)
    }

    fn set_layout(&self, layout: Layout) {
        let n = match layout {
            Layout::Own => 1,
            Layout::Shared => 2,
        };
        self.layout.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Where an object may be, most likely first: in the volume's layout's
    /// store, then the other (during a migration an object is in one or
    /// both, never in neither). Readers try both; writers use the first.
    pub fn object_files(&self, digest: &Sha256Digest) -> [PathBuf; 2] {
        let hex = digest.hex();
        let within = |dir: PathBuf| dir.join(&hex[0..2]).join(&hex[2..4]).join(&hex);
        let (own, shared) = (
            within(self.own_objects_dir()),
            within(self.shared_objects_dir()),
        );
        // As last read, without reading `format` here: daemons call this
        // on a runtime thread (their follower rereads it off the runtime).
        match self.layout.load(std::sync::atomic::Ordering::Relaxed) {
            1 => [own, shared],
            _ => [shared, own],
        }
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.local.join("tmp")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.local.join("lock")
    }

    /// Where the object with this digest lives: two levels of fan-out so
    /// that no directory holds more than a few thousand entries even with
    /// hundreds of millions of objects.
    pub fn object_file(&self, digest: &Sha256Digest) -> PathBuf {
        let hex = digest.hex();
        self.objects_dir()
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(hex)
    }

    /// Whether the volume has been initialised on the origin.
    pub fn exists(&self) -> Result<bool> {
        match &self.s3 {
            Some(s3) => s3.format().map(|f| f.is_some()),
            None => Ok(self.format_file().exists()),
        }
    }

    /// Checks the format marker of an existing volume.
    pub fn check_format(&self) -> Result<()> {
        let path = self.format_file();
        let (text, known) = match &self.s3 {
            Some(s3) => (s3.format()?.unwrap_or_default(), &[s3::FORMAT_LINE][..]),
            None => (
                fs::read_to_string(&path).with_context(|| {
                    format!("volume `{}`: reading {}", self.name, path.display())
                })?,
                &[FORMAT_LINE, SHARED_FORMAT_LINE][..],
            ),
        };
        if !known.contains(&text.trim()) {
            bail!(
                "volume `{}`: {} says {:?}; this unimirror reads {}",
                self.name,
                path.display(),
                text.trim(),
                known
                    .iter()
                    .map(|k| format!("{k:?}"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            );
        }
        if self.s3.is_none() {
            self.reread_layout();
        }
        Ok(())
    }

    /// The current release id, or `None` for a volume never released.
    pub fn current(&self) -> Result<Option<u64>> {
        if let Some(s3) = &self.s3 {
            return Ok(s3.pointer()?.map(|p| p.release));
        }
        let path = self.pointer_file();
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let p: Pointer = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a valid pointer", path.display()))?;
        if p.format != FORMAT {
            bail!("{}: pointer format {} unknown", path.display(), p.format);
        }
        Ok(Some(p.release))
    }

    /// Reads one release's metadata.
    pub fn meta(&self, id: u64) -> Result<ReleaseMeta> {
        self.meta_checked(id, |_| Ok(()))
    }

    /// Reads release `id`'s metadata, lets `check` judge its exact bytes
    /// first, then parses it.
    fn meta_checked(
        &self,
        id: u64,
        check: impl FnOnce(&[u8]) -> Result<()>,
    ) -> Result<ReleaseMeta> {
        let path = self.meta_file(id);
        let text = self
            .read_release_file(&format!("{id}.json"))?
            .with_context(|| format!("reading {}: not found", path.display()))?;
        check(&text)?;
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Reads one release's metadata and checks it was signed by one of
    /// `keys`, and that it is the metadata of release `id` of this volume
    /// (a signed release copied under another id or volume is refused).
    pub fn signed_meta(&self, id: u64, keys: &signature::ReleaseKeys) -> Result<ReleaseMeta> {
        let sig = self.read_release_file(&format!("{id}.sig"))?;
        let meta = self.meta_checked(id, |text| {
            keys.verify(text, sig.as_deref())
                .map(|_| ())
                .map_err(|why| anyhow::anyhow!("release #{id} of `{}` refused: {why}", self.name))
        })?;
        if meta.id != id || meta.volume != self.name {
            bail!(
                "release #{id} of `{}` refused: its signed metadata is that of release #{} of `{}`",
                self.name,
                meta.id,
                meta.volume
            );
        }
        Ok(meta)
    }

    /// `releases/<name>`, or `None` when it does not exist.
    fn read_release_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        if let Some(s3) = &self.s3 {
            return Ok(s3.read(&format!("releases/{name}"))?.map(Vec::from));
        }
        let path = self.releases_dir().join(name);
        match fs::read(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Opens a release's manifest, verified against its metadata. On S3 it
    /// is fetched once into the local directory first.
    pub fn manifest(&self, meta: &ReleaseMeta) -> Result<Manifest> {
        let digest = Sha256Digest::from_hex(&meta.manifest_sha256).with_context(|| {
            format!("{}: bad manifest_sha256", self.meta_file(meta.id).display())
        })?;
        if self.s3.is_none() {
            return Manifest::open(&self.manifest_file(meta.id), Verify::Sha256(digest));
        }
        let local = self.local.join("manifests").join(digest.hex());
        if let Ok(m) = Manifest::open(&local, Verify::Sha256(digest)) {
            return Ok(m);
        }
        let dir = self.local.join("manifests");
        durable::create_dir_all_durable(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let (_, mut from) = self.open_manifest(meta.id)?;
        let tmp = dir.join(durable::temp_name("manifest"));
        let copied = (|| -> Result<()> {
            let mut to =
                durable::create_new(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            io::copy(&mut from, &mut to)
                .with_context(|| format!("fetching {}", self.manifest_file(meta.id).display()))?;
            fs::rename(&tmp, &local).with_context(|| format!("renaming to {}", local.display()))
        })();
        if copied.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        copied?;
        Manifest::open(&local, Verify::Sha256(digest))
    }

    /// A release's manifest on the origin, as a reader, with its size.
    pub fn open_manifest(&self, id: u64) -> Result<(u64, Box<dyn Read + '_>)> {
        let path = self.manifest_file(id);
        if let Some(s3) = &self.s3 {
            let (len, reader) = s3
                .origin
                .reader(&s3.rel(&format!("releases/{id}.manifest")))?;
            return Ok((len, Box::new(reader)));
        }
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        Ok((len, Box::new(file)))
    }

    /// Another volume of the same origin.
    pub fn sibling(&self, name: &str) -> VolumeDir {
        let parent = |p: &Path| p.parent().unwrap_or(Path::new("")).join(name);
        VolumeDir {
            name: name.to_string(),
            root: parent(&self.root),
            local: parent(&self.local),
            s3: self
                .s3
                .as_ref()
                .map(|s3| Arc::new(s3::OnS3::new(s3.origin.clone(), name))),
            origin_root: self.origin_root.clone(),
            layout: Default::default(),
            new_layout: self.new_layout,
        }
    }

    /// Whether the object `digest` is where this volume's writers store
    /// it (its layout's store), so that a release may name it without
    /// storing it. Only that store: a format-1 volume must not lean on the
    /// shared store (which its gc does not guard, and older daemons do not
    /// read), nor a format-2 one on a copy left by an unfinished migration.
    pub fn has_object(&self, digest: &Sha256Digest) -> Result<bool> {
        match &self.s3 {
            Some(s3) => Ok(s3.origin.head(&s3::OnS3::object_rel(digest))?.is_some()),
            None => Ok(self.object_file(digest).exists()),
        }
    }

    /// Whether a reader finds the object `digest` (in either store while
    /// a volume migrates): what daemons serve from.
    pub fn has_object_anywhere(&self, digest: &Sha256Digest) -> Result<bool> {
        match &self.s3 {
            Some(_) => self.has_object(digest),
            None => Ok(self.object_files(digest).iter().any(|p| p.exists())),
        }
    }

    /// The bytes of the object `digest` (small ones: signed metadata).
    pub fn read_object(&self, digest: &Sha256Digest) -> Result<Vec<u8>> {
        if let Some(s3) = &self.s3 {
            let rel = s3::OnS3::object_rel(digest);
            return match s3.origin.get(&rel)? {
                Some(got) => Ok(got.bytes.into()),
                None => bail!("{}: no such object", s3.origin.url(&rel)),
            };
        }
        let [first, second] = self.object_files(digest);
        match fs::read(&first) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::read(&second).with_context(|| format!("reading {}", second.display()))
            }
            read => read.with_context(|| format!("reading {}", first.display())),
        }
    }

    /// Ids of all releases with metadata, ascending.
    pub fn release_ids(&self) -> Result<Vec<u64>> {
        if let Some(s3) = &self.s3 {
            return self.ids_on_s3(s3, &["json"]);
        }
        let dir = self.releases_dir();
        let mut ids = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for ent in rd {
            let name = ent?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(".json").and_then(|s| s.parse().ok()) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Ids a new release may not take: every release with metadata and,
    /// on S3, every id with any file (a manifest whose writer died before
    /// its metadata cannot be replaced there: files are created once).
    pub fn taken_ids(&self) -> Result<Vec<u64>> {
        match &self.s3 {
            Some(s3) => self.ids_on_s3(s3, &["json", "sig", "manifest"]),
            None => self.release_ids(),
        }
    }

    /// Ids of the files with these extensions in `releases/`, ascending.
    fn ids_on_s3(&self, s3: &s3::OnS3, extensions: &[&str]) -> Result<Vec<u64>> {
        let names = s3.origin.list(&s3.rel("releases"))?;
        let mut ids: Vec<u64> = names
            .iter()
            .filter_map(|n| {
                let (id, ext) = n.split_once('.')?;
                extensions.contains(&ext).then(|| id.parse().ok())?
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// The history of pointer changes, oldest first. A torn last line (a
    /// crash while appending) is skipped.
    pub fn history(&self) -> Result<Vec<HistoryEntry>> {
        self.history_tail(usize::MAX)
    }

    /// The releases the pointer ever named (on S3, from one listing of the
    /// history objects' names).
    pub fn published_ids(&self) -> Result<Vec<u64>> {
        match &self.s3 {
            Some(s3) => s3.published_ids(),
            None => Ok(self.history()?.iter().map(|h| h.to).collect()),
        }
    }

    /// The last `n` entries of the history, oldest first (on S3 only those
    /// are fetched).
    pub fn history_tail(&self, n: usize) -> Result<Vec<HistoryEntry>> {
        if let Some(s3) = &self.s3 {
            return s3.history_tail(n);
        }
        let path = self.history_file();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut entries: Vec<HistoryEntry> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        entries.drain(..entries.len().saturating_sub(n));
        Ok(entries)
    }

    /// The last sync's record, if a sync ever wrote one (an unreadable one
    /// reads as none: it is informational).
    pub fn last_sync(&self) -> Result<Option<LastSync>> {
        let bytes = match &self.s3 {
            Some(s3) => s3.read_if_changed("last-sync.json")?,
            None => match fs::read(self.root.join("last-sync.json")) {
                Ok(b) => Some(b.into()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).context("reading last-sync.json"),
            },
        };
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Tag `name`, if it was ever set (an untagged one names no release).
    pub fn tag(&self, name: &str) -> Result<Option<tags::Tag>> {
        tags::check_name(name)?;
        if let Some(s3) = &self.s3 {
            return Ok(s3.tag(name)?.map(|(t, _)| t));
        }
        let path = self.tag_file(name);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(
                tags::Tag::parse(name, &bytes)
                    .with_context(|| format!("reading {}", path.display()))?,
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Every tag ever set, by name (untagged ones included: they name no
    /// release). A file that is not a valid tag is skipped with a warning:
    /// one bad file must not hide the others.
    pub fn tags(&self) -> Result<Vec<tags::Tag>> {
        let names: Vec<String> = match &self.s3 {
            Some(s3) => s3.tag_names()?,
            None => match fs::read_dir(self.tags_dir()) {
                Ok(rd) => rd
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("reading {}", self.tags_dir().display()));
                }
            },
        };
        let mut found = Vec::new();
        for name in names {
            if tags::check_name(&name).is_err() {
                continue;
            }
            match self.tag(&name) {
                Ok(Some(t)) => found.push(t),
                Ok(None) => {}
                Err(e) => tracing::warn!(volume = %self.name, "tag `{name}` skipped: {e:#}"),
            }
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }
}

fn ensure_ends_with_newline(path: &Path) -> Result<()> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    use std::io::Seek;
    file.seek(io::SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    if last[0] != b'\n' {
        durable::append_line(path, "")?;
    }
    Ok(())
}

/// Why a symlink's target would leave its tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SymlinkEscape {
    #[error("empty target")]
    Empty,
    #[error("absolute target")]
    Absolute,
    #[error("climbs above the root")]
    AboveRoot,
}

/// The one containment rule for symlinks in a released tree, applied by the
/// release walk (a link that breaks it fails the release) and by the
/// daemon at every hop it follows: a symlink in directory `dir` (relative
/// to the root, `/`-separated, empty for the root) may only name something
/// inside the tree. Its target is relative, resolved from `dir`, and never
/// climbs above the root.
pub fn check_symlink(dir: &[u8], target: &[u8]) -> Result<(), SymlinkEscape> {
    if target.is_empty() {
        return Err(SymlinkEscape::Empty);
    }
    if target.starts_with(b"/") {
        return Err(SymlinkEscape::Absolute);
    }
    let mut depth = dir.split(|&b| b == b'/').filter(|s| !s.is_empty()).count();
    for seg in target.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => depth = depth.checked_sub(1).ok_or(SymlinkEscape::AboveRoot)?,
            _ => depth += 1,
        }
    }
    Ok(())
}

/// Seconds since the Unix epoch.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// Now, as Unix seconds and as RFC 3339, for the records writers keep.
fn now() -> (u64, String) {
    let now = SystemTime::now();
    (
        unix(now),
        humantime::format_rfc3339_seconds(now).to_string(),
    )
}

/// The user name of this process (from the password database, since
/// systemd services and cron jobs often run without `$USER`).
fn whoami() -> String {
    // SAFETY: getuid has no preconditions; getpwuid_r writes only into the
    // buffers we pass and its result points into them.
    unsafe {
        let uid = libc::getuid();
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out);
        if rc == 0 && !out.is_null() && !pw.pw_name.is_null() {
            return std::ffi::CStr::from_ptr(pw.pw_name)
                .to_string_lossy()
                .into_owned();
        }
        format!("uid {uid}")
    }
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// A volume whose writers' lock this process holds: the only way to
/// change its pointer, its history or its format marker. Everything a
/// [`VolumeDir`] reads is there too (through `Deref`). The lock is released
/// when it is dropped.
pub struct LockedVolume {
    dir: VolumeDir,
    _lock: VolumeLock,
    /// Signs the releases this writer publishes (`release.signing_key`).
    signer: Option<std::sync::Arc<signature::SigningKey>>,
    /// The release the next one must follow, if a decision depended on it
    /// (a sync's freshness check); see [`LockedVolume::must_follow`].
    follows: std::sync::Mutex<Option<Option<u64>>>,
    /// Whether the writer waits for locks (`--wait`) or fails at once.
    wait: bool,
}

impl std::ops::Deref for LockedVolume {
    type Target = VolumeDir;
    fn deref(&self) -> &VolumeDir {
        &self.dir
    }
}

impl LockedVolume {
    /// The volume's paths, for what outlives a borrow of the lock.
    pub fn dir(&self) -> &VolumeDir {
        &self.dir
    }

    /// Signs the releases published through this lock with `key`.
    pub fn signed_by(mut self, key: Option<std::sync::Arc<signature::SigningKey>>) -> Self {
        self.signer = key;
        self
    }

    pub fn signer(&self) -> Option<&signature::SigningKey> {
        self.signer.as_deref()
    }

    /// Makes the next release fail with [`Busy`] unless it follows
    /// `current` (`Some(None)`: no release); `None` sets no condition.
    /// On S3, where no lock keeps other hosts out, the pointer may have
    /// moved since a sync compared its metadata with the current release.
    pub fn must_follow(&self, current: Option<Option<u64>>) {
        *self.follows.lock().expect("not poisoned") = current;
    }

    /// Checks `parent`, just read as current, against [`must_follow`].
    ///
    /// [`must_follow`]: LockedVolume::must_follow
    pub fn check_follows(&self, parent: Option<u64>) -> Result<()> {
        let expected = *self.follows.lock().expect("not poisoned");
        match expected {
            Some(judged) if judged != parent => Err(Busy {
                volume: self.name.clone(),
                holder: format!(
                    "another updater released #{} while this sync compared its metadata with #{}; run the sync again",
                    parent.map_or("none".into(), |id| id.to_string()),
                    judged.map_or("none".into(), |id| id.to_string()),
                ),
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// The shared store's lock, for a volume whose objects are there
    /// (none on S3, where no lock exists, or for a format-1 volume).
    pub fn store_lock(&self, exclusive: bool) -> Result<Option<StoreLock>> {
        if self.s3.is_some() || self.layout() != Layout::Shared {
            return Ok(None);
        }
        // A writer that has done its work (a sync that fetched for an hour)
        // waits for a gc of another volume rather than fail at the end;
        // gc honours --wait.
        StoreLock::acquire(self, exclusive, self.wait || !exclusive).map(Some)
    }

    /// Removes `<volume>/objects/` of a format-2 volume: what a `migrate`
    /// killed after its commit point left (every object in it was linked
    /// into the shared store and flushed before that point).
    pub fn finish_migration(&self) -> Result<()> {
        if self.s3.is_some() || self.layout() != Layout::Shared {
            return Ok(());
        }
        let own = self.root.join("objects");
        match fs::remove_dir_all(&own) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", own.display()))
            }
            _ => Ok(()),
        }
    }

    /// Creates the volume's directories and format marker if missing.
    pub fn init(&self) -> Result<()> {
        if let Some(s3) = &self.s3 {
            durable::create_dir_all_durable(&self.tmp_dir())
                .with_context(|| format!("creating {}", self.tmp_dir().display()))?;
            s3.init()?;
            return self.check_format();
        }
        for d in [self.root.clone(), self.releases_dir(), self.tmp_dir()] {
            durable::create_dir_all_durable(&d)
                .with_context(|| format!("creating {}", d.display()))?;
        }
        if !self.exists()? {
            // A new volume: the layout the config asks for (the shared
            // store unless daemons older than it still read the origin).
            if self.new_layout == Layout::Shared {
                self.init_shared_store()?;
            }
            let line = match self.new_layout {
                Layout::Own => FORMAT_LINE,
                Layout::Shared => SHARED_FORMAT_LINE,
            };
            durable::write_atomic(
                &self.format_file(),
                &self.tmp_dir(),
                format!("{line}\n").as_bytes(),
            )
            .with_context(|| format!("writing {}", self.format_file().display()))?;
        }
        self.check_format()?;
        self.finish_migration()?;
        let objects = self.objects_dir();
        durable::create_dir_all_durable(&objects)
            .with_context(|| format!("creating {}", objects.display()))
    }

    /// Creates the origin's shared store and its marker if missing.
    pub fn init_shared_store(&self) -> Result<()> {
        let dir = self.shared_objects_dir();
        durable::create_dir_all_durable(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let marker = self.origin_root.join("format");
        match fs::read_to_string(&marker) {
            Ok(text) if text.trim() == ORIGIN_FORMAT_LINE => Ok(()),
            Ok(text) => bail!(
                "{} says {:?}; this unimirror reads {ORIGIN_FORMAT_LINE:?}",
                marker.display(),
                text.trim()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => durable::write_atomic(
                &marker,
                &self.tmp_dir(),
                format!("{ORIGIN_FORMAT_LINE}\n").as_bytes(),
            )
            .with_context(|| format!("writing {}", marker.display())),
            Err(e) => Err(e).with_context(|| format!("reading {}", marker.display())),
        }
    }

    /// Writes `releases/<name>`, durably; on S3 only if it does not exist
    /// (another writer's file under this name is [`Busy`]).
    pub fn publish_release_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        if let Some(s3) = &self.s3 {
            return s3.create_once(&format!("releases/{name}"), bytes.to_vec().into());
        }
        let path = self.releases_dir().join(name);
        durable::write_atomic(&path, &self.tmp_dir(), bytes)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Makes the finished manifest `tmp` (in the volume's `tmp/`) release
    /// `id`'s.
    pub fn publish_manifest(&self, id: u64, tmp: &Path) -> Result<()> {
        if self.s3.is_some() {
            let bytes = fs::read(tmp).with_context(|| format!("reading {}", tmp.display()))?;
            self.publish_release_file(&format!("{id}.manifest"), &bytes)?;
            let _ = fs::remove_file(tmp);
            return Ok(());
        }
        let manifest_file = self.manifest_file(id);
        fs::rename(tmp, &manifest_file)
            .with_context(|| format!("renaming manifest into {}", manifest_file.display()))?;
        Ok(durable::fsync_dir(&self.releases_dir())?)
    }

    /// Points the volume at release `to`, atomically and durably, from
    /// `from` (the release this writer read as current), and records the
    /// move in the history. On S3, fails with [`Busy`] when another writer
    /// moved the pointer since it was read.
    pub fn move_pointer(
        &self,
        action: Action,
        from: Option<u64>,
        to: u64,
        reason: Option<String>,
    ) -> Result<()> {
        let entry = history_entry(action, from, to, reason);
        if let Some(s3) = &self.s3 {
            let recovered = history_entry(
                Action::Recovered,
                None,
                from.unwrap_or(0),
                Some("pointer changed without a history entry (interrupted writer)".into()),
            );
            return s3.move_pointer(from, to, &entry, &recovered);
        }
        let bytes = serde_json::to_vec(&Pointer {
            format: FORMAT,
            release: to,
        })?;
        crate::fault::point("pointer-before-rename");
        durable::write_atomic(&self.pointer_file(), &self.tmp_dir(), &bytes)
            .with_context(|| format!("writing {}", self.pointer_file().display()))?;
        crate::fault::point("pointer-renamed");
        self.append_history(&entry)
    }

    /// Replaces tag `before.name`, as read by this writer, with `next`:
    /// atomically (a rename under the lock; on S3 a conditional PUT, and
    /// [`Busy`] when another writer moved the tag since it was read).
    pub fn write_tag(&self, before: &tags::Tag, next: &tags::Tag) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(next)?;
        if let Some(s3) = &self.s3 {
            return s3.write_tag(before, next, bytes.into());
        }
        durable::create_dir_all_durable(&self.tags_dir())
            .with_context(|| format!("creating {}", self.tags_dir().display()))?;
        let path = self.tag_file(&next.name);
        crate::fault::point("tag-before-rename");
        durable::write_atomic(&path, &self.tmp_dir(), &bytes)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Replaces `last-sync.json`. A volume never created (a first sync that
    /// failed early) gets none.
    pub fn record_sync(&self, record: &LastSync) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(record)?;
        if let Some(s3) = &self.s3 {
            return s3.origin.overwrite(&s3.rel("last-sync.json"), bytes.into());
        }
        if !self.tmp_dir().is_dir() {
            return Ok(());
        }
        let path = self.root.join("last-sync.json");
        durable::write_atomic(&path, &self.tmp_dir(), &bytes)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Appends a history line for a pointer change.
    fn append_history(&self, entry: &HistoryEntry) -> Result<()> {
        let path = self.history_file();
        // A torn line from an earlier crash must not swallow this one.
        ensure_ends_with_newline(&path)?;
        durable::append_line(&path, &serde_json::to_string(entry)?)
            .with_context(|| format!("appending to {}", path.display()))
    }

    /// Brings the history in line with the pointer after a crash between
    /// the pointer flip and the history append. Call with the lock held.
    pub fn repair_history(&self) -> Result<()> {
        let recovered = |last, current| {
            history_entry(
                Action::Recovered,
                last,
                current,
                Some("pointer changed without a history line (interrupted writer)".into()),
            )
        };
        if let Some(s3) = &self.s3 {
            return s3.repair(recovered);
        }
        let Some(current) = self.current()? else {
            return Ok(());
        };
        let history = self.history()?;
        let last = history.last().map(|h| h.to);
        if last != Some(current) {
            self.append_history(&recovered(last, current))?;
        }
        Ok(())
    }
}

/// A history entry for a pointer move made now, by this process.
fn history_entry(
    action: Action,
    from: Option<u64>,
    to: u64,
    reason: Option<String>,
) -> HistoryEntry {
    let (time_unix, time) = now();
    HistoryEntry {
        time_unix,
        time,
        action,
        from,
        to,
        user: whoami(),
        host: hostname(),
        reason,
    }
}

/// The exclusive writer lock of a volume, released on drop; held inside the
/// [`LockedVolume`] that [`VolumeLock::acquire`] returns.
pub struct VolumeLock {
    _file: File,
}

/// Why a lock could not be had.
#[derive(Debug, thiserror::Error)]
#[error("volume `{volume}` is busy: {holder}")]
pub struct Busy {
    pub volume: String,
    pub holder: String,
}

impl VolumeLock {
    /// Takes the lock; with `wait`, blocks until it is free, otherwise fails
    /// at once with [`Busy`] naming the holder. `what` names the holder in
    /// the next writer's message.
    pub fn acquire(vol: &VolumeDir, wait: bool, what: &str) -> Result<LockedVolume> {
        durable::create_dir_all_durable(&vol.local)
            .with_context(|| format!("creating {}", vol.local.display()))?;
        let path = vol.lock_file();
        let (mut file, locked) = flock(&path, libc::LOCK_EX, wait)?;
        if !locked {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Busy {
                volume: vol.name.clone(),
                holder: if holder.is_empty() {
                    "another writer holds its lock".into()
                } else {
                    format!("{holder} holds its lock")
                },
            }
            .into());
        }
        // Say who holds it, for the message the next writer gets.
        let info = format!(
            "{what} (pid {} on {}, since {})",
            std::process::id(),
            hostname(),
            humantime::format_rfc3339_seconds(SystemTime::now())
        );
        file.set_len(0)?;
        use std::io::Seek;
        file.seek(io::SeekFrom::Start(0))?;
        file.write_all(info.as_bytes())?;
        Ok(LockedVolume {
            dir: vol.clone(),
            _lock: VolumeLock { _file: file },
            signer: None,
            follows: std::sync::Mutex::new(None),
            wait,
        })
    }
}

/// The lock of a filesystem origin's shared store (`<origin>/store.lock`):
/// held shared by every writer that adds objects to it or relies on ones
/// there (release, materialize, migrate), and exclusively by gc while it
/// decides what no volume needs and removes it. So gc never sees a
/// release half-made, and never removes an object a writer just found
/// there and is about to name. Released on drop.
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Takes the lock of `vol`'s origin, shared or `exclusive`; with
    /// `wait`, blocks until it can, otherwise fails with [`Busy`]. Taken
    /// after the volume's own lock, never before, so two writers never
    /// wait for each other in a circle.
    pub fn acquire(vol: &VolumeDir, exclusive: bool, wait: bool) -> Result<StoreLock> {
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        match flock(&vol.store_lock_file(), op, wait)? {
            (file, true) => Ok(StoreLock { _file: file }),
            (_, false) => Err(Busy {
                volume: vol.name.clone(),
                holder: match exclusive {
                    true => "a writer of another volume is using the origin's shared store".into(),
                    false => "a gc is sweeping the origin's shared store".into(),
                },
            }
            .into()),
        }
    }
}

/// Opens `path` (made if missing) and `flock`s it with `op`; without
/// `wait`, returns at once with `false` when another process holds it.
fn flock(path: &Path, op: i32, wait: bool) -> Result<(File, bool)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let op = if wait { op } else { op | libc::LOCK_NB };
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok((file, true));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok((file, false)),
            _ => return Err(err).with_context(|| format!("locking {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_fan_out() {
        let v = VolumeDir::new(Path::new("/o"), "pypi");
        let d = Sha256Digest([0xab; 32]);
        let p = v.object_file(&d);
        assert_eq!(
            p,
            Path::new("/o/pypi/objects/sha256/ab/ab").join("ab".repeat(32))
        );
    }

    #[test]
    fn pointer_history_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let v = VolumeLock::acquire(&VolumeDir::new(dir.path(), "v"), false, "test").unwrap();
        v.init().unwrap();
        assert_eq!(v.current().unwrap(), None);
        // A writer killed between the pointer's rename and its history line.
        fs::write(v.pointer_file(), br#"{"format":1,"release":3}"#).unwrap();
        assert_eq!(v.current().unwrap(), Some(3));
        // A crash between flip and history append is repaired.
        v.repair_history().unwrap();
        assert_eq!(
            v.history().unwrap().last().unwrap().action,
            Action::Recovered
        );
        // A torn line is skipped and does not eat the next one.
        fs::OpenOptions::new()
            .append(true)
            .open(v.history_file())
            .unwrap()
            .write_all(b"{\"time_unix\":1,")
            .unwrap();
        v.move_pointer(Action::Release, Some(3), 4, None).unwrap();
        assert_eq!(v.current().unwrap(), Some(4));
        let h = v.history().unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[1].to, 4);
        // The end of it, oldest first; the releases ever current.
        assert_eq!(v.history_tail(1).unwrap(), h[1..]);
        assert_eq!(v.history_tail(5).unwrap(), h);
        assert_eq!(v.published_ids().unwrap(), [3, 4]);
    }

    #[test]
    fn lock_is_exclusive_and_names_holder() {
        let dir = tempfile::tempdir().unwrap();
        let v = VolumeDir::new(dir.path(), "v");
        let held = VolumeLock::acquire(&v, false, "release").unwrap();
        let err = VolumeLock::acquire(&v, false, "gc").err().unwrap();
        let busy = err.downcast_ref::<Busy>().unwrap();
        assert!(busy.holder.contains("release (pid"), "{}", busy.holder);
        drop(held);
        VolumeLock::acquire(&v, false, "gc").unwrap();
    }

    #[test]
    fn both_layouts_are_read_and_a_foreign_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let v = VolumeLock::acquire(&VolumeDir::new(dir.path(), "v"), false, "test").unwrap();
        v.init().unwrap();
        assert_eq!(v.layout(), Layout::Shared);
        fs::write(v.format_file(), "unimirror-volume 1\n").unwrap();
        v.init().unwrap();
        assert_eq!(v.layout(), Layout::Own);
        fs::write(v.format_file(), "unimirror-volume 3\n").unwrap();
        assert!(v.init().is_err());
        let err = format!("{:#}", v.check_format().unwrap_err());
        assert!(
            err.contains("\"unimirror-volume 1\" and \"unimirror-volume 2\""),
            "{err}"
        );
    }

    #[test]
    fn symlink_containment() {
        assert_eq!(check_symlink(b"", b"a"), Ok(()));
        assert_eq!(check_symlink(b"a/b", b"../../c"), Ok(()));
        assert_eq!(check_symlink(b"a", b"./x/../y"), Ok(()));
        assert_eq!(check_symlink(b"a", b"x//y/"), Ok(()));
        assert_eq!(check_symlink(b"", b"../x"), Err(SymlinkEscape::AboveRoot));
        assert_eq!(
            check_symlink(b"a", b"../../x"),
            Err(SymlinkEscape::AboveRoot)
        );
        // Climbing out and back in is still out.
        assert_eq!(
            check_symlink(b"a", b"../../a/x"),
            Err(SymlinkEscape::AboveRoot)
        );
        assert_eq!(
            check_symlink(b"a", b"/etc/passwd"),
            Err(SymlinkEscape::Absolute)
        );
        assert_eq!(check_symlink(b"a", b""), Err(SymlinkEscape::Empty));
    }
}

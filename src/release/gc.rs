//! `unimirror-update gc`: remove old releases, the objects only they used,
//! and the debris of interrupted runs, never anything a daemon may still
//! serve.
//!
//! Kept, always: the current release; the releases most recently current
//! before it, up to `keep` in all and never fewer than [`MIN_KEEP`] (the
//! daemon answers from the two previous releases during the grace period);
//! and every release that was current within the grace period.
//!
//! In three steps, under the volume's lock: [`GcPlan::new`] decides, from
//! the release ids, the pointer and the history alone (no file system), the
//! fate of each release and why; [`Sweep::survey`] lists what else goes
//! (objects no kept release names, manifests without metadata, temporary
//! files), removing nothing; [`apply`] removes it all. `--dry-run` stops
//! before `apply` and prints the plan.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};

use super::Need;
use crate::config::Config;
use crate::digest::Sha256Digest;
use crate::progress::bytes;
use crate::volume::manifest::Kind;
use crate::volume::tags::Tag;
use crate::volume::{HistoryEntry, Layout, LockedVolume, VolumeDir, unix};

/// The current release and the two before it.
pub const MIN_KEEP: usize = 3;

/// What becomes of one release, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Kept: the pointer names it.
    Current,
    /// Kept: among the `keep` releases most recently current; `rank` 0 is
    /// the current one, 1 the one current before it, and so on.
    Recent { rank: usize },
    /// Kept: it stopped being current `ago` seconds ago, within the grace
    /// period.
    Grace { ago: u64 },
    /// Kept: never published, but made `age` seconds ago, within the grace
    /// period. On S3, where writers take no lock, another host's writer may
    /// be about to move the pointer to it.
    Young { age: u64 },
    /// Kept: a tag names it.
    Tagged,
    /// Kept: a tag moved onto or away from it `ago` seconds ago, within
    /// the grace period (nodes may still be fetching under the tag).
    TagMoved { ago: u64 },
    /// Removed. `published`: the pointer once named it (otherwise it is
    /// left by an interrupted run).
    Remove { published: bool },
}

impl Fate {
    pub fn kept(self) -> bool {
        !matches!(self, Fate::Remove { .. })
    }
}

/// Which releases gc keeps and which it removes: a pure function of the
/// volume's state and the settings, so it can be shown (`--dry-run`) and
/// tested without a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcPlan {
    /// Every release with metadata, ascending, with its fate.
    pub releases: Vec<(u64, Fate)>,
    /// Releases kept by rank (never below [`MIN_KEEP`]).
    pub keep: usize,
    /// The grace period, in seconds.
    pub grace: u64,
    /// The tags naming each tagged release (see [`GcPlan::keep_tagged`]).
    pub tagged: Vec<(u64, String)>,
}

impl GcPlan {
    /// Decides the fate of releases `ids` (ascending) at time `now` (Unix
    /// seconds). Releases are ranked by how recently they were current:
    /// the order of the history (its timestamps have one-second
    /// resolution), the current one first. Grace is judged by time: when
    /// each stopped being current.
    pub fn new(
        ids: &[u64],
        current: Option<u64>,
        history: &[HistoryEntry],
        now: u64,
        keep: usize,
        grace: u64,
    ) -> GcPlan {
        let keep = keep.max(MIN_KEEP);
        // Per release: its last position in the history, and until when
        // it was current then.
        let mut last_seen: HashMap<u64, (usize, u64)> = HashMap::new();
        for (i, h) in history.iter().enumerate() {
            let until = history.get(i + 1).map(|n| n.time_unix).unwrap_or(now);
            last_seen.insert(h.to, (i, until));
        }
        if let Some(c) = current {
            last_seen.insert(c, (usize::MAX, now));
        }
        let mut by_recency: Vec<(u64, usize)> =
            last_seen.iter().map(|(&id, &(i, _))| (id, i)).collect();
        by_recency.sort_by_key(|&(_, i)| std::cmp::Reverse(i));

        let releases = ids
            .iter()
            .map(|&id| {
                let rank = by_recency.iter().position(|&(r, _)| r == id);
                let ago = last_seen
                    .get(&id)
                    .map(|&(_, until)| now.saturating_sub(until));
                let fate = if Some(id) == current {
                    Fate::Current
                } else if let Some(rank) = rank.filter(|&r| r < keep) {
                    Fate::Recent { rank }
                } else if let Some(ago) = ago.filter(|&a| a < grace) {
                    Fate::Grace { ago }
                } else {
                    Fate::Remove {
                        published: rank.is_some(),
                    }
                };
                (id, fate)
            })
            .collect();
        GcPlan {
            releases,
            keep,
            grace,
            tagged: Vec::new(),
        }
    }

    /// Keeps, of the releases planned for removal, every one a tag names,
    /// and every one a tag moved onto or away from within the grace period
    /// (at `now`, Unix seconds).
    pub fn keep_tagged(&mut self, tags: &[Tag], now: u64) {
        self.tagged = tags
            .iter()
            .filter_map(|t| Some((t.release?, t.name.clone())))
            .collect();
        for (id, fate) in &mut self.releases {
            if *fate == Fate::Current {
                continue;
            }
            // The reason operators act on comes first: a tagged release
            // stays until the tag moves, whatever its rank or age.
            if self.tagged.iter().any(|(r, _)| r == id) {
                *fate = Fate::Tagged;
                continue;
            }
            if fate.kept() {
                continue;
            }
            let ago = tags
                .iter()
                .filter_map(|t| t.last_touched(*id))
                .map(|at| now.saturating_sub(at))
                .min();
            if let Some(ago) = ago.filter(|&a| a < self.grace) {
                *fate = Fate::TagMoved { ago };
            }
        }
    }

    pub fn kept(&self) -> Vec<u64> {
        self.ids(true)
    }

    pub fn removed(&self) -> Vec<u64> {
        self.ids(false)
    }

    fn ids(&self, kept: bool) -> Vec<u64> {
        self.releases
            .iter()
            .filter(|(_, f)| f.kept() == kept)
            .map(|&(id, _)| id)
            .collect()
    }

    /// One line per release: its fate and why.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for &(id, fate) in &self.releases {
            let why = match fate {
                Fate::Current => "keep: current".to_string(),
                Fate::Recent { rank } => format!(
                    "keep: among the {} most recently current ({rank} back)",
                    self.keep
                ),
                Fate::Grace { ago } => format!(
                    "keep: current {} ago, within the grace period ({})",
                    super::status::age(ago),
                    super::status::age(self.grace)
                ),
                Fate::Young { age } => format!(
                    "keep: never published, but made {} ago, within the grace period ({}): its writer may still publish it",
                    super::status::age(age),
                    super::status::age(self.grace)
                ),
                Fate::Tagged => {
                    let names: Vec<&str> = self
                        .tagged
                        .iter()
                        .filter(|(r, _)| *r == id)
                        .map(|(_, n)| n.as_str())
                        .collect();
                    format!("keep: tagged {}", names.join(", "))
                }
                Fate::TagMoved { ago } => format!(
                    "keep: a tag moved onto or off it {} ago, within the grace period ({})",
                    super::status::age(ago),
                    super::status::age(self.grace)
                ),
                Fate::Remove { published: true } => format!(
                    "remove: not among the {} most recently current, out of the grace period ({})",
                    self.keep,
                    super::status::age(self.grace)
                ),
                Fate::Remove { published: false } => {
                    "remove: never published (left by an interrupted run)".to_string()
                }
            };
            s += &format!("  #{id:<6} {why}\n");
        }
        s
    }
}

/// What else a plan removes, found by listing the volume (with its lock
/// held, nothing else writes there): nothing is removed while surveying.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Manifests whose metadata was never written (interrupted runs).
    pub stray_manifests: Vec<PathBuf>,
    /// Objects no kept release names, with their sizes.
    pub objects: Vec<(PathBuf, u64)>,
    /// Everything in the volume's `tmp/`.
    pub temporaries: Vec<PathBuf>,
}

impl Sweep {
    /// Lists what goes besides the plan's releases. Fails, before anything
    /// is removed, if a kept release's manifest cannot be read.
    pub fn survey(vol: &VolumeDir, plan: &GcPlan) -> Result<Sweep> {
        let mut sweep = Sweep::default();
        let mut needed = needed_objects(vol, &plan.kept())?;
        if vol.layout() == Layout::Shared {
            // The store is every volume's: what any release of another
            // volume names stays (the caller holds the store's lock, so no
            // writer is between its objects and its release).
            for other in other_volumes(vol)? {
                needed.extend(needed_objects(&other, &other.release_ids()?)?);
            }
            needed.sort_unstable();
            needed.dedup();
        }

        let listed = |id: u64| plan.releases.iter().any(|&(r, _)| r == id);
        for path in read_dir_sorted(&vol.releases_dir())? {
            let stray = path.extension().is_some_and(|e| e == "manifest")
                && path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|id| !listed(id));
            if stray {
                sweep.stray_manifests.push(path);
            }
        }

        for l1 in read_dir_sorted(&vol.objects_dir())? {
            for l2 in read_dir_sorted(&l1)? {
                for obj in read_dir_sorted(&l2)? {
                    let name = obj.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    let keep = Sha256Digest::from_hex(name)
                        .is_some_and(|d| needed.binary_search(&d).is_ok());
                    if !keep {
                        let size = fs::symlink_metadata(&obj).map(|m| m.len()).unwrap_or(0);
                        sweep.objects.push((obj, size));
                    }
                }
            }
        }

        // Nothing else writes while we hold the lock: every temporary is
        // debris.
        if let Ok(rd) = fs::read_dir(vol.tmp_dir()) {
            for ent in rd {
                sweep.temporaries.push(ent?.path());
            }
        }
        Ok(sweep)
    }
}

/// The other volumes of `vol`'s filesystem origin: its directories with a
/// format marker, whether configured here or not (another host's config
/// may serve them).
fn other_volumes(vol: &VolumeDir) -> Result<Vec<VolumeDir>> {
    let mut others = Vec::new();
    for path in read_dir_sorted(&vol.origin_root)? {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name != vol.name && path.join("format").is_file() {
            others.push(vol.sibling(name));
        }
    }
    Ok(others)
}

/// The objects releases `ids` of `vol` name, sorted.
fn needed_objects(vol: &VolumeDir, ids: &[u64]) -> Result<Vec<Sha256Digest>> {
    let mut needed: Vec<Sha256Digest> = Vec::new();
    for &id in ids {
        let meta = vol.meta(id)?;
        let manifest = vol.manifest(&meta).with_context(|| {
            format!(
                "reading release #{id} of `{}`, which is kept; nothing was removed",
                vol.name
            )
        })?;
        let mut stream = manifest.stream();
        while let Some(item) = stream.next_entry() {
            let (_, entry) = item?;
            if entry.kind == Kind::File {
                needed.push(entry.sha256);
            }
        }
    }
    needed.sort_unstable();
    needed.dedup();
    Ok(needed)
}

/// [`Sweep::survey`] on an S3 origin, where objects are shared by every
/// volume and writers take no lock: an object is needed if a kept release
/// of this volume or any release of another names it, and nothing younger
/// than `grace` goes (another writer may have uploaded it for a release it
/// has not published yet, or be between its manifest and its metadata).
fn survey_store(vol: &VolumeDir, plan: &GcPlan, grace: std::time::Duration) -> Result<Sweep> {
    let s3 = vol.s3.as_ref().expect("an S3 origin");
    let mut sweep = Sweep::default();
    let mut needed = needed_objects(vol, &plan.kept())?;
    for name in s3.origin.list("")? {
        if matches!(name.as_str(), "format" | "objects" | ".probe") || name == vol.name {
            continue;
        }
        let other = vol.sibling(&name);
        needed.extend(needed_objects(&other, &other.release_ids()?)?);
    }
    needed.sort_unstable();
    needed.dedup();

    let listed = |id: u64| plan.releases.iter().any(|&(r, _)| r == id);
    for (key, _, age) in s3.origin.list_all(&s3.rel("releases"))? {
        let name = key.rsplit('/').next().unwrap_or("");
        let stray = name
            .strip_suffix(".manifest")
            .or_else(|| name.strip_suffix(".sig"))
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|id| !listed(id));
        if stray && age >= grace {
            sweep.stray_manifests.push(PathBuf::from(key));
        }
    }
    for (key, size, age) in s3.origin.list_all("objects/sha256")? {
        let name = key.rsplit('/').next().unwrap_or("");
        let keep = Sha256Digest::from_hex(name).is_some_and(|d| needed.binary_search(&d).is_ok());
        if !keep && age >= grace {
            sweep.objects.push((PathBuf::from(key), size));
        }
    }
    if let Ok(rd) = fs::read_dir(vol.tmp_dir()) {
        for ent in rd {
            sweep.temporaries.push(ent?.path());
        }
    }
    Ok(sweep)
}

/// Removes what the plan and the sweep name: releases first (metadata
/// before manifest, so a half-removed release is no longer listed), then
/// stray manifests, then objects (only once no listed release names them),
/// then temporaries.
pub fn apply(vol: &LockedVolume, plan: &GcPlan, sweep: &Sweep) -> Result<()> {
    if let Some(s3) = &vol.s3 {
        for id in plan.removed() {
            for ext in ["json", "sig", "manifest"] {
                s3.origin.delete(&s3.rel(&format!("releases/{id}.{ext}")))?;
            }
        }
        for key in &sweep.stray_manifests {
            s3.origin.delete(&key.to_string_lossy())?;
        }
        // Asked again right before each removal: a writer that reuses an
        // old object uploads it again, which makes it young (see
        // `ObjectStore::upload`), and may have done so since the survey.
        let grace = std::time::Duration::from_secs(plan.grace);
        for (key, _) in &sweep.objects {
            let key = key.to_string_lossy();
            if s3.origin.age(&key)?.is_some_and(|age| age >= grace) {
                s3.origin.delete(&key)?;
            }
        }
        for path in &sweep.temporaries {
            remove_if_present(path)?;
        }
        return Ok(());
    }
    crate::fault::point("gc-surveyed");
    for id in plan.removed() {
        // The metadata first: a release without it is no release, and a
        // manifest left by a crash here is a stray one for the next gc.
        remove_if_present(&vol.meta_file(id))?;
        crate::fault::point("gc-release-unlisted");
        remove_if_present(&vol.signature_file(id))?;
        remove_if_present(&vol.manifest_file(id))?;
    }
    for path in &sweep.stray_manifests {
        remove_if_present(path)?;
    }
    crate::durable::fsync_dir(&vol.releases_dir())?;
    crate::fault::point("gc-releases-removed");
    for (obj, _) in &sweep.objects {
        remove_if_present(obj)?;
        crate::fault::point("gc-object-removed");
    }
    for path in &sweep.temporaries {
        remove_if_present(path)?;
    }
    Ok(())
}

#[derive(Debug)]
pub struct GcReport {
    pub plan: GcPlan,
    pub removed_objects: u64,
    pub removed_bytes: u64,
    pub removed_temporaries: u64,
    /// On S3: multipart uploads begun before the grace period and never
    /// completed, aborted (or, in a dry run, found).
    pub aborted_uploads: Option<u64>,
    pub dry_run: bool,
}

impl GcReport {
    fn new(plan: GcPlan, sweep: &Sweep, dry_run: bool) -> GcReport {
        GcReport {
            removed_objects: sweep.objects.len() as u64,
            removed_bytes: sweep.objects.iter().map(|&(_, size)| size).sum(),
            removed_temporaries: (sweep.stray_manifests.len() + sweep.temporaries.len()) as u64,
            aborted_uploads: None,
            plan,
            dry_run,
        }
    }

    pub fn summary(&self, volume: &str) -> String {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let uploads = match self.aborted_uploads {
            Some(n) => format!(", {n} abandoned uploads"),
            None => String::new(),
        };
        format!(
            "gc {volume}: kept releases {}; {verb} releases {}, {} objects ({}), {} temporary files{uploads}",
            ids(&self.plan.kept()),
            ids(&self.plan.removed()),
            self.removed_objects,
            bytes(self.removed_bytes),
            self.removed_temporaries
        )
    }
}

fn ids(v: &[u64]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.iter()
            .map(|i| format!("#{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `unimirror-update gc`: plans, surveys and (without `dry_run`) applies.
pub fn gc(
    config: &Config,
    volume: &str,
    keep: Option<usize>,
    dry_run: bool,
    wait: bool,
) -> Result<GcReport> {
    let (dir, _) = super::released_volume(config, volume)?;
    let vol = super::lock(&dir, Need::Existing, wait, "gc")?;
    let now = unix(SystemTime::now());
    let mut plan = GcPlan::new(
        &vol.release_ids()?,
        vol.current()?,
        &vol.history()?,
        now,
        keep.unwrap_or(config.release.retain),
        config.release.grace.as_secs(),
    );
    plan.keep_tagged(&vol.tags()?, now);
    if vol.s3.is_some() {
        // No lock keeps other hosts' writers out: a release they made but
        // have not published yet is not debris until the grace period
        // has passed since it was made.
        for (id, fate) in &mut plan.releases {
            if *fate == (Fate::Remove { published: false }) {
                let age = now.saturating_sub(vol.meta(*id)?.created_unix);
                if age < plan.grace {
                    *fate = Fate::Young { age };
                }
            }
        }
    }
    // Exclusive on a shared store: no writer of any volume is between its
    // first look at the store and its pointer's move while gc decides.
    let _store = vol.store_lock(true)?;
    if !dry_run {
        vol.finish_migration()?;
    }
    let sweep = match vol.s3 {
        Some(_) => survey_store(&vol, &plan, config.release.grace)?,
        None => Sweep::survey(&vol, &plan)?,
    };
    if !dry_run {
        apply(&vol, &plan, &sweep)?;
    }
    let mut report = GcReport::new(plan, &sweep, dry_run);
    if let Some(s3) = &vol.s3 {
        // Uploads younger than the grace period may be another writer's,
        // still going. What was removed above stays removed, so a store
        // that will not list uploads (a policy without
        // s3:ListBucketMultipartUploads) is a warning, not a failure.
        match s3.origin.stale_uploads(config.release.grace) {
            Ok(stale) => {
                if !dry_run {
                    for (key, id) in &stale {
                        s3.origin.abort_upload(key, id)?;
                    }
                }
                report.aborted_uploads = Some(stale.len() as u64);
            }
            Err(e) => tracing::warn!("abandoned uploads not cleaned: {e:#}"),
        }
    }
    Ok(report)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    match fs::read_dir(dir) {
        Ok(rd) => {
            for ent in rd {
                v.push(ent?.path());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    }
    v.sort();
    Ok(v)
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Action;

    fn h(to: u64, time_unix: u64) -> HistoryEntry {
        HistoryEntry {
            time_unix,
            time: String::new(),
            action: Action::Release,
            from: None,
            to,
            user: String::new(),
            host: String::new(),
            reason: None,
        }
    }

    #[test]
    fn keeps_the_most_recently_current_not_the_highest_ids() {
        // Released 1..=5 at t=10..50, then back to #1 at t=60.
        let history: Vec<_> = (1..=5).map(|i| h(i, i * 10)).chain([h(1, 60)]).collect();
        let plan = GcPlan::new(&[1, 2, 3, 4, 5], Some(1), &history, 1000, 3, 0);
        assert_eq!(
            plan.releases,
            vec![
                (1, Fate::Current),
                (2, Fate::Remove { published: true }),
                (3, Fate::Remove { published: true }),
                (4, Fate::Recent { rank: 2 }),
                (5, Fate::Recent { rank: 1 }),
            ]
        );
        assert_eq!(plan.kept(), vec![1, 4, 5]);
        assert_eq!(plan.removed(), vec![2, 3]);
    }

    #[test]
    fn grace_keeps_what_was_current_lately_and_keep_has_a_floor() {
        let history: Vec<_> = (1..=6).map(|i| h(i, i * 100)).collect();
        // #3 stopped being current at t=400, 300 s before now; #2 at
        // t=300, 400 s before: out of a 400 s grace period.
        let plan = GcPlan::new(&[1, 2, 3, 4, 5, 6, 7], Some(6), &history, 700, 1, 400);
        assert_eq!(plan.keep, MIN_KEEP);
        assert_eq!(
            plan.releases,
            vec![
                (1, Fate::Remove { published: true }),
                (2, Fate::Remove { published: true }),
                (3, Fate::Grace { ago: 300 }),
                (4, Fate::Recent { rank: 2 }),
                (5, Fate::Recent { rank: 1 }),
                (6, Fate::Current),
                // Never named by the pointer: an interrupted run's.
                (7, Fate::Remove { published: false }),
            ]
        );
        let text = plan.render();
        assert!(
            text.contains("#3      keep: current 5m ago, within the grace period (6m)"),
            "{text}"
        );
        assert!(text.contains("#7      remove: never published"), "{text}");
        assert!(
            text.contains("#4      keep: among the 3 most recently current (2 back)"),
            "{text}"
        );
        assert!(
            text.contains("#1      remove: not among the 3 most recently current, out of the grace period (6m)"),
            "{text}"
        );
    }

    #[test]
    fn tags_keep_what_they_name_and_what_they_left_lately() {
        use crate::volume::tags::{Tag, TagMove};
        let history: Vec<_> = (1..=6).map(|i| h(i, i * 100)).collect();
        let mut plan = GcPlan::new(&[1, 2, 3, 4, 5, 6], Some(6), &history, 10_000, 3, 400);
        let moved = |time_unix, from, to| TagMove {
            time_unix,
            time: String::new(),
            action: crate::volume::tags::TagAction::Tag,
            from,
            to,
            user: String::new(),
            host: String::new(),
        };
        // `ci` names #1; `passed` moved off #2 300 s ago, and off #3 long ago.
        let mut ci = Tag::new("ci");
        ci.release = Some(1);
        ci.moves = vec![moved(100, None, Some(1))];
        let mut passed = Tag::new("passed");
        passed.release = Some(4);
        passed.moves = vec![
            moved(200, None, Some(3)),
            moved(300, Some(3), Some(2)),
            moved(9_700, Some(2), Some(4)),
        ];
        plan.keep_tagged(&[ci, passed], 10_000);
        assert_eq!(
            plan.releases,
            vec![
                (1, Fate::Tagged),
                (2, Fate::TagMoved { ago: 300 }),
                (3, Fate::Remove { published: true }),
                (4, Fate::Tagged),
                (5, Fate::Recent { rank: 1 }),
                (6, Fate::Current),
            ]
        );
        let text = plan.render();
        assert!(text.contains("#1      keep: tagged ci"), "{text}");
        assert!(text.contains("#4      keep: tagged passed"), "{text}");
        assert!(
            text.contains("#2      keep: a tag moved onto or off it 5m ago"),
            "{text}"
        );
    }
}

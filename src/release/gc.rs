//! `unimirror-update gc`: remove old releases, the objects only they used,
//! and the debris of interrupted runs, never anything a daemon may still
//! serve.
//!
//! Kept, always: the current release; the releases most recently current
//! before it, up to `keep` in all and never fewer than [`MIN_KEEP`] (the
//! daemon answers from the two previous releases during the grace period);
//! and every release that was current within the grace period.

use std::collections::HashMap;
use std::fs;
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::config::Config;
use crate::progress::bytes;
use crate::volume::manifest::{Kind, Sha256Digest};
use crate::volume::{VolumeDir, unix};

/// The current release and the two before it.
pub const MIN_KEEP: usize = 3;

#[derive(Debug, Default)]
pub struct GcReport {
    pub kept: Vec<u64>,
    pub removed_releases: Vec<u64>,
    pub removed_objects: u64,
    pub removed_bytes: u64,
    pub removed_temporaries: u64,
    pub dry_run: bool,
}

impl GcReport {
    pub fn summary(&self, volume: &str) -> String {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        format!(
            "gc {volume}: kept releases {}; {verb} releases {}, {} objects ({}), {} temporary files",
            ids(&self.kept),
            ids(&self.removed_releases),
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

pub fn gc(
    config: &Config,
    volume: &str,
    keep: Option<usize>,
    dry_run: bool,
    wait: bool,
) -> Result<GcReport> {
    let (dir, _) = super::released_volume(config, volume)?;
    let vol = super::lock(&dir, super::Need::Existing, wait, "gc")?;
    let keep = keep.unwrap_or(config.release.retain).max(MIN_KEEP);
    let now = unix(SystemTime::now());
    let grace = config.release.grace.as_secs();

    // Rank releases by how recently they were current: the order of the
    // history (timestamps have one-second resolution), the current first.
    // Grace is judged by time: when each stopped being current.
    let current = vol.current()?;
    let history = vol.history()?;
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

    let mut report = GcReport {
        dry_run,
        ..Default::default()
    };
    let all = vol.release_ids()?;
    for &id in &all {
        let rank = by_recency.iter().position(|&(r, _)| r == id);
        let keep_it = Some(id) == current
            || rank.is_some_and(|r| r < keep)
            || last_seen
                .get(&id)
                .is_some_and(|&(_, until)| now.saturating_sub(until) < grace);
        if keep_it {
            report.kept.push(id);
        } else {
            report.removed_releases.push(id);
        }
    }

    // Objects the kept releases need.
    let mut needed: Vec<Sha256Digest> = Vec::new();
    for &id in &report.kept {
        let meta = vol.meta(id)?;
        let manifest = vol
            .manifest(&meta)
            .with_context(|| format!("reading kept release #{id}; nothing was removed"))?;
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

    if !dry_run {
        for &id in &report.removed_releases {
            // Metadata first: without it the release is no longer listed.
            remove_if_present(&vol.meta_file(id))?;
            remove_if_present(&vol.manifest_file(id))?;
        }
    }
    // Manifests whose metadata was never written (interrupted runs).
    for ent in fs::read_dir(vol.releases_dir())? {
        let path = ent?.path();
        let stray = path.extension().is_some_and(|e| e == "manifest")
            && path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|id| !all.contains(&id));
        if stray {
            report.removed_temporaries += 1;
            if !dry_run {
                remove_if_present(&path)?;
            }
        }
    }
    if !dry_run {
        crate::durable::fsync_dir(&vol.releases_dir())?;
    }

    sweep_objects(&vol, &needed, dry_run, &mut report)?;

    // Nothing else writes while we hold the lock: every temporary is debris.
    if let Ok(rd) = fs::read_dir(vol.tmp_dir()) {
        for ent in rd {
            let path = ent?.path();
            report.removed_temporaries += 1;
            if !dry_run {
                remove_if_present(&path)?;
            }
        }
    }
    Ok(report)
}

fn sweep_objects(
    vol: &VolumeDir,
    needed: &[Sha256Digest],
    dry_run: bool,
    report: &mut GcReport,
) -> Result<()> {
    let root = vol.objects_dir();
    for l1 in read_dir_sorted(&root)? {
        for l2 in read_dir_sorted(&l1)? {
            for obj in read_dir_sorted(&l2)? {
                let name = obj.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let keep =
                    Sha256Digest::from_hex(name).is_some_and(|d| needed.binary_search(&d).is_ok());
                if keep {
                    continue;
                }
                let size = fs::symlink_metadata(&obj).map(|m| m.len()).unwrap_or(0);
                report.removed_objects += 1;
                report.removed_bytes += size;
                if !dry_run {
                    remove_if_present(&obj)?;
                }
            }
        }
    }
    Ok(())
}

fn read_dir_sorted(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
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

fn remove_if_present(path: &std::path::Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

//! `unimirror-update rollback`: make an earlier release current again.

use anyhow::{Context, Result, bail};

use super::Need;
use crate::config::Config;
use crate::volume::{Action, VolumeDir};

/// Points the volume at release `to` (default: the newest published release
/// older than the current one) after checking that its manifest and every
/// object it names are present. Returns (from, to).
pub fn rollback(config: &Config, volume: &str, to: Option<u64>, wait: bool) -> Result<(u64, u64)> {
    let (dir, _) = super::released_volume(config, volume)?;
    let vol = super::lock(&dir, Need::Existing, wait, "rollback")?;
    let Some(current) = vol.current()? else {
        bail!("volume `{volume}` has no current release");
    };
    let published = super::published(&vol)?;
    let retained: Vec<u64> = vol
        .release_ids()?
        .into_iter()
        .filter(|id| published.contains(id))
        .collect();
    let target = match to {
        Some(t) if t == current => bail!("release #{t} is already current"),
        Some(t) if !retained.contains(&t) => bail!(
            "release #{t} of `{volume}` is not a retained published release (retained: {})",
            list(&retained)
        ),
        Some(t) => t,
        None => match retained.iter().rev().find(|&&id| id < current) {
            Some(&t) => t,
            None => bail!("no retained release older than the current #{current} to roll back to"),
        },
    };
    check_complete(&vol, target)
        .with_context(|| format!("release #{target} cannot be made current"))?;
    vol.move_pointer(Action::Rollback, Some(current), target, None)?;
    Ok((current, target))
}

/// A release is complete when its manifest verifies and every object it
/// names exists.
fn check_complete(vol: &VolumeDir, id: u64) -> Result<()> {
    let meta = vol.meta(id)?;
    let manifest = vol.manifest(&meta)?;
    super::check_objects(&manifest, |d| vol.has_object_anywhere(d))
}

fn list(ids: &[u64]) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    ids.iter()
        .map(|i| format!("#{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

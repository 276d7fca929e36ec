//! `unimirror-update tag` and `untag`: promotion. A tag names a published
//! release; build nodes fetch `/<prefix>/@<tag>/...`, and a mistaken
//! promotion is undone in one step (`tag <volume> <name> --undo`).

use anyhow::{Result, bail};

use super::Need;
use crate::config::Config;
use crate::volume::tags::{self, Tag, TagAction};

/// Which release to tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Current,
    Release(u64),
    /// Back to where the tag pointed before its last move.
    Undo,
}

impl Target {
    /// `current`, `42` or `#42`.
    pub fn parse(s: &str) -> Result<Target> {
        if s == "current" {
            return Ok(Target::Current);
        }
        match s.trim_start_matches('#').parse() {
            Ok(id) => Ok(Target::Release(id)),
            Err(_) => bail!("{s:?} is not a release id or `current`"),
        }
    }
}

/// What a tag command did: the tag as it was and as it is now.
#[derive(Debug)]
pub struct Moved {
    pub from: Option<u64>,
    pub to: Option<u64>,
}

impl Moved {
    pub fn summary(&self, volume: &str, name: &str) -> String {
        let show = |id: Option<u64>| id.map_or("nothing".into(), |i| format!("#{i}"));
        match (self.from, self.to) {
            (from, to) if from == to => format!("tag {volume}@{name} already names {}", show(to)),
            (from, to) => format!(
                "moved tag {volume}@{name} from {} to {}",
                show(from),
                show(to)
            ),
        }
    }
}

/// Points tag `name` of `volume` at `target` (`None`: removes it).
pub fn tag(
    config: &Config,
    volume: &str,
    name: &str,
    target: Option<Target>,
    wait: bool,
) -> Result<Moved> {
    tags::check_name(name)?;
    let (dir, _) = super::released_volume(config, volume)?;
    let vol = super::lock(&dir, Need::Existing, wait, "tag")?;
    let before = vol.tag(name)?.unwrap_or_else(|| Tag::new(name));
    let (action, to) = match target {
        None => {
            if before.release.is_none() {
                bail!("volume `{volume}` has no tag `{name}`");
            }
            (TagAction::Untag, None)
        }
        Some(Target::Undo) => (TagAction::Undo, before.undo_target()?),
        Some(Target::Current) => match vol.current()? {
            Some(id) => (TagAction::Tag, Some(id)),
            None => bail!("volume `{volume}` has no current release"),
        },
        Some(Target::Release(id)) => (TagAction::Tag, Some(id)),
    };
    if let Some(id) = to {
        // Only a release that was served, and is still whole, may be
        // promoted: gc removes unpublished ones, and keeps tagged ones.
        let published = super::published(&vol)?;
        if !published.contains(&id) || !vol.release_ids()?.contains(&id) {
            bail!("release #{id} of `{volume}` is not a retained published release");
        }
    }
    let moved = Moved {
        from: before.release,
        to,
    };
    if before.release == to && action == TagAction::Tag {
        return Ok(moved);
    }
    let next = before.moved(action, to);
    vol.write_tag(&before, &next)?;
    Ok(moved)
}

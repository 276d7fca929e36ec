//! Tags: names that operators move between a volume's releases
//! (`current-passed-ci`), which build nodes use instead of numbers
//! (`/<prefix>/@<tag>/...`).
//!
//! A tag is one small file, `<volume>/tags/<name>`, holding the release it
//! names now and every move it made, with who and when. Keeping the moves
//! inside the tag means the pointer and its history change in one atomic
//! write (a rename under the volume's lock; on S3 one conditional PUT), so
//! a tag never has an unrecorded move, and `--undo` reads the tag's own
//! history without looking at anything else.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// The format of a tag file (independent of the volume's: readers that
/// predate tags never look in `tags/`).
pub const FORMAT: u32 = 1;
/// Longest tag name: it is a path segment and a file name.
const MAX_NAME: usize = 64;

/// What moved a tag.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TagAction {
    /// `tag`: pointed at a release.
    Tag,
    /// `untag`: removed (the file stays, naming no release, so that the
    /// removal can be undone and its history kept).
    Untag,
    /// `tag --undo`: moved back to where the last move not yet undone took
    /// it from.
    Undo,
}

/// One move of a tag.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TagMove {
    pub time_unix: u64,
    pub time: String,
    pub action: TagAction,
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub user: String,
    pub host: String,
}

/// `<volume>/tags/<name>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tag {
    pub format: u32,
    pub name: String,
    /// The release it names, or none after `untag`.
    pub release: Option<u64>,
    /// Every move, oldest first.
    pub moves: Vec<TagMove>,
}

impl Tag {
    /// A tag that was never set.
    pub fn new(name: &str) -> Tag {
        Tag {
            format: FORMAT,
            name: name.to_string(),
            release: None,
            moves: Vec::new(),
        }
    }

    /// Parses a tag file found as `name`; one that names another tag or an
    /// unknown format is refused rather than guessed at.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Tag> {
        let tag: Tag = serde_json::from_slice(bytes)?;
        if tag.format != FORMAT {
            bail!(
                "tag format {} unknown (this unimirror reads {FORMAT})",
                tag.format
            );
        }
        if tag.name != name {
            bail!("the file of tag `{name}` says it is `{}`", tag.name);
        }
        Ok(tag)
    }

    /// The same tag moved to `to` by `action`, recorded as made now by
    /// this process.
    pub fn moved(&self, action: TagAction, to: Option<u64>) -> Tag {
        let mut next = self.clone();
        let (time_unix, time) = super::now();
        next.moves.push(TagMove {
            time_unix,
            time,
            action,
            from: self.release,
            to,
            user: super::whoami(),
            host: super::hostname(),
        });
        next.release = to;
        next
    }

    /// Where `--undo` takes the tag: back to where the newest move not yet
    /// undone took it from. Undos undo in turn, so repeated `--undo` walks
    /// back through the tag's history, as an editor's undo does.
    pub fn undo_target(&self) -> Result<Option<u64>> {
        let mut done: Vec<&TagMove> = Vec::new();
        for m in &self.moves {
            match m.action {
                TagAction::Tag | TagAction::Untag => done.push(m),
                TagAction::Undo => {
                    done.pop();
                }
            }
        }
        match done.last() {
            Some(m) => Ok(m.from),
            None => bail!("tag `{}` has no move left to undo", self.name),
        }
    }

    /// When the tag last moved onto or away from release `id`, if ever.
    pub fn last_touched(&self, id: u64) -> Option<u64> {
        self.moves
            .iter()
            .rev()
            .find(|m| m.from == Some(id) || m.to == Some(id))
            .map(|m| m.time_unix)
    }
}

/// Checks a tag name: it becomes a path segment after `@` and a file name,
/// so letters, digits, `-`, `_` and `.` only, not starting with `.` or `-`,
/// and never all digits (`@42` is release 42, never a tag).
pub fn check_name(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME {
        "it is longer than 64 characters"
    } else if name.bytes().all(|b| b.is_ascii_digit()) {
        "it is all digits, which would read as a release id"
    } else if name.starts_with(['.', '-']) {
        "it starts with `.` or `-`"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        "only letters, digits, `-`, `_` and `.` are allowed (no `@`, `/` or spaces)"
    } else {
        return Ok(());
    };
    bail!("bad tag name {name:?}: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(tag: &Tag, action: TagAction, to: Option<u64>) -> Tag {
        tag.moved(action, to)
    }

    #[test]
    fn names() {
        for good in ["current-passed-ci", "v1.2", "a", "promoted_2026", "9a"] {
            check_name(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "",
            "42",
            "a/b",
            "@x",
            "a@b",
            ".hidden",
            "-x",
            "a b",
            "ü",
            "..",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(format!("{}", check_name("12").unwrap_err()).contains("all digits"));
    }

    #[test]
    fn undo_walks_back_through_moves() {
        let t = Tag::new("ci");
        assert!(t.undo_target().is_err());
        let t = set(&t, TagAction::Tag, Some(1));
        let t = set(&t, TagAction::Tag, Some(2));
        let t = set(&t, TagAction::Tag, Some(3));
        assert_eq!(t.undo_target().unwrap(), Some(2));
        let t = set(&t, TagAction::Undo, Some(2));
        assert_eq!(t.undo_target().unwrap(), Some(1));
        let t = set(&t, TagAction::Undo, Some(1));
        assert_eq!(t.undo_target().unwrap(), None);
        let t = set(&t, TagAction::Undo, None);
        assert!(t.undo_target().is_err());
        // A new move after undos is undone first.
        let t = set(&t, TagAction::Tag, Some(5));
        assert_eq!(t.undo_target().unwrap(), None);
    }

    #[test]
    fn untag_is_undone_like_a_move() {
        let t = set(&Tag::new("ci"), TagAction::Tag, Some(4));
        let t = set(&t, TagAction::Untag, None);
        assert_eq!(t.release, None);
        assert_eq!(t.undo_target().unwrap(), Some(4));
        assert_eq!(t.last_touched(4), Some(t.moves[1].time_unix));
        assert_eq!(t.last_touched(9), None);
    }

    #[test]
    fn a_file_under_another_name_or_format_is_refused() {
        let t = set(&Tag::new("ci"), TagAction::Tag, Some(4));
        let bytes = serde_json::to_vec(&t).unwrap();
        assert_eq!(Tag::parse("ci", &bytes).unwrap(), t);
        assert!(Tag::parse("other", &bytes).is_err());
        let mut v = t.clone();
        v.format = 9;
        assert!(Tag::parse("ci", &serde_json::to_vec(&v).unwrap()).is_err());
    }
}

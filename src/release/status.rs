//! `unimirror-update status`: what each volume serves now, and what it keeps.

use std::time::SystemTime;

use anyhow::Result;
use serde::Serialize;

use crate::config::{Config, VolumeSource};
use crate::progress::bytes;
use crate::volume::unix;

#[derive(Debug, Serialize)]
pub struct VolumeStatus {
    pub volume: String,
    pub prefix: String,
    /// `released` or `tree`.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree: Option<String>,
    pub current: Option<ReleaseStatus>,
    pub releases: Vec<ReleaseStatus>,
    /// Tags naming a release (untagged ones are left out).
    pub tags: Vec<TagStatus>,
    /// What `sync` fetches it from: `<type> <url or directory>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The last sync's record (`last-sync.json` on the origin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<crate::volume::LastSync>,
}

#[derive(Debug, Serialize, Clone)]
pub struct TagStatus {
    pub name: String,
    pub release: u64,
    /// When it last moved, and by whom.
    pub moved: String,
    pub moved_by: String,
    pub moves: usize,
}

#[derive(Debug, Serialize, Clone)]
pub struct ReleaseStatus {
    pub id: u64,
    pub created: String,
    pub age_seconds: u64,
    pub files: u64,
    pub bytes: u64,
    pub current: bool,
    /// Whether the pointer ever named it (a release left by an interrupted
    /// run never was, and `gc` removes it).
    pub published: bool,
    /// The tags naming it.
    pub tags: Vec<String>,
}

/// Status of one volume, or of all when `volume` is `None`.
pub fn status(config: &Config, volume: Option<&str>) -> Result<Vec<VolumeStatus>> {
    let names: Vec<&str> = match volume {
        Some(v) => vec![config.volume(v)?.name.as_str()],
        None => config.volumes.keys().map(String::as_str).collect(),
    };
    let now = unix(SystemTime::now());
    let origin = super::origin(config)?;
    let mut out = Vec::new();
    for name in names {
        let vc = &config.volumes[name];
        let mut st = VolumeStatus {
            volume: name.to_string(),
            prefix: vc.prefix.clone(),
            source: "released".into(),
            tree: None,
            current: None,
            releases: Vec::new(),
            tags: Vec::new(),
            upstream: vc.upstream.as_ref().map(|u| u.to_string()),
            last_sync: None,
        };
        if let VolumeSource::Tree(p) = &vc.source {
            st.source = "tree".into();
            st.tree = Some(p.display().to_string());
            out.push(st);
            continue;
        }
        let vol = origin.volume(name);
        if vol.exists()? {
            vol.check_format()?;
            let current = vol.current()?;
            let published = super::published(&vol)?;
            st.last_sync = vol.last_sync()?;
            for t in vol.tags()? {
                let (Some(release), Some(last)) = (t.release, t.moves.last()) else {
                    continue;
                };
                st.tags.push(TagStatus {
                    name: t.name.clone(),
                    release,
                    moved: last.time.clone(),
                    moved_by: format!("{}@{}", last.user, last.host),
                    moves: t.moves.len(),
                });
            }
            for id in vol.release_ids()? {
                let meta = vol.meta(id)?;
                let r = ReleaseStatus {
                    id,
                    created: meta.created.clone(),
                    age_seconds: now.saturating_sub(meta.created_unix),
                    files: meta.files,
                    bytes: meta.bytes,
                    current: Some(id) == current,
                    published: published.contains(&id),
                    tags: st
                        .tags
                        .iter()
                        .filter(|t| t.release == id)
                        .map(|t| t.name.clone())
                        .collect(),
                };
                if r.current {
                    st.current = Some(r.clone());
                }
                st.releases.push(r);
            }
        }
        out.push(st);
    }
    Ok(out)
}

/// The human-readable form.
pub fn render(statuses: &[VolumeStatus]) -> String {
    let mut s = String::new();
    for v in statuses {
        match (&v.tree, &v.current) {
            (Some(tree), _) => {
                s += &format!("{} ({}): plain tree {tree}\n", v.volume, v.prefix);
                continue;
            }
            (None, None) => s += &format!("{} ({}): never released\n", v.volume, v.prefix),
            (None, Some(c)) => {
                s += &format!(
                    "{} ({}): release #{} from {} ({} ago), {} files, {}\n",
                    v.volume,
                    v.prefix,
                    c.id,
                    c.created,
                    age(c.age_seconds),
                    c.files,
                    bytes(c.bytes)
                )
            }
        }
        for r in &v.releases {
            let mut mark = if r.current {
                " (current)"
            } else if !r.published {
                " (never published; gc removes it)"
            } else {
                ""
            }
            .to_string();
            for t in &r.tags {
                mark += &format!(" @{t}");
            }
            s += &format!(
                "  #{:<6} {}  {:>9} files  {:>10}{mark}\n",
                r.id,
                r.created,
                r.files,
                bytes(r.bytes)
            );
        }
        if let Some(u) = &v.upstream {
            s += &format!("  upstream: {u}\n");
        }
        if let Some(l) = &v.last_sync {
            s += &format!(
                "  last sync: {} at {} ({} ago), {:.1} s, {} files fetched{}\n",
                l.outcome,
                l.time,
                age(unix(SystemTime::now()).saturating_sub(l.time_unix)),
                l.duration_seconds,
                l.fetched_files,
                l.error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
        for t in &v.tags {
            s += &format!(
                "  @{} -> #{}, moved {} by {} ({} moves)\n",
                t.name, t.release, t.moved, t.moved_by, t.moves
            );
        }
    }
    s
}

/// A compact age: `45s`, `12m`, `3h 5m`, `2d 4h`.
pub fn age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ages() {
        assert_eq!(super::age(5), "5s");
        assert_eq!(super::age(125), "2m");
        assert_eq!(super::age(3 * 3600 + 300), "3h 5m");
        assert_eq!(super::age(2 * 86400 + 4 * 3600), "2d 4h");
    }
}

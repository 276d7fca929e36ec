//! `unimirror-update materialize <volume> [--paths FILE]`: copies remote
//! entries of the current release (an on-demand release's artifacts) into
//! the volume's object store, and releases the same tree with them as
//! ordinary files. An operator pins this way what a fleet uses onto the
//! shared volume, so the daemons stop depending on the upstream for it.
//!
//! Each file is fetched from the URL its entry records, under the sync's
//! rules (retries, redirects, plain HTTP only where allowed), and checked
//! against the entry's size and sha256 before it becomes an object. The
//! next sync keeps it: a remote entry whose object the store has is
//! released as an ordinary file (see `remote_entries`).
//!
//! `--paths` takes one path per line, as the volume serves it (`pool/…`)
//! or as a client asked for it (`/ubuntu/pool/…`, the volume's prefix
//! taken off; a query is ignored), for example the paths of the access
//! log's upstream fills. Blank lines and `#` comments are skipped. Without
//! it, every remote entry is materialized.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use reqwest::Url;

use super::{Draft, Need, ObjectStore, Outcome};
use crate::config::Config;
use crate::sync::fetch::{Fetcher, Want};
use crate::volume::manifest::{Entry, Kind, key_for_path, path_for_key};

/// What a materialize run did.
#[derive(Debug)]
pub struct Report {
    /// Remote entries copied into the store.
    pub materialized: u64,
    pub bytes: u64,
    /// Paths of `--paths` that are not remote entries of the release (not
    /// there, or ordinary files already).
    pub not_remote: Vec<String>,
    pub release: Outcome,
}

impl Report {
    pub fn summary(&self, volume: &str) -> String {
        let mut s = format!(
            "materialized {} remote files of {volume} ({})",
            self.materialized,
            crate::progress::bytes(self.bytes)
        );
        if let Some(first) = self.not_remote.first() {
            s += &format!(
                "; {} listed paths are not remote entries (the first: {first})",
                self.not_remote.len()
            );
        }
        s + "\n" + &self.release.summary(volume)
    }
}

pub fn materialize(
    config: &Config,
    volume: &str,
    paths: Option<&Path>,
    wait: bool,
) -> Result<Report> {
    let (dir, vc) = super::released_volume(config, volume)?;
    let wanted = match paths {
        Some(file) => Some(read_paths(file, &vc.prefix)?),
        None => None,
    };
    let signer = super::signer(config)?;
    let vol = super::lock(&dir, Need::Existing, wait, "materialize")?.signed_by(signer);
    let mut draft = Draft::begin(&vol, "materialize")?;
    let Some(current) = draft.previous.clone() else {
        bail!("volume `{volume}` has no current release");
    };

    // The remote entries to copy, by key.
    let mut chosen: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
    let mut not_remote = Vec::new();
    match &wanted {
        Some(paths) => {
            for p in paths {
                match key_for_path(p.as_bytes()) {
                    Some(k) => match current.get_key(&k)? {
                        Some(e) if e.kind == Kind::Remote => {
                            chosen.insert(k, e);
                        }
                        _ => not_remote.push(p.clone()),
                    },
                    None => not_remote.push(p.clone()),
                }
            }
        }
        None => {
            let mut stream = current.stream();
            while let Some(item) = stream.next_entry() {
                let (k, e) = item?;
                if e.kind == Kind::Remote {
                    chosen.insert(k, e);
                }
            }
        }
    }

    // Fetched into the volume's tmp/ (the origin's filesystem), each
    // checked against its entry, then taken into the store.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let tmp = vol.tmp_dir();
    let fetcher = Arc::new(Fetcher::new(&config.sync, &tmp, false)?);
    let fetched = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for (k, e) in &chosen {
            let url = Url::parse(e.remote_url().unwrap_or_default()).with_context(|| {
                format!(
                    "the remote entry {} has no valid URL",
                    super::show(&path_for_key(k))
                )
            })?;
            let dest = tmp.join(crate::durable::temp_name("materialize"));
            let (f, k, want) = (
                fetcher.clone(),
                k.clone(),
                Want {
                    sha256: e.sha256,
                    size: Some(e.size),
                },
            );
            tasks.spawn(async move {
                let fetched = f.file(&url, &dest, want).await;
                if fetched.is_err() {
                    let _ = std::fs::remove_file(&dest);
                }
                fetched.map(|_| (k, dest))
            });
        }
        crate::sync::all_done(tasks, "fetching remote files").await
    });
    let fetched = match fetched {
        Ok(f) => f,
        Err(e) => {
            return Err(e.context(format!(
                "nothing was materialized; the current release of `{volume}` is unchanged"
            )));
        }
    };

    let mut store = ObjectStore::new(vol.dir());
    let mut bytes = 0;
    let mut done = HashSet::new();
    let mut adopted = Ok(());
    for (k, dest) in fetched {
        let e = &chosen[&k];
        if adopted.is_err() {
            let _ = std::fs::remove_file(dest);
            continue;
        }
        adopted = store.adopt(dest, e.sha256, e.size, &mut draft.progress);
        if adopted.is_ok() {
            bytes += e.size;
            done.insert(k);
        }
    }
    let still_remote = current.counts().remote > done.len() as u64;
    let mut writer = draft.writer(still_remote)?;
    let built = adopted.and_then(|()| {
        let mut stream = current.stream();
        while let Some(item) = stream.next_entry() {
            let (k, mut e) = item?;
            if done.contains(&k) {
                e.kind = Kind::File;
                e.target.clear();
            }
            writer.push(&k, &e)?;
        }
        Ok(!done.is_empty())
    });
    let source = format!(
        "materialized from release #{}",
        draft.parent().context("no current release")?
    );
    let release = draft.finish(writer, store, built, &source)?;
    Ok(Report {
        materialized: done.len() as u64,
        bytes,
        not_remote,
        release,
    })
}

/// The release paths a `--paths` file names.
fn read_paths(file: &Path, volume_prefix: &str) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the paths file {}", file.display()))?;
    let prefix = format!("{volume_prefix}/");
    let mut paths = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.split('?').next().unwrap_or(line);
        let path = line
            .strip_prefix(&prefix)
            .or_else(|| line.strip_prefix('/'))
            .unwrap_or(line);
        paths.push(path.to_string());
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_taken_as_served_or_as_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("paths");
        std::fs::write(
            &file,
            "# the fleet's week\n/ubuntu/pool/a.deb\npool/b.deb\n\n  /ubuntu/pool/c.deb?x=1  \n/pool/d.deb\n",
        )
        .unwrap();
        assert_eq!(
            read_paths(&file, "/ubuntu").unwrap(),
            ["pool/a.deb", "pool/b.deb", "pool/c.deb", "pool/d.deb"]
        );
    }
}

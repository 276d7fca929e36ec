//! `unimirror-update release <volume> --from-release <source>@<id|tag>`:
//! a release of one volume made of another volume's release, without
//! copying a byte of content. Both volumes' objects are in the origin's
//! shared store (format 2; every volume on S3), so the new release is the
//! source's manifest (hard-linked on a filesystem) under new metadata.
//! A staging environment sees production's content this way, and a
//! refresh is the same command with a newer source.

use anyhow::{Context, Result, bail};

use super::{Draft, Need, Outcome};
use crate::config::Config;
use crate::durable;
use crate::fault;
use crate::volume::{Action, Layout, ReleaseMeta, VolumeDir};

/// Which release of which volume: `prod@42`, `prod@passed-ci`,
/// `prod@current`.
pub fn parse(spec: &str) -> Result<(&str, &str)> {
    match spec.split_once('@') {
        Some((volume, which)) if !volume.is_empty() && !which.is_empty() => Ok((volume, which)),
        _ => bail!("--from-release {spec:?}: expected <volume>@<id|tag|current>"),
    }
}

/// The published release `which` (an id, a tag or `current`) of `src`.
fn resolve(src: &VolumeDir, which: &str) -> Result<u64> {
    let id = match which.trim_start_matches('#').parse::<u64>() {
        Ok(id) => id,
        Err(_) if which == "current" => match src.current()? {
            Some(id) => id,
            None => bail!("volume `{}` has no current release", src.name),
        },
        Err(_) => match src.tag(which)?.and_then(|t| t.release) {
            Some(id) => id,
            None => bail!("volume `{}` has no tag `{which}`", src.name),
        },
    };
    if !super::published(src)?.contains(&id) || !src.release_ids()?.contains(&id) {
        bail!(
            "release #{id} of `{}` is not a retained published release",
            src.name
        );
    }
    Ok(id)
}

pub fn release_from(config: &Config, volume: &str, spec: &str, wait: bool) -> Result<Outcome> {
    let (source, which) = parse(spec)?;
    if source == volume {
        bail!(
            "--from-release names the volume being released; use `rollback` to return to one of its releases"
        );
    }
    let (dir, _) = super::released_volume(config, volume)?;
    let (src, _) = super::released_volume(config, source)?;
    if !src.exists()? {
        bail!("volume `{source}` has never been released");
    }
    src.check_format()?;
    let signer = super::signer(config)?;
    let vol = super::lock(&dir, Need::AnyState, wait, "release")?.signed_by(signer);
    let draft = Draft::begin(&vol, "release")?;
    for v in [&src, vol.dir()] {
        if v.s3.is_none() && v.layout() != Layout::Shared {
            bail!(
                "volume `{}` keeps its objects apart (format 1); `unimirror-update migrate {}` moves them to the shared store, without copying",
                v.name,
                v.name
            );
        }
    }
    let id = resolve(&src, which)?;
    let meta = src.meta(id)?;
    let manifest = src
        .manifest(&meta)
        .with_context(|| format!("reading release #{id} of `{source}`"))?;
    if let Some(current) = draft.parent
        && vol.meta(current)?.manifest_sha256 == meta.manifest_sha256
    {
        draft.progress.finish();
        return Ok(Outcome::Unchanged {
            current,
            seconds: draft.started.elapsed().as_secs_f64(),
        });
    }
    let tmp = &draft.manifest_tmp;
    match &src.s3 {
        // The same inode: no byte of the manifest is copied either.
        None => std::fs::hard_link(src.manifest_file(id), tmp)
            .with_context(|| format!("linking {}", src.manifest_file(id).display()))?,
        // On S3 the manifest is fetched and put again (metadata, not
        // content: the objects stay where they are).
        Some(_) => {
            let (_, mut from) = src.open_manifest(id)?;
            let mut to = durable::create_new(tmp)?;
            std::io::copy(&mut from, &mut to)?;
            to.sync_all()?;
        }
    }
    vol.publish_manifest(draft.id, tmp)?;
    fault::point("manifest-renamed");
    let now = std::time::SystemTime::now();
    let new = ReleaseMeta {
        volume: volume.to_string(),
        id: draft.id,
        parent: draft.parent,
        created_unix: crate::volume::unix(now),
        created: humantime::format_rfc3339_seconds(now).to_string(),
        new_objects: 0,
        new_bytes: 0,
        source: format!("release #{id} of {source} ({spec})"),
        ..meta
    };
    let bytes = serde_json::to_vec_pretty(&new)?;
    vol.publish_release_file(&format!("{}.json", draft.id), &bytes)?;
    fault::point("meta-written");
    if let Some(key) = vol.signer() {
        vol.publish_release_file(&format!("{}.sig", draft.id), key.sign(&bytes).as_bytes())?;
    }
    // Nothing is copied, so everything must be there, checked last before
    // the pointer moves. On a filesystem the store's lock keeps every gc
    // out until then; on S3 (no lock) a gc on another host that drops the
    // source release at this very moment is caught here unless it removes
    // an object after this check (docs/operations.md).
    super::check_objects(&manifest, |d| vol.has_object(d))
        .with_context(|| format!("release #{id} of `{source}` cannot be released again"))?;
    vol.move_pointer(Action::Release, draft.parent, draft.id, None)?;
    draft.progress.finish();
    Ok(Outcome::Released {
        meta: new,
        seconds: draft.started.elapsed().as_secs_f64(),
    })
}

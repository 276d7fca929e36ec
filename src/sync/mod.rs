//! `unimirror-update sync <volume>`: fetch the volume's upstream into its
//! staging tree, verify it, pass the consistency gate, drop what the
//! upstream (or the filters) no longer name, and release exactly that.
//!
//! - `fetch`: the HTTP side (retries, concurrency, verified durable writes).
//! - `apt`: apt archives.
//! - `openpgp`: keyrings and the signatures of upstream metadata.
//! - `pypi`: PyPI-style simple indexes.
//! - `wheel`: a build job's wheels, imported into platform trees.
//! - `yum`: yum/dnf repositories.
//! - `replay`: what the current release says, so that an upstream cannot
//!   take the mirror back in time (older `Date`, lower `revision`) or hand
//!   it an expired or foreign suite.
//!
//! Staging layout: `<staging>/<volume>/` is the tree that gets released;
//! `<staging>/.tmp-<volume>/` holds downloads in progress (same filesystem,
//! outside the tree). A sync holds the volume's one writers' lock (on the
//! origin) from start to end: two syncs of one volume, or a sync and a
//! `release`, `rollback` or `gc`, never overlap, and the release the
//! signed metadata is held against (`replay`) is the one the sync's
//! release follows.

pub mod apt;
pub mod bounded;
pub mod fetch;
pub mod openpgp;
pub mod pypi;
pub mod replay;
pub mod wheel;
pub mod yum;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::config::{Config, Upstream};
use crate::digest::Sha256Digest;
use crate::release::{self, Need};
use crate::volume::{LastSync, LockedVolume};
use fetch::Fetcher;
use reqwest::Url;

/// What must be in the tree for a release: each file, with its sha256 when
/// the upstream's signed metadata gives one; and problems already found.
/// The tree released is exactly `files`: anything else is pruned first.
/// With `fetch = "on-demand"`, the artifacts are `remote` instead: each
/// released as a remote entry, not downloaded.
#[derive(Default)]
pub struct Gate {
    pub files: BTreeMap<PathBuf, Option<Sha256Digest>>,
    pub remote: BTreeMap<PathBuf, release::RemoteFile>,
    pub problems: Vec<String>,
    /// What the sync chose not to publish, and why (printed with the
    /// summary, so an operator sees it without reading logs).
    pub notes: Vec<String>,
}

impl Gate {
    /// Records something left out of the release, in the log now and in the
    /// summary at the end.
    pub fn note(&mut self, note: String) {
        tracing::warn!("{note}");
        self.notes.push(note);
    }

    /// Records an artifact left upstream, at `dest` in the tree: its size
    /// and sha256 are what the verified index says. Without them there is
    /// nothing to check the bytes against on the day they are fetched, so
    /// that is a problem (the release is refused), not a guess.
    pub fn remote(&mut self, dest: PathBuf, size: Option<u64>, sha256: Sha256Digest, url: &Url) {
        match size {
            Some(size) => {
                let url = url.to_string();
                self.remote
                    .insert(dest, release::RemoteFile { size, sha256, url });
            }
            None => self.problems.push(format!(
                "{}: the upstream's index gives no size, which an on-demand release needs",
                dest.display()
            )),
        }
    }

    /// The remote files by their path in the release.
    pub fn remote_files(&self, tree: &Path) -> Result<release::RemoteFiles> {
        let mut files = release::RemoteFiles::new();
        for (dest, r) in &self.remote {
            let rel = dest
                .strip_prefix(tree)
                .with_context(|| format!("{} is outside {}", dest.display(), tree.display()))?;
            files.insert(rel.as_os_str().as_encoded_bytes().to_vec(), r.clone());
        }
        Ok(files)
    }

    /// Every problem that forbids a release: a required file missing, or
    /// not verified with its expected sha256 during this run.
    pub fn check(&self, tree: &Path, fetcher: &Fetcher) -> Vec<String> {
        let mut problems = self.problems.clone();
        for (path, sha) in &self.files {
            let shown = path.strip_prefix(tree).unwrap_or(path).display();
            if !path.is_file() {
                problems.push(format!("{shown}: missing"));
            } else if let Some(sha) = sha
                && !fetcher.checked(path, sha)
            {
                problems.push(format!("{shown}: not verified against sha256 {sha}"));
            }
        }
        problems
    }
}

/// Waits for every download task, logging each failure, and returns their
/// results in completion order, or the first error with `what` as its
/// context. Waiting for all (instead of stopping at the first error) keeps
/// the log complete and leaves no download running past the sync.
pub async fn all_done<T: 'static>(
    mut tasks: tokio::task::JoinSet<Result<T>>,
    what: &str,
) -> Result<Vec<T>> {
    let mut done = Vec::new();
    let mut first_error = None;
    while let Some(r) = tasks.join_next().await {
        match r? {
            Ok(v) => done.push(v),
            Err(e) => {
                tracing::error!("{e:#}");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e.context(what.to_string())),
        None => Ok(done),
    }
}

/// A relative path from upstream metadata, refused if it could leave the
/// tree (absolute, `..`, empty) or, joined onto the upstream's URL, lead
/// elsewhere: a scheme (`https://other.example/x.deb`, `a:b`), a
/// backslash (`\\host\x` is `//host/x` to a URL parser), `..` spelt
/// `%2e%2e`, a query or a fragment.
pub fn safe_relative(p: &str) -> Result<PathBuf> {
    let path = Path::new(p);
    let leaves = p.is_empty()
        || !path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        || p.split('/').any(|s| {
            let lower = s.to_ascii_lowercase();
            lower.contains("%2e") && matches!(lower.replace("%2e", ".").as_str(), "." | "..")
        });
    if leaves {
        bail!("refusing the path `{p}` from upstream metadata: it leaves the tree");
    }
    // A URL parser drops tabs and line ends wherever they are, so
    // `pool/.\t./x` is a normal name here and `pool/../x` joined onto the
    // archive's URL: no control character passes.
    if p.contains(|c: char| c.is_ascii_control()) {
        bail!(
            "refusing the path {p:?} from upstream metadata: a control character, which a URL parser drops (`.\\t.` becomes `..`)"
        );
    }
    // A URL scheme is what comes before the first `:` when no `/` does.
    let scheme = p.split_once(':').is_some_and(|(s, _)| !s.contains('/'));
    if scheme || p.contains(['\\', '?', '#']) {
        bail!(
            "refusing the path `{p}` from upstream metadata: a URL or URL syntax where a relative path belongs"
        );
    }
    Ok(path.to_path_buf())
}

/// `rel` (already through [`safe_relative`]) joined onto `base`, checked
/// to stay under it: a file an index lists is fetched from the upstream
/// that signed the index, never from another host.
pub fn join_under(base: &reqwest::Url, rel: &str) -> Result<reqwest::Url> {
    let url = base.join(rel)?;
    if !url.as_str().starts_with(base.as_str()) || url.query().is_some() {
        bail!("refusing `{rel}` from upstream metadata: it resolves to {url}, outside {base}");
    }
    Ok(url)
}

#[derive(Debug, Default, Clone)]
pub struct SyncOptions {
    /// Fetch and check, but do not release.
    pub no_release: bool,
    /// Say what would be fetched; change nothing.
    pub dry_run: bool,
    /// Wait for a busy volume instead of failing.
    pub wait: bool,
    /// Wheel volumes: drop wheels the build output no longer has.
    pub prune: bool,
    /// Accept signed metadata older than the current release's (an apt
    /// `Date` or a yum `revision` that goes backwards): for a deliberate
    /// rollback upstream.
    pub allow_older: bool,
}

/// What a sync did.
#[derive(Debug, Default)]
pub struct Report {
    pub fetched_files: u64,
    pub fetched_bytes: u64,
    pub kept_files: u64,
    pub release: Option<release::Outcome>,
    pub pruned: u64,
    pub seconds: f64,
    /// What was left out of the release, and why.
    pub notes: Vec<String>,
}

impl Report {
    pub fn summary(&self, volume: &str) -> String {
        let mut s = format!(
            "synced {volume}: {} files fetched ({}), {} already present, {} pruned, in {:.1} s",
            self.fetched_files,
            crate::progress::bytes(self.fetched_bytes),
            self.kept_files,
            self.pruned,
            self.seconds
        );
        for n in &self.notes {
            s += "\nnot published: ";
            s += n;
        }
        if let Some(r) = &self.release {
            s += "\n";
            s += &r.summary(volume);
        }
        s
    }
}

/// Syncs one volume from its upstream.
pub fn sync(config: &Config, volume: &str, opts: &SyncOptions) -> Result<Report> {
    let started = Instant::now();
    let (dir, vc) = release::released_volume(config, volume)?;
    let Some(upstream) = vc.upstream.clone() else {
        bail!(
            "volume `{volume}` has no [volumes.{volume}.upstream] in {}",
            config.file.display()
        );
    };
    let tree = config.staging.join(volume);
    let tmp = config.staging.join(format!(".tmp-{volume}"));
    // A dry run changes nothing: no staging tree, no lock (it only reads).
    let vol = match opts.dry_run {
        true => None,
        false => {
            let signer = release::signer(config)?;
            std::fs::create_dir_all(&tree)
                .with_context(|| format!("creating {}", tree.display()))?;
            Some(release::lock(&dir, Need::AnyState, opts.wait, "sync")?.signed_by(signer))
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let fetcher = Arc::new(Fetcher::new(&config.sync, &tmp, opts.dry_run)?);
    // Signed metadata is compared with what is released now (not with the
    // staging tree, which a failed or refused run may have left behind).
    let released = replay::Released::new(dir.clone());
    let freshness = replay::Freshness {
        released: &released,
        allow_older: opts.allow_older,
    };
    let result = runtime.block_on(async {
        let counts = fetcher.clone();
        let _ticker = crate::progress::Ticker::start(format!("sync {volume}"), move || {
            let (line, bytes) = counts.stats.progress();
            (line, Some(bytes))
        });
        match &upstream {
            Upstream::Apt(u) => {
                apt::Apt {
                    upstream: u,
                    freshness: &freshness,
                }
                .sync(&fetcher, &tree)
                .await
            }
            Upstream::Pypi(u) => pypi::Pypi::new(u).sync(&fetcher, &tree).await,
            Upstream::Wheel(u) => wheel::Wheels {
                directory: &u.directory,
                prune: opts.prune,
            }
            .sync(&fetcher, &tree),
            Upstream::Yum(u) => {
                yum::Yum {
                    upstream: u,
                    freshness: &freshness,
                }
                .sync(&fetcher, &tree)
                .await
            }
        }
    });
    let mut report = Report {
        fetched_files: fetcher.stats.fetched_files.load(Ordering::Relaxed),
        fetched_bytes: fetcher.stats.fetched_bytes.load(Ordering::Relaxed),
        kept_files: fetcher.stats.kept_files.load(Ordering::Relaxed),
        ..Report::default()
    };
    let outcome = result.and_then(|gate| {
        if opts.dry_run {
            return Ok(());
        }
        let problems = gate.check(&tree, &fetcher);
        if !problems.is_empty() {
            for p in &problems {
                eprintln!("gate: {p}");
            }
            bail!(
                "the consistency gate found {} problem(s) in {}; nothing was released",
                problems.len(),
                tree.display()
            );
        }
        // The tree becomes exactly what the gate names before anything is
        // released: an index form the upstream stopped serving, a file the
        // new metadata no longer lists (or lists with another hash), a
        // version a filter now drops. Releasing first and pruning after
        // published all of those once more, and made the next sync, with
        // nothing changed upstream, release again. Older releases keep
        // their own copies, so nothing a client still holds goes missing.
        report.pruned = prune(&tree, &gate)?;
        let remote = gate.remote_files(&tree)?;
        report.notes = gate.notes;
        if opts.no_release {
            return Ok(());
        }
        let vol = vol.as_ref().expect("locked unless a dry run");
        // The new metadata was judged against the release current then:
        // it must still be the one this release follows. (Only on S3 can
        // it have moved: a lock on a filesystem origin was held since.)
        vol.must_follow(released.judged_against());
        report.release = Some(release::publish(vol, &tree, false, &remote)?);
        Ok(())
    });
    report.seconds = started.elapsed().as_secs_f64();
    if let Some(vol) = &vol {
        record(vol, &report, &outcome);
    }
    if let Some(dir) = &config.sync.metrics_dir
        && let Err(e) = write_metrics(dir, volume, &report, outcome.is_ok())
    {
        tracing::warn!("cannot write the metrics file: {e:#}");
    }
    outcome.map(|()| report)
}

/// Writes the volume's `last-sync.json` (a failure to is only logged: the
/// sync's own outcome stands).
fn record(vol: &LockedVolume, report: &Report, outcome: &Result<()>) {
    let name = match (outcome, &report.release) {
        (Err(_), _) => "failed",
        (Ok(()), Some(release::Outcome::Released { .. })) => "released",
        (Ok(()), Some(release::Outcome::Unchanged { .. })) => "unchanged",
        (Ok(()), None) => "fetched",
    };
    let mut r = LastSync::now(name, report.seconds);
    r.fetched_files = report.fetched_files;
    r.fetched_bytes = report.fetched_bytes;
    r.release = match &report.release {
        Some(o) => Some(o.id()),
        None => vol.current().ok().flatten(),
    };
    r.error = outcome.as_ref().err().map(|e| format!("{e:#}"));
    if let Err(e) = vol.record_sync(&r) {
        tracing::warn!(volume = %vol.name, "cannot record the sync's outcome: {e:#}");
    }
}

/// Removes files (and symlinks) of the tree that the gate does not name,
/// and the directories that leaves empty; returns how many files went.
fn prune(tree: &Path, gate: &Gate) -> Result<u64> {
    let mut removed = 0;
    prune_dir(tree, gate, &mut removed)?;
    Ok(removed)
}

/// Prunes `dir`; returns whether it is empty now.
fn prune_dir(dir: &Path, gate: &Gate, removed: &mut u64) -> Result<bool> {
    let mut empty = true;
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            if prune_dir(&p, gate, removed)? {
                // An empty directory would be released as one (and listed
                // by the daemon), although the upstream has nothing there.
                std::fs::remove_dir(&p).with_context(|| format!("pruning {}", p.display()))?;
            } else {
                empty = false;
            }
        } else if gate.files.contains_key(&p) {
            empty = false;
        } else {
            std::fs::remove_file(&p).with_context(|| format!("pruning {}", p.display()))?;
            *removed += 1;
        }
    }
    Ok(empty)
}

/// Writes `<dir>/unimirror_update_<volume>.prom` for node_exporter's
/// textfile collector, atomically. A failed run keeps the time of the last
/// success from the previous file.
fn write_metrics(dir: &Path, volume: &str, r: &Report, ok: bool) -> Result<()> {
    let file = dir.join(format!("unimirror_update_{volume}.prom"));
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let last_success = if ok {
        Some(now)
    } else {
        std::fs::read_to_string(&file).ok().and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("unimirror_update_last_success_timestamp_seconds"))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        })
    };
    let l = format!("{{volume=\"{volume}\"}}");
    let mut text = String::new();
    let mut metric = |name: &str, help: &str, value: String| {
        text += &format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name}{l} {value}\n");
    };
    metric(
        "unimirror_update_last_run_timestamp_seconds",
        "When the last sync ended.",
        now.to_string(),
    );
    if let Some(t) = last_success {
        metric(
            "unimirror_update_last_success_timestamp_seconds",
            "When the last successful sync ended.",
            t.to_string(),
        );
    }
    metric(
        "unimirror_update_success",
        "Whether the last sync succeeded.",
        u8::from(ok).to_string(),
    );
    metric(
        "unimirror_update_duration_seconds",
        "How long the last sync took.",
        format!("{:.3}", r.seconds),
    );
    metric(
        "unimirror_update_fetched_files",
        "Files the last sync downloaded.",
        r.fetched_files.to_string(),
    );
    metric(
        "unimirror_update_fetched_bytes",
        "Bytes the last sync downloaded.",
        r.fetched_bytes.to_string(),
    );
    if let Some(rel) = &r.release {
        let id = rel.id();
        metric(
            "unimirror_update_release_id",
            "The release the last sync published.",
            id.to_string(),
        );
    }
    std::fs::create_dir_all(dir)?;
    crate::durable::write_atomic(&file, dir, text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree left for the release is exactly what the gate names: other
    /// files go, and so do the directories that leaves empty (an empty one
    /// would be released and listed as a directory); the root stays.
    #[test]
    fn prune_leaves_exactly_the_gate() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("vol");
        let file = |rel: &str| {
            let p = tree.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, rel).unwrap();
            p
        };
        let mut gate = Gate::default();
        for kept in [
            "dists/stable/InRelease",
            "dists/stable/main/binary-amd64/Packages",
        ] {
            gate.files.insert(file(kept), None);
        }
        for gone in [
            "dists/stable/main/binary-amd64/Packages.gz",
            "dists/stable/main/source/Sources.gz",
            "packages/old/old-1.0.tar.gz",
        ] {
            file(gone);
        }
        assert_eq!(prune(&tree, &gate).unwrap(), 3);
        let mut left: Vec<String> = Vec::new();
        let mut stack = vec![tree.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                left.push(p.strip_prefix(&tree).unwrap().display().to_string());
                if p.is_dir() {
                    stack.push(p);
                }
            }
        }
        left.sort();
        assert_eq!(
            left,
            [
                "dists",
                "dists/stable",
                "dists/stable/InRelease",
                "dists/stable/main",
                "dists/stable/main/binary-amd64",
                "dists/stable/main/binary-amd64/Packages",
            ]
        );
        // An empty gate empties the tree but keeps its root.
        assert_eq!(prune(&tree, &Gate::default()).unwrap(), 2);
        assert!(tree.is_dir());
        assert_eq!(std::fs::read_dir(&tree).unwrap().count(), 0);
    }

    #[test]
    fn upstream_paths_that_are_urls_are_refused() {
        for ok in [
            "pool/main/a/a_1.0_all.deb",
            "./a.deb",
            "Packages/a-1:2.rpm",
            "a%2eb/c",
        ] {
            assert!(safe_relative(ok).is_ok(), "{ok}");
        }
        for url in [
            "https://other.example/x.deb",
            "http:x.deb",
            "a:b.deb",
            "\\\\other.example\\x.deb",
            "pool/a.deb?x=1",
            "pool/a.deb#frag",
        ] {
            let e = safe_relative(url).unwrap_err().to_string();
            assert!(e.contains(url) && e.contains("a URL"), "{url}: {e}");
        }
        for climbing in [
            "",
            "/etc/passwd",
            "../x",
            "pool/%2e%2e/%2E%2e/x",
            "pool/%2e/x",
        ] {
            let e = safe_relative(climbing).unwrap_err().to_string();
            assert!(e.contains("leaves the tree"), "{climbing}: {e}");
        }
        let base = reqwest::Url::parse("http://127.0.0.1:8000/debian/").unwrap();
        assert_eq!(
            join_under(&base, "pool/a.deb").unwrap().as_str(),
            "http://127.0.0.1:8000/debian/pool/a.deb"
        );
        // What safe_relative lets through cannot leave the base either;
        // join_under is the second line.
        assert!(join_under(&base, "//other.example/x").is_err());
        assert!(join_under(&base, "https://other.example/x").is_err());
    }

    /// Found by the apt fuzz target (a hand-made input; the target checks
    /// every pool path joined onto an archive URL stays under it): a URL
    /// parser drops tabs, so `pool/.\t./.\t./x.deb` climbed out of the
    /// archive's path once joined (`join_under` refused it, later).
    #[test]
    fn control_characters_in_upstream_paths_are_refused() {
        let found = include_bytes!("../../tests/fixtures/fuzz/apt-tab-dot-dot");
        let e = apt::pool_files("main/binary-amd64/Packages", found).unwrap_err();
        assert!(format!("{e:#}").contains("control character"), "{e:#}");
        for bad in [
            "pool/.\t./x",
            "pool/.\n./x",
            "pool/a\r.deb",
            "pool/a\u{7f}.deb",
        ] {
            let e = safe_relative(bad).unwrap_err().to_string();
            assert!(e.contains("control character"), "{bad:?}: {e}");
        }
        assert!(safe_relative("pool/a b.deb").is_ok());
    }
}

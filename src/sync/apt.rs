//! Syncing an apt archive, byte for byte, so clients verify it against the
//! upstream's own keys.
//!
//! Per suite: `InRelease` (or `Release` + `Release.gpg`) is fetched and its
//! signature verified against the configured keyring, then held against the
//! current release (see `replay`: suite, `Valid-Until`, `Date`). Beside an
//! `InRelease`, `Release` and `Release.gpg` are published only when they
//! verify and say what `InRelease` signed. `Release`'s SHA256
//! list then names every index; those of the selected components and
//! architectures are fetched in every compression the upstream has, checked,
//! and also placed under `by-hash/SHA256/<digest>` when the suite says
//! `Acquire-By-Hash: yes` (apt then asks only for those paths). Every pool
//! file the `Packages` indexes name is fetched and checked against their
//! SHA256 and size.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use reqwest::Url;

use super::fetch::{Fetcher, Want, is_not_found};
use super::openpgp::Keyring;
use super::replay::{Freshness, same_release_text};
use super::{Gate, safe_relative};
use crate::config::{AptUpstream, Fetch};
use crate::digest::Sha256Digest;

/// What a sync of one apt upstream needs.
pub struct Apt<'a> {
    /// The archive, suites, components, architectures, keyring, and
    /// whether `Sources` and the source packages they name are mirrored.
    pub upstream: &'a AptUpstream,
    /// What the signed metadata is held against.
    pub freshness: &'a Freshness<'a>,
}

/// One file a `Release` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub path: String,
    pub size: u64,
    pub sha256: Sha256Digest,
    /// Its SHA512, when `Release` lists one (apt then fetches by-hash
    /// through it).
    pub sha512: Option<String>,
}

/// The parts of a `Release` file the sync uses.
#[derive(Debug, Default)]
pub struct Release {
    pub by_hash: bool,
    pub files: Vec<Listed>,
}

/// Parses a `Release` file's `Acquire-By-Hash` field and SHA256 list.
pub fn parse_release(text: &str) -> Result<Release> {
    let mut r = Release::default();
    let mut sha512: BTreeMap<String, String> = BTreeMap::new();
    let mut section = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(' ') {
            if section != "SHA256" && section != "SHA512" {
                continue;
            }
            let parts: Vec<&str> = rest.split_whitespace().collect();
            let [hex, size, path] = parts[..] else {
                bail!("malformed {section} line in Release: {line:?}");
            };
            if section == "SHA512" {
                sha512.insert(path.to_string(), hex.to_ascii_lowercase());
                continue;
            }
            r.files.push(Listed {
                path: path.to_string(),
                size: size
                    .parse()
                    .with_context(|| format!("bad size in Release: {line:?}"))?,
                sha256: Sha256Digest::from_hex(hex)
                    .ok_or_else(|| anyhow!("bad sha256 in Release: {line:?}"))?,
                sha512: None,
            });
            continue;
        }
        section = "";
        if let Some((key, value)) = line.split_once(':') {
            match key.trim() {
                k @ ("SHA256" | "SHA512") => {
                    section = if k == "SHA256" { "SHA256" } else { "SHA512" }
                }
                "Acquire-By-Hash" => r.by_hash = value.trim().eq_ignore_ascii_case("yes"),
                _ => {}
            }
        }
    }
    for f in &mut r.files {
        f.sha512 = sha512.remove(&f.path);
    }
    if r.files.is_empty() {
        bail!("the Release file lists no SHA256 sums");
    }
    Ok(r)
}

/// The keys of an OpenPGP keyring file (binary or armored), evaluated by
/// `openpgp` (self-signatures, bindings, expiry, revocation, key flags).
pub fn load_keyring(path: &Path) -> Result<Keyring> {
    Keyring::load(path)
}

/// Checks a clearsigned `InRelease` and returns the text that was signed.
pub fn verify_inrelease(text: &str, keys: &Keyring) -> Result<String> {
    keys.verify_cleartext("InRelease", text)
}

/// Checks a detached `Release.gpg` (every signature in it) over `Release`.
pub fn verify_detached(release: &[u8], signature: &[u8], keys: &Keyring) -> Result<()> {
    keys.verify_detached("Release.gpg", release, signature)
}

const COMPRESSIONS: &[&str] = &[".gz", ".xz", ".bz2", ".lzma", ".zst"];

/// The architecture a segment of an index's path names: `binary-<arch>`,
/// `installer-<arch>`, `Contents-<arch>`, `Contents-udeb-<arch>`, `Commands-<arch>` (cnf),
/// `Components-<arch>.yml` (dep11), each possibly compressed.
fn arch_of(segment: &str) -> Option<&str> {
    let name = uncompressed(segment);
    let name = name.strip_suffix(".yml").unwrap_or(name);
    [
        "binary-",
        "installer-",
        "Contents-udeb-",
        "Contents-",
        "Commands-",
        "Components-",
    ]
    .iter()
    .find_map(|p| name.strip_prefix(p))
    .filter(|a| !a.is_empty())
}

/// Whether an index must be present in some form for the gate: the
/// `Packages` and `Sources` that name the pool. A listed file of any other
/// kind that the upstream does not serve (real archives list some) is left
/// out without failing the sync.
fn required(path: &str) -> bool {
    let segments: Vec<&str> = uncompressed(path).split('/').collect();
    matches!(
        segments[..],
        [_, dir, "Packages"] if dir.starts_with("binary-")
    ) || matches!(segments[..], [_, "source", "Sources"])
}

/// An index's name without its compression suffix.
fn uncompressed(path: &str) -> &str {
    COMPRESSIONS
        .iter()
        .find_map(|c| path.strip_suffix(c))
        .unwrap_or(path)
}

/// What one suite's sync found: its selected indexes, and what must be
/// present for the gate.
struct Suite {
    name: String,
    release: Release,
    /// Signed files as fetched, relative to the suite directory.
    signed_files: Vec<&'static str>,
    /// Selected indexes the upstream has.
    present: Vec<Listed>,
    /// Signed files the upstream has but that are not published, and why.
    dropped: Vec<String>,
    /// In a dry run, the `Packages` and `Sources` that are not in the tree,
    /// read (and checked) into memory to list the pool files, by path.
    read: BTreeMap<String, Bytes>,
}

impl Apt<'_> {
    /// Whether a file the Release lists is mirrored: everything of a
    /// selected component (`Packages`, `Translation-*`, `i18n/Index`,
    /// `Contents-*`, `dep11/*`, `cnf/*`, …) and the suite's own
    /// `Contents-<arch>`, except what belongs to an architecture not
    /// selected, and the sources unless `sources` is on. A file names its
    /// architecture in one of its path's segments (see [`arch_of`]);
    /// `all` belongs to every one.
    fn selects(&self, path: &str) -> bool {
        let rest = match path.split_once('/') {
            Some((component, rest)) => {
                if !self.upstream.components.iter().any(|c| c == component) {
                    return false;
                }
                rest
            }
            // At the suite's top, only its Contents files are indexes.
            None if path.starts_with("Contents-") => path,
            None => return false,
        };
        for segment in rest.split('/') {
            if segment == "source" {
                return self.upstream.sources;
            }
            if let Some(arch) = arch_of(segment) {
                return match arch {
                    "all" => true,
                    "source" => self.upstream.sources,
                    a => self.upstream.architectures.iter().any(|x| x == a),
                };
            }
        }
        true
    }

    /// Fetches everything into `tree`, returning what the gate must check.
    pub async fn sync(&self, fetcher: &Arc<Fetcher>, tree: &Path) -> Result<Gate> {
        let url = &self.upstream.url;
        let base = Url::parse(&format!("{}/", url.trim_end_matches('/')))
            .with_context(|| format!("upstream url `{url}`"))?;
        fetcher.check_url(&base)?;
        let keys = load_keyring(&self.upstream.keyring)?;
        let mut gate = Gate::default();
        let mut pool: BTreeMap<String, Want> = BTreeMap::new();
        for suite in &self.upstream.suites {
            let s = self.suite(fetcher, &base, tree, suite, &keys).await?;
            let dir = format!("dists/{}", s.name);
            for d in s.dropped {
                gate.note(d);
            }
            for f in &s.signed_files {
                gate.files.insert(tree.join(&dir).join(f), None);
            }
            // Each selected index in at least one form.
            let mut groups: BTreeMap<&str, bool> = BTreeMap::new();
            for l in s.release.files.iter().filter(|l| self.selects(&l.path)) {
                if required(&l.path) {
                    groups.entry(uncompressed(&l.path)).or_insert(false);
                }
            }
            for l in &s.present {
                if let Some(any) = groups.get_mut(uncompressed(&l.path)) {
                    *any = true;
                }
                gate.files
                    .insert(tree.join(&dir).join(&l.path), Some(l.sha256));
                if s.release.by_hash {
                    for p in by_hash_paths(tree, &dir, l) {
                        gate.files.insert(p, Some(l.sha256));
                    }
                }
            }
            for (name, any) in groups {
                if !any {
                    gate.problems.push(format!(
                        "{dir}/{name}: listed in Release but the upstream has it in no form"
                    ));
                }
            }
            for l in &s.present {
                let base_name = uncompressed(&l.path);
                if !base_name.ends_with("/Packages") && !base_name.ends_with("/Sources") {
                    continue;
                }
                let limit = fetcher.max_metadata_size;
                let files = match s.read.get(&l.path) {
                    Some(bytes) => pool_files_from(&l.path, std::io::Cursor::new(bytes), limit)?,
                    None => {
                        let index = tree.join(&dir).join(&l.path);
                        let f = std::fs::File::open(&index)
                            .with_context(|| format!("reading {}", index.display()))?;
                        pool_files_from(&l.path, f, limit)
                            .with_context(|| format!("reading {}", index.display()))?
                    }
                };
                for (file, want) in files {
                    pool.insert(file, want);
                }
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (file, want) in pool {
            // `pool_files` let only relative paths inside the tree through.
            let dest = tree.join(&file);
            let url = super::join_under(&base, &file)?;
            if self.upstream.fetch == Fetch::OnDemand {
                gate.remote(dest, want.size, want.sha256, &url);
                continue;
            }
            gate.files.insert(dest.clone(), Some(want.sha256));
            let f = fetcher.clone();
            tasks.spawn(async move { f.file(&url, &dest, want).await });
        }
        super::all_done(tasks, "fetching the pool").await?;
        Ok(gate)
    }

    async fn suite(
        &self,
        fetcher: &Arc<Fetcher>,
        base: &Url,
        tree: &Path,
        suite: &str,
        keys: &Keyring,
    ) -> Result<Suite> {
        let dist = base.join(&format!("dists/{suite}/"))?;
        let dir = tree.join("dists").join(safe_relative(suite)?);
        // Signed metadata: kept in memory until everything it lists is in.
        let (release_text, signed) = match fetcher.bytes(&dist.join("InRelease")?).await {
            Ok(inrelease) => {
                let text = std::str::from_utf8(&inrelease).context("InRelease is not UTF-8")?;
                let signed =
                    verify_inrelease(text, keys).with_context(|| format!("{dist}InRelease"))?;
                (signed, vec![("InRelease", inrelease)])
            }
            Err(e) if is_not_found(&e) => {
                let release = fetcher.bytes(&dist.join("Release")?).await?;
                let sig = fetcher.bytes(&dist.join("Release.gpg")?).await?;
                verify_detached(&release, &sig, keys)
                    .with_context(|| format!("{dist}Release.gpg"))?;
                let text = String::from_utf8(release.to_vec()).context("Release is not UTF-8")?;
                (text, vec![("Release", release), ("Release.gpg", sig)])
            }
            Err(e) => return Err(e),
        };
        // Before anything it lists is fetched: is this the suite asked
        // for, still valid, and not older than what is released?
        let source = format!("{dist}{}", signed[0].0);
        self.freshness
            .check_apt(suite, &source, &release_text)
            .context("nothing was released")?;
        let release = parse_release(&release_text).with_context(|| format!("{dist}: Release"))?;
        // With InRelease, also keep Release and Release.gpg if the upstream
        // has them (older clients and tools such as debmirror read that
        // pair instead), but only when they hold up on their own: Release.gpg
        // verifies over Release, and Release says what InRelease signed.
        // Otherwise neither is published: a pair that fails gpgv breaks every
        // client that reads it, and one that verifies but differs from
        // InRelease would show those clients another archive.
        let mut signed = signed;
        let mut dropped = Vec::new();
        if signed[0].0 == "InRelease" {
            let mut pair = Vec::new();
            for extra in ["Release", "Release.gpg"] {
                match fetcher.bytes(&dist.join(extra)?).await {
                    Ok(b) => pair.push((extra, b)),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            let shown = format!("dists/{suite}/Release and dists/{suite}/Release.gpg");
            match &pair[..] {
                [] => {}
                [("Release", release), ("Release.gpg", sig)] => {
                    if !same_release_text(release, &release_text) {
                        dropped.push(format!(
                            "{shown}: Release differs from the text InRelease signed"
                        ));
                    } else if let Err(e) = verify_detached(release, sig, keys) {
                        dropped.push(format!(
                            "{shown}: Release.gpg does not verify over Release with the keyring ({e:#})"
                        ));
                    } else {
                        signed.extend(pair);
                    }
                }
                [(only, _)] => dropped.push(format!(
                    "{shown}: the upstream has only {only}, and one without the other verifies nothing"
                )),
                _ => unreachable!("at most the two files asked for, in order"),
            }
        }

        let mut tasks = tokio::task::JoinSet::new();
        for l in release.files.iter().filter(|l| self.selects(&l.path)) {
            let (f, l) = (fetcher.clone(), l.clone());
            let dest = dir.join(safe_relative(&l.path)?);
            let url = super::join_under(&dist, &l.path)?;
            tasks.spawn(async move {
                let want = Want {
                    sha256: l.sha256,
                    size: Some(l.size),
                };
                // A dry run writes nothing, but reads the Packages and
                // Sources the tree lacks (or has in another version), to
                // list the pool files a sync would fetch.
                let digest = super::fetch::Digest::Sha256(l.sha256);
                if f.dry_run
                    && required(&l.path)
                    && f.present(&dest, digest, Some(l.size)).await?.is_none()
                {
                    return match f.bytes(&url).await {
                        Ok(bytes) => {
                            if Sha256Digest::of(&bytes) != l.sha256 {
                                bail!("{url}: its sha256 is not the one Release lists");
                            }
                            println!("would fetch {url}");
                            Ok(Some((l, Some(bytes))))
                        }
                        Err(e) if is_not_found(&e) => Ok(None),
                        Err(e) => Err(e),
                    };
                }
                match f.file(&url, &dest, want).await {
                    Ok(_) => Ok(Some((l, None))),
                    // Release may list forms the upstream does not keep
                    // (Ubuntu lists uncompressed Packages it does not serve).
                    Err(e) if is_not_found(&e) => Ok(None),
                    Err(e) => Err(e),
                }
            });
        }
        let mut read = BTreeMap::new();
        let mut present: Vec<Listed> = super::all_done(tasks, "fetching the indexes")
            .await?
            .into_iter()
            .flatten()
            .map(|(l, bytes)| {
                if let Some(b) = bytes {
                    read.insert(l.path.clone(), b);
                }
                l
            })
            .collect();
        present.sort_by(|a, b| a.path.cmp(&b.path));
        if release.by_hash && !fetcher.dry_run {
            let dir_name = format!("dists/{suite}");
            for l in &present {
                let target = dir.join(&l.path);
                if let Some(want) = &l.sha512 {
                    let got = sha512_of(&target)?;
                    if &got != want {
                        bail!(
                            "{dist}{}: SHA512 {got} does not match Release's {want}",
                            l.path
                        );
                    }
                }
            }
            for (l, link) in present.iter().flat_map(|l| {
                by_hash_paths(tree, &dir_name, l)
                    .into_iter()
                    .map(move |p| (l, p))
            }) {
                let target = dir.join(&l.path);
                if !same_file(&link, &target) {
                    std::fs::create_dir_all(link.parent().expect("has a parent"))?;
                    let _ = std::fs::remove_file(&link);
                    std::fs::hard_link(&target, &link)
                        .with_context(|| format!("linking {}", link.display()))?;
                }
                fetcher.mark(&link, l.sha256);
            }
        }
        // The signed files last: a client never sees them before what they
        // list (and the release gate checks it all anyway).
        for (name, bytes) in &signed {
            fetcher.write(&dir.join(name), bytes)?;
        }
        Ok(Suite {
            name: suite.to_string(),
            release,
            signed_files: signed.iter().map(|(n, _)| *n).collect(),
            present,
            dropped,
            read,
        })
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Where apt asks for an index by its hashes: `by-hash/SHA256/<hex>`, and
/// `by-hash/SHA512/<hex>` when `Release` lists SHA512 (apt uses the
/// strongest one listed).
fn by_hash_paths(tree: &Path, dist_dir: &str, l: &Listed) -> Vec<PathBuf> {
    let parent = Path::new(&l.path).parent().unwrap_or(Path::new(""));
    let dir = tree.join(dist_dir).join(parent).join("by-hash");
    let mut paths = vec![dir.join("SHA256").join(l.sha256.hex())];
    if let Some(h) = &l.sha512 {
        paths.push(dir.join("SHA512").join(h));
    }
    paths
}

fn sha512_of(path: &Path) -> Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = sha2::Sha512::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(h.finalize()))
}

/// The pool files a `Packages` or `Sources` index names, with their SHA256
/// and size. A binary stanza names one file (`Filename`, `Size`,
/// `SHA256`); a source stanza names several (`Directory` and the lines of
/// `Checksums-Sha256`).
pub fn pool_files(name: &str, bytes: &[u8]) -> Result<Vec<(String, Want)>> {
    pool_files_from(name, bytes, crate::config::DEFAULT_MAX_METADATA_SIZE)
}

/// The longest line of an index that is read: far above real ones (a long
/// `Provides` is a few KiB), and what one line may cost in memory.
const MAX_LINE: usize = 1 << 20;

/// [`pool_files`] over a reader of the (compressed) index, decompressed
/// as a stream of at most `limit` bytes: only the current stanza's fields
/// are held, so memory does not grow with the index, and a compression
/// bomb stops at the limit.
pub fn pool_files_from(
    name: &str,
    compressed: impl Read,
    limit: u64,
) -> Result<Vec<(String, Want)>> {
    let mut r = super::bounded::decompressing(name, compressed, limit)?;
    let mut out = Vec::new();
    let mut stanza = Stanza::default();
    let mut raw = Vec::new();
    let mut number = 0u64;
    loop {
        let n = super::bounded::read_line(&mut r, &mut raw, MAX_LINE)
            .with_context(|| format!("reading {name} after line {number}"))?;
        number += 1;
        let line = std::str::from_utf8(&raw)
            .with_context(|| format!("{name} is not UTF-8 (line {number})"))?;
        let line = line.strip_suffix('\n').unwrap_or(line);
        if n == 0 || line.is_empty() {
            stanza.finish(name, number, &mut out)?;
            if n == 0 {
                break;
            }
            continue;
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        stanza.line(name, line)?;
    }
    // A path is joined both under the tree and onto the archive's URL: an
    // absolute one, or a URL, would leave both.
    for (f, _) in &out {
        safe_relative(f).with_context(|| format!("{name} lists `{f}`"))?;
    }
    Ok(out)
}

/// The fields of one stanza that name pool files.
#[derive(Default)]
struct Stanza {
    package: Option<String>,
    file: Option<String>,
    size: Option<u64>,
    sha: Option<Sha256Digest>,
    directory: Option<String>,
    listed: Vec<(String, Want)>,
    in_checksums: bool,
}

impl Stanza {
    fn line(&mut self, name: &str, line: &str) -> Result<()> {
        if let Some(item) = line.strip_prefix(' ') {
            if self.in_checksums {
                self.listed
                    .push(checksum_line(item).with_context(|| {
                        format!("{name}: a bad Checksums-Sha256 line `{item}`")
                    })?);
            }
            return Ok(());
        }
        let Some((k, v)) = line.split_once(':') else {
            return Ok(());
        };
        self.in_checksums = k == "Checksums-Sha256";
        let v = v.trim();
        match k {
            "Package" => self.package = Some(v.to_string()),
            "Filename" => self.file = Some(v.to_string()),
            "Size" => self.size = v.parse::<u64>().ok(),
            "SHA256" => self.sha = Sha256Digest::from_hex(v),
            "Directory" => self.directory = Some(v.to_string()),
            _ => {}
        }
        Ok(())
    }

    /// Ends the stanza before line `number`, adding what it names to `out`.
    fn finish(&mut self, name: &str, number: u64, out: &mut Vec<(String, Want)>) -> Result<()> {
        let s = std::mem::take(self);
        let listed = !s.listed.is_empty();
        match (s.file, s.size, s.sha, s.directory) {
            (None, None, None, None) => {}
            (Some(f), Some(size), Some(sha256), None) => out.push((
                f,
                Want {
                    sha256,
                    size: Some(size),
                },
            )),
            (None, None, None, Some(dir)) if listed => {
                let dir = dir.trim_end_matches('/');
                out.extend(s.listed.into_iter().map(|(f, w)| (format!("{dir}/{f}"), w)));
            }
            _ => bail!(
                "{name}: the stanza of package `{}` ending at line {number} lacks Filename, Size and SHA256 (or Directory and Checksums-Sha256)",
                s.package.as_deref().unwrap_or("?")
            ),
        }
        Ok(())
    }
}

/// One ` <sha256> <size> <name>` line of a source stanza.
fn checksum_line(item: &str) -> Option<(String, Want)> {
    let mut parts = item.split_whitespace();
    let sha256 = Sha256Digest::from_hex(parts.next()?)?;
    let size = parts.next()?.parse().ok()?;
    let file = parts.next()?;
    if parts.next().is_some() || file.contains('/') {
        return None;
    }
    Some((
        file.to_string(),
        Want {
            sha256,
            size: Some(size),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_fields_and_sha256_list() {
        let r = parse_release(
            "Origin: x\nAcquire-By-Hash: yes\nMD5Sum:\n d41d8cd98f00b204e9800998ecf8427e 0 main/binary-amd64/Packages\nSHA256:\n e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0 main/binary-amd64/Packages\n 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 4 main/i18n/Translation-en\nSHA512:\n aa 1 x\n",
        )
        .unwrap();
        assert!(r.by_hash);
        assert_eq!(r.files.len(), 2);
        assert_eq!(r.files[0].path, "main/binary-amd64/Packages");
        assert_eq!(r.files[0].size, 0);
        assert_eq!(r.files[1].size, 4);
        assert!(parse_release("Origin: x\n").is_err());
        assert!(parse_release("SHA256:\n zz 1 a\n").is_err());
    }

    #[test]
    fn selection_and_compression_groups() {
        let mut upstream = AptUpstream {
            components: vec!["main".to_string()],
            architectures: vec!["amd64".to_string()],
            ..Default::default()
        };
        let released = crate::sync::replay::Released::new(crate::volume::VolumeDir::new(
            Path::new("/nonexistent"),
            "v",
        ));
        let freshness = Freshness {
            released: &released,
            allow_older: false,
        };
        let apt = Apt {
            upstream: &upstream,
            freshness: &freshness,
        };
        let selected = |apt: &Apt, p| apt.selects(p);
        assert!(selected(&apt, "main/binary-amd64/Packages.xz"));
        assert!(selected(&apt, "main/binary-all/Packages"));
        assert!(selected(&apt, "main/i18n/Translation-en.bz2"));
        assert!(!selected(&apt, "main/binary-arm64/Packages"));
        assert!(!selected(&apt, "main/binary-amd64x/Packages"));
        assert!(!selected(&apt, "universe/binary-amd64/Packages"));
        assert!(!selected(&apt, "main/source/Sources.gz"));
        // Everything else a component lists, for the selected architecture.
        for listed in [
            "Contents-amd64.gz",
            "main/Contents-amd64.gz",
            "main/Contents-udeb-amd64.gz",
            "main/Contents-all.gz",
            "main/i18n/Index",
            "main/dep11/Components-amd64.yml.xz",
            "main/dep11/icons-64x64.tar.gz",
            "main/cnf/Commands-amd64.xz",
            "main/debian-installer/binary-amd64/Packages.xz",
        ] {
            assert!(selected(&apt, listed), "{listed}");
        }
        for other in [
            "Contents-arm64.gz",
            "main/Contents-i386.gz",
            "main/Contents-source.gz",
            "main/dep11/Components-arm64.yml.gz",
            "main/cnf/Commands-i386.xz",
            "main/debian-installer/binary-i386/Packages.xz",
            "Release",
            "universe/Contents-amd64.gz",
        ] {
            assert!(!selected(&apt, other), "{other}");
        }
        assert!(required("main/binary-amd64/Packages.xz"));
        assert!(required("main/source/Sources.gz"));
        assert!(!required("main/Contents-amd64.gz"));
        // A partial mirror without the installer is not refused for it.
        assert!(!required("main/debian-installer/binary-amd64/Packages.xz"));
        assert!(!selected(
            &apt,
            "main/installer-arm64/current/images/SHA256SUMS"
        ));
        assert!(selected(
            &apt,
            "main/installer-amd64/current/images/SHA256SUMS"
        ));
        upstream.sources = true;
        let apt = Apt {
            upstream: &upstream,
            freshness: &freshness,
        };
        assert!(selected(&apt, "main/source/Sources.gz"));
        assert!(selected(&apt, "main/Contents-source.gz"));
        assert!(!selected(&apt, "universe/source/Sources.gz"));
        assert_eq!(
            uncompressed("main/binary-amd64/Packages.gz"),
            "main/binary-amd64/Packages"
        );
        assert_eq!(
            uncompressed("main/binary-amd64/Release"),
            "main/binary-amd64/Release"
        );
    }

    #[test]
    fn packages_stanzas() {
        let text = "Package: a\nFilename: pool/main/a/a_1_all.deb\nSize: 10\nSHA256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\nPackage: b\nFilename: pool/main/b/b_1_all.deb\nSize: 3\nSHA256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n\n";
        let files = pool_files("Packages", text.as_bytes()).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[1].0, "pool/main/b/b_1_all.deb");
        assert_eq!(files[1].1.size, Some(3));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
        let files = pool_files("Packages.gz", &gz.finish().unwrap()).unwrap();
        assert_eq!(files.len(), 2);
        assert!(pool_files("Packages", b"Package: a\nFilename: x\n").is_err());
        assert!(pool_files("Packages", b"").unwrap().is_empty());
    }

    /// Found by the `apt` fuzz target: an absolute Filename was returned
    /// (the sync refused it later, but its URL would have left the archive).
    #[test]
    fn pool_paths_that_leave_the_tree_are_refused() {
        let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        for bad in ["/pool/main/a.deb", "pool/../../a.deb", "../a.deb"] {
            let text = format!("Package: a\nFilename: {bad}\nSize: 1\nSHA256: {sha}\n");
            let e = pool_files("Packages", text.as_bytes()).unwrap_err();
            assert!(format!("{e:#}").contains("leaves the tree"), "{bad}: {e:#}");
        }
        let text = format!("Package: a\nDirectory: /pool/a\nChecksums-Sha256:\n {sha} 1 a.dsc\n");
        assert!(pool_files("main/source/Sources", text.as_bytes()).is_err());
        let text = format!("Package: a\nDirectory: ../pool\nChecksums-Sha256:\n {sha} 1 a.dsc\n");
        assert!(pool_files("main/source/Sources", text.as_bytes()).is_err());
        let found = include_bytes!("../../tests/fixtures/fuzz/apt-absolute-filename");
        assert!(pool_files("main/binary-amd64/Packages", found).is_err());
        // A URL where a path belongs: joined onto the archive's URL it
        // would have fetched from another host.
        for url in ["https://other.example/x.deb", "\\\\other.example\\x.deb"] {
            let text = format!("Package: a\nFilename: {url}\nSize: 1\nSHA256: {sha}\n");
            let e = pool_files("Packages", text.as_bytes()).unwrap_err();
            assert!(format!("{e:#}").contains("a URL"), "{url}: {e:#}");
        }
    }

    /// A `Packages.gz` that expands past the limit stops there, read as a
    /// stream: the bomb's 64 MiB are never held.
    #[test]
    fn a_compressed_index_past_the_limit_is_refused() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let stanza = "Package: a\nFilename: pool/a.deb\nSize: 1\nSHA256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\n";
        for _ in 0..(64 << 20) / stanza.len() {
            std::io::Write::write_all(&mut gz, stanza.as_bytes()).unwrap();
        }
        let bomb = gz.finish().unwrap();
        let e = pool_files_from("main/binary-amd64/Packages.gz", &bomb[..], 1 << 20).unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains(
                "Packages.gz decompresses to more than 1048576 bytes (sync.max_metadata_size)"
            ),
            "{e}"
        );
        // The same index under a limit it fits in parses.
        let files = pool_files_from("main/binary-amd64/Packages.gz", &bomb[..], 128 << 20).unwrap();
        assert_eq!(files.len(), (64 << 20) / stanza.len());
        // One endless line is refused at the line bound, not buffered.
        let line = vec![b'x'; MAX_LINE + 10];
        let e = pool_files("Packages", &line).unwrap_err();
        assert!(format!("{e:#}").contains("a line longer than"), "{e:#}");
    }

    #[test]
    fn sources_stanzas() {
        let e = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let t = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let text = format!(
            "Package: greet\nBinary: greet\nDirectory: pool/main/g/greet\nFiles:\n d41d8cd98f00b204e9800998ecf8427e 0 greet_1.0.dsc\nChecksums-Sha256:\n {e} 0 greet_1.0.dsc\n {t} 4 greet_1.0.tar.xz\nFormat: 3.0 (native)\n"
        );
        let files = pool_files("Sources", text.as_bytes()).unwrap();
        assert_eq!(
            files.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(),
            [
                "pool/main/g/greet/greet_1.0.dsc",
                "pool/main/g/greet/greet_1.0.tar.xz"
            ]
        );
        assert_eq!(files[1].1.size, Some(4));
        assert_eq!(files[1].1.sha256.hex(), t);
        // No checksums, a bad line, or a name with a slash: refused.
        assert!(pool_files("Sources", b"Package: a\nDirectory: pool/a\n").is_err());
        let bad = format!("Directory: pool/a\nChecksums-Sha256:\n {e} x a.dsc\n");
        assert!(pool_files("Sources", bad.as_bytes()).is_err());
        let slash = format!("Directory: pool/a\nChecksums-Sha256:\n {e} 0 ../a.dsc\n");
        assert!(pool_files("Sources", slash.as_bytes()).is_err());
    }
}

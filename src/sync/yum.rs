//! Syncing yum/dnf repositories, byte for byte.
//!
//! The upstream is a mirror root (`url`) and repository paths under it
//! (`repos`); each repository is mirrored at its own path in the tree, so
//! its URL on the mirror is its URL upstream with the host swapped, and
//! adding a repository moves none of the others.
//!
//! Per repository: `repodata/repomd.xml` (and `repomd.xml.asc`, verified
//! against the configured key when there is one: dnf asks for it with
//! `repo_gpgcheck=1` although `repomd.xml` does not name it), every
//! metadata file `repomd.xml` names, whatever its type (primary,
//! filelists, other, group and group_gz, modules, updateinfo, the zchunk
//! and sqlite forms), checked against its size and its sha256 or sha512,
//! then every package `primary` names (read as a stream, gz, xz or zstd),
//! checked the same way. Any other checksum type (sha1, md5) is refused:
//! it would not tie the files to the signed `repomd.xml`. `repomd.xml` is
//! written last. A `repomd.xml` whose `revision` is lower than that of the
//! same repository in the current release is refused (see `replay`) unless
//! `sync --allow-older`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use quick_xml::events::Event;
use reqwest::Url;

use super::bounded::{EventBound, MAX_XML_EVENT};
use super::fetch::{Digest, Fetcher, is_not_found};
use super::openpgp::Keyring;
use super::replay::Freshness;
use super::{Gate, safe_relative};
use crate::config::{Fetch, YumUpstream};
use crate::digest::Sha256Digest;

pub struct Yum<'a> {
    /// The mirror root, the repositories and the signing key, if any.
    pub upstream: &'a YumUpstream,
    /// What `repomd.xml` is held against.
    pub freshness: &'a Freshness<'a>,
}

/// A file `repomd.xml` or `primary` names.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub href: String,
    pub digest: Digest,
    pub size: Option<u64>,
    /// The `type` of a `repomd.xml` entry (`primary`, `updateinfo`, …).
    pub kind: Option<String>,
}

/// Reads the `<data>` entries of `repomd.xml`.
pub fn parse_repomd(xml: &[u8]) -> Result<Vec<Located>> {
    parse_locations(BufReader::new(xml), b"data", b"size")
}

/// Reads the packages of a `primary.xml` stream.
pub fn parse_primary(r: impl BufRead) -> Result<Vec<Located>> {
    parse_locations(r, b"package", b"size")
}

/// Collects, for each `<item>` element, its `type`, `checksum` (sha256 or
/// sha512), `location href` and size (`<size>N</size>` in repomd, `<size
/// package="N"/>` in primary).
fn parse_locations(r: impl BufRead, item: &[u8], size_tag: &[u8]) -> Result<Vec<Located>> {
    let mut reader = quick_xml::Reader::from_reader(EventBound::new(r, MAX_XML_EVENT));
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let (mut inside, mut in_checksum, mut in_size) = (false, false, false);
    // The checksum (its type and hex) is read before the location, and
    // checked at the end of the entry, so that an error can name the file.
    let mut href: Option<String> = None;
    let mut sum: Option<(String, String)> = None;
    let mut size: Option<u64> = None;
    let mut algo = String::new();
    let mut kind: Option<String> = None;
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .context("malformed repository XML")?;
        match &ev {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.local_name();
                let name = name.as_ref();
                if name == item {
                    inside = true;
                    (href, sum, size) = (None, None, None);
                    kind = attr(e, b"type");
                } else if inside && name == b"checksum" {
                    in_checksum = matches!(ev, Event::Start(_));
                    algo = attr(e, b"type").unwrap_or_default();
                } else if inside && name == b"location" {
                    href = attr(e, b"href");
                    if attr(e, b"base").is_some() {
                        bail!("location with xml:base is not supported");
                    }
                } else if inside && name == size_tag {
                    if let Some(p) = attr(e, b"package") {
                        size = p.parse().ok();
                    } else {
                        in_size = matches!(ev, Event::Start(_));
                    }
                }
            }
            Event::Text(t) => {
                let text = t
                    .decode()
                    .context("bad text in repository XML")?
                    .trim()
                    .to_string();
                if in_checksum {
                    sum = Some((std::mem::take(&mut algo), text));
                } else if in_size {
                    size = text.parse().ok();
                }
            }
            Event::End(e) => {
                let name = e.local_name();
                let name = name.as_ref();
                if name == b"checksum" {
                    in_checksum = false;
                } else if name == size_tag {
                    in_size = false;
                } else if name == item && inside {
                    inside = false;
                    let href = href
                        .take()
                        .ok_or_else(|| anyhow!("an entry without a location"))?;
                    let (algo, hex) = sum
                        .take()
                        .ok_or_else(|| anyhow!("{href}: no sha256 or sha512 checksum"))?;
                    let digest = checksum(&href, &algo, &hex)?;
                    out.push(Located {
                        digest,
                        href,
                        size: size.take(),
                        kind: kind.take(),
                    });
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
        reader.get_mut().reset();
    }
    Ok(out)
}

/// The `<checksum type="…">` of the entry at `href` as a digest: sha256 or
/// sha512, nothing weaker (`sha1`, `md5`, or `sha`, which is what yum 3
/// wrote for sha1).
fn checksum(href: &str, algo: &str, hex: &str) -> Result<Digest> {
    let digest = match algo {
        "sha256" => Sha256Digest::from_hex(hex).map(Digest::Sha256),
        "sha512" => {
            let mut d = [0u8; 64];
            hex::decode_to_slice(hex, &mut d)
                .ok()
                .map(|()| Digest::Sha512(d))
        }
        other => bail!(
            "{href}: checksum type `{other}` is refused (sha256 or sha512 are accepted): a weaker digest does not tie the file to the signed repomd.xml"
        ),
    };
    digest.ok_or_else(|| anyhow!("{href}: bad {algo} `{hex}`"))
}

fn attr(e: &quick_xml::events::BytesStart, name: &[u8]) -> Option<String> {
    e.attributes()
        .filter_map(|a| a.ok())
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

/// A reader that decompresses by file name, failing past `limit` bytes.
fn decompressing(path: &Path, limit: u64) -> Result<impl BufRead> {
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    super::bounded::decompressing(&path.to_string_lossy(), f, limit)
}

impl Yum<'_> {
    pub async fn sync(&self, fetcher: &Arc<Fetcher>, tree: &Path) -> Result<Gate> {
        let u = &self.upstream.url;
        let root = Url::parse(&format!("{}/", u.trim_end_matches('/')))
            .with_context(|| format!("upstream url `{u}`"))?;
        fetcher.check_url(&root)?;
        if self.upstream.repos.is_empty() {
            bail!("no repositories (`repos`)");
        }
        let keys = self
            .upstream
            .key
            .as_deref()
            .map(Keyring::load)
            .transpose()?;
        let mut gate = Gate::default();
        for repo in &self.upstream.repos {
            // The config checked the path; it is still kept below the
            // root here, as every path that reaches a URL and the tree is.
            let sub = safe_relative(repo)?;
            let base = super::join_under(&root, &format!("{repo}/"))?;
            self.repo(
                fetcher,
                &base,
                &tree.join(&sub),
                &sub,
                keys.as_ref(),
                &mut gate,
            )
            .await
            .with_context(|| format!("repository {repo} ({base})"))?;
        }
        Ok(gate)
    }

    async fn repo(
        &self,
        fetcher: &Arc<Fetcher>,
        base: &Url,
        root: &Path,
        sub: &Path,
        keys: Option<&Keyring>,
        gate: &mut Gate,
    ) -> Result<()> {
        let repomd = fetcher.bytes(&base.join("repodata/repomd.xml")?).await?;
        let asc = match fetcher.bytes(&base.join("repodata/repomd.xml.asc")?).await {
            Ok(b) => Some(b),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(e),
        };
        if let Some(keys) = keys {
            let sig = asc.as_ref().ok_or_else(|| {
                anyhow!("a key is configured but the repository has no repomd.xml.asc")
            })?;
            keys.verify_detached(&format!("{base}repodata/repomd.xml.asc"), &repomd, sig)?;
        }
        // Before anything it names is fetched; each repository against its
        // own `repomd.xml` in the current release.
        self.freshness
            .check_yum(&sub.join("repodata/repomd.xml"), &repomd)
            .context("nothing was released")?;
        let metadata = parse_repomd(&repomd).context("repomd.xml")?;
        fetch_all(
            fetcher,
            base,
            root,
            &metadata,
            gate,
            "fetching the metadata",
        )
        .await?;
        // By type: `primary_zck` and `primary_db` name the same packages in
        // forms this does not read.
        let primary = metadata
            .iter()
            .find(|m| m.kind.as_deref() == Some("primary"))
            .ok_or_else(|| anyhow!("repomd.xml names no primary metadata"))?;
        let path = root.join(safe_relative(&primary.href)?);
        let limit = fetcher.max_metadata_size;
        let packages = if fetcher.dry_run && !path.exists() {
            Vec::new()
        } else {
            tokio::task::spawn_blocking(move || {
                parse_primary(decompressing(&path, limit)?)
                    .with_context(|| format!("parsing {}", path.display()))
            })
            .await??
        };
        if self.upstream.fetch == Fetch::OnDemand {
            for l in &packages {
                let dest = root.join(safe_relative(&l.href)?);
                let url = super::join_under(base, &l.href)?;
                match l.digest {
                    Digest::Sha256(sha) => gate.remote(dest, l.size, sha, &url),
                    Digest::Sha512(_) => gate.problems.push(format!(
                        "{}: primary.xml gives only sha512, and an on-demand release names content by sha256 (use fetch = \"mirror\" for this repository)",
                        dest.display()
                    )),
                }
            }
        } else {
            fetch_all(fetcher, base, root, &packages, gate, "fetching packages").await?;
        }
        // The signed index last.
        let repodata = root.join("repodata");
        fetcher.write(&repodata.join("repomd.xml"), &repomd)?;
        gate.files.insert(repodata.join("repomd.xml"), None);
        if let Some(asc) = asc {
            fetcher.write(&repodata.join("repomd.xml.asc"), &asc)?;
            gate.files.insert(repodata.join("repomd.xml.asc"), None);
        }
        Ok(())
    }
}

/// Fetches every file of `files` (paths under `base`) into `root`, and
/// tells the gate what each must be: its sha256, computed from the
/// checked bytes when the index gives sha512.
async fn fetch_all(
    fetcher: &Arc<Fetcher>,
    base: &Url,
    root: &Path,
    files: &[Located],
    gate: &mut Gate,
    what: &str,
) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for l in files {
        let dest = root.join(safe_relative(&l.href)?);
        if let Digest::Sha256(sha) = l.digest {
            gate.files.insert(dest.clone(), Some(sha));
        }
        let (f, url, digest, size) = (
            fetcher.clone(),
            super::join_under(base, &l.href)?,
            l.digest,
            l.size,
        );
        tasks.spawn(async move {
            let (_, sha256) = f.file_checked(&url, &dest, digest, size).await?;
            Ok((dest, digest, sha256))
        });
    }
    for (dest, digest, sha256) in super::all_done(tasks, what).await? {
        if let Digest::Sha512(_) = digest {
            // `None` only in a dry run, which releases nothing.
            gate.files.insert(dest, sha256);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn repomd_entries() {
        let xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1</revision>
  <data type="primary">
    <checksum type="sha256">{SHA}</checksum>
    <open-checksum type="sha256">{SHA}</open-checksum>
    <location href="repodata/{SHA}-primary.xml.zst"/>
    <timestamp>1</timestamp>
    <size>123</size>
    <open-size>456</open-size>
  </data>
  <data type="filelists">
    <checksum type="sha256">{SHA}</checksum>
    <location href="repodata/x-filelists.xml.gz"/>
    <size>7</size>
  </data>
</repomd>"#
        );
        let d = parse_repomd(xml.as_bytes()).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].href, format!("repodata/{SHA}-primary.xml.zst"));
        assert_eq!(d[0].kind.as_deref(), Some("primary"));
        assert_eq!(
            d[0].digest,
            Digest::Sha256(Sha256Digest::from_hex(SHA).unwrap())
        );
        assert_eq!(d[0].size, Some(123));
        assert_eq!(d[1].kind.as_deref(), Some("filelists"));
        assert_eq!(d[1].size, Some(7));

        // sha512 is read as such; anything weaker is refused, naming the
        // file (whose location comes after its checksum).
        let sha512 = "ab".repeat(64);
        let xml512 = xml.replacen(
            &format!("<checksum type=\"sha256\">{SHA}"),
            &format!("<checksum type=\"sha512\">{sha512}"),
            1,
        );
        let d = parse_repomd(xml512.as_bytes()).unwrap();
        assert_eq!(d[0].digest, Digest::Sha512([0xab; 64]));
        for algo in ["sha1", "md5", "sha"] {
            let weak = xml.replacen(
                "<checksum type=\"sha256\"",
                &format!("<checksum type=\"{algo}\""),
                1,
            );
            let e = format!("{:#}", parse_repomd(weak.as_bytes()).unwrap_err());
            assert_eq!(
                e,
                format!(
                    "repodata/{SHA}-primary.xml.zst: checksum type `{algo}` is refused (sha256 or sha512 are accepted): a weaker digest does not tie the file to the signed repomd.xml"
                )
            );
        }
        let short = xml512.replacen(&sha512, "abab", 1);
        let e = format!("{:#}", parse_repomd(short.as_bytes()).unwrap_err());
        assert!(e.ends_with("bad sha512 `abab`"), "{e}");
    }

    #[test]
    fn primary_packages() {
        let xml = format!(
            r#"<metadata xmlns="http://linux.duke.edu/metadata/common" packages="1">
<package type="rpm"><name>a</name><checksum type="sha256" pkgid="YES">{SHA}</checksum>
<size package="42" installed="1" archive="2"/><location href="Packages/a-1-1.noarch.rpm"/></package>
</metadata>"#
        );
        let p = parse_primary(BufReader::new(xml.as_bytes())).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].href, "Packages/a-1-1.noarch.rpm");
        assert_eq!(p[0].size, Some(42));
    }

    /// quick-xml buffers a whole event: one huge attribute or text node
    /// is refused at `MAX_XML_EVENT` instead of growing the buffer.
    #[test]
    fn huge_xml_events_are_refused() {
        // The bound is checked as the reader refills, so an event may
        // pass it by up to one buffer: twice the bound is well past.
        let huge = "x".repeat(2 * MAX_XML_EVENT);
        for xml in [
            format!("<metadata><package><location href=\"{huge}\"/></package></metadata>"),
            format!("<metadata><package><name>{huge}</name></package></metadata>"),
            format!("<metadata><!--{huge}--></metadata>"),
        ] {
            let e = match parse_primary(BufReader::new(xml.as_bytes())) {
                Ok(_) => panic!("accepted {} bytes in one event", huge.len()),
                Err(e) => format!("{e:#}"),
            };
            assert!(e.contains("longer than 1048576 bytes"), "{:.200}", e);
        }
        // Many ordinary events add up to far more than the bound: fine.
        let entry = format!(
            "<package type=\"rpm\"><checksum type=\"sha256\">{SHA}</checksum><size package=\"1\"/><location href=\"Packages/a.rpm\"/></package>"
        );
        let xml = format!(
            "<metadata>{}</metadata>",
            entry.repeat(2 * MAX_XML_EVENT / entry.len())
        );
        assert!(parse_primary(BufReader::new(xml.as_bytes())).unwrap().len() > 1000);
    }
}

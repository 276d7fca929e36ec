//! Syncing yum/dnf repositories, byte for byte.
//!
//! Per repository: `repodata/repomd.xml` (and `repomd.xml.asc`, verified
//! against the configured key when there is one: dnf asks for it with
//! `repo_gpgcheck=1` although `repomd.xml` does not name it), every
//! metadata file `repomd.xml` names (sha256 and size checked), then every
//! package `primary` names (read as a stream, gz, xz or zstd), checked
//! against its sha256 and size. `repomd.xml` is written last. A
//! `repomd.xml` whose `revision` is lower than the current release's is
//! refused (see `replay`) unless `sync --allow-older`.
//!
//! One base URL is mirrored at the volume's root; several each go under
//! the part of their URL path that differs from the others.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use quick_xml::events::Event;
use reqwest::Url;

use super::bounded::{EventBound, MAX_XML_EVENT};
use super::fetch::{Fetcher, Want, is_not_found};
use super::openpgp::Keyring;
use super::replay::Freshness;
use super::{Gate, safe_relative};
use crate::digest::Sha256Digest;

pub struct Yum<'a> {
    pub urls: &'a [String],
    pub key: Option<&'a Path>,
    /// What `repomd.xml` is held against.
    pub freshness: &'a Freshness<'a>,
}

/// A file `repomd.xml` or `primary` names.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub href: String,
    pub sha256: Sha256Digest,
    pub size: Option<u64>,
}

/// Reads the `<data>` entries of `repomd.xml`.
pub fn parse_repomd(xml: &[u8]) -> Result<Vec<Located>> {
    parse_locations(BufReader::new(xml), b"data", b"size")
}

/// Reads the packages of a `primary.xml` stream.
pub fn parse_primary(r: impl BufRead) -> Result<Vec<Located>> {
    parse_locations(r, b"package", b"size")
}

/// Collects, for each `<item>` element, its `checksum` (sha256 only),
/// `location href` and size (`<size>N</size>` in repomd, `<size
/// package="N"/>` in primary).
fn parse_locations(r: impl BufRead, item: &[u8], size_tag: &[u8]) -> Result<Vec<Located>> {
    let mut reader = quick_xml::Reader::from_reader(EventBound::new(r, MAX_XML_EVENT));
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let (mut inside, mut in_checksum, mut in_size) = (false, false, false);
    let (mut href, mut sha, mut size, mut algo): (
        Option<String>,
        Option<String>,
        Option<u64>,
        String,
    ) = (None, None, None, String::new());
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
                    (href, sha, size) = (None, None, None);
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
                    if algo != "sha256" {
                        bail!("checksum type `{algo}` is not supported (sha256 is)");
                    }
                    sha = Some(text);
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
                    let hex = sha
                        .take()
                        .ok_or_else(|| anyhow!("{href}: no sha256 checksum"))?;
                    out.push(Located {
                        sha256: Sha256Digest::from_hex(&hex)
                            .ok_or_else(|| anyhow!("{href}: bad sha256 `{hex}`"))?,
                        href,
                        size: size.take(),
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

/// Where each base URL goes in the tree: the part of its path that
/// differs from the others (the root for a single URL).
fn subdirs(urls: &[Url]) -> Vec<PathBuf> {
    if urls.len() == 1 {
        return vec![PathBuf::new()];
    }
    let segs: Vec<Vec<&str>> = urls
        .iter()
        .map(|u| {
            u.path_segments()
                .map(|s| s.filter(|x| !x.is_empty()).collect())
                .unwrap_or_default()
        })
        .collect();
    let common = (0..)
        .take_while(|&i| segs.iter().all(|s| s.len() > i && s[i] == segs[0][i]))
        .count();
    segs.iter().map(|s| s[common..].iter().collect()).collect()
}

impl Yum<'_> {
    pub async fn sync(&self, fetcher: &Arc<Fetcher>, tree: &Path) -> Result<Gate> {
        let urls = self
            .urls
            .iter()
            .map(|u| {
                Url::parse(&format!("{}/", u.trim_end_matches('/')))
                    .with_context(|| format!("upstream url `{u}`"))
            })
            .collect::<Result<Vec<_>>>()?;
        if urls.is_empty() {
            bail!("no repository urls");
        }
        let keys = self.key.map(Keyring::load).transpose()?;
        let mut gate = Gate::default();
        for (url, sub) in urls.iter().zip(subdirs(&urls)) {
            fetcher.check_url(url)?;
            let root = tree.join(&sub);
            self.repo(fetcher, url, &root, &sub, keys.as_ref(), &mut gate)
                .await
                .with_context(|| format!("repository {url}"))?;
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
        // Before anything it names is fetched.
        self.freshness
            .check_yum(&sub.join("repodata/repomd.xml"), &repomd)
            .context("nothing was released")?;
        let metadata = parse_repomd(&repomd).context("repomd.xml")?;
        let mut tasks = tokio::task::JoinSet::new();
        for m in &metadata {
            let dest = root.join(safe_relative(&m.href)?);
            gate.files.insert(dest.clone(), Some(m.sha256));
            let (f, url, want) = (
                fetcher.clone(),
                super::join_under(base, &m.href)?,
                Want {
                    sha256: m.sha256,
                    size: m.size,
                },
            );
            tasks.spawn(async move { f.file(&url, &dest, want).await });
        }
        super::all_done(tasks, "fetching the metadata").await?;
        let primary = metadata
            .iter()
            .find(|m| m.href.contains("primary.xml"))
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
        let mut tasks = tokio::task::JoinSet::new();
        for p in packages {
            let dest = root.join(safe_relative(&p.href)?);
            gate.files.insert(dest.clone(), Some(p.sha256));
            let (f, url) = (fetcher.clone(), super::join_under(base, &p.href)?);
            let want = Want {
                sha256: p.sha256,
                size: p.size,
            };
            tasks.spawn(async move { f.file(&url, &dest, want).await });
        }
        super::all_done(tasks, "fetching packages").await?;
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
        assert_eq!(d[0].size, Some(123));
        assert_eq!(d[1].size, Some(7));
        let sha1 = xml.replacen("type=\"sha256\"", "type=\"sha1\"", 1);
        assert!(parse_repomd(sha1.as_bytes()).is_err());
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

    #[test]
    fn repository_subdirectories() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            subdirs(&[u("https://m/c/9/BaseOS/x86_64/os/")]),
            vec![PathBuf::new()]
        );
        assert_eq!(
            subdirs(&[
                u("https://m/c/9/BaseOS/x86_64/os/"),
                u("https://m/c/9/AppStream/x86_64/os/")
            ]),
            vec![
                PathBuf::from("BaseOS/x86_64/os"),
                PathBuf::from("AppStream/x86_64/os")
            ]
        );
    }
}

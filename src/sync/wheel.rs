//! Importing built wheels (a build job's output) into platform trees.
//!
//! The source directory holds one subdirectory per platform
//! (`ubuntu-22.04-x86_64/`, `centos-9-x86_64/`…), each with `.whl` files.
//! Each platform becomes a PEP 503 index root, as OpenDev's wheel mirror
//! lays it out: `<platform>/index.html` lists the projects, and each wheel
//! is copied (verified, fsynced, renamed) to `<platform>/<project>/<file>`
//! beside its project's page, with its `METADATA` as `<file>.metadata`. So
//! `--extra-index-url …/<platform>/` and `--find-links …/<platform>/<project>/`
//! both work. Pages come as PEP 503 HTML and PEP 691 JSON, with
//! `data-requires-python` and core-metadata hashes.
//!
//! Trees from before this layout (`<platform>/packages/<project>/<file>`
//! and `<platform>/simple/`) move on the next sync: their wheels are taken
//! from there, written at the new paths, and the old paths, which the gate
//! no longer names, are pruned. The release stores no new objects for
//! them (objects are content-addressed).
//!
//! Wheels imported earlier stay, even when the build output no longer has
//! them (build jobs clean their output); `--prune` drops those.
//!
//! Only regular files are imported. A symlink in the build output (as a
//! wheel or as a platform directory) would publish any zip the updater can
//! read, and a FIFO would hang the sync: both are refused, naming the
//! path, and never followed or opened.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::Gate;
use super::fetch::Fetcher;
use super::pypi::{PageFile, normalize, project_pages, root_pages, write_pages};
use crate::digest::{Sha256Digest, sha256_of_reader};

pub struct Wheels<'a> {
    pub directory: &'a Path,
    /// Drop wheels the build output no longer has.
    pub prune: bool,
}

/// A wheel's project name, from its file name (`name-version-…-plat.whl`).
pub fn project_of(filename: &str) -> Option<String> {
    let stem = filename.strip_suffix(".whl")?;
    let parts: Vec<&str> = stem.split('-').collect();
    if parts.len() < 5 || parts[0].is_empty() {
        return None;
    }
    Some(normalize(parts[0]))
}

/// The `METADATA` of a wheel, and its `Requires-Python`.
pub fn wheel_metadata(path: &Path) -> Result<(Vec<u8>, Option<String>)> {
    let file = std::fs::File::open(path)?;
    let mut zip =
        zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip", path.display()))?;
    let name = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .find(|n| n.ends_with(".dist-info/METADATA") && n.matches('/').count() == 1)
        .with_context(|| format!("{} has no .dist-info/METADATA", path.display()))?;
    let mut meta = Vec::new();
    zip.by_name(&name)?.read_to_end(&mut meta)?;
    let text = String::from_utf8_lossy(&meta);
    let requires_python = text
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("Requires-Python:"))
        .map(|v| v.trim().to_string());
    Ok((meta, requires_python))
}

/// The `.whl` files in `dir`. In the build output (`strict`), a `.whl`
/// that is a symlink or not a regular file (a FIFO, a device, a
/// directory) is refused: a link would publish whatever zip it points at
/// that the updater can read, and reading a FIFO would hang the sync.
fn wheels_in(dir: &Path, strict: bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        let p = e.path();
        if p.extension().is_none_or(|x| x != "whl") {
            continue;
        }
        // The entry's own type: `file_type` does not follow a symlink.
        let kind = e.file_type()?;
        if kind.is_file() {
            out.push(p);
        } else if strict {
            bail!("refusing {}: {}", p.display(), not_regular(kind));
        }
    }
    out.sort();
    Ok(out)
}

/// What a directory entry is instead of a regular file, for the error.
fn not_regular(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_symlink() {
        "a symlink, not a regular file (the wheel import never follows links)"
    } else if kind.is_fifo() {
        "a FIFO, not a regular file"
    } else if kind.is_dir() {
        "a directory, not a regular file"
    } else if kind.is_socket() || kind.is_block_device() || kind.is_char_device() {
        "a socket or device, not a regular file"
    } else {
        "not a regular file"
    }
}

/// The platform directories in `dir`. In the build output (`strict`), a
/// symlink in place of one is refused rather than skipped or followed.
fn subdirs(dir: &Path, strict: bool) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if dir.is_dir() {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let kind = e.file_type()?;
            if kind.is_dir() {
                out.push(name);
            } else if strict && kind.is_symlink() {
                bail!(
                    "refusing {}: a symlink where a platform directory may be (the wheel import never follows links)",
                    e.path().display()
                );
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads a wheel of the build output without following a symlink and
/// without blocking on a FIFO, and checks what it opened is a regular file
/// (the entry could have been swapped since it was listed).
fn read_regular(path: &Path) -> Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => anyhow::anyhow!(
                "refusing {}: a symlink, not a regular file (the wheel import never follows links)",
                path.display()
            ),
            _ => anyhow::Error::new(e).context(format!("reading {}", path.display())),
        })?;
    let kind = f.metadata()?.file_type();
    if !kind.is_file() {
        bail!("refusing {}: {}", path.display(), not_regular(kind));
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes)
}

impl Wheels<'_> {
    pub fn sync(&self, fetcher: &Fetcher, tree: &Path) -> Result<Gate> {
        if !self.directory.is_dir() {
            bail!(
                "the wheel directory {} does not exist",
                self.directory.display()
            );
        }
        let mut gate = Gate::default();
        let mut platforms = subdirs(self.directory, true)?;
        for p in subdirs(tree, false)? {
            if !platforms.contains(&p) {
                platforms.push(p);
            }
        }
        for platform in platforms {
            let src = self.directory.join(&platform);
            let dst = tree.join(&platform);
            // Project → wheels (file name → path in the tree).
            let mut projects: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
            for wheel in wheels_in(&src, true)? {
                let filename = wheel
                    .file_name()
                    .expect("a file")
                    .to_string_lossy()
                    .into_owned();
                let Some(project) = project_of(&filename) else {
                    tracing::warn!(wheel = %wheel.display(), "skipped: not a wheel file name");
                    continue;
                };
                let dest = dst.join(&project).join(&filename);
                self.import(fetcher, &wheel, &dest)?;
                projects.entry(project).or_default().insert(filename, dest);
            }
            if !self.prune {
                // Wheels imported earlier: at the new paths, then (once, on
                // the sync that moves a tree to this layout) at the old.
                let old = dst.join("packages");
                let earlier = [(&dst, false), (&old, true)];
                for (root, moved) in earlier {
                    for project in subdirs(root, false)? {
                        for wheel in wheels_in(&root.join(&project), false)? {
                            let filename = wheel
                                .file_name()
                                .expect("a file")
                                .to_string_lossy()
                                .into_owned();
                            let known = projects.entry(project.clone()).or_default();
                            let std::collections::btree_map::Entry::Vacant(v) =
                                known.entry(filename.clone())
                            else {
                                continue;
                            };
                            let dest = dst.join(&project).join(&filename);
                            if moved {
                                self.import(fetcher, &wheel, &dest)?;
                            } else {
                                let f = std::fs::File::open(&wheel)?;
                                fetcher.mark(&wheel, sha256_of_reader(f)?);
                            }
                            v.insert(dest);
                        }
                    }
                }
            }
            projects.retain(|_, w| !w.is_empty());
            if projects.is_empty() {
                continue;
            }
            for (project, wheels) in &projects {
                let mut files = Vec::new();
                for (filename, path) in wheels {
                    let (meta, requires_python) = wheel_metadata(path)?;
                    let meta_path = PathBuf::from(format!("{}.metadata", path.display()));
                    fetcher.write(&meta_path, &meta)?;
                    let bytes = std::fs::read(path)?;
                    let sha256 = Sha256Digest::of(&bytes);
                    gate.files.insert(path.clone(), Some(sha256));
                    gate.files.insert(meta_path, None);
                    files.push(PageFile {
                        filename: filename.clone(),
                        path: filename.clone(),
                        sha256,
                        size: Some(bytes.len() as u64),
                        requires_python,
                        yanked: None,
                        metadata_sha: Some(Sha256Digest::of(&meta)),
                    });
                }
                // The files sit beside their page.
                let pages = project_pages(project, "", &files)?;
                write_pages(fetcher, &mut gate, &dst.join(project), pages)?;
            }
            let names: Vec<String> = projects.keys().cloned().collect();
            write_pages(fetcher, &mut gate, &dst, root_pages(&names)?)?;
        }
        Ok(gate)
    }

    /// Copies one wheel into the tree (unless an identical copy is there).
    fn import(&self, fetcher: &Fetcher, wheel: &Path, dest: &Path) -> Result<()> {
        let bytes = read_regular(wheel)?;
        // A wheel that is not a readable zip is refused before it lands.
        zip::ZipArchive::new(std::io::Cursor::new(&bytes))
            .with_context(|| format!("{} is not a valid wheel", wheel.display()))?;
        fetcher.write(dest, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_from_wheel_file_names() {
        assert_eq!(
            project_of("greet_lib-1.0-py3-none-any.whl").as_deref(),
            Some("greet-lib")
        );
        assert_eq!(
            project_of("Foo.Bar-2.0-1-cp311-cp311-manylinux_2_17_x86_64.whl").as_deref(),
            Some("foo-bar")
        );
        assert_eq!(project_of("nope.whl"), None);
        assert_eq!(project_of("a-1.0.tar.gz"), None);
    }
}

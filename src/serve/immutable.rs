//! Which paths name content that never changes under their name
//! (`freshness.immutable`): they are sent with a year-long Cache-Control,
//! and plain-tree files among them are never re-`stat`ed.
//!
//! Every response asks, so the common shapes of pattern are matched
//! directly rather than by the glob set's regular expressions, which were
//! about a tenth of the user-space work of a hit: `**/*.whl` is a suffix,
//! `**/by-hash/**` a directory anywhere, `**/packages/**/*.tar.gz` a suffix
//! under a directory anywhere. Other patterns go to the glob set. The
//! shapes follow globset's defaults (`*` also matches `/`); a test checks
//! both agree.

use globset::{Glob, GlobSet, GlobSetBuilder};

pub struct Immutable {
    shapes: Vec<Shape>,
    /// The patterns of no known shape.
    others: GlobSet,
}

/// A pattern matched without the glob set. The strings are literal.
#[derive(Debug, PartialEq)]
enum Shape {
    /// `**/*<suffix>`: the path ends with `suffix`.
    Suffix(String),
    /// `**/<dir>/**`: `dir` is a directory on the path.
    Under(String),
    /// `**/<dir>/**/*<suffix>`: below a directory `dir`, ending with
    /// `suffix`.
    SuffixUnder(String, String),
}

impl Immutable {
    /// Compiles the patterns (checked when the config was loaded).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Immutable, globset::Error> {
        let mut shapes = Vec::new();
        let mut others = GlobSetBuilder::new();
        for p in patterns {
            let p = p.as_ref();
            let glob = Glob::new(p)?;
            match Shape::of(p) {
                Some(s) => shapes.push(s),
                None => {
                    others.add(glob);
                }
            }
        }
        Ok(Immutable {
            shapes,
            others: others.build()?,
        })
    }

    /// Whether `path` (relative to the volume's root) is immutable.
    pub fn is_match(&self, path: &[u8]) -> bool {
        self.shapes.iter().any(|s| s.is_match(path))
            || (!self.others.is_empty() && {
                use std::os::unix::ffi::OsStrExt;
                self.others
                    .is_match(std::path::Path::new(std::ffi::OsStr::from_bytes(path)))
            })
    }
}

/// A piece of a pattern with nothing for globset to interpret.
fn literal(s: &str) -> bool {
    !s.is_empty() && !s.contains(['*', '?', '[', ']', '{', '}', '\\', '/', '!'])
}

impl Shape {
    fn of(pattern: &str) -> Option<Shape> {
        let rest = pattern.strip_prefix("**/")?;
        if let Some(suffix) = rest.strip_prefix('*') {
            return literal(suffix).then(|| Shape::Suffix(suffix.into()));
        }
        let (dir, rest) = rest.split_once('/')?;
        if !literal(dir) {
            return None;
        }
        if rest == "**" {
            return Some(Shape::Under(dir.into()));
        }
        let suffix = rest.strip_prefix("**/*")?;
        literal(suffix).then(|| Shape::SuffixUnder(dir.into(), suffix.into()))
    }

    fn is_match(&self, path: &[u8]) -> bool {
        match self {
            Shape::Suffix(s) => path.ends_with(s.as_bytes()),
            Shape::Under(dir) => after_dir(path, dir.as_bytes()).next().is_some(),
            Shape::SuffixUnder(dir, s) => {
                let s = s.as_bytes();
                // Below any occurrence of the directory, what follows must
                // end with the suffix (which `*` may not start before).
                path.ends_with(s)
                    && after_dir(path, dir.as_bytes()).any(|rest| rest.len() >= s.len())
            }
        }
    }
}

/// For each place where `dir` is a whole directory name on `path` (at the
/// start, or after a `/`, and followed by a `/`), what follows that `/`.
fn after_dir<'a>(path: &'a [u8], dir: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    // Candidate starts: the path's start and just after each `/` (paths
    // are short; building a substring searcher per call cost more).
    std::iter::once(0)
        .chain(memchr::memchr_iter(b'/', path).map(|slash| slash + 1))
        .filter_map(move |at| {
            let rest = path[at..].strip_prefix(dir)?;
            rest.strip_prefix(b"/")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_patterns_take_the_direct_shapes() {
        let shapes: Vec<_> = crate::config::DEFAULT_IMMUTABLE
            .iter()
            .map(|p| Shape::of(p))
            .collect();
        assert!(shapes.iter().all(Option::is_some), "{shapes:?}");
        assert_eq!(
            Shape::of("**/packages/**/*.tar.gz"),
            Some(Shape::SuffixUnder("packages".into(), ".tar.gz".into()))
        );
        // Not these: left to the glob set.
        for p in [
            "*.whl",
            "**/*.{deb,rpm}",
            "**/a*b/**",
            "pool/**",
            "**/x/*.deb",
        ] {
            assert_eq!(Shape::of(p), None, "{p}");
        }
    }

    /// The direct shapes answer as globset does, on paths made to sit on
    /// every edge (a name that only contains the directory, the suffix as
    /// the whole name, the directory as the last segment, leading dots).
    #[test]
    fn shapes_agree_with_globset() {
        let patterns = [
            "**/*.whl",
            "**/*.deb",
            "**/packages/**/*.tar.gz",
            "**/by-hash/**",
            "**/a/**",
        ];
        let pieces = [
            "packages",
            "by-hash",
            "a",
            "xpackages",
            "packagesx",
            "b",
            ".whl",
            "x.whl",
            "x.whlx",
            "y.tar.gz",
            ".tar.gz",
            "tar.gz",
            "x.deb",
            "deb",
            "",
        ];
        let mut paths = Vec::new();
        for a in pieces {
            paths.push(a.to_string());
            for b in pieces {
                paths.push(format!("{a}/{b}"));
                for c in pieces {
                    paths.push(format!("{a}/{b}/{c}"));
                }
            }
        }
        for p in patterns {
            let fast = Immutable::new(&[p]).unwrap();
            assert_eq!(fast.shapes.len(), 1, "{p}");
            let glob = Glob::new(p).unwrap().compile_matcher();
            for path in &paths {
                assert_eq!(
                    fast.is_match(path.as_bytes()),
                    glob.is_match(path),
                    "{p} on {path:?}"
                );
            }
        }
    }

    #[test]
    fn other_patterns_go_to_the_glob_set() {
        let i = Immutable::new(&["pool/**", "**/*.{rpm,srpm}"]).unwrap();
        assert!(i.shapes.is_empty());
        assert!(i.is_match(b"pool/x"));
        assert!(i.is_match(b"a/b.srpm"));
        assert!(!i.is_match(b"a/b.deb"));
    }
}

//! Request paths: the one place where a URL path becomes a path inside a
//! volume, so that no other code has to think about escaping it.
//!
//! Rules: the path is percent-decoded exactly once, segment by segment
//! (apt sends `+` as `%2B` and `~` as `%7E`; a `+` is never a space). A
//! decoded segment that is `.` or `..`, or that contains `/` (from `%2F`),
//! a backslash or a NUL byte is refused, as is malformed percent-encoding:
//! such requests get 400, never a guess. Empty segments (`a//b`) are
//! dropped; a trailing slash is remembered (directories redirect to it).

/// Why a request path was refused (each is a 400 Bad Request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("malformed percent-encoding")]
    BadEscape,
    #[error("a '.' or '..' segment")]
    DotSegment,
    #[error("an encoded '/' inside a segment")]
    EncodedSlash,
    #[error("a backslash")]
    Backslash,
    #[error("a NUL byte")]
    Nul,
}

/// A request path, decoded and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanPath {
    /// The decoded segments joined with `/`: none empty, none `.` or `..`,
    /// none with `/`, `\` or NUL; no leading or trailing slash. Kept joined
    /// (rather than a vector of segments) because a volume's path is a
    /// slice of it: the usual request then costs one allocation.
    decoded: Vec<u8>,
    /// The request ended in `/`.
    pub trailing_slash: bool,
}

impl CleanPath {
    /// Parses the path part of a request target (without the query).
    pub fn parse(raw: &str) -> Result<CleanPath, PathError> {
        let rest = raw
            .strip_prefix('/')
            .ok_or(PathError::NotAbsolute)?
            .as_bytes();
        let mut decoded = Vec::with_capacity(rest.len());
        // Most paths have no escape, backslash or NUL: one scan says so,
        // and then only `.` and `..` segments remain to refuse.
        let plain = memchr::memchr3(b'%', b'\\', 0, rest).is_none();
        for raw_seg in rest.split(|&b| b == b'/').filter(|s| !s.is_empty()) {
            if !decoded.is_empty() {
                decoded.push(b'/');
            }
            let start = decoded.len();
            let escaped = !plain && memchr::memchr(b'%', raw_seg).is_some();
            if escaped {
                decode_into(raw_seg, &mut decoded)?;
            } else {
                decoded.extend_from_slice(raw_seg);
            }
            let seg = &decoded[start..];
            if seg == b"." || seg == b".." {
                return Err(PathError::DotSegment);
            }
            if plain {
                continue;
            }
            // Only an escape can put a slash inside a segment.
            if escaped && seg.contains(&b'/') {
                return Err(PathError::EncodedSlash);
            }
            if memchr::memchr(b'\\', seg).is_some() {
                return Err(PathError::Backslash);
            }
            if memchr::memchr(0, seg).is_some() {
                return Err(PathError::Nul);
            }
        }
        Ok(CleanPath {
            trailing_slash: rest.ends_with(b"/") || rest.is_empty(),
            decoded,
        })
    }

    /// The whole decoded path, segments joined with `/` (empty for `/`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.decoded
    }

    /// The decoded segments in order.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> {
        // Splitting the empty path would give one empty segment.
        let all = (!self.decoded.is_empty()).then_some(&self.decoded[..]);
        all.into_iter().flat_map(|p| p.split(|&b| b == b'/'))
    }

    /// Whether the path has no segments (the request was for `/`).
    pub fn is_root(&self) -> bool {
        self.decoded.is_empty()
    }

    /// The path after its first `skip` segments, joined with `/`: a path
    /// relative to a volume's root. Borrowed, not copied.
    pub fn rest(&self, skip: usize) -> &[u8] {
        rest_after(&self.decoded, skip)
    }
}

/// `path` (segments joined with `/`) without its first `skip` segments.
pub fn rest_after(path: &[u8], skip: usize) -> &[u8] {
    let mut rest = path;
    for _ in 0..skip {
        rest = match memchr::memchr(b'/', rest) {
            Some(i) => &rest[i + 1..],
            None => &[],
        };
    }
    rest
}

/// Percent-decodes one segment, once, onto the end of `out`.
fn decode_into(s: &[u8], out: &mut Vec<u8>) -> Result<(), PathError> {
    crate::html::percent_decode_into(s, out).ok_or(PathError::BadEscape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<String> {
        CleanPath::parse(p)
            .unwrap()
            .segments()
            .map(|s| String::from_utf8(s.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn plain_paths() {
        assert_eq!(segs("/pypi/simple/foo/"), ["pypi", "simple", "foo"]);
        assert_eq!(segs("/"), Vec::<String>::new());
        assert!(CleanPath::parse("/").unwrap().trailing_slash);
        assert!(CleanPath::parse("/a/").unwrap().trailing_slash);
        assert!(!CleanPath::parse("/a").unwrap().trailing_slash);
        assert_eq!(segs("/a//b"), ["a", "b"]);
    }

    #[test]
    fn decoded_exactly_once_and_plus_is_not_space() {
        assert_eq!(
            segs("/pool/libstdc%2b%2b6_1%7e1.deb"),
            ["pool", "libstdc++6_1~1.deb"]
        );
        assert_eq!(segs("/a+b"), ["a+b"]);
        assert_eq!(segs("/a%20b"), ["a b"]);
        // %252e decodes to the literal "%2e", not to "."
        assert_eq!(segs("/x/%252e%252e"), ["x", "%2e%2e"]);
        assert_eq!(segs("/%C3%BC"), ["ü"]);
    }

    #[test]
    fn traversal_is_refused() {
        for (p, e) in [
            ("/a/../b", PathError::DotSegment),
            ("/..", PathError::DotSegment),
            ("/a/./b", PathError::DotSegment),
            ("/a/%2e%2e/b", PathError::DotSegment),
            ("/a/%2E./b", PathError::DotSegment),
            ("/a/%2e", PathError::DotSegment),
            ("/a%2f..%2fb", PathError::EncodedSlash),
            ("/a/%2F", PathError::EncodedSlash),
            ("/a\\..\\b", PathError::Backslash),
            ("/a/%5c..", PathError::Backslash),
            ("/a%00b", PathError::Nul),
            // Within a segment, the backslash is named first.
            ("/%00%5c", PathError::Backslash),
            ("a/b", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
            ("/a%", PathError::BadEscape),
            ("/a%2", PathError::BadEscape),
            ("/a%zz", PathError::BadEscape),
            ("/%%30", PathError::BadEscape),
        ] {
            assert_eq!(CleanPath::parse(p), Err(e), "{p}");
        }
    }

    #[test]
    fn dots_inside_names_are_fine() {
        assert_eq!(segs("/a/..b/c../.d/..."), ["a", "..b", "c..", ".d", "..."]);
    }

    #[test]
    fn rest_skips_the_prefix() {
        let p = CleanPath::parse("/ubuntu//dists/jammy/Release").unwrap();
        assert_eq!(p.rest(0), b"ubuntu/dists/jammy/Release");
        assert_eq!(p.rest(1), b"dists/jammy/Release");
        assert_eq!(p.rest(3), b"Release");
        assert_eq!(p.rest(4), b"");
        assert_eq!(p.rest(9), b"");
        let root = CleanPath::parse("/").unwrap();
        assert!(root.is_root());
        assert_eq!(root.rest(1), b"");
        assert_eq!(root.segments().count(), 0);
    }

    /// The rules of the module's documentation, applied the slow way: each
    /// segment decoded on its own, then checked.
    fn by_the_rules(raw: &str) -> Result<CleanPath, PathError> {
        let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
        let mut segments = Vec::new();
        for raw_seg in rest.split('/').filter(|s| !s.is_empty()) {
            let mut seg = Vec::new();
            decode_into(raw_seg.as_bytes(), &mut seg)?;
            if seg == b"." || seg == b".." {
                return Err(PathError::DotSegment);
            }
            if seg.contains(&b'/') {
                return Err(PathError::EncodedSlash);
            }
            if seg.contains(&b'\\') {
                return Err(PathError::Backslash);
            }
            if seg.contains(&0) {
                return Err(PathError::Nul);
            }
            segments.push(seg);
        }
        Ok(CleanPath {
            decoded: segments.join(&b'/'),
            trailing_slash: rest.ends_with('/') || rest.is_empty(),
        })
    }

    /// Strings built from the pieces that matter to traversal, escaped and
    /// not, in any order.
    fn hostile_path() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop::sample::select(vec![
            "/", "//", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "\\", "%00", "%", "%%", "a",
            "b.c", "~", "+", "%7E", "%252e", "%c0%ae", "\u{2215}", " ", "?",
        ]);
        prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    proptest::proptest! {
        /// Whatever the target, a path that parses names something inside
        /// the volume's root: joined under it, no component climbs out.
        #[test]
        fn no_parsed_path_leaves_the_root(raw in hostile_path()) {
            use std::os::unix::ffi::OsStrExt;
            if let Ok(p) = CleanPath::parse(&raw) {
                let root = std::path::Path::new("/volume/root");
                let joined = root.join(std::ffi::OsStr::from_bytes(p.as_bytes()));
                proptest::prop_assert!(joined.starts_with(root));
                for c in joined.components() {
                    proptest::prop_assert!(
                        matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)),
                        "{raw:?} gives {joined:?}"
                    );
                }
            }
        }

        /// The parser (with its fast path for paths without escapes)
        /// answers as the rules say, checked segment by segment.
        #[test]
        fn parse_follows_the_rules(raw in hostile_path()) {
            proptest::prop_assert_eq!(CleanPath::parse(&raw), by_the_rules(&raw));
        }

        /// Arbitrary text never panics the parser.
        #[test]
        fn any_text_parses_or_is_refused(raw in ".{0,64}") {
            let _ = CleanPath::parse(&raw);
        }
    }
}

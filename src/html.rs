//! Text made for HTML pages and the URLs in them, by the daemon (listings,
//! its own pages, redirects) and by `sync` (the PyPI pages it writes).
//!
//! Two percent-encodings, for two uses:
//! - [`percent_encode`] keeps `+` as it is. It writes the daemon's own
//!   links and redirects, which only the daemon reads back: its path
//!   decoding (`serve::path`) takes `+` as a plus, never as a space, and
//!   `/a+b` and `/a%2Bb` name the same file.
//! - [`href_encode`] encodes `+` as `%2B`. It writes the links of the PyPI
//!   pages `sync` makes, which pip and other tools may follow to other
//!   servers (an object store, a proxy) where a `+` in a path can be read
//!   as a space: PyPI's own pages encode it, and so do they. Local-version
//!   wheels (`torch-2.1.0+cpu-...whl`) are the common case.

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a name for use in a URL path the daemon serves: all but
/// ASCII letters, digits and `-_.~+`.
pub fn percent_encode(name: &[u8]) -> String {
    encode(name, b"-_.~+")
}

/// Percent-encodes a file name for a link another server may answer: all
/// but ASCII letters, digits and `-_.~` (so `+` too).
pub fn href_encode(name: &str) -> String {
    encode(name.as_bytes(), b"-_.~")
}

/// Decodes one percent-encoded URL path segment (`+` stays `+`); `None`
/// for a malformed escape or a result that is not UTF-8.
pub fn percent_decode(segment: &str) -> Option<String> {
    let mut out = Vec::with_capacity(segment.len());
    percent_decode_into(segment.as_bytes(), &mut out)?;
    String::from_utf8(out).ok()
}

/// Percent-decodes `s` once onto the end of `out`; `None` for a malformed
/// escape (a `%` without two hex digits after it).
pub fn percent_decode_into(s: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(hex_value(hex[0])? << 4 | hex_value(hex[1])?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(())
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn encode(name: &[u8], kept: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    encode_onto(name, kept, &mut out);
    out
}

/// Percent-encodes `name` onto the end of `out`, keeping ASCII letters,
/// digits and `kept`. Byte by byte, without a `format!` per escape: it
/// writes every link of every page a proxy renders.
fn encode_onto(name: &[u8], kept: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in name {
        if b.is_ascii_alphanumeric() || kept.contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// A `/`-separated path with each segment [`href_encode`]d, after
/// `prefix`.
pub fn href_encode_path(prefix: &str, path: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + path.len() + 8);
    out.push_str(prefix);
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        encode_onto(segment.as_bytes(), b"-_.~", &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_inverts_encoding_and_refuses_malformed_escapes() {
        for name in ["a+b 1.whl", "local%version", "é.whl"] {
            assert_eq!(percent_decode(&href_encode(name)).as_deref(), Some(name));
        }
        assert_eq!(percent_decode("a+b").as_deref(), Some("a+b"));
        for bad in ["%", "%4", "%zz", "%ff", "%+f"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_path_is_encoded_segment_by_segment_after_its_prefix() {
        assert_eq!(
            href_encode_path("/pypi/", "packages/ab/torch-2.1.0+cpu é.whl"),
            "/pypi/packages/ab/torch-2.1.0%2Bcpu%20%C3%A9.whl"
        );
        let path = "a b/c+d/%e";
        let encoded = href_encode_path("", path);
        let segments: Vec<String> = path.split('/').map(href_encode).collect();
        assert_eq!(encoded, segments.join("/"));
    }

    #[test]
    fn the_two_encodings_differ_only_on_plus() {
        let name = "torch-2.1.0+cpu a%b/é~_.whl";
        assert_eq!(
            percent_encode(name.as_bytes()),
            "torch-2.1.0+cpu%20a%25b%2F%C3%A9~_.whl"
        );
        assert_eq!(
            href_encode(name),
            "torch-2.1.0%2Bcpu%20a%25b%2F%C3%A9~_.whl"
        );
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}

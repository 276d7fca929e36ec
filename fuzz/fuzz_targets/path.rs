//! Request paths: whatever the target, a path that parses stays inside the
//! volume (no segment can climb out or smuggle a separator).
#![no_main]
use libfuzzer_sys::fuzz_target;
use unimirror::serve::path::CleanPath;

fuzz_target!(|raw: &str| {
    if let Ok(p) = CleanPath::parse(raw) {
        for s in p.segments() {
            assert!(!s.is_empty());
            assert!(s != b"." && s != b"..");
            assert!(!s.contains(&b'/') && !s.contains(&b'\\') && !s.contains(&0));
        }
        let joined = p.as_bytes();
        assert!(!joined.starts_with(b"/") && !joined.ends_with(b"/"));
        assert_eq!(p.rest(1), p.segments().skip(1).collect::<Vec<_>>().join(&b'/'));
    }
});

//! apt metadata: `Release`, `Packages` and `Sources` parsing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use unimirror::sync::apt;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = apt::parse_release(text);
    }
    for name in ["main/binary-amd64/Packages", "main/source/Sources"] {
        if let Ok(files) = apt::pool_files(name, bytes) {
            for (path, _) in files {
                // Pool paths are joined under the volume: never absolute,
                // never climbing.
                assert!(!path.starts_with('/'), "{path}");
                assert!(!path.split('/').any(|s| s == ".."), "{path}");
                // Nor a URL: joined onto the archive's URL it would lead
                // to another host.
                assert!(!path.contains("://") && !path.contains('\\'), "{path}");
            }
        }
    }
});

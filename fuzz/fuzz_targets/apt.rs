//! apt metadata: `Release`, `Packages` and `Sources` parsing, plain and
//! decompressed as a stream under a ceiling.
#![no_main]
use libfuzzer_sys::fuzz_target;
use unimirror::sync::apt;

/// Pool paths are joined under the volume and onto the archive's URL:
/// never absolute, never climbing, never a URL. (A `:` after a `/`, as in
/// `pool/x_1.0_all.://`, is part of a path: joined, it stays under the
/// archive, which is what is checked.)
fn check<T>(files: Vec<(String, T)>) {
    let base = reqwest::Url::parse("https://archive.example/debian/").expect("a valid URL");
    for (path, _) in files {
        assert!(!path.starts_with('/'), "{path}");
        assert!(!path.split('/').any(|s| s == ".."), "{path}");
        assert!(!path.contains('\\'), "{path}");
        let url = base.join(&path).expect("a path joins onto a URL");
        assert!(
            url.as_str().starts_with(base.as_str())
                && url.query().is_none()
                && url.fragment().is_none(),
            "{path} leads to {url}"
        );
    }
}

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = apt::parse_release(text);
    }
    for name in ["main/binary-amd64/Packages", "main/source/Sources"] {
        if let Ok(files) = apt::pool_files(name, bytes) {
            check(files);
        }
    }
    // The bytes as a compressed index, read through the decompressors.
    for name in [
        "main/binary-amd64/Packages.gz",
        "main/binary-amd64/Packages.xz",
        "main/binary-amd64/Packages.zst",
        "main/source/Sources.lzma",
    ] {
        if let Ok(files) = apt::pool_files_from(name, bytes, 1 << 20) {
            check(files);
        }
    }
    // A ceiling below the index's size refuses it, never cuts it short.
    if apt::pool_files_from("main/binary-amd64/Packages", bytes, 64).is_ok() {
        assert!(
            bytes.len() <= 64,
            "{} bytes passed a ceiling of 64",
            bytes.len()
        );
    }
});

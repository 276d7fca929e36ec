//! yum metadata: `repomd.xml` and a streamed `primary.xml`, plain and
//! decompressed under a ceiling.
#![no_main]
use libfuzzer_sys::fuzz_target;
use unimirror::sync::{bounded, yum};

fuzz_target!(|bytes: &[u8]| {
    let _ = yum::parse_repomd(bytes);
    let _ = yum::parse_primary(std::io::BufReader::new(bytes));
    for name in ["primary.xml.gz", "primary.xml.xz", "primary.xml.zst"] {
        if let Ok(r) = bounded::decompressing(name, bytes, 1 << 20) {
            let _ = yum::parse_primary(r);
        }
    }
});

//! The manifest reader on arbitrary bytes: a clear error or a manifest
//! whose entries can be read, never a panic or a read out of bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use unimirror::volume::manifest::{Manifest, Verify};

fuzz_target!(|bytes: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("manifest");
    std::fs::write(&path, bytes).expect("writing the input");
    let Ok(m) = Manifest::open(&path, Verify::No) else {
        return;
    };
    let _ = m.counts();
    let mut stream = m.stream();
    let mut keys = Vec::new();
    while let Some(entry) = stream.next_entry() {
        match entry {
            Ok((key, _)) => keys.push(key),
            Err(_) => break,
        }
        if keys.len() > 1000 {
            break;
        }
    }
    for key in &keys {
        let _ = m.get_key(key);
    }
    let _ = m.get(b"a/b");
    let _ = m.list(b"");
});

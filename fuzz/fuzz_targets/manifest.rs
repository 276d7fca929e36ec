//! The manifest reader on arbitrary bytes: a clear error or a manifest
//! whose entries can be read, never a panic or a read out of bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use unimirror::volume::manifest::{Manifest, Verify};

/// fst panics on an index damaged inside, and the manifest reader turns
/// that into an error (`walk_index`); a panic from anywhere else is a
/// finding, so it still reaches libfuzzer's aborting hook.
fn contain_fst_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let libfuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_fst = info.location().is_some_and(|l| l.file().contains("/fst-"));
            if !in_fst {
                libfuzzer_hook(info);
            }
        }));
    });
}

fuzz_target!(|bytes: &[u8]| {
    contain_fst_panics();
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

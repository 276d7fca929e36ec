//! Manifest scale benchmark: write a synthetic 10,000,000-entry manifest
//! (PyPI-like paths), open it as the daemon does (copied into a cache
//! directory while hashed, then mapped from the copy), and look up random
//! paths, reporting time per lookup and the process's anonymous (heap)
//! memory, which must not grow with the manifest: it is mapped, not loaded.
//!
//! Run: `cargo bench --bench manifest` (about 1 GB of scratch space under
//! `target/bench-manifest`); `UNIMIRROR_BENCH_ENTRIES=1000000` for a
//! smaller one.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use unimirror::cache::disk::DiskTier;
use unimirror::cache::manifests::ManifestCopies;
use unimirror::metrics::Metrics;
use unimirror::volume::manifest::{
    Entry, Kind, Manifest, ManifestWriter, Sha256Digest, Verify, key,
};

fn main() {
    let n: u64 = std::env::var("UNIMIRROR_BENCH_ENTRIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-manifest");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m");

    // 256 directories of files, in key order: dir "packages/xx", names sorted.
    let t = Instant::now();
    let mut w = ManifestWriter::create(&path).unwrap();
    let per_dir = n.div_ceil(256);
    let mut written = 0;
    'outer: for d in 0..256u64 {
        let dir_name = format!("packages/{d:02x}");
        for i in 0..per_dir {
            if written == n {
                break 'outer;
            }
            let name = format!("project{:09}-1.0-py3-none-any.whl", i);
            w.push(&key(dir_name.as_bytes(), name.as_bytes()), &entry(written))
                .unwrap();
            written += 1;
        }
    }
    let (sha, size, counts) = w.finish().unwrap();
    println!(
        "wrote {} entries, {:.1} MiB, in {:.1} s",
        counts.entries,
        size as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64()
    );

    let before = anon_kib();
    let t = Instant::now();
    let m = Manifest::open(&path, Verify::Sha256(sha)).unwrap();
    println!(
        "open in place with sha256 verification: {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    drop(m);
    // The daemon's way: a verified local copy, mapped.
    // A disk budget with room for the copy (a quarter of it).
    let disk = DiskTier::load(&dir.join("cache"), size * 8, 16, Arc::new(Metrics::new())).unwrap();
    let copies = ManifestCopies::open(Arc::new(disk)).unwrap();
    let t = Instant::now();
    let (m, _) = copies.load(&path, sha).unwrap();
    println!(
        "copy with sha256 verification, then open (as the daemon): {:.0} ms; RSS anon {} KiB, file {} KiB",
        t.elapsed().as_secs_f64() * 1e3,
        rss_kib("RssAnon:"),
        rss_kib("RssFile:")
    );

    let lookups = 1_000_000u64;
    let mut rng = 0x2545f4914f6cdd1du64;
    let t = Instant::now();
    for _ in 0..lookups {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let idx = rng % n;
        let (d, i) = (idx / per_dir, idx % per_dir);
        let p = format!("packages/{d:02x}/project{:09}-1.0-py3-none-any.whl", i);
        let e = m.get(p.as_bytes()).unwrap().expect("present");
        assert_eq!(e.size, idx);
    }
    let per = t.elapsed().as_secs_f64() / lookups as f64;
    println!("random lookup: {:.2} µs", per * 1e6);
    println!(
        "heap growth from opening and {lookups} lookups: {} KiB (manifest is {} MiB, mapped); RSS anon {} KiB, file {} KiB",
        anon_kib().saturating_sub(before),
        size >> 20,
        rss_kib("RssAnon:"),
        rss_kib("RssFile:")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn entry(i: u64) -> Entry {
    let mut sha = [0u8; 32];
    sha[..8].copy_from_slice(&i.to_le_bytes());
    Entry {
        kind: Kind::File,
        size: i,
        mtime: 1_700_000_000,
        mtime_nsec: 0,
        sha256: Sha256Digest(sha),
        target: Vec::new(),
        source_inode: 0,
    }
}

/// Anonymous resident memory of this process (heap, not mapped files).
fn anon_kib() -> u64 {
    rss_kib("RssAnon:")
}

/// One `Rss*:` line of this process's status, in KiB.
fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

//! Criterion microbenchmarks of the per-request hot paths: request path
//! parsing, manifest lookup (by the index, and through the table of recent
//! lookups), Range parsing and response header building.
//!
//! Run: `cargo bench --bench hot_paths` (reports land in
//! `target/criterion/`).

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use unimirror::serve::path::CleanPath;
use unimirror::serve::range;
use unimirror::serve::recent::RecentLookups;
use unimirror::serve::reply::cache_control_value;
use unimirror::serve::send::{etag_of_digest, object_head};
use unimirror::volume::manifest::{
    Entry, Kind, Manifest, ManifestWriter, Sha256Digest, Verify, key,
};

fn path_parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("path");
    g.bench_function("plain", |b| {
        b.iter(|| {
            CleanPath::parse(black_box(
                "/pypi/packages/ab/cd/project-1.0-py3-none-any.whl",
            ))
        })
    });
    g.bench_function("escaped", |b| {
        b.iter(|| {
            CleanPath::parse(black_box(
                "/ubuntu/pool/main/g/gcc-12/libstdc%2B%2B6_12.3.0-1ubuntu1%7E22.04_amd64.deb",
            ))
        })
    });
    g.finish();
}

/// Lookups in a 100,000-entry manifest, written once to a temporary file.
fn manifest_lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m");
    let mut w = ManifestWriter::create(&path).unwrap();
    let (dirs, per_dir) = (256u64, 400u64);
    for d in 0..dirs {
        for i in 0..per_dir {
            let e = Entry {
                kind: Kind::File,
                size: d * per_dir + i,
                mtime: 1_700_000_000,
                mtime_nsec: 0,
                sha256: Sha256Digest([7; 32]),
                target: Vec::new(),
                source_inode: 0,
            };
            let name = format!("project{i:06}-1.0-py3-none-any.whl");
            w.push(
                &key(format!("packages/{d:02x}").as_bytes(), name.as_bytes()),
                &e,
            )
            .unwrap();
        }
    }
    let (sha, _, _) = w.finish().unwrap();
    let m = Manifest::open(&path, Verify::Sha256(sha)).unwrap();
    let paths: Vec<String> = (0..1024u64)
        .map(|n| {
            let n = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) % (dirs * per_dir);
            format!(
                "packages/{:02x}/project{:06}-1.0-py3-none-any.whl",
                n / per_dir,
                n % per_dir
            )
        })
        .collect();
    let mut i = 0;
    c.bench_function("manifest/lookup (100k entries)", |b| {
        b.iter(|| {
            i = (i + 1) % paths.len();
            m.get(black_box(paths[i].as_bytes()))
                .unwrap()
                .expect("present")
        })
    });
    c.bench_function("manifest/miss (100k entries)", |b| {
        b.iter(|| m.get(black_box(b"packages/7f/nothing-here.whl")).unwrap())
    });
    // What the daemon does for a path it was asked for lately: the record's
    // offset from the table of recent lookups, then the record.
    let recent = RecentLookups::default();
    for p in &paths {
        recent
            .locate(p.as_bytes(), || m.locate(p.as_bytes()))
            .unwrap();
    }
    c.bench_function("manifest/recent lookup (100k entries)", |b| {
        b.iter(|| {
            i = (i + 1) % paths.len();
            let p = black_box(paths[i].as_bytes());
            let offset = recent.locate(p, || m.locate(p)).unwrap();
            m.entry_at(offset.expect("present")).unwrap()
        })
    });
}

fn range_parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("range");
    g.bench_function("from-to", |b| {
        b.iter(|| range::parse(black_box(b"bytes=1048576-2097151"), black_box(1 << 30)))
    });
    g.bench_function("suffix", |b| {
        b.iter(|| range::parse(black_box(b"bytes=-500"), black_box(1 << 30)))
    });
    g.bench_function("ignored (several ranges)", |b| {
        b.iter(|| range::parse(black_box(b"bytes=0-1,5-9"), black_box(1 << 30)))
    });
    g.finish();
}

fn header_building(c: &mut Criterion) {
    let etag = etag_of_digest(&Sha256Digest([0xab; 32]));
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    c.bench_function("headers/object", |b| {
        b.iter(|| {
            let mut head = object_head(
                black_box(&etag),
                mtime,
                black_box(b"packages/ab/cd/project-1.0-py3-none-any.whl"),
                cache_control_value(true),
            );
            head.insert("content-length", 12345u64.into());
            head
        })
    });
}

criterion_group!(
    hot,
    path_parsing,
    manifest_lookup,
    range_parsing,
    header_building
);
criterion_main!(hot);

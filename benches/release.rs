//! Release benchmark: publish a generated tree of many small files, change
//! 1% of them, publish again; then time manifest lookups.
//!
//! Run: `cargo bench --bench release` (1,000,000 files, ~10 GB of scratch
//! space under `target/bench-release`, several minutes). Smaller runs:
//! `UNIMIRROR_BENCH_FILES=100000 cargo bench --bench release`. Set
//! `UNIMIRROR_BENCH_DIR` to put the scratch space elsewhere. The figures go
//! into docs/performance.md.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Instant;

use unimirror::volume::VolumeDir;
use unimirror::volume::manifest::Kind;

const UPDATE: &str = env!("CARGO_BIN_EXE_unimirror-update");

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let files: usize = std::env::var("UNIMIRROR_BENCH_FILES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let root = std::env::var_os("UNIMIRROR_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-release"));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();
    let tree = root.join("tree");
    let config = root.join("unimirror.toml");
    fs::write(
        &config,
        "origin = \"origin\"\nstaging = \"staging\"\n[volumes.bench]\n",
    )
    .unwrap();

    println!("generating {files} files under {}", tree.display());
    let t = Instant::now();
    let paths = generate(&tree, files);
    println!("generated in {:.1} s", t.elapsed().as_secs_f64());

    let first = release(&config, &tree);
    println!("first release:  {first}");

    // Change 1%: new content (and so a new mtime) for every 100th file.
    let changed = paths.len() / 100;
    for (i, p) in paths.iter().step_by(100).enumerate() {
        fs::write(p, format!("changed content {i} of {}", p.display())).unwrap();
    }
    let second = release(&config, &tree);
    println!("second release ({changed} files changed): {second}");

    // Lookups of random paths in the manifest.
    let vol = VolumeDir::new(&root.join("origin"), "bench");
    let id = vol.current().unwrap().unwrap();
    let meta = vol.meta(id).unwrap();
    let t = Instant::now();
    let manifest = vol.manifest(&meta).unwrap();
    let open = t.elapsed();
    let rels: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| {
            p.strip_prefix(&tree)
                .unwrap()
                .as_os_str()
                .as_encoded_bytes()
                .to_vec()
        })
        .collect();
    let mut rng = 0x9e3779b97f4a7c15u64;
    let n = 200_000;
    let t = Instant::now();
    let mut found = 0;
    for _ in 0..n {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let p = &rels[(rng % rels.len() as u64) as usize];
        if manifest
            .get(p)
            .unwrap()
            .is_some_and(|e| e.kind == Kind::File)
        {
            found += 1;
        }
    }
    let per = t.elapsed() / n;
    assert_eq!(found, n, "every looked-up path is in the manifest");
    println!(
        "manifest: {} entries, {} bytes; open+verify {:.0} ms; random lookup {:.2} µs",
        meta.files + meta.directories,
        meta.manifest_size,
        open.as_secs_f64() * 1e3,
        per.as_secs_f64() * 1e6
    );
    println!("\n| step | files | seconds | peak RSS |");
    println!("|---|---|---|---|");
    println!(
        "| first release | {files} | {:.1} | {} MiB |",
        first.secs, first.rss_mib
    );
    println!(
        "| second release, {changed} changed | {files} | {:.1} | {} MiB |",
        second.secs, second.rss_mib
    );
    let _ = fs::remove_dir_all(&root);
}

/// A PyPI-like layout: packages/<xx>/<yy>/<name>.whl, 200–800 bytes each.
fn generate(tree: &Path, files: usize) -> Vec<PathBuf> {
    let mut paths = Vec::with_capacity(files);
    let mut rng = 12345u64;
    for i in 0..files {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let dir = tree.join(format!(
            "packages/{:02x}/{:02x}",
            (rng >> 56) as u8,
            (rng >> 48) as u8
        ));
        if i < 65536 || !dir.exists() {
            fs::create_dir_all(&dir).unwrap();
        }
        let p = dir.join(format!("project_{i}-1.0-py3-none-any.whl"));
        let size = 200 + (rng >> 20) as usize % 600;
        let mut body = format!("file {i} ").into_bytes();
        body.resize(size, b'x');
        fs::write(&p, body).unwrap();
        paths.push(p);
    }
    paths
}

struct Run {
    secs: f64,
    rss_mib: u64,
    summary: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} s, peak RSS {} MiB — {}",
            self.secs,
            self.rss_mib,
            self.summary.trim()
        )
    }
}

/// Runs one release and measures its wall time and peak RSS (from wait4).
// The child is reaped by wait4, which std's Child does not know about.
#[allow(clippy::zombie_processes)]
fn release(config: &Path, tree: &Path) -> Run {
    let t = Instant::now();
    let child = Command::new(UPDATE)
        .arg("--config")
        .arg(config)
        .args(["release", "bench", "--from"])
        .arg(tree)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 on our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid);
    let secs = t.elapsed().as_secs_f64();
    let status = ExitStatus::from_raw(status);
    let mut summary = String::new();
    use std::io::Read;
    child.stdout.unwrap().read_to_string(&mut summary).unwrap();
    assert!(status.success(), "release failed: {status}");
    Run {
        secs,
        rss_mib: usage.ru_maxrss as u64 / 1024,
        summary,
    }
}

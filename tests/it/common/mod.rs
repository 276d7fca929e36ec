//! Shared set-up for the integration tests: a private origin, staging and
//! config per test, the real binaries, and checks of what is on the origin.

mod clients;
mod daemon;
mod http;
mod s3;
mod upstream;
mod watch;

pub use clients::*;
pub use daemon::*;
pub use http::*;
pub use s3::*;
pub use upstream::*;
pub use watch::*;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use unimirror::volume::manifest::{Kind, Manifest, Sha256Digest, path_for_key};
use unimirror::volume::{VolumeDir, manifest::sha256_of_reader};

pub const UPDATE: &str = env!("CARGO_BIN_EXE_unimirror-update");
pub const DAEMON: &str = env!("CARGO_BIN_EXE_unimirror");

/// One test's world: `<dir>/unimirror.toml`, `<dir>/origin`, `<dir>/staging`,
/// `<dir>/tree` (a tree to release).
pub struct Env {
    pub dir: tempfile::TempDir,
    pub extra_config: String,
}

impl Env {
    pub fn new() -> Env {
        Env::with_config("")
    }

    /// With extra config text appended after the defaults (for `[release]`).
    pub fn with_config(extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let env = Env {
            dir,
            extra_config: extra.to_string(),
        };
        env.write_config(&env.origin());
        fs::create_dir_all(env.tree()).unwrap();
        env
    }

    pub fn write_config(&self, origin: &Path) {
        fs::write(
            self.config(),
            format!(
                "origin = {:?}\nstaging = \"staging\"\n{}\n[volumes.vol]\nprefix = \"/vol\"\n\n[volumes.other]\n\n[volumes.plain]\ntree = \"tree\"\n",
                origin.display().to_string(),
                self.extra_config
            ),
        )
        .unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn config(&self) -> PathBuf {
        self.path().join("unimirror.toml")
    }
    pub fn origin(&self) -> PathBuf {
        self.path().join("origin")
    }
    pub fn tree(&self) -> PathBuf {
        self.path().join("tree")
    }
    pub fn vol(&self) -> VolumeDir {
        VolumeDir::new(&self.origin(), "vol")
    }

    /// `unimirror-update --config <config> <args>`, not yet started.
    pub fn update_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(UPDATE);
        c.arg("--config").arg(self.config()).args(args);
        c.env_remove("UNIMIRROR_FAULT");
        c.stdin(Stdio::null());
        c
    }

    pub fn update(&self, args: &[&str]) -> Output {
        self.update_cmd(args).output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    pub fn update_ok(&self, args: &[&str]) -> String {
        let out = self.update(args);
        assert!(
            out.status.success(),
            "unimirror-update {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Releases `self.tree()` as volume `vol`; returns stdout.
    pub fn release(&self) -> String {
        let tree = self.tree();
        self.update_ok(&["release", "vol", "--from", tree.to_str().unwrap()])
    }

    pub fn current(&self) -> Option<u64> {
        self.vol().current().unwrap()
    }

    pub fn write(&self, rel: &str, content: &[u8]) {
        let p = self.tree().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
}

/// Deterministic bytes of a given size, different per `seed`.
pub fn blob(seed: u8, size: usize) -> Vec<u8> {
    let mut x = (seed as u32).wrapping_mul(2_654_435_761) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Where the origin keeps `content` in volume `vol`.
pub fn object_path(env: &Env, content: &[u8]) -> PathBuf {
    env.vol().object_file(&Sha256Digest::of(content))
}

/// Where the daemon's disk tier keeps `content` (test daemons use
/// `<env>/cache`).
pub fn cache_entry(env: &Env, content: &[u8]) -> PathBuf {
    unimirror::cache::disk::content_path(&env.path().join("cache"), &Sha256Digest::of(content))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether a process ended by SIGKILL.
pub fn killed(status: &std::process::ExitStatus) -> bool {
    status.signal() == Some(libc::SIGKILL)
}

/// Checks that release `id` is complete and intact: its manifest verifies,
/// and every file's object exists with exactly the recorded content.
/// Returns the manifest.
pub fn check_release(vol: &VolumeDir, id: u64) -> Manifest {
    let meta = vol.meta(id).unwrap();
    let manifest = vol.manifest(&meta).unwrap();
    let mut stream = manifest.stream();
    let mut files = 0;
    while let Some(item) = stream.next_entry() {
        let (key, e) = item.unwrap();
        if e.kind == Kind::File {
            files += 1;
            let obj = vol.object_file(&e.sha256);
            let f = fs::File::open(&obj).unwrap_or_else(|err| {
                panic!(
                    "release #{id}: object of {:?} missing: {err}",
                    String::from_utf8_lossy(&path_for_key(&key))
                )
            });
            assert_eq!(f.metadata().unwrap().len(), e.size);
            assert_eq!(
                sha256_of_reader(f).unwrap(),
                e.sha256,
                "object content differs"
            );
        }
    }
    assert_eq!(files, meta.files);
    manifest
}

/// Checks that release `id` has exactly the files, dirs and symlinks of
/// `tree`, with their content.
pub fn assert_matches_tree(vol: &VolumeDir, id: u64, tree: &Path) {
    let manifest = check_release(vol, id);
    let mut seen = 0u64;
    for entry in walk(tree) {
        let rel = entry.strip_prefix(tree).unwrap();
        let rel_bytes = rel.as_os_str().as_encoded_bytes();
        let e = manifest
            .get(rel_bytes)
            .unwrap()
            .unwrap_or_else(|| panic!("{} missing from release #{id}", rel.display()));
        let meta = fs::symlink_metadata(&entry).unwrap();
        if meta.file_type().is_symlink() {
            assert_eq!(e.kind, Kind::Symlink);
            assert_eq!(
                e.target,
                fs::read_link(&entry)
                    .unwrap()
                    .as_os_str()
                    .as_encoded_bytes()
            );
        } else if meta.is_dir() {
            assert_eq!(e.kind, Kind::Dir);
        } else {
            assert_eq!(e.kind, Kind::File);
            assert_eq!(e.sha256, Sha256Digest::of(&fs::read(&entry).unwrap()));
        }
        seen += 1;
    }
    assert_eq!(seen, manifest.counts().entries, "release has extra entries");
}

/// Every path below `root` (not `root` itself), symlinks not followed.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for ent in fs::read_dir(&d).unwrap() {
            let p = ent.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// Number of objects in a volume's store.
pub fn object_count(vol: &VolumeDir) -> usize {
    walk(&vol.objects_dir())
        .into_iter()
        .filter(|p| fs::symlink_metadata(p).unwrap().is_file())
        .count()
}

/// Waits (blocking in waitpid, not polling) until `child` is stopped by a
/// signal, e.g. by the `stop` fault action.
pub fn wait_until_stopped(child: &Child) {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: waitpid on our own child, with a valid status pointer.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
    assert_eq!(rc, pid, "waitpid failed");
    assert!(
        libc::WIFSTOPPED(status),
        "child was expected to stop, status {status:#x}"
    );
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// For tests that need root (to mount small or read-only filesystems):
/// they are `#[ignore = "needs root: …"]`, run by CI (as root) with
/// `--include-ignored`, and fail here, never pass, when run without it.
pub fn assert_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (mounts); run the suite as root, as CI does"
    );
}

/// True when the tests run as root: then a test that must meet a
/// permission error drops its privileges first.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A tmpfs mounted for one test, unmounted on drop.
pub struct Mount {
    pub path: PathBuf,
}

impl Mount {
    pub fn tmpfs(path: &Path, size: &str) -> Mount {
        fs::create_dir_all(path).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path));
        Mount {
            path: path.to_path_buf(),
        }
    }

    pub fn remount(&self, opts: &str) {
        run(Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.path));
    }
}

impl Mount {
    /// `src` bind-mounted on `path`: unmounting it later leaves `path` an
    /// empty directory, as an unmounted network filesystem does, and
    /// binding again brings the same files back.
    pub fn bind(src: &Path, path: &Path) -> Mount {
        fs::create_dir_all(src).unwrap();
        fs::create_dir_all(path).unwrap();
        run(Command::new("mount").arg("--bind").arg(src).arg(path));
        Mount {
            path: path.to_path_buf(),
        }
    }

    pub fn unmount(&self) {
        run(Command::new("umount").arg("-l").arg(&self.path));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// opens it, the thread writes `head`, then either closes the pipe (a file
/// that ends early) or holds it open without writing (a stalled origin)
/// until [`Feeder::close`].
pub struct Feeder {
    written: std::sync::mpsc::Receiver<()>,
    close: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Feeder {
    pub fn start(path: &Path, head: Vec<u8>, hold: bool) -> Feeder {
        let _ = fs::remove_file(path);
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
        let (written_tx, written) = std::sync::mpsc::channel();
        let (close, close_rx) = std::sync::mpsc::channel::<()>();
        let path = path.to_path_buf();
        let thread = std::thread::spawn(move || {
            use std::io::Write;
            // Blocks until the daemon opens the other end.
            let mut pipe = fs::OpenOptions::new().write(true).open(&path).unwrap();
            let _ = pipe.write_all(&head);
            let _ = written_tx.send(());
            if hold {
                let _ = close_rx.recv();
            }
        });
        Feeder {
            written,
            close: Some(close),
            thread: Some(thread),
        }
    }

    /// Waits until the daemon has opened the pipe and taken `head`.
    pub fn wait_written(&self) {
        self.written
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the daemon read the origin");
    }

    /// Closes the pipe: the daemon reads the end of the file.
    pub fn close(mut self) {
        drop(self.close.take());
        self.thread.take().unwrap().join().unwrap();
    }
}

/// Polls `cond` every 20 ms until it holds, for at most `secs` seconds:
/// waiting on a state the daemon exposes, never on a guess of time.
pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        if std::env::var_os("UNIMIRROR_TEST_TRACE").is_some() {
            eprintln!("waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Total size of the regular files under `dir`.
pub fn du(dir: &Path) -> u64 {
    walk(dir)
        .iter()
        .filter_map(|p| fs::symlink_metadata(p).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Makes an Ed25519 key pair with OpenSSL, as an operator would:
/// `<name>.pem` (PKCS#8) and `<name>.pub` (SubjectPublicKeyInfo).
pub fn openssl_key_pair(dir: &Path, name: &str) {
    let private = dir.join(format!("{name}.pem"));
    run(Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&private));
    run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(dir.join(format!("{name}.pub"))));
}

//! Shared set-up for the integration tests: a private origin, staging and
//! config per test, the real binaries, and checks of what is on the origin.
#![allow(dead_code)]

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

/// True when the tests run as root (CI does): needed to mount small or
/// read-only filesystems and to drop privileges.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// For tests that need root: in CI a missing privilege is a failure, on a
/// developer's machine the test says it was skipped.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs root in CI (mounts, privilege drop)"
    );
    eprintln!("SKIPPED {test}: needs root");
    false
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

/// Extra config lines for a test daemon.
#[derive(Default, Clone)]
pub struct DaemonOpts {
    /// Lines for `[daemon]`.
    pub daemon: String,
    /// Lines for `[cache]`.
    pub cache: String,
    /// Extra environment variables for the daemon.
    pub env: Vec<(String, String)>,
}

/// A running `unimirror serve`, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub addr: std::net::SocketAddr,
    /// The daemon's stdout, kept open (it prints one line per listener).
    pub stdout: std::io::BufReader<std::process::ChildStdout>,
    /// Where its log (stderr) goes.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts the daemon on the env's config, listening on a free loopback
    /// port, and waits for it to say where it listens.
    pub fn start(env: &Env) -> Daemon {
        Daemon::start_with(env, &DaemonOpts::default())
    }

    /// Starts with extra `[daemon]` and `[cache]` keys.
    pub fn start_with(env: &Env, opts: &DaemonOpts) -> Daemon {
        let config = env.config();
        let text = fs::read_to_string(&config).unwrap();
        let text = text.replacen(
            "staging = \"staging\"\n",
            &format!(
                "staging = \"staging\"\n[daemon]\nlisten = [\"127.0.0.1:0\"]\n{}{}\n[cache]\ndir = \"cache\"\n{}\n",
                if opts.daemon.contains("poll_interval") {
                    ""
                } else {
                    "poll_interval = \"200ms\"\n"
                },
                opts.daemon,
                opts.cache
            ),
            1,
        );
        let serve_config = env.path().join("serve.toml");
        fs::write(&serve_config, text).unwrap();
        let log = env.path().join("daemon.log");
        let mut child = Command::new(DAEMON)
            .arg("serve")
            .arg("--config")
            .arg(&serve_config)
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).unwrap())
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .spawn()
            .unwrap();
        use std::io::BufRead;
        let mut line = String::new();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Daemon {
            child,
            addr,
            stdout,
            log,
        }
    }

    /// One HTTP/1.1 request (`Connection: close`); returns the response.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        self.try_request(method, path, headers).unwrap()
    }

    /// Like `request`, but a connection cut short (reset) is not a panic:
    /// the response holds what arrived.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<HttpResponse> {
        http(self.addr, method, path, headers)
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, &[])
    }

    /// The next line the daemon printed on stdout.
    pub fn next_line(&mut self) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    /// What the daemon logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of one sample in `/metrics` (0 when absent), e.g.
    /// `metric("unimirror_requests_total", &[("outcome", "miss")])`,
    /// summed over the labels not named.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.get("/metrics").text();
        let mut sum = 0.0;
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = match line.rsplit_once(' ') {
                Some(x) => x,
                None => continue,
            };
            let (n, l) = series.split_once('{').unwrap_or((series, ""));
            if n != name {
                continue;
            }
            if labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            {
                sum += value.parse::<f64>().unwrap();
            }
        }
        sum
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request (`Connection: close`) to `addr`, from any thread;
/// a connection cut short (reset) is not an error: the response holds what
/// arrived.
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    http_with(addr, method, path, headers, || {})
}

/// [`http`], calling `on_header` once the response header has arrived and
/// before the rest is read: lets a test break the origin only after the
/// daemon has committed to a status.
pub fn http_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    on_header: impl FnOnce(),
) -> std::io::Result<HttpResponse> {
    use std::io::{Read, Write};
    let mut on_header = Some(on_header);
    let mut s = std::net::TcpStream::connect(addr)?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req += &format!("Host: {addr}\r\n");
    }
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if on_header.is_some() && raw.windows(4).any(|w| w == b"\r\n\r\n") {
                    on_header.take().unwrap()();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !raw.is_empty() => {
                break;
            }
            Err(e) => return Err(e),
        }
    }
    // A connection closed before a whole header: an aborted response.
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the connection closed before a response",
        ));
    }
    Ok(HttpResponse::parse(&raw))
}

/// Reads one response with a Content-Length from a keep-alive connection.
pub fn read_response(s: &mut impl std::io::Read) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "connection closed");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (head, body)
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    fn parse(raw: &[u8]) -> HttpResponse {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("complete header");
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        HttpResponse {
            status,
            headers,
            body: raw[end + 4..].to_vec(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the whole body announced by Content-Length arrived.
    pub fn complete(&self) -> bool {
        self.header("content-length")
            .is_some_and(|l| l.parse::<usize>().unwrap() == self.body.len())
    }
}

/// An origin file replaced by a FIFO that a thread feeds: once the daemon
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

/// Counts opens of one file through inotify: an independent count of the
/// daemon's origin reads.
pub struct OpenWatch {
    fd: i32,
}

impl OpenWatch {
    pub fn new(file: &Path) -> OpenWatch {
        use std::os::unix::ffi::OsStrExt;
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1");
        let c = std::ffi::CString::new(file.as_os_str().as_bytes()).unwrap();
        let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_OPEN) };
        assert!(wd >= 0, "inotify_add_watch {}", file.display());
        OpenWatch { fd }
    }

    /// Opens seen since the last call.
    pub fn opens(&self) -> usize {
        let mut n = 0;
        let mut buf = [0u8; 4096];
        loop {
            let r = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if r <= 0 {
                return n;
            }
            let mut at = 0usize;
            while at < r as usize {
                let ev = unsafe { &*(buf.as_ptr().add(at) as *const libc::inotify_event) };
                if ev.mask & libc::IN_OPEN != 0 {
                    n += 1;
                }
                at += std::mem::size_of::<libc::inotify_event>() + ev.len as usize;
            }
        }
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        unsafe { libc::close(self.fd) };
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

impl HttpResponse {
    pub fn sha256(&self) -> Sha256Digest {
        Sha256Digest::of(&self.body)
    }
}

/// Runs `apt-get` as an unprivileged-style client in its own root under
/// `dir`: its own sources, lists and cache, signatures checked against
/// `keyring` (no `trusted=yes`).
pub fn apt_get(dir: &Path, source: &str, args: &[&str]) -> Output {
    for d in [
        "etc/apt/apt.conf.d",
        "etc/apt/preferences.d",
        "etc/apt/sources.list.d",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "var/lib/dpkg",
    ] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::write(dir.join("var/lib/dpkg/status"), "").unwrap();
    fs::write(dir.join("etc/apt/sources.list"), format!("{source}\n")).unwrap();
    let root = dir.to_str().unwrap();
    Command::new("apt-get")
        .current_dir(dir)
        .args(["-q", "-o", &format!("Dir={root}")])
        .args([
            "-o",
            &format!("Dir::State::status={root}/var/lib/dpkg/status"),
        ])
        .args(["-o", "APT::Architecture=amd64", "-o", "Debug::NoLocking=1"])
        .args(["-o", "APT::Sandbox::User=root", "-o", "Acquire::Retries=0"])
        .args(args)
        .output()
        .expect("apt-get is installed")
}

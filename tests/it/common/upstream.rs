//! Upstreams for the tests: directories served over HTTP(S) by Python's
//! `http.server` (a real server the tests start), some misbehaving on
//! purpose, one keeping a log of every request it answers.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A directory served over HTTP by Python's `http.server`, stopped on drop.
pub struct Upstream {
    child: Child,
    pub port: u16,
    /// Where a logged upstream writes a line per request it answers.
    pub log: Option<PathBuf>,
}

impl Upstream {
    /// Serves `dir` as `python3 -m http.server` does.
    pub fn serve(dir: &Path) -> Upstream {
        let script = r#"
import functools, http.server, sys
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1]))
print("Serving HTTP on 127.0.0.1 port", s.server_address[1], flush=True)
s.serve_forever()
"#;
        Upstream::python(script, &[dir.as_os_str()])
    }

    /// Serves `dir`, then dies abruptly on the request after the first
    /// `requests`: an upstream going away in the middle of a sync.
    pub fn serve_dying(dir: &Path, requests: usize) -> Upstream {
        let script = r#"
import functools, http.server, os, sys
left = [int(sys.argv[2])]
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        if left[0] == 0:
            os._exit(0)
        left[0] -= 1
        super().do_GET()
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(H, directory=sys.argv[1]))
print("Serving HTTP on 127.0.0.1 port", s.server_address[1], flush=True)
s.serve_forever()
"#;
        Upstream::python(script, &[dir.as_os_str(), requests.to_string().as_ref()])
    }

    /// Runs a Python server `script` with `args`; it prints a line ending
    /// in its port when it listens.
    pub fn python(script: &str, args: &[&std::ffi::OsStr]) -> Upstream {
        let mut child = Command::new("python3")
            .args(["-u", "-c", script])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
        Upstream {
            child,
            port,
            log: None,
        }
    }

    /// Serves `dir` over HTTPS with `cert` and `key`; with `redirect`,
    /// answers every request with a redirect to `redirect` + its path.
    pub fn serve_tls(dir: &Path, cert: &Path, key: &Path, redirect: Option<&str>) -> Upstream {
        let script = r#"
import functools, http.server, ssl, sys
redirect = sys.argv[4]
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        if redirect:
            self.send_response(302)
            self.send_header("Location", redirect + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(H, directory=sys.argv[1]))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print("Serving HTTPS on 127.0.0.1 port", s.server_address[1], flush=True)
s.serve_forever()
"#;
        let args = [
            dir.as_os_str(),
            cert.as_os_str(),
            key.as_os_str(),
            redirect.unwrap_or("").as_ref(),
        ];
        Upstream::python(script, &args)
    }

    /// Serves `dir`, writing `<method> <path> <status>` to `log` for each
    /// request it answers: what the tests count upstream reads by, from
    /// the server's own record. Answers `If-Modified-Since` with 304 (as
    /// `http.server` does), and sends a directory's `serial` file as
    /// `X-PyPI-Last-Serial`.
    pub fn logged(dir: &Path, log: &Path) -> Upstream {
        let script = r#"
import functools, http.server, os, sys, threading
out = open(sys.argv[2], "a", buffering=1)
lock = threading.Lock()
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
    def log_request(self, code="-", size="-"):
        with lock:
            out.write("%s %s %s\n" % (self.command, self.path, getattr(code, "value", code)))
    def end_headers(self):
        # A directory's `serial` file is its pages' X-PyPI-Last-Serial.
        p = self.translate_path(self.path)
        serial = os.path.join(p if os.path.isdir(p) else os.path.dirname(p), "serial")
        if os.path.isfile(serial):
            self.send_header("X-PyPI-Last-Serial", open(serial).read().strip())
        super().end_headers()
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(H, directory=sys.argv[1]))
s.daemon_threads = True
print("Serving HTTP on 127.0.0.1 port", s.server_address[1], flush=True)
s.serve_forever()
"#;
        let mut u = Upstream::python(script, &[dir.as_os_str(), log.as_os_str()]);
        u.log = Some(log.to_path_buf());
        u
    }

    /// The requests a logged upstream answered with `method` for paths
    /// ending in `suffix`.
    pub fn requests(&self, method: &str, suffix: &str) -> usize {
        let log = self.log.as_ref().expect("a logged upstream");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                let mut w = l.split(' ');
                w.next() == Some(method) && w.next().is_some_and(|p| p.ends_with(suffix))
            })
            .count()
    }

    /// Stops it now (an upstream that went away).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

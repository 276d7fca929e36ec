//! A real `unimirror serve` per test, its config built as a TOML table, and
//! its metrics read strictly.

use std::fs;
use std::io::BufRead;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use toml::{Table, Value};

use super::http::{HttpResponse, http};
use super::{DAEMON, Env};

/// What a test daemon runs with beyond the env's config: TOML lines for
/// its `[daemon]` and `[cache]` tables (subtables such as `[daemon.tls]`
/// included), and extra environment variables.
#[derive(Default, Clone)]
pub struct DaemonOpts {
    /// Keys of `[daemon]`, as TOML lines.
    pub daemon: String,
    /// Keys of `[cache]`, as TOML lines.
    pub cache: String,
    /// Extra environment variables for the daemon.
    pub env: Vec<(String, String)>,
    /// A descriptor limit (soft and hard) to start it with, as a service
    /// manager would set it.
    pub nofile: Option<u64>,
}

impl DaemonOpts {
    /// The serve config: the env's config (`base`: origin, staging,
    /// volumes, whatever the test added) as a table, with `[daemon]`
    /// listening on a free loopback port, polling every 200 ms, with no
    /// drain delay, and
    /// `[cache]` in `<env>/cache`; the test's own keys override those.
    pub fn serve_config(&self, base: &str) -> Table {
        let mut config: Table = base
            .parse()
            .unwrap_or_else(|e| panic!("the env's config is not TOML: {e}\n{base}"));
        let defaults = [
            (
                "daemon",
                &self.daemon,
                Table::from_iter([
                    (
                        "listen".to_string(),
                        Value::Array(vec!["127.0.0.1:0".into()]),
                    ),
                    ("poll_interval".to_string(), "200ms".into()),
                    // Tests that stop a daemon wait for nobody's load
                    // balancer; the drain tests set their own.
                    ("drain_delay".to_string(), "0s".into()),
                ]),
            ),
            (
                "cache",
                &self.cache,
                Table::from_iter([("dir".to_string(), "cache".into())]),
            ),
        ];
        for (name, lines, mut table) in defaults {
            if let Some(Value::Table(own)) = config.remove(name) {
                table.extend(own);
            }
            table.extend(fragment(name, lines));
            config.insert(name.to_string(), Value::Table(table));
        }
        config
    }
}

/// The table that TOML `lines` make under `[<name>]`.
fn fragment(name: &str, lines: &str) -> Table {
    let doc: Table = format!("[{name}]\n{lines}")
        .parse()
        .unwrap_or_else(|e| panic!("DaemonOpts::{name} is not TOML: {e}\n{lines}"));
    match doc.into_iter().next() {
        Some((_, Value::Table(t))) => t,
        _ => unreachable!("a document of one table"),
    }
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

    /// Starts with `opts`; the config it runs with is `<env>/serve.toml`
    /// (tests edit it and send SIGHUP to reload).
    pub fn start_with(env: &Env, opts: &DaemonOpts) -> Daemon {
        let base = fs::read_to_string(env.config()).unwrap();
        let config = opts.serve_config(&base);
        let serve_config = env.path().join("serve.toml");
        fs::write(&serve_config, toml::to_string(&config).unwrap()).unwrap();
        let log = env.path().join("daemon.log");
        let mut command = Command::new(DAEMON);
        if let Some(n) = opts.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches only the
            // child about to exec.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                        0 => Ok(()),
                        _ => Err(std::io::Error::last_os_error()),
                    }
                });
            }
        }
        let mut child = command
            .arg("serve")
            .arg("--config")
            .arg(&serve_config)
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).unwrap())
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {line:?}; log:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                )
            })
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
        self.try_request(method, path, headers)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
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
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    /// What the daemon logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of a series in `/metrics`, e.g.
    /// `metric("unimirror_requests_total", &[("outcome", "miss")])`,
    /// summed over the labels not named. Fails the test when no sample
    /// matches: a renamed metric or label is an error, not a zero.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.get("/metrics").text();
        samples(&text, name, labels)
            .unwrap_or_else(|| panic!("no sample of {name} with {labels:?} in /metrics:\n{text}"))
    }

    /// [`Daemon::metric`] for a counter that is absent until it is first
    /// counted (a labelled counter has no series before then): absence is
    /// 0. Only for series that `docs/operations.md` documents, so a renamed
    /// metric still fails here.
    pub fn metric_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let documented = fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"),
        )
        .unwrap();
        assert!(
            documented.contains(&format!("`{name}`")),
            "{name} is not a metric docs/operations.md documents"
        );
        samples(&self.get("/metrics").text(), name, labels).unwrap_or(0.0)
    }
}

/// The sum of the samples of `name` carrying `labels` in a Prometheus text
/// exposition, or `None` when there is none.
fn samples(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, l) = series.split_once('{').unwrap_or((series, ""));
        if n != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        {
            *sum.get_or_insert(0.0) += value.parse::<f64>().unwrap();
        }
    }
    sum
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The served-volume fixture: volume `vol` released from a small tree
/// (files, an empty one, a name full of markup, symlinks to a file and to
/// a directory, and a public and a secret file for the smuggling tests),
/// and a daemon serving it.
pub fn served() -> (Env, Daemon) {
    served_with(&DaemonOpts::default())
}

/// [`served`] with a daemon started with `opts`.
pub fn served_with(opts: &DaemonOpts) -> (Env, Daemon) {
    let env = Env::new();
    env.write("simple/index.html", b"<html>root</html>");
    env.write("packages/pkg-1.0.whl", b"0123456789");
    env.write("packages/empty.whl", b"");
    env.write("docs/<img src=x onerror=\"alert(1)\">.txt", b"x");
    symlink(
        "../packages/pkg-1.0.whl",
        env.tree().join("simple/latest.whl"),
    )
    .unwrap();
    symlink("packages", env.tree().join("pkgs")).unwrap();
    env.write("a.whl", b"the public file");
    env.write(
        "secret.whl",
        b"should never be answered to a smuggled request",
    );
    env.release();
    let d = Daemon::start_with(&env, opts);
    (env, d)
}

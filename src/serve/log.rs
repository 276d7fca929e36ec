//! The daemon's log output: lines gathered in memory and written to stderr
//! in batches; and the access log line, written into the same batches.
//!
//! The access log has a line per request. Writing each one with its own
//! `write` costs the busiest path a system call per request, about as much
//! as answering it from memory. So lines are appended to a buffer, and the
//! buffer is written out:
//! - when it holds 64 KiB;
//! - every 100 ms, from a background thread;
//! - at once for warnings and errors;
//! - and at exit ([`flush`]).
//!
//! A crash can therefore lose at most the last 100 ms of info lines (as
//! nginx's `access_log ... buffer=` can); never a warning or an error.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

const FLUSH_AT: usize = 64 << 10;
const FLUSH_EVERY: Duration = Duration::from_millis(100);

static BUFFER: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

fn buffer() -> &'static Mutex<Vec<u8>> {
    BUFFER.get_or_init(|| {
        std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(FLUSH_EVERY);
                    flush();
                }
            })
            .expect("starting the log flush thread");
        Mutex::new(Vec::with_capacity(FLUSH_AT * 2))
    })
}

/// Writes out what is buffered. Call before exiting, and before printing to
/// stderr directly (so lines keep their order).
pub fn flush() {
    let Some(buffer) = BUFFER.get() else {
        return;
    };
    let mut buf = buffer.lock().unwrap_or_else(|e| e.into_inner());
    write_out(&mut buf);
}

fn write_out(buf: &mut Vec<u8>) {
    if !buf.is_empty() {
        // Nowhere to report a failed write to stderr; drop the lines.
        let _ = std::io::stderr().lock().write_all(buf);
        buf.clear();
    }
}

/// The `MakeWriter` for tracing's fmt layer.
pub struct Batched;

/// Writes one event's line into the buffer.
pub struct LineWriter {
    urgent: bool,
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { urgent: false }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        LineWriter {
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

impl Write for LineWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut buf = buffer().lock().unwrap_or_else(|e| e.into_inner());
        buf.extend_from_slice(data);
        if buf.len() >= FLUSH_AT {
            write_out(&mut buf);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    // The fmt layer drops its writer after each event: an urgent line goes
    // out with everything before it.
    fn drop(&mut self) {
        if self.urgent {
            flush();
        }
    }
}

/// One access log line, written by [`access`].
pub struct AccessLine<'a> {
    pub peer: std::net::SocketAddr,
    pub method: &'a str,
    pub path: &'a str,
    pub volume: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub tier: &'static str,
    pub outcome: &'static str,
    pub release: Option<u64>,
    pub complete: bool,
    pub micros: u64,
}

/// Whether log lines are JSON; set once by `init_logging`.
static JSON: OnceLock<bool> = OnceLock::new();

/// Says whether log lines are JSON (`cli::init_logging` does, once).
pub fn set_json(json: bool) {
    let _ = JSON.set(json);
}

/// Logs a request, in the same shape tracing's formatter gives every other
/// line (text or JSON), without going through it: the generic formatter
/// costs as much as the rest of a memory hit.
pub fn access(line: &AccessLine<'_>) {
    if !tracing::enabled!(target: "access", Level::INFO) {
        return;
    }
    thread_local! {
        static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    SCRATCH.with_borrow_mut(|s| {
        s.clear();
        format_access(
            s,
            line,
            *JSON.get().unwrap_or(&false),
            std::time::SystemTime::now(),
        );
        let mut buf = buffer().lock().unwrap_or_else(|e| e.into_inner());
        buf.extend_from_slice(s.as_bytes());
        if buf.len() >= FLUSH_AT {
            write_out(&mut buf);
        }
    });
}

fn format_access(s: &mut String, l: &AccessLine<'_>, json: bool, now: std::time::SystemTime) {
    // Pieces are pushed one by one, numbers through `itoa`: `write!` with
    // its formatting machinery cost a microsecond a request here, more than
    // nginx spends on its whole log line.
    let time = crate::dates::rfc3339_micros(now);
    let time = std::str::from_utf8(&time).expect("a timestamp is ASCII");
    let mut n = itoa::Buffer::new();
    if json {
        s.push_str(r#"{"timestamp":""#);
        s.push_str(time);
        s.push_str(r#"","level":"INFO","fields":{"message":"request","peer":""#);
        push_peer(s, &l.peer);
        s.push_str(r#"","method":"#);
        json_string(s, l.method);
        s.push_str(r#","path":"#);
        json_string(s, l.path);
        s.push_str(r#","volume":"#);
        json_string(s, l.volume);
        s.push_str(r#","status":"#);
        s.push_str(n.format(l.status));
        s.push_str(r#","bytes":"#);
        s.push_str(n.format(l.bytes));
        s.push_str(r#","tier":""#);
        s.push_str(l.tier);
        s.push_str(r#"","outcome":""#);
        s.push_str(l.outcome);
        s.push('"');
        if let Some(r) = l.release {
            s.push_str(r#","release":"#);
            s.push_str(n.format(r));
        }
        s.push_str(r#","complete":"#);
        s.push_str(if l.complete { "true" } else { "false" });
        s.push_str(r#","micros":"#);
        s.push_str(n.format(l.micros));
        s.push_str("}}\n");
    } else {
        s.push_str(time);
        s.push_str("  INFO request peer=");
        push_peer(s, &l.peer);
        for (key, value) in [
            (" method=", l.method),
            (" path=", l.path),
            (" volume=", l.volume),
        ] {
            s.push_str(key);
            s.push_str(value);
        }
        s.push_str(" status=");
        s.push_str(n.format(l.status));
        s.push_str(" bytes=");
        s.push_str(n.format(l.bytes));
        s.push_str(" tier=");
        s.push_str(l.tier);
        s.push_str(" outcome=");
        s.push_str(l.outcome);
        if let Some(r) = l.release {
            s.push_str(" release=");
            s.push_str(n.format(r));
        }
        s.push_str(if l.complete {
            " complete=true"
        } else {
            " complete=false"
        });
        s.push_str(" micros=");
        s.push_str(n.format(l.micros));
        s.push('\n');
    }
}

/// The peer as `Display` writes it (`1.2.3.4:5`, `[::1]:5`); IPv4, the
/// common case, without the formatting machinery.
fn push_peer(s: &mut String, peer: &std::net::SocketAddr) {
    use std::fmt::Write as _;
    match peer {
        std::net::SocketAddr::V4(v4) => {
            let mut n = itoa::Buffer::new();
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                s.push_str(n.format(octet));
            }
            s.push(':');
            s.push_str(n.format(v4.port()));
        }
        v6 => {
            let _ = write!(s, "{v6}");
        }
    }
}

/// `v` as a JSON string, quotes included.
fn json_string(s: &mut String, v: &str) {
    use std::fmt::Write as _;
    s.push('"');
    // Request paths seldom need escaping: copied whole when they do not.
    if !v.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        s.push_str(v);
        s.push('"');
        return;
    }
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(release: Option<u64>) -> AccessLine<'static> {
        AccessLine {
            peer: "127.0.0.1:4242".parse().unwrap(),
            method: "GET",
            path: "/pypi/a \"b\"\\\u{1}",
            volume: "pypi",
            status: 200,
            bytes: 5,
            tier: "memory",
            outcome: "hit-memory",
            release,
            complete: true,
            micros: 7,
        }
    }

    #[test]
    fn json_access_lines_parse_and_match_the_other_lines() {
        let mut s = String::new();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        format_access(&mut s, &line(Some(3)), true, t);
        assert!(s.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(v["level"], "INFO");
        let f = &v["fields"];
        assert_eq!(f["message"], "request");
        assert_eq!(f["peer"], "127.0.0.1:4242");
        assert_eq!(f["path"], "/pypi/a \"b\"\\\u{1}");
        assert_eq!(f["status"], 200);
        assert_eq!(f["release"], 3);
        assert_eq!(f["complete"], true);
        assert_eq!(f["micros"], 7);
        s.clear();
        format_access(&mut s, &line(None), true, t);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert!(v["fields"].get("release").is_none());
    }

    #[test]
    fn peers_are_written_as_display_writes_them() {
        for peer in [
            "127.0.0.1:4242",
            "10.200.0.255:80",
            "0.0.0.0:0",
            "[::1]:8080",
            "[fe80::1%2]:1",
        ] {
            let peer: std::net::SocketAddr = peer.parse().unwrap();
            let mut s = String::new();
            push_peer(&mut s, &peer);
            assert_eq!(s, peer.to_string());
        }
    }

    #[test]
    fn text_access_lines() {
        let mut s = String::new();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        format_access(&mut s, &line(Some(3)), false, t);
        assert_eq!(
            s,
            "2023-11-14T22:13:20.000000Z  INFO request peer=127.0.0.1:4242 method=GET \
             path=/pypi/a \"b\"\\\u{1} volume=pypi status=200 bytes=5 tier=memory \
             outcome=hit-memory release=3 complete=true micros=7\n"
        );
        s.clear();
        format_access(&mut s, &line(None), false, t);
        assert!(
            s.ends_with(" outcome=hit-memory complete=true micros=7\n"),
            "{s}"
        );
    }
}

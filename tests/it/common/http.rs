//! A raw HTTP/1.1 client: exactly the bytes a test means to send, and
//! every socket bounded in time, so a hung daemon fails the test that met
//! it instead of hanging the suite.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use unimirror::volume::manifest::Sha256Digest;

/// How long a connect to the daemon may take: it listens on loopback, so
/// anything close to this is a daemon that stopped accepting.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one read or write on a test's socket may wait for the daemon
/// before the test fails. Generous: tests whose point is a wait (an origin
/// timeout, a slow client being cut off) wait seconds, never a minute; a
/// test that needs a tighter bound sets its own.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection to `addr` with the suite's connect, read and write
/// timeouts.
pub fn try_connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// [`try_connect`], failing the test when the daemon does not accept.
pub fn connect(addr: SocketAddr) -> TcpStream {
    try_connect(addr).unwrap_or_else(|e| panic!("connecting to the daemon at {addr}: {e}"))
}

/// One HTTP/1.1 request (`Connection: close`) to `addr`, from any thread;
/// a connection cut short (reset) is not an error: the response holds what
/// arrived. A read that waits past [`IO_TIMEOUT`] is an error.
pub fn http(
    addr: SocketAddr,
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
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    on_header: impl FnOnce(),
) -> std::io::Result<HttpResponse> {
    let mut on_header = Some(on_header);
    let mut s = try_connect(addr)?;
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
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "{method} {path}: the daemon sent nothing for {IO_TIMEOUT:?} ({} bytes so far)",
                        raw.len()
                    ),
                ));
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

/// `GET <path>` on a new connection (`Connection: close`), with the whole
/// exchange bounded by `deadline` (a client read timeout): the status and
/// everything received, or why there was none.
pub fn get_within(
    addr: SocketAddr,
    path: &str,
    deadline: Duration,
) -> Result<(u16, String), String> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, deadline).map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer within {deadline:?}"))?;
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("no answer within {deadline:?}: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not a response: {text:?}"))?;
    Ok((status, text))
}

/// Reads one response with a Content-Length from a keep-alive connection
/// (made by [`connect`], so a silent daemon fails the read in time).
pub fn read_response(s: &mut impl Read) -> (String, Vec<u8>) {
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

    pub fn sha256(&self) -> Sha256Digest {
        Sha256Digest::of(&self.body)
    }
}

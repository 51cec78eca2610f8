//! A minimal HTTP/1.1 client over a plain `TcpStream`.
//!
//! The request target is sent byte for byte: no URL parser sees it, so
//! `%2e%2e`, `..`, `//` and invalid UTF-8 reach the server exactly as
//! written (reqwest and `url` normalise them away). Every request is
//! `Connection: close`; the body is written from a second thread so a server
//! that answers early (and stops reading) still has its answer read. Only
//! `std` and `serde_json`, so the soak binary in `bench/` includes this file
//! too (`#[path]`).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Longest response body kept; the rest is read and dropped.
const MAX_BODY: usize = 64 << 20;

/// One request, every part of it raw.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: std::sync::Arc<[u8]>,
    /// Do not add `Content-Length` (the headers frame the body themselves,
    /// or deliberately do not).
    pub raw_framing: bool,
    /// Half-close the connection after the body (a client that stops early).
    pub shutdown_write: bool,
}

impl Request {
    pub fn new(method: &str, target: impl AsRef<[u8]>) -> Request {
        Request {
            method: method.to_string(),
            target: target.as_ref().to_vec(),
            ..Request::default()
        }
    }

    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Request {
        self.headers
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    pub fn bearer(self, token: Option<&str>) -> Request {
        match token {
            Some(t) => self.header("authorization", format!("Bearer {t}")),
            None => self,
        }
    }

    pub fn body(mut self, body: impl Into<std::sync::Arc<[u8]>>) -> Request {
        self.body = body.into();
        self
    }

    pub fn json(self, v: &serde_json::Value) -> Request {
        self.header("content-type", "application/json")
            .body(serde_json::to_vec(v).expect("json"))
    }

    /// The bytes before the body.
    pub fn head(&self, host: &str) -> Vec<u8> {
        let mut h = Vec::with_capacity(256 + self.target.len());
        h.extend_from_slice(self.method.as_bytes());
        h.push(b' ');
        h.extend_from_slice(&self.target);
        h.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        h.extend_from_slice(host.as_bytes());
        h.extend_from_slice(b"\r\nconnection: close\r\n");
        for (k, v) in &self.headers {
            h.extend_from_slice(k.as_bytes());
            h.extend_from_slice(b": ");
            h.extend_from_slice(v);
            h.extend_from_slice(b"\r\n");
        }
        let framed = self.headers.iter().any(|(k, _)| {
            k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
        });
        let bodiless = matches!(
            self.method.as_str(),
            "GET" | "HEAD" | "DELETE" | "OPTIONS" | "TRACE"
        );
        if !self.raw_framing && !framed && (!self.body.is_empty() || !bodiless) {
            h.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        h.extend_from_slice(b"\r\n");
        h
    }
}

/// What came back.
#[derive(Clone, Debug, Default)]
pub struct Response {
    pub status: u16,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Chunked trailers, names lower-cased.
    pub trailers: Vec<(String, String)>,
    /// The body ended where its framing said (not cut short).
    pub complete: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn text(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        if s.len() > 400 {
            let mut end = 400;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}… ({} bytes)", &s[..end], self.body.len())
        } else {
            s.into_owned()
        }
    }
}

/// Why no response was read.
#[derive(Debug)]
pub enum HttpError {
    Connect(std::io::Error),
    /// The connection ended before a status line (reset or closed).
    NoResponse(String),
    Timeout,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Connect(e) => write!(f, "cannot connect: {e}"),
            HttpError::NoResponse(d) => write!(f, "no response: {d}"),
            HttpError::Timeout => write!(f, "timed out waiting for the response"),
        }
    }
}

/// `http://127.0.0.1:8080` → `127.0.0.1:8080`.
pub fn host_of(url: &str) -> &str {
    url.trim_start_matches("http://").trim_end_matches('/')
}

/// Sends `req` to `addr` (`host:port`) and reads the whole response, waiting
/// at most `timeout` in all.
pub fn send(addr: &str, req: &Request, timeout: Duration) -> Result<Response, HttpError> {
    let deadline = Instant::now() + timeout;
    let sock_addr = addr
        .parse::<std::net::SocketAddr>()
        .map_err(|e| HttpError::Connect(std::io::Error::other(e)))?;
    let stream = TcpStream::connect_timeout(&sock_addr, Duration::from_secs(5))
        .map_err(HttpError::Connect)?;
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone().map_err(HttpError::Connect)?;
    let head = req.head(addr);
    let body = req.body.clone();
    let shutdown = req.shutdown_write;
    // Written beside the reader: a server may answer (413, 401, …) without
    // reading the body, and then closes; its answer must still be read.
    let w = std::thread::spawn(move || {
        let _ = writer.set_write_timeout(Some(Duration::from_secs(30)));
        let ok = writer.write_all(&head).is_ok() && writer.write_all(&body).is_ok();
        if ok && shutdown {
            let _ = writer.shutdown(Shutdown::Write);
        }
    });
    let raw = read_all(stream, deadline);
    let _ = w.join();
    parse(&raw?, req.method == "HEAD")
}

fn read_all(mut stream: TcpStream, deadline: Instant) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            if out.is_empty() {
                return Err(HttpError::Timeout);
            }
            break;
        }
        let _ = stream.set_read_timeout(Some(left.min(Duration::from_secs(5))));
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // Past the cap the rest is read and dropped (the response
                // then counts as cut short).
                if out.len() + n <= MAX_BODY {
                    out.extend_from_slice(&buf[..n]);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if out.is_empty() {
                    return Err(HttpError::NoResponse(e.to_string()));
                }
                break;
            }
        }
    }
    if out.is_empty() {
        return Err(HttpError::NoResponse("closed without a byte".into()));
    }
    Ok(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses one response (status line, headers, a body framed by
/// `Content-Length`, chunked encoding or the end of the connection).
fn parse(raw: &[u8], head_request: bool) -> Result<Response, HttpError> {
    let end = find(raw, b"\r\n\r\n").ok_or_else(|| {
        HttpError::NoResponse(format!(
            "incomplete response head: {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        ))
    })?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HttpError::NoResponse(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut resp = Response {
        status,
        headers,
        ..Response::default()
    };
    let rest = &raw[end + 4..];
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        resp.complete = true;
        return Ok(resp);
    }
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        dechunk(rest, &mut resp);
    } else if let Some(n) = resp
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        resp.complete = rest.len() >= n;
        resp.body = rest[..rest.len().min(n)].to_vec();
    } else {
        resp.body = rest.to_vec();
        resp.complete = true;
    }
    Ok(resp)
}

fn dechunk(mut rest: &[u8], resp: &mut Response) {
    loop {
        let Some(eol) = find(rest, b"\r\n") else {
            return;
        };
        let size_txt = String::from_utf8_lossy(&rest[..eol]);
        let size_txt = size_txt.split(';').next().unwrap_or("").trim().to_string();
        let Ok(size) = usize::from_str_radix(&size_txt, 16) else {
            return;
        };
        rest = &rest[eol + 2..];
        if size == 0 {
            // Trailers, then an empty line.
            let text = String::from_utf8_lossy(rest);
            for line in text.split("\r\n") {
                if line.is_empty() {
                    resp.complete = true;
                    return;
                }
                if let Some((k, v)) = line.split_once(':') {
                    resp.trailers
                        .push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            return;
        }
        if rest.len() < size + 2 {
            resp.body.extend_from_slice(&rest[..rest.len().min(size)]);
            return;
        }
        resp.body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_with_trailers_and_cut_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nx-t: 1\r\n\r\n";
        let r = parse(raw, false).unwrap();
        assert_eq!(
            (r.status, &r.body[..], r.complete),
            (200, &b"abcde"[..], true)
        );
        assert_eq!(r.trailers, vec![("x-t".to_string(), "1".to_string())]);
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nd";
        let r = parse(cut, false).unwrap();
        assert!(!r.complete);
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        assert!(!parse(short, false).unwrap().complete);
    }
}

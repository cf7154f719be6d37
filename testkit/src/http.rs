//! A raw HTTP/1.1 client for nodes' admin APIs: one request per connection, any method,
//! headers and body (malformed ones included, so tests can send what a client must not), with
//! timeouts so a silent node fails the caller instead of hanging it.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use crate::{Error, Result};

/// How long [`request`] waits to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`request`] waits for each read of the answer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A response: its status code and body (the bytes after the header, as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, lossily decoded as UTF-8.
    pub body: String,
}

/// Send `method path` with `headers` and `body` to `addr` (`host:port`) over a new connection
/// (`Connection: close`, `Content-Length` set) and read the answer until the peer closes.
///
/// An error when the connection or the write fails, when nothing comes back, or when what
/// comes back has no status line. A connection reset after part of the answer keeps that part.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response> {
    let sock: SocketAddr = addr
        .parse()
        .map_err(|e| Error::io(format!("address {addr}"), std::io::Error::other(e)))?;
    let mut s = TcpStream::connect_timeout(&sock, CONNECT_TIMEOUT)
        .map_err(|e| Error::io(format!("connect to {addr}"), e))?;
    s.set_read_timeout(Some(READ_TIMEOUT))
        .map_err(|e| Error::io(format!("set a read timeout on {addr}"), e))?;
    s.write_all(head(addr, method, path, headers, body.len()).as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(|e| Error::io(format!("send {method} {path} to {addr}"), e))?;
    let mut out = Vec::new();
    if let Err(e) = s.read_to_end(&mut out) {
        if out.is_empty() {
            return Err(Error::io(format!("read the answer to {method} {path}"), e));
        }
    }
    parse(addr, &String::from_utf8_lossy(&out))
}

/// `GET path` from `addr`: see [`request`].
pub fn get(addr: &str, path: &str) -> Result<Response> {
    request(addr, "GET", path, &[], b"")
}

/// The request line and headers.
fn head(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], len: usize) -> String {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {len}\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// Split an answer into its status code and body.
fn parse(addr: &str, text: &str) -> Result<Response> {
    let bad = || Error::BadResponse {
        addr: addr.to_string(),
        text: text.chars().take(200).collect(),
    };
    let status_line = text.lines().next().ok_or_else(bad)?;
    if !status_line.starts_with("HTTP/") {
        return Err(bad());
    }
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok(Response { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_carries_length_close_and_the_callers_headers() {
        let h = head("127.0.0.1:1", "POST", "/x", &[("content-type", "a/b")], 3);
        assert_eq!(
            h,
            "POST /x HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: close\r\n\
             Content-Length: 3\r\ncontent-type: a/b\r\n\r\n"
        );
    }

    #[test]
    fn parse_reads_status_and_whole_body() {
        let r = parse(
            "a",
            "HTTP/1.1 201 Created\r\nx: y\r\n\r\n{\"a\":1}\r\n\r\nmore",
        )
        .expect("ok");
        assert_eq!(r.status, 201);
        assert_eq!(r.body, "{\"a\":1}\r\n\r\nmore");
        let empty = parse("a", "HTTP/1.1 204 No Content\r\n\r\n").expect("ok");
        assert_eq!((empty.status, empty.body.as_str()), (204, ""));
    }

    #[test]
    fn parse_rejects_what_is_not_http() {
        assert!(matches!(parse("a", ""), Err(Error::BadResponse { .. })));
        assert!(matches!(
            parse("a", "SSH-2.0"),
            Err(Error::BadResponse { .. })
        ));
        assert!(matches!(
            parse("a", "HTTP/1.1 abc"),
            Err(Error::BadResponse { .. })
        ));
    }

    #[test]
    fn request_round_trips_with_a_local_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 1024];
            let n = c.read(&mut buf).expect("read");
            let got = String::from_utf8_lossy(&buf[..n]).into_owned();
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
                .expect("write");
            got
        });
        let r = request(&addr, "PUT", "/k", &[], b"v").expect("answered");
        assert_eq!((r.status, r.body.as_str()), (200, "hi"));
        let got = server.join().expect("server");
        assert!(got.starts_with("PUT /k HTTP/1.1\r\n"), "{got}");
    }

    #[test]
    fn request_to_a_closed_port_is_an_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a port")
            .port();
        let err = get(&format!("127.0.0.1:{port}"), "/").expect_err("nothing listens");
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }
}

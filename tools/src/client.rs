//! A blocking HTTP/1.1 client for tests and the demo: one keep-alive connection, requests
//! written as given (so tests can send exactly the bytes they mean), responses fully read.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::wire::{invalid, BufConn};

/// How long a read may block before the client gives up (turns a hang into an error).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A keep-alive connection that reconnects when the server closed it.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    conn: Option<BufConn<TcpStream>>,
    connections: u64,
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in received order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let mut client = Self {
            addr,
            conn: None,
            connections: 0,
        };
        client.ensure_connected()?;
        Ok(client)
    }

    /// TCP connections opened so far (1 while keep-alive holds).
    pub fn connections(&self) -> u64 {
        self.connections
    }

    /// Sends `GET path` with `Host: host` and extra headers, and reads the response.
    pub fn get(
        &mut self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<Response> {
        self.request("GET", host, path, headers, &[])
    }

    /// Sends `POST path` with a Content-Length body and reads the response.
    pub fn post(&mut self, host: &str, path: &str, body: &[u8]) -> io::Result<Response> {
        self.request("POST", host, path, &[], body)
    }

    /// Sends a request with a Content-Length body (none for an empty GET) and reads the response.
    pub fn request(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut raw = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\n").into_bytes();
        for (name, value) in headers {
            raw.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if !body.is_empty() || method != "GET" {
            raw.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(body);
        self.send(&raw)?;
        self.read_response(method == "HEAD")
    }

    /// Sends a request whose body goes `Transfer-Encoding: chunked`, `chunk` bytes a chunk, and
    /// reads the response.
    pub fn chunked(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        body: &[u8],
        chunk: usize,
    ) -> io::Result<Response> {
        let head = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\n");
        let mut raw = head.into_bytes();
        raw.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
        for part in body.chunks(chunk.max(1)) {
            raw.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            raw.extend_from_slice(part);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        self.send(&raw)?;
        self.read_response(method == "HEAD")
    }

    /// Writes raw bytes on the connection (reconnecting first if the server closed it).
    pub fn send(&mut self, raw: &[u8]) -> io::Result<()> {
        let conn = self.ensure_connected()?;
        conn.get_mut().write_all(raw)
    }

    /// Reads one response; `head_request` says the request was HEAD (so there is no body).
    pub fn read_response(&mut self, head_request: bool) -> io::Result<Response> {
        let conn = self.conn.as_mut().ok_or_else(|| invalid("not connected"))?;
        let (response, close) = read_one(conn, head_request)?;
        if close {
            self.conn = None;
        }
        Ok(response)
    }

    fn ensure_connected(&mut self) -> io::Result<&mut BufConn<TcpStream>> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(self.addr)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(READ_TIMEOUT))?;
            self.conn = Some(BufConn::new(stream));
            self.connections += 1;
        }
        self.conn.as_mut().ok_or_else(|| invalid("not connected"))
    }
}

fn read_one(conn: &mut BufConn<TcpStream>, head_request: bool) -> io::Result<(Response, bool)> {
    loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(conn.buffered()) {
                Ok(httparse::Status::Complete(len)) => Some((
                    len,
                    response.code.unwrap_or(0),
                    response.version.unwrap_or(1),
                    response
                        .headers
                        .iter()
                        .map(|h| {
                            let value = String::from_utf8_lossy(h.value).into_owned();
                            (h.name.to_ascii_lowercase(), value)
                        })
                        .collect::<Vec<_>>(),
                )),
                Ok(httparse::Status::Partial) => None,
                Err(_) => return Err(invalid("malformed response head")),
            }
        };
        let Some((len, status, version, headers)) = parsed else {
            if conn.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before a response",
                ));
            }
            continue;
        };
        conn.consume(len);
        if (100..200).contains(&status) {
            continue;
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let close =
            find("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) || version == 0;
        let mut body = Vec::new();
        let bodiless = head_request || status == 204 || status == 304;
        if bodiless {
        } else if find("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().ends_with("chunked"))
        {
            conn.read_chunked_body(Some(&mut body))?;
        } else if let Some(length) = find("content-length") {
            let length = length
                .trim()
                .parse()
                .map_err(|_| invalid("bad content-length"))?;
            conn.read_exact_body(length, Some(&mut body))?;
        } else {
            conn.read_to_eof(Some(&mut body))?;
            return Ok((
                Response {
                    status,
                    headers,
                    body,
                },
                true,
            ));
        }
        return Ok((
            Response {
                status,
                headers,
                body,
            },
            close,
        ));
    }
}

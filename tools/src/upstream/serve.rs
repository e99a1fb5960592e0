//! One upstream connection: read a request head and body, route it, write the response, repeat while kept alive.

use super::{Misbehave, Shared};
use crate::wire::{has_token, invalid, parse_content_length, BufConn};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Headers we accept in one request head.
const MAX_HEADERS: usize = 128;

/// Chunk size used by `/echo-chunked`.
const ECHO_CHUNK: usize = 1000;

/// Response bytes buffered before a write, for streamed chunked bodies.
const WRITE_BATCH: usize = 64 * 1024;

/// How a request body is framed (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
}

/// The parts of a request head the routes need, copied out of the read buffer.
#[derive(Debug)]
struct Head {
    method: String,
    target: String,
    http10: bool,
    headers: Vec<(String, Vec<u8>)>,
    close: bool,
    framing: Framing,
    expect_continue: bool,
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Echo,
    EchoChunked,
    Chunked {
        chunks: u64,
        size: usize,
    },
    Headers,
    Status(u16),
    Name,
    EarlyHints,
    /// Answer with the name after holding the request this many milliseconds (at most 10 s).
    Slow(u64),
    /// Fail on purpose, for testing how a proxy copes.
    Fail(Failure),
}

/// The ways `/fail/...` misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// `/fail/close`: close the connection without answering.
    Close,
    /// `/fail/truncate`: promise 100 bytes, send 10, close.
    Truncate,
    /// `/fail/garbage`: answer with something that is not HTTP, then close.
    Garbage,
    /// `/fail/reset`: promise 100 bytes, send 10, reset the connection.
    Reset,
    /// `/fail/gzip-coded`: a body with a transfer-coding other than chunked (`gzip`, legal
    /// in HTTP/1.1, delimited by the close), which no HTTP/2 response can carry.
    GzipCoded,
}

/// Serves requests on `stream` until the peer closes, asks to close, errs, or the server stops.
/// `other` holds the acceptor's handle on the same socket, dropped for a reset so that closing
/// `stream` closes the socket.
pub(super) fn connection(stream: TcpStream, shared: &Shared, other: &Mutex<Option<TcpStream>>) {
    let mut conn = BufConn::new(stream);
    let mut body = Vec::new();
    let mut out = Vec::with_capacity(4096);
    while !shared.stop.load(Ordering::SeqCst) {
        match serve_one(&mut conn, shared, &mut body, &mut out) {
            Ok(true) => {}
            Ok(false) => {
                linger_close(conn.get_mut());
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                other.lock().unwrap_or_else(PoisonError::into_inner).take();
                return;
            }
            Err(_) => return,
        }
    }
}

/// Serves one request; `Ok(true)` when the connection stays open.
fn serve_one(
    conn: &mut BufConn<TcpStream>,
    shared: &Shared,
    body: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    out.clear();
    body.clear();
    let head = match read_head(conn) {
        Ok(Some(head)) => head,
        Ok(None) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return bad_request(conn, shared, out);
        }
        Err(e) => return Err(e),
    };
    let Some(route) = route(&head.target) else {
        // The body is never read, so the connection cannot be reused.
        return bad_request(conn, shared, out);
    };
    if head.expect_continue && head.framing != Framing::Length(0) {
        conn.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let keep = matches!(route, Route::Echo | Route::EchoChunked);
    let sink = if keep { Some(&mut *body) } else { None };
    let read = match head.framing {
        Framing::Length(n) => conn.read_exact_body(n, sink),
        Framing::Chunked => conn.read_chunked_body(sink),
    };
    match read {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return bad_request(conn, shared, out);
        }
        Err(e) => return Err(e),
    }
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let route = match shared.next_misbehaviour() {
        None => route,
        Some(Misbehave::Status(code)) => Route::Status(code),
        Some(Misbehave::Hold) => {
            hold(shared, conn.get_mut())?;
            route
        }
        Some(Misbehave::Reset) => return Err(reset(conn.get_mut())),
    };
    let head_only = head.method == "HEAD";
    let name = shared.name.as_bytes();
    let resp = Response {
        name,
        close: head.close,
        http10: head.http10,
        head_only,
    };
    let stream = conn.get_mut();
    let failing = shared.failing.load(Ordering::SeqCst);
    if failing != 0 {
        resp.fixed(stream, out, failing, name)?;
        return Ok(!head.close);
    }
    match route {
        Route::Echo => resp.fixed(stream, out, 200, body)?,
        Route::EchoChunked => {
            let chunks = body.chunks(ECHO_CHUNK).map(Chunk::Bytes);
            resp.chunked(stream, out, chunks)?;
        }
        Route::Chunked { chunks, size } => {
            let chunks = (0..chunks).map(|k| Chunk::Alphabet {
                offset: k * size as u64,
                size,
            });
            resp.chunked(stream, out, chunks)?;
        }
        Route::Headers => {
            for (name, value) in &head.headers {
                body.extend_from_slice(name.as_bytes());
                body.extend_from_slice(b": ");
                body.extend_from_slice(value);
                body.push(b'\n');
            }
            resp.fixed(stream, out, 200, body)?;
        }
        Route::Status(code) => resp.fixed(stream, out, code, name)?,
        Route::Name => resp.fixed(stream, out, 200, name)?,
        Route::EarlyHints => {
            stream
                .write_all(b"HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload\r\n\r\n")?;
            resp.fixed(stream, out, 200, name)?;
        }
        Route::Slow(ms) => {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            resp.fixed(stream, out, 200, name)?;
        }
        Route::Fail(failure) => {
            match failure {
                Failure::Close => {}
                Failure::Truncate => {
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")?;
                }
                Failure::Garbage => stream.write_all(b"NOT HTTP AT ALL\r\n\r\n")?,
                Failure::Reset => {
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")?;
                    return Err(reset(stream));
                }
                Failure::GzipCoded => {
                    // Not real gzip: only the coding's name matters to a proxy.
                    stream.write_all(
                        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\nconnection: close\r\n\r\nnot-really-gzip",
                    )?;
                }
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return Ok(false);
        }
    }
    Ok(!head.close)
}

/// Makes closing `stream` send a TCP reset, not FIN (a zero linger time), and returns the
/// error that tells [`connection`] to close it so.
fn reset(stream: &TcpStream) -> io::Error {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
    io::ErrorKind::ConnectionReset.into()
}

/// Longest a held request waits for its release.
const MAX_HOLD: Duration = Duration::from_secs(60);

/// Waits until the test releases held requests or the server stops (bounded by [`MAX_HOLD`]);
/// a client that closes `stream` meanwhile abandons the request, which is counted and ends
/// the connection.
fn hold(shared: &Shared, stream: &TcpStream) -> io::Result<()> {
    let deadline = std::time::Instant::now() + MAX_HOLD;
    while !shared.released.load(Ordering::SeqCst)
        && !shared.stop.load(Ordering::SeqCst)
        && std::time::Instant::now() < deadline
    {
        if peer_closed(stream) {
            shared.abandoned.fetch_add(1, Ordering::SeqCst);
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Whether the peer has closed (or reset) `stream`, without consuming what it sent.
fn peer_closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let closed = match stream.peek(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    let _ = stream.set_nonblocking(false);
    closed
}

/// Answers 400 and asks the caller to close the connection.
fn bad_request(
    conn: &mut BufConn<TcpStream>,
    shared: &Shared,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    let resp = Response {
        name: shared.name.as_bytes(),
        close: true,
        http10: false,
        head_only: false,
    };
    resp.fixed(conn.get_mut(), out, 400, b"bad request\n")?;
    Ok(false)
}

/// Reads one request head; `Ok(None)` on a clean EOF before any byte of it.
fn read_head(conn: &mut BufConn<TcpStream>) -> io::Result<Option<Head>> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(conn.buffered()) {
            Ok(httparse::Status::Complete(n)) => {
                let head = Head::from_parsed(&req)?;
                conn.consume(n);
                return Ok(Some(head));
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err(invalid("malformed request head")),
        }
        if conn.fill()? == 0 {
            if conn.buffered().is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "eof inside request head",
            ));
        }
    }
}

impl Head {
    /// Copies the head out of the parser and decides framing and persistence.
    fn from_parsed(req: &httparse::Request<'_, '_>) -> io::Result<Self> {
        let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
            return Err(invalid("incomplete request line"));
        };
        let http10 = version == 0;
        let mut length: Option<u64> = None;
        let mut chunked: Option<bool> = None;
        let mut close = false;
        let mut keep_alive = false;
        let mut expect_continue = false;
        let mut headers = Vec::with_capacity(req.headers.len());
        for h in req.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = parse_content_length(h.value)?;
                if length.is_some_and(|prev| prev != n) {
                    return Err(invalid("conflicting content-length"));
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // Only the last coding matters for framing, and it must be chunked.
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
                chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                close |= has_token(h.value, "close");
                keep_alive |= has_token(h.value, "keep-alive");
            } else if name.eq_ignore_ascii_case("expect") {
                expect_continue = !http10 && h.value.eq_ignore_ascii_case(b"100-continue");
            }
            headers.push((name.to_owned(), h.value.to_vec()));
        }
        let framing = match (chunked, length) {
            // Both framings at once is how requests get smuggled: refuse.
            (Some(_), Some(_)) => return Err(invalid("both transfer-encoding and content-length")),
            (Some(true), None) => Framing::Chunked,
            (Some(false), None) => return Err(invalid("transfer-encoding without chunked")),
            (None, n) => Framing::Length(n.unwrap_or(0)),
        };
        Ok(Self {
            method: method.to_owned(),
            target: path.to_owned(),
            http10,
            headers,
            close: close || (http10 && !keep_alive),
            framing,
            expect_continue,
        })
    }
}

/// Maps a request target to a route; `None` for malformed parameters (answered with 400).
fn route(target: &str) -> Option<Route> {
    // Absolute-form targets (sent to proxies) carry the origin first.
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Some(match path {
        "/echo" => Route::Echo,
        "/echo-chunked" => Route::EchoChunked,
        "/headers" => Route::Headers,
        "/fail/close" => Route::Fail(Failure::Close),
        "/fail/truncate" => Route::Fail(Failure::Truncate),
        "/fail/garbage" => Route::Fail(Failure::Garbage),
        "/fail/reset" => Route::Fail(Failure::Reset),
        "/fail/gzip-coded" => Route::Fail(Failure::GzipCoded),
        "/early-hints" => Route::EarlyHints,
        "/chunked" => {
            let (mut chunks, mut size) = (1u64, 1024usize);
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("chunks", v)) => chunks = v.parse().ok()?,
                    Some(("size", v)) => size = v.parse().ok().filter(|&s| s <= 1 << 24)?,
                    _ => {}
                }
            }
            Route::Chunked { chunks, size }
        }
        _ if path.starts_with("/slow/") => {
            let ms: u64 = path["/slow/".len()..].parse().ok()?;
            if ms > 10_000 {
                return None;
            }
            Route::Slow(ms)
        }
        _ => match path.strip_prefix("/status/") {
            Some(code) => {
                let code: u16 = code.parse().ok()?;
                if !(200..=599).contains(&code) {
                    return None;
                }
                Route::Status(code)
            }
            None => Route::Name,
        },
    })
}

/// One piece of a chunked response body.
#[derive(Debug, Clone, Copy)]
enum Chunk<'a> {
    Bytes(&'a [u8]),
    /// `size` bytes of the alphabet pattern starting at body offset `offset`.
    Alphabet {
        offset: u64,
        size: usize,
    },
}

impl Chunk<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Bytes(b) => b.len(),
            Self::Alphabet { size, .. } => *size,
        }
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Self::Bytes(b) => out.extend_from_slice(b),
            Self::Alphabet { offset, size } => {
                // Byte i of the body is b'a' + i % 26.
                out.extend((*offset..*offset + *size as u64).map(|i| b'a' + (i % 26) as u8));
            }
        }
    }
}

/// How to frame one response.
#[derive(Debug, Clone, Copy)]
struct Response<'a> {
    name: &'a [u8],
    close: bool,
    http10: bool,
    head_only: bool,
}

impl Response<'_> {
    /// Writes the status line and common headers, without the framing header or final CRLF.
    fn start(&self, out: &mut Vec<u8>, code: u16) {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(code.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason(code).as_bytes());
        out.extend_from_slice(b"\r\nx-upstream: ");
        out.extend_from_slice(self.name);
        out.extend_from_slice(b"\r\ncontent-type: text/plain\r\n");
        if self.close {
            out.extend_from_slice(b"connection: close\r\n");
        } else if self.http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }

    /// Writes a response with a `content-length` body.
    fn fixed(
        &self,
        io: &mut impl Write,
        out: &mut Vec<u8>,
        code: u16,
        body: &[u8],
    ) -> io::Result<()> {
        self.start(out, code);
        // 204 and 304 never carry a body or a length.
        let bodyless = code == 204 || code == 304;
        if !bodyless {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(body.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !bodyless && !self.head_only {
            out.extend_from_slice(body);
        }
        io.write_all(out)
    }

    /// Writes a 200 with a chunked body (a `content-length` one for HTTP/1.0 clients).
    fn chunked<'c>(
        &self,
        io: &mut impl Write,
        out: &mut Vec<u8>,
        chunks: impl Iterator<Item = Chunk<'c>>,
    ) -> io::Result<()> {
        if self.http10 {
            let mut body = Vec::new();
            chunks.for_each(|c| c.write_to(&mut body));
            return self.fixed(io, out, 200, &body);
        }
        self.start(out, 200);
        out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
        if !self.head_only {
            for chunk in chunks.filter(|c| c.len() > 0) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                chunk.write_to(out);
                out.extend_from_slice(b"\r\n");
                if out.len() >= WRITE_BATCH {
                    io.write_all(out)?;
                    out.clear();
                }
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
        io.write_all(out)
    }
}

/// Closes gracefully: half-close, then drain what the peer still sends so unread bytes do not turn the close into a reset that destroys our last response.
fn linger_close(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut scratch = [0u8; 4096];
    let mut budget = 1 << 20;
    while budget > 0 {
        match stream.read(&mut scratch) {
            Ok(0) | Err(_) => break,
            Ok(n) => budget -= n.min(budget),
        }
    }
}

/// The reason phrase for the status codes we are likely to be asked for.
fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_paths_and_parameters() {
        assert_eq!(route("/echo"), Some(Route::Echo));
        assert_eq!(route("/echo-chunked?x=1"), Some(Route::EchoChunked));
        assert_eq!(
            route("/chunked?chunks=3&size=7"),
            Some(Route::Chunked { chunks: 3, size: 7 })
        );
        assert_eq!(route("/chunked?chunks=x"), None);
        assert_eq!(route("/status/503"), Some(Route::Status(503)));
        assert_eq!(route("/status/99"), None);
        assert_eq!(route("/slow/50"), Some(Route::Slow(50)));
        assert_eq!(route("/slow/10001"), None);
        assert_eq!(route("http://example.com/headers"), Some(Route::Headers));
        assert_eq!(route("/anything"), Some(Route::Name));
    }

    #[test]
    fn alphabet_chunks_continue_across_offsets() {
        let mut out = Vec::new();
        Chunk::Alphabet {
            offset: 24,
            size: 4,
        }
        .write_to(&mut out);
        assert_eq!(out, b"yzab");
    }
}

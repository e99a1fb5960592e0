//! Buffered HTTP/1.1 byte reading shared by the upstream and meshload: heads, fixed, chunked and close-delimited bodies.

use std::io::{self, Read};
use std::time::Instant;

/// Initial read buffer size; heads usually fit in one read.
const INITIAL_BUF: usize = 16 * 1024;

/// Largest head (or chunk-size/trailer line) we buffer before giving up.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// A reader with its own buffer so a head and the first body bytes can arrive in one read.
#[derive(Debug)]
pub(crate) struct BufConn<S> {
    io: S,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// When set, a read that returns after this instant fails with `TimedOut`.
    pub(crate) deadline: Option<Instant>,
}

/// Where body bytes go: appended to a vector, or dropped.
pub(crate) type Sink<'a> = Option<&'a mut Vec<u8>>;

/// An `InvalidData` error: the peer sent something that is not HTTP/1.1.
pub(crate) fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn unexpected_eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed mid-message",
    )
}

impl<S: Read> BufConn<S> {
    /// Wraps `io` with an empty buffer and no deadline.
    pub(crate) fn new(io: S) -> Self {
        Self {
            io,
            buf: vec![0; INITIAL_BUF],
            start: 0,
            end: 0,
            deadline: None,
        }
    }

    /// The underlying stream, e.g. to write a response on it.
    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// Bytes read but not yet consumed.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` buffered bytes as consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start);
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes after the buffered ones; `Ok(0)` means EOF.
    ///
    /// Fails with `InvalidData` once `MAX_HEAD` bytes are buffered without being consumed.
    pub(crate) fn fill(&mut self) -> io::Result<usize> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_HEAD {
                let len = (self.buf.len() * 2).min(MAX_HEAD);
                self.buf.resize(len, 0);
            } else {
                return Err(invalid("head or line too large"));
            }
        }
        let n = loop {
            match self.io.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if self.deadline.is_some_and(|d| Instant::now() > d) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "response deadline passed",
            ));
        }
        self.end += n;
        Ok(n)
    }

    /// Reads exactly `len` body bytes into `out`.
    pub(crate) fn read_exact_body(&mut self, len: u64, mut out: Sink<'_>) -> io::Result<()> {
        let mut left = len;
        while left > 0 {
            if self.buffered().is_empty() && self.fill()? == 0 {
                return Err(unexpected_eof());
            }
            let take = self
                .buffered()
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            if let Some(out) = out.as_deref_mut() {
                out.extend_from_slice(&self.buffered()[..take]);
            }
            self.consume(take);
            left -= take as u64;
        }
        Ok(())
    }

    /// Reads the body until the peer closes the connection.
    pub(crate) fn read_to_eof(&mut self, mut out: Sink<'_>) -> io::Result<()> {
        loop {
            if let Some(out) = out.as_deref_mut() {
                out.extend_from_slice(self.buffered());
            }
            let n = self.buffered().len();
            self.consume(n);
            if self.fill()? == 0 {
                return Ok(());
            }
        }
    }

    /// Decodes a `Transfer-Encoding: chunked` body into `out`, skipping extensions and trailers.
    pub(crate) fn read_chunked_body(&mut self, mut out: Sink<'_>) -> io::Result<()> {
        loop {
            let (content, total) = self.next_line()?;
            let size = parse_chunk_size(&self.buffered()[..content])?;
            self.consume(total);
            if size == 0 {
                // Trailer fields until the empty line; we have no use for them.
                loop {
                    let (content, total) = self.next_line()?;
                    self.consume(total);
                    if content == 0 {
                        return Ok(());
                    }
                }
            }
            self.read_exact_body(size, out.as_deref_mut())?;
            let (content, total) = self.next_line()?;
            if content != 0 {
                return Err(invalid("chunk data longer than its size"));
            }
            self.consume(total);
        }
    }

    /// Buffers a whole CRLF-terminated line; returns (length without CRLF, length with it).
    fn next_line(&mut self) -> io::Result<(usize, usize)> {
        let mut searched = 0;
        loop {
            let buf = self.buffered();
            if let Some(lf) = buf[searched..].iter().position(|&b| b == b'\n') {
                let lf = searched + lf;
                if lf == 0 || buf[lf - 1] != b'\r' {
                    return Err(invalid("line not terminated by CRLF"));
                }
                return Ok((lf - 1, lf + 1));
            }
            searched = buf.len();
            if self.fill()? == 0 {
                return Err(unexpected_eof());
            }
        }
    }
}

/// Parses a chunk-size line (hex digits, optional `;ext`), as in RFC 9112 section 7.1.
pub(crate) fn parse_chunk_size(line: &[u8]) -> io::Result<u64> {
    let digits = line
        .iter()
        .position(|&b| b == b';')
        .map_or(line, |semi| &line[..semi]);
    // Whitespace before an extension is tolerated by most implementations ("BWS").
    let digits = digits.trim_ascii_end();
    if digits.is_empty() || digits.len() > 15 {
        return Err(invalid("bad chunk size"));
    }
    let mut size = 0u64;
    for &b in digits {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(invalid("bad chunk size")),
        };
        size = size * 16 + u64::from(d);
    }
    Ok(size)
}

/// True when a comma-separated header value lists `token` (case-insensitive).
pub(crate) fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parses a `Content-Length` value: ASCII digits only.
pub(crate) fn parse_content_length(value: &[u8]) -> io::Result<u64> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(invalid("bad content-length"));
    }
    v.iter()
        .try_fold(0u64, |n, &b| {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        })
        .ok_or_else(|| invalid("bad content-length"))
}

#[cfg(test)]
mod tests;

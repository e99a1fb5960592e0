//! A connection with its own read buffer, in monoio's rent style: the buffer is lent to the
//! kernel (or, over TLS, filled from rustls) for each read and comes back with the bytes in it.

use std::io;

use monoio::net::TcpStream;

use crate::stream::{Prefixed, Stream};

/// Initial read buffer size; grows only for heads larger than this.
const READ_BUFFER: usize = 16 * 1024;

/// A connection and the bytes read from it but not yet consumed.
#[derive(Debug)]
pub struct Conn {
    /// The transport.
    pub stream: Stream,
    /// Bytes read so far; `buf[pos..]` is unconsumed.
    buf: Vec<u8>,
    pos: usize,
}

impl Conn {
    /// Wraps a connected TCP stream.
    pub fn new(stream: TcpStream) -> Self {
        Self::with_buffer(Stream::Plain(stream), Vec::with_capacity(READ_BUFFER))
    }

    /// Wraps a connected transport.
    pub fn from_stream(stream: Stream) -> Self {
        Self::with_buffer(stream, Vec::with_capacity(READ_BUFFER))
    }

    /// Wraps a transport with a read buffer (empty; its allocation is kept).
    pub fn with_buffer(stream: Stream, mut buf: Vec<u8>) -> Self {
        buf.clear();
        Self {
            stream,
            buf,
            pos: 0,
        }
    }

    /// The transport, the read buffer (its bytes unconsumed) and its position: what taking the
    /// connection over for TLS needs.
    pub fn into_parts(self) -> (Stream, Vec<u8>, usize) {
        (self.stream, self.buf, self.pos)
    }

    /// For a bridged stream, a connection that reads what this one would have read (the
    /// buffered bytes first), this one reading its end from now on; see
    /// [`Stream::take_bridged_input`].
    pub fn take_bridged_input(&mut self) -> Option<Self> {
        let stream = self.stream.take_bridged_input()?;
        let buf = self.buffered().to_vec();
        self.consume(buf.len());
        Some(Self {
            stream,
            buf,
            pos: 0,
        })
    }

    /// The connection in poll style (tokio's IO traits), its unconsumed bytes read first.
    pub fn into_poll(self) -> io::Result<Prefixed> {
        let prefix = self.buf[self.pos..].to_vec();
        Ok(Prefixed::new(prefix, self.stream.into_poll()?))
    }

    /// Unconsumed bytes.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Whether the buffered bytes may hold a complete head: a blank line (`\n\n` or `\n\r\n`)
    /// ends at or after `from`. Parsing only then keeps a head sent a byte at a time from
    /// costing quadratic work.
    pub fn may_hold_head(&self, from: usize) -> bool {
        let bytes = self.buffered();
        let tail = &bytes[from.saturating_sub(2).min(bytes.len())..];
        tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n")
    }

    /// Marks `n` buffered bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        debug_assert!(self.pos <= self.buf.len());
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Reads more bytes after the buffered ones; `Ok(0)` is end of stream.
    ///
    /// If the returned future is dropped before it completes (a timeout, a drain), the
    /// buffered bytes are gone with it: the caller must close the connection.
    pub async fn fill(&mut self) -> io::Result<usize> {
        // Consumed bytes go first (usually none are left: consume() resets when empty), so an
        // abandoned read leaves `pos` at 0 and `buffered()` stays in bounds.
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < READ_BUFFER / 4 {
            self.buf.reserve(READ_BUFFER);
        }
        let buf = std::mem::take(&mut self.buf);
        let (result, buf) = self.stream.read_into(buf).await;
        self.buf = buf;
        result
    }

    /// Writes every buffered byte to `dst` (bytes that came with a head, before a relay) and
    /// says how many there were.
    pub async fn forward_all_buffered(&mut self, dst: &mut Stream) -> io::Result<usize> {
        let pending = self.buffered().len();
        self.forward_buffered(dst, pending).await?;
        Ok(pending)
    }

    /// Writes `range` of the buffered bytes to `dst` and consumes them.
    pub async fn forward_buffered(&mut self, dst: &mut Stream, len: usize) -> io::Result<()> {
        let range = self.pos..self.pos + len;
        let buf = std::mem::take(&mut self.buf);
        let (result, buf) = dst.write_range(buf, range).await;
        self.buf = buf;
        result?;
        self.consume(len);
        Ok(())
    }
}

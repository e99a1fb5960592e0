//! A TCP connection with its own read buffer, in monoio's rent style: the buffer is lent to
//! the kernel for each read and comes back with the bytes in it.

use std::io;
use std::ops::Range;

use monoio::buf::{IoBuf, IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

/// Initial read buffer size; grows only for heads larger than this.
const READ_BUFFER: usize = 16 * 1024;

/// A connection and the bytes read from it but not yet consumed.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes read so far; `buf[pos..]` is unconsumed.
    buf: Vec<u8>,
    pos: usize,
}

impl Conn {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(READ_BUFFER),
            pos: 0,
        }
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
        let len = buf.len();
        let slice: SliceMut<Vec<u8>> = buf.slice_mut(len..);
        let (result, slice) = self.stream.read(slice).await;
        self.buf = slice.into_inner();
        result
    }

    /// Writes `range` of the buffered bytes to `dst` and consumes them.
    pub async fn forward_buffered(&mut self, dst: &mut TcpStream, len: usize) -> io::Result<()> {
        let range = self.pos..self.pos + len;
        let buf = std::mem::take(&mut self.buf);
        let (result, buf) = write_range(dst, buf, range).await;
        self.buf = buf;
        result?;
        self.consume(len);
        Ok(())
    }
}

/// Writes `buf[range]` fully, returning the buffer for reuse.
pub async fn write_range(
    dst: &mut TcpStream,
    buf: Vec<u8>,
    range: Range<usize>,
) -> (io::Result<()>, Vec<u8>) {
    if range.is_empty() {
        return (Ok(()), buf);
    }
    let (result, slice) = dst.write_all(buf.slice(range)).await;
    (result.map(drop), slice.into_inner())
}

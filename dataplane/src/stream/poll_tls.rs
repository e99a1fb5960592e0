//! A TLS session in poll style over monoio's poll-IO socket, for protocol code written
//! against tokio's `AsyncRead`/`AsyncWrite` (the h2 crate). Plaintext moves through rustls's
//! buffers; ciphertext moves through the socket with `Pending` mapped to `WouldBlock` for
//! rustls's synchronous `read_tls`/`write_tls`.

use std::io::{self, BufRead as _, Read, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use monoio::net::tcp::stream_poll::TcpStreamPoll;
use rustls::Connection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most ciphertext read from the socket at once: a whole record and its header.
const CIPHERTEXT_CHUNK: usize = 17 * 1024;

/// A TLS session (handshake done) over a poll-IO TCP socket.
pub struct PollTls {
    tcp: TcpStreamPoll,
    session: Connection,
    /// Ciphertext read from the socket (first, what was read before the switch to poll IO);
    /// `unread[unread_pos..unread_end]` is not handed to rustls yet.
    unread: Vec<u8>,
    unread_pos: usize,
    unread_end: usize,
    close_notify_sent: bool,
}

impl std::fmt::Debug for PollTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollTls")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

impl PollTls {
    pub(super) fn new(tcp: TcpStreamPoll, session: Connection, unread: Vec<u8>) -> Self {
        Self {
            tcp,
            session,
            unread_end: unread.len(),
            unread,
            unread_pos: 0,
            close_notify_sent: false,
        }
    }

    /// Sends every record rustls has ready; `Pending` while the socket cannot take them.
    fn poll_send_records(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.session.wants_write() {
            let mut socket = SyncSocket {
                tcp: &mut self.tcp,
                cx,
            };
            match self.session.write_tls(&mut socket) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Hands rustls more ciphertext and processes it; `Ok(0)` is the socket's end.
    fn poll_receive_records(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.unread_pos == self.unread_end {
            // One socket read of up to a whole record: rustls alone reads 4 KiB at a time, so
            // a full record would cost five reads.
            if self.unread.len() < CIPHERTEXT_CHUNK {
                self.unread.resize(CIPHERTEXT_CHUNK, 0);
            }
            let mut read = ReadBuf::new(&mut self.unread);
            ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut read))?;
            (self.unread_pos, self.unread_end) = (0, read.filled().len());
        }
        // At the socket's end this hands rustls nothing, which it takes for the end.
        let mut unread = &self.unread[self.unread_pos..self.unread_end];
        let read = self.session.read_tls(&mut unread);
        if let Ok(n) = read {
            self.unread_pos += n;
        }
        let n = read?;
        if let Err(e) = self.session.process_new_packets() {
            // The alert explaining the failure goes out if the socket takes it now.
            let _ = self.poll_send_records(cx);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncRead for PollTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            // Copied out of rustls's buffer: reading into `buf` would first zero all of its
            // unfilled part, h2's whole read buffer, on every read.
            let mut reader = this.session.reader();
            match reader.fill_buf() {
                // Zero bytes: the peer's close_notify, the end of the stream.
                Ok(plaintext) => {
                    let n = plaintext.len().min(buf.remaining());
                    buf.put_slice(&plaintext[..n]);
                    reader.consume(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // A TCP end without close_notify is a truncation.
                Err(e) => return Poll::Ready(Err(e)),
            }
            // A key update or an alert may need an answer before more arrives.
            if let Poll::Ready(Err(e)) = this.poll_send_records(cx) {
                return Poll::Ready(Err(e));
            }
            // At the socket's end rustls has now seen it, and the next read reports it.
            ready!(this.poll_receive_records(cx))?;
        }
    }
}

impl AsyncWrite for PollTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Records already made go first: plaintext waits in the caller while the socket is
        // full, not in rustls.
        ready!(this.poll_send_records(cx))?;
        let n = this.session.writer().write(buf)?;
        if let Poll::Ready(Err(e)) = this.poll_send_records(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_records(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_notify_sent {
            this.session.send_close_notify();
            this.close_notify_sent = true;
        }
        ready!(this.poll_send_records(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

/// A connection's transport in poll style: plain TCP or TLS.
#[derive(Debug)]
pub enum PollStream {
    Plain(TcpStreamPoll),
    Tls(Box<PollTls>),
}

impl AsyncRead for PollStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PollStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The poll-IO socket as a synchronous reader and writer for rustls: `Pending` becomes
/// `WouldBlock`, with the task's waker registered.
struct SyncSocket<'a, 'b> {
    tcp: &'a mut TcpStreamPoll,
    cx: &'a mut Context<'b>,
}

impl Read for SyncSocket<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut read = ReadBuf::new(buf);
        match Pin::new(&mut *self.tcp).poll_read(self.cx, &mut read) {
            Poll::Ready(Ok(())) => Ok(read.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for SyncSocket<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.tcp).poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// rustls hands every record it has ready at once: one `writev`, not one write a record.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.tcp).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.tcp).poll_flush(self.cx) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

//! The byte stream under a [`Conn`](crate::conn::Conn): a TCP socket, or a TLS session over
//! one. TLS is rustls's buffered connection driven with monoio's rent IO: ciphertext is read
//! into the stream's own buffer and handed to rustls, decrypted bytes are appended to the
//! caller's buffer, and each write sends the records rustls made of it before returning.
//!
//! monoio-rustls is not used: its stream gives no access to the session after the handshake
//! (so no peer certificate, no caller identity), and bytes read before TLS was recognised
//! (permissive mode's sniffing) could not be handed to it.

use std::io::{self, BufRead as _, Write as _};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

use monoio::buf::{IoBuf, IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

/// Ciphertext read per socket read: a whole TLS record (16 KiB and its overhead).
const RECORD_BUFFER: usize = 17 * 1024;

/// The first byte of a TLS record carrying a handshake message (a ClientHello's record).
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A connection's transport.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, handshake done.
    Tls(Box<TlsStream>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls) => &tls.tcp,
        }
    }

    /// The peer's SPIFFE ID, proven in the TLS handshake; `None` over plain TCP.
    pub fn peer_identity(&self) -> Option<&str> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(tls) => tls.peer_identity.as_deref(),
        }
    }

    /// Whether the stream is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// Whether input beyond what was read out is waiting inside the stream (TLS records
    /// received but not yet consumed): an idle pooled connection with some is not reused.
    pub fn has_pending_input(&mut self) -> bool {
        match self {
            Self::Plain(_) => false,
            Self::Tls(tls) => tls.rx_pos < tls.rx.len() || tls.has_plaintext(),
        }
    }

    /// Reads into `buf`'s spare capacity, after its bytes; `Ok(0)` is the end of the stream.
    pub async fn read_into(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Self::Plain(tcp) => {
                let len = buf.len();
                let slice: SliceMut<Vec<u8>> = buf.slice_mut(len..);
                let (result, slice) = tcp.read(slice).await;
                (result, slice.into_inner())
            }
            Self::Tls(tls) => tls.read_into(buf).await,
        }
    }

    /// Writes `buf[range]` fully, returning the buffer for reuse.
    pub async fn write_range(
        &mut self,
        buf: Vec<u8>,
        range: Range<usize>,
    ) -> (io::Result<()>, Vec<u8>) {
        if range.is_empty() {
            return (Ok(()), buf);
        }
        match self {
            Self::Plain(tcp) => {
                let (result, slice) = tcp.write_all(buf.slice(range)).await;
                (result.map(drop), slice.into_inner())
            }
            Self::Tls(tls) => tls.write_range(buf, range).await,
        }
    }

    /// Ends the sending half: TLS sends its close_notify first.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(tcp) => tcp.shutdown().await,
            Self::Tls(tls) => {
                tls.session.send_close_notify();
                let _ = tls.flush().await;
                tls.tcp.shutdown().await
            }
        }
    }

    /// Waits until a read would not block: bytes buffered inside the stream, or the socket
    /// readable. Unlike a read, abandoning the wait loses nothing.
    pub async fn readable(&mut self) -> io::Result<()> {
        if self.has_pending_input() {
            return Ok(());
        }
        self.tcp().readable(false).await
    }
}

/// A TLS session over a TCP socket.
pub struct TlsStream {
    tcp: TcpStream,
    session: Connection,
    /// Ciphertext read from the socket; `rx[rx_pos..]` is not handed to rustls yet.
    rx: Vec<u8>,
    rx_pos: usize,
    /// Records rustls produced, on their way to the socket.
    tx: Vec<u8>,
    /// The peer's SPIFFE ID from its verified certificate.
    peer_identity: Option<String>,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("tcp", &self.tcp)
            .field("peer_identity", &self.peer_identity)
            .finish_non_exhaustive()
    }
}

impl TlsStream {
    /// Completes a server handshake on `tcp`, whose first bytes (`received`) were already read
    /// to tell TLS from plaintext.
    pub async fn accept(
        tcp: TcpStream,
        config: Arc<ServerConfig>,
        received: &[u8],
    ) -> io::Result<Self> {
        let session = ServerConnection::new(config).map_err(io::Error::other)?;
        let mut rx = Vec::with_capacity(RECORD_BUFFER.max(received.len()));
        rx.extend_from_slice(received);
        let mut stream = Self::new(tcp, session.into(), rx);
        stream.handshake().await?;
        Ok(stream)
    }

    /// Completes a client handshake with the server at `addr`. The certificate verifier in
    /// `config` decides who the server must be (secure naming), so the name sent is the
    /// address, which TLS puts in no SNI.
    pub async fn connect(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        addr: SocketAddr,
    ) -> io::Result<Self> {
        let name = ServerName::IpAddress(addr.ip().into());
        let session = ClientConnection::new(config, name).map_err(io::Error::other)?;
        let rx = Vec::with_capacity(RECORD_BUFFER);
        let mut stream = Self::new(tcp, session.into(), rx);
        stream.handshake().await?;
        Ok(stream)
    }

    fn new(tcp: TcpStream, session: Connection, rx: Vec<u8>) -> Self {
        Self {
            tcp,
            session,
            rx,
            rx_pos: 0,
            tx: Vec::new(),
            peer_identity: None,
        }
    }

    async fn handshake(&mut self) -> io::Result<()> {
        while self.session.is_handshaking() {
            if self.session.wants_write() {
                self.flush().await?;
                continue;
            }
            if self.rx_pos == self.rx.len() && self.read_socket().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection during the TLS handshake",
                ));
            }
            self.feed().await?;
        }
        // The last flight (a client's Finished) may still be waiting to go out.
        self.flush().await?;
        self.peer_identity = self
            .session
            .peer_certificates()
            .and_then(crate::tls::peer_spiffe_id);
        Ok(())
    }

    /// Whether a read would return without the socket: plaintext, or the end of the stream
    /// (a close_notify or an EOF rustls has seen) to report.
    fn has_plaintext(&mut self) -> bool {
        match self.session.reader().into_first_chunk() {
            // Data, or an empty chunk: the close_notify came.
            Ok(_) => true,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        }
    }

    async fn read_into(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        loop {
            let read = match self.session.reader().into_first_chunk() {
                Ok(chunk) => {
                    // Empty: the peer's close_notify.
                    buf.extend_from_slice(chunk);
                    Ok(chunk.len())
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(None),
                Err(e) => Err(Some(e)),
            };
            match read {
                Ok(n) => {
                    self.session.reader().consume(n);
                    return (Ok(n), buf);
                }
                Err(Some(e)) => return (Err(e), buf),
                Err(None) => {}
            }
            // A key update or an alert may need an answer before more arrives.
            if let Err(e) = self.flush().await {
                return (Err(e), buf);
            }
            if self.rx_pos == self.rx.len() {
                match self.read_socket().await {
                    Ok(0) => {
                        // TCP EOF: rustls then reports a clean or an unclean end.
                        let _ = self.session.read_tls(&mut io::empty());
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => return (Err(e), buf),
                }
            }
            if let Err(e) = self.feed().await {
                return (Err(e), buf);
            }
        }
    }

    async fn write_range(
        &mut self,
        buf: Vec<u8>,
        range: Range<usize>,
    ) -> (io::Result<()>, Vec<u8>) {
        let mut at = range.start;
        while at < range.end {
            match self.session.writer().write(&buf[at..range.end]) {
                Ok(n) => at += n,
                Err(e) => return (Err(e), buf),
            }
            if let Err(e) = self.flush().await {
                return (Err(e), buf);
            }
        }
        (Ok(()), buf)
    }

    /// Reads ciphertext into the empty `rx`.
    async fn read_socket(&mut self) -> io::Result<usize> {
        let mut rx = std::mem::take(&mut self.rx);
        rx.clear();
        self.rx_pos = 0;
        if rx.capacity() < RECORD_BUFFER {
            rx.reserve(RECORD_BUFFER);
        }
        let (result, rx) = self.tcp.read(rx).await;
        self.rx = rx;
        result
    }

    /// Hands buffered ciphertext to rustls and processes it. A TLS error sends its alert to
    /// the peer before it is returned.
    async fn feed(&mut self) -> io::Result<()> {
        let mut pending = &self.rx[self.rx_pos..];
        let n = self.session.read_tls(&mut pending)?;
        self.rx_pos += n;
        if let Err(e) = self.session.process_new_packets() {
            let _ = self.flush().await;
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(())
    }

    /// Sends every record rustls has ready.
    async fn flush(&mut self) -> io::Result<()> {
        while self.session.wants_write() {
            self.session.write_tls(&mut self.tx)?;
        }
        if self.tx.is_empty() {
            return Ok(());
        }
        let tx = std::mem::take(&mut self.tx);
        let (result, mut tx) = self.tcp.write_all(tx).await;
        tx.clear();
        self.tx = tx;
        result.map(drop)
    }
}

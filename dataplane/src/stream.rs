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
use std::os::fd::AsRawFd as _;
use std::sync::Arc;

use monoio::buf::{IoBuf, IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, IntoPollIo as _};
use monoio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use tokio::sync::mpsc;

use crate::sys;

mod poll_tls;
mod prefixed;

pub use poll_tls::{PollStream, PollTls};
pub use prefixed::Prefixed;

/// Ciphertext read per socket read: a whole TLS record (16 KiB and its overhead).
const RECORD_BUFFER: usize = 17 * 1024;

/// The first byte of a TLS record carrying a handshake message (a ClientHello's record).
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A connection's transport.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS or a bridged stream. The rarer transports share one boxed variant so that a
    /// `Stream` stays the size of a TCP socket: pooled connections move it on every request,
    /// and a third variant cost +1% instructions per plain request in memcpys.
    Wrapped(Box<Wrapped>),
}

/// The transports behind [`Stream::Wrapped`].
// Always boxed, so a bridged stream's unused bytes live on the heap, once per HTTP/2 stream.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Wrapped {
    /// TLS over TCP, handshake done.
    Tls(TlsStream),
    /// One HTTP/2 stream, carried to the HTTP/1.1 request path as bytes.
    Bridged(Bridge),
}

/// A borrowed [`Stream`], one match away from its transport.
enum Layer<'a> {
    Plain(&'a mut TcpStream),
    Tls(&'a mut TlsStream),
    Bridged(&'a mut Bridge),
}

/// [`Layer`], shared.
enum LayerRef<'a> {
    Plain(&'a TcpStream),
    Tls(&'a TlsStream),
    Bridged(&'a Bridge),
}

impl Stream {
    /// A TLS session as a stream.
    pub fn tls(tls: TlsStream) -> Self {
        Self::Wrapped(Box::new(Wrapped::Tls(tls)))
    }

    /// A bridged HTTP/2 stream as a stream.
    pub fn bridged(bridge: Bridge) -> Self {
        Self::Wrapped(Box::new(Wrapped::Bridged(bridge)))
    }

    /// The stream in poll style (tokio's IO traits), for code that must wait on reading and
    /// writing at once; a bridged stream has no socket to poll.
    pub fn into_poll(self) -> io::Result<PollStream> {
        match self {
            Self::Plain(tcp) => Ok(PollStream::Plain(tcp.into_poll_io()?)),
            Self::Wrapped(wrapped) => match *wrapped {
                Wrapped::Tls(tls) => Ok(PollStream::Tls(Box::new(tls.into_poll()?))),
                Wrapped::Bridged(_) => Err(io::ErrorKind::Unsupported.into()),
            },
        }
    }

    /// For a bridged stream, a stream that reads what this one would have read, this one
    /// reading its end from now on: one task can then read the request while another writes
    /// the response. `None` for a socket.
    pub fn take_bridged_input(&mut self) -> Option<Self> {
        match self.layer() {
            Layer::Bridged(bridge) => Some(Self::bridged(bridge.split(true))),
            _ => None,
        }
    }

    /// For a bridged stream, a stream that writes where this one writes (and reads nothing).
    /// The HTTP/2 side sees the end of what is written once both have gone. `None` for a
    /// socket.
    pub fn bridged_output(&mut self) -> Option<Self> {
        match self.layer() {
            Layer::Bridged(bridge) => Some(Self::bridged(bridge.split(false))),
            _ => None,
        }
    }

    /// Whether this is a bridged HTTP/2 stream.
    pub fn is_bridged(&self) -> bool {
        matches!(self.layer_ref(), LayerRef::Bridged(_))
    }

    fn layer(&mut self) -> Layer<'_> {
        match self {
            Self::Plain(tcp) => Layer::Plain(tcp),
            Self::Wrapped(wrapped) => match wrapped.as_mut() {
                Wrapped::Tls(tls) => Layer::Tls(tls),
                Wrapped::Bridged(bridge) => Layer::Bridged(bridge),
            },
        }
    }

    fn layer_ref(&self) -> LayerRef<'_> {
        match self {
            Self::Plain(tcp) => LayerRef::Plain(tcp),
            Self::Wrapped(wrapped) => match wrapped.as_ref() {
                Wrapped::Tls(tls) => LayerRef::Tls(tls),
                Wrapped::Bridged(bridge) => LayerRef::Bridged(bridge),
            },
        }
    }

    /// The peer's address: the TCP peer, or the HTTP/2 connection's for a bridged stream.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self.layer_ref() {
            LayerRef::Plain(tcp) => tcp.peer_addr(),
            LayerRef::Tls(tls) => tls.tcp.peer_addr(),
            LayerRef::Bridged(bridge) => Ok(bridge.peer_addr),
        }
    }

    /// Whether the kernel says an idle connection was closed by its peer (a bridge never is).
    pub fn idle_is_stale(&self) -> bool {
        match self.layer_ref() {
            LayerRef::Plain(tcp) => sys::idle_connection_is_stale(tcp.as_raw_fd()),
            LayerRef::Tls(tls) => sys::idle_connection_is_stale(tls.tcp.as_raw_fd()),
            LayerRef::Bridged(_) => false,
        }
    }

    /// The peer's SPIFFE ID, proven in the TLS handshake; `None` over plain TCP.
    pub fn peer_identity(&self) -> Option<&str> {
        match self.layer_ref() {
            LayerRef::Plain(_) => None,
            LayerRef::Tls(tls) => tls.peer_identity.as_deref(),
            LayerRef::Bridged(bridge) => bridge.peer_identity.as_deref(),
        }
    }

    /// Waits until a plain TCP stream has bytes to read (or its peer closed) without reading
    /// them, so a wait abandoned at a timeout loses nothing; other transports are ready at once.
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Self::Plain(tcp) => tcp.readable(false).await,
            Self::Wrapped(_) => Ok(()),
        }
    }

    /// Whether the stream is TLS whose handshake chose HTTP/2 by ALPN.
    pub fn negotiated_h2(&self) -> bool {
        matches!(self.layer_ref(), LayerRef::Tls(tls) if tls.negotiated_h2())
    }

    /// Whether the stream is TLS: a bridged stream is when its HTTP/2 connection is (a
    /// client's h2c is not, and a strict port must refuse its streams).
    pub fn is_tls(&self) -> bool {
        match self.layer_ref() {
            LayerRef::Plain(_) => false,
            LayerRef::Tls(_) => true,
            LayerRef::Bridged(bridge) => bridge.over_tls,
        }
    }

    /// Whether input beyond what was read out is waiting inside the stream (TLS records
    /// received but not yet consumed): an idle pooled connection with some is not reused.
    pub fn has_pending_input(&mut self) -> bool {
        match self.layer() {
            Layer::Tls(tls) => tls.rx_pos < tls.rx.len() || tls.has_plaintext(),
            Layer::Plain(_) | Layer::Bridged(_) => false,
        }
    }

    /// Reads into `buf`'s spare capacity, after its bytes; `Ok(0)` is the end of the stream.
    pub async fn read_into(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self.layer() {
            Layer::Plain(tcp) => {
                let len = buf.len();
                let slice: SliceMut<Vec<u8>> = buf.slice_mut(len..);
                let (result, slice) = tcp.read(slice).await;
                (result, slice.into_inner())
            }
            Layer::Tls(tls) => tls.read_into(buf).await,
            Layer::Bridged(bridge) => bridge.read_into(buf).await,
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
        match self.layer() {
            Layer::Plain(tcp) => {
                let (result, slice) = tcp.write_all(buf.slice(range)).await;
                (result.map(drop), slice.into_inner())
            }
            Layer::Tls(tls) => tls.write_range(buf, range).await,
            Layer::Bridged(bridge) => bridge.write_range(buf, range).await,
        }
    }

    /// Ends the sending half: TLS sends its close_notify first.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self.layer() {
            Layer::Plain(tcp) => tcp.shutdown().await,
            Layer::Tls(tls) => {
                tls.session.send_close_notify();
                let _ = tls.flush().await;
                tls.tcp.shutdown().await
            }
            Layer::Bridged(bridge) => {
                bridge.outgoing = None;
                Ok(())
            }
        }
    }
}

/// The HTTP/1.1 side of one bridged HTTP/2 stream (see [`crate::http2`]): the request's bytes
/// arrive in chunks, the response's leave in chunks, each through a bounded channel.
#[derive(Debug)]
pub struct Bridge {
    incoming: mpsc::Receiver<Vec<u8>>,
    /// `None` once the response is complete (the HTTP/1.1 side shut its sending half).
    outgoing: Option<mpsc::Sender<Vec<u8>>>,
    peer_addr: SocketAddr,
    peer_identity: Option<String>,
    /// Whether the HTTP/2 connection carrying it is TLS.
    over_tls: bool,
}

impl Bridge {
    /// A bridged stream reading from `incoming` and writing to `outgoing`, of an HTTP/2
    /// connection with `peer_addr`, TLS when `over_tls` (then its peer proved
    /// `peer_identity`, if any).
    pub fn new(
        (incoming, outgoing): (mpsc::Receiver<Vec<u8>>, mpsc::Sender<Vec<u8>>),
        peer_addr: SocketAddr,
        peer_identity: Option<String>,
        over_tls: bool,
    ) -> Self {
        Self {
            incoming,
            outgoing: Some(outgoing),
            peer_addr,
            peer_identity,
            over_tls,
        }
    }

    /// A bridge on the same stream with one direction's channel: the incoming one taken from
    /// this bridge (which then reads its end), or a copy of the outgoing one.
    fn split(&mut self, take_incoming: bool) -> Self {
        let (_, closed) = mpsc::channel(1);
        let (incoming, outgoing) = if take_incoming {
            (std::mem::replace(&mut self.incoming, closed), None)
        } else {
            (closed, self.outgoing.clone())
        };
        Self {
            incoming,
            outgoing,
            peer_addr: self.peer_addr,
            peer_identity: self.peer_identity.clone(),
            over_tls: self.over_tls,
        }
    }

    async fn read_into(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        // Cancel-safe: a chunk is either received whole or left in the channel.
        match self.incoming.recv().await {
            Some(chunk) if chunk.is_empty() => (Err(io::Error::other(RefusedStream)), buf),
            Some(chunk) => {
                buf.extend_from_slice(&chunk);
                (Ok(chunk.len()), buf)
            }
            None => (Ok(0), buf),
        }
    }

    async fn write_range(
        &mut self,
        buf: Vec<u8>,
        range: Range<usize>,
    ) -> (io::Result<()>, Vec<u8>) {
        let Some(outgoing) = &self.outgoing else {
            return (Err(io::ErrorKind::BrokenPipe.into()), buf);
        };
        let sent = outgoing.send(buf[range].to_vec()).await;
        let result =
            sent.map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the HTTP/2 stream ended"));
        (result, buf)
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
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Whether the handshake chose HTTP/2 by ALPN.
    pub fn negotiated_h2(&self) -> bool {
        self.session.alpn_protocol().is_some_and(crate::tls::is_h2)
    }

    /// Whether the handshake chose opaque TCP by ALPN ([`crate::tls::TCP_ALPN`]).
    pub fn negotiated_tcp(&self) -> bool {
        self.session.alpn_protocol() == Some(crate::tls::TCP_ALPN)
    }

    /// The peer's SPIFFE ID from its verified certificate.
    pub fn peer_identity(&self) -> Option<&str> {
        self.peer_identity.as_deref()
    }

    /// The session in poll style, for an HTTP/2 connection (the h2 crate drives tokio's IO
    /// traits): ciphertext already read but not yet processed goes along.
    pub fn into_poll(self) -> io::Result<PollTls> {
        let tcp = self.tcp.into_poll_io()?;
        let unread = self.rx[self.rx_pos..].to_vec();
        Ok(PollTls::new(tcp, self.session, unread))
    }

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
    /// address, which TLS puts in no SNI. `alpn`, when given, is offered instead of the
    /// configuration's protocols.
    pub async fn connect(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        addr: SocketAddr,
        alpn: Option<&[&[u8]]>,
    ) -> io::Result<Self> {
        let name = ServerName::IpAddress(addr.ip().into());
        let session = match alpn {
            None => ClientConnection::new(config, name),
            Some(offered) => {
                let offered = offered.iter().map(|p| p.to_vec()).collect();
                ClientConnection::new_with_alpn(config, name, offered)
            }
        };
        let session = session.map_err(io::Error::other)?;
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

/// An HTTP/2 server refused a bridged stream without processing it (`REFUSED_STREAM`, or a
/// stream above a graceful GOAWAY's last one), so the request may go again, whatever its
/// method. It reaches the HTTP/1.1 side as the read error of an empty chunk, which no bridge
/// carries otherwise.
#[derive(Debug, thiserror::Error)]
#[error("the server refused the HTTP/2 stream unprocessed")]
pub struct RefusedStream;

/// The chunk that says a bridged stream was refused (see [`RefusedStream`]).
pub const REFUSED_STREAM_CHUNK: Vec<u8> = Vec::new();

/// Whether a read failed because the HTTP/2 server refused the stream unprocessed.
pub fn is_refused_stream(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<RefusedStream>())
}

/// Whether a read failed because the peer sent a fatal TLS alert (a refusal, not a reset).
pub fn is_fatal_alert(error: &io::Error) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::AlertReceived(_)))
}

//! HTTP/2 to an application whose inbound port says `http2` or `grpc` (h2c with prior
//! knowledge), its streams multiplexed over this core's connections to it.
//!
//! The HTTP/1.1 request path writes the request into a [`Bridge`] as bytes and reads the
//! response out of it, as from a socket; a task per stream translates (RFC 9113 §8.2): the
//! head into HEADERS, the body into DATA as the application's window allows, and back, the
//! response into an HTTP/1.1 head and a chunked body whose trailer section carries the
//! response's trailers (gRPC's status travels there). The request body and the response flow
//! at once (full duplex), so a bidirectional call's replies come back while its client still
//! sends.
//!
//! A sidecar is called the same way over mutual TLS with ALPN `h2` (see
//! [`crate::routing::RouteState::service_speaks_h2`]). A core opens another connection to an
//! address only when its open ones carry as many streams as the server allows, or as many
//! over their lives as the group's `max_requests_per_connection`. The group's breaker counts
//! each connection against `max_connections`; a stream that finds no room and may not open a
//! connection waits (a pending request, within `max_pending_requests`) until a stream or a
//! connection of the group ends.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::RecvStream;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use monoio::time::Instant;
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, Notify};

use super::{is_connection_specific, push_header, DataSender, BRIDGE_CHUNKS};
use crate::conn::Conn;
use crate::http1::head::{parse_request, MAX_HEADERS};
use crate::http1::{BodyFraming, ChunkedScanner};
use crate::percore::Security;
use crate::pool::{Breaker, Lease, Pool, Refused};
use crate::stream::{Bridge, Stream};
use crate::upstream::{self, ConnectError, Secure};

/// Streams a new connection opens before the server's SETTINGS arrive (RFC 9113 §6.5.2
/// advises servers to allow at least 100).
const INITIAL_MAX_STREAMS: usize = 100;

/// One core's HTTP/2 connections to upstreams, by address: as many per address as its streams
/// need, each carrying up to the server's `MAX_CONCURRENT_STREAMS`.
#[derive(Debug, Default)]
pub struct Clients {
    connections: RefCell<FxHashMap<SocketAddr, Vec<Connection>>>,
    /// Addresses a connection is being opened to, told when it is open (or failed).
    opening: RefCell<FxHashMap<SocketAddr, Rc<Notify>>>,
}

/// A connection being opened to an address, for as long as it lives.
struct Opening<'a> {
    opening: &'a RefCell<FxHashMap<SocketAddr, Rc<Notify>>>,
    addr: SocketAddr,
}

impl<'a> Opening<'a> {
    fn start(opening: &'a RefCell<FxHashMap<SocketAddr, Rc<Notify>>>, addr: SocketAddr) -> Self {
        opening.borrow_mut().insert(addr, Rc::new(Notify::new()));
        Self { opening, addr }
    }
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        if let Some(opened) = self.opening.borrow_mut().remove(&self.addr) {
            opened.notify_waiters();
        }
    }
}

/// An open HTTP/2 connection and who its server proved to be.
#[derive(Debug, Clone)]
struct Connection {
    sender: SendRequest<Bytes>,
    /// Mutual TLS (ALPN `h2`) to a sidecar, rather than h2c to an application.
    tls: bool,
    /// The server's SPIFFE ID, over mutual TLS.
    peer_identity: Option<Rc<str>>,
    /// Streams open on it.
    streams: Rc<Cell<usize>>,
    /// Streams opened on it over its life.
    opened: Rc<Cell<u32>>,
    /// The group's limits it was opened under.
    breaker: Option<Rc<Breaker>>,
}

/// Why no stream could be had.
#[derive(Debug)]
pub enum OpenError {
    /// No connection could be opened.
    Connect(ConnectError),
    /// The group's connections are all in use and its pending queue is full.
    Overflow,
    /// No stream of the group's connections became free in time.
    NoRoom,
}

impl From<ConnectError> for OpenError {
    fn from(e: ConnectError) -> Self {
        Self::Connect(e)
    }
}

impl Connection {
    /// Whether it may carry a stream that needs `secure` (as a pooled HTTP/1.1 connection
    /// must, see [`Secure::accepts`]).
    fn serves(&self, secure: Option<&Secure<'_>>) -> bool {
        match (secure, &self.peer_identity) {
            (None, _) => !self.tls,
            (Some(s), Some(id)) => s.identities.iter().any(|i| **i == **id),
            (Some(_), None) => false,
        }
    }

    /// Whether the server lets it open one more stream (h2 would queue a stream over the
    /// limit inside the connection instead: a clone of a sender is always "ready"), and the
    /// group's `max_requests_per_connection` too.
    fn has_room(&self) -> bool {
        self.streams.get() < self.sender.current_max_send_streams() && !self.retired()
    }

    /// Whether it carried as many streams as the group lets a connection carry.
    fn retired(&self) -> bool {
        let max = self.breaker.as_ref().and_then(|b| b.max_requests());
        max.is_some_and(|max| self.opened.get() >= max)
    }
}

/// One open stream of a connection, counted while it lives.
struct StreamSlot {
    streams: Rc<Cell<usize>>,
    breaker: Option<Rc<Breaker>>,
}

impl StreamSlot {
    fn new(connection: &Connection) -> Self {
        let streams = &connection.streams;
        streams.set(streams.get() + 1);
        connection.opened.set(connection.opened.get() + 1);
        Self {
            streams: streams.clone(),
            breaker: connection.breaker.clone(),
        }
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.streams.set(self.streams.get() - 1);
        if let Some(breaker) = &self.breaker {
            breaker.stream_ended();
        }
    }
}

/// Where a new stream may wait for room, and connect.
#[derive(Debug)]
pub struct Limits<'a> {
    /// The group's breaker, when it has pool limits.
    pub breaker: Option<&'a Rc<Breaker>>,
    /// This core's HTTP/1.1 pool, whose idle connections of the group make room when closed.
    pub pool: &'a Pool,
    /// How long a stream may wait for room on the group's connections.
    pub wait_until: Instant,
    /// When a connect must have completed.
    pub connect_until: Instant,
}

impl Clients {
    /// A new stream to `addr`, as a connection the HTTP/1.1 path writes one request to and
    /// reads its response from. Over mutual TLS with ALPN `h2` when `secure` says so (a
    /// sidecar), else h2c (an application). Connects (socket marked `mark`) when this core has
    /// no connection to `addr` with room for it and the group's `limits` let it; else waits
    /// for room. Says whether the connection was open already (a stream it refuses may be
    /// replayed, as on a stale pooled connection).
    pub async fn open(
        &self,
        security: &Security,
        (addr, mark): (SocketAddr, u32),
        secure: Option<&Secure<'_>>,
        limits: Limits<'_>,
        stall_limit: std::time::Duration,
    ) -> Result<(Conn, bool), OpenError> {
        let mut reused = true;
        let connection = loop {
            if let Some(open) = self.with_room(addr, secure).await {
                break open;
            }
            // One connection at a time per address: streams that find no room while one is
            // being opened wait for it rather than each opening their own.
            let opening = self.opening.borrow().get(&addr).cloned();
            if let Some(opened) = opening {
                let opened = opened.notified();
                if monoio::time::timeout_at(limits.connect_until, opened)
                    .await
                    .is_err()
                {
                    return Err(ConnectError::TimedOut.into());
                }
                continue;
            }
            let lease = match limits.breaker {
                None => None,
                Some(breaker) => match breaker.lease() {
                    Some(lease) => Some(lease),
                    None => {
                        // Room is made by closing an idle connection of the group: a pooled
                        // HTTP/1.1 one at once, an HTTP/2 one once its task ends (its lease
                        // then wakes the wait below).
                        if limits.pool.close_one_idle(breaker) {
                            continue;
                        }
                        self.retire_idle(breaker);
                        // A pending request: until a stream or a connection of the group ends.
                        match monoio::time::timeout_at(limits.wait_until, breaker.wait()).await {
                            Ok(Ok(())) => continue,
                            Ok(Err(Refused::Overflow)) => return Err(OpenError::Overflow),
                            Err(_) => return Err(OpenError::NoRoom),
                        }
                    }
                },
            };
            let _opening = Opening::start(&self.opening, addr);
            let until = limits.connect_until;
            let mut connection = connect(security, (addr, mark), secure, (until, lease)).await?;
            connection.breaker = limits.breaker.cloned();
            let mut connections = self.connections.borrow_mut();
            connections
                .entry(addr)
                .or_default()
                .push(connection.clone());
            reused = false;
            break connection;
        };
        let (request_bytes, from_http1) = mpsc::channel(BRIDGE_CHUNKS);
        let (to_http1, response_bytes) = mpsc::channel(BRIDGE_CHUNKS);
        let identity = connection.peer_identity.as_deref().map(str::to_owned);
        let channels = (response_bytes, request_bytes);
        let bridge = Bridge::new(channels, addr, identity, connection.tls);
        let slot = StreamSlot::new(&connection);
        if connection.retired() {
            // Its last stream: it closes once its streams end and its handles are gone.
            self.forget(addr, &connection);
        }
        let exchange = translate(connection.sender, from_http1, to_http1, stall_limit);
        monoio::spawn(async move {
            exchange.await;
            drop(slot);
        });
        Ok((Conn::from_stream(Stream::bridged(bridge)), reused))
    }

    /// An open connection to `addr` that serves `secure` and has room for a stream; those
    /// found closed on the way are forgotten.
    async fn with_room(&self, addr: SocketAddr, secure: Option<&Secure<'_>>) -> Option<Connection> {
        loop {
            let candidate = self
                .connections
                .borrow()
                .get(&addr)?
                .iter()
                .find(|c| c.serves(secure) && c.has_room())
                .cloned()?;
            match candidate.sender.clone().ready().await {
                Ok(sender) => {
                    return Some(Connection {
                        sender,
                        ..candidate
                    })
                }
                Err(_) => self.forget(addr, &candidate),
            }
        }
    }

    /// Forgets one connection of `breaker`'s group that carries no stream, so it closes
    /// (GOAWAY, once no handle is left) and its lease frees a place; whether there was one.
    pub fn retire_idle(&self, breaker: &Rc<Breaker>) -> bool {
        let mut connections = self.connections.borrow_mut();
        for list in connections.values_mut() {
            let idle = list.iter().position(|c| {
                c.streams.get() == 0 && c.breaker.as_ref().is_some_and(|b| Rc::ptr_eq(b, breaker))
            });
            if let Some(i) = idle {
                list.swap_remove(i);
                return true;
            }
        }
        false
    }

    /// Takes `connection` off `addr`'s list: no stream opens on it any more.
    fn forget(&self, addr: SocketAddr, connection: &Connection) {
        let mut connections = self.connections.borrow_mut();
        if let Some(list) = connections.get_mut(&addr) {
            list.retain(|c| !Rc::ptr_eq(&c.streams, &connection.streams));
        }
    }

    /// Forgets the connections to addresses `keep` rejects (endpoints a reload removed).
    pub fn retain(&self, keep: impl Fn(SocketAddr) -> bool) {
        self.connections.borrow_mut().retain(|addr, _| keep(*addr));
    }
}

/// Opens an HTTP/2 connection to `addr` by `until`: mutual TLS with ALPN `h2` when `secure`
/// says so, else h2c. Its IO runs as a task of its own, which holds its place in the group's
/// breaker (`lease`) for as long as it lives.
async fn connect(
    security: &Security,
    (addr, mark): (SocketAddr, u32),
    secure: Option<&Secure<'_>>,
    (until, lease): (Instant, Option<Lease>),
) -> Result<Connection, ConnectError> {
    let secure = secure.map(|s| Secure {
        alpn: Some(crate::tls::H2_OFFER),
        ..s.clone()
    });
    let conn = upstream::connect(security, addr, mark, until, secure.as_ref()).await?;
    let tls = conn.stream.is_tls();
    if tls && !conn.stream.negotiated_h2() {
        let refused = "the server did not accept HTTP/2 (ALPN h2)";
        return Err(ConnectError::Tls(std::io::Error::other(refused)));
    }
    let peer_identity = conn.stream.peer_identity().map(Rc::from);
    let io = conn.into_poll().map_err(ConnectError::Refused)?;
    // Until the server's SETTINGS say otherwise, no more streams than RFC 9113 advises every
    // server to allow: h2's default (no limit) lets a burst open streams a server refuses.
    let handshake = h2::client::Builder::new()
        .max_header_list_size(crate::http1::head::MAX_HEAD_BYTES as u32)
        .initial_max_send_streams(INITIAL_MAX_STREAMS)
        .handshake::<_, Bytes>(io);
    let (sender, connection) = match monoio::time::timeout_at(until, handshake).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(ConnectError::Refused(std::io::Error::other(e))),
        Err(_) => return Err(ConnectError::TimedOut),
    };
    monoio::spawn(async move {
        let _lease = lease;
        if let Err(e) = connection.await {
            tracing::debug!("HTTP/2 connection to {addr} ended: {e}");
        }
    });
    Ok(Connection {
        sender,
        tls,
        peer_identity,
        streams: Rc::default(),
        opened: Rc::default(),
        breaker: None,
    })
}

/// Why a stream could not be translated; the HTTP/1.1 side then sees its response cut short.
#[derive(Debug, thiserror::Error)]
enum Untranslated {
    /// The HTTP/1.1 side went away or sent what is not a request.
    #[error("the request side ended or sent what is not a request")]
    Request,
    /// The stream or the connection to the application failed.
    #[error("the application: {0}")]
    Application(#[from] h2::Error),
    /// The application reset the stream while its body was being sent.
    #[error("the application reset the stream")]
    Reset,
    /// The server refused the stream without processing it.
    #[error("the server refused the stream unprocessed")]
    Refused,
    /// The application's window stayed shut for the idle timeout.
    #[error("the application's window stayed shut")]
    Stalled,
}

/// Carries one exchange: the HTTP/1.1 request from `from_http1` to the application, its
/// response back into `to_http1`.
async fn translate(
    sender: SendRequest<Bytes>,
    mut from_http1: mpsc::Receiver<Vec<u8>>,
    to_http1: mpsc::Sender<Vec<u8>>,
    stall_limit: std::time::Duration,
) {
    let exchange = async {
        let (request, framing, rest) = read_request(&mut from_http1).await?;
        let method = request.method().clone();
        let ends = framing == BodyFraming::None || framing == BodyFraming::Length(0);
        let mut sender = sender;
        // A GOAWAY that came since the stream was given this connection refuses it unsent.
        let (response, mut send) = match sender.send_request(request, ends) {
            Err(e) if refused_unprocessed(&e) => return Err(Untranslated::Refused),
            sent => sent?,
        };
        // Full duplex: the response may start (and even end) while the body still flows, as
        // a bidirectional call's does.
        let mut body = pin!(async {
            if !ends {
                send_body(&mut send, framing, rest, &mut from_http1, stall_limit).await?;
            }
            Ok::<(), Untranslated>(())
        });
        let mut answer = pin!(async {
            let response = match response.await {
                Err(e) if refused_unprocessed(&e) => return Err(Untranslated::Refused),
                response => response?,
            };
            write_response(response, &method, &to_http1).await
        });
        monoio::select! {
            sent = &mut body => match sent {
                Ok(()) => answer.await,
                // The server reset the stream: its answer says whether it refused it
                // unprocessed, or had answered it whole (a reset then only stops the body).
                Err(Untranslated::Reset) => match answer.await {
                    Err(Untranslated::Refused) => Err(Untranslated::Refused),
                    Ok(()) => Ok(()),
                    Err(_) => Err(Untranslated::Reset),
                },
                Err(e) => Err(e),
            },
            answered = &mut answer => answered,
        }
    };
    // The HTTP/1.1 side gone (the client reset, the request timed out) drops the stream,
    // which resets it at the application: a silent application keeps no stream open.
    let result = monoio::select! {
        result = exchange => result,
        () = to_http1.closed() => Err(Untranslated::Request),
    };
    if let Err(e) = result {
        tracing::debug!("HTTP/2 stream to the application: {e}");
        if matches!(e, Untranslated::Refused) {
            let _ = to_http1.send(crate::stream::REFUSED_STREAM_CHUNK).await;
        }
    }
}

/// Whether a stream's error says its server never processed it (RFC 9113 §8.7): it reset it
/// with `REFUSED_STREAM`, or it was above the last stream of a graceful GOAWAY (a draining
/// sidecar). An error GOAWAY says nothing of the streams below its last one, so it is not one.
fn refused_unprocessed(error: &h2::Error) -> bool {
    error.is_remote()
        && match error.reason() {
            Some(h2::Reason::REFUSED_STREAM) => true,
            Some(h2::Reason::NO_ERROR) => error.is_go_away(),
            _ => false,
        }
}

/// The request head read out of the bridge as h2 wants it, its body's framing, and the body
/// bytes that came with the head.
async fn read_request(
    from_http1: &mut mpsc::Receiver<Vec<u8>>,
) -> Result<(Request<()>, BodyFraming, Vec<u8>), Untranslated> {
    let mut buf = Vec::new();
    loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match parse_request(&buf, &mut headers) {
                Ok(Some(head)) => Some((h2_request(&head)?, head.framing, head.len)),
                Ok(None) => None,
                Err(_) => return Err(Untranslated::Request),
            }
        };
        if let Some((request, framing, len)) = parsed {
            buf.drain(..len);
            return Ok((request, framing, buf));
        }
        let piece = from_http1.recv().await.ok_or(Untranslated::Request)?;
        buf.extend_from_slice(&piece);
    }
}

/// The h2 request for an HTTP/1.1 head: `Host` becomes `:authority`, connection-specific
/// headers go, and a gRPC request says it takes trailers (HTTP/1.1 had dropped `te`).
fn h2_request(head: &crate::http1::RequestHead<'_, '_>) -> Result<Request<()>, Untranslated> {
    let authority = head
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"));
    let authority = authority.map_or(head.host.as_bytes(), |h| h.value);
    // Built from parts, so an authority can never carry a path (the HTTP/1.1 parser refused
    // such a Host already).
    let authority = Authority::try_from(authority).map_err(|_| Untranslated::Request)?;
    let target = PathAndQuery::try_from(head.target).map_err(|_| Untranslated::Request)?;
    let uri = Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(target)
        .build()
        .map_err(|_| Untranslated::Request)?;
    let mut request = Request::builder()
        .method(head.method)
        .uri(uri)
        .body(())
        .map_err(|_| Untranslated::Request)?;
    let headers = request.headers_mut();
    for h in head.headers {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| Untranslated::Request)?;
        if name == header::HOST || is_connection_specific(&name) {
            continue;
        }
        let value = HeaderValue::from_bytes(h.value).map_err(|_| Untranslated::Request)?;
        headers.append(name, value);
    }
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    Ok(request)
}

/// Sends the request body (`rest`, then what the bridge brings) as DATA, decoded from its
/// HTTP/1.1 framing.
async fn send_body(
    send: &mut h2::SendStream<Bytes>,
    framing: BodyFraming,
    mut buf: Vec<u8>,
    from_http1: &mut mpsc::Receiver<Vec<u8>>,
    stall_limit: std::time::Duration,
) -> Result<(), Untranslated> {
    let mut sender = DataSender::new(send, stall_limit);
    let mut scanner = ChunkedScanner::default();
    let mut left = match framing {
        BodyFraming::Length(n) => n,
        _ => u64::MAX,
    };
    loop {
        let piece = if framing == BodyFraming::Chunked {
            let mut data = Vec::new();
            let used = scanner
                .decode(&buf, &mut data)
                .map_err(|_| Untranslated::Request)?;
            buf.drain(..used);
            data
        } else {
            let take = (buf.len() as u64).min(left) as usize;
            left -= take as u64;
            buf.drain(..take).collect()
        };
        let done = scanner.is_done() || left == 0;
        sender
            .send(Bytes::from(piece), done)
            .await
            .map_err(|e| match e {
                super::Unrelayable::Stalled => Untranslated::Stalled,
                _ => Untranslated::Reset,
            })?;
        if done {
            return Ok(());
        }
        if buf.is_empty() {
            buf = from_http1.recv().await.ok_or(Untranslated::Request)?;
        }
    }
}

/// Writes the application's response to a `method` request into the bridge as HTTP/1.1: its
/// head, then its body chunked, ending with its trailers as the trailer section.
async fn write_response(
    response: Response<RecvStream>,
    method: &Method,
    to_http1: &mpsc::Sender<Vec<u8>>,
) -> Result<(), Untranslated> {
    let (parts, mut body) = response.into_parts();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in &parts.headers {
        if !is_connection_specific(name) {
            push_header(&mut head, name.as_str(), value.as_bytes());
        }
    }
    // HEAD, 204 and 304 have no body whatever their headers say, and keep those headers.
    let bodiless = method == Method::HEAD
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    let ended = bodiless || body.is_end_stream();
    let has_length = parts.headers.contains_key(header::CONTENT_LENGTH);
    if !bodiless && ended && !has_length {
        push_header(&mut head, "content-length", b"0");
    } else if !ended {
        push_header(&mut head, "transfer-encoding", b"chunked");
    }
    head.extend_from_slice(b"\r\n");
    let send = |bytes: Vec<u8>| async {
        to_http1
            .send(bytes)
            .await
            .map_err(|_| Untranslated::Request)
    };
    send(head).await?;
    if ended {
        return Ok(());
    }
    while let Some(data) = body.data().await {
        let data = data?;
        let _ = body.flow_control().release_capacity(data.len());
        if data.is_empty() {
            continue;
        }
        let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
        chunk.extend_from_slice(&data);
        chunk.extend_from_slice(b"\r\n");
        send(chunk).await?;
    }
    let trailers = body.trailers().await?.unwrap_or_default();
    send(trailer_section(&trailers)).await
}

/// The last chunk and the trailer section carrying `trailers` (without the fields no trailer
/// may carry).
fn trailer_section(trailers: &HeaderMap) -> Vec<u8> {
    let mut section = b"0\r\n".to_vec();
    for (name, value) in trailers {
        if !super::is_forbidden_trailer(name) {
            push_header(&mut section, name.as_str(), value.as_bytes());
        }
    }
    section.extend_from_slice(b"\r\n");
    section
}

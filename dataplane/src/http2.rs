//! Inbound HTTP/2 over mutual TLS (ALPN `h2`), served by bridging each stream to the
//! HTTP/1.1 request path: the h2 crate runs the connection; every request stream becomes one
//! HTTP/1.1 exchange on a [`Bridge`], so authorization, JWT, limits, routing to the
//! application, timeouts, logs and metrics are the same code for both protocols, and the
//! application keeps receiving HTTP/1.1.
//!
//! Per stream: the request head is rewritten as an HTTP/1.1 head (`:authority` becomes
//! `Host`, cookies are joined, a body without a length is sent chunked), the body follows as
//! h2 DATA arrives (its flow-control window released as the bridge takes it), and the
//! HTTP/1.1 response is parsed back into HEADERS and DATA, sent as the client's window
//! allows. The bridge's channels are bounded, so neither direction buffers more than a few
//! chunks.
//!
//! A client's RST_STREAM cancels its exchange at once (the application connection is
//! dropped), and a connection whose streams are mostly reset before their responses end is
//! closed with GOAWAY `ENHANCE_YOUR_CALM`, as Envoy does: opening and resetting streams in a
//! loop would otherwise cost the application a request each while staying under
//! `MAX_CONCURRENT_STREAMS`.

use std::cell::Cell;
use std::future::{poll_fn, Future as _};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use monoio::time::{Instant, Sleep};
use tokio::sync::mpsc;

use crate::conn::Conn;
use crate::grpc;
use crate::http1::head::{parse_response, MAX_HEADERS, MAX_HEAD_BYTES};
use crate::http1::{BodyFraming, ChunkedScanner};
use crate::percore::Core;
use crate::proxy::{serve_http1, Arrival};
use crate::stream::{Bridge, Stream};

pub(crate) mod client;
#[cfg(test)]
mod tests;

pub use client::Clients;

/// Streams one client may have open at once (Envoy's and nghttp2's common default).
const MAX_CONCURRENT_STREAMS: u32 = 100;

/// Chunks either direction of a bridge holds before the sender waits.
const BRIDGE_CHUNKS: usize = 4;

/// Largest piece of a response body handed to h2 at once.
const MAX_DATA_PIECE: usize = 16 * 1024;

/// Streams a connection must have finished before its share of premature resets is judged
/// (Envoy's `overload.premature_reset_total_stream_count`); half of it is the earliest check.
const PREMATURE_RESET_WINDOW: u32 = 500;

/// A client reset this soon after the stream opened, before any answer, is premature
/// (Envoy's `overload.premature_reset_min_stream_lifetime_seconds`).
const PREMATURE_RESET_LIFETIME: Duration = Duration::from_secs(1);

/// How long a connection sent away for its resets may take to flush the GOAWAY.
const GOAWAY_FLUSH: Duration = Duration::from_secs(1);

/// How one stream's exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamEnd {
    /// The response went out whole; the stream was refused or reset by us; or the client
    /// reset it after its answer began or after [`PREMATURE_RESET_LIFETIME`] (cancelling a
    /// long download or a stream of events is no abuse).
    Served,
    /// The client reset the stream within [`PREMATURE_RESET_LIFETIME`] and before its
    /// response head: the shape of a rapid-reset attack.
    PrematureReset,
}

/// The streams of one connection: how many run, when the last one ended (the idle timer
/// runs from then), and how many the client reset prematurely.
#[derive(Debug)]
struct Streams {
    in_flight: Cell<usize>,
    last_end: Cell<Instant>,
    ended: Cell<u32>,
    premature_resets: Cell<u32>,
}

impl Streams {
    fn new(now: Instant) -> Self {
        Self {
            in_flight: Cell::new(0),
            last_end: Cell::new(now),
            ended: Cell::new(0),
            premature_resets: Cell::new(0),
        }
    }

    fn started(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
    }

    fn ended(&self, how: StreamEnd, now: Instant) {
        self.in_flight.set(self.in_flight.get() - 1);
        self.last_end.set(now);
        self.ended.set(self.ended.get().saturating_add(1));
        if how == StreamEnd::PrematureReset {
            let resets = self.premature_resets.get().saturating_add(1);
            self.premature_resets.set(resets);
        }
    }

    /// When the connection has idled for `idle`: `idle` after the last stream ended, or
    /// `None` while a stream runs.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        (self.in_flight.get() == 0).then(|| self.last_end.get() + idle)
    }

    /// Whether the client resets too many of its streams: at least half of a window's worth,
    /// and at least half of the streams that ended.
    fn resets_too_many(&self) -> bool {
        let resets = self.premature_resets.get();
        resets >= PREMATURE_RESET_WINDOW / 2 && resets.saturating_mul(2) >= self.ended.get()
    }
}

/// Serves an HTTP/2 connection from `peer` on `down` (mutual TLS with ALPN `h2`, or an
/// application's h2c with prior knowledge, its preface perhaps already read) until the client
/// closes it, it sits idle past the idle timeout after its last stream, or the core drains
/// (GOAWAY, then the streams in flight finish).
pub(crate) async fn serve(down: Conn, peer: SocketAddr, arrival: Arrival, core: &Rc<Core>) {
    let identity = down.stream.peer_identity().map(str::to_owned);
    let over_tls = down.stream.is_tls();
    let Ok(io) = down.into_poll() else {
        return;
    };
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .handshake::<_, Bytes>(io);
    let handshake = monoio::time::timeout(core.settings.head_timeout, handshake);
    let Ok(Ok(mut connection)) = handshake.await else {
        return;
    };
    let streams = Rc::new(Streams::new(Instant::now()));
    let spawn_exchange = |request, respond| {
        let (core, identity, streams) = (core.clone(), identity.clone(), streams.clone());
        streams.started();
        monoio::spawn(async move {
            let caller = (identity, over_tls);
            let end = exchange(request, respond, (peer, arrival), caller, &core).await;
            streams.ended(end, Instant::now());
        });
    };
    let idle = core.settings.idle_timeout;
    let opened = Instant::now();
    loop {
        let next = monoio::select! {
            _ = core.connections.drain.wait() => break,
            next = next_stream(&mut connection, &streams, idle, opened) => next,
        };
        let Some((request, respond)) = next else {
            break;
        };
        if streams.resets_too_many() {
            core.security
                .count_authn(|c| c.inbound_h2_reset_floods += 1);
            connection.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
            drop((request, respond));
            // Flush the GOAWAY; streams the client opens meanwhile are refused by h2. A
            // client that does not read gets no longer than the flush allows.
            let flushed = async { while let Some(Ok(_)) = connection.accept().await {} };
            let _ = monoio::time::timeout(GOAWAY_FLUSH, flushed).await;
            return;
        }
        spawn_exchange(request, respond);
    }
    // GOAWAY. Streams the client opened before it saw it are below the final GOAWAY's last
    // stream id, so they must be served: keep accepting until the connection closes, which
    // h2 does once the client answers its PING, or until it has had no stream for a request
    // head timeout (a client that never answers; a slow one still gets the final GOAWAY).
    connection.graceful_shutdown();
    let sent_away = Instant::now();
    let answer_within = core.settings.head_timeout;
    while let Some((request, respond)) =
        next_stream(&mut connection, &streams, answer_within, sent_away).await
    {
        spawn_exchange(request, respond);
    }
}

/// The next stream the client opens; `None` when the connection closes or fails, or once no
/// stream has run for `idle` (counted from the last stream's end, and no earlier than from
/// `since`).
async fn next_stream<T>(
    connection: &mut h2::server::Connection<T, Bytes>,
    streams: &Streams,
    idle: Duration,
    since: Instant,
) -> Option<(Request<RecvStream>, SendResponse<Bytes>)>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let idle_deadline = || {
        streams
            .idle_deadline(idle)
            .map(|deadline| deadline.max(since + idle))
    };
    loop {
        let deadline = idle_deadline().unwrap_or_else(|| Instant::now() + idle);
        monoio::select! {
            _ = monoio::time::sleep_until(deadline) => {
                // A stream that ran when the timer was set may have ended since: the timer
                // is set again from its end.
                match idle_deadline() {
                    Some(deadline) if deadline <= Instant::now() => return None,
                    _ => continue,
                }
            }
            accepted = connection.accept() => return accepted?.ok(),
        }
    }
}

/// One request stream, through a bridge to the HTTP/1.1 request path and back.
async fn exchange(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    (peer, arrival): (SocketAddr, Arrival),
    (identity, over_tls): (Option<String>, bool),
    core: &Rc<Core>,
) -> StreamEnd {
    let opened = Instant::now();
    let (parts, body) = request.into_parts();
    let has_body = !body.is_end_stream();
    let (head, chunked) = match http1_request_head(&parts, has_body) {
        Ok(bridged) => bridged,
        Err(status) => {
            let _ = respond.send_response(local_response(status), true);
            return StreamEnd::Served;
        }
    };
    let (to_http1, request_bytes) = mpsc::channel(BRIDGE_CHUNKS);
    let (response_bytes, from_http1) = mpsc::channel(BRIDGE_CHUNKS);
    let bridge = Bridge::new((request_bytes, response_bytes), peer, identity, over_tls);
    let down = Conn::from_stream(Stream::bridged(bridge));
    let stall_limit = core.settings.idle_timeout;
    let served = async {
        let relayed = {
            // Boxed: the HTTP/1.1 path's future is large (head buffers), and inline it would
            // be copied with every move of this task's future (spawn, task cell) per stream.
            let mut http1 = Box::pin(serve_http1(down, arrival, peer, core));
            let is_head = parts.method == Method::HEAD;
            let mut relayed = pin!(relay_response(
                from_http1,
                &mut respond,
                &parts.method,
                is_head,
                stall_limit
            ));
            // A relay that fails drops the HTTP/1.1 side with it (and its application
            // connection); one that succeeds lets it finish.
            monoio::select! {
                () = &mut http1 => relayed.await,
                relayed = &mut relayed => {
                    if relayed.is_ok() {
                        http1.await;
                    }
                    relayed
                }
            }
        };
        match relayed {
            Ok(()) => StreamEnd::Served,
            Err(Unrelayable::Reset) if opened.elapsed() <= PREMATURE_RESET_LIFETIME => {
                StreamEnd::PrematureReset
            }
            Err(Unrelayable::Reset | Unrelayable::ResetAnswered) => StreamEnd::Served,
            Err(Unrelayable::Stalled) => {
                respond.send_reset(Reason::CANCEL);
                StreamEnd::Served
            }
            Err(Unrelayable::Untranslatable | Unrelayable::Truncated) => {
                // Before the head went out the client gets a 502; after, a reset.
                if respond
                    .send_response(local_response(StatusCode::BAD_GATEWAY), true)
                    .is_err()
                {
                    respond.send_reset(Reason::INTERNAL_ERROR);
                }
                StreamEnd::Served
            }
        }
    };
    // The request body is pumped for as long as the exchange lasts; a response that comes
    // before the whole body (a denial, a limit) ends the stream without waiting for it.
    let limit = core.settings.grpc_max_message;
    let messages = limit
        .filter(|_| is_grpc(&parts.headers))
        .map(grpc::Messages::new);
    let pumped = async {
        let body = has_body.then_some(body);
        match pump_request(head, body, (chunked, messages), to_http1).await {
            Ok(()) => std::future::pending().await,
            Err(too_large) => too_large,
        }
    };
    let too_large = monoio::select! {
        end = served => return end,
        too_large = pumped => too_large,
    };
    // The exchange was dropped with the message's prefix unsent: the application saw the
    // call cut short, never the message.
    core.count_refusal(|r| r.grpc_messages_too_large += 1);
    tracing::info!(
        "refused a call to {} from {peer}: {too_large}",
        parts.uri.path()
    );
    refuse_too_large(&mut respond, too_large);
    StreamEnd::Served
}

/// Whether a request is a gRPC call.
fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| grpc::is_grpc(v.as_bytes()))
}

/// Ends a call whose client sent a message over the limit with RESOURCE_EXHAUSTED, as a gRPC
/// server over its own limit does: trailers-only before the response started, else a reset
/// (`ENHANCE_YOUR_CALM`, which gRPC clients read as RESOURCE_EXHAUSTED).
fn refuse_too_large(respond: &mut SendResponse<Bytes>, too_large: grpc::TooLarge) {
    let mut message = Vec::new();
    grpc::write_message(&mut message, &too_large.to_string());
    let reply = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header("grpc-status", grpc::RESOURCE_EXHAUSTED.to_string())
        .header("grpc-message", message)
        .body(());
    let sent = reply.map(|reply| respond.send_response(reply, true).is_ok());
    if !matches!(sent, Ok(true)) {
        respond.send_reset(Reason::ENHANCE_YOUR_CALM);
    }
}

/// A response meshd makes itself, without a body.
fn local_response(status: StatusCode) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = status;
    response
}

/// The HTTP/1.1 head for an h2 request, and whether its body goes chunked (it has one and no
/// `content-length`); the status to refuse it with otherwise: 501 for CONNECT, which the
/// bridge does not tunnel.
fn http1_request_head(
    parts: &http::request::Parts,
    has_body: bool,
) -> Result<(Vec<u8>, bool), StatusCode> {
    if parts.method == Method::CONNECT {
        return Err(StatusCode::NOT_IMPLEMENTED);
    }
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    let authority = parts.uri.authority().map(|a| a.as_str());
    if let Some(authority) = authority {
        push_header(&mut head, "host", authority.as_bytes());
    }
    let mut cookies: Vec<&[u8]> = Vec::new();
    let mut has_length = false;
    for (name, value) in &parts.headers {
        match name {
            // RFC 9113 §8.2.3: cookie crumbs are joined for an HTTP/1.1 hop.
            n if n == header::COOKIE => cookies.push(value.as_bytes()),
            // h2 has refused differing values; repeats of the same one go once, as the
            // HTTP/1.1 side refuses any repeat.
            n if n == header::CONTENT_LENGTH && has_length => {}
            n if n == header::CONTENT_LENGTH => {
                has_length = true;
                push_header(&mut head, n.as_str(), value.as_bytes());
            }
            n if n == header::HOST && authority.is_some() => {}
            n if is_connection_specific(n) || n == header::EXPECT => {}
            n => push_header(&mut head, n.as_str(), value.as_bytes()),
        }
    }
    if !cookies.is_empty() {
        push_header(&mut head, "cookie", &cookies.join(&b"; "[..]));
    }
    let chunked = has_body && !has_length;
    if chunked {
        push_header(&mut head, "transfer-encoding", b"chunked");
    }
    head.extend_from_slice(b"\r\n");
    Ok((head, chunked))
}

fn push_header(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// Headers that describe one HTTP/1.1 connection and mean nothing on another hop (RFC 9113
/// §8.2.2); h2 refuses them in requests, and they are dropped from responses.
fn is_connection_specific(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::TE
        || name == "keep-alive"
        || name == "proxy-connection"
}

/// Sends the request head, then the body as it arrives (chunk-encoded if `chunked`), into
/// the bridge. A client reset drops the sender with the body unfinished, so the HTTP/1.1 side
/// sees a truncated body, never a complete one. A gRPC call's `messages` are followed, and the
/// first over the limit stops the body before it.
async fn pump_request(
    head: Vec<u8>,
    body: Option<RecvStream>,
    (chunked, mut messages): (bool, Option<grpc::Messages>),
    to_http1: mpsc::Sender<Vec<u8>>,
) -> Result<(), grpc::TooLarge> {
    if to_http1.send(head).await.is_err() {
        return Ok(());
    }
    let Some(mut body) = body else {
        return Ok(());
    };
    while let Some(data) = body.data().await {
        let Ok(data) = data else {
            return Ok(());
        };
        let _ = body.flow_control().release_capacity(data.len());
        if data.is_empty() {
            continue;
        }
        if let Some(messages) = &mut messages {
            messages.feed(&data)?;
        }
        let chunk = if chunked {
            let mut chunk = Vec::with_capacity(data.len() + 20);
            chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            chunk.extend_from_slice(&data);
            chunk.extend_from_slice(b"\r\n");
            chunk
        } else {
            data.to_vec()
        };
        if to_http1.send(chunk).await.is_err() {
            return Ok(());
        }
    }
    if chunked {
        let _ = to_http1.send(b"0\r\n\r\n".to_vec()).await;
    }
    Ok(())
}

/// Why a response could not be relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unrelayable {
    /// The client reset the stream, or the connection is gone: nothing more can be sent.
    Reset,
    /// [`Unrelayable::Reset`] after the response head went out.
    ResetAnswered,
    /// The client's flow-control window stayed shut for the idle timeout.
    Stalled,
    /// The HTTP/1.1 response cannot be said in HTTP/2 (a transfer-coding other than
    /// chunked, a header value h2 refuses).
    Untranslatable,
    /// The HTTP/1.1 side ended before the response did.
    Truncated,
}

impl From<h2::Error> for Unrelayable {
    fn from(_: h2::Error) -> Self {
        Self::Reset
    }
}

/// The next piece of the HTTP/1.1 response, `None` at its end; or [`Unrelayable::Reset`]
/// as soon as `poll_reset` says the client reset the stream.
async fn next_piece(
    from_http1: &mut mpsc::Receiver<Vec<u8>>,
    mut poll_reset: impl FnMut(&mut Context<'_>) -> Poll<Result<Reason, h2::Error>>,
) -> Result<Option<Vec<u8>>, Unrelayable> {
    poll_fn(|cx| {
        if let Poll::Ready(piece) = from_http1.poll_recv(cx) {
            return Poll::Ready(Ok(piece));
        }
        match poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(Err(Unrelayable::Reset)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Reads the HTTP/1.1 response out of the bridge and sends it as h2 HEADERS and DATA; a
/// client window that stays shut through a whole `stall_limit` fails it.
async fn relay_response(
    mut from_http1: mpsc::Receiver<Vec<u8>>,
    respond: &mut SendResponse<Bytes>,
    method: &Method,
    is_head: bool,
    stall_limit: Duration,
) -> Result<(), Unrelayable> {
    let mut buf = Vec::new();
    let (response, framing) = loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match parse_response(&buf, &mut headers, method.as_str()) {
                Ok(Some(head)) => Some((
                    h2_response(&head).ok_or(Unrelayable::Untranslatable)?,
                    head.framing,
                    head.len,
                )),
                Ok(None) => None,
                Err(_) => return Err(Unrelayable::Untranslatable),
            }
        };
        match parsed {
            // Interim responses (100 Continue) stay on the HTTP/1.1 side.
            Some((response, _, len)) if response.status().is_informational() => {
                buf.drain(..len);
            }
            Some((response, framing, len)) => {
                buf.drain(..len);
                break (response, framing);
            }
            None => {
                let piece = next_piece(&mut from_http1, |cx| respond.poll_reset(cx)).await?;
                buf.extend_from_slice(&piece.ok_or(Unrelayable::Truncated)?);
            }
        }
    };
    let framing = if is_head { BodyFraming::None } else { framing };
    if framing == BodyFraming::None || framing == BodyFraming::Length(0) {
        respond.send_response(response, true)?;
        return Ok(());
    }
    let mut send = respond.send_response(response, false)?;
    // A reset from here on comes after the client had its answer's head.
    let relayed = relay_body(&mut send, framing, buf, from_http1, stall_limit).await;
    relayed.map_err(|e| match e {
        Unrelayable::Reset => Unrelayable::ResetAnswered,
        e => e,
    })
}

/// Sends the body of a response whose head went out: `buf` (what followed the head), then
/// what the bridge brings, framed by `framing`.
async fn relay_body(
    send: &mut SendStream<Bytes>,
    framing: BodyFraming,
    mut buf: Vec<u8>,
    mut from_http1: mpsc::Receiver<Vec<u8>>,
    stall_limit: Duration,
) -> Result<(), Unrelayable> {
    let mut sender = DataSender::new(send, stall_limit);
    match framing {
        BodyFraming::Length(mut left) => {
            while left > 0 {
                if buf.is_empty() {
                    buf = sender
                        .next_piece(&mut from_http1)
                        .await?
                        .ok_or(Unrelayable::Truncated)?;
                }
                let take = (buf.len() as u64).min(left) as usize;
                left -= take as u64;
                let piece = if take == buf.len() {
                    Bytes::from(std::mem::take(&mut buf))
                } else {
                    let piece = Bytes::copy_from_slice(&buf[..take]);
                    buf.drain(..take);
                    piece
                };
                sender.send(piece, left == 0).await?;
            }
        }
        BodyFraming::Chunked => {
            let mut scanner = ChunkedScanner::default();
            let (mut data, mut trailer_section) = (Vec::new(), Vec::new());
            loop {
                let used = scanner
                    .decode_with_trailers(&buf, &mut data, Some(&mut trailer_section))
                    .map_err(|_| Unrelayable::Truncated)?;
                buf.drain(..used);
                // A trailer section is a head's worth at most.
                if trailer_section.len() > MAX_HEAD_BYTES {
                    return Err(Unrelayable::Untranslatable);
                }
                if scanner.is_done() {
                    let trailers = trailer_fields(&trailer_section)?;
                    let data = Bytes::from(std::mem::take(&mut data));
                    if trailers.is_empty() {
                        sender.send(data, true).await?;
                    } else {
                        // gRPC's status travels here: the stream ends with a HEADERS frame.
                        sender.send(data, false).await?;
                        sender.send.send_trailers(trailers)?;
                    }
                    break;
                }
                if !data.is_empty() {
                    sender
                        .send(Bytes::from(std::mem::take(&mut data)), false)
                        .await?;
                }
                buf = sender
                    .next_piece(&mut from_http1)
                    .await?
                    .ok_or(Unrelayable::Truncated)?;
            }
        }
        BodyFraming::UntilClose => {
            if !buf.is_empty() {
                sender
                    .send(Bytes::from(std::mem::take(&mut buf)), false)
                    .await?;
            }
            while let Some(chunk) = sender.next_piece(&mut from_http1).await? {
                sender.send(Bytes::from(chunk), false).await?;
            }
            sender.send(Bytes::new(), true).await?;
        }
        BodyFraming::None => {}
    }
    Ok(())
}

/// The fields of a chunked body's trailer section (`name: value` lines, then a blank line),
/// without the connection-specific ones; a field h2 cannot carry makes the response
/// untranslatable.
fn trailer_fields(section: &[u8]) -> Result<http::HeaderMap, Unrelayable> {
    let mut fields = http::HeaderMap::new();
    for line in section.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let colon = line.iter().position(|&b| b == b':');
        let (name, value) = colon
            .map(|at| (&line[..at], line[at + 1..].trim_ascii()))
            .ok_or(Unrelayable::Untranslatable)?;
        let name = HeaderName::from_bytes(name).map_err(|_| Unrelayable::Untranslatable)?;
        if is_forbidden_trailer(&name) {
            continue;
        }
        let value = HeaderValue::from_bytes(value).map_err(|_| Unrelayable::Untranslatable)?;
        fields.append(name, value);
    }
    Ok(fields)
}

/// Fields a trailer section may not carry (RFC 9110 §6.5.1): framing, routing, and the
/// connection-specific ones.
fn is_forbidden_trailer(name: &HeaderName) -> bool {
    is_connection_specific(name)
        || name == header::CONTENT_LENGTH
        || name == header::HOST
        || name == header::AUTHORIZATION
        || name == header::CONTENT_TYPE
        || name == header::CONTENT_ENCODING
        || name == header::SET_COOKIE
        || name == header::COOKIE
}

/// The h2 response for an HTTP/1.1 response head, without its connection-specific headers
/// (names become lower-case); `None` if the status or a header is not valid HTTP, or the
/// body has a transfer-coding other than chunked (HTTP/2 has no way to say it, and the
/// client would take the coded bytes for the content).
fn h2_response(head: &crate::http1::ResponseHead<'_, '_>) -> Option<Response<()>> {
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::from_u16(head.status).ok()?;
    let headers = response.headers_mut();
    for h in head.headers {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if name == header::TRANSFER_ENCODING && !only_chunked(h.value) {
            return None;
        }
        if is_connection_specific(&name) {
            continue;
        }
        headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    Some(response)
}

/// Whether a transfer-encoding value lists no coding but `chunked`.
fn only_chunked(value: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .all(|coding| coding.is_empty() || coding.eq_ignore_ascii_case(b"chunked"))
}

/// The response body's side of a stream once its head went out.
struct DataSender<'s> {
    send: &'s mut SendStream<Bytes>,
    /// How long the client's window may stay shut.
    stall_limit: Duration,
    /// Fires each `stall_limit` once the body has waited on the window; the stream is
    /// stalled if no capacity was granted since it was set. One timer for the body, made at
    /// the first wait and re-armed only when it fires: a timer per wait cost 2 % of an
    /// HTTP/2 request's instructions, and a timer is 640 bytes, boxed so the exchange's
    /// future (copied when spawned) stays small.
    stall_timer: Option<Pin<Box<Sleep>>>,
    grants: u64,
    grants_at_timer: u64,
}

impl<'s> DataSender<'s> {
    /// Sends on `send`, failing when its window stays shut for `stall_limit`.
    fn new(send: &'s mut SendStream<Bytes>, stall_limit: Duration) -> Self {
        Self {
            send,
            stall_limit,
            stall_timer: None,
            grants: 0,
            grants_at_timer: 0,
        }
    }

    /// The next piece of the HTTP/1.1 response (see [`next_piece`]).
    async fn next_piece(
        &mut self,
        from_http1: &mut mpsc::Receiver<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, Unrelayable> {
        next_piece(from_http1, |cx| self.send.poll_reset(cx)).await
    }

    /// Sends `data` as the client's flow-control window allows, at most [`MAX_DATA_PIECE`]
    /// at a time; `end` ends the stream with the last piece (or an empty frame if `data` is
    /// empty).
    async fn send(&mut self, mut data: Bytes, end: bool) -> Result<(), Unrelayable> {
        if data.is_empty() {
            if end {
                self.send.send_data(data, true)?;
            }
            return Ok(());
        }
        while !data.is_empty() {
            self.send.reserve_capacity(data.len().min(MAX_DATA_PIECE));
            let granted = poll_fn(|cx| self.poll_capacity(cx)).await?;
            if granted == 0 {
                continue;
            }
            self.grants += 1;
            let piece = data.split_to(granted.min(data.len()));
            self.send.send_data(piece, end && data.is_empty())?;
        }
        Ok(())
    }

    /// Capacity granted by the client's window, or why none will be.
    fn poll_capacity(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, Unrelayable>> {
        match self.send.poll_capacity(cx) {
            Poll::Ready(Some(Ok(granted))) => return Poll::Ready(Ok(granted)),
            Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(Err(Unrelayable::Reset)),
            Poll::Pending => {}
        }
        if self.send.poll_reset(cx).is_ready() {
            return Poll::Ready(Err(Unrelayable::Reset));
        }
        let limit = self.stall_limit;
        let timer = self.stall_timer.get_or_insert_with(|| {
            self.grants_at_timer = self.grants;
            Box::pin(monoio::time::sleep(limit))
        });
        while timer.as_mut().poll(cx).is_ready() {
            if self.grants == self.grants_at_timer {
                return Poll::Ready(Err(Unrelayable::Stalled));
            }
            self.grants_at_timer = self.grants;
            timer.as_mut().reset(Instant::now() + limit);
        }
        Poll::Pending
    }
}

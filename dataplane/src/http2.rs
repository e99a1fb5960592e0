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

use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use tokio::sync::mpsc;

use crate::conn::Conn;
use crate::http1::head::{parse_response, MAX_HEADERS, MAX_HEAD_BYTES};
use crate::http1::{BodyFraming, ChunkedScanner};
use crate::proxy::serve_http1;
use crate::routing::Direction;
use crate::stream::{Bridge, Stream, TlsStream};
use crate::worker::Core;

#[cfg(test)]
mod tests;

/// Streams one client may have open at once (Envoy's and nghttp2's common default).
const MAX_CONCURRENT_STREAMS: u32 = 100;

/// Chunks either direction of a bridge holds before the sender waits.
const BRIDGE_CHUNKS: usize = 4;

/// Largest piece of a response body handed to h2 at once.
const MAX_DATA_PIECE: usize = 16 * 1024;

/// Serves an HTTP/2 connection from `peer` on `tls` (handshake done, ALPN `h2`) until the
/// client closes it, it sits idle past the idle timeout, or the core drains (GOAWAY, then the
/// streams in flight finish).
pub async fn serve(tls: TlsStream, peer: SocketAddr, core: &Rc<Core>) {
    let identity = tls.peer_identity().map(str::to_owned);
    let Ok(io) = tls.into_poll() else {
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
    let in_flight = Rc::new(std::cell::Cell::new(0usize));
    let spawn_exchange = |request, respond| {
        let (core, identity, in_flight) = (core.clone(), identity.clone(), in_flight.clone());
        in_flight.set(in_flight.get() + 1);
        monoio::spawn(async move {
            exchange(request, respond, peer, identity, &core).await;
            in_flight.set(in_flight.get() - 1);
        });
    };
    loop {
        let idle = monoio::time::sleep(core.settings.idle_timeout);
        let accepted = monoio::select! {
            _ = core.drain.wait() => break,
            _ = idle => {
                if in_flight.get() == 0 {
                    break;
                }
                continue;
            }
            accepted = connection.accept() => accepted,
        };
        let Some(Ok((request, respond))) = accepted else {
            return;
        };
        spawn_exchange(request, respond);
    }
    // GOAWAY. Streams the client opened before it saw it are below the final GOAWAY's last
    // stream id, so they must be served: keep accepting until the connection closes.
    connection.graceful_shutdown();
    while let Some(Ok((request, respond))) = connection.accept().await {
        spawn_exchange(request, respond);
    }
}

/// One request stream, through a bridge to the HTTP/1.1 request path and back.
async fn exchange(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    peer: SocketAddr,
    identity: Option<String>,
    core: &Rc<Core>,
) {
    let (parts, body) = request.into_parts();
    let has_body = !body.is_end_stream();
    let Some((head, chunked)) = http1_request_head(&parts, has_body) else {
        let refused = Response::builder()
            .status(StatusCode::NOT_IMPLEMENTED)
            .body(())
            .unwrap_or_default();
        let _ = respond.send_response(refused, true);
        return;
    };
    let (to_http1, request_bytes) = mpsc::channel(BRIDGE_CHUNKS);
    let (response_bytes, from_http1) = mpsc::channel(BRIDGE_CHUNKS);
    let bridge = Bridge::new(request_bytes, response_bytes, peer, identity);
    let down = Conn::from_stream(Stream::bridged(bridge));
    let served = async {
        // Boxed: the HTTP/1.1 path's future is large (head buffers), and inline it would be
        // copied with every move of this task's future (spawn, task cell) per stream.
        let http1 = Box::pin(serve_http1(down, Direction::Inbound, peer.ip(), core));
        let is_head = parts.method == Method::HEAD;
        let relayed = relay_response(from_http1, &mut respond, &parts.method, is_head);
        let ((), relayed) = monoio::join!(http1, relayed);
        if relayed.is_err() {
            respond.send_reset(Reason::INTERNAL_ERROR);
        }
    };
    // The request body is pumped for as long as the exchange lasts; a response that comes
    // before the whole body (a denial, a limit) ends the stream without waiting for it.
    let pumped = async {
        pump_request(head, has_body.then_some(body), chunked, to_http1).await;
        std::future::pending::<()>().await;
    };
    monoio::select! {
        () = served => {}
        () = pumped => {}
    }
}

/// The HTTP/1.1 head for an h2 request, and whether its body goes chunked (it has one and no
/// `content-length`); `None` for CONNECT, which the bridge does not tunnel.
fn http1_request_head(parts: &http::request::Parts, has_body: bool) -> Option<(Vec<u8>, bool)> {
    if parts.method == Method::CONNECT {
        return None;
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
    for (name, value) in &parts.headers {
        match name {
            // RFC 9113 §8.2.3: cookie crumbs are joined for an HTTP/1.1 hop.
            n if n == header::COOKIE => cookies.push(value.as_bytes()),
            n if n == header::HOST && authority.is_some() => {}
            n if is_connection_specific(n) || n == header::EXPECT => {}
            n => push_header(&mut head, n.as_str(), value.as_bytes()),
        }
    }
    if !cookies.is_empty() {
        push_header(&mut head, "cookie", &cookies.join(&b"; "[..]));
    }
    let chunked = has_body && !parts.headers.contains_key(header::CONTENT_LENGTH);
    if chunked {
        push_header(&mut head, "transfer-encoding", b"chunked");
    }
    head.extend_from_slice(b"\r\n");
    Some((head, chunked))
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
/// sees a truncated body, never a complete one.
async fn pump_request(
    head: Vec<u8>,
    body: Option<RecvStream>,
    chunked: bool,
    to_http1: mpsc::Sender<Vec<u8>>,
) {
    if to_http1.send(head).await.is_err() {
        return;
    }
    let Some(mut body) = body else {
        return;
    };
    while let Some(data) = body.data().await {
        let Ok(data) = data else {
            return;
        };
        let _ = body.flow_control().release_capacity(data.len());
        if data.is_empty() {
            continue;
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
            return;
        }
    }
    if chunked {
        let _ = to_http1.send(b"0\r\n\r\n".to_vec()).await;
    }
}

/// Why a response could not be relayed; the stream is then reset.
#[derive(Debug)]
struct Unrelayable;

impl From<h2::Error> for Unrelayable {
    fn from(_: h2::Error) -> Self {
        Self
    }
}

/// Reads the HTTP/1.1 response out of the bridge and sends it as h2 HEADERS and DATA.
async fn relay_response(
    mut from_http1: mpsc::Receiver<Vec<u8>>,
    respond: &mut SendResponse<Bytes>,
    method: &Method,
    is_head: bool,
) -> Result<(), Unrelayable> {
    let mut buf = Vec::new();
    let (response, framing) = loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match parse_response(&buf, &mut headers, method.as_str()) {
                Ok(Some(head)) => Some((
                    h2_response(&head).ok_or(Unrelayable)?,
                    head.framing,
                    head.len,
                )),
                Ok(None) => None,
                Err(_) => return Err(Unrelayable),
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
            None => buf.extend_from_slice(&from_http1.recv().await.ok_or(Unrelayable)?),
        }
    };
    let framing = if is_head { BodyFraming::None } else { framing };
    if framing == BodyFraming::None || framing == BodyFraming::Length(0) {
        respond.send_response(response, true)?;
        return Ok(());
    }
    let mut send = respond.send_response(response, false)?;
    match framing {
        BodyFraming::Length(mut left) => {
            while left > 0 {
                if buf.is_empty() {
                    buf = from_http1.recv().await.ok_or(Unrelayable)?;
                }
                let take = (buf.len() as u64).min(left) as usize;
                left -= take as u64;
                let piece = Bytes::copy_from_slice(&buf[..take]);
                buf.drain(..take);
                send_data(&mut send, piece, left == 0).await?;
            }
        }
        BodyFraming::Chunked => {
            let mut scanner = ChunkedScanner::default();
            let mut data = Vec::new();
            loop {
                let used = scanner.decode(&buf, &mut data).map_err(|_| Unrelayable)?;
                buf.drain(..used);
                if scanner.is_done() {
                    send_data(&mut send, Bytes::from(std::mem::take(&mut data)), true).await?;
                    break;
                }
                if !data.is_empty() {
                    send_data(&mut send, Bytes::from(std::mem::take(&mut data)), false).await?;
                }
                buf = from_http1.recv().await.ok_or(Unrelayable)?;
            }
        }
        BodyFraming::UntilClose => {
            if !buf.is_empty() {
                send_data(&mut send, Bytes::from(std::mem::take(&mut buf)), false).await?;
            }
            while let Some(chunk) = from_http1.recv().await {
                send_data(&mut send, Bytes::from(chunk), false).await?;
            }
            send_data(&mut send, Bytes::new(), true).await?;
        }
        BodyFraming::None => {}
    }
    Ok(())
}

/// The h2 response for an HTTP/1.1 response head, without its connection-specific headers
/// (names become lower-case); `None` if the status or a header is not valid HTTP.
fn h2_response(head: &crate::http1::ResponseHead<'_, '_>) -> Option<Response<()>> {
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::from_u16(head.status).ok()?;
    let headers = response.headers_mut();
    for h in head.headers {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if is_connection_specific(&name) {
            continue;
        }
        headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    Some(response)
}

/// Sends `data` as the client's flow-control window allows, at most [`MAX_DATA_PIECE`] at a
/// time; `end` ends the stream with the last piece (or an empty frame if `data` is empty).
async fn send_data(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
) -> Result<(), Unrelayable> {
    if data.is_empty() {
        if end {
            send.send_data(data, true)?;
        }
        return Ok(());
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len().min(MAX_DATA_PIECE));
        let granted = poll_fn(|cx| send.poll_capacity(cx))
            .await
            .ok_or(Unrelayable)??;
        if granted == 0 {
            continue;
        }
        let piece = data.split_to(granted.min(data.len()));
        send.send_data(piece, end && data.is_empty())?;
    }
    Ok(())
}

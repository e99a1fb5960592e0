//! Accepting a downstream connection: counting it, telling inbound TLS from plaintext, and
//! shedding what the core has no room for.

use std::net::SocketAddr;
use std::rc::Rc;

use monoio::net::TcpStream;
use monoio::time::Instant;

use super::reply::{linger, send};
use super::serve_http1;
use super::sniff::{sniff, Sniffed};
use super::tcp::{relay_inbound, relay_outbound};
use crate::conn::Conn;
use crate::http1::reply::LocalReply;
use crate::http2;
use crate::intercept::socket;
use crate::percore::Core;
use crate::routing::Direction;
use crate::stream::{Stream, TlsStream, TLS_HANDSHAKE_RECORD};
use crate::tls::CoreTls;

/// How a downstream connection arrived: the listener that took it, and where its client sent
/// it when the capture rules redirected it to meshd.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival {
    pub(crate) direction: Direction,
    /// The address the client connected to; `None` when it called meshd's listener itself.
    pub(crate) original_dst: Option<SocketAddr>,
}

/// Serves one downstream connection from `peer` until either side closes it or the core
/// drains.
pub async fn serve_connection(
    stream: TcpStream,
    direction: Direction,
    peer: SocketAddr,
    core: Rc<Core>,
) {
    let _open = core.connections.open();
    // The caller address, as per-source rate limits key on it.
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let arrival = Arrival {
        direction,
        original_dst: socket::original_destination(&stream, peer),
    };
    let mut down = Conn::new(stream);
    if let (Direction::Outbound, Some(original)) = (direction, arrival.original_dst) {
        // Unmarked, meshd's own connections are captured again: each would open another.
        let Some(marks) = core.settings.marks else {
            tracing::warn!(
                "closed a captured connection to {original}: meshd cannot mark its sockets \
                 (needs CAP_NET_ADMIN), so under capture its own connections would loop"
            );
            return;
        };
        let mark = marks.mesh;
        if core.routes.borrow().declares_tcp(original) {
            return relay_outbound(down, original, mark, &core).await;
        }
        match sniff(&mut down, &core).await {
            Sniffed::Http => {}
            Sniffed::Opaque | Sniffed::Http2 if core.routes.borrow().refuses_opaque(original) => {
                tracing::debug!("closed a captured connection to {original}: registry_only");
                return;
            }
            // h2c to a service is served; to a server outside the mesh, which may speak
            // nothing else, it is relayed as it is.
            Sniffed::Http2 if core.routes.borrow().is_mesh_address(original) => {
                return http2::serve(down, peer, arrival, &core).await;
            }
            Sniffed::Opaque | Sniffed::Http2 => {
                return relay_outbound(down, original, mark, &core).await;
            }
            Sniffed::Closed => return,
        }
    }
    if direction == Direction::Inbound {
        match accept_inbound(down, arrival, &core).await {
            Some(Accepted::Http1(accepted)) => down = accepted,
            Some(Accepted::Http2(down)) => {
                http2::serve(down, peer, arrival, &core).await;
                return;
            }
            Some(Accepted::Opaque(down, target)) => {
                return relay_inbound(down, target, &core).await
            }
            None => return,
        }
    }
    serve_http(down, arrival, peer, &core).await;
}

/// Serves a plaintext connection that speaks HTTP: h2c when it opens with HTTP/2's preface
/// (prior knowledge, as h2load and gRPC clients may), else HTTP/1.1.
async fn serve_http(mut down: Conn, arrival: Arrival, peer: SocketAddr, core: &Rc<Core>) {
    if !down.stream.is_tls() && down.buffered().is_empty() {
        // The wait serve_http1 would make for a first request.
        let idle = monoio::time::sleep(core.settings.idle_timeout);
        let read = monoio::select! {
            _ = core.connections.drain.wait() => return,
            _ = idle => return,
            read = down.fill() => read,
        };
        if !matches!(read, Ok(n) if n > 0) {
            return;
        }
    }
    // A first read may end inside the preface: the rest is due as fast as any request head.
    while !down.stream.is_tls() && is_preface_prefix(down.buffered()) {
        match monoio::time::timeout(core.settings.head_timeout, down.fill()).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
    if !down.stream.is_tls() && down.buffered().starts_with(H2_PREFACE_START) {
        return http2::serve(down, peer, arrival, core).await;
    }
    serve_http1(down, arrival, peer, core).await;
}

/// Whether `bytes` are the start of HTTP/2's preface, too short to tell yet.
fn is_preface_prefix(bytes: &[u8]) -> bool {
    bytes.len() < H2_PREFACE_START.len() && H2_PREFACE_START.starts_with(bytes)
}

/// How HTTP/2's connection preface starts: `PRI` is a method for nothing else.
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";

/// A connection `accept_inbound` let through, by the protocol it speaks.
pub(super) enum Accepted {
    Http1(Conn),
    /// HTTP/2: TLS with ALPN `h2`, or h2c with prior knowledge.
    Http2(Conn),
    /// A captured connection that is not HTTP, to relay to the application: the inbound port
    /// and the application's address.
    Opaque(Conn, (u16, SocketAddr)),
}

/// Answers a connection this core has no room for with 503 and closes it. The reply goes out
/// before the request is read (a client that pipelines gets it too), then the close lingers.
pub async fn refuse_overloaded(stream: TcpStream, core: Rc<Core>) {
    let mut down = Conn::new(stream);
    let mut out = Vec::new();
    let detail = "too many connections on this core; retry later";
    LocalReply::Overloaded.write(&mut out, detail, true);
    if send(&mut down.stream, &mut out).await.is_err() {
        return;
    }
    // Lingering keeps the reply from being lost to a reset, but a flood of connections must
    // not hold a read buffer and a task each for seconds: past the bound, close at once.
    let shedding = &core.connections.shedding;
    if shedding.get() < MAX_LINGERING_SHEDS {
        shedding.set(shedding.get() + 1);
        linger(&mut down).await;
        shedding.set(shedding.get() - 1);
    }
}

/// Most shed connections one core lingers on at once (each holds a read buffer).
pub(super) const MAX_LINGERING_SHEDS: usize = 64;

/// Inbound, before HTTP: tells a TLS ClientHello from plaintext by its first byte and
/// completes the handshake, as the listener's mTLS mode says (see
/// [`RouteState::inbound_listener_mode`](crate::routing::RouteState::inbound_listener_mode)).
/// `None`: the connection was refused (plaintext to strict, counted), failed its handshake
/// (counted) or closed first.
pub(super) async fn accept_inbound(
    mut down: Conn,
    arrival: Arrival,
    core: &Core,
) -> Option<Accepted> {
    let tls = core.security.tls.borrow().clone();
    if let Some(original) = arrival.original_dst {
        let routes = core.routes.borrow().clone();
        let (port, app, mode) = routes.captured_inbound_target(original);
        let bytes = if routes.inbound_port_is_tcp(port) {
            Bytes::Relayed((port, app))
        } else if routes.relays_opaque_inbound(port) {
            Bytes::RelayedUnlessHttp((port, app))
        } else {
            Bytes::Http
        };
        return accept_captured(down, (bytes, mode, (port, app)), tls, core).await;
    }
    let mode = core.routes.borrow().inbound_listener_mode();
    // Without a certificate nothing is strict (meshd refuses such a snapshot at load).
    let Some(tls) = tls.filter(|_| mode != spec::TlsMode::Disable) else {
        return Some(Accepted::Http1(down));
    };
    // The first bytes may take as long as a keep-alive connection's next request.
    let idle = monoio::time::sleep(core.settings.idle_timeout);
    let read = monoio::select! {
        _ = core.connections.drain.wait() => return None,
        _ = idle => return None,
        read = down.fill() => read,
    };
    if !matches!(read, Ok(n) if n > 0) {
        return None;
    }
    if down.buffered()[0] != TLS_HANDSHAKE_RECORD {
        if mode == spec::TlsMode::Strict {
            core.security.count_authn(|c| c.plaintext_refused += 1);
            return None;
        }
        return Some(Accepted::Http1(down));
    }
    handshake(down, &tls, Bytes::Http, core).await
}

/// What an inbound port does with a connection's bytes.
#[derive(Debug, Clone, Copy)]
enum Bytes {
    /// Parses them as HTTP: a port that declares HTTP, or a connection that was not captured.
    Http,
    /// Relays them to the application at (port, address) unless they are HTTP: an undeclared
    /// port.
    RelayedUnlessHttp((u16, SocketAddr)),
    /// Relays them whatever they are: a port declared `tcp`.
    Relayed((u16, SocketAddr)),
}

impl Bytes {
    /// Where bytes that are not HTTP go.
    fn relay(self) -> Option<(u16, SocketAddr)> {
        match self {
            Self::Http => None,
            Self::RelayedUnlessHttp(target) | Self::Relayed(target) => Some(target),
        }
    }
}

/// Inbound, a connection capture sent to a port under `mode`: mutual TLS when it starts with a
/// ClientHello (and the port is not `disable`), else, unless the port is strict, plaintext.
/// Either way the port's [`Bytes`] say whether it is relayed or parsed as HTTP (whose parser
/// refuses what is not); over mutual TLS, ALPN [`TCP_ALPN`] asks for the relay. On a
/// permissive port, a ClientHello that offers no protocol of the mesh's is the application's
/// own TLS (a caller without a sidecar), relayed to it at `target` as Istio passes it through.
///
/// [`TCP_ALPN`]: crate::tls::TCP_ALPN
async fn accept_captured(
    mut down: Conn,
    (bytes, mode, target): (Bytes, spec::TlsMode, (u16, SocketAddr)),
    tls: Option<Rc<CoreTls>>,
    core: &Core,
) -> Option<Accepted> {
    let tls = tls.filter(|_| mode != spec::TlsMode::Disable);
    // A port declared `tcp` that takes no TLS relays whatever comes, at once: a server-first
    // protocol's client, silent, waits for no sniff.
    if let (None, Bytes::Relayed(target)) = (&tls, bytes) {
        return Some(Accepted::Opaque(down, target));
    }
    let sniffed = sniff(&mut down, core).await;
    let hello = down.buffered().first() == Some(&TLS_HANDSHAKE_RECORD);
    let permissive = mode == spec::TlsMode::Permissive;
    let screened = sniffed == Sniffed::Opaque && hello && permissive && tls.is_some();
    if screened && !offers_mesh_alpn(&mut down, core).await? {
        return Some(Accepted::Opaque(down, target));
    }
    match (sniffed, tls, bytes) {
        (Sniffed::Closed, ..) => None,
        (Sniffed::Opaque, Some(tls), _) if hello => handshake(down, &tls, bytes, core).await,
        _ if mode == spec::TlsMode::Strict => {
            core.security.count_authn(|c| c.plaintext_refused += 1);
            None
        }
        // h2c to a port that declares nothing is relayed: the application may speak nothing
        // else, and HTTP/1.1 is all the request path would call it with.
        (_, _, Bytes::Relayed(target))
        | (Sniffed::Opaque | Sniffed::Http2, _, Bytes::RelayedUnlessHttp(target)) => {
            Some(Accepted::Opaque(down, target))
        }
        (Sniffed::Http2, ..) => Some(Accepted::Http2(down)),
        _ => Some(Accepted::Http1(down)),
    }
}

/// Whether the ClientHello that starts `down`'s buffered bytes offers a protocol of the
/// mesh's (see [`crate::tls::offers_mesh_alpn`]), reading the rest of it as fast as a request
/// head must come; `None`: the client closed or was too slow.
async fn offers_mesh_alpn(down: &mut Conn, core: &Core) -> Option<bool> {
    let deadline = Instant::now() + core.settings.head_timeout;
    loop {
        if let Some(mesh) = crate::tls::offers_mesh_alpn(down.buffered()) {
            return Some(mesh);
        }
        match monoio::time::timeout_at(deadline, down.fill()).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    }
}

/// Completes the mutual TLS handshake whose ClientHello starts `down`'s buffered bytes. A
/// client asking for opaque TCP (ALPN [`TCP_ALPN`]) is relayed where `bytes` say, and so is
/// every client of a `tcp` port; one the port cannot relay for is closed.
///
/// [`TCP_ALPN`]: crate::tls::TCP_ALPN
async fn handshake(down: Conn, tls: &CoreTls, bytes: Bytes, core: &Core) -> Option<Accepted> {
    let (stream, buf, pos) = down.into_parts();
    let Stream::Plain(tcp) = stream else {
        return None;
    };
    let handshake = TlsStream::accept(tcp, tls.server.clone(), &buf[pos..]);
    let accepted = monoio::time::timeout(core.settings.head_timeout, handshake).await;
    match accepted {
        Ok(Ok(stream)) => {
            core.security.count_authn(|c| c.inbound_handshakes += 1);
            let relayed = match bytes {
                Bytes::Relayed(target) => Some(target),
                _ if stream.negotiated_tcp() => bytes.relay(),
                _ => None,
            };
            if let Some(target) = relayed {
                let conn = Conn::with_buffer(Stream::tls(stream), buf);
                return Some(Accepted::Opaque(conn, target));
            }
            if stream.negotiated_tcp() {
                tracing::debug!(
                    "closed opaque TCP over mutual TLS from {}: the port serves HTTP, or the \
                     connection was not captured",
                    stream
                        .peer_identity()
                        .unwrap_or("a caller without identity")
                );
                return None;
            }
            if stream.negotiated_h2() {
                core.security.count_authn(|c| c.inbound_h2 += 1);
                return Some(Accepted::Http2(Conn::with_buffer(Stream::tls(stream), buf)));
            }
            Some(Accepted::Http1(Conn::with_buffer(Stream::tls(stream), buf)))
        }
        Ok(Err(_)) | Err(_) => {
            core.security.count_authn(|c| c.inbound_failures += 1);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_first_read_inside_the_preface_waits_for_more() {
        assert!(is_preface_prefix(b"PR"));
        assert!(is_preface_prefix(b"PRI * HTTP/2."));
        assert!(!is_preface_prefix(b"PRI * HTTP/2.0"), "whole: decided");
        assert!(!is_preface_prefix(b"PO"), "POST is HTTP/1.1");
        assert!(!is_preface_prefix(b"GET / HTTP/1.1\r\n"));
    }
}

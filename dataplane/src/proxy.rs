//! The HTTP/1.1 request path on one core. Phases, in order:
//!
//! 1. read head   — parse with httparse on the connection's buffer; refuse smuggling shapes.
//! 2. route       — host → rule → weighted destination → endpoint by the group's balancer,
//!    skipping ejected endpoints (no IO yet, so a bad request or a missing route costs no
//!    upstream work); then the rule's local rate limit (429), fault delay/abort and redirect.
//! 3. connect     — reuse an idle pooled connection, or connect within the connect timeout.
//! 4. forward     — write the rewritten head (with the rule's rewrite and header edits), then
//!    stream the body (bounded buffer); a mirrored request's copy leaves as its own task.
//! 5. respond     — wait for the response head within the rule's or the upstream timeout,
//!    apply the rule's response header edits, stream it back.
//! 6. recycle     — pool the upstream connection only if its response was read to the end.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use monoio::net::TcpStream;
use monoio::time::Instant;

use spec::authz::JwtFacts;
use spec::HeaderEdits;

use crate::actions::{chance, write_location, RedirectSource, NO_EDITS};
use crate::authz::InboundRequest;
use crate::balancer::{Inflight, Input, NewCookie, Pick};
use crate::conn::Conn;
use crate::http1::head::{
    parse_request, parse_response, RequestEdits, MAX_HEADERS, MAX_HEAD_BYTES,
};
use crate::http1::reply::{write_redirect, LocalReply};
use crate::http1::{BodyFraming, ChunkedScanner};
use crate::http2;
use crate::mirror::{self, Shadow};
use crate::pool::{Breaker, Refused, Upstream};
use crate::ratelimit::{over_limit, Caller};
use crate::retry::{self, Failure, Retries, Verdict};
use crate::routing::{Direction, RequestView, RouteError, RouteState, RuleRef};
use crate::stream::{self, Stream, TlsStream, TLS_HANDSHAKE_RECORD};
use crate::upstream::{self, ConnectError, Secure};
use crate::worker::{Core, Installed};

/// Bodies at most this large that arrived with their head are sent in the same write.
const COALESCE_BODY_BYTES: u64 = 16 * 1024;

/// The header inbound forwarding tells the application the mTLS caller with (Envoy's and
/// Istio's name); a caller's own is removed.
pub const FORWARDED_CLIENT_CERT: &str = "x-forwarded-client-cert";

/// What happens to the downstream connection after a request.
enum Next {
    KeepAlive,
    Close,
    /// The upstream switched protocols (101): relay raw bytes both ways until either closes.
    Tunnel(Upstream),
}

/// Serves one downstream connection from `peer` until either side closes it or the core
/// drains.
pub async fn serve_connection(
    stream: TcpStream,
    direction: Direction,
    peer: IpAddr,
    core: Rc<Core>,
) {
    core.active.set(core.active.get() + 1);
    // The caller address, as per-source rate limits key on it.
    let peer = peer.to_canonical();
    let mut down = Conn::new(stream);
    if direction == Direction::Inbound {
        match accept_inbound(down, &core).await {
            Some(Accepted::Http1(accepted)) => down = accepted,
            Some(Accepted::Http2(tls)) => {
                if let Ok(addr) = tls.tcp().peer_addr() {
                    let addr = std::net::SocketAddr::new(peer, addr.port());
                    http2::serve(*tls, addr, &core).await;
                }
                core.active.set(core.active.get() - 1);
                return;
            }
            None => {
                core.active.set(core.active.get() - 1);
                return;
            }
        }
    }
    serve_http1(down, direction, peer, &core).await;
    core.active.set(core.active.get() - 1);
}

/// Serves HTTP/1.1 requests on `down` until either side closes it or the core drains: a
/// downstream connection, or one bridged HTTP/2 stream.
pub(crate) async fn serve_http1(
    mut down: Conn,
    direction: Direction,
    peer: IpAddr,
    core: &Rc<Core>,
) {
    // Both buffers live as long as the connection, so steady-state requests allocate nothing.
    let mut request_out = Vec::with_capacity(2048);
    let mut response_out = Vec::with_capacity(2048);
    loop {
        let next = serve_request(
            &mut down,
            direction,
            peer,
            core,
            &mut request_out,
            &mut response_out,
        )
        .await;
        match next {
            Next::KeepAlive => {}
            Next::Close => {
                // TLS ends with a close_notify, so the peer can tell the end from a truncation.
                if down.stream.is_tls() {
                    let _ = down.stream.shutdown().await;
                }
                break;
            }
            Next::Tunnel(up) => {
                tunnel(down, up).await;
                break;
            }
        }
    }
}

/// A connection `accept_inbound` let through, by the protocol it speaks.
enum Accepted {
    Http1(Conn),
    /// TLS with ALPN `h2`.
    Http2(Box<TlsStream>),
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
    let shedding = &core.shedding;
    if shedding.get() < MAX_LINGERING_SHEDS {
        shedding.set(shedding.get() + 1);
        linger(&mut down).await;
        shedding.set(shedding.get() - 1);
    }
}

/// Most shed connections one core lingers on at once (each holds a read buffer).
const MAX_LINGERING_SHEDS: usize = 64;

/// Inbound, before HTTP: tells a TLS ClientHello from plaintext by its first byte and
/// completes the handshake, as the listener's mTLS mode says (see
/// [`RouteState::inbound_listener_mode`](crate::routing::RouteState::inbound_listener_mode)).
/// `None`: the connection was refused (plaintext to strict, counted), failed its handshake
/// (counted) or closed first.
async fn accept_inbound(mut down: Conn, core: &Core) -> Option<Accepted> {
    let mode = core.routes.borrow().inbound_listener_mode();
    let tls = core.tls.borrow().clone();
    // Without a certificate nothing is strict (meshd refuses such a snapshot at load).
    let Some(tls) = tls.filter(|_| mode != spec::TlsMode::Disable) else {
        return Some(Accepted::Http1(down));
    };
    // The first bytes may take as long as a keep-alive connection's next request.
    let idle = monoio::time::sleep(core.settings.idle_timeout);
    let read = monoio::select! {
        _ = core.drain.wait() => return None,
        _ = idle => return None,
        read = down.fill() => read,
    };
    if !matches!(read, Ok(n) if n > 0) {
        return None;
    }
    if down.buffered()[0] != TLS_HANDSHAKE_RECORD {
        if mode == spec::TlsMode::Strict {
            core.count_authn(|c| c.plaintext_refused += 1);
            return None;
        }
        return Some(Accepted::Http1(down));
    }
    let (stream, buf, pos) = down.into_parts();
    let Stream::Plain(tcp) = stream else {
        return None;
    };
    let handshake = TlsStream::accept(tcp, tls.server.clone(), &buf[pos..]);
    let accepted = monoio::time::timeout(core.settings.head_timeout, handshake).await;
    match accepted {
        Ok(Ok(stream)) => {
            core.count_authn(|c| c.inbound_handshakes += 1);
            if stream.negotiated_h2() {
                core.count_authn(|c| c.inbound_h2 += 1);
                return Some(Accepted::Http2(Box::new(stream)));
            }
            Some(Accepted::Http1(Conn::with_buffer(Stream::tls(stream), buf)))
        }
        Ok(Err(_)) | Err(_) => {
            core.count_authn(|c| c.inbound_failures += 1);
            None
        }
    }
}

/// The parts of a request head that outlive the borrow of the read buffer.
struct Plan {
    head_len: usize,
    framing: BodyFraming,
    keep_alive: bool,
    is_head: bool,
    /// The client asked to switch protocols; a 101 then turns the connection into a tunnel.
    upgrade: bool,
    /// HTTP/1.1 client (a 1.0 client gets no interim responses).
    http11: bool,
    /// Safe to send twice (RFC 9110 §9.2.2).
    idempotent: bool,
    expects_continue: bool,
    action: Action,
    /// The route state the request was routed with (kept across a reload) and its rule.
    routes: Rc<Installed>,
    rule: Option<RuleRef>,
    /// Inbound: the rule of the served service whose `per_source` rate limit applies, keyed on
    /// the caller's identity.
    inbound_limit: Option<RuleRef>,
    /// Fault injection drew a delay for this request.
    delay: Option<Duration>,
    /// The group and endpoint the balancer picked (outbound forwards only).
    pick: Option<Pick>,
    /// A hash-key cookie to set on the response so the client sticks to its endpoint.
    cookie: Option<NewCookie>,
}

/// What the request path does after routing.
enum Action {
    /// Forward to this endpoint (of this endpoint group, for outbound requests); the head to
    /// send is in `request_out`.
    Forward(SocketAddr, Option<usize>),
    /// Answer locally.
    Reply(LocalReply, String),
    /// Answer with a redirect of this status; the Location is in `request_out`.
    Redirect(u16),
    /// Close the connection: plaintext to a strict mTLS port (counted).
    Refuse,
}

async fn serve_request(
    down: &mut Conn,
    direction: Direction,
    peer: IpAddr,
    core: &Rc<Core>,
    request_out: &mut Vec<u8>,
    response_out: &mut Vec<u8>,
) -> Next {
    // Phase 1: read the head. Between requests is the one place draining closes a connection.
    let mut scanned = 0;
    let mut head_deadline = None;
    let plan = loop {
        let buffered = down.buffered().len();
        if buffered > 0 && (down.may_hold_head(scanned) || buffered >= MAX_HEAD_BYTES) {
            // `headers` must not live across an await (it would grow the future by 3 KiB):
            // the refusal is sent after its scope.
            let refused = {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                request_out.clear();
                match parse_request(down.buffered(), &mut headers) {
                    Ok(Some(head)) => {
                        break plan_request(&head, direction, core, request_out, &down.stream)
                    }
                    Ok(None) => None,
                    Err(e) => Some(e),
                }
            };
            if let Some(e) = refused {
                let reply = LocalReply::BadRequest { status: e.status() };
                return local_reply(down, response_out, reply, &e.to_string(), false).await;
            }
        }
        scanned = buffered;
        let read = if buffered == 0 {
            if core.drain.is_draining() {
                return Next::Close;
            }
            // An idle keep-alive connection: closed on drain or after the idle timeout.
            let idle = monoio::time::sleep(core.settings.idle_timeout);
            monoio::select! {
                _ = core.drain.wait() => return Next::Close,
                _ = idle => return Next::Close,
                read = down.fill() => read,
            }
        } else {
            // The rest of a started head must arrive in time, or a slow client holds the task.
            let deadline =
                *head_deadline.get_or_insert_with(|| Instant::now() + core.settings.head_timeout);
            match monoio::time::timeout_at(deadline, down.fill()).await {
                Ok(read) => read,
                // The abandoned read may have taken TLS records with it: the session cannot
                // carry a reply any more.
                Err(_) if down.stream.is_tls() => return Next::Close,
                Err(_) => {
                    let reply = LocalReply::BadRequest { status: 408 };
                    let detail = "request head not received in time";
                    return local_reply(down, response_out, reply, detail, false).await;
                }
            }
        };
        match read {
            Ok(0) | Err(_) => return Next::Close,
            Ok(_) => {}
        }
    };
    down.consume(plan.head_len);
    let mut keep_alive = plan.keep_alive && !core.drain.is_draining();

    // Phase 2 happened in plan_request. The rule's local rate limit (ratelimit.rs) comes
    // first, so a request over it costs nothing more: no delay held, no upstream work.
    let limited = match (plan.rule, plan.inbound_limit) {
        (Some(rule), _) => over_limit(core, &plan.routes, rule, Caller::Ip(peer)),
        (None, Some(rule)) => {
            let caller = down
                .stream
                .peer_identity()
                .map_or(Caller::Ip(peer), Caller::Principal);
            over_limit(core, &plan.routes, rule, caller)
        }
        (None, None) => None,
    };
    if let Some((reply, detail)) = limited {
        keep_alive &= plan.framing == BodyFraming::None;
        return local_reply(down, response_out, reply, &detail, keep_alive).await;
    }
    // An injected delay holds the request here, and a local reply (abort, redirect, no route)
    // ends it.
    if let Some(delay) = plan.delay {
        monoio::time::sleep(delay).await;
    }
    let (addr, group) = match plan.action {
        Action::Forward(addr, group) => (addr, group),
        Action::Reply(reply, detail) => {
            // An unread body would be parsed as the next request: close instead.
            keep_alive &= plan.framing == BodyFraming::None;
            return local_reply(down, response_out, reply, &detail, keep_alive).await;
        }
        Action::Refuse => {
            core.count_authn(|c| c.plaintext_refused += 1);
            return Next::Close;
        }
        Action::Redirect(status) => {
            keep_alive &= plan.framing == BodyFraming::None;
            response_out.clear();
            write_redirect(response_out, status, request_out, !keep_alive);
            return match send(&mut down.stream, response_out).await {
                Ok(()) if keep_alive => Next::KeepAlive,
                Ok(()) => {
                    linger(down).await;
                    Next::Close
                }
                Err(_) => Next::Close,
            };
        }
    };
    // Balancing hook: each try counts as in flight to its endpoint (the last one until the
    // request ends), and its upstream outcome feeds outlier detection; see the retry loop.
    let mut inflight: Option<Inflight<'_>> = None;
    let actions = plan.rule.and_then(|rule| plan.routes.actions(rule));
    let response_edits: &HeaderEdits = actions.map_or(&NO_EDITS, |a| &a.response_headers);
    // A rule timeout bounds the whole exchange from here, retries included: connect, send,
    // response head.
    let rule_timeout = actions.and_then(|a| a.timeout);
    let deadline = rule_timeout.map(|t| Instant::now() + t);
    let policy = actions.and_then(|a| a.retries.as_ref());
    let mut request_framing = plan.framing;
    // Whether 100 Continue went out already (to read a body kept for a retry).
    let mut continued = false;
    if let BodyFraming::Length(n) = plan.framing {
        // Small body already buffered: send head and body in one write.
        if n <= COALESCE_BODY_BYTES && n as usize <= down.buffered().len() {
            request_out.extend_from_slice(&down.buffered()[..n as usize]);
            down.consume(n as usize);
            request_framing = BodyFraming::None;
        } else if retry::buffers_body(policy, plan.idempotent, n, core.settings.retry_buffer) {
            // A retry must be able to replay the body: keep all of it (within --retry-buffer).
            if plan.expects_continue && plan.http11 && !send_continue(down).await {
                return Next::Close;
            }
            continued = true;
            let idle = core.settings.idle_timeout;
            if retry::buffer_body(down, n as usize, request_out, idle)
                .await
                .is_err()
            {
                return Next::Close;
            }
            request_framing = BodyFraming::None;
        }
    }
    // A chunked body is kept the same way while it fits; one that outgrows the bound streams
    // on from where buffering stopped, and is not retried.
    let mut chunked_from = ChunkedScanner::default();
    if plan.framing == BodyFraming::Chunked
        && retry::buffers_body(policy, plan.idempotent, 0, core.settings.retry_buffer)
    {
        if plan.expects_continue && plan.http11 && !send_continue(down).await {
            return Next::Close;
        }
        continued = true;
        let (limit, idle) = (core.settings.retry_buffer, core.settings.idle_timeout);
        match retry::buffer_chunked(down, limit, request_out, idle).await {
            Ok(retry::Chunked::Whole) => request_framing = BodyFraming::None,
            Ok(retry::Chunked::Partial(scanner)) => chunked_from = scanner,
            Err(retry::BufferError::Source) => return Next::Close,
            Err(retry::BufferError::Malformed(e)) => {
                let reply = LocalReply::BadRequest { status: 400 };
                let detail = format!("invalid chunked body: {e}");
                return local_reply(down, response_out, reply, &detail, false).await;
            }
        }
    }
    // Chunk framing that came with the head is checked before any upstream sees the head, so
    // a malformed body there is refused without an upstream connection.
    if request_framing == BodyFraming::Chunked {
        if let Err(e) = chunked_from.clone().feed(down.buffered()) {
            let reply = LocalReply::BadRequest { status: 400 };
            let detail = format!("invalid chunked body: {e}");
            return local_reply(down, response_out, reply, &detail, false).await;
        }
    }
    // Mirroring (mirror.rs): the copy starts from the forwarded head and goes out as its own
    // task once the whole request is in hand: now, or after its body streamed through.
    let mut shadow = plan.rule.and_then(|rule| {
        let (is_head, upgrade) = (plan.is_head, plan.upgrade);
        mirror::begin(
            core,
            &plan.routes,
            rule,
            request_out,
            request_framing,
            is_head,
            upgrade,
        )
    });
    if request_framing == BodyFraming::None {
        if let Some(shadow) = shadow.take() {
            shadow.send();
        }
    }
    if plan.expects_continue && plan.http11 && request_framing != BodyFraming::None && !continued {
        // Answer 100-continue ourselves (as Envoy does by default) so the client sends the
        // body while the upstream connection is set up.
        if !send_continue(down).await {
            return Next::Close;
        }
    }

    // Phases 3–5, tried again as the rule's retry policy (or the default: one replay of an
    // idempotent request a stale pooled connection lost) allows; see `retry`.
    // Replayable: the whole body (within --retry-buffer) went into the buffered head.
    let body_len = match plan.framing {
        BodyFraming::Length(n) => n,
        _ => 0,
    };
    let buffered =
        request_framing == BodyFraming::None && body_len <= core.settings.retry_buffer as u64;
    let mut retries = Retries::new(policy, plan.idempotent, buffered, &core.retry_budget);
    let _in_flight = core.retry_budget.request();
    let breaker = group.and_then(|g| core.breakers.borrow().get(g).cloned().flatten());
    let destination = group.and_then(|g| plan.routes.group(g));
    let exchange = Exchange {
        secure: destination.and_then(|g| Secure::for_group(core, g)),
        request_framing,
        chunked_from,
        deadline,
        timeout: rule_timeout.unwrap_or(core.settings.upstream_timeout),
        is_head: plan.is_head,
        upgrade: plan.upgrade,
        http11: plan.http11,
        edits: response_edits,
        breaker: breaker.as_ref(),
        group_name: group
            .and_then(|g| plan.routes.group(g))
            .map_or("the inbound target", |g| g.name.as_str()),
    };
    let mut addr = addr;
    let mut pick = plan.pick;
    let (mut up, response) = loop {
        // Balancing hook: each try counts as in flight to the endpoint it uses, and its
        // outcome feeds that endpoint's outlier detection (when the try ends or is retried).
        drop(inflight.take());
        inflight = pick.map(|pick| Inflight::start(&core.balancing, pick));
        let per_try = retries.per_try();
        let pooled_ok = retries.done() == 0 || retries.has_policy();
        let tried = exchange
            .attempt(
                down,
                core,
                addr,
                per_try,
                pooled_ok,
                request_out,
                response_out,
                &mut inflight,
                &mut shadow,
            )
            .await;
        let time_left = deadline.is_none_or(|d| Instant::now() < d);
        let failed = match tried {
            Ok((up, response)) => {
                if response.switched || !retries.may_retry_status(response.status) {
                    break (up, response);
                }
                match retries.after(Failure::Status(response.status), false, false, time_left) {
                    Verdict::Retry(backoff) => {
                        // Nothing went downstream yet: drop this response with its connection.
                        drop(up);
                        if let Some(inflight) = inflight.as_mut() {
                            inflight.response(response.status);
                        }
                        drop(inflight.take());
                        retry::sleep_within(backoff, deadline).await;
                        (addr, pick) =
                            next_endpoint(core, &plan.routes, group, addr, pick, &retries);
                        continue;
                    }
                    _ => break (up, response),
                }
            }
            Err(Tried::Done(next)) => return next,
            Err(Tried::Failed(failed)) => failed,
        };
        let verdict = match failed.failure {
            Some(failure) => {
                retries.after(failure, failed.reused, failed.before_response, time_left)
            }
            None => Verdict::Final,
        };
        match verdict {
            Verdict::Retry(backoff) => {
                drop(inflight.take());
                retry::sleep_within(backoff, deadline).await;
                (addr, pick) = next_endpoint(core, &plan.routes, group, addr, pick, &retries);
            }
            verdict => {
                keep_alive &= failed.keep_alive && request_framing == BodyFraming::None;
                let exhausted = verdict == Verdict::Exhausted;
                response_out.clear();
                let (reply, detail) = (failed.reply, &failed.detail);
                reply.write_after_retries(response_out, detail, !keep_alive, exhausted);
                return finish_reply(down, response_out, keep_alive).await;
            }
        }
    };
    // The response head (rewritten into response_out) goes back downstream. A drain that began
    // while this request was in flight tells the client to go elsewhere next time.
    if let Some(inflight) = inflight.as_mut() {
        inflight.response(response.status);
    }
    if let (Some(cookie), Some(pick)) = (plan.cookie, plan.pick) {
        let group = plan.routes.groups().get(pick.group as usize);
        if let Some(name) = group.and_then(|g| g.balancer.cookie_name()) {
            crate::balancer::write_set_cookie(response_out, name, cookie);
        }
    }
    keep_alive &= response.framing != BodyFraming::UntilClose && !core.drain.is_draining();
    if !keep_alive && !response.switched {
        response_out.truncate(response_out.len() - 2);
        response_out.extend_from_slice(b"connection: close\r\n\r\n");
    }
    let mut response_framing = response.framing;
    if let BodyFraming::Length(n) = response.framing {
        if n <= COALESCE_BODY_BYTES && n as usize <= up.buffered().len() {
            response_out.extend_from_slice(&up.buffered()[..n as usize]);
            up.consume(n as usize);
            response_framing = BodyFraming::None;
        }
    }
    if response.switched {
        // 101: both sides now speak the upgraded protocol over these two connections.
        return match send(&mut down.stream, response_out).await {
            Ok(()) => Next::Tunnel(up),
            Err(_) => Next::Close,
        };
    }
    if send(&mut down.stream, response_out).await.is_err() {
        return Next::Close;
    }
    match copy_body(
        &mut up,
        &mut down.stream,
        response_framing,
        ChunkedScanner::default(),
        core.settings.idle_timeout,
        None,
    )
    .await
    {
        Ok(()) => {}
        Err(_) => return Next::Close,
    }

    // Phase 6: recycle (unless the group's pool limits retire the connection, or a reload
    // removed its endpoint).
    if response.keep_alive && up.buffered().is_empty() && up.reusable() {
        core.recycle(Some(&plan.routes), addr, up);
    }
    if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// What every try of one request shares.
struct Exchange<'a> {
    /// How the part of the request body not in the buffered head is framed.
    request_framing: BodyFraming,
    /// Where a chunked body's scan stands after the part of it in the buffered head.
    chunked_from: ChunkedScanner,
    /// The rule timeout's deadline for the whole request.
    deadline: Option<Instant>,
    /// The rule timeout, or `--upstream-timeout` without one (for messages).
    timeout: Duration,
    is_head: bool,
    upgrade: bool,
    /// The client speaks HTTP/1.1, so interim responses may go to it.
    http11: bool,
    edits: &'a HeaderEdits,
    /// The destination group's circuit breaker, if it has pool limits.
    breaker: Option<&'a Rc<Breaker>>,
    /// The destination group's name, for messages.
    group_name: &'a str,
    /// Mutual TLS to the destination, when its service has identities.
    secure: Option<Secure<'a>>,
}

/// A try that did not produce a response to forward.
enum Tried {
    /// The request is over (the client went away, or its body was refused).
    Done(Next),
    /// The try failed; the reply to send unless it is retried.
    Failed(FailedTry),
}

struct FailedTry {
    /// The retryable condition, if it is one.
    failure: Option<Failure>,
    /// It ran on a pooled connection.
    reused: bool,
    /// No response byte arrived.
    before_response: bool,
    /// The downstream connection may stay open (nothing of the request is left unread).
    keep_alive: bool,
    reply: LocalReply,
    detail: String,
}

impl Exchange<'_> {
    /// One try (phases 3–5): a connection to `addr` (pooled when `pooled_ok`), the request
    /// head and body, the response head. `per_try` bounds the try, within the rule deadline.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        down: &mut Conn,
        core: &Core,
        addr: SocketAddr,
        per_try: Option<Duration>,
        pooled_ok: bool,
        request_out: &mut Vec<u8>,
        response_out: &mut Vec<u8>,
        inflight: &mut Option<Inflight<'_>>,
        shadow: &mut Option<Shadow>,
    ) -> Result<(Upstream, ResponsePlan), Tried> {
        // The per-try timeout counts only when it ends before the rule's deadline.
        let per_try_end = per_try
            .map(|t| Instant::now() + t)
            .filter(|end| self.deadline.is_none_or(|d| *end < d));
        let until = per_try_end.or(self.deadline);
        let timed_out = |detail: String| FailedTry {
            failure: per_try_end.map(|_| Failure::PerTryTimeout),
            reused: false,
            before_response: true,
            keep_alive: false,
            reply: LocalReply::UpstreamTimeout,
            detail,
        };
        // Phase 3: connect, or reuse a pooled connection.
        let (mut up, reused) = match self.acquire(core, addr, pooled_ok, until).await {
            Ok(acquired) => acquired,
            Err((reply, detail, endpoint_fault)) => {
                if endpoint_fault {
                    failed(inflight);
                }
                let failure = match reply {
                    LocalReply::ConnectFailure | LocalReply::SecureNaming => {
                        Some(Failure::ConnectFailure)
                    }
                    LocalReply::UpstreamTimeout => per_try_end.map(|_| Failure::PerTryTimeout),
                    _ => None,
                };
                return Err(Tried::Failed(FailedTry {
                    failure,
                    reused: false,
                    before_response: true,
                    keep_alive: true,
                    reply,
                    detail,
                }));
            }
        };
        up.served += 1;
        let reset = |detail: &str, before_response: bool| FailedTry {
            failure: Some(Failure::Reset),
            reused,
            before_response,
            keep_alive: false,
            reply: LocalReply::UpstreamReset,
            detail: detail.to_owned(),
        };
        // Phase 4: forward head (and a buffered body), then stream any remaining body.
        let head = std::mem::take(request_out);
        let len = head.len();
        let write = up.stream.write_range(head, 0..len);
        let (written, head) = match until {
            None => write.await,
            Some(until) => match monoio::time::timeout_at(until, write).await {
                Ok(done) => done,
                Err(_) => {
                    // The buffer went with the abandoned write: no try can follow.
                    failed(inflight);
                    let mut tried = timed_out("the timeout expired while sending".to_owned());
                    tried.failure = None;
                    return Err(Tried::Failed(tried));
                }
            },
        };
        *request_out = head;
        if written.is_err() {
            failed(inflight);
            return Err(Tried::Failed(reset("write failed", true)));
        }
        let idle = core.settings.idle_timeout;
        // Mirroring hook: a streamed body is copied into the mirror's request as it goes.
        let tee = shadow.as_mut();
        let (framing, scanner) = (self.request_framing, self.chunked_from.clone());
        let body = copy_body(down, &mut up.stream, framing, scanner, idle, tee);
        let copied = match self.deadline {
            None => body.await,
            Some(deadline) => match monoio::time::timeout_at(deadline, body).await {
                Ok(copied) => copied,
                Err(_elapsed) => {
                    let detail = "the rule timeout expired while sending the request body";
                    let reply = LocalReply::UpstreamTimeout;
                    let next = local_reply(down, response_out, reply, detail, false).await;
                    return Err(Tried::Done(next));
                }
            },
        };
        if let Err(e) = copied {
            let next = match e {
                CopyError::Source | CopyError::Idle => Next::Close,
                CopyError::Malformed => {
                    let reply = LocalReply::BadRequest { status: 400 };
                    local_reply(down, response_out, reply, "invalid chunked body", false).await
                }
                CopyError::Destination(e) => {
                    failed(inflight);
                    let detail = format!("while sending the request body: {e}");
                    let reply = LocalReply::UpstreamReset;
                    local_reply(down, response_out, reply, &detail, false).await
                }
            };
            return Err(Tried::Done(next));
        }
        // Mirroring hook: the whole body went through, so the copy goes out, once (a body
        // streamed once is never streamed again by a retry).
        if let Some(shadow) = shadow.take() {
            shadow.send();
        }
        // Phase 5: the response head, within the per-try, the rule's or the sidecar's timeout.
        let until = until.unwrap_or_else(|| Instant::now() + core.settings.upstream_timeout);
        let interim = self.http11.then_some(&mut down.stream);
        let read = read_response_head(
            &mut up,
            self.is_head,
            self.upgrade,
            self.edits,
            response_out,
            interim,
        );
        let tried = match monoio::time::timeout_at(until, read).await {
            Ok(Ok(response)) => return Ok((up, response)),
            Ok(Err(ResponseError::Closed)) => {
                reset("connection closed before response headers", true)
            }
            Ok(Err(ResponseError::ClosedMidHead)) => reset(
                "connection closed in the middle of the response head",
                false,
            ),
            // TLS 1.3 ends the client's handshake before the server has checked its
            // certificate: a refusal arrives as an alert where the response should be.
            Ok(Err(ResponseError::Io(e))) if !reused && stream::is_fatal_alert(&e) => {
                core.count_authn(|c| c.outbound_failures += 1);
                FailedTry {
                    failure: Some(Failure::ConnectFailure),
                    reused,
                    before_response: true,
                    keep_alive: false,
                    reply: LocalReply::ConnectFailure,
                    detail: format!("{addr}: the server refused the TLS session: {e}"),
                }
            }
            Ok(Err(ResponseError::Io(e))) => reset(&e.to_string(), false),
            Ok(Err(ResponseError::Downstream)) => return Err(Tried::Done(Next::Close)),
            Ok(Err(ResponseError::Upgrade)) => FailedTry {
                failure: None,
                reused,
                before_response: false,
                keep_alive: false,
                reply: LocalReply::BadUpstreamResponse,
                detail: "101 Switching Protocols to a request that asked for no upgrade".to_owned(),
            },
            Ok(Err(ResponseError::Malformed(detail))) => FailedTry {
                failure: None,
                reused,
                before_response: false,
                keep_alive: false,
                reply: LocalReply::BadUpstreamResponse,
                detail,
            },
            Err(_elapsed) => {
                let (timeout, which) = match per_try_end.and(per_try) {
                    Some(t) => (t, " (per-try timeout)"),
                    None => (self.timeout, ""),
                };
                let ms = timeout.as_millis();
                timed_out(format!("no response within {ms} ms{which}"))
            }
        };
        failed(inflight);
        Err(Tried::Failed(tried))
    }

    /// Phase 3: a pooled connection to `addr`, or a new one if the group's breaker has room;
    /// else wait (as a pending request) for one of the group's connections to come back.
    async fn acquire(
        &self,
        core: &Core,
        addr: SocketAddr,
        pooled_ok: bool,
        until: Option<Instant>,
    ) -> Result<(Upstream, bool), (LocalReply, String, bool)> {
        let secure = self.secure.as_ref();
        let Some(breaker) = self.breaker else {
            if let Some(up) = pooled_ok.then(|| core.pool.take(addr, secure)).flatten() {
                return Ok((up, true));
            }
            let conn = connect(core, addr, core.settings.connect_timeout, until, secure)
                .await
                .map_err(endpoint_fault)?;
            return Ok((Upstream::new(conn, None), false));
        };
        let wait_until = until.unwrap_or_else(|| Instant::now() + core.settings.upstream_timeout);
        loop {
            if let Some(up) = pooled_ok.then(|| core.pool.take(addr, secure)).flatten() {
                return Ok((up, true));
            }
            if let Some(lease) = breaker.lease() {
                let timeout = breaker
                    .connect_timeout
                    .unwrap_or(core.settings.connect_timeout);
                let conn = connect(core, addr, timeout, until, secure)
                    .await
                    .map_err(endpoint_fault)?;
                return Ok((Upstream::new(conn, Some(lease)), false));
            }
            // An idle connection to another endpoint of the group makes room when closed.
            if core.pool.close_one_idle(breaker) {
                continue;
            }
            match monoio::time::timeout_at(wait_until, breaker.wait()).await {
                Ok(Ok(())) => {}
                Ok(Err(Refused::Overflow)) => {
                    return Err((
                        LocalReply::UpstreamOverflow,
                        format!(
                            "{}: the connection and pending request limits are reached",
                            self.group_name
                        ),
                        false,
                    ))
                }
                Err(_elapsed) => {
                    return Err((
                        LocalReply::UpstreamTimeout,
                        format!("{}: no connection became free in time", self.group_name),
                        false,
                    ))
                }
            }
        }
    }
}

/// The endpoint a policy's retry goes to: another of the group's, picked by the group's
/// balancer among the endpoints not ejected, when it has one.
fn next_endpoint(
    core: &Core,
    routes: &Installed,
    group: Option<usize>,
    addr: SocketAddr,
    pick: Option<Pick>,
    retries: &Retries<'_>,
) -> (SocketAddr, Option<Pick>) {
    let (Some(index), Some(last)) = (group.filter(|_| retries.has_policy()), pick) else {
        return (addr, pick);
    };
    let Some(group) = routes.group(index) else {
        return (addr, pick);
    };
    let other = core
        .balancing
        .borrow_mut()
        .pick_other(index, group, last.endpoint);
    match other.and_then(|e| Some((e, *group.endpoints.get(e as usize)?))) {
        Some((endpoint, addr)) => (
            addr,
            Some(Pick {
                group: last.group,
                endpoint,
            }),
        ),
        None => (addr, pick),
    }
}

/// Sends `100 Continue`; false when the client is gone.
async fn send_continue(down: &mut Conn) -> bool {
    let mut interim = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
    send(&mut down.stream, &mut interim).await.is_ok()
}

/// What routing reads of a parsed head.
fn request_view<'r, 'h>(head: &'r crate::http1::RequestHead<'_, 'h>) -> RequestView<'r, 'h> {
    RequestView {
        host: head.host,
        port: head.port,
        path: head.path,
        method: head.method,
        query: head.query,
        headers: head.headers,
    }
}

/// Verifies an inbound request's JWT through the core's cache, counting the outcome.
fn verify_jwt(
    core: &Core,
    verifier: &crate::jwt::Verifier,
    token: &str,
) -> Result<Rc<JwtFacts>, crate::jwt::Rejection> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let verified = core.jwt_tokens.borrow_mut().verify(verifier, token, now);
    match &verified {
        Ok(_) => core.count_authn(|c| c.jwt_verified += 1),
        Err(_) => core.count_authn(|c| c.jwt_rejected += 1),
    }
    verified
}

/// Decides an inbound request by the workload's policies and, if allowed, writes the head
/// forwarded to the application at `app`: without the caller's own client-certificate header
/// (and, `strip_bearer`, the verified Authorization header), with meshd's.
fn authorize_inbound(
    core: &Core,
    routes: &RouteState,
    request: &InboundRequest<'_, '_, '_>,
    app: SocketAddr,
    strip_bearer: bool,
    out: &mut Vec<u8>,
) -> Action {
    if let Err(detail) = crate::authz::check(&routes.authorization, request) {
        return Action::Reply(LocalReply::Forbidden, detail);
    }
    let edits = RequestEdits {
        path: None,
        authority: None,
        headers: if strip_bearer {
            &core.inbound_edits_bearer
        } else {
            &core.inbound_edits
        },
    };
    request.head.write_edited(out, &edits);
    if let Some(caller) = request.principal {
        write_client_cert(out, core, caller);
    }
    Action::Forward(app, None)
}

/// A connect error, which counts against the endpoint (unlike a full circuit breaker).
fn endpoint_fault((reply, detail): (LocalReply, String)) -> (LocalReply, String, bool) {
    (reply, detail, true)
}

/// Records a failed upstream exchange (gateway error) for outlier detection.
fn failed(inflight: &mut Option<Inflight<'_>>) {
    if let Some(inflight) = inflight {
        inflight.failed();
    }
}

/// Routes a parsed head and writes into `out` the forwarded head (or a redirect's Location).
fn plan_request(
    head: &crate::http1::RequestHead<'_, '_>,
    direction: Direction,
    core: &Core,
    out: &mut Vec<u8>,
    peer: &Stream,
) -> Plan {
    let routes = core.routes.borrow().clone();
    let mut rule = None;
    let mut inbound_limit = None;
    let mut delay = None;
    let mut pick = None;
    let mut cookie = None;
    let action = match direction {
        // A tunnel is not an HTTP exchange this proxy can frame; refuse it rather than
        // relaying half of it.
        _ if head.method == "CONNECT" => Action::Reply(
            LocalReply::BadRequest { status: 501 },
            "CONNECT tunnels are not supported".to_owned(),
        ),
        Direction::Outbound => match routes.route(&request_view(head), || fastrand::u32(..100)) {
            Ok(decision) => {
                rule = Some(decision.rule);
                let actions = decision.actions;
                delay = actions
                    .delay
                    .filter(|&(_, share)| chance(share))
                    .map(|(d, _)| d);
                if let Some((status, _)) = actions.abort.filter(|&(_, share)| chance(share)) {
                    let detail = format!("rule {} injected an abort", actions.name);
                    Action::Reply(LocalReply::FaultAbort { status }, detail)
                } else if let Some(redirect) = &actions.redirect {
                    let source = RedirectSource {
                        host: head.host,
                        port: head.port,
                        path: head.path,
                        query: head.query,
                    };
                    write_location(redirect, source, out);
                    Action::Redirect(redirect.status)
                } else {
                    match decision.destination {
                        None => Action::Reply(
                            LocalReply::NoHealthyUpstream,
                            format!("rule {} has no destination", actions.name),
                        ),
                        Some(d) if d.group.endpoints.is_empty() => Action::Reply(
                            LocalReply::NoHealthyUpstream,
                            format!("{} has no endpoints", d.group.name),
                        ),
                        Some(d) => {
                            let group = d.group;
                            let input = Input {
                                headers: head.headers,
                                peer: &|| peer.peer_addr().ok().map(|a| a.ip()),
                            };
                            let picked =
                                core.balancing
                                    .borrow_mut()
                                    .pick(d.group_index, group, &input);
                            let slot = picked.endpoint;
                            pick = Some(Pick {
                                group: d.group_index as u32,
                                endpoint: slot,
                            });
                            cookie = picked.cookie;
                            if actions.edits_request() {
                                let matched = decision.path_covered;
                                let write_path = |out: &mut Vec<u8>| {
                                    if let Some(rewrite) = &actions.path {
                                        rewrite.write(head.path, matched, out);
                                    }
                                };
                                let edits = RequestEdits {
                                    path: actions
                                        .path
                                        .as_ref()
                                        .map(|_| &write_path as &dyn Fn(&mut Vec<u8>)),
                                    authority: actions.authority.as_deref(),
                                    headers: &actions.request_headers,
                                };
                                head.write_edited(out, &edits);
                            } else {
                                head.write_forwarded(out);
                            }
                            Action::Forward(group.endpoints[slot as usize], Some(d.group_index))
                        }
                    }
                }
            }
            Err(RouteError::UnknownHost) => Action::Reply(
                LocalReply::NoRoute,
                format!("no service for host {:?}", head.host),
            ),
            Err(RouteError::NoRuleMatched) => Action::Reply(
                LocalReply::NoRoute,
                format!(
                    "no rule for host {:?} matched path {:?}",
                    head.host, head.path
                ),
            ),
        },
        Direction::Inbound => match routes.inbound_target(head.port) {
            // A listener shared with permissive ports let this plaintext request in.
            Some((_, _, spec::TlsMode::Strict)) if !peer.is_tls() => Action::Refuse,
            Some((port, addr, _)) => {
                let found = if routes.jwt.is_empty() {
                    Ok(None)
                } else {
                    crate::jwt::token(head)
                };
                let verified = match found {
                    Ok(Some(bearer)) => verify_jwt(core, &routes.jwt, bearer.token)
                        .map(|facts| Some((bearer.in_header, facts))),
                    Ok(None) => Ok(None),
                    Err(several) => {
                        core.count_authn(|c| c.jwt_rejected += 1);
                        Err(several)
                    }
                };
                match verified {
                    Err(rejection) => {
                        Action::Reply(LocalReply::Unauthorized, rejection.to_string())
                    }
                    Ok(verified) => {
                        let stripped = verified.as_ref().is_some_and(|(in_header, _)| *in_header);
                        let jwt = verified.map(|(_, facts)| facts);
                        let request = InboundRequest {
                            head,
                            port: Some(port),
                            principal: peer.peer_identity(),
                            peer,
                            jwt: jwt.as_deref(),
                        };
                        let action =
                            authorize_inbound(core, &routes, &request, addr, stripped, out);
                        if matches!(action, Action::Forward(..)) {
                            inbound_limit = routes.served_limited_rule(&request_view(head));
                        }
                        action
                    }
                }
            }
            None => Action::Reply(
                LocalReply::NoRoute,
                "this workload declares no inbound port".to_owned(),
            ),
        },
    };
    Plan {
        head_len: head.len,
        framing: head.framing,
        keep_alive: head.keep_alive,
        is_head: head.method == "HEAD",
        upgrade: head.upgrade,
        http11: head.minor_version == 1,
        idempotent: spec::http::is_idempotent(head.method),
        expects_continue: head.expects_continue,
        action,
        routes,
        rule,
        inbound_limit,
        delay,
        pick,
        cookie,
    }
}

/// Adds `x-forwarded-client-cert: By=<this workload>;URI=<caller>` to the forwarded head in
/// `out`, as Envoy does for a verified mTLS caller.
fn write_client_cert(out: &mut Vec<u8>, core: &Core, caller: &str) {
    let tls = core.tls.borrow();
    let Some(own) = tls.as_deref().map(|t| t.spiffe_id()) else {
        return;
    };
    out.truncate(out.len() - 2);
    for part in [FORWARDED_CLIENT_CERT, ": By=", own, ";URI="] {
        out.extend_from_slice(part.as_bytes());
    }
    // A SPIFFE ID has no `;`, `,` or `"`; one that does (from another CA in the bundle) is
    // quoted, as Envoy quotes such values.
    if caller.contains([';', ',', '"']) {
        out.push(b'"');
        out.extend_from_slice(caller.replace('"', "\\\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(caller.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// Relays bytes both ways after a protocol switch until each side has closed its half; bytes
/// that arrived with either head go first. Neither connection is reused afterwards.
async fn tunnel(mut down: Conn, up: Upstream) {
    // The lease (if any) keeps counting the connection until the tunnel ends.
    let Upstream {
        conn: mut up,
        lease: _lease,
        ..
    } = up;
    use monoio::io::Splitable;
    let pending = down.buffered().len();
    if down
        .forward_buffered(&mut up.stream, pending)
        .await
        .is_err()
    {
        return;
    }
    let pending = up.buffered().len();
    if up
        .forward_buffered(&mut down.stream, pending)
        .await
        .is_err()
    {
        return;
    }
    match (down.into_parts().0, up.into_parts().0) {
        (Stream::Plain(down), Stream::Plain(up)) => {
            let (mut down_read, mut down_write) = down.into_split();
            let (mut up_read, mut up_write) = up.into_split();
            let _ = monoio::join!(
                relay(&mut down_read, &mut up_write),
                relay(&mut up_read, &mut down_write)
            );
        }
        (down, up) => relay_unsplit(down, up).await,
    }
}

/// Relays both ways in one task, for a TLS side whose session cannot be split in two: both
/// sides in poll style, so a write waiting on one side never stops reading the other (each
/// peer may send everything before it reads). A side that ends half-closes the other.
async fn relay_unsplit(down: Stream, up: Stream) {
    let (Ok(mut down), Ok(mut up)) = (down.into_poll(), up.into_poll()) else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
}

/// Copies until `from` ends, then half-closes `to` so the other side sees the end too.
async fn relay(
    from: &mut impl monoio::io::AsyncReadRent,
    to: &mut impl monoio::io::AsyncWriteRent,
) -> io::Result<u64> {
    let copied = monoio::io::copy(from, to).await;
    let _ = to.shutdown().await;
    copied
}

/// Connects within `timeout` (`--connect-timeout` or the group's), or by the try's `deadline`
/// when that comes first (then a timeout is the try's: 504 `UT`).
/// The TLS handshake, when the destination has identities, counts against the same time.
async fn connect(
    core: &Core,
    addr: SocketAddr,
    timeout: Duration,
    deadline: Option<Instant>,
    secure: Option<&Secure<'_>>,
) -> Result<Conn, (LocalReply, String)> {
    let own = Instant::now() + timeout;
    let until = deadline.map_or(own, |d| d.min(own));
    match upstream::connect(core, addr, until, secure).await {
        Ok(conn) => Ok(conn),
        Err(ConnectError::Refused(e)) => Err((LocalReply::ConnectFailure, format!("{addr}: {e}"))),
        Err(ConnectError::Naming(mismatch)) => {
            Err((LocalReply::SecureNaming, format!("{addr}: {mismatch}")))
        }
        Err(ConnectError::Tls(e)) => Err((
            LocalReply::ConnectFailure,
            format!("{addr}: TLS handshake failed: {e}"),
        )),
        Err(ConnectError::TimedOut) if until < own => Err((
            LocalReply::UpstreamTimeout,
            format!("{addr}: the rule timeout expired while connecting"),
        )),
        Err(ConnectError::TimedOut) => Err((
            LocalReply::ConnectFailure,
            format!("{addr}: no connection within {} ms", timeout.as_millis()),
        )),
    }
}

async fn local_reply(
    down: &mut Conn,
    out: &mut Vec<u8>,
    reply: LocalReply,
    detail: &str,
    keep_alive: bool,
) -> Next {
    out.clear();
    reply.write(out, detail, !keep_alive);
    finish_reply(down, out, keep_alive).await
}

/// Sends a reply written into `out`, then keeps or closes the connection.
async fn finish_reply(down: &mut Conn, out: &mut Vec<u8>, keep_alive: bool) -> Next {
    match send(&mut down.stream, out).await {
        Ok(()) if keep_alive => Next::KeepAlive,
        Ok(()) => {
            linger(down).await;
            Next::Close
        }
        Err(_) => Next::Close,
    }
}

/// Closes gracefully after a reply sent while request bytes may still be arriving: closing
/// with unread data makes Linux send RST, which can destroy the reply before the client reads
/// it (RFC 9112 §9.6). Half-close, then discard input for a bounded time and amount.
async fn linger(down: &mut Conn) {
    const LINGER: Duration = Duration::from_secs(2);
    const MAX_DISCARD: usize = 256 * 1024;
    if down.stream.shutdown().await.is_err() {
        return;
    }
    // A bridged HTTP/2 stream has no socket to reset; its request body is the bridge's.
    if down.stream.is_bridged() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut discarded = 0;
    while discarded < MAX_DISCARD {
        let pending = down.buffered().len();
        down.consume(pending);
        match monoio::time::timeout_at(deadline, down.fill()).await {
            Ok(Ok(n)) if n > 0 => discarded += n,
            _ => return,
        }
    }
}

/// Writes all of `buf` and clears it, keeping its allocation.
async fn send(stream: &mut Stream, buf: &mut Vec<u8>) -> io::Result<()> {
    let owned = std::mem::take(buf);
    let len = owned.len();
    let (result, mut owned) = stream.write_range(owned, 0..len).await;
    owned.clear();
    *buf = owned;
    result
}

struct ResponsePlan {
    status: u16,
    framing: BodyFraming,
    keep_alive: bool,
    /// A 101 to a request that asked to upgrade.
    switched: bool,
}

enum ResponseError {
    /// Closed before sending any byte: the request may not have been processed.
    Closed,
    /// Closed after part of a head: the upstream did process the request.
    ClosedMidHead,
    /// 101 although the forwarded request carried no Upgrade.
    Upgrade,
    Io(io::Error),
    Malformed(String),
    /// Forwarding an interim response to the client failed: the client is gone.
    Downstream,
}

/// Reads the final response head and writes the head to send downstream into `out`. Interim
/// 1xx responses go to `interim` (the client, when it speaks HTTP/1.1) as they arrive.
async fn read_response_head(
    up: &mut Conn,
    is_head: bool,
    upgrade: bool,
    edits: &HeaderEdits,
    out: &mut Vec<u8>,
    mut interim: Option<&mut Stream>,
) -> Result<ResponsePlan, ResponseError> {
    let method = if is_head { "HEAD" } else { "GET" };
    loop {
        // The parsed head borrows `headers` (3 KiB): no await may happen while it lives, or
        // every request's future carries the array.
        let mut forward_interim = false;
        if !up.buffered().is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match parse_response(up.buffered(), &mut headers, method) {
                Ok(Some(head)) if (100..200).contains(&head.status) && head.status != 101 => {
                    // Interim responses go on to an HTTP/1.1 client as they come (RFC 9110
                    // 15.2), but 100 Continue: meshd answered the client's expectation itself.
                    forward_interim = interim.is_some() && head.status != 100;
                    if forward_interim {
                        out.clear();
                        head.write_forwarded(out, false);
                    }
                    let len = head.len;
                    up.consume(len);
                    if !forward_interim {
                        continue;
                    }
                }
                Ok(Some(head)) if head.status == 101 && !upgrade => {
                    return Err(ResponseError::Upgrade)
                }
                Ok(Some(head)) => {
                    out.clear();
                    head.write_edited(out, false, edits);
                    let switched = head.status == 101;
                    let plan = ResponsePlan {
                        status: head.status,
                        framing: head.framing,
                        keep_alive: head.keep_alive && !switched,
                        switched,
                    };
                    let len = head.len;
                    up.consume(len);
                    return Ok(plan);
                }
                Ok(None) => {}
                Err(e) => return Err(ResponseError::Malformed(e.to_string())),
            }
        }
        if forward_interim {
            if let Some(down) = interim.as_deref_mut() {
                send(down, out)
                    .await
                    .map_err(|_| ResponseError::Downstream)?;
            }
            continue;
        }
        match up.fill().await {
            Ok(0) if up.buffered().is_empty() => return Err(ResponseError::Closed),
            Ok(0) => return Err(ResponseError::ClosedMidHead),
            Ok(_) => {}
            Err(e) => return Err(ResponseError::Io(e)),
        }
    }
}

enum CopyError {
    Source,
    /// Neither side moved a byte for the idle timeout.
    Idle,
    Destination(io::Error),
    Malformed,
}

/// Streams a body from `src` to `dst` without buffering more than one read at a time. Each
/// read and each write must make progress within `idle`. A chunked body's scan starts at
/// `scanner` (past the part of it already sent). The body is also copied to `tee` when given
/// (a mirror's copy).
async fn copy_body(
    src: &mut Conn,
    dst: &mut Stream,
    framing: BodyFraming,
    mut scanner: ChunkedScanner,
    idle: Duration,
    mut tee: Option<&mut Shadow>,
) -> Result<(), CopyError> {
    match framing {
        BodyFraming::None => Ok(()),
        BodyFraming::Length(mut left) => {
            while left > 0 {
                if src.buffered().is_empty() && fill_within(src, idle).await? == 0 {
                    return Err(CopyError::Source);
                }
                let n = left.min(src.buffered().len() as u64) as usize;
                if let Some(tee) = tee.as_deref_mut() {
                    tee.copy(&src.buffered()[..n]);
                }
                forward_within(src, dst, n, idle).await?;
                left -= n as u64;
            }
            Ok(())
        }
        BodyFraming::Chunked => loop {
            if src.buffered().is_empty() && fill_within(src, idle).await? == 0 {
                return Err(CopyError::Source);
            }
            let n = scanner
                .feed(src.buffered())
                .map_err(|_| CopyError::Malformed)?;
            if let Some(tee) = tee.as_deref_mut() {
                tee.copy(&src.buffered()[..n]);
            }
            forward_within(src, dst, n, idle).await?;
            if scanner.is_done() {
                return Ok(());
            }
        },
        BodyFraming::UntilClose => loop {
            if src.buffered().is_empty() && fill_within(src, idle).await? == 0 {
                return Ok(());
            }
            let n = src.buffered().len();
            forward_within(src, dst, n, idle).await?;
        },
    }
}

async fn fill_within(src: &mut Conn, idle: Duration) -> Result<usize, CopyError> {
    match monoio::time::timeout(idle, src.fill()).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(_)) => Err(CopyError::Source),
        Err(_) => Err(CopyError::Idle),
    }
}

async fn forward_within(
    src: &mut Conn,
    dst: &mut Stream,
    n: usize,
    idle: Duration,
) -> Result<(), CopyError> {
    match monoio::time::timeout(idle, src.forward_buffered(dst, n)).await {
        Ok(result) => result.map_err(CopyError::Destination),
        Err(_) => Err(CopyError::Idle),
    }
}

//! The HTTP/1.1 request path on one core. Phases, in order:
//!
//! 1. read head   — parse with httparse on the connection's buffer; refuse smuggling shapes.
//! 2. route       — host → rule → weighted destination → round-robin endpoint (no IO yet,
//!    so a bad request or a missing route costs no upstream work); then the rule's local rate
//!    limit (429), fault delay/abort and redirect.
//! 3. connect     — reuse an idle pooled connection, or connect within the connect timeout.
//! 4. forward     — write the rewritten head (with the rule's rewrite and header edits), then
//!    stream the body (bounded buffer); a mirrored request's copy leaves as its own task.
//! 5. respond     — wait for the response head within the rule's or the upstream timeout,
//!    apply the rule's response header edits, stream it back.
//! 6. recycle     — pool the upstream connection only if its response was read to the end.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use monoio::net::TcpStream;
use monoio::time::Instant;

use spec::HeaderEdits;

use crate::actions::{chance, write_location, RedirectSource, NO_EDITS};
use crate::conn::{write_range, Conn};
use crate::http1::head::{
    parse_request, parse_response, RequestEdits, MAX_HEADERS, MAX_HEAD_BYTES,
};
use crate::http1::reply::{write_redirect, LocalReply};
use crate::http1::{BodyFraming, ChunkedScanner};
use crate::mirror::{self, Shadow};
use crate::routing::{Direction, RequestView, RouteError, RuleRef};
use crate::worker::{Core, Installed};

/// Bodies at most this large that arrived with their head are sent in the same write.
const COALESCE_BODY_BYTES: u64 = 16 * 1024;

/// What happens to the downstream connection after a request.
enum Next {
    KeepAlive,
    Close,
    /// The upstream switched protocols (101): relay raw bytes both ways until either closes.
    Tunnel(Conn),
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
    // The caller identity rate limits key on until mTLS identities exist.
    let peer = peer.to_canonical();
    let mut down = Conn::new(stream);
    // Both buffers live as long as the connection, so steady-state requests allocate nothing.
    let mut request_out = Vec::with_capacity(2048);
    let mut response_out = Vec::with_capacity(2048);
    loop {
        let next = serve_request(
            &mut down,
            direction,
            peer,
            &core,
            &mut request_out,
            &mut response_out,
        )
        .await;
        match next {
            Next::KeepAlive => {}
            Next::Close => break,
            Next::Tunnel(up) => {
                tunnel(down, up).await;
                break;
            }
        }
    }
    core.active.set(core.active.get() - 1);
}

/// Answers a connection this core has no room for with 503 and closes it. The reply goes out
/// before the request is read (a client that pipelines gets it too), then the close lingers.
pub async fn refuse_overloaded(stream: TcpStream) {
    let mut down = Conn::new(stream);
    let mut out = Vec::new();
    let detail = "too many connections on this core; retry later";
    local_reply(&mut down, &mut out, LocalReply::Overloaded, detail, false).await;
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
    /// Fault injection drew a delay for this request.
    delay: Option<Duration>,
}

/// What the request path does after routing.
enum Action {
    /// Forward to this endpoint; the head to send is in `request_out`.
    Forward(SocketAddr),
    /// Answer locally.
    Reply(LocalReply, String),
    /// Answer with a redirect of this status; the Location is in `request_out`.
    Redirect(u16),
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
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            request_out.clear();
            match parse_request(down.buffered(), &mut headers) {
                Ok(Some(head)) => break plan_request(&head, direction, core, request_out),
                Ok(None) => {}
                Err(e) => {
                    let reply = LocalReply::BadRequest { status: e.status() };
                    return local_reply(down, response_out, reply, &e.to_string(), false).await;
                }
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
    if let Some((reply, detail)) = plan
        .rule
        .and_then(|rule| crate::ratelimit::over_limit(core, &plan.routes, rule, peer))
    {
        keep_alive &= plan.framing == BodyFraming::None;
        return local_reply(down, response_out, reply, &detail, keep_alive).await;
    }
    // An injected delay holds the request here, and a local reply (abort, redirect, no route)
    // ends it.
    if let Some(delay) = plan.delay {
        monoio::time::sleep(delay).await;
    }
    let addr = match plan.action {
        Action::Forward(addr) => addr,
        Action::Reply(reply, detail) => {
            // An unread body would be parsed as the next request: close instead.
            keep_alive &= plan.framing == BodyFraming::None;
            return local_reply(down, response_out, reply, &detail, keep_alive).await;
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
    let actions = plan.rule.and_then(|rule| plan.routes.actions(rule));
    let response_edits: &HeaderEdits = actions.map_or(&NO_EDITS, |a| &a.response_headers);
    // A rule timeout bounds the whole exchange from here: connect, send, response head.
    let rule_timeout = actions.and_then(|a| a.timeout);
    let deadline = rule_timeout.map(|t| Instant::now() + t);
    let mut request_framing = plan.framing;
    if let BodyFraming::Length(n) = plan.framing {
        // Small body already buffered: send head and body in one write.
        if n <= COALESCE_BODY_BYTES && n as usize <= down.buffered().len() {
            request_out.extend_from_slice(&down.buffered()[..n as usize]);
            down.consume(n as usize);
            request_framing = BodyFraming::None;
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
    if plan.expects_continue && plan.http11 && request_framing != BodyFraming::None {
        // Answer 100-continue ourselves (as Envoy does by default) so the client sends the
        // body while the upstream connection is set up.
        let mut interim = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
        if send(&mut down.stream, &mut interim).await.is_err() {
            return Next::Close;
        }
    }

    // Phases 3–5, with one retry when a reused connection turns out to be dead before any
    // response byte and the request may be replayed: an idempotent method (RFC 9110 §9.2.2)
    // whose body, if any, went in the first write.
    let replayable = request_framing == BodyFraming::None && plan.idempotent;
    let mut attempt = 0;
    let (mut up, response) = loop {
        attempt += 1;
        let pooled = if attempt == 1 {
            core.pool.take(addr)
        } else {
            None
        };
        let (mut up, reused) = match pooled {
            Some(conn) => (conn, true),
            None => match connect(addr, core, deadline).await {
                Ok(conn) => (conn, false),
                Err((reply, detail)) => {
                    keep_alive &= request_framing == BodyFraming::None;
                    return local_reply(down, response_out, reply, &detail, keep_alive).await;
                }
            },
        };
        let may_retry = reused && replayable && attempt == 1;
        // Phase 4: forward head (and a coalesced body), then stream any remaining body.
        let head = std::mem::take(request_out);
        let len = head.len();
        let (written, head) = write_range(&mut up.stream, head, 0..len).await;
        *request_out = head;
        if written.is_err() {
            if may_retry {
                continue;
            }
            let reply = LocalReply::UpstreamReset;
            return local_reply(down, response_out, reply, "write failed", false).await;
        }
        let idle = core.settings.idle_timeout;
        let tee = shadow.as_mut().map(Shadow::tee);
        let body = copy_body(down, &mut up.stream, request_framing, idle, tee);
        let copied = match deadline {
            None => body.await,
            Some(deadline) => match monoio::time::timeout_at(deadline, body).await {
                Ok(copied) => copied,
                Err(_elapsed) => {
                    let detail = "the rule timeout expired while sending the request body";
                    let reply = LocalReply::UpstreamTimeout;
                    return local_reply(down, response_out, reply, detail, false).await;
                }
            },
        };
        if let Err(e) = copied {
            return match e {
                CopyError::Source | CopyError::Idle => Next::Close,
                CopyError::Malformed => {
                    let reply = LocalReply::BadRequest { status: 400 };
                    local_reply(down, response_out, reply, "invalid chunked body", false).await
                }
                CopyError::Destination(e) => {
                    let detail = format!("while sending the request body: {e}");
                    local_reply(
                        down,
                        response_out,
                        LocalReply::UpstreamReset,
                        &detail,
                        false,
                    )
                    .await
                }
            };
        }
        if let Some(shadow) = shadow.take() {
            shadow.send();
        }
        // Phase 5: the response head, within the rule's or the sidecar's upstream timeout.
        let (timeout, until) = match (rule_timeout, deadline) {
            (Some(timeout), Some(deadline)) => (timeout, deadline),
            _ => {
                let timeout = core.settings.upstream_timeout;
                (timeout, Instant::now() + timeout)
            }
        };
        let read = read_response_head(
            &mut up,
            plan.is_head,
            plan.upgrade,
            response_edits,
            response_out,
        );
        let (reply, detail) = match monoio::time::timeout_at(until, read).await {
            Ok(Ok(response)) => break (up, response),
            Ok(Err(ResponseError::Closed)) if may_retry => continue,
            Ok(Err(ResponseError::Closed)) => (
                LocalReply::UpstreamReset,
                "connection closed before response headers".to_owned(),
            ),
            Ok(Err(ResponseError::ClosedMidHead)) => (
                LocalReply::UpstreamReset,
                "connection closed in the middle of the response head".to_owned(),
            ),
            Ok(Err(ResponseError::Upgrade)) => (
                LocalReply::BadUpstreamResponse,
                "101 Switching Protocols to a request that asked for no upgrade".to_owned(),
            ),
            Ok(Err(ResponseError::Io(e))) => (LocalReply::UpstreamReset, e.to_string()),
            Ok(Err(ResponseError::Malformed(detail))) => (LocalReply::BadUpstreamResponse, detail),
            Err(_elapsed) => (
                LocalReply::UpstreamTimeout,
                format!("no response within {} ms", timeout.as_millis()),
            ),
        };
        return local_reply(down, response_out, reply, &detail, false).await;
    };

    // The response head (rewritten into response_out) goes back downstream. A drain that began
    // while this request was in flight tells the client to go elsewhere next time.
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
        core.settings.idle_timeout,
        None,
    )
    .await
    {
        Ok(()) => {}
        Err(_) => return Next::Close,
    }

    // Phase 6: recycle.
    if response.keep_alive && up.buffered().is_empty() {
        core.pool.put(addr, up);
    }
    if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// Routes a parsed head and writes into `out` the forwarded head (or a redirect's Location).
fn plan_request(
    head: &crate::http1::RequestHead<'_, '_>,
    direction: Direction,
    core: &Core,
    out: &mut Vec<u8>,
) -> Plan {
    let routes = core.routes.borrow().clone();
    let mut rule = None;
    let mut delay = None;
    let action = match direction {
        // A tunnel is not an HTTP exchange this proxy can frame; refuse it rather than
        // relaying half of it.
        _ if head.method == "CONNECT" => Action::Reply(
            LocalReply::BadRequest { status: 501 },
            "CONNECT tunnels are not supported".to_owned(),
        ),
        Direction::Outbound => {
            let view = RequestView {
                host: head.host,
                port: head.port,
                path: head.path,
                method: head.method,
                query: head.query,
                headers: head.headers,
            };
            match routes.route(&view, || fastrand::u32(..100)) {
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
                                let mut cursors = core.round_robin.borrow_mut();
                                let cursor = &mut cursors[d.group_index];
                                let group = d.group;
                                let slot = group.schedule[*cursor as usize % group.schedule.len()];
                                *cursor = cursor.wrapping_add(1);
                                if actions.edits_request() {
                                    let matched = decision.matched_prefix;
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
                                Action::Forward(group.endpoints[slot as usize])
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
            }
        }
        Direction::Inbound => match routes.inbound_target(head.port) {
            Some(addr) => {
                head.write_forwarded(out);
                Action::Forward(addr)
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
        idempotent: matches!(
            head.method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        ),
        expects_continue: head.expects_continue,
        action,
        routes,
        rule,
        delay,
    }
}

/// Relays bytes both ways after a protocol switch until each side has closed its half; bytes
/// that arrived with either head go first. Neither connection is reused afterwards.
async fn tunnel(mut down: Conn, mut up: Conn) {
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
    let (mut down_read, mut down_write) = down.stream.into_split();
    let (mut up_read, mut up_write) = up.stream.into_split();
    let _ = monoio::join!(
        relay(&mut down_read, &mut up_write),
        relay(&mut up_read, &mut down_write)
    );
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

/// Connects within `--connect-timeout`, or by the rule's `deadline` when that comes first
/// (then a timeout is the rule's: 504 `UT`).
async fn connect(
    addr: SocketAddr,
    core: &Core,
    deadline: Option<Instant>,
) -> Result<Conn, (LocalReply, String)> {
    let timeout = core.settings.connect_timeout;
    let own = Instant::now() + timeout;
    let until = deadline.map_or(own, |d| d.min(own));
    match monoio::time::timeout_at(until, TcpStream::connect_addr(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(Conn::new(stream))
        }
        Ok(Err(e)) => Err((LocalReply::ConnectFailure, format!("{addr}: {e}"))),
        Err(_) if until < own => Err((
            LocalReply::UpstreamTimeout,
            format!("{addr}: the rule timeout expired while connecting"),
        )),
        Err(_) => Err((
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
    use monoio::io::AsyncWriteRent;
    const LINGER: Duration = Duration::from_secs(2);
    const MAX_DISCARD: usize = 256 * 1024;
    if down.stream.shutdown().await.is_err() {
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
async fn send(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let owned = std::mem::take(buf);
    let len = owned.len();
    let (result, mut owned) = write_range(stream, owned, 0..len).await;
    owned.clear();
    *buf = owned;
    result
}

struct ResponsePlan {
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
}

/// Reads the final response head, skipping interim 1xx responses, and writes the head to send
/// downstream into `out`.
async fn read_response_head(
    up: &mut Conn,
    is_head: bool,
    upgrade: bool,
    edits: &HeaderEdits,
    out: &mut Vec<u8>,
) -> Result<ResponsePlan, ResponseError> {
    let method = if is_head { "HEAD" } else { "GET" };
    loop {
        if !up.buffered().is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match parse_response(up.buffered(), &mut headers, method) {
                Ok(Some(head)) if (100..200).contains(&head.status) && head.status != 101 => {
                    let len = head.len;
                    up.consume(len);
                    continue;
                }
                Ok(Some(head)) if head.status == 101 && !upgrade => {
                    return Err(ResponseError::Upgrade)
                }
                Ok(Some(head)) => {
                    out.clear();
                    head.write_edited(out, false, edits);
                    let switched = head.status == 101;
                    let plan = ResponsePlan {
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
/// read and each write must make progress within `idle`. A Content-Length body is also
/// appended to `tee` when given (a mirror's copy).
async fn copy_body(
    src: &mut Conn,
    dst: &mut TcpStream,
    framing: BodyFraming,
    idle: Duration,
    mut tee: Option<&mut Vec<u8>>,
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
                    tee.extend_from_slice(&src.buffered()[..n]);
                }
                forward_within(src, dst, n, idle).await?;
                left -= n as u64;
            }
            Ok(())
        }
        BodyFraming::Chunked => {
            let mut scanner = ChunkedScanner::default();
            loop {
                if src.buffered().is_empty() && fill_within(src, idle).await? == 0 {
                    return Err(CopyError::Source);
                }
                let n = scanner
                    .feed(src.buffered())
                    .map_err(|_| CopyError::Malformed)?;
                forward_within(src, dst, n, idle).await?;
                if scanner.is_done() {
                    return Ok(());
                }
            }
        }
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
    dst: &mut TcpStream,
    n: usize,
    idle: Duration,
) -> Result<(), CopyError> {
    match monoio::time::timeout(idle, src.forward_buffered(dst, n)).await {
        Ok(result) => result.map_err(CopyError::Destination),
        Err(_) => Err(CopyError::Idle),
    }
}

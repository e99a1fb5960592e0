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

mod accept;
mod acquire;
mod body;
mod exchange;
mod observe;
mod outcome;
mod plan;
mod read_ahead;
mod reply;
mod response;
mod sniff;
mod tcp;
mod tunnel;

use std::cell::{Cell, OnceCell};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use monoio::time::Instant;

use spec::HeaderEdits;

use crate::actions::NO_EDITS;
use crate::balancer::Inflight;
use crate::conn::Conn;
use crate::grpc;
use crate::http1::head::{parse_request, MAX_HEADERS, MAX_HEAD_BYTES};
use crate::http1::reply::{write_redirect, LocalReply};
use crate::http1::{BodyFraming, ChunkedScanner};
use crate::mirror;
use crate::percore::Core;
use crate::pool::Upstream;
use crate::ratelimit::{over_limit, Caller};
use crate::retry::{self, Retries, Verdict};
use crate::routing::Direction;
use crate::upstream::Secure;
use body::{copy_body, CopyError, Taps};
use exchange::{next_endpoint, Exchange, Tried};
use observe::observe_head;
use outcome::{Outcome, Recorder};
use plan::{plan_request, Action};
use read_ahead::{read_ahead, RequestBody};
use reply::{finish_reply, local_reply, send, send_continue};
use tunnel::tunnel;

pub(crate) use accept::Arrival;
pub use accept::{refuse_overloaded, serve_connection};

/// Bodies at most this large that arrived with their head are sent in the same write.
const COALESCE_BODY_BYTES: u64 = 16 * 1024;

/// What happens to the downstream connection after a request.
enum Next {
    KeepAlive,
    Close,
    /// The upstream switched protocols (101): relay raw bytes both ways until either closes.
    Tunnel(Upstream),
}

/// Serves HTTP/1.1 requests on `down` from client `peer` until either side closes it or the
/// core drains: a downstream connection, or one bridged HTTP/2 stream.
pub(crate) async fn serve_http1(
    mut down: Conn,
    arrival: Arrival,
    peer: SocketAddr,
    core: &Rc<Core>,
) {
    // Both buffers live as long as the connection, so steady-state requests allocate nothing.
    let mut request_out = Vec::with_capacity(2048);
    let mut response_out = Vec::with_capacity(2048);
    let mut recorder = Recorder {
        core,
        caller: down.stream.peer_identity().map(Rc::from),
        peer,
        outcome: Outcome::new(arrival.direction),
    };
    loop {
        let buffers = (&mut request_out, &mut response_out);
        let outcome = &mut recorder.outcome;
        let next = serve_request(&mut down, arrival, peer.ip(), core, buffers, outcome).await;
        recorder.record();
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

/// The client went away before its request was answered.
fn client_gone(outcome: &mut Outcome) -> Next {
    outcome.downstream_closed = true;
    Next::Close
}

/// Serves one request; everything it did ends up in `outcome`, whichever way it returns.
async fn serve_request(
    down: &mut Conn,
    arrival: Arrival,
    peer: IpAddr,
    core: &Rc<Core>,
    (request_out, response_out): (&mut Vec<u8>, &mut Vec<u8>),
    outcome: &mut Outcome,
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
                        let plan = plan_request(&head, arrival, core, request_out, &down.stream);
                        let http2 = down.stream.is_bridged();
                        observe_head(&head, &plan, request_out, outcome, http2);
                        break plan;
                    }
                    Ok(None) => None,
                    Err(e) => Some(e),
                }
            };
            if let Some(e) = refused {
                outcome.started = Some(Instant::now());
                let reply = LocalReply::BadRequest { status: e.status() };
                let detail = e.to_string();
                core.count_refusal(|r| r.malformed_requests += 1);
                tracing::info!(
                    "answered {} and closed: not HTTP from {peer}: {detail}",
                    e.status()
                );
                return local_reply(down, response_out, (reply, &detail), false, outcome).await;
            }
        }
        scanned = buffered;
        // An HTTP/2 stream is one request its connection accepted already, whose head is on
        // its way through the bridge: draining does not close it (its connection's GOAWAY
        // does that for streams it never accepted).
        let between_requests = !down.stream.is_bridged();
        let read = if buffered == 0 {
            if between_requests && core.connections.drain.is_draining() {
                return Next::Close;
            }
            // An idle keep-alive connection: closed on drain or after the idle timeout.
            let idle = monoio::time::sleep(core.settings.idle_timeout);
            let drained = async {
                match between_requests {
                    true => core.connections.drain.wait().await,
                    false => std::future::pending::<()>().await,
                }
            };
            monoio::select! {
                _ = drained => return Next::Close,
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
                    outcome.started = Some(Instant::now());
                    let reply = LocalReply::BadRequest { status: 408 };
                    let detail = "request head not received in time";
                    return local_reply(down, response_out, (reply, detail), false, outcome).await;
                }
            }
        };
        match read {
            Ok(0) | Err(_) => return Next::Close,
            Ok(_) => {}
        }
    };
    down.consume(plan.head_len);
    outcome.started = Some(Instant::now());
    outcome.routes = Some(plan.routes.clone());
    outcome.service = plan.service;
    outcome.rule = plan.rule;
    // Upstream timings are taken only for the access log.
    let timed = plan.routes.access_log.is_some();
    let mut keep_alive = plan.keep_alive && !core.connections.drain.is_draining();

    // Phase 2 happened in plan_request. The rule's local rate limit (ratelimit.rs) comes
    // first, so a request over it costs nothing more: no delay held, no upstream work.
    let limited = match (plan.rule, plan.inbound_limit) {
        (Some(rule), _) => over_limit(&core.limits, &plan.routes, rule, Caller::Ip(peer)),
        (None, Some(rule)) => {
            let caller = down
                .stream
                .peer_identity()
                .map_or(Caller::Ip(peer), Caller::Principal);
            over_limit(&core.limits, &plan.routes, rule, caller)
        }
        (None, None) => None,
    };
    if let Some((reply, detail)) = limited {
        keep_alive &= plan.framing == BodyFraming::None;
        return local_reply(down, response_out, (reply, &detail), keep_alive, outcome).await;
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
            return local_reply(down, response_out, (reply, &detail), keep_alive, outcome).await;
        }
        Action::Refuse => {
            // Counted with the refused connections, not as a request.
            core.security.count_authn(|c| c.plaintext_refused += 1);
            outcome.started = None;
            return Next::Close;
        }
        Action::Redirect(status) => {
            keep_alive &= plan.framing == BodyFraming::None;
            response_out.clear();
            write_redirect(response_out, status, request_out, !keep_alive);
            outcome.status = Some(status);
            return finish_reply(down, response_out, keep_alive, outcome).await;
        }
    };
    // Balancing hook: each try counts as in flight to its endpoint (the last one until the
    // request ends), and its upstream outcome feeds outlier detection; see the retry loop.
    let mut inflight: Option<Inflight<'_>> = None;
    let actions = plan.rule.and_then(|rule| plan.routes.actions(rule));
    let response_edits: &HeaderEdits = actions.map_or(&NO_EDITS, |a| &a.response_headers);
    // A rule timeout bounds the whole exchange from here, retries included: connect, send,
    // response head.
    // A gRPC call's own deadline (`grpc-timeout`) bounds it too, when it is the shorter: Istio
    // honours the header without a maximum.
    let rule_timeout = match (actions.and_then(|a| a.timeout), outcome.grpc_timeout) {
        (Some(rule), Some(call)) => Some(rule.min(call)),
        (rule, call) => rule.or(call),
    };
    let deadline = rule_timeout.map(|t| Instant::now() + t);
    let policy = actions.and_then(|a| a.retries.as_ref());
    // Most requests have no body: nothing to read ahead.
    let body = match plan.framing {
        BodyFraming::None => Ok(RequestBody::none()),
        _ => {
            let buffers = (&mut *request_out, &mut *response_out);
            read_ahead(down, core, (&plan, policy), buffers, outcome).await
        }
    };
    let RequestBody {
        framing: request_framing,
        chunked_from,
        continued,
    } = match body {
        Ok(body) => body,
        Err(next) => return next,
    };
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
            return client_gone(outcome);
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
    let mut retries = Retries::new(
        policy,
        plan.idempotent,
        buffered,
        &core.upstreams.retry_budget,
    );
    let _in_flight = core.upstreams.retry_budget.request();
    let breaker = group.and_then(|g| core.upstreams.breakers.borrow().get(g).cloned().flatten());
    let destination = group.and_then(|g| plan.routes.group(g));
    let marks = core.settings.marks;
    let mut exchange = Exchange {
        secure: destination.and_then(|g| Secure::for_group(&core.security, g)),
        mark: marks.map_or(0, |m| match arrival.direction {
            Direction::Outbound => m.mesh,
            Direction::Inbound => m.app,
        }),
        h2: plan.h2_upstream,
        request_framing,
        chunked_from,
        deadline,
        timeout: rule_timeout.unwrap_or(core.settings.upstream_timeout),
        is_head: plan.is_head,
        upgrade: plan.upgrade,
        http11: plan.http11,
        edits: response_edits,
        breaker: breaker.as_ref(),
        group_name: match (destination, arrival.direction) {
            (Some(group), _) => group.name.as_str(),
            (None, Direction::Outbound) => "the original destination",
            (None, Direction::Inbound) => "the inbound target",
        },
        body_sent: Cell::new(0),
        duplex: OnceCell::new(),
        keep_limit: (plan.duplex
            && retry::buffers_body(policy, plan.idempotent, 0, core.settings.retry_buffer))
        .then_some(core.settings.retry_buffer),
    };
    let mut addr = addr;
    let mut pick = plan.pick;
    // The status the retry policy and outlier detection judge the answer by.
    let mut judged_status;
    let (mut up, response) = loop {
        // Balancing hook: each try counts as in flight to the endpoint it uses, and its
        // outcome feeds that endpoint's outlier detection (when the try ends or is retried).
        drop(inflight.take());
        inflight = pick.map(|pick| Inflight::start(&core.upstreams.balancing, pick));
        let per_try = retries.per_try();
        let pooled_ok = retries.done() == 0 || retries.has_policy();
        outcome.upstream = Some(addr);
        if timed {
            outcome.try_started = Some(Instant::now());
        }
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
        // A full-duplex body that ended whole within the retry buffer goes with the head
        // from now on, so a retry can send it again.
        if let Some(body) = exchange.take_kept_body() {
            if !request_out.is_empty() {
                request_out.extend_from_slice(&body);
                exchange.request_framing = BodyFraming::None;
                retries.body_kept();
            }
        }
        retries.body_untouched(exchange.body_untouched());
        let time_left = deadline.is_none_or(|d| Instant::now() < d);
        let failed = match tried {
            Ok((up, response)) => {
                if timed {
                    outcome.responded = Some(Instant::now());
                }
                // A gRPC call's error in a trailers-only head counts as the HTTP status gRPC
                // maps it to (as Envoy judges it: a 200 with UNAVAILABLE is a 503), and may
                // be retried on by its gRPC status too.
                if outcome.grpc {
                    outcome.grpc_status = grpc::status_in(response_out);
                }
                let grpc_status = outcome.grpc_status.filter(|_| response.status == 200);
                judged_status = grpc_status.map_or(response.status, grpc::http_status);
                let failure = retries.response_failure(judged_status, grpc_status);
                if response.switched || !retries.may_retry_response(failure) {
                    outcome.retries_exhausted = retries.exhausted_on_response(failure);
                    break (up, response);
                }
                match retries.after(failure, false, false, time_left) {
                    Verdict::Retry(backoff) => {
                        core.recorders.metrics.borrow_mut().retries += 1;
                        // Nothing went downstream yet: drop this response with its connection.
                        drop(up);
                        if let Some(inflight) = inflight.as_mut() {
                            inflight.response(judged_status);
                        }
                        drop(inflight.take());
                        retry::sleep_within(backoff, deadline).await;
                        (addr, pick) =
                            next_endpoint(core, &plan.routes, group, addr, pick, &retries);
                        continue;
                    }
                    verdict => {
                        outcome.retries_exhausted = verdict == Verdict::Exhausted;
                        break (up, response);
                    }
                }
            }
            Err(Tried::ClientGone) => {
                outcome.downstream_closed = true;
                return Next::Close;
            }
            Err(Tried::Refused(reply, detail)) => {
                let reply = (reply, detail.as_str());
                return local_reply(down, response_out, reply, false, outcome).await;
            }
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
                core.recorders.metrics.borrow_mut().retries += 1;
                drop(inflight.take());
                retry::sleep_within(backoff, deadline).await;
                (addr, pick) = next_endpoint(core, &plan.routes, group, addr, pick, &retries);
            }
            verdict => {
                keep_alive &= failed.keep_alive && request_framing == BodyFraming::None;
                let exhausted = verdict == Verdict::Exhausted;
                response_out.clear();
                let (reply, detail) = (failed.reply, &failed.detail);
                reply.write_for(response_out, detail, !keep_alive, (exhausted, outcome.grpc));
                outcome.replied(reply, exhausted);
                outcome.group = group;
                return finish_reply(down, response_out, keep_alive, outcome).await;
            }
        }
    };
    // The response head (rewritten into response_out) goes back downstream. A drain that began
    // while this request was in flight tells the client to go elsewhere next time.
    outcome.status = Some(response.status);
    outcome.group = group;
    outcome.upstream_identity = up.stream.peer_identity().and_then(|id| {
        let group = plan.routes.group(group?)?;
        group.identities.iter().position(|known| known == id)
    });
    // What was read ahead (a chunked body kept for a retry) and what streamed after it; a
    // full-duplex body may still stream, so this is taken again once the response has ended.
    let read_ahead = outcome.bytes_received;
    let received = || match plan.framing {
        BodyFraming::Length(n) => n,
        _ => read_ahead + exchange.body_sent(),
    };
    outcome.bytes_received = received();
    if let Some(inflight) = inflight.as_mut() {
        inflight.response(judged_status);
    }
    if let (Some(cookie), Some(pick)) = (plan.cookie, plan.pick) {
        let group = plan.routes.groups().get(pick.group as usize);
        if let Some(name) = group.and_then(|g| g.balancer.cookie_name()) {
            crate::balancer::write_set_cookie(response_out, name, cookie);
        }
    }
    keep_alive &=
        response.framing != BodyFraming::UntilClose && !core.connections.drain.is_draining();
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
            outcome.bytes_sent = n;
        }
    }
    if response.switched {
        // 101: both sides now speak the upgraded protocol over these two connections.
        return match send(&mut down.stream, response_out).await {
            Ok(()) => Next::Tunnel(up),
            Err(_) => {
                outcome.downstream_closed = true;
                Next::Close
            }
        };
    }
    if send(&mut down.stream, response_out).await.is_err() {
        outcome.downstream_closed = true;
        return Next::Close;
    }
    // A gRPC call's status comes in its trailers unless its head had it (trailers-only); the
    // sent head's buffer, now empty, keeps them.
    let taps = Taps {
        trailers: (outcome.grpc && outcome.grpc_status.is_none()).then_some(&mut *response_out),
        ..Taps::default()
    };
    let idle = exchange.response_idle(core.settings.idle_timeout);
    match copy_body(
        &mut up,
        &mut down.stream,
        (response_framing, ChunkedScanner::default()),
        &idle,
        taps,
    )
    .await
    {
        Ok(copied) => {
            outcome.bytes_sent += copied;
            outcome.bytes_received = received();
            if outcome.grpc && outcome.grpc_status.is_none() {
                outcome.grpc_status = grpc::status_in(response_out);
            }
            outcome.finished = Some(Instant::now());
        }
        Err(e) => {
            outcome.bytes_received = received();
            match e {
                CopyError::Destination(_) => outcome.downstream_closed = true,
                CopyError::Malformed => outcome.body_failed = Some("UPE"),
                CopyError::Source | CopyError::Idle => outcome.body_failed = Some("UC"),
            }
            return Next::Close;
        }
    }

    // Phase 6: recycle (unless the group's pool limits retire the connection, or a reload
    // removed its endpoint).
    // An HTTP/2 stream is one exchange; its connection stays with the core's h2 clients.
    let bridged = up.stream.is_bridged();
    if response.keep_alive && up.buffered().is_empty() && up.reusable() && !bridged {
        core.recycle(Some(&plan.routes), addr, up);
    }
    if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

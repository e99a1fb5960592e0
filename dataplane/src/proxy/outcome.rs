//! How one request ended, whichever way it went, and the one place that records it.
//!
//! Every request that meshd read a head for ends in exactly one [`Outcome`]: answered by the
//! upstream, by meshd itself (a local reply, with its response flag), after retries ran out,
//! switched to a tunnel, or cut short when the client went away. [`finish`] records it once,
//! after the request is over (as pingora's `logging()` phase and ztunnel's `ConnectionResult`
//! do), so what the sidecar reports cannot drift from what it did.

use std::net::SocketAddr;
use std::rc::Rc;

use monoio::time::Instant;

use crate::access_log::{Captured, Entry};
use crate::export::sink::{CoreLog, FLUSH_INTERVAL};
use crate::grpc;
use crate::trace::{self, Kind, Span};

use super::observe::Traced;
use crate::http1::reply::LocalReply;
use crate::metrics::{self, Reporter};
use crate::percore::{Core, Installed, Recorders};
use crate::routing::{Direction, RuleRef};

/// How one request ended. Built without allocating: the steady-state request path allocates
/// nothing, and recording must not change that.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Which listener the request came in on.
    pub(super) direction: Direction,
    /// When its head was read; `None` when the connection ended before any request.
    pub(super) started: Option<Instant>,
    /// When its last response byte was sent (before any lingering close); `None` until then.
    pub(super) finished: Option<Instant>,
    /// The status sent downstream; `None` when nothing was (refused, or the client left).
    pub(super) status: Option<u16>,
    /// meshd answered itself: why (its response flag).
    pub(super) reply: Option<LocalReply>,
    /// The retry policy ran out before an answer (Envoy's `URX`).
    pub(super) retries_exhausted: bool,
    /// The client went away before the response was sent (Envoy's `DC`).
    pub(super) downstream_closed: bool,
    /// The upstream's response body broke off (`UC`) or was malformed (`UPE`) after its head
    /// went to the client.
    pub(super) body_failed: Option<&'static str>,
    /// The route state the request was routed with.
    pub(super) routes: Option<Rc<Installed>>,
    /// The service the request was for (an index into the route state's snapshot).
    pub(super) service: Option<u32>,
    /// The endpoint group of the last try.
    pub(super) group: Option<usize>,
    /// Which of the group's identities the upstream proved over mutual TLS.
    pub(super) upstream_identity: Option<usize>,
    /// Request body bytes read from the client, response bytes sent to it (head included).
    pub(super) bytes_received: u64,
    pub(super) bytes_sent: u64,
    /// The route rule the request matched (outbound).
    pub(super) rule: Option<RuleRef>,
    /// The endpoint of the last try.
    pub(super) upstream: Option<SocketAddr>,
    /// When the last try started and when its response head arrived; taken only while an
    /// access log is on.
    pub(super) try_started: Option<Instant>,
    pub(super) responded: Option<Instant>,
    /// What the access log reads of the head; kept across requests for its buffer.
    pub(super) request: Captured,
    /// This hop's span, when the request is sampled.
    pub(super) trace: Option<Box<Traced>>,
    /// The trace id the request's headers carried (read only while an access log is on).
    pub(super) incoming_trace: Option<u128>,
    /// The request is a gRPC call (its replies are gRPC errors, its status is reported).
    pub(super) grpc: bool,
    /// The call's gRPC status: from the response head (trailers-only), its trailers, or
    /// meshd's own reply.
    pub(super) grpc_status: Option<grpc::Status>,
    /// The call's `grpc-timeout`: its deadline, from when its head arrived.
    pub(super) grpc_timeout: Option<std::time::Duration>,
}

impl Outcome {
    pub(super) fn new(direction: Direction) -> Self {
        Self {
            direction,
            started: None,
            finished: None,
            status: None,
            reply: None,
            retries_exhausted: false,
            downstream_closed: false,
            body_failed: None,
            routes: None,
            service: None,
            group: None,
            upstream_identity: None,
            bytes_received: 0,
            bytes_sent: 0,
            rule: None,
            upstream: None,
            try_started: None,
            responded: None,
            request: Captured::default(),
            trace: None,
            incoming_trace: None,
            grpc: false,
            grpc_status: None,
            grpc_timeout: None,
        }
    }

    /// Ready for the connection's next request, keeping the capture buffer.
    fn reset(&mut self) {
        let mut request = std::mem::take(&mut self.request);
        request.clear();
        *self = Self {
            request,
            ..Self::new(self.direction)
        };
    }

    /// meshd answered with `reply` (after retries ran out, when `exhausted`): to a gRPC call,
    /// status 200 and the reply's gRPC status.
    pub(super) fn replied(&mut self, reply: LocalReply, exhausted: bool) {
        self.status = Some(if self.grpc { 200 } else { reply.status() });
        self.grpc_status = self.grpc.then(|| reply.grpc_status());
        self.reply = Some(reply);
        self.retries_exhausted = exhausted;
    }

    /// Envoy's response flags for this request, comma-separated; `-` without any.
    pub(crate) fn flags(&self) -> &'static str {
        let client_gone = self.downstream_closed || self.status.is_none();
        match (self.reply, self.retries_exhausted, self.body_failed) {
            (Some(reply), exhausted, _) => reply.flags(exhausted),
            (None, _, _) if client_gone => "DC",
            (None, _, Some(flag)) => flag,
            // The last try's upstream status went to the client after the retries ran out.
            (None, true, None) => "URX",
            (None, false, None) => "-",
        }
    }
}

/// Records each request of one connection (or HTTP/2 stream) as it ends ([`Self::record`]),
/// and the one in progress when dropped: its task was cancelled (an HTTP/2 stream reset, a
/// connection torn down), which then counts as `DC`.
pub(super) struct Recorder<'a> {
    pub(super) core: &'a Rc<Core>,
    /// The client's SPIFFE ID from mutual TLS, if any (shared by the connection's requests).
    pub(super) caller: Option<Rc<str>>,
    /// The client's address.
    pub(super) peer: SocketAddr,
    pub(super) outcome: Outcome,
}

impl Recorder<'_> {
    /// Records the request that just ended, if one started, and readies for the next.
    pub(super) fn record(&mut self) {
        let caller = self.caller.as_deref();
        let flush = finish(self.core, &self.outcome, caller, self.peer);
        if flush.access_log {
            monoio::spawn(flush_later(self.core.clone(), |r| &r.access_log));
        }
        if flush.spans {
            monoio::spawn(flush_later(self.core.clone(), |r| &r.spans));
        }
        self.outcome.reset();
    }
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        // A dropped task may be torn down with its runtime, where nothing can be spawned: the
        // lines go to the writers now instead.
        let flush = finish(self.core, &self.outcome, self.caller.as_deref(), self.peer);
        if flush.access_log {
            self.core.recorders.access_log.flush_now();
        }
        if flush.spans {
            self.core.recorders.spans.flush_now();
        }
    }
}

/// Which of the core's buffers need a flush scheduled.
#[derive(Debug, Default)]
struct Flush {
    access_log: bool,
    spans: bool,
}

/// Records a finished request: the one exit every request leaves by. `caller` is the
/// client's SPIFFE ID from mutual TLS, if any. Returns which of the core's buffers need a
/// flush scheduled.
#[inline]
fn finish(core: &Core, outcome: &Outcome, caller: Option<&str>, peer: SocketAddr) -> Flush {
    let Some(started) = outcome.started else {
        return Flush::default();
    };
    let finished = outcome.finished.unwrap_or_else(Instant::now);
    let routes = outcome.routes.as_deref();
    let service = outcome
        .service
        .and_then(|s| routes?.snapshot.services.get(s as usize));
    let group = outcome.group.and_then(|g| routes?.group(g));
    let upstream_identity = group
        .zip(outcome.upstream_identity)
        .and_then(|(group, identity)| Some(group.identities.get(identity)?.as_str()));
    let peer_principal = match outcome.direction {
        Direction::Inbound => caller,
        Direction::Outbound => upstream_identity,
    };
    let duration = finished.saturating_duration_since(started);

    // A head refused before routing has no route state of its own: the one in force logs it.
    let current;
    let routes = match routes {
        Some(routes) => routes,
        None => {
            current = core.routes.borrow().clone();
            &current
        }
    };
    let request = metrics::Request {
        reporter: match outcome.direction {
            Direction::Outbound => Reporter::Source,
            Direction::Inbound => Reporter::Destination,
        },
        service: service.map(|s| s.name.as_str()),
        peer: peer_principal,
        code: outcome.status.unwrap_or(0),
        grpc: outcome.grpc.then_some(outcome.grpc_status),
        flags: outcome.flags(),
        duration,
        request_bytes: outcome.bytes_received,
        response_bytes: outcome.bytes_sent,
    };
    let recorders = &core.recorders;
    let mut metrics = recorders.metrics.borrow_mut();
    metrics.count_finished(request.flags);
    if routes.metrics_enabled {
        metrics.record(&request);
    }
    drop(metrics);
    let mut flush = Flush::default();
    if let (Some(traced), Some(protocol)) = (&outcome.trace, routes.tracing) {
        let spans = &recorders.spans;
        let span = Span {
            context: traced.context,
            kind: match outcome.direction {
                Direction::Outbound => Kind::Client,
                Direction::Inbound => Kind::Server,
            },
            name: &traced.name,
            start: spans.wall_clock(started.into_std()),
            duration,
            local_service: routes.own_workload().map_or("meshd", |w| w.name.as_str()),
            method: &traced.method,
            url: &traced.url,
            status: request.code,
            flags: request.flags,
            request_id: &traced.request_id,
            upstream_cluster: group.map(|g| g.name.as_str()),
            peer: outcome.upstream,
        };
        flush.spans = spans.append(|out| trace::render(protocol, &span, out));
    }
    let Some(format) = &routes.access_log else {
        return flush;
    };
    let since = |from: Option<Instant>| Some(outcome.responded?.saturating_duration_since(from?));
    let entry = Entry {
        start: recorders.access_log.wall_clock(started.into_std()),
        request: &outcome.request,
        code: request.code,
        grpc_status: outcome.grpc_status,
        flags: request.flags,
        bytes_received: request.request_bytes,
        bytes_sent: request.response_bytes,
        duration,
        response_duration: since(Some(started)),
        upstream_service_time: since(outcome.try_started),
        upstream_host: outcome.upstream,
        upstream_cluster: group.map(|g| g.name.as_str()),
        downstream: Some(peer),
        downstream_principal: caller,
        upstream_principal: upstream_identity,
        inbound: outcome.direction == Direction::Inbound,
        route: outcome.rule.and_then(|r| routes.rule(r)),
        trace_id: outcome
            .trace
            .as_ref()
            .map(|t| t.context.trace_id)
            .or(outcome.incoming_trace),
        snapshot: &routes.hash,
    };
    flush.access_log = recorders
        .access_log
        .append(|out| format.render(&entry, out));
    flush
}

/// Hands the lines of one of this core's buffers (`which`) to its writer every
/// [`FLUSH_INTERVAL`] while any wait.
pub(super) async fn flush_later(core: Rc<Core>, which: fn(&Recorders) -> &CoreLog) {
    loop {
        monoio::time::sleep(FLUSH_INTERVAL).await;
        if !which(&core.recorders).flush() {
            break;
        }
    }
}

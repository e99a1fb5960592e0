//! How one request ended, whichever way it went, and the one place that records it.
//!
//! Every request that meshd read a head for ends in exactly one [`Outcome`]: answered by the
//! upstream, by meshd itself (a local reply, with its response flag), after retries ran out,
//! switched to a tunnel, or cut short when the client went away. [`finish`] records it once,
//! after the request is over (as pingora's `logging()` phase and ztunnel's `ConnectionResult`
//! do), so what the sidecar reports cannot drift from what it did.

use std::rc::Rc;

use monoio::time::Instant;

use crate::http1::reply::LocalReply;
use crate::metrics::{self, Reporter};
use crate::routing::Direction;
use crate::worker::{Core, Installed};

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
        }
    }

    /// meshd answered with `reply` (after retries ran out, when `exhausted`).
    pub(super) fn replied(&mut self, reply: LocalReply, exhausted: bool) {
        self.status = Some(reply.status());
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

/// Records one request when it is dropped: after it ended, or when its task was cancelled
/// (an HTTP/2 stream reset, a connection torn down), which then counts as `DC`.
pub(super) struct Recorder<'a> {
    pub(super) core: &'a Core,
    /// The client's SPIFFE ID from mutual TLS, if any (shared by the connection's requests).
    pub(super) caller: Option<Rc<str>>,
    pub(super) outcome: Outcome,
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        finish(self.core, &self.outcome, self.caller.as_deref());
    }
}

/// Records a finished request: the one exit every request leaves by. `caller` is the
/// client's SPIFFE ID from mutual TLS, if any.
#[inline]
fn finish(core: &Core, outcome: &Outcome, caller: Option<&str>) {
    let Some(started) = outcome.started else {
        return;
    };
    let finished = outcome.finished.unwrap_or_else(Instant::now);
    let routes = outcome.routes.as_deref();
    let service = outcome
        .service
        .and_then(|s| routes?.snapshot.services.get(s as usize));
    let peer = match outcome.direction {
        Direction::Inbound => caller,
        Direction::Outbound => {
            outcome
                .group
                .zip(outcome.upstream_identity)
                .and_then(|(group, identity)| {
                    Some(routes?.group(group)?.identities.get(identity)?.as_str())
                })
        }
    };
    let request = metrics::Request {
        reporter: match outcome.direction {
            Direction::Outbound => Reporter::Source,
            Direction::Inbound => Reporter::Destination,
        },
        service: service.map(|s| s.name.as_str()),
        peer,
        code: outcome.status.unwrap_or(0),
        flags: outcome.flags(),
        duration: finished.saturating_duration_since(started),
        request_bytes: outcome.bytes_received,
        response_bytes: outcome.bytes_sent,
    };
    core.metrics.borrow_mut().record(&request);
}

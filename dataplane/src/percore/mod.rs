//! What one core's tasks share (`Rc`, never crossing threads), grouped by the feature that
//! uses it, so a feature takes only its part: [`Connections`] for accepting and draining,
//! [`Upstreams`] for pools and balancing, [`Security`] for TLS and request authentication,
//! [`Recorders`] for metrics, access logs and spans.

mod connections;
mod recorders;
mod security;
mod upstreams;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use connections::Connections;
pub use recorders::Recorders;
pub use security::{Security, FORWARDED_CLIENT_CERT};
pub use upstreams::Upstreams;

use crate::export::sink::Channel;
use crate::intercept::Marks;
use crate::mirror::Mirrors;
use crate::pool::Upstream;
use crate::ratelimit::RateLimits;
use crate::routing::RouteState;
use crate::usage::{CoreUsage, EndpointUsage, GroupUsage, MirrorUsage, RefusalUsage, Usage};

/// Timeouts and limits every core applies.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long to wait for a TCP connection to an upstream.
    pub connect_timeout: Duration,
    /// How long to wait for an upstream's response head once the request is sent.
    pub upstream_timeout: Duration,
    /// How long in-flight requests may run after draining starts.
    pub drain_timeout: Duration,
    /// How long a started request head may take to arrive in full (then 408).
    pub head_timeout: Duration,
    /// How long a keep-alive connection may sit idle, and a body transfer may stall.
    pub idle_timeout: Duration,
    /// Most downstream connections one core holds; beyond it new ones get 503 and close.
    pub max_connections_per_core: usize,
    /// Largest request body buffered so a retry can replay it; larger ones are not retried.
    pub retry_buffer: usize,
    /// Largest gRPC request message a call may send (RESOURCE_EXHAUSTED beyond); `None`: no
    /// limit but the server's own.
    pub grpc_max_message: Option<u32>,
    /// The socket marks meshd's connections carry, so capture rules let them through
    /// (`None`: unmarked, where meshd may not set marks).
    pub marks: Option<Marks>,
}

/// A route state installed on one core. A request clones the `Rc` (a plain count) to keep the
/// state it routed with across a reload, rather than touching the `Arc`'s atomic count.
#[derive(Debug)]
pub struct Installed(pub Arc<RouteState>);

impl std::ops::Deref for Installed {
    type Target = RouteState;

    fn deref(&self) -> &RouteState {
        &self.0
    }
}

/// One core's state.
#[derive(Debug)]
pub struct Core {
    /// Worker number.
    pub index: usize,
    /// How many workers share the sidecar-wide limits.
    pub cores: usize,
    /// Timeouts and limits.
    pub settings: Settings,
    /// Route state in force; replaced whole on reload.
    pub routes: RefCell<Rc<Installed>>,
    /// Downstream connections and the drain signal.
    pub connections: Connections,
    /// Pools, balancers, circuit breakers and the retry budget.
    pub upstreams: Upstreams,
    /// Certificates, handshake counts and verified JWTs.
    pub security: Security,
    /// This core's rate-limit buckets; rebuilt on reload, keeping unchanged rules' buckets.
    pub limits: RefCell<RateLimits>,
    /// Mirror requests in flight and their outcomes.
    pub mirrors: Mirrors,
    /// Metrics, access log and span buffers.
    pub recorders: Recorders,
    /// Requests refused for what their clients sent.
    pub refusals: Cell<RefusalUsage>,
}

/// What a core is built from.
#[derive(Debug)]
pub struct CoreSpec {
    /// Worker number.
    pub index: usize,
    /// How many workers there are.
    pub cores: usize,
    /// Timeouts and limits.
    pub settings: Settings,
    /// The route state to serve.
    pub routes: Arc<RouteState>,
    /// The access log writer's channel; `None` drops every line (counted).
    pub access_log: Option<Channel>,
    /// The span exporter's channel; `None` drops every span (counted).
    pub spans: Option<Channel>,
}

impl Core {
    /// A core serving `spec.routes`, with no certificate yet.
    pub fn new(spec: CoreSpec) -> Self {
        let CoreSpec {
            index,
            cores,
            settings,
            routes,
            access_log,
            spans,
        } = spec;
        let limits =
            RateLimits::build(&routes, RateLimits::default(), index, cores, Instant::now());
        Self {
            index,
            cores,
            settings,
            connections: Connections::default(),
            upstreams: Upstreams::new(&routes, cores),
            security: Security::default(),
            limits: RefCell::new(limits),
            mirrors: Mirrors::default(),
            recorders: Recorders::new(index, access_log, spans),
            routes: RefCell::new(Rc::new(Installed(routes))),
            refusals: Cell::default(),
        }
    }

    /// Adds to this core's refusal counts.
    pub fn count_refusal(&self, count: impl FnOnce(&mut RefusalUsage)) {
        let mut counts = self.refusals.get();
        count(&mut counts);
        self.refusals.set(counts);
    }

    /// Switches to a new route state: later requests route by it, balancers and breakers
    /// restart, idle pooled connections to endpoints it no longer has are closed, and
    /// rate-limit buckets carry over for rules whose name and limit did not change.
    pub fn install(&self, routes: Arc<RouteState>) {
        self.upstreams.install(&routes, self.cores);
        let previous = self.limits.take();
        let (index, cores) = previous.core();
        *self.limits.borrow_mut() =
            RateLimits::build(&routes, previous, index, cores, Instant::now());
        self.security.install(&routes);
        *self.routes.borrow_mut() = Rc::new(Installed(routes));
    }

    /// Returns an upstream connection to the pool, unless a reload since `routed_by` (the
    /// route state the request used) removed its endpoint: then it closes, so pools to removed
    /// endpoints drain as their last requests finish.
    pub fn recycle(&self, routed_by: Option<&Rc<Installed>>, addr: SocketAddr, up: Upstream) {
        let routes = self.routes.borrow();
        let current = routed_by.is_some_and(|r| Rc::ptr_eq(r, &routes));
        if current || routes.has_endpoint(addr) {
            self.upstreams.pool.put(addr, up);
        }
    }

    /// This core's pool usage for the route state it serves, for admin `/clusters`.
    pub fn usage(&self) -> Usage {
        let routes = self.routes.borrow();
        let upstreams = &self.upstreams;
        let (breakers, balancing) = (upstreams.breakers.borrow(), upstreams.balancing.borrow());
        let groups = routes.groups().iter().enumerate().map(|(g, group)| {
            let breaker = breakers.get(g).and_then(Option::as_ref);
            GroupUsage {
                open_connections: breaker.map(|b| b.open()),
                pending_requests: breaker.map_or(0, |b| b.pending() as u32),
                endpoints: group
                    .endpoints
                    .iter()
                    .enumerate()
                    .map(|(e, addr)| EndpointUsage {
                        requests_in_flight: balancing.in_flight(g, e),
                        idle_connections: upstreams.pool.idle_count(*addr) as u32,
                    })
                    .collect(),
            }
        });
        let m = &self.mirrors;
        let recorders = &self.recorders;
        let requests = recorders.metrics.borrow().snapshot();
        let core = CoreUsage {
            index: self.index,
            requests: requests.finished,
            active_connections: self.connections.active.get() as u64,
        };
        Usage {
            hash: routes.hash.clone(),
            groups: groups.collect(),
            mirrors: MirrorUsage {
                in_flight: m.in_flight() as u64,
                completed: m.completed.get(),
                failed: m.failed.get(),
                skipped_busy: m.skipped_busy.get(),
                skipped_body: m.skipped_body.get(),
            },
            authn: self.security.authn_counts.get(),
            refusals: self.refusals.get(),
            requests,
            cores: vec![core],
            access_log: recorders.access_log.counts(),
            spans: recorders.spans.counts(),
        }
    }
}

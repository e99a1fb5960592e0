//! One data-plane core: a pinned thread running a monoio runtime with its own listeners,
//! upstream pools and balancer state. Nothing here is shared with other cores but the
//! immutable route state behind an `Arc`.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use monoio::io::AsyncReadRent;
use monoio::net::{TcpListener, UnixStream};

use crate::balancer::CoreBalancing;
use crate::drain::Drain;
use crate::export::sink::{Channel, CoreLog};
use crate::jwt::TokenCache;
use crate::metrics::CoreMetrics;
use crate::mirror::Mirrors;
use crate::outlier::{Counts, Ejections};
use crate::pool::{Breaker, Pool, Upstream};
use crate::proxy;
use crate::ratelimit::RateLimits;
use crate::retry::RetryBudget;
use crate::routing::{Direction, RouteState};
use crate::tls::{CoreTls, Identity};
use crate::usage::{AuthnUsage, CoreUsage, EndpointUsage, GroupUsage, MirrorUsage, Usage};

/// Which monoio driver a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoDriver {
    /// io_uring when the kernel allows it, epoll otherwise.
    Auto,
    /// io_uring with COOP_TASKRUN, SINGLE_ISSUER and DEFER_TASKRUN; fail if unavailable.
    Uring,
    /// monoio's epoll ("legacy") driver.
    Epoll,
}

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
}

/// What a worker thread needs to start.
#[derive(Debug)]
pub struct WorkerSpec {
    /// Worker number, for logs and for this core's share of rate limits.
    pub index: usize,
    /// How many workers there are (rate limits and sidecar-wide pool limits are divided among
    /// them).
    pub cores: usize,
    /// CPU to pin to, if any.
    pub core: Option<core_affinity::CoreId>,
    /// Requested IO driver.
    pub driver: IoDriver,
    /// This core's listeners (SO_REUSEPORT siblings of the other cores').
    pub listeners: Vec<(std::net::TcpListener, Direction)>,
    /// Commands from the control thread: one byte each, `d` = drain, `r` = take the route
    /// state waiting in `updates`. EOF also drains.
    pub control: std::os::unix::net::UnixStream,
    /// New route states from reloads, announced by an `r` on `control`.
    pub updates: mpsc::Receiver<Arc<RouteState>>,
    /// Outlier ejections decided by the control thread, announced by an `e` on `control`.
    pub ejections: mpsc::Receiver<Arc<Ejections>>,
    /// Where to send this core's pool usage, asked for by a `u` on `control`.
    pub usage: mpsc::Receiver<mpsc::Sender<Usage>>,
    /// Rotated workload certificates, announced by a `c` on `control`.
    pub identities: mpsc::Receiver<Arc<Identity>>,
    /// The workload certificate to serve mutual TLS with, if meshd has one.
    pub identity: Option<Arc<Identity>>,
    /// The route state to serve.
    pub routes: Arc<RouteState>,
    /// Timeouts and limits.
    pub settings: Settings,
    /// This core's channel to the access log writer; `None` drops every line (counted).
    pub access_log: Option<Channel>,
    /// This core's channel to the span exporter; `None` drops every span (counted).
    pub spans: Option<Channel>,
}

/// What a worker reports to the control thread.
#[derive(Debug)]
pub enum WorkerEvent {
    /// The runtime is up and listeners are accepting; names the driver in use.
    Started { index: usize, driver: &'static str },
    /// The worker could not start.
    Failed { index: usize, error: io::Error },
    /// The worker finished draining and stopped.
    Stopped { index: usize, unfinished: usize },
    /// This core's nonzero consecutive failure counts `(group, endpoint, counts)` for the
    /// route state with content hash `hash`, sent every outlier interval.
    Outliers {
        index: usize,
        hash: String,
        counts: Vec<(u32, u32, Counts)>,
    },
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

/// State one core's tasks share (`Rc`, never crossing threads).
#[derive(Debug)]
pub struct Core {
    /// Worker number.
    pub index: usize,
    /// Route state in force; replaced whole on reload.
    pub routes: RefCell<Rc<Installed>>,
    /// Balancer cursors, requests in flight and failure counts per endpoint, ejections.
    pub balancing: RefCell<CoreBalancing>,
    /// Whether the task reporting failure counts to the control thread runs (only while the
    /// route state has outlier detection).
    pub reporting: Cell<bool>,
    /// Idle upstream connections.
    pub pool: Pool,
    /// This core's rate-limit buckets; rebuilt on reload, keeping unchanged rules' buckets.
    pub limits: RefCell<RateLimits>,
    /// Mirror requests in flight and their outcomes.
    pub mirrors: Mirrors,
    /// Drain signal.
    pub drain: Drain,
    /// Downstream connections open now.
    pub active: Cell<usize>,
    /// Connections refused over `max_connections_per_core` still lingering after the 503.
    pub shedding: Cell<usize>,
    /// Timeouts and limits.
    pub settings: Settings,
    /// Circuit breaker per endpoint group (`None`: the group has no pool limits).
    pub breakers: RefCell<Vec<Option<Rc<Breaker>>>>,
    /// Requests and retries in flight, for the retry budget.
    pub retry_budget: RetryBudget,
    /// How many workers share the sidecar-wide pool limits.
    pub cores: usize,
    /// TLS configurations from the workload certificate in force (`None`: no certificate,
    /// so no mutual TLS either way).
    pub tls: RefCell<Option<Rc<CoreTls>>>,
    /// Handshakes and refusals, for admin `/certs`.
    pub authn_counts: Cell<AuthnUsage>,
    /// What inbound forwarding removes from every request: a caller's own
    /// `x-forwarded-client-cert` (meshd writes the real one).
    pub inbound_edits: spec::HeaderEdits,
    /// [`Self::inbound_edits`] plus the Authorization header whose JWT was verified.
    pub inbound_edits_bearer: spec::HeaderEdits,
    /// JWTs this core verified lately.
    pub jwt_tokens: RefCell<TokenCache>,
    /// Istio's request metrics for the requests this core finished.
    pub metrics: RefCell<CoreMetrics>,
    /// This core's access log buffer.
    pub access_log: CoreLog,
    /// This core's span buffer (spans are made only while the route state has a collector).
    pub spans: CoreLog,
}

/// Runs a worker to completion on the current thread.
pub fn run(spec: WorkerSpec, events: mpsc::Sender<WorkerEvent>) {
    let index = spec.index;
    if let Some(core) = spec.core {
        core_affinity::set_for_current(core);
    }
    let result = match spec.driver {
        IoDriver::Epoll => run_epoll(spec, &events),
        IoDriver::Uring => run_uring(spec, &events, true).map_err(|(_, e)| e),
        IoDriver::Auto => match run_uring(spec, &events, true) {
            Ok(()) => Ok(()),
            Err((Some(spec), _)) => run_epoll(*spec, &events),
            Err((None, e)) => Err(e),
        },
    };
    if let Err(error) = result {
        let _ = events.send(WorkerEvent::Failed { index, error });
    }
}

type UringRuntime = monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>;

/// Builds an io_uring runtime, with the setup flags docs/design.md measured, falling back to the
/// plain setup on kernels that refuse them. On failure the spec is handed back for epoll.
fn run_uring(
    spec: WorkerSpec,
    events: &mpsc::Sender<WorkerEvent>,
    tuned: bool,
) -> Result<(), (Option<Box<WorkerSpec>>, io::Error)> {
    let build = |tuned: bool| -> io::Result<UringRuntime> {
        let mut urb = io_uring::IoUring::builder();
        if tuned {
            urb.setup_coop_taskrun()
                .setup_single_issuer()
                .setup_defer_taskrun();
        }
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .uring_builder(urb)
            .with_entries(1024)
            .enable_timer()
            .build()
    };
    let runtime = match build(tuned) {
        Ok(rt) => Ok(rt),
        Err(_) if tuned => build(false),
        Err(e) => Err(e),
    };
    match runtime {
        Ok(mut rt) => rt
            .block_on(serve(spec, events.clone(), "io_uring"))
            .map_err(|e| (None, e)),
        Err(e) => Err((Some(Box::new(spec)), e)),
    }
}

fn run_epoll(spec: WorkerSpec, events: &mpsc::Sender<WorkerEvent>) -> io::Result<()> {
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()?;
    rt.block_on(serve(spec, events.clone(), "epoll"))
}

async fn serve(
    spec: WorkerSpec,
    events: mpsc::Sender<WorkerEvent>,
    driver: &'static str,
) -> io::Result<()> {
    let limits = RateLimits::build(
        &spec.routes,
        RateLimits::default(),
        spec.index,
        spec.cores,
        Instant::now(),
    );
    let breakers = breakers(&spec.routes, spec.cores);
    let balancing = CoreBalancing::new(spec.routes.groups().iter().map(|g| g.endpoints.len()));
    let core = Rc::new(Core {
        index: spec.index,
        routes: RefCell::new(Rc::new(Installed(spec.routes))),
        balancing: RefCell::new(balancing),
        reporting: Cell::new(false),
        pool: Pool::default(),
        limits: RefCell::new(limits),
        mirrors: Mirrors::default(),
        drain: Drain::default(),
        active: Cell::new(0),
        shedding: Cell::new(0),
        settings: spec.settings,
        breakers: RefCell::new(breakers),
        retry_budget: RetryBudget::default(),
        cores: spec.cores,
        tls: RefCell::new(None),
        authn_counts: Cell::new(AuthnUsage::default()),
        inbound_edits: spec::HeaderEdits {
            remove: vec![crate::proxy::FORWARDED_CLIENT_CERT.to_owned()],
            ..spec::HeaderEdits::default()
        },
        inbound_edits_bearer: spec::HeaderEdits {
            remove: vec![
                crate::proxy::FORWARDED_CLIENT_CERT.to_owned(),
                "authorization".to_owned(),
            ],
            ..spec::HeaderEdits::default()
        },
        jwt_tokens: RefCell::new(TokenCache::default()),
        metrics: RefCell::new(CoreMetrics::default()),
        access_log: CoreLog::new(spec.index, spec.access_log),
        spans: CoreLog::new(spec.index, spec.spans),
    });
    if let Some(identity) = spec.identity {
        core.install_identity(identity);
    }
    // monoio's epoll driver issues plain syscalls and waits for readiness only on EAGAIN, so
    // sockets made outside it must be non-blocking (io_uring does not mind either way).
    let mut listeners = Vec::with_capacity(spec.listeners.len());
    for (listener, direction) in spec.listeners {
        listener.set_nonblocking(true)?;
        listeners.push((TcpListener::from_std(listener)?, direction));
    }
    spec.control.set_nonblocking(true)?;
    let control = UnixStream::from_std(spec.control)?;
    let reports = Reports {
        index: spec.index,
        events: events.clone(),
    };
    reports.ensure(&core);
    let channels = Channels {
        updates: spec.updates,
        ejections: spec.ejections,
        usage: spec.usage,
        identities: spec.identities,
    };
    monoio::spawn(watch_control(control, channels, reports, core.clone()));
    for (listener, direction) in listeners {
        monoio::spawn(accept_loop(listener, direction, core.clone()));
    }
    let _ = events.send(WorkerEvent::Started {
        index: spec.index,
        driver,
    });

    core.drain.wait().await;
    let deadline = Instant::now() + core.settings.drain_timeout;
    // Shutdown only: poll the in-flight count rather than wiring another notifier.
    while core.active.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    core.access_log.close();
    core.spans.close();
    let _ = events.send(WorkerEvent::Stopped {
        index: spec.index,
        unfinished: core.active.get(),
    });
    Ok(())
}

/// What the control thread hands a core besides the command bytes.
struct Channels {
    updates: mpsc::Receiver<Arc<RouteState>>,
    ejections: mpsc::Receiver<Arc<Ejections>>,
    usage: mpsc::Receiver<mpsc::Sender<Usage>>,
    identities: mpsc::Receiver<Arc<Identity>>,
}

async fn watch_control(
    mut control: UnixStream,
    channels: Channels,
    reports: Reports,
    core: Rc<Core>,
) {
    let Channels {
        updates,
        ejections,
        usage,
        identities,
    } = channels;
    let mut buf = vec![0u8; 16];
    loop {
        let (result, returned) = control.read(buf).await;
        buf = returned;
        let commands = match result {
            Ok(n) if n > 0 => &buf[..n],
            // EOF (the control thread is gone) or an error: stop like a drain.
            _ => break,
        };
        if commands.contains(&b'r') {
            // Only the newest state matters; requests in flight keep the Arc they started with.
            if let Some(routes) = updates.try_iter().last() {
                core.install(routes);
                reports.ensure(&core);
            }
        }
        if commands.contains(&b'e') {
            // Ejections for another route state (sent before a reload landed) are dropped.
            let hash = core.routes.borrow().hash.clone();
            if let Some(ejections) = ejections.try_iter().filter(|e| e.hash == hash).last() {
                core.balancing.borrow_mut().set_ejections(ejections);
            }
        }
        if commands.contains(&b'c') {
            if let Some(identity) = identities.try_iter().last() {
                core.install_identity(identity);
            }
        }
        if commands.contains(&b'u') {
            for reply in usage.try_iter() {
                let _ = reply.send(core.usage());
            }
        }
        if commands.contains(&b'd') {
            break;
        }
    }
    core.drain.start();
}

/// Where a core sends its failure counts.
#[derive(Debug, Clone)]
struct Reports {
    index: usize,
    events: mpsc::Sender<WorkerEvent>,
}

impl Reports {
    /// Starts the reporting task if the route state in force has outlier detection and the
    /// task is not running; a core without outlier detection never wakes for it.
    fn ensure(&self, core: &Rc<Core>) {
        if !core.reporting.get() && core.routes.borrow().outlier_interval().is_some() {
            core.reporting.set(true);
            monoio::spawn(report_outliers(self.clone(), core.clone()));
        }
    }
}

/// Sends this core's consecutive failure counts to the control thread every outlier interval
/// (the shortest of the route state's groups), for host-wide ejection decisions. Ends when a
/// reload removes outlier detection, or on drain.
async fn report_outliers(reports: Reports, core: Rc<Core>) {
    let Reports { index, events } = reports;
    loop {
        let Some(interval) = core.routes.borrow().outlier_interval() else {
            break;
        };
        monoio::select! {
            _ = core.drain.wait() => break,
            _ = monoio::time::sleep(interval) => {}
        }
        let hash = core.routes.borrow().hash.clone();
        let counts = core.balancing.borrow().report();
        if events
            .send(WorkerEvent::Outliers {
                index,
                hash,
                counts,
            })
            .is_err()
        {
            break;
        }
    }
    core.reporting.set(false);
}

impl Core {
    /// Serves new handshakes with `identity`; connections already open keep theirs.
    fn install_identity(&self, identity: Arc<Identity>) {
        match CoreTls::new(identity) {
            Ok(tls) => *self.tls.borrow_mut() = Some(Rc::new(tls)),
            // The control thread checked the set (Identity::load builds this very
            // configuration), so this is not expected; the previous one keeps serving.
            Err(e) => tracing::error!("certificates not installed on a core: {e}"),
        }
    }

    /// Adds to this core's TLS counts.
    pub fn count_authn(&self, count: impl FnOnce(&mut AuthnUsage)) {
        let mut counts = self.authn_counts.get();
        count(&mut counts);
        self.authn_counts.set(counts);
    }

    /// Returns an upstream connection to the pool, unless a reload since `routed_by` (the
    /// route state the request used) removed its endpoint: then it closes, so pools to removed
    /// endpoints drain as their last requests finish.
    pub fn recycle(&self, routed_by: Option<&Rc<Installed>>, addr: SocketAddr, up: Upstream) {
        let routes = self.routes.borrow();
        let current = routed_by.is_some_and(|r| Rc::ptr_eq(r, &routes));
        if current || routes.has_endpoint(addr) {
            self.pool.put(addr, up);
        }
    }

    /// This core's pool usage for the route state it serves, for admin `/clusters`.
    fn usage(&self) -> Usage {
        let routes = self.routes.borrow();
        let (breakers, balancing) = (self.breakers.borrow(), self.balancing.borrow());
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
                        idle_connections: self.pool.idle_count(*addr) as u32,
                    })
                    .collect(),
            }
        });
        let m = &self.mirrors;
        let requests = self.metrics.borrow().snapshot();
        let core = CoreUsage {
            index: self.index,
            requests: requests.finished,
            active_connections: self.active.get() as u64,
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
            authn: self.authn_counts.get(),
            requests,
            cores: vec![core],
            access_log: self.access_log.counts(),
            spans: self.spans.counts(),
        }
    }

    /// Switches to a new route state: later requests route by it, balancer cursors restart,
    /// idle pooled connections to endpoints it no longer has are closed, and rate-limit
    /// buckets carry over for rules whose name and limit did not change.
    fn install(&self, routes: Arc<RouteState>) {
        let endpoints = routes.endpoint_addresses();
        self.pool.retain(|addr| endpoints.contains(addr));
        *self.balancing.borrow_mut() =
            CoreBalancing::new(routes.groups().iter().map(|g| g.endpoints.len()));
        // Connections opened under the old breakers keep counting there until they close.
        *self.breakers.borrow_mut() = breakers(&routes, self.cores);
        let previous = self.limits.take();
        let (index, cores) = previous.core();
        *self.limits.borrow_mut() =
            RateLimits::build(&routes, previous, index, cores, Instant::now());
        // The tokens were verified with the old state's keys.
        self.jwt_tokens.borrow_mut().clear();
        if let Some(tls) = self.tls.borrow().as_ref() {
            tls.keep_clients(routes.groups().iter().map(|g| g.identities.as_slice()));
        }
        *self.routes.borrow_mut() = Rc::new(Installed(routes));
    }
}

/// One breaker per endpoint group with pool limits, sized for this core's share.
fn breakers(routes: &RouteState, cores: usize) -> Vec<Option<Rc<Breaker>>> {
    routes
        .groups()
        .iter()
        .map(|g| Breaker::new(&g.pool, cores))
        .collect()
}

async fn accept_loop(listener: TcpListener, direction: Direction, core: Rc<Core>) {
    loop {
        let accepted = monoio::select! {
            _ = core.drain.wait() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                if core.active.get() >= core.settings.max_connections_per_core {
                    // Shed instead of queueing: the client learns at once and may retry
                    // elsewhere, and this core's memory stays bounded.
                    monoio::spawn(proxy::refuse_overloaded(stream, core.clone()));
                } else {
                    monoio::spawn(proxy::serve_connection(
                        stream,
                        direction,
                        peer,
                        core.clone(),
                    ));
                }
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning on the error.
                tracing::warn!("accept failed: {e}");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    // Dropping the listener here stops this core from taking new connections.
}

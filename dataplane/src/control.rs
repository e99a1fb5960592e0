//! The control thread's side of the lifecycle: bind listeners, start one worker per core,
//! reload the snapshot (SIGHUP, a change to the file, admin `POST /reload`), and drain on
//! SIGTERM.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime};

use socket2::{Domain, Protocol, Socket, Type};

use crate::admin::{self, AdminState};
use crate::export::collector::{self, Collector};
use crate::export::writer::{Destination, Reopener, Writer};
use crate::jwt::Verifier;
use crate::logging::LogLevel;
use crate::outlier::{Ejections, OutlierState};
use crate::percore::Settings;
use crate::routing::{Direction, RouteState};
use crate::tls::{Identity, TlsError};
use crate::usage::Usage;
use crate::worker::{self, IoDriver, WorkerEvent, WorkerSpec};

/// Everything `meshd` needs to run.
#[derive(Debug)]
pub struct Options {
    /// Route state to serve first.
    pub routes: Arc<RouteState>,
    /// The snapshot file, re-read on reload.
    pub snapshot: PathBuf,
    /// The workload served, if any (reloads keep it).
    pub workload: Option<String>,
    /// How often to check the snapshot file for changes; zero disables watching.
    pub watch_interval: Duration,
    /// Outbound listener address.
    pub outbound: SocketAddr,
    /// Inbound listener address; `None` when no workload is served.
    pub inbound: Option<SocketAddr>,
    /// Admin listener address.
    pub admin: SocketAddr,
    /// Read-only metrics listener address, if any.
    pub metrics: Option<SocketAddr>,
    /// Worker count; `None` means every core this process may run on.
    pub cores: Option<usize>,
    /// IO driver.
    pub driver: IoDriver,
    /// Timeouts and limits.
    pub settings: Settings,
    /// The workload's certificate directory (`cert.pem`, `key.pem`, `bundle.pem`), if any,
    /// with its identity as loaded at startup.
    pub certs: Option<(PathBuf, Arc<Identity>)>,
    /// Where access log lines go (when the snapshot turns the log on).
    pub access_log: Destination,
    /// `--trace-collector`: where spans go whatever the snapshot says; without it, the
    /// snapshot's telemetry names the collector, if any.
    pub trace_collector: Option<Collector>,
    /// The installed logger's level, for admin `/logging` (`None`: no logger of meshd's own).
    pub log_level: Option<LogLevel>,
}

/// A signal, a worker's report or a reload request, as the control loop sees it.
#[derive(Debug)]
pub(crate) enum Event {
    Worker(WorkerEvent),
    Signal(i32),
    /// Reload the snapshot; the outcome (new hash, or why it was refused) goes to `reply`.
    Reload {
        reason: &'static str,
        reply: Option<mpsc::Sender<Result<String, String>>>,
    },
    /// Admin `POST /drain`: drain like SIGTERM, but keep the process up until a signal.
    Drain,
    /// Admin `/clusters`: every core sends its pool usage to `reply`.
    Usage {
        reply: mpsc::Sender<Usage>,
    },
    /// The certificate files changed (and stayed unchanged for one watch interval).
    Certs,
}

/// Reads, verifies and decodes a snapshot file into the view served for `workload`, with the
/// JWKS files its JWT rules name (relative paths from the snapshot's directory), and logs one
/// warning line per snapshot feature this meshd does not enforce yet (trace sampling unless
/// there is a collector). `cli_collector`: the format of meshd's `--trace-collector`, which
/// overrides the snapshot's.
pub fn load(
    path: &Path,
    workload: Option<&str>,
    cli_collector: Option<collector::Protocol>,
) -> Result<RouteState, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read snapshot {shown}: {e}"))?;
    let (snapshot, hash) =
        spec::decode(&bytes).map_err(|e| format!("refusing snapshot {shown}: {e}"))?;
    let mut routes = RouteState::new(snapshot, hash, workload)
        .map_err(|e| format!("refusing snapshot {shown}: {e}"))?;
    let rules = workload
        .and_then(|name| routes.snapshot.workload(name))
        .map_or(&[][..], |w| &w.jwt[..]);
    let base = path.parent().unwrap_or(Path::new("."));
    routes.jwt =
        Verifier::load(rules, base).map_err(|e| format!("refusing snapshot {shown}: {e}"))?;
    if cli_collector.is_some() {
        routes.tracing = cli_collector;
    }
    if routes.tracing.is_some() {
        routes
            .not_enforced
            .retain(|n| n.feature != crate::actions::TRACE_SAMPLING);
    }
    for feature in &routes.not_enforced {
        tracing::warn!("{}", feature.warning());
    }
    Ok(routes)
}

impl From<WorkerEvent> for Event {
    fn from(event: WorkerEvent) -> Self {
        Self::Worker(event)
    }
}

/// Runs the sidecar until SIGTERM/SIGINT has drained it. Prints one `meshd ready:` line with
/// the bound addresses to stdout once every worker accepts.
pub fn run(mut options: Options) -> anyhow::Result<()> {
    let available = core_affinity::get_core_ids().unwrap_or_default();
    let workers = options.cores.unwrap_or(available.len()).max(1);

    let outbound = bind_reuseport(options.outbound, workers)
        .map_err(|e| anyhow::anyhow!("cannot listen on outbound {}: {e}", options.outbound))?;
    let inbound = match options.inbound {
        Some(addr) => Some(
            bind_reuseport(addr, workers)
                .map_err(|e| anyhow::anyhow!("cannot listen on inbound {addr}: {e}"))?,
        ),
        None => None,
    };
    let admin_listener = std::net::TcpListener::bind(options.admin)
        .map_err(|e| anyhow::anyhow!("cannot listen on admin {}: {e}", options.admin))?;
    let outbound_addr = outbound[0].local_addr()?;
    let inbound_addr = inbound.as_ref().map(|l| l[0].local_addr()).transpose()?;
    let admin_addr = admin_listener.local_addr()?;
    let metrics_listener = match options.metrics {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr)
                .map_err(|e| anyhow::anyhow!("cannot listen on metrics {addr}: {e}"))?,
        ),
        None => None,
    };
    let metrics_addr = metrics_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;

    let (access_log, log_channels) = Writer::start(options.access_log.clone(), workers)
        .map_err(|e| anyhow::anyhow!("cannot open access log {:?}: {e}", options.access_log))?;
    let mut log_channels = log_channels.into_iter();
    // Spans have a writer whether or not a collector is in force: a reload may name one.
    let collector = span_destination(&options, &options.routes);
    let (span_writer, span_channels) = Writer::start(collector.clone(), workers)?;
    let mut span_channels = span_channels.into_iter();
    let mut collector_in_force = collector;

    let (events_tx, events) = mpsc::channel::<Event>();
    let (worker_tx, worker_rx) = mpsc::channel::<WorkerEvent>();
    forward(worker_rx, events_tx.clone());
    let mut controls = Vec::with_capacity(workers);
    let mut updates = Vec::with_capacity(workers);
    let mut ejection_senders = Vec::with_capacity(workers);
    let mut usage_senders = Vec::with_capacity(workers);
    let mut identity_senders = Vec::with_capacity(workers);
    let mut inbound = inbound.map(Vec::into_iter);
    for (index, outbound_listener) in outbound.into_iter().enumerate() {
        let mut listeners = vec![(outbound_listener, Direction::Outbound)];
        if let Some(l) = inbound.as_mut().and_then(Iterator::next) {
            listeners.push((l, Direction::Inbound));
        }
        let (control, worker_end) = UnixStream::pair()?;
        controls.push(control);
        let (update_tx, update_rx) = mpsc::channel();
        updates.push(update_tx);
        let (ejections_tx, ejections_rx) = mpsc::channel();
        ejection_senders.push(ejections_tx);
        let (usage_tx, usage_rx) = mpsc::channel();
        usage_senders.push(usage_tx);
        let (identity_tx, identity_rx) = mpsc::channel();
        identity_senders.push(identity_tx);
        let spec = WorkerSpec {
            index,
            cores: workers,
            core: (!available.is_empty()).then(|| available[index % available.len()]),
            driver: options.driver,
            listeners,
            control: worker_end,
            updates: update_rx,
            ejections: ejections_rx,
            usage: usage_rx,
            identities: identity_rx,
            identity: options.certs.as_ref().map(|(_, id)| id.clone()),
            routes: options.routes.clone(),
            settings: options.settings,
            access_log: log_channels.next(),
            spans: span_channels.next(),
        };
        let tx = worker_tx.clone();
        std::thread::Builder::new()
            .name(format!("meshd-worker-{index}"))
            .spawn(move || {
                let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    worker::run(spec, tx.clone());
                }));
                if panicked.is_err() {
                    let error = io::Error::other("worker panicked");
                    let _ = tx.send(WorkerEvent::Failed { index, error });
                }
            })?;
    }
    drop(worker_tx);

    let mut driver = "unknown";
    let mut started = 0;
    while started < workers {
        match events.recv()? {
            Event::Worker(WorkerEvent::Started { driver: d, .. }) => {
                driver = d;
                started += 1;
            }
            Event::Worker(WorkerEvent::Failed { index, error }) => {
                anyhow::bail!("worker {index} failed to start: {error}");
            }
            // A started core may report failure counts before the others are up.
            Event::Worker(WorkerEvent::Outliers { .. }) => {}
            other => anyhow::bail!("unexpected event while starting: {other:?}"),
        }
    }

    let admin_state = Arc::new(AdminState::new(
        options.routes.clone(),
        driver,
        workers,
        events_tx.clone(),
        access_log.failed_lines.clone(),
        span_writer.failed_lines.clone(),
    ));
    if let Some((_, identity)) = &options.certs {
        admin_state.set_identity(identity, None);
    }
    admin_state.set_log_level(options.log_level.clone());

    let state = admin_state.clone();
    std::thread::Builder::new()
        .name("meshd-admin".into())
        .spawn(move || admin::serve(admin_listener, state, admin::Pages::All))?;
    if let Some(listener) = metrics_listener {
        let state = admin_state.clone();
        std::thread::Builder::new()
            .name("meshd-metrics".into())
            .spawn(move || admin::serve(listener, state, admin::Pages::MetricsOnly))?;
    }
    // The snapshot watcher also watches the JWKS files the state names; a reload that
    // changes them sends the new list.
    let (watched, watched_rx) = mpsc::channel();
    if !options.watch_interval.is_zero() {
        let reload = || Event::Reload {
            reason: "snapshot or JWKS file changed",
            reply: None,
        };
        let files = watched_files(&options.snapshot, &options.routes);
        let interval = options.watch_interval;
        let watch = Watch::new(files, watched_rx);
        watch_files("meshd-watch", watch, interval, &events_tx, reload)?;
        if let Some((dir, _)) = &options.certs {
            let files = ["cert.pem", "key.pem", "bundle.pem"].map(|f| dir.join(f));
            let watch = Watch::fixed(files.into());
            watch_files("meshd-certs", watch, interval, &events_tx, || Event::Certs)?;
            // Files renewed between the load at start and the watcher's first look count too.
            let _ = events_tx.send(Event::Certs);
        }
    }
    watch_signals(events_tx)?;
    watch_reopen_signal(access_log.reopener())?;

    let inbound_text = inbound_addr.map_or("none".to_owned(), |a| a.to_string());
    let metrics_text = metrics_addr.map_or("none".to_owned(), |a| a.to_string());
    let mut stdout = io::stdout().lock();
    writeln!(
        stdout,
        "meshd ready: outbound={outbound_addr} inbound={inbound_text} admin={admin_addr} \
         workers={workers} io={driver} snapshot={} metrics={metrics_text}",
        options.routes.hash
    )?;
    stdout.flush()?;
    drop(stdout);

    let mut stopped = 0;
    let mut draining = false;
    let mut exit_when_drained = true;
    let mut current = options.routes.clone();
    let mut certs = options.certs.take();
    let mut outliers = OutlierState::new(&current, workers);
    admin_state.set_ejections(outliers.ejections(Vec::new()));
    // Runs until every core has drained and, after an admin drain, a signal asks to exit.
    while stopped < workers || !exit_when_drained {
        match events.recv()? {
            Event::Drain if !draining => {
                tracing::info!("admin POST /drain: draining, staying up until a signal");
                exit_when_drained = false;
                draining = true;
                admin_state.draining.store(true, Ordering::Relaxed);
                for control in &mut controls {
                    let _ = control.write_all(b"d");
                }
            }
            Event::Drain => {}
            Event::Certs => {
                if let Some((dir, identity)) = certs.as_mut() {
                    if reload_certs(dir, identity, &current, &admin_state) {
                        for (sender, control) in identity_senders.iter().zip(controls.iter_mut()) {
                            if sender.send(identity.clone()).is_ok() {
                                let _ = control.write_all(b"c");
                            }
                        }
                    }
                }
            }
            Event::Usage { reply } => {
                for (sender, control) in usage_senders.iter().zip(controls.iter_mut()) {
                    if sender.send(reply.clone()).is_ok() {
                        let _ = control.write_all(b"u");
                    }
                }
            }
            Event::Signal(_) if draining => exit_when_drained = true,
            Event::Reload { reason, reply } if !draining => {
                let outcome = reload(
                    &options,
                    &mut current,
                    reason,
                    &updates,
                    &mut controls,
                    &admin_state,
                    certs.as_ref().map(|(_, identity)| &**identity),
                );
                let counter = match outcome {
                    Ok(_) => &admin_state.reloads_applied,
                    Err(_) => &admin_state.reloads_refused,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let collector = span_destination(&options, &current);
                if collector != collector_in_force {
                    span_writer.retarget(collector.clone());
                    collector_in_force = collector;
                }
                reset_outliers(
                    &current,
                    workers,
                    &mut outliers,
                    &ejection_senders,
                    &mut controls,
                    &admin_state,
                );
                // Nobody listens without a watch interval.
                let _ = watched.send(watched_files(&options.snapshot, &current));
                // Answered once the ejections carried over are in place too, so an operator's
                // next look at /clusters sees them.
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
            Event::Reload { reply, .. } => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err("draining: reload ignored".to_owned()));
                }
            }
            Event::Signal(signal) if !draining => {
                tracing::info!(
                    "signal {signal}: draining (up to {} ms)",
                    options.settings.drain_timeout.as_millis()
                );
                draining = true;
                admin_state.draining.store(true, Ordering::Relaxed);
                for control in &mut controls {
                    let _ = control.write_all(b"d");
                }
            }
            // Guards above cover every signal; the compiler cannot see through them.
            Event::Signal(_) => {}
            Event::Worker(WorkerEvent::Stopped { index, unfinished }) => {
                if unfinished > 0 {
                    tracing::warn!("worker {index} stopped with {unfinished} connections open");
                }
                stopped += 1;
            }
            Event::Worker(WorkerEvent::Failed { index, error }) => {
                anyhow::bail!("worker {index} failed: {error}");
            }
            Event::Worker(WorkerEvent::Started { .. }) => {}
            Event::Worker(WorkerEvent::Outliers {
                index,
                hash,
                counts,
            }) => {
                if hash != current.hash {
                    continue;
                }
                outliers.report(index, &hash, counts);
                if let Some(ejections) = outliers.decide(std::time::Instant::now()) {
                    send_ejections(&ejections, &ejection_senders, &mut controls);
                    admin_state.set_ejections(ejections);
                }
            }
        }
    }
    // The stopped cores handed their last lines over; a writer stuck on a pipe nobody reads
    // is not waited for long.
    access_log.finish(Duration::from_secs(2));
    span_writer.finish(Duration::from_secs(2));
    tracing::info!("drained, exiting");
    Ok(())
}

/// Loads the snapshot again and, if it is valid and fits the certificate in force (`identity`),
/// hands it to every core, which switch between requests. A bad snapshot is refused with the
/// reason and the current one keeps serving. Returns the hash served, or why it was refused.
fn reload(
    options: &Options,
    current: &mut Arc<RouteState>,
    reason: &'static str,
    updates: &[mpsc::Sender<Arc<RouteState>>],
    controls: &mut [UnixStream],
    admin: &AdminState,
    identity: Option<&Identity>,
) -> Result<String, String> {
    let cli = options.trace_collector.as_ref().map(|c| c.protocol);
    let loaded = load(&options.snapshot, options.workload.as_deref(), cli).and_then(|routes| {
        check_tls_needs(&routes, identity.is_some())?;
        // The certificate files are checked against the snapshot in force, so a change of
        // identity cannot be rolled out by swapping both in turn: it takes a restart.
        if let (Some(identity), Some(expected)) = (identity, routes.identity.as_deref()) {
            if expected != identity.spiffe_id {
                return Err(format!(
                    "it gives this workload the identity {expected}, but the certificate in \
                     force is for {}: restart meshd with a certificate for {expected}",
                    identity.spiffe_id
                ));
            }
        }
        Ok(routes)
    });
    match loaded {
        Err(error) => {
            tracing::warn!(
                "reload ({reason}) refused: {error}; still serving {}",
                current.hash
            );
            Err(error)
        }
        // The JWKS files are part of what is served: a change to them alone reloads too.
        Ok(routes) if routes.hash == current.hash && routes.jwt == current.jwt => Ok(routes.hash),
        Ok(routes) => {
            let routes = Arc::new(routes);
            for (update, control) in updates.iter().zip(controls.iter_mut()) {
                // The Arc travels by channel; the byte wakes the core to take it.
                if update.send(routes.clone()).is_ok() {
                    let _ = control.write_all(b"r");
                }
            }
            tracing::info!("reloaded snapshot {} ({reason})", routes.hash);
            admin.set_routes(routes.clone());
            *current = routes;
            Ok(current.hash.clone())
        }
    }
}

/// Moves outlier detection to the route state a reload installed: ejections of the endpoints
/// it keeps carry over, and go to the cores after the new state (which resets their counts and
/// ejections), through the same control socket, so no core sees them first.
fn reset_outliers(
    current: &RouteState,
    workers: usize,
    outliers: &mut OutlierState,
    senders: &[mpsc::Sender<Arc<Ejections>>],
    controls: &mut [UnixStream],
    admin: &AdminState,
) {
    if outliers.serves(&current.hash) {
        return;
    }
    let mut next = OutlierState::new(current, workers);
    let carried = next.carry_from(outliers);
    *outliers = next;
    let ejections = outliers.ejections(Vec::new());
    if carried {
        send_ejections(&ejections, senders, controls);
    }
    admin.set_ejections(ejections);
}

/// Hands new ejections to every core: the `Arc` by channel, then an `e` byte to wake it.
fn send_ejections(
    ejections: &Arc<Ejections>,
    senders: &[mpsc::Sender<Arc<Ejections>>],
    controls: &mut [UnixStream],
) {
    for (sender, control) in senders.iter().zip(controls.iter_mut()) {
        if sender.send(ejections.clone()).is_ok() {
            let _ = control.write_all(b"e");
        }
    }
}

/// Binds `count` SO_REUSEPORT listeners on one address; port 0 resolves once for all. A port
/// another process listens on is refused first: SO_REUSEPORT would otherwise share it with
/// any listener of the same user, each taking part of the connections.
fn bind_reuseport(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into()).map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse => {
                io::Error::new(e.kind(), "the address is in use by another process")
            }
            _ => e,
        })?;
    }
    let first = listen(addr)?;
    let resolved = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(listen(resolved)?);
    }
    Ok(listeners)
}

fn listen(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn forward(from: mpsc::Receiver<WorkerEvent>, to: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        for event in from {
            if to.send(event.into()).is_err() {
                break;
            }
        }
    });
}

fn watch_signals(events: mpsc::Sender<Event>) -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("meshd-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                // SIGHUP is a reload like any other (and ignored while draining like one), of the
                // snapshot and the certificates.
                let sent = if signal == SIGHUP {
                    let reload = Event::Reload {
                        reason: "SIGHUP",
                        reply: None,
                    };
                    events.send(reload).and_then(|()| events.send(Event::Certs))
                } else {
                    events.send(Event::Signal(signal))
                };
                if sent.is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}

/// Where spans go for `routes`: meshd's `--trace-collector`, else the collector its telemetry
/// names, else nowhere.
fn span_destination(options: &Options, routes: &RouteState) -> Destination {
    let service = options.workload.as_deref().unwrap_or("meshd");
    let collector = options.trace_collector.clone().or_else(|| {
        let url = routes.trace_collector.as_deref()?;
        Collector::parse(url, service).ok()
    });
    let mark = options.settings.marks.map_or(0, |m| m.mesh);
    collector.map_or(Destination::Discard, |mut collector| {
        collector.mark = mark;
        Destination::Collector(collector)
    })
}

/// SIGUSR1 reopens the access log file (after `logrotate` moved it away).
fn watch_reopen_signal(access_log: Reopener) -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR1])?;
    std::thread::Builder::new()
        .name("meshd-reopen".into())
        .spawn(move || {
            for _ in signals.forever() {
                access_log.reopen();
            }
        })?;
    Ok(())
}

/// Loads the workload's certificates again: a good set replaces the identity in force (true:
/// the cores are to get it), a bad one is refused with a log line naming why and the current
/// identity stays.
fn reload_certs(
    dir: &Path,
    identity: &mut Arc<Identity>,
    routes: &RouteState,
    admin: &AdminState,
) -> bool {
    let loaded = Identity::load(dir).and_then(|next| {
        check_identity(&next, routes)?;
        Ok(next)
    });
    match loaded {
        Ok(next) if next.serial == identity.serial && next.bundle == identity.bundle => false,
        Ok(next) => {
            tracing::info!(
                "certificates reloaded: {} serial {} (was {}), {} trusted roots",
                next.spiffe_id,
                next.serial,
                identity.serial,
                next.bundle.len()
            );
            *identity = Arc::new(next);
            admin.set_identity(identity, None);
            true
        }
        Err(error) => {
            tracing::warn!(
                "certificates in {} refused: {error}; keeping serial {}",
                dir.display(),
                identity.serial
            );
            admin.set_identity(identity, Some(error.to_string()));
            false
        }
    }
}

/// Refuses a route state that needs a certificate meshd does not have (a strict inbound port
/// would refuse every caller), and warns when calls to services with identities will go in
/// plaintext for want of one.
pub fn check_tls_needs(routes: &RouteState, has_certs: bool) -> Result<(), String> {
    if has_certs {
        return Ok(());
    }
    if let Some(port) = routes.strict_inbound_port() {
        return Err(format!(
            "inbound port {port} is strict mTLS but meshd has no certificate: pass --certs DIR \
             (from `meshca issue`) or --ca ADDR"
        ));
    }
    let secured: Vec<&str> = routes
        .groups()
        .iter()
        .filter(|g| !g.identities.is_empty() && !g.name.contains('/'))
        .map(|g| g.name.as_str())
        .collect();
    if !secured.is_empty() {
        tracing::warn!(
            "no --certs: calls to {} (services with identities) go in \
             plaintext, without secure naming",
            secured.join(", ")
        );
    }
    Ok(())
}

/// Refuses a certificate for another identity than the snapshot gives the workload: its
/// callers' secure naming would refuse it on every connection.
pub fn check_identity(identity: &Identity, routes: &RouteState) -> Result<(), TlsError> {
    match routes.identity.as_deref() {
        Some(expected) if expected != identity.spiffe_id => Err(TlsError::WrongIdentity {
            presented: identity.spiffe_id.clone(),
            expected: expected.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// The files a reload reads: the snapshot and the JWKS files of the state it gave.
fn watched_files(snapshot: &Path, routes: &RouteState) -> Vec<PathBuf> {
    let jwks = routes.jwt.summary().map(|(_, file, _)| file.to_owned());
    std::iter::once(snapshot.to_owned()).chain(jwks).collect()
}

/// The files a watcher polls, and where a new list of them arrives.
struct Watch {
    paths: Vec<PathBuf>,
    updates: Option<mpsc::Receiver<Vec<PathBuf>>>,
}

impl Watch {
    fn new(paths: Vec<PathBuf>, updates: mpsc::Receiver<Vec<PathBuf>>) -> Self {
        Self {
            paths,
            updates: Some(updates),
        }
    }

    fn fixed(paths: Vec<PathBuf>) -> Self {
        Self {
            paths,
            updates: None,
        }
    }

    /// Each file with its modification time and size (`None`: missing), after taking the
    /// newest list sent.
    fn stamp(&mut self) -> Vec<(PathBuf, Option<(SystemTime, u64)>)> {
        if let Some(updates) = &self.updates {
            while let Ok(paths) = updates.try_recv() {
                self.paths = paths;
            }
        }
        let one = |path: &PathBuf| {
            let meta = std::fs::metadata(path).ok();
            let stamp = meta.and_then(|m| Some((m.modified().ok()?, m.len())));
            (path.clone(), stamp)
        };
        self.paths.iter().map(one).collect()
    }
}

/// Polls the sizes and modification times of the watched files; a change, once it has held
/// for one interval (a writer replacing several files is done), sends `event()`. Polling (not
/// inotify) also sees an atomic rename over a file and costs one stat per file and interval.
fn watch_files(
    name: &str,
    mut watch: Watch,
    interval: Duration,
    events: &mpsc::Sender<Event>,
    event: impl Fn() -> Event + Send + 'static,
) -> io::Result<()> {
    let mut last = watch.stamp();
    let events = events.clone();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || loop {
            std::thread::sleep(interval);
            let now = watch.stamp();
            if now.iter().all(|(_, s)| s.is_some()) && now != last {
                std::thread::sleep(interval);
                if watch.stamp() != now {
                    continue; // still being written: look again next round
                }
                last = now;
                if events.send(event()).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}

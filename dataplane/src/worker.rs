//! One data-plane core: a pinned thread running a monoio runtime with its own listeners,
//! upstream pools and balancer state. Nothing here is shared with other cores but the
//! immutable route state behind an `Arc`.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use monoio::io::AsyncReadRent;
use monoio::net::{TcpListener, UnixStream};

use crate::export::sink::Channel;
use crate::outlier::{Counts, Ejections};
use crate::percore::{Core, CoreSpec, Settings};
use crate::proxy;
use crate::routing::{Direction, RouteState};
use crate::tls::Identity;
use crate::usage::Usage;

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
    let core = Rc::new(Core::new(CoreSpec {
        index: spec.index,
        cores: spec.cores,
        settings: spec.settings,
        routes: spec.routes,
        access_log: spec.access_log,
        spans: spec.spans,
    }));
    if let Some(identity) = spec.identity {
        core.security.install_identity(identity);
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
        running: Rc::default(),
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

    let connections = &core.connections;
    connections.drain.wait().await;
    let deadline = Instant::now() + core.settings.drain_timeout;
    // Shutdown only: poll the in-flight count rather than wiring another notifier.
    while connections.active.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    core.recorders.close();
    let _ = events.send(WorkerEvent::Stopped {
        index: spec.index,
        unfinished: connections.active.get(),
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
                core.upstreams
                    .balancing
                    .borrow_mut()
                    .set_ejections(ejections);
            }
        }
        if commands.contains(&b'c') {
            if let Some(identity) = identities.try_iter().last() {
                core.security.install_identity(identity);
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
    core.connections.drain.start();
}

/// Where a core sends its failure counts.
#[derive(Debug, Clone)]
struct Reports {
    index: usize,
    events: mpsc::Sender<WorkerEvent>,
    /// Whether the reporting task runs (only while the route state has outlier detection).
    running: Rc<Cell<bool>>,
}

impl Reports {
    /// Starts the reporting task if the route state in force has outlier detection and the
    /// task is not running; a core without outlier detection never wakes for it.
    fn ensure(&self, core: &Rc<Core>) {
        if !self.running.get() && core.routes.borrow().outlier_interval().is_some() {
            self.running.set(true);
            monoio::spawn(report_outliers(self.clone(), core.clone()));
        }
    }
}

/// Sends this core's consecutive failure counts to the control thread every outlier interval
/// (the shortest of the route state's groups), for host-wide ejection decisions. Ends when a
/// reload removes outlier detection, or on drain.
async fn report_outliers(reports: Reports, core: Rc<Core>) {
    let Reports {
        index,
        events,
        running,
    } = reports;
    loop {
        let Some(interval) = core.routes.borrow().outlier_interval() else {
            break;
        };
        monoio::select! {
            _ = core.connections.drain.wait() => break,
            _ = monoio::time::sleep(interval) => {}
        }
        let hash = core.routes.borrow().hash.clone();
        let counts = core.upstreams.balancing.borrow().report();
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
    running.set(false);
}

async fn accept_loop(listener: TcpListener, direction: Direction, core: Rc<Core>) {
    loop {
        let accepted = monoio::select! {
            _ = core.connections.drain.wait() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                if core.connections.active.get() >= core.settings.max_connections_per_core {
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

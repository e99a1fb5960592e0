//! Opaque TCP: captured connections that do not speak HTTP, relayed byte for byte.
//!
//! Outbound, a connection to a mesh service whose servers have identities (to its virtual
//! address: to the endpoint its balancer picks) goes over mutual TLS with ALPN
//! [`TCP_ALPN`](crate::tls::TCP_ALPN), so the callee's sidecar knows to relay rather than
//! parse; anything else goes where its client sent it. Inbound, the caller is
//! authorized by the workload's policies read as Istio reads them for TCP (no method, path or
//! headers) before a byte reaches the application, and again after each reload while the
//! connection lives. Each end counts Istio's `istio_tcp_*` metrics, and a connection that moves
//! no byte either way for the idle timeout is closed.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::outcome::flush_later;
use super::tunnel::RELAY_CHUNK;
use crate::access_log::{Captured, Entry};
use crate::authz::{check_connection, InboundConnection};
use crate::balancer::Input;
use crate::conn::Conn;
use crate::metrics::{Connection, Reporter};
use crate::percore::Core;
use crate::routing::RouteState;
use crate::stream::Stream;
use crate::tls::TCP_OFFER;
use crate::upstream::{self, Secure};

/// How long a relayed connection may move no byte before it is closed, unless its service's
/// pool says otherwise (Envoy's and Istio's TCP proxy default).
const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// How often a long connection's bytes are added to the metrics, and how soon after a reload
/// its caller is authorized again.
const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Outbound: relays a captured connection to `original`, which is not HTTP, over a socket
/// marked `mark`.
pub(super) async fn relay_outbound(down: Conn, original: SocketAddr, mark: u32, core: &Rc<Core>) {
    let routes = core.routes.borrow().clone();
    let peer = down.stream.peer_addr().ok().map(|a| a.ip());
    let input = Input {
        headers: &[],
        peer: &|| peer,
    };
    // The service's balancer picks, skipping ejected endpoints, as for a request.
    let balancing = &core.upstreams.balancing;
    let picked = |index, group: &_| balancing.borrow_mut().pick(index, group, &input).endpoint;
    let (target, group) = routes.opaque_target(original, |i, g| picked(i, g) as usize);
    let group = group.map(|(_, g)| g);
    let secure = group
        .and_then(|g| Secure::for_group(&core.security, g))
        .map(|s| Secure {
            alpn: Some(TCP_OFFER),
            ..s
        });
    let service = group
        .and_then(|g| routes.snapshot.services.get(g.service as usize))
        .map(|s| s.name.as_str());
    let idle = idle_timeout(group.map(|g| &g.pool));
    let started = Instant::now();
    let until = started + core.settings.connect_timeout;
    let connected = upstream::connect(&core.security, target, mark, until, secure.as_ref()).await;
    let mut connection = Connection {
        reporter: Reporter::Source,
        service,
        peer: None,
        flags: "-",
    };
    let mut logged = Logged {
        started,
        downstream: down.stream.peer_addr().ok(),
        upstream: target,
        cluster: group.map(|g| g.name.clone()),
        principal: None,
        inbound: false,
    };
    let up = match connected {
        Ok(up) => up,
        Err(e) => {
            tracing::debug!("relaying a captured connection to {target}: {e:?}");
            connection.flags = "UF";
            Meter::open(core, routes.metrics_enabled, &connection, logged).close();
            return;
        }
    };
    connection.peer = up.stream.peer_identity();
    logged.principal = connection.peer.map(str::to_owned);
    let meter = Meter::open(core, routes.metrics_enabled, &connection, logged);
    // A connection may outlive many reloads: it must not hold this route state.
    drop(routes);
    relay(down, up, &meter, idle).await;
    meter.close();
}

/// How long a connection under `pool` may move no byte; `None`: forever (a zero timeout, as
/// Envoy reads it).
fn idle_timeout(pool: Option<&spec::PoolLimits>) -> Option<Duration> {
    match pool.and_then(|p| p.tcp_idle_timeout_ms) {
        None => Some(DEFAULT_TCP_IDLE_TIMEOUT),
        Some(0) => None,
        Some(ms) => Some(Duration::from_millis(ms)),
    }
}

/// Inbound: relays a connection that is not HTTP to the application at `app` (inbound port
/// `port`), if the workload's policies allow its caller.
pub(super) async fn relay_inbound(down: Conn, (port, app): (u16, SocketAddr), core: &Rc<Core>) {
    let routes = core.routes.borrow().clone();
    let Ok(peer) = down.stream.peer_addr() else {
        return;
    };
    let caller = InboundConnection {
        port,
        principal: down.stream.peer_identity(),
        peer,
    };
    if check_connection(&routes.authorization, &caller).is_err() {
        return;
    }
    let served = routes.served_service(port);
    let service = served
        .and_then(|s| routes.snapshot.services.get(s as usize))
        .map(|s| s.name.as_str());
    let pool = served.and_then(|s| Some(&routes.destination(s, None)?.group.pool));
    let idle = idle_timeout(pool);
    let mut connection = Connection {
        reporter: Reporter::Destination,
        service,
        peer: caller.principal,
        flags: "-",
    };
    let logged = Logged {
        started: Instant::now(),
        downstream: Some(peer),
        upstream: app,
        cluster: service.map(str::to_owned),
        principal: caller.principal.map(str::to_owned),
        inbound: true,
    };
    let mark = core.settings.marks.map_or(0, |m| m.app);
    let until = Instant::now() + core.settings.connect_timeout;
    let up = match upstream::connect(&core.security, app, mark, until, None).await {
        Ok(up) => up,
        Err(e) => {
            tracing::debug!("relaying a captured connection to the application at {app}: {e:?}");
            connection.flags = "UF";
            Meter::open(core, routes.metrics_enabled, &connection, logged).close();
            return;
        }
    };
    let mut meter = Meter::open(core, routes.metrics_enabled, &connection, logged);
    meter.caller = Some(Caller {
        port,
        principal: caller.principal.map(str::to_owned),
        peer,
        decided_by: RefCell::new(Arc::downgrade(&routes.0)),
    });
    drop(routes);
    relay(down, up, &meter, idle).await;
    meter.close();
}

/// An inbound connection's caller, to decide again by the policies of a newer route state.
struct Caller {
    port: u16,
    principal: Option<String>,
    peer: SocketAddr,
    /// The route state whose policies allowed it last (held weakly: it may be long gone).
    decided_by: RefCell<Weak<RouteState>>,
}

impl Caller {
    /// Whether the route state in force would still relay the connection: its port still
    /// relays bytes, a plaintext caller is not now held to mutual TLS (a port made `strict`),
    /// and the policies allow it.
    fn still_allowed(&self, core: &Core) -> bool {
        let current = core.routes.borrow().clone();
        if Weak::ptr_eq(&self.decided_by.borrow(), &Arc::downgrade(&current.0)) {
            return true;
        }
        *self.decided_by.borrow_mut() = Arc::downgrade(&current.0);
        // Only the port's number picks the inbound port; the address is never used here.
        let at = SocketAddr::from(([0, 0, 0, 0], self.port));
        let (port, _, mode) = current.captured_inbound_target(at);
        // A caller over mutual TLS always has a principal (a client certificate is required).
        let plaintext = self.principal.is_none();
        if !current.relays_opaque_inbound(port) || (plaintext && mode == spec::TlsMode::Strict) {
            return false;
        }
        let connection = InboundConnection {
            port: self.port,
            principal: self.principal.as_deref(),
            peer: self.peer,
        };
        check_connection(&current.authorization, &connection).is_ok()
    }
}

/// What a relayed connection's access log line says besides its bytes and flags.
struct Logged {
    started: Instant,
    downstream: Option<SocketAddr>,
    upstream: SocketAddr,
    cluster: Option<String>,
    /// The caller's SPIFFE ID inbound, the server's outbound.
    principal: Option<String>,
    inbound: bool,
}

/// One relayed connection's bytes and last activity, its metrics series and its log line.
struct Meter<'c> {
    core: &'c Rc<Core>,
    series: Option<usize>,
    flags: &'static str,
    logged: Logged,
    /// Bytes from the client, and bytes to it.
    received: Cell<u64>,
    sent: Cell<u64>,
    /// What the metrics were told so far.
    reported: Cell<(u64, u64)>,
    active: Cell<Instant>,
    /// Inbound: who to authorize again after a reload.
    caller: Option<Caller>,
}

impl<'c> Meter<'c> {
    /// Counts `connection` opened when metrics are `enabled`.
    fn open(
        core: &'c Rc<Core>,
        enabled: bool,
        connection: &Connection<'_>,
        logged: Logged,
    ) -> Self {
        let series = enabled.then(|| core.recorders.metrics.borrow_mut().open_tcp(connection));
        Self {
            core,
            series,
            flags: connection.flags,
            logged,
            received: Cell::new(0),
            sent: Cell::new(0),
            reported: Cell::new((0, 0)),
            active: Cell::new(Instant::now()),
            caller: None,
        }
    }

    fn moved(&self, counter: &Cell<u64>, bytes: usize) {
        counter.set(counter.get() + bytes as u64);
        self.active.set(Instant::now());
    }

    /// Adds the bytes moved since the last report to the metrics.
    fn report(&self) {
        let Some(series) = self.series else {
            return;
        };
        let (received, sent) = (self.received.get(), self.sent.get());
        let (told_received, told_sent) = self.reported.replace((received, sent));
        let mut metrics = self.core.recorders.metrics.borrow_mut();
        metrics.count_tcp(series, received - told_received, sent - told_sent);
    }

    fn close(self) {
        self.report();
        if let Some(series) = self.series {
            self.core.recorders.metrics.borrow_mut().close_tcp(series);
        }
        self.log();
    }

    /// Writes the connection's access log line, as Envoy's TCP proxy does when it closes, in
    /// the format of the route state in force now (the connection may have outlived its own).
    fn log(&self) {
        let routes = self.core.routes.borrow().clone();
        let Some(format) = &routes.access_log else {
            return;
        };
        let log = &self.logged;
        let principal = log.principal.as_deref();
        let access_log = &self.core.recorders.access_log;
        let request = Captured::opaque();
        let entry = Entry {
            start: access_log.wall_clock(log.started.into_std()),
            request: &request,
            code: 0,
            grpc_status: None,
            flags: self.flags,
            bytes_received: self.received.get(),
            bytes_sent: self.sent.get(),
            duration: log.started.elapsed(),
            response_duration: None,
            upstream_service_time: None,
            upstream_host: Some(log.upstream),
            upstream_cluster: log.cluster.as_deref(),
            downstream: log.downstream,
            downstream_principal: principal.filter(|_| log.inbound),
            upstream_principal: principal.filter(|_| !log.inbound),
            inbound: log.inbound,
            route: None,
            trace_id: None,
            snapshot: &routes.hash,
        };
        if access_log.append(|out| format.render(&entry, out)) {
            monoio::spawn(flush_later(self.core.clone(), |r| &r.access_log));
        }
    }

    /// Returns once no byte moved for `idle` (never without one), or once a reload's policies
    /// deny the caller; reports bytes every [`REPORT_INTERVAL`] meanwhile.
    async fn watch(&self, idle: Option<Duration>) {
        loop {
            let report_at = Instant::now() + REPORT_INTERVAL;
            let wake = idle.map_or(report_at, |idle| report_at.min(self.active.get() + idle));
            monoio::time::sleep_until(wake).await;
            self.report();
            if idle.is_some_and(|idle| Instant::now() >= self.active.get() + idle) {
                tracing::debug!("closed a relayed connection idle for {idle:?}");
                return;
            }
            if self
                .caller
                .as_ref()
                .is_some_and(|c| !c.still_allowed(self.core))
            {
                tracing::debug!("closed a relayed connection the reloaded policies deny");
                return;
            }
        }
    }
}

/// Relays both ways until each side has closed its half, or the meter's watch ends it.
async fn relay(mut down: Conn, mut up: Conn, meter: &Meter<'_>, idle: Option<Duration>) {
    let Ok(pending) = down.forward_all_buffered(&mut up.stream).await else {
        return;
    };
    meter.moved(&meter.received, pending);
    let relayed = async {
        match (down.into_parts().0, up.into_parts().0) {
            (Stream::Plain(down), Stream::Plain(up)) => {
                let (mut down_read, mut down_write) = down.into_split();
                let (mut up_read, mut up_write) = up.into_split();
                let _ = monoio::join!(
                    copy(&mut down_read, &mut up_write, meter, &meter.received),
                    copy(&mut up_read, &mut down_write, meter, &meter.sent)
                );
            }
            (down, up) => {
                let (Ok(down), Ok(up)) = (down.into_poll(), up.into_poll()) else {
                    return;
                };
                let mut down = Metered {
                    inner: down,
                    meter,
                    counter: &meter.received,
                };
                let mut up = Metered {
                    inner: up,
                    meter,
                    counter: &meter.sent,
                };
                let _ = tokio::io::copy_bidirectional_with_sizes(
                    &mut down,
                    &mut up,
                    RELAY_CHUNK,
                    RELAY_CHUNK,
                )
                .await;
            }
        }
    };
    monoio::select! {
        _ = relayed => {}
        _ = meter.watch(idle) => {}
    }
}

/// Copies until `from` ends or fails, counting into `counter`, then half-closes `to`, so its
/// peer sees the end either way.
async fn copy(
    from: &mut impl AsyncReadRent,
    to: &mut impl AsyncWriteRent,
    meter: &Meter<'_>,
    counter: &Cell<u64>,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(RELAY_CHUNK);
    let copied = loop {
        buf.clear();
        let (read, back) = from.read(buf).await;
        buf = back;
        match read {
            Ok(0) => break Ok(()),
            Ok(n) => meter.moved(counter, n),
            Err(e) => break Err(e),
        }
        let (written, back) = to.write_all(buf).await;
        buf = back;
        if let Err(e) = written {
            break Err(e);
        }
    };
    let _ = to.shutdown().await;
    copied
}

/// A poll-style stream whose reads are counted into `counter`.
struct Metered<'m, S> {
    inner: S,
    meter: &'m Meter<'m>,
    counter: &'m Cell<u64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.meter.moved(self.counter, read);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

//! The admin listener: a small blocking HTTP server on its own thread, off the data cores.
//! `/ready`, `/healthz`, `/config`, `/clusters`, `POST /reload`, `POST /drain`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::control::Event;
use crate::logging::LogLevel;
use crate::metrics;
use crate::outlier::Ejections;
use crate::routing::RouteState;
use crate::tls::Identity;
use crate::usage::Usage;

// The admin and control threads only, never a data core: a lock is fine here.
#[allow(clippy::disallowed_types)]
type Shared<T> = std::sync::Mutex<T>;

/// What the admin endpoints report and the control loop they can ask for a reload.
#[derive(Debug)]
pub struct AdminState {
    routes: Shared<Arc<RouteState>>,
    /// Set when draining starts; `/ready` then answers 503.
    pub draining: AtomicBool,
    /// The IO driver the workers run, for `/config`.
    pub driver: &'static str,
    /// How many cores answer a usage request.
    workers: usize,
    events: Shared<mpsc::Sender<Event>>,
    /// Endpoint health as the control thread last decided it, for `/clusters`.
    ejections: Shared<Arc<Ejections>>,
    /// The workload certificate in force and the last refusal, for `/certs`.
    certs: Shared<Option<serde_json::Value>>,
    /// Access log lines the writer failed to write.
    pub access_log_failed: Arc<AtomicU64>,
    /// Spans the exporter failed to post.
    pub spans_failed: Arc<AtomicU64>,
    /// Snapshot reloads applied and refused since start.
    pub reloads_applied: AtomicU64,
    pub reloads_refused: AtomicU64,
    /// meshd's own log level, for `/logging`.
    log_level: Shared<Option<LogLevel>>,
}

impl AdminState {
    pub(crate) fn new(
        routes: Arc<RouteState>,
        driver: &'static str,
        workers: usize,
        events: mpsc::Sender<Event>,
        access_log_failed: Arc<AtomicU64>,
        spans_failed: Arc<AtomicU64>,
    ) -> Self {
        Self {
            routes: routes.into(),
            draining: false.into(),
            driver,
            workers,
            events: events.into(),
            ejections: Shared::default(),
            certs: Shared::default(),
            access_log_failed,
            spans_failed,
            reloads_applied: AtomicU64::new(0),
            reloads_refused: AtomicU64::new(0),
            log_level: Shared::default(),
        }
    }

    /// The logger whose level `/logging` reads and sets.
    pub(crate) fn set_log_level(&self, level: Option<LogLevel>) {
        match self.log_level.lock() {
            Ok(mut current) => *current = level,
            Err(poisoned) => *poisoned.into_inner() = level,
        }
    }

    /// `GET /logging`, or `POST /logging?level=LEVEL` when `query` names one.
    fn logging(&self, query: Option<&str>) -> (u16, &'static str, String) {
        let level = match self.log_level.lock() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let Some(level) = level else {
            return (
                503,
                "text/plain",
                "meshd runs without a logger of its own\n".into(),
            );
        };
        let wanted = query.and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("level=")));
        match (query.is_some(), wanted) {
            (_, Some(name)) => match level.set(name) {
                Ok(()) => {
                    tracing::info!("log level set to {name} (admin POST /logging)");
                    (200, "text/plain", format!("level: {name}\n"))
                }
                Err(error) => (400, "text/plain", format!("{error}\n")),
            },
            (true, None) => (
                400,
                "text/plain",
                format!(
                    "POST /logging?level=LEVEL, LEVEL one of {}\n",
                    crate::logging::LEVELS.join(", ")
                ),
            ),
            (false, None) => (200, "text/plain", format!("level: {}\n", level.get())),
        }
    }

    /// Seconds until the workload certificate in force expires, if there is one.
    fn certificate_expiry(&self) -> Option<i64> {
        let certs = match self.certs.lock() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let not_after = certs?.get("not_after_unix")?.as_i64()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Some(not_after - now)
    }

    /// Records the identity in force (and why the latest certificate files were refused).
    pub(crate) fn set_identity(&self, identity: &Identity, refused: Option<String>) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let value = serde_json::json!({
            "spiffe_id": identity.spiffe_id,
            "serial": identity.serial,
            "not_after_unix": identity.not_after,
            "trusted_roots": identity.bundle.len(),
            "expires_in_s": identity.not_after - now,
            "last_refusal": refused,
        });
        match self.certs.lock() {
            Ok(mut current) => *current = Some(value),
            Err(poisoned) => *poisoned.into_inner() = Some(value),
        }
    }

    fn certs_json(&self) -> String {
        let value = match self.certs.lock() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let mut value = value.unwrap_or_else(|| serde_json::json!({ "spiffe_id": null }));
        let routes = self.routes();
        let usage = self.usage(&routes.hash);
        let counts = usage.as_ref().map(|u| {
            let t = u.authn;
            serde_json::json!({
                "inbound_handshakes": t.inbound_handshakes,
                "inbound_h2_connections": t.inbound_h2,
                "inbound_h2_reset_floods": t.inbound_h2_reset_floods,
                "inbound_handshake_failures": t.inbound_failures,
                "plaintext_refused": t.plaintext_refused,
                "outbound_handshakes": t.outbound_handshakes,
                "outbound_handshake_failures": t.outbound_failures,
                "secure_naming_failures": t.naming_failures,
            })
        });
        value["tls"] = counts.unwrap_or(serde_json::Value::Null);
        let issuers: Vec<serde_json::Value> = routes
            .jwt
            .summary()
            .map(|(issuer, file, keys)| {
                serde_json::json!({ "issuer": issuer, "jwks_file": file, "keys": keys })
            })
            .collect();
        value["jwt"] = serde_json::json!({
            "issuers": issuers,
            "verified": usage.as_ref().map(|u| u.authn.jwt_verified),
            "rejected": usage.as_ref().map(|u| u.authn.jwt_rejected),
        });
        serde_json::to_string_pretty(&value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The route state being served.
    pub fn routes(&self) -> Arc<RouteState> {
        match self.routes.lock() {
            Ok(routes) => routes.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn set_routes(&self, routes: Arc<RouteState>) {
        match self.routes.lock() {
            Ok(mut current) => *current = routes,
            Err(poisoned) => *poisoned.into_inner() = routes,
        }
    }

    pub(crate) fn set_ejections(&self, ejections: Arc<Ejections>) {
        match self.ejections.lock() {
            Ok(mut current) => *current = ejections,
            Err(poisoned) => *poisoned.into_inner() = ejections,
        }
    }

    /// Endpoint health as last decided.
    pub fn ejections(&self) -> Arc<Ejections> {
        match self.ejections.lock() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Asks the control loop to drain without exiting.
    fn drain(&self) -> bool {
        // Not ready from the moment the operator asked, not from when the control loop acts.
        self.draining.store(true, Ordering::Relaxed);
        match self.events.lock() {
            Ok(events) => events.send(Event::Drain).is_ok(),
            Err(_) => false,
        }
    }

    /// Asks every core for its pool usage and sums the answers for the route state `hash`;
    /// `None` if a core did not answer within a second (it may be draining).
    fn usage(&self, hash: &str) -> Option<Usage> {
        let (reply, answers) = mpsc::channel();
        let sent = match self.events.lock() {
            Ok(events) => events.send(Event::Usage { reply }).is_ok(),
            Err(_) => false,
        };
        if !sent {
            return None;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        let mut total = Usage::sum_for(hash);
        for _ in 0..self.workers {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            total.add(&answers.recv_timeout(left).ok()?);
        }
        Some(total)
    }

    /// Asks the control loop to reload and waits for the outcome.
    fn reload(&self) -> Result<String, String> {
        let (reply, outcome) = mpsc::channel();
        let event = Event::Reload {
            reason: "admin POST /reload",
            reply: Some(reply),
        };
        let sent = match self.events.lock() {
            Ok(events) => events.send(event).is_ok(),
            Err(_) => false,
        };
        if !sent {
            return Err("control loop unavailable".to_owned());
        }
        outcome
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| Err("reload did not finish within 30 s".to_owned()))
    }
}

/// Serves admin requests until the process exits.
pub fn serve(listener: TcpListener, state: Arc<AdminState>, pages: Pages) {
    for stream in listener.incoming().flatten() {
        // One request per connection keeps this trivial; admin traffic is light.
        if let Err(e) = handle(stream, &state, pages) {
            tracing::warn!("admin request failed: {e}");
        }
    }
}

/// Which pages a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pages {
    /// Every admin page (`--admin`).
    All,
    /// Only `/metrics` and `/stats/prometheus`, read-only (`--metrics`): safe to expose.
    MetricsOnly,
}

fn handle(stream: TcpStream, state: &AdminState, pages: Pages) -> std::io::Result<()> {
    // One thread serves every admin request: a silent client must not block /ready.
    stream.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(std::time::Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the rest of the head; no admin endpoint reads a body yet.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    // A query string names no other page (Prometheus and load balancers add their own).
    let (path, query) = target
        .split_once('?')
        .map_or((target, None), |(p, q)| (p, Some(q)));
    let head = method == "HEAD";
    let metrics_page = matches!(path, "/metrics" | "/stats/prometheus");
    let path = if pages == Pages::MetricsOnly && !metrics_page {
        // Anything else on the read-only listener is unknown there.
        ""
    } else {
        path
    };
    let (status, content_type, body) = match (if head { "GET" } else { method }, path) {
        ("GET", "/ready") if state.draining.load(Ordering::Relaxed) => {
            (503, "text/plain", "draining\n".to_owned())
        }
        ("GET", "/ready") => (200, "text/plain", "ready\n".to_owned()),
        ("GET", "/healthz") => (200, "text/plain", "ok\n".to_owned()),
        ("GET", "/config") => (200, "application/json", config_json(state)),
        ("GET", "/clusters") => (200, "application/json", clusters_json(state)),
        ("GET", "/certs") => (200, "application/json", state.certs_json()),
        ("GET", "/logging") => state.logging(None),
        ("POST", "/logging") => state.logging(Some(query.unwrap_or(""))),
        // `/stats/prometheus` is the path Istio's scrape configuration uses.
        ("GET", "/metrics" | "/stats/prometheus") => metrics_text(state),
        ("POST", "/reload") => match state.reload() {
            Ok(hash) => (200, "text/plain", format!("serving snapshot {hash}\n")),
            Err(error) => (422, "text/plain", format!("reload refused: {error}\n")),
        },
        ("POST", "/drain") if state.drain() => (
            200,
            "text/plain",
            "draining: listeners closed, requests in flight finish; send SIGTERM to exit\n".into(),
        ),
        ("POST", "/drain") => (503, "text/plain", "control loop unavailable\n".into()),
        (_, path) if allowed(path).is_some() => (405, "text/plain", "method not allowed\n".into()),
        _ if pages == Pages::MetricsOnly => (
            404,
            "text/plain",
            "this listener serves only GET /metrics and /stats/prometheus\n".into(),
        ),
        _ => (
            404,
            "text/plain",
            "unknown admin path; try /ready, /healthz, /config, /clusters, /certs, /metrics, \
             /logging, POST /reload, POST /drain\n"
                .into(),
        ),
    };
    let allow = match (status, allowed(path)) {
        (405, Some(methods)) => format!("allow: {methods}\r\n"),
        _ => String::new(),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         {allow}connection: close\r\n\r\n",
        reason(status),
        body.len()
    )?;
    // HEAD gets the headers GET would, and no body.
    if !head {
        stream.write_all(body.as_bytes())?;
    }
    Ok(())
}

/// The methods admin `path` answers, for a 405's `Allow`; `None` for an unknown path.
fn allowed(path: &str) -> Option<&'static str> {
    match path {
        "/ready" | "/healthz" | "/config" | "/clusters" | "/certs" | "/metrics"
        | "/stats/prometheus" => Some("GET, HEAD"),
        "/reload" | "/drain" => Some("POST"),
        "/logging" => Some("GET, HEAD, POST"),
        _ => None,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        422 => "Unprocessable Content",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Refuses an admin address other hosts can reach unless the operator said so: its
/// `POST /drain` and `POST /reload` take no credentials.
pub fn check_address(admin: std::net::SocketAddr, allow_remote: bool) -> Result<(), String> {
    if admin.ip().to_canonical().is_loopback() || allow_remote {
        return Ok(());
    }
    Err(format!(
        "admin address {admin} is reachable from other hosts, and its POST /drain and \
         POST /reload take no credentials: listen on 127.0.0.1 (the default), or pass \
         --admin-allow-remote to expose it on purpose"
    ))
}

fn config_json(state: &AdminState) -> String {
    let routes = state.routes();
    let value = serde_json::json!({
        "hash": routes.hash,
        "io_driver": state.driver,
        "snapshot": routes.snapshot,
        "not_enforced": routes
            .not_enforced
            .iter()
            .map(|n| serde_json::json!({ "feature": n.feature, "used_by": n.used_by }))
            .collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Istio's request metrics summed over the cores, in the Prometheus text format; 503 when a
/// core did not answer in time.
fn metrics_text(state: &AdminState) -> (u16, &'static str, String) {
    let routes = state.routes();
    let Some(usage) = state.usage(&routes.hash) else {
        return (503, "text/plain", "a core did not answer in time\n".into());
    };
    let sidecar = metrics::Sidecar {
        snapshot: &routes.snapshot,
        workload: routes.own_workload(),
        identity: routes.identity.as_deref(),
    };
    let mut text = metrics::render(&usage.requests, &sidecar);
    let ejections = state.ejections();
    let proxy = metrics::Proxy {
        routes: &routes,
        usage: &usage,
        ejections: &ejections,
        reloads: (
            state.reloads_applied.load(Ordering::Relaxed),
            state.reloads_refused.load(Ordering::Relaxed),
        ),
        certificate_expiry: state.certificate_expiry(),
        access_log_failed: state.access_log_failed.load(Ordering::Relaxed),
        spans_failed: state.spans_failed.load(Ordering::Relaxed),
    };
    metrics::render_proxy(&mut text, &proxy);
    (200, "text/plain; version=0.0.4; charset=utf-8", text)
}

/// Every endpoint group (service, then its subsets) with its load balancer, its pool limits
/// and usage and, per endpoint, whether it is ejected, how many times it was, when the
/// ejection ends, requests in flight and idle pooled connections.
fn clusters_json(state: &AdminState) -> String {
    let routes = state.routes();
    let ejections = state.ejections();
    let usage = state.usage(&routes.hash);
    // Health decided for another route state (a reload just landed) shows nothing ejected.
    let health = (ejections.hash == routes.hash).then_some(&ejections.groups);
    let now = std::time::Instant::now();
    let wall = std::time::SystemTime::now();
    let clusters: Vec<_> = routes
        .groups()
        .iter()
        .enumerate()
        .map(|(g, group)| {
            let endpoints: Vec<_> = group
                .endpoints
                .iter()
                .enumerate()
                .map(|(e, address)| {
                    let h = health
                        .and_then(|h| h.get(g)?.get(e).copied())
                        .unwrap_or_default();
                    let used = usage
                        .as_ref()
                        .and_then(|u| u.groups.get(g)?.endpoints.get(e).copied());
                    let left = h.ejected_until.map(|u| u.saturating_duration_since(now));
                    let ends = left
                        .and_then(|l| (wall + l).duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as u64);
                    serde_json::json!({
                        "address": address.to_string(),
                        "health": if h.ejected_until.is_some() { "ejected" } else { "healthy" },
                        "times_ejected": h.times_ejected,
                        "ejection_ends_in_ms": left.map(|l| l.as_millis() as u64),
                        "ejection_ends_unix_ms": ends,
                        "requests_in_flight": used.map(|u| u.requests_in_flight),
                        "idle_connections": used.map(|u| u.idle_connections),
                    })
                })
                .collect();
            let used = usage.as_ref().and_then(|u| u.groups.get(g));
            let limits = &group.pool;
            serde_json::json!({
                "name": group.name,
                "load_balancer": group.balancer.kind_name(),
                "outlier_detection": group.outlier.is_some(),
                "pool": {
                    "max_connections": limits.max_connections,
                    "max_pending_requests": limits.max_pending_requests,
                    "max_requests_per_connection": limits.max_requests_per_connection,
                    "open_connections": used.and_then(|u| u.open_connections),
                    "pending_requests": used.map(|u| u.pending_requests),
                },
                "endpoints": endpoints,
            })
        })
        .collect();
    let mirrors = usage.as_ref().map(|u| {
        let m = u.mirrors;
        serde_json::json!({
            "in_flight": m.in_flight,
            "completed": m.completed,
            "failed": m.failed,
            "skipped_busy": m.skipped_busy,
            "skipped_body": m.skipped_body,
        })
    });
    let value =
        serde_json::json!({ "hash": routes.hash, "clusters": clusters, "mirrors": mirrors });
    serde_json::to_string_pretty(&value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_admin_addresses_pass_without_the_flag() {
        let at = |addr: &str| addr.parse().expect("address");
        assert!(check_address(at("127.0.0.1:15000"), false).is_ok());
        assert!(check_address(at("[::1]:15000"), false).is_ok());
        assert!(check_address(at("[::ffff:127.0.0.1]:15000"), false).is_ok());
        assert!(check_address(at("0.0.0.0:15000"), false).is_err());
        assert!(check_address(at("198.18.0.1:15000"), false).is_err());
        assert!(check_address(at("0.0.0.0:15000"), true).is_ok());
    }

    #[test]
    fn every_path_with_methods_is_listed_for_allow() {
        assert_eq!(allowed("/metrics"), Some("GET, HEAD"));
        assert_eq!(allowed("/reload"), Some("POST"));
        assert_eq!(allowed("/nope"), None);
    }
}

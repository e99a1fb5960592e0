//! meshload's engine: an open-loop constant-rate (or closed-loop `max`) HTTP/1.1 load generator with HDR latency histograms.
//!
//! Open loop: request `i` is due at `start + i / rate` and is dealt to connection `i % C`;
//! latency is charged from that intended time, so a stall is charged to every request
//! queued behind it (coordinated-omission correction). Each connection is a thread with a
//! blocking keep-alive socket and its own histogram; `run` merges them into a `Report`.

mod parse;
mod report;
mod schedule;
mod worker;

pub use parse::{parse_duration, parse_header, ParseError, Rate, Target};
pub use report::{Errors, Latency, Report};
pub use schedule::{charged_latency, Schedule};

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Connections used when none are given (fewer at tiny rates).
pub const DEFAULT_CONNECTIONS: usize = 16;

/// Response timeout used when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where to send `GET` requests.
    pub target: Target,
    /// Requests per second, or `Rate::Max` for closed loop.
    pub rate: Rate,
    /// How long to issue requests; outstanding responses are awaited afterwards.
    pub duration: Duration,
    /// Concurrent connections (one thread each); `None` picks `default_connections`.
    pub connections: Option<usize>,
    /// Extra request headers, sent in order; a `host` or `user-agent` here replaces ours.
    pub headers: Vec<(String, String)>,
    /// Response header whose values are counted (e.g. `x-upstream`).
    pub tally_header: Option<String>,
    /// Connect timeout and limit from send to complete response; default 5 s.
    pub timeout: Duration,
}

impl Config {
    /// A config with default connections, no extra headers, no tally and a 5 s timeout.
    pub fn new(target: Target, rate: Rate, duration: Duration) -> Self {
        Self {
            target,
            rate,
            duration,
            connections: None,
            headers: Vec::new(),
            tally_header: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The request bytes sent for every request.
    pub fn request_bytes(&self) -> Vec<u8> {
        let has = |name: &str| {
            self.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        let mut req = format!("GET {} HTTP/1.1\r\n", self.target.path_and_query);
        if !has("host") {
            req.push_str(&format!("host: {}\r\n", self.target.authority));
        }
        if !has("user-agent") {
            req.push_str("user-agent: meshload\r\n");
        }
        for (name, value) in &self.headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        req.into_bytes()
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The duration is zero.
    #[error("duration must be greater than zero")]
    ZeroDuration,
    /// The timeout is zero.
    #[error("timeout must be greater than zero")]
    ZeroTimeout,
    /// Zero connections were asked for.
    #[error("connections must be at least 1")]
    ZeroConnections,
    /// The target host did not resolve.
    #[error("resolve {host}: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// The target host resolved to no address.
    #[error("resolve {host}: no addresses")]
    NoAddress {
        /// The host name.
        host: String,
    },
    /// A connection thread could not be started.
    #[error("spawn connection thread: {source}")]
    Spawn {
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The connection count used when none is given: 16, but no more than the rate (per second) or the request count.
pub fn default_connections(rate: Rate, duration: Duration) -> usize {
    match rate {
        Rate::Max => DEFAULT_CONNECTIONS,
        Rate::PerSecond(r) => {
            let total = usize::try_from(Schedule::new(r, duration).total()).unwrap_or(usize::MAX);
            DEFAULT_CONNECTIONS.min(r.ceil() as usize).min(total).max(1)
        }
    }
}

/// Runs the load described by `config` and returns what it measured; errors on the wire are counted, not returned.
pub fn run(config: &Config) -> Result<Report, RunError> {
    if config.duration.is_zero() {
        return Err(RunError::ZeroDuration);
    }
    if config.timeout.is_zero() {
        return Err(RunError::ZeroTimeout);
    }
    let connections = config
        .connections
        .unwrap_or_else(|| default_connections(config.rate, config.duration));
    if connections == 0 {
        return Err(RunError::ZeroConnections);
    }
    let host = &config.target.host;
    let addrs: Vec<SocketAddr> = (host.as_str(), config.target.port)
        .to_socket_addrs()
        .map_err(|source| RunError::Resolve {
            host: host.clone(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(RunError::NoAddress { host: host.clone() });
    }
    let request = config.request_bytes();
    let tally = config.tally_header.as_deref();
    let plan = worker::Plan {
        addrs: &addrs,
        request: &request,
        timeout: config.timeout,
        tally,
        schedule: match config.rate {
            Rate::PerSecond(r) => Some(Schedule::new(r, config.duration)),
            Rate::Max => None,
        },
        connections,
        duration: config.duration,
    };
    let (start, stats) = run_workers(&plan)?;
    let elapsed = start.elapsed();
    Ok(merge(config, elapsed, stats))
}

/// Starts every worker, releases them together once all are connected, and collects their stats.
fn run_workers(plan: &worker::Plan<'_>) -> Result<(Instant, Vec<worker::Stats>), RunError> {
    thread::scope(|scope| {
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut gos = Vec::with_capacity(plan.connections);
        let mut handles = Vec::with_capacity(plan.connections);
        for k in 0..plan.connections {
            let (go_tx, go_rx) = mpsc::channel();
            let ready = ready_tx.clone();
            let handle = thread::Builder::new()
                .name(format!("meshload-{k}"))
                .spawn_scoped(scope, move || worker::run(k, plan, ready, go_rx))
                // Dropping `gos` on return releases the workers already started.
                .map_err(|source| RunError::Spawn { source })?;
            gos.push(go_tx);
            handles.push(handle);
        }
        drop(ready_tx);
        for _ in 0..plan.connections {
            if ready_rx.recv().is_err() {
                break;
            }
        }
        let start = Instant::now();
        for go in &gos {
            // A worker that already exited has nothing to start.
            let _ = go.send(start);
        }
        let stats = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect();
        Ok((start, stats))
    })
}

/// Merges per-worker stats into the report.
fn merge(config: &Config, elapsed: Duration, stats: Vec<worker::Stats>) -> Report {
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .expect("constant histogram bounds are valid");
    let mut errors = Errors::default();
    let mut status = BTreeMap::new();
    let mut tally = BTreeMap::new();
    let (mut requests, mut responses, mut unsent, mut reconnects) = (0, 0, 0, 0);
    for s in stats {
        latency.add(&s.latency_us).expect("histograms share bounds");
        errors.connect += s.errors.connect;
        errors.timeout += s.errors.timeout;
        errors.io += s.errors.io;
        errors.status_4xx += s.errors.status_4xx;
        errors.status_5xx += s.errors.status_5xx;
        for (code, &n) in s.status.iter().enumerate() {
            if n > 0 {
                let code = u16::try_from(code).expect("status table has 1000 entries");
                *status.entry(code).or_insert(0) += n;
            }
        }
        for (value, n) in s.tally {
            *tally.entry(value).or_insert(0) += n;
        }
        requests += s.requests;
        responses += s.responses;
        unsent += s.unsent;
        reconnects += s.connects.saturating_sub(1);
    }
    let duration_s = elapsed.as_secs_f64();
    Report {
        target_rate: match config.rate {
            Rate::PerSecond(r) => Some(r),
            Rate::Max => None,
        },
        achieved_rate: if duration_s > 0.0 {
            responses as f64 / duration_s
        } else {
            0.0
        },
        duration_s,
        requests,
        responses,
        unsent,
        errors,
        status,
        latency_ms: Latency::from_histogram(&latency),
        tally_header: config.tally_header.clone(),
        tally,
        reconnects,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_fewer_connections_at_tiny_rates() {
        let secs = Duration::from_secs;
        assert_eq!(default_connections(Rate::Max, secs(1)), 16);
        assert_eq!(default_connections(Rate::PerSecond(1000.0), secs(1)), 16);
        assert_eq!(default_connections(Rate::PerSecond(3.0), secs(10)), 3);
        assert_eq!(
            default_connections(Rate::PerSecond(100.0), Duration::from_millis(20)),
            2
        );
        assert_eq!(default_connections(Rate::PerSecond(0.1), secs(1)), 1);
    }

    #[test]
    fn builds_request_with_host_and_extra_headers() {
        let target: Target = "http://127.0.0.1:9/p?q=1".parse().expect("valid url");
        let mut config = Config::new(target, Rate::Max, Duration::from_secs(1));
        config.headers.push(("x-a".into(), "b".into()));
        let req = String::from_utf8(config.request_bytes()).expect("ascii");
        assert_eq!(
            req,
            "GET /p?q=1 HTTP/1.1\r\nhost: 127.0.0.1:9\r\nuser-agent: meshload\r\nx-a: b\r\n\r\n"
        );
        config.headers.push(("Host".into(), "svc".into()));
        let req = String::from_utf8(config.request_bytes()).expect("ascii");
        assert!(
            req.starts_with("GET /p?q=1 HTTP/1.1\r\nuser-agent: meshload\r\n"),
            "{req}"
        );
    }
}

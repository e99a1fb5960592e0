//! Istio's standard request metrics: `istio_requests_total`, and the histograms
//! `istio_request_duration_milliseconds`, `istio_request_bytes` and `istio_response_bytes`,
//! with Istio's default buckets, reported as `reporter="source"` by a caller's sidecar and
//! `reporter="destination"` by a callee's.
//!
//! Each core counts the requests it finished in its own [`CoreMetrics`], without locks or
//! allocation once a series exists: the label values a request brings (the service it went to,
//! the peer's identity) are interned per core, and everything the sidecar knows for all of its
//! requests (its own workload, which workload an identity belongs to) is added when admin
//! `/metrics` asks, which also sums the cores ([`render`]).

mod proxy;
mod render;
mod tcp;

use std::collections::BTreeMap;
use std::time::Duration;

use rustc_hash::FxHashMap;

pub use proxy::{render_proxy, Proxy};
pub use render::{render, Sidecar};
pub use tcp::{Connection, TcpLabels, TcpSeries};

/// Istio's default buckets for `istio_request_duration_milliseconds`.
const DURATION_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Istio's default buckets for `istio_request_bytes` and `istio_response_bytes`.
const SIZE_BUCKETS: [f64; 9] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8];

/// Which side of a call reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reporter {
    /// The caller's sidecar (outbound).
    Source,
    /// The callee's sidecar (inbound).
    Destination,
}

impl Reporter {
    fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
        }
    }
}

/// A finished request, as metrics see it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub reporter: Reporter,
    /// The service the request went to, by its snapshot name; `None` when it had none.
    pub service: Option<&'a str>,
    /// The other side's SPIFFE ID from mutual TLS: the caller's inbound, the server's outbound.
    pub peer: Option<&'a str>,
    /// Status sent to the client; 0 when none was.
    pub code: u16,
    /// `Some` for a gRPC call, with its gRPC status when one came.
    pub grpc: Option<Option<crate::grpc::Status>>,
    /// Envoy response flags, `-` without any.
    pub flags: &'static str,
    pub duration: Duration,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// What a series is told apart by, with strings interned per core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    reporter: Reporter,
    service: Option<u32>,
    peer: Option<u32>,
    code: u16,
    grpc: Option<Option<crate::grpc::Status>>,
    flags: &'static str,
}

/// Counts in buckets with upper bounds `BOUNDS` (not cumulative), their sum and count.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram<const N: usize> {
    buckets: [u64; N],
    sum: f64,
    count: u64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Self {
            buckets: [0; N],
            sum: 0.0,
            count: 0,
        }
    }
}

impl<const N: usize> Histogram<N> {
    fn observe(&mut self, value: f64, bounds: &[f64; N]) {
        // Past the last bound a value is counted only in `+Inf` (the count).
        let bucket = bounds.partition_point(|&bound| bound < value);
        if let Some(count) = self.buckets.get_mut(bucket) {
            *count += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    fn add(&mut self, other: &Self) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// One series' counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    requests: u64,
    duration_ms: Histogram<19>,
    request_bytes: Histogram<9>,
    response_bytes: Histogram<9>,
}

impl Series {
    fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        self.duration_ms.add(&other.duration_ms);
        self.request_bytes.add(&other.request_bytes);
        self.response_bytes.add(&other.response_bytes);
    }
}

/// Label values a core has seen, each stored once and named by its index.
#[derive(Debug, Default)]
struct Interned {
    ids: FxHashMap<Box<str>, u32>,
    strings: Vec<Box<str>>,
}

impl Interned {
    fn intern(&mut self, value: &str) -> u32 {
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(value.into());
        self.ids.insert(value.into(), id);
        id
    }

    fn is(&self, id: u32, value: &str) -> bool {
        self.strings.get(id as usize).is_some_and(|s| **s == *value)
    }

    fn text(&self, id: Option<u32>) -> Option<String> {
        id.and_then(|i| self.strings.get(i as usize))
            .map(|s| s.to_string())
    }
}

/// One core's request and connection metrics.
#[derive(Debug, Default)]
pub struct CoreMetrics {
    strings: Interned,
    /// Each series once, and where it is in `series` by its key.
    series: Vec<(Key, Series)>,
    index: FxHashMap<Key, usize>,
    /// The series the last request went to: most requests go where the one before went, and
    /// checking that costs less than hashing their strings.
    last: Option<usize>,
    /// Tries made again after a failed one.
    pub retries: u64,
    /// Requests finished, counted whether or not Istio's metrics are on.
    pub finished: u64,
    /// Requests refused by a pool limit or circuit breaker (`UO`), counted likewise.
    pub pool_overflows: u64,
    /// Requests refused by a local rate limit (`RL`), counted likewise.
    pub rate_limited: u64,
    tcp: tcp::CoreTcp,
}

impl CoreMetrics {
    /// Counts a relayed connection opened; the index returned names its series for
    /// [`CoreMetrics::count_tcp`] and [`CoreMetrics::close_tcp`].
    pub fn open_tcp(&mut self, connection: &Connection<'_>) -> usize {
        self.tcp.open(&mut self.strings, connection)
    }

    /// Adds bytes a relayed connection moved: `received` from its client, `sent` to it.
    pub fn count_tcp(&mut self, series: usize, received: u64, sent: u64) {
        if let Some(series) = self.tcp.series_mut(series) {
            series.received_bytes += received;
            series.sent_bytes += sent;
        }
    }

    /// Counts a relayed connection closed.
    pub fn close_tcp(&mut self, series: usize) {
        if let Some(series) = self.tcp.series_mut(series) {
            series.closed += 1;
        }
    }

    /// Counts a finished request with response flags `flags`, whether or not Istio's metrics
    /// are on.
    pub fn count_finished(&mut self, flags: &str) {
        self.finished += 1;
        match flags.split(',').next() {
            Some("UO") => self.pool_overflows += 1,
            Some("RL") => self.rate_limited += 1,
            _ => {}
        }
    }

    /// Counts a finished request.
    pub fn record(&mut self, request: &Request<'_>) {
        let index = match self.last.filter(|&i| self.is_series_of(i, request)) {
            Some(index) => index,
            None => self.find_or_add(request),
        };
        self.last = Some(index);
        let series = &mut self.series[index].1;
        series.requests += 1;
        let ms = request.duration.as_secs_f64() * 1000.0;
        series.duration_ms.observe(ms, &DURATION_BUCKETS_MS);
        series
            .request_bytes
            .observe(request.request_bytes as f64, &SIZE_BUCKETS);
        series
            .response_bytes
            .observe(request.response_bytes as f64, &SIZE_BUCKETS);
    }

    /// Whether series `index` is the one `request` counts in.
    fn is_series_of(&self, index: usize, request: &Request<'_>) -> bool {
        let same = |id: Option<u32>, value: Option<&str>| match (id, value) {
            (None, None) => true,
            (Some(id), Some(value)) => self.strings.is(id, value),
            _ => false,
        };
        self.series.get(index).is_some_and(|(key, _)| {
            key.reporter == request.reporter
                && key.code == request.code
                && key.grpc == request.grpc
                && key.flags == request.flags
                && same(key.service, request.service)
                && same(key.peer, request.peer)
        })
    }

    fn find_or_add(&mut self, request: &Request<'_>) -> usize {
        let key = Key {
            reporter: request.reporter,
            service: request.service.map(|s| self.strings.intern(s)),
            peer: request.peer.map(|p| self.strings.intern(p)),
            code: request.code,
            grpc: request.grpc,
            flags: request.flags,
        };
        *self.index.entry(key).or_insert_with(|| {
            self.series.push((key, Series::default()));
            self.series.len() - 1
        })
    }

    /// This core's series with their label values spelled out, for summing across cores.
    pub fn snapshot(&self) -> Metrics {
        let text = |id: Option<u32>| self.strings.text(id);
        let series = self.series.iter().map(|(key, series)| {
            let labels = Labels {
                reporter: key.reporter,
                service: text(key.service),
                peer: text(key.peer),
                code: key.code,
                grpc: key.grpc,
                flags: key.flags,
            };
            (labels, series.clone())
        });
        Metrics {
            series: series.collect(),
            tcp: self.tcp.snapshot(&self.strings).into_iter().collect(),
            retries: self.retries,
            finished: self.finished,
            pool_overflows: self.pool_overflows,
            rate_limited: self.rate_limited,
        }
    }
}

/// What a series is told apart by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Labels {
    pub reporter: Reporter,
    pub service: Option<String>,
    pub peer: Option<String>,
    pub code: u16,
    /// `Some` for a gRPC call, with its gRPC status when one came.
    pub grpc: Option<Option<crate::grpc::Status>>,
    pub flags: &'static str,
}

/// Series summed over cores, in label order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    series: BTreeMap<Labels, Series>,
    tcp: BTreeMap<TcpLabels, TcpSeries>,
    /// Tries made again after a failed one.
    pub retries: u64,
    /// Requests finished, counted whether or not Istio's metrics are on.
    pub finished: u64,
    /// Requests refused by a pool limit or circuit breaker (`UO`), counted likewise.
    pub pool_overflows: u64,
    /// Requests refused by a local rate limit (`RL`), counted likewise.
    pub rate_limited: u64,
}

impl Metrics {
    /// Adds another core's series.
    pub fn add(&mut self, other: &Self) {
        for (labels, series) in &other.series {
            self.series.entry(labels.clone()).or_default().add(series);
        }
        for (labels, series) in &other.tcp {
            self.tcp.entry(labels.clone()).or_default().add(series);
        }
        self.retries += other.retries;
        self.finished += other.finished;
        self.pool_overflows += other.pool_overflows;
        self.rate_limited += other.rate_limited;
    }
}

#[cfg(test)]
mod tests;

//! The summary of a meshload run: JSON-serializable and printable as a table.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Failed requests by kind; 4xx and 5xx responses still have their latency recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    /// Requests that could not get a connection (refused, unreachable, connect timeout).
    pub connect: u64,
    /// Requests whose response did not complete within the timeout.
    pub timeout: u64,
    /// Requests that failed mid-exchange: reset, EOF before the response ended, or a malformed response.
    pub io: u64,
    /// Responses with a 5xx status.
    pub status_5xx: u64,
    /// Responses with a 4xx status (counted apart; not part of `total`).
    pub status_4xx: u64,
}

impl Errors {
    /// Requests that count as errors in the summary: connect, timeout, io and 5xx.
    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.io + self.status_5xx
    }
}

/// Latency percentiles in milliseconds (all 0 when there were no responses).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest recorded latency.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Latency {
    /// Summarizes a histogram of microseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// What a run measured; `serde_json` renders it with the documented stable keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Requests per second asked for; `None` (JSON null) for a closed-loop `max` run.
    pub target_rate: Option<f64>,
    /// Responses received per second of actual elapsed time.
    pub achieved_rate: f64,
    /// Actual elapsed time, seconds, from the first scheduled send to the last response.
    pub duration_s: f64,
    /// Requests issued: each got a response or failed with a connect, timeout or io error.
    pub requests: u64,
    /// Complete responses received, any status.
    pub responses: u64,
    /// Scheduled requests never sent because the run fell behind and time was up.
    pub unsent: u64,
    /// Failures by kind.
    pub errors: Errors,
    /// Responses by status code.
    pub status: BTreeMap<u16, u64>,
    /// Latency of every response, in milliseconds.
    pub latency_ms: Latency,
    /// The response header tallied, if any.
    pub tally_header: Option<String>,
    /// Responses by the value of the `--tally-header` response header (`(missing)` when absent).
    pub tally: BTreeMap<String, u64>,
    /// Connections opened after a previous one on the same worker closed.
    pub reconnects: u64,
}

impl Report {
    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .expect("a report has only string keys and finite numbers")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.target_rate {
            Some(rate) => writeln!(f, "target rate    {rate:.2} req/s")?,
            None => writeln!(f, "target rate    max (closed loop)")?,
        }
        writeln!(f, "achieved rate  {:.2} req/s", self.achieved_rate)?;
        writeln!(f, "duration       {:.3} s", self.duration_s)?;
        writeln!(
            f,
            "requests       {} ({} responses, {} unsent, {} reconnects)",
            self.requests, self.responses, self.unsent, self.reconnects
        )?;
        let e = &self.errors;
        writeln!(
            f,
            "errors         {} (connect {}, timeout {}, io {}, 5xx {}); 4xx {}",
            e.total(),
            e.connect,
            e.timeout,
            e.io,
            e.status_5xx,
            e.status_4xx
        )?;
        let status: Vec<String> = self
            .status
            .iter()
            .map(|(c, n)| format!("{c}={n}"))
            .collect();
        let status = if status.is_empty() {
            "-".to_owned()
        } else {
            status.join(" ")
        };
        writeln!(f, "status         {status}")?;
        let l = &self.latency_ms;
        writeln!(
            f,
            "latency ms     {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "p50", "p90", "p99", "p99.9", "max", "mean"
        )?;
        writeln!(
            f,
            "               {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        )?;
        if let Some(header) = &self.tally_header {
            let total: u64 = self.tally.values().sum();
            writeln!(f, "tally {header}")?;
            for (value, n) in &self.tally {
                let pct = 100.0 * *n as f64 / total.max(1) as f64;
                writeln!(f, "  {value:<20} {n:>10} {pct:>7.2}%")?;
            }
        }
        Ok(())
    }
}

//! meshd's own metrics, under the prefix `ringmesh_`: what the sidecar serves and how it is
//! doing, beside Istio's request metrics. Everything here is read when admin `/metrics` asks
//! (from the cores' usage, the control thread's counters and the endpoint health), so nothing
//! is added to the request path for it.

use std::fmt::Write as _;

use super::render::escaped;
use crate::outlier::Ejections;
use crate::routing::RouteState;
use crate::usage::Usage;

/// What the sidecar's own metrics are read from.
#[derive(Debug)]
pub struct Proxy<'a> {
    pub routes: &'a RouteState,
    /// The cores' counts, summed (and each core's load).
    pub usage: &'a Usage,
    /// Endpoint health as the control thread last decided it.
    pub ejections: &'a Ejections,
    /// Reloads applied and refused since start.
    pub reloads: (u64, u64),
    /// Seconds until the workload certificate in force expires, if there is one.
    pub certificate_expiry: Option<i64>,
    /// Access log lines and spans the writers failed to deliver.
    pub access_log_failed: u64,
    pub spans_failed: u64,
}

/// Appends meshd's own metrics to `out`.
pub fn render_proxy(out: &mut String, proxy: &Proxy<'_>) {
    let usage = proxy.usage;
    family(
        out,
        "ringmesh_snapshot_info",
        "gauge",
        "The snapshot served, by its content hash.",
    );
    let _ = writeln!(
        out,
        "ringmesh_snapshot_info{{hash=\"{}\"}} 1",
        proxy.routes.hash
    );
    family(
        out,
        "ringmesh_reloads_total",
        "counter",
        "Snapshot reloads, applied or refused.",
    );
    let (applied, refused) = proxy.reloads;
    let _ = writeln!(
        out,
        "ringmesh_reloads_total{{result=\"applied\"}} {applied}"
    );
    let _ = writeln!(
        out,
        "ringmesh_reloads_total{{result=\"refused\"}} {refused}"
    );

    let per_core = [
        (
            "ringmesh_core_requests_total",
            "counter",
            "Requests finished, per core.",
        ),
        (
            "ringmesh_active_connections",
            "gauge",
            "Downstream connections open, per core.",
        ),
    ];
    for (i, (name, kind, help)) in per_core.into_iter().enumerate() {
        family(out, name, kind, help);
        for core in &usage.cores {
            let value = [core.requests, core.active_connections][i];
            let _ = writeln!(out, "{name}{{core=\"{}\"}} {value}", core.index);
        }
    }
    let counters = [
        (
            "ringmesh_retries_total",
            "Tries made again after a failed one.",
            usage.requests.retries,
        ),
        (
            "ringmesh_pool_overflows_total",
            "Requests refused by a pool limit or circuit breaker (UO).",
            usage.requests.pool_overflows,
        ),
        (
            "ringmesh_rate_limited_total",
            "Requests refused by a local rate limit (RL).",
            usage.requests.rate_limited,
        ),
        (
            "ringmesh_access_log_lines_total",
            "Access log lines rendered.",
            usage.access_log.lines,
        ),
        (
            "ringmesh_access_log_lines_dropped_total",
            "Access log lines lost: the writer fell behind, or a write failed.",
            usage.access_log.dropped + proxy.access_log_failed,
        ),
        (
            "ringmesh_spans_total",
            "Spans recorded for sampled requests.",
            usage.spans.lines,
        ),
        (
            "ringmesh_spans_dropped_total",
            "Spans lost: the exporter fell behind, or the collector did not take them.",
            usage.spans.dropped + proxy.spans_failed,
        ),
    ];
    for (name, help, value) in counters {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }

    family(
        out,
        "ringmesh_tls_handshakes_total",
        "counter",
        "Mutual TLS handshakes, by side and result.",
    );
    let a = &usage.authn;
    for (direction, result, value) in [
        ("inbound", "ok", a.inbound_handshakes),
        ("inbound", "failed", a.inbound_failures),
        ("inbound", "plaintext_refused", a.plaintext_refused),
        ("outbound", "ok", a.outbound_handshakes),
        ("outbound", "failed", a.outbound_failures),
        ("outbound", "wrong_identity", a.naming_failures),
    ] {
        let _ = writeln!(
            out,
            "ringmesh_tls_handshakes_total{{direction=\"{direction}\",result=\"{result}\"}} {value}"
        );
    }
    family(
        out,
        "ringmesh_requests_refused_total",
        "counter",
        "Requests refused for what their clients sent, by reason.",
    );
    let r = &usage.refusals;
    for (reason, value) in [
        ("malformed", r.malformed_requests),
        ("grpc_message_too_large", r.grpc_messages_too_large),
    ] {
        let _ = writeln!(
            out,
            "ringmesh_requests_refused_total{{reason=\"{reason}\"}} {value}"
        );
    }
    if let Some(seconds) = proxy.certificate_expiry {
        family(
            out,
            "ringmesh_certificate_expiry_seconds",
            "gauge",
            "Seconds until the workload certificate expires.",
        );
        let _ = writeln!(out, "ringmesh_certificate_expiry_seconds {seconds}");
    }
    ejections(out, proxy);
}

/// Per endpoint of a service or subset with outlier detection: ejected now (1 or 0) and how
/// many times it was.
fn ejections(out: &mut String, proxy: &Proxy<'_>) {
    // Health decided for another route state (a reload just landed) is not shown.
    if proxy.ejections.hash != proxy.routes.hash {
        return;
    }
    let mut ejected = String::new();
    let mut total = String::new();
    for (group, health) in proxy.routes.groups().iter().zip(&proxy.ejections.groups) {
        for (endpoint, h) in group.endpoints.iter().zip(health) {
            let labels = format!(
                "cluster=\"{}\",endpoint=\"{endpoint}\"",
                escaped(&group.name)
            );
            let now = u8::from(h.ejected_until.is_some());
            let _ = writeln!(ejected, "ringmesh_endpoint_ejected{{{labels}}} {now}");
            let _ = writeln!(
                total,
                "ringmesh_endpoint_ejections_total{{{labels}}} {}",
                h.times_ejected
            );
        }
    }
    if !ejected.is_empty() {
        family(
            out,
            "ringmesh_endpoint_ejected",
            "gauge",
            "Whether outlier detection has the endpoint ejected now.",
        );
        out.push_str(&ejected);
        family(
            out,
            "ringmesh_endpoint_ejections_total",
            "counter",
            "Times outlier detection ejected the endpoint.",
        );
        out.push_str(&total);
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

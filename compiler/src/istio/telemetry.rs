//! Istio `Telemetry` (`telemetry.istio.io`): access logging, trace sampling and metrics turned
//! on or off, for the mesh (the root namespace without a selector), a namespace, or the
//! workloads a selector picks, lowered to the `telemetry` model the DSL writes. What meshd
//! cannot serve (meshConfig providers, filters, one side only, per-metric overrides) is W0200
//! and listed under `not_enforced`.

use super::security::{target, Header};
use super::yaml::Node;
use super::Out;
use crate::ast;

/// The fields of a `Telemetry` spec (`targetRef(s)` is W0200 from [`target`]).
const SPEC_FIELDS: &[&str] = &[
    "selector",
    "targetRef",
    "targetRefs",
    "accessLogging",
    "tracing",
    "metrics",
];

/// Istio's default access log format (what its `envoy` provider writes) with the operators
/// meshd serves: Envoy's `%RESPONSE_CODE_DETAILS%`, `%CONNECTION_TERMINATION_DETAILS%`,
/// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`, `%UPSTREAM_LOCAL_ADDRESS%`,
/// `%DOWNSTREAM_LOCAL_ADDRESS%` and `%REQUESTED_SERVER_NAME%` are left out, and
/// `%UPSTREAM_CLUSTER_RAW%` is meshd's cluster name (docs/istio.md).
pub(super) const ISTIO_DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% \
     %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% \
     %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \
     \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \
     \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER% %DOWNSTREAM_REMOTE_ADDRESS% \
     %ROUTE_NAME%\n";

/// The provider every Istio installation has: Envoy's access log to stdout.
const ENVOY: &str = "envoy";

/// Lowers a `Telemetry`; `None` when it is skipped (it targets a gateway or service).
pub(super) fn lower(out: &mut Out<'_>, header: &Header, spec: &Node) -> Option<ast::Item> {
    out.map(spec, "spec")?;
    out.check_fields(spec, "spec", SPEC_FIELDS);
    let mut target = target(out, header, spec, "Telemetry")?;
    header.scope_selector_locally(&mut target);
    let mut telemetry = ast::Telemetry {
        span: header.kind_span,
        target: Some(Box::new((header.name.clone(), target))),
        ..ast::Telemetry::default()
    };
    if let Some(list) = spec.get("accessLogging") {
        for (i, entry) in out.seq(list, "spec.accessLogging")?.iter().enumerate() {
            access_logging(
                out,
                entry,
                &format!("spec.accessLogging[{i}]"),
                &mut telemetry,
            );
        }
    }
    if let Some(list) = spec.get("tracing") {
        for (i, entry) in out.seq(list, "spec.tracing")?.iter().enumerate() {
            tracing(out, entry, &format!("spec.tracing[{i}]"), &mut telemetry);
        }
    }
    if let Some(list) = spec.get("metrics") {
        for (i, entry) in out.seq(list, "spec.metrics")?.iter().enumerate() {
            metrics(out, entry, &format!("spec.metrics[{i}]"), &mut telemetry);
        }
    }
    Some(ast::Item::Telemetry(telemetry))
}

/// Whether the entry's `providers` name `served` (or none, Istio's default provider). Any
/// other name is W0200 with `consequence`: for access logs and tracing they are meshConfig's
/// extension providers, which meshc does not read.
fn provider_served(
    out: &mut Out<'_>,
    entry: &Node,
    path: &str,
    served: &str,
    consequence: &str,
) -> bool {
    let Some(providers) = entry.get("providers") else {
        return true;
    };
    let Some(list) = out.seq(providers, &format!("{path}.providers")) else {
        return false;
    };
    let mut found = list.is_empty();
    for (i, provider) in list.iter().enumerate() {
        let name_path = format!("{path}.providers[{i}].name");
        match provider.get("name").and_then(|n| out.str(n, &name_path)) {
            Some(name) if name == served => found = true,
            Some(_) => out.unsupported(&format!("{path}.providers[{i}]"), provider, consequence),
            None => {}
        }
    }
    found
}

/// One `accessLogging` entry: on with Istio's default format (`envoy`), or off (`disabled`).
fn access_logging(out: &mut Out<'_>, entry: &Node, path: &str, t: &mut ast::Telemetry) {
    if out.map(entry, path).is_none() {
        return;
    }
    out.fields(
        entry,
        path,
        &["providers", "disabled", "match"],
        &["filter"],
        "every request is logged",
    );
    if let Some(mode) = entry.get("match").and_then(|m| m.get("mode")) {
        if mode.as_str().is_some_and(|m| m != "CLIENT_AND_SERVER") {
            out.unsupported(
                &format!("{path}.match.mode"),
                mode,
                "requests are logged on both sides",
            );
        }
    }
    let disabled = entry
        .get("disabled")
        .and_then(|d| out.bool(d, &format!("{path}.disabled")));
    if disabled == Some(true) {
        t.access_log = Some(ast::AccessLog::Off);
        return;
    }
    let consequence = "access logging with meshConfig's extension providers is not served";
    if provider_served(out, entry, path, ENVOY, consequence) {
        t.access_log = Some(ast::AccessLog::Text(ast::Str {
            value: ISTIO_DEFAULT_FORMAT.to_owned(),
            span: entry.span,
        }));
    }
}

/// One `tracing` entry: its sampling percentage (spans go to meshd's `--trace-collector`).
fn tracing(out: &mut Out<'_>, entry: &Node, path: &str, t: &mut ast::Telemetry) {
    if out.map(entry, path).is_none() {
        return;
    }
    out.fields(
        entry,
        path,
        &[
            "providers",
            "randomSamplingPercentage",
            "disableSpanReporting",
            "match",
        ],
        &[
            "customTags",
            "useRequestIdForTraceSampling",
            "enableIstioTags",
        ],
        "it is left out of the spans",
    );
    let consequence = "spans go to meshd's --trace-collector, not meshConfig's providers";
    provider_served(out, entry, path, ENVOY, consequence);
    if let Some(node) = entry.get("randomSamplingPercentage") {
        t.trace_sampling = out.percent(node, &format!("{path}.randomSamplingPercentage"));
    }
    let disable = entry.get("disableSpanReporting");
    if disable.and_then(|d| out.bool(d, &format!("{path}.disableSpanReporting"))) == Some(true) {
        t.trace_sampling = Some(ast::Percent {
            per_million: 0,
            span: entry.span,
        });
    }
}

/// One `metrics` entry: Istio's metrics on, or off with an override without `match` (every
/// metric) that is `disabled`. Per-metric overrides and tag overrides are W0200.
fn metrics(out: &mut Out<'_>, entry: &Node, path: &str, t: &mut ast::Telemetry) {
    if out.map(entry, path).is_none() {
        return;
    }
    out.fields(
        entry,
        path,
        &["providers", "overrides"],
        &["reportingInterval"],
        "meshd's metrics are read at each scrape",
    );
    let consequence = "meshd serves Istio's metrics to Prometheus only (admin /metrics)";
    if !provider_served(out, entry, path, "prometheus", consequence) {
        return;
    }
    let Some(overrides) = entry.get("overrides") else {
        t.metrics = Some(true);
        return;
    };
    for (i, o) in out
        .seq(overrides, &format!("{path}.overrides"))
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let o_path = format!("{path}.overrides[{i}]");
        if out.map(o, &o_path).is_none() {
            continue;
        }
        out.fields(
            o,
            &o_path,
            &["match", "disabled"],
            &["tagOverrides"],
            "Istio's standard labels are kept",
        );
        let every_metric = o
            .get("match")
            .and_then(|m| m.get("metric"))
            .is_none_or(|m| m.as_str() == Some("ALL_METRICS"));
        let both_sides = o
            .get("match")
            .and_then(|m| m.get("mode"))
            .is_none_or(|m| m.as_str() == Some("CLIENT_AND_SERVER"));
        match o
            .get("disabled")
            .and_then(|d| out.bool(d, &format!("{o_path}.disabled")))
        {
            Some(disabled) if every_metric && both_sides => t.metrics = Some(!disabled),
            Some(_) => out.unsupported(
                &format!("{o_path}.match"),
                o.get("match").unwrap_or(o),
                "only every metric on both sides can be turned off",
            ),
            None => {}
        }
    }
}

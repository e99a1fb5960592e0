//! The Prometheus text exposition of the summed series, with Istio's standard labels. What a
//! core does not record per request (this sidecar's own workload and identity, which workload
//! a peer identity belongs to, a service's namespace) is filled in here, from the snapshot; a
//! value the sidecar cannot know is `unknown`, as in Istio.

use std::fmt::Write as _;

use super::{
    Histogram, Labels, Metrics, Reporter, Series, TcpLabels, DURATION_BUCKETS_MS, SIZE_BUCKETS,
};

const UNKNOWN: &str = "unknown";

/// What the sidecar knows of itself, for the labels of its side of every call.
#[derive(Clone, Copy, Debug)]
pub struct Sidecar<'a> {
    /// The snapshot it serves: service namespaces, and the workloads identities belong to.
    pub snapshot: &'a spec::Snapshot,
    /// The workload it serves, if any.
    pub workload: Option<&'a spec::Workload>,
    /// The SPIFFE ID it presents (its certificate's), if any.
    pub identity: Option<&'a str>,
}

/// One side of a call, as labels.
struct Peer<'a> {
    workload: &'a str,
    namespace: &'a str,
    principal: &'a str,
    app: &'a str,
    version: &'a str,
}

impl<'a> Peer<'a> {
    fn of(workload: Option<&'a spec::Workload>, principal: Option<&'a str>) -> Self {
        // Istio's canonical names: `app` and `version`, else the recommended Kubernetes labels.
        let label = |keys: [&str; 2]| {
            let labels = workload.map(|w| &w.labels);
            keys.iter()
                .find_map(|k| labels?.get(*k))
                .map_or(UNKNOWN, String::as_str)
        };
        Self {
            workload: workload.map_or(UNKNOWN, |w| &w.name),
            namespace: workload.map_or(UNKNOWN, |w| &w.namespace),
            principal: principal.unwrap_or(UNKNOWN),
            app: label(["app", "app.kubernetes.io/name"]),
            version: label(["version", "app.kubernetes.io/version"]),
        }
    }
}

impl Sidecar<'_> {
    fn own(&self) -> Peer<'_> {
        Peer::of(self.workload, self.identity)
    }

    /// The other side, known by its SPIFFE ID: its workload (and that workload's `app` and
    /// `version`) when exactly one in the snapshot has that identity.
    fn other<'p>(&'p self, principal: Option<&'p str>) -> Peer<'p> {
        let mut owners = self
            .snapshot
            .workloads
            .iter()
            .filter(|w| principal.is_some() && w.identity.as_deref() == principal);
        let owner = match (owners.next(), owners.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        };
        Peer::of(owner, principal)
    }

    /// `destination_service`, `destination_service_name` and `_namespace` of a service.
    fn service(&self, name: Option<&str>) -> (String, String, String) {
        let Some(name) = name else {
            return (UNKNOWN.into(), UNKNOWN.into(), UNKNOWN.into());
        };
        if let Some((short, namespace)) = spec::host::cluster_service(name) {
            return (name.into(), short.into(), namespace.into());
        }
        let namespace = self
            .snapshot
            .service(name)
            .map_or(spec::host::DEFAULT_NAMESPACE, |(_, s)| &s.namespace);
        let fqdn = spec::host::qualify(name, namespace);
        (fqdn, name.into(), namespace.into())
    }

    /// Every Istio standard label of a request series, as `name="value",...`.
    fn labels(&self, labels: &Labels) -> String {
        let code = labels.code.to_string();
        let call = Call {
            reporter: labels.reporter,
            service: labels.service.as_deref(),
            peer: labels.peer.as_deref(),
            flags: labels.flags,
        };
        let grpc_status = labels.grpc.flatten().map(|s| s.to_string());
        let http = Http {
            code: &code,
            grpc: labels.grpc.is_some(),
            grpc_status: grpc_status.as_deref().unwrap_or(""),
        };
        self.standard_labels(&call, Some(&http))
    }

    /// Every Istio standard label of a TCP series: `request_protocol` is `tcp`, and there is no
    /// response code.
    fn tcp_labels(&self, labels: &TcpLabels) -> String {
        let call = Call {
            reporter: labels.reporter,
            service: labels.service.as_deref(),
            peer: labels.peer.as_deref(),
            flags: labels.flags,
        };
        self.standard_labels(&call, None)
    }

    /// The labels of a call; `http` is an HTTP request's, `None` for TCP.
    fn standard_labels(&self, call: &Call<'_>, http: Option<&Http<'_>>) -> String {
        let peer = call.peer;
        let (source, destination) = match call.reporter {
            Reporter::Source => (self.own(), self.other(peer)),
            Reporter::Destination => (self.other(peer), self.own()),
        };
        let security = match (call.reporter, peer) {
            (Reporter::Source, _) => UNKNOWN,
            (Reporter::Destination, Some(_)) => "mutual_tls",
            (Reporter::Destination, None) => "none",
        };
        let (service, service_name, service_namespace) = self.service(call.service);
        let protocol = match http {
            Some(Http { grpc: true, .. }) => "grpc",
            Some(_) => "http",
            None => "tcp",
        };
        let common = [
            ("reporter", call.reporter.as_str()),
            ("source_workload", source.workload),
            ("source_workload_namespace", source.namespace),
            ("source_principal", source.principal),
            ("source_app", source.app),
            ("source_version", source.version),
            ("destination_workload", destination.workload),
            ("destination_workload_namespace", destination.namespace),
            ("destination_principal", destination.principal),
            ("destination_app", destination.app),
            ("destination_version", destination.version),
            ("destination_service", &service),
            ("destination_service_name", &service_name),
            ("destination_service_namespace", &service_namespace),
            ("request_protocol", protocol),
        ];
        let grpc = http.map(|h| [("grpc_response_status", h.grpc_status)]);
        let http = http.map(|h| [("response_code", h.code)]);
        let tail = [
            ("response_flags", call.flags),
            ("connection_security_policy", security),
        ];
        let pairs = common
            .iter()
            .chain(http.iter().flatten())
            .chain(tail[..1].iter())
            .chain(grpc.iter().flatten())
            .chain(tail[1..].iter());
        let mut out = String::new();
        for (i, (name, value)) in pairs.enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{name}=\"{}\"", escaped(value));
        }
        out
    }
}

/// An HTTP request's labels beyond a connection's.
struct Http<'a> {
    /// The response code.
    code: &'a str,
    /// The request is a gRPC call (`request_protocol="grpc"`).
    grpc: bool,
    /// Its gRPC status, empty when none came (or it is no call).
    grpc_status: &'a str,
}

/// One call's identifying labels, request or connection.
struct Call<'a> {
    reporter: Reporter,
    service: Option<&'a str>,
    peer: Option<&'a str>,
    flags: &'static str,
}

/// `metrics` in the Prometheus text format (version 0.0.4).
pub fn render(metrics: &Metrics, sidecar: &Sidecar<'_>) -> String {
    let series: Vec<(String, &Series)> = metrics
        .series
        .iter()
        .map(|(labels, series)| (sidecar.labels(labels), series))
        .collect();
    let mut out = String::new();
    out.push_str("# HELP istio_requests_total Requests, by Istio's standard labels.\n");
    out.push_str("# TYPE istio_requests_total counter\n");
    for (labels, s) in &series {
        let _ = writeln!(out, "istio_requests_total{{{labels}}} {}", s.requests);
    }
    histogram(
        &mut out,
        ("istio_request_duration_milliseconds", "Request durations"),
        &DURATION_BUCKETS_MS,
        series.iter().map(|(l, s)| (l.as_str(), &s.duration_ms)),
    );
    histogram(
        &mut out,
        ("istio_request_bytes", "Request body sizes"),
        &SIZE_BUCKETS,
        series.iter().map(|(l, s)| (l.as_str(), &s.request_bytes)),
    );
    histogram(
        &mut out,
        ("istio_response_bytes", "Response body sizes"),
        &SIZE_BUCKETS,
        series.iter().map(|(l, s)| (l.as_str(), &s.response_bytes)),
    );
    tcp(&mut out, metrics, sidecar);
    out
}

/// A TCP counter family: its name, its help, and its value in a series.
type Family = (&'static str, &'static str, fn(&super::TcpSeries) -> u64);

/// The four TCP counter families.
fn tcp(out: &mut String, metrics: &Metrics, sidecar: &Sidecar<'_>) {
    let series: Vec<(String, &super::TcpSeries)> = metrics
        .tcp
        .iter()
        .map(|(labels, series)| (sidecar.tcp_labels(labels), series))
        .collect();
    let families: [Family; 4] = [
        (
            "istio_tcp_connections_opened_total",
            "TCP connections opened",
            |s| s.opened,
        ),
        (
            "istio_tcp_connections_closed_total",
            "TCP connections closed",
            |s| s.closed,
        ),
        (
            "istio_tcp_received_bytes_total",
            "Bytes received from clients over TCP",
            |s| s.received_bytes,
        ),
        (
            "istio_tcp_sent_bytes_total",
            "Bytes sent to clients over TCP",
            |s| s.sent_bytes,
        ),
    ];
    for (name, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}, by Istio's standard labels.");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (labels, s) in &series {
            let _ = writeln!(out, "{name}{{{labels}}} {}", value(s));
        }
    }
}

/// One histogram family: cumulative buckets, `+Inf`, sum and count per series.
fn histogram<'a, const N: usize>(
    out: &mut String,
    (name, help): (&str, &str),
    bounds: &[f64; N],
    series: impl Iterator<Item = (&'a str, &'a Histogram<N>)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}, by Istio's standard labels.");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (labels, h) in series {
        let mut cumulative = 0;
        for (bound, count) in bounds.iter().zip(&h.buckets) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
    }
}

/// A label value with `\`, `"` and line feeds escaped, as the text format requires.
pub(super) fn escaped(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

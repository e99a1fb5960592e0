use std::time::Duration;

use super::*;

fn request(code: u16, millis: u64) -> Request<'static> {
    Request {
        reporter: Reporter::Source,
        service: Some("reviews.default.svc.cluster.local"),
        peer: Some("spiffe://cluster.local/ns/default/sa/reviews"),
        code,
        grpc: None,
        flags: "-",
        duration: Duration::from_millis(millis),
        request_bytes: 0,
        response_bytes: 150,
    }
}

fn snapshot() -> spec::Snapshot {
    spec::Snapshot::default()
}

fn rendered(metrics: &Metrics) -> String {
    let snapshot = snapshot();
    let sidecar = Sidecar {
        snapshot: &snapshot,
        workload: None,
        identity: Some("spiffe://cluster.local/ns/default/sa/productpage"),
    };
    render(metrics, &sidecar)
}

/// The value of the first sample line starting with `prefix` and holding every `part`.
fn sample(text: &str, prefix: &str, parts: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix) && parts.iter().all(|p| l.contains(p)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn one_series_per_label_set_with_cumulative_buckets() {
    let mut core = CoreMetrics::default();
    for (code, millis) in [(200, 3), (200, 40), (200, 40), (503, 7000)] {
        core.record(&request(code, millis));
    }
    let text = rendered(&core.snapshot());
    let ok = ["response_code=\"200\""];
    assert_eq!(sample(&text, "istio_requests_total{", &ok), Some(3.0));
    let failed = ["response_code=\"503\""];
    assert_eq!(sample(&text, "istio_requests_total{", &failed), Some(1.0));
    let bucket = |le: &str| {
        let le = format!("le=\"{le}\"");
        sample(
            &text,
            "istio_request_duration_milliseconds_bucket{",
            &["response_code=\"200\"", &le],
        )
    };
    assert_eq!(bucket("1"), Some(0.0));
    assert_eq!(bucket("5"), Some(1.0));
    assert_eq!(bucket("50"), Some(3.0), "buckets are cumulative");
    assert_eq!(bucket("+Inf"), Some(3.0));
    let count = sample(&text, "istio_request_duration_milliseconds_count{", &ok);
    assert_eq!(count, Some(3.0), "_count equals the requests");
    let sum = sample(&text, "istio_request_duration_milliseconds_sum{", &ok);
    assert_eq!(sum, Some(83.0));
    let size = sample(
        &text,
        "istio_response_bytes_bucket{",
        &["le=\"1000\"", ok[0]],
    );
    assert_eq!(size, Some(3.0));
}

#[test]
fn cores_sum_into_one_series() {
    let (mut a, mut b) = (CoreMetrics::default(), CoreMetrics::default());
    a.record(&request(200, 1));
    b.record(&request(200, 1));
    b.record(&request(200, 1));
    let mut total = Metrics::default();
    total.add(&a.snapshot());
    total.add(&b.snapshot());
    let text = rendered(&total);
    assert_eq!(sample(&text, "istio_requests_total{", &[]), Some(3.0));
    assert_eq!(text.matches("istio_requests_total{").count(), 1);
}

#[test]
fn source_and_destination_sides_get_istio_labels() {
    let mut core = CoreMetrics::default();
    core.record(&request(200, 1));
    core.record(&Request {
        reporter: Reporter::Destination,
        peer: None,
        flags: "RBAC",
        code: 403,
        ..request(403, 1)
    });
    let text = rendered(&core.snapshot());
    let source = text
        .lines()
        .find(|l| l.starts_with("istio_requests_total{reporter=\"source\""))
        .expect("source series");
    for label in [
        "source_principal=\"spiffe://cluster.local/ns/default/sa/productpage\"",
        "destination_principal=\"spiffe://cluster.local/ns/default/sa/reviews\"",
        "destination_service=\"reviews.default.svc.cluster.local\"",
        "destination_service_name=\"reviews\"",
        "destination_service_namespace=\"default\"",
        "destination_workload=\"unknown\"",
        "request_protocol=\"http\"",
        "response_flags=\"-\"",
        "connection_security_policy=\"unknown\"",
    ] {
        assert!(source.contains(label), "{label} in {source}");
    }
    let destination = text
        .lines()
        .find(|l| l.starts_with("istio_requests_total{reporter=\"destination\""))
        .expect("destination series");
    for label in [
        "source_principal=\"unknown\"",
        "destination_principal=\"spiffe://cluster.local/ns/default/sa/productpage\"",
        "response_code=\"403\"",
        "response_flags=\"RBAC\"",
        "connection_security_policy=\"none\"",
    ] {
        assert!(destination.contains(label), "{label} in {destination}");
    }
}

#[test]
fn app_and_version_come_from_the_workloads_labels() {
    let workload = |name: &str, identity: &str, labels: &[(&str, &str)]| spec::Workload {
        name: name.into(),
        namespace: "default".into(),
        identity: Some(identity.into()),
        inbound: Vec::new(),
        outbound: Vec::new(),
        serves: Vec::new(),
        authorization: Vec::new(),
        jwt: Vec::new(),
        telemetry: spec::Telemetry::default(),
        outbound_traffic: Default::default(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    };
    let snapshot = spec::Snapshot {
        workloads: vec![
            workload(
                "productpage-v1",
                "spiffe://cluster.local/ns/default/sa/productpage",
                &[("app", "productpage"), ("version", "v1")],
            ),
            workload(
                "reviews-v2",
                "spiffe://cluster.local/ns/default/sa/reviews",
                &[
                    ("app.kubernetes.io/name", "reviews"),
                    ("app.kubernetes.io/version", "2"),
                ],
            ),
        ],
        ..spec::Snapshot::default()
    };
    let sidecar = Sidecar {
        snapshot: &snapshot,
        workload: snapshot.workloads.first(),
        identity: Some("spiffe://cluster.local/ns/default/sa/productpage"),
    };
    let mut core = CoreMetrics::default();
    core.record(&request(200, 1));
    let text = render(&core.snapshot(), &sidecar);
    for label in [
        "source_workload=\"productpage-v1\"",
        "source_app=\"productpage\"",
        "source_version=\"v1\"",
        "destination_workload=\"reviews-v2\"",
        "destination_app=\"reviews\"",
        "destination_version=\"2\"",
    ] {
        assert!(text.contains(label), "{label} in {text}");
    }
}

#[test]
fn label_values_are_escaped() {
    let mut core = CoreMetrics::default();
    core.record(&Request {
        service: Some("we\"ird\\name"),
        ..request(200, 1)
    });
    let text = rendered(&core.snapshot());
    assert!(
        text.contains("destination_service_name=\"we\\\"ird\\\\name\""),
        "{text}"
    );
}

#[test]
fn relayed_connections_count_opened_closed_and_bytes_each_way() {
    let mut core = CoreMetrics::default();
    let connection = Connection {
        reporter: Reporter::Destination,
        service: Some("db.default.svc.cluster.local"),
        peer: Some("spiffe://cluster.local/ns/default/sa/app"),
        flags: "-",
    };
    let first = core.open_tcp(&connection);
    let second = core.open_tcp(&connection);
    assert_eq!(first, second, "one series per label set");
    core.count_tcp(first, 10, 200);
    core.count_tcp(second, 5, 0);
    core.close_tcp(first);
    let text = rendered(&core.snapshot());
    let labels = [
        "reporter=\"destination\"",
        "request_protocol=\"tcp\"",
        "source_principal=\"spiffe://cluster.local/ns/default/sa/app\"",
        "connection_security_policy=\"mutual_tls\"",
    ];
    let value = |name: &str| sample(&text, &format!("{name}{{"), &labels);
    assert_eq!(value("istio_tcp_connections_opened_total"), Some(2.0));
    assert_eq!(value("istio_tcp_connections_closed_total"), Some(1.0));
    assert_eq!(value("istio_tcp_received_bytes_total"), Some(15.0));
    assert_eq!(value("istio_tcp_sent_bytes_total"), Some(200.0));
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("istio_tcp") && l.contains("response_code")),
        "TCP series have no response code"
    );
}

#[test]
fn a_grpc_call_is_labelled_with_its_protocol_and_status() {
    let mut core = CoreMetrics::default();
    core.record(&Request {
        grpc: Some(Some(crate::grpc::UNAVAILABLE)),
        ..request(200, 1)
    });
    core.record(&Request {
        grpc: Some(None),
        ..request(200, 1)
    });
    core.record(&request(200, 1));
    let text = rendered(&core.snapshot());
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .collect();
    let with = |needles: &[&str]| {
        series
            .iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    };
    let grpc = "request_protocol=\"grpc\"";
    assert_eq!(with(&[grpc, "grpc_response_status=\"14\""]), 1, "{text}");
    assert_eq!(with(&[grpc, "grpc_response_status=\"\""]), 1, "{text}");
    let http = "request_protocol=\"http\"";
    assert_eq!(with(&[http, "grpc_response_status=\"\""]), 1, "{text}");
}

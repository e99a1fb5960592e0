//! Istio's `Telemetry` served: a mesh-wide `accessLogging` with the `envoy` provider writes
//! Istio's default text format, and a workload's `metrics` override turns its Istio metrics
//! off while the rest of the mesh keeps them.

use super::*;

fn mesh(app: &Upstream) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  endpoints: [{{address: {ip}, ports: {{http: {port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: curl, namespace: default}}
spec: {{address: 127.0.0.1, labels: {{app: curl}}}}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: mesh-default, namespace: istio-system}}
spec:
  accessLogging:
  - providers: [{{name: envoy}}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: no-metrics-for-curl, namespace: default}}
spec:
  selector: {{matchLabels: {{app: curl}}}}
  metrics:
  - providers: [{{name: prometheus}}]
    overrides:
    - disabled: true
"#,
        ip = app.addr().ip(),
        port = app.addr().port()
    )
}

fn scrape(admin: SocketAddr) -> String {
    Client::connect(admin)
        .and_then(|mut c| c.get("admin", "/metrics", &[]))
        .map(|r| r.text())
        .unwrap_or_default()
}

fn istio_access_logging_writes_istios_default_format(driver: &str) {
    let app = Upstream::start("reviews-v1").unwrap();
    let scratch = Scratch::new();
    let snapshot = compile_yaml(&scratch, "mesh", &[("mesh.yaml", &mesh(&app))]);
    let log = scratch.path().join("access.log");
    let args = ["--cores", "1", "--io-driver", driver, "--access-log"];
    let mut args = args.to_vec();
    args.push(log.to_str().unwrap());
    let caller = Sidecar::start(&snapshot, &args).unwrap();
    let mut client = Client::connect(caller.outbound).unwrap();
    let sent = [("user-agent", "curl/8.11"), ("x-request-id", "r-7")];
    assert_eq!(
        client.get("reviews:9080", "/r/1", &sent).unwrap().status,
        200
    );
    let mut line = String::new();
    wait_until(|| {
        line = std::fs::read_to_string(&log).unwrap_or_default();
        !line.is_empty()
    });
    let upstream = app.addr().to_string();
    // [START_TIME] "METHOD PATH PROTOCOL" CODE FLAGS RECEIVED SENT DURATION SERVICE_TIME
    // "X-FORWARDED-FOR" "USER-AGENT" "X-REQUEST-ID" "AUTHORITY" "UPSTREAM_HOST" CLUSTER
    // DOWNSTREAM ROUTE
    assert!(line.starts_with('['), "{line}");
    let after_time = line.split_once("] ").map_or("", |(_, rest)| rest);
    assert!(
        after_time.starts_with("\"GET /r/1 HTTP/1.1\" 200 - 0 "),
        "{line}"
    );
    let expected = format!(
        "\"-\" \"curl/8.11\" \"r-7\" \"reviews:9080\" \"{upstream}\" \
         reviews.default.svc.cluster.local 127.0.0.1:"
    );
    assert!(line.contains(&expected), "{line}");
    assert!(
        line.ends_with(" default\n"),
        "the VirtualService-less route: {line}"
    );

    // The same mesh for workload `curl`: its metrics are off, its log is on.
    let scratch_curl = Scratch::new();
    let log = scratch_curl.path().join("access.log");
    let curl_args = [
        "--cores",
        "1",
        "--io-driver",
        driver,
        "--workload",
        "curl",
        "--access-log",
        log.to_str().unwrap(),
    ];
    let curl = Sidecar::start(&snapshot, &curl_args).unwrap();
    let mut client = Client::connect(curl.outbound).unwrap();
    assert_eq!(client.get("reviews", "/", &[]).unwrap().status, 200);
    wait_until(|| scrape(curl.admin).contains("ringmesh_core_requests_total{core=\"0\"} 1\n"));
    let text = scrape(curl.admin);
    assert!(!text.contains("istio_requests_total{"), "{text}");
    wait_until(|| {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("\"GET / HTTP/1.1\" 200"))
    });
    // The workload-less caller keeps them.
    assert!(scrape(caller.admin).contains("istio_requests_total{"));
}

on_both_drivers!(istio_access_logging_writes_istios_default_format);

//! Request ids and distributed tracing through two real meshd sidecars: app → caller sidecar
//! → callee sidecar → upstream. The upstream sees the app's trace with the callee's span as
//! its parent; a collector started here receives the client span and the server span, as
//! Zipkin v2 and as OTLP/HTTP JSON; a collector that never answers costs no request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use ringmesh_tests::*;

/// An HTTP collector on loopback recording every POST body it accepts (202), per path.
struct Collector {
    addr: SocketAddr,
    posts: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
}

impl Collector {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let posts = Arc::new(Mutex::new(Vec::new()));
        let recorded = posts.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                if let Some(post) = read_post(conn) {
                    recorded.lock().unwrap().push(post);
                }
            }
        });
        Self { addr, posts }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every span posted so far, in the collector's JSON, with the path it came on.
    fn spans(&self) -> Vec<(String, serde_json::Value)> {
        let posts = self.posts.lock().unwrap();
        let mut spans = Vec::new();
        for (path, body) in posts.iter() {
            let listed = if path == "/v1/traces" {
                body["resourceSpans"][0]["scopeSpans"][0]["spans"].clone()
            } else {
                body.clone()
            };
            for span in listed.as_array().cloned().unwrap_or_default() {
                spans.push((path.clone(), span));
            }
        }
        spans
    }
}

fn read_post(mut conn: TcpStream) -> Option<(String, serde_json::Value)> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    conn.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
        .ok()?;
    Some((path, serde_json::from_slice(&body).ok()?))
}

/// A caller sidecar (workload productpage) and a callee sidecar (workload reviews, in front
/// of `app`), both posting spans to `collector_url`, with `telemetry` as the mesh default.
struct Pair {
    caller: Sidecar,
    _callee: Sidecar,
    _scratch: Scratch,
}

fn pair(driver: &str, app: &Upstream, telemetry: &str, collector_url: &str) -> Pair {
    let scratch = Scratch::new();
    let callee_inbound = free_port();
    let config = format!(
        r#"{telemetry}
service reviews {{
  port 9080 http
  endpoint {callee_inbound}
}}
workload productpage {{
  outbound reviews
}}
workload reviews {{
  serves reviews
  inbound 9080 http -> {app} mtls disable
}}
"#,
        app = app.addr()
    );
    let snapshot = compile(&scratch, &config);
    let inbound = callee_inbound.to_string();
    let collector = ["--trace-collector", collector_url];
    let mut callee_args = vec!["--workload", "reviews", "--inbound", &inbound];
    callee_args.extend_from_slice(&collector);
    let callee = start_logged(
        &snapshot,
        driver,
        &callee_args,
        &scratch.path().join("callee.log"),
    );
    let mut caller_args = vec!["--workload", "productpage"];
    caller_args.extend_from_slice(&collector);
    let caller = start_logged(
        &snapshot,
        driver,
        &caller_args,
        &scratch.path().join("caller.log"),
    );
    Pair {
        caller,
        _callee: callee,
        _scratch: scratch,
    }
}

/// The headers the upstream received, from its `/headers` answer.
fn received(response: &Response) -> Vec<(String, String)> {
    response
        .text()
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
        .collect()
}

fn header<'r>(headers: &'r [(String, String)], name: &str) -> Option<&'r str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

const APP_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const APP_SPAN: &str = "00f067aa0ba902b7";

fn the_upstream_sees_the_apps_trace_under_the_callees_span(driver: &str, path: &str) {
    let app = Upstream::start("reviews-app").unwrap();
    let collector = Collector::start();
    let pair = pair(driver, &app, "", &collector.url(path));
    let traceparent = format!("00-{APP_TRACE}-{APP_SPAN}-01");
    let mut client = Client::connect(pair.caller.outbound).unwrap();
    let response = client
        .get("reviews:9080", "/headers", &[("traceparent", &traceparent)])
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let headers = received(&response);
    let forwarded = header(&headers, "traceparent").expect("traceparent forwarded");
    let parts: Vec<&str> = forwarded.split('-').collect();
    assert_eq!(parts[1], APP_TRACE, "{forwarded}");
    assert_eq!(parts[3], "01", "{forwarded}");
    let callee_span = parts[2].to_owned();
    assert_ne!(callee_span, APP_SPAN);
    assert_eq!(header(&headers, "x-b3-traceid"), Some(APP_TRACE));
    assert_eq!(header(&headers, "x-b3-spanid"), Some(callee_span.as_str()));
    let request_id = header(&headers, "x-request-id").expect("a request id is made");
    assert_eq!(request_id.len(), 36, "{request_id}");

    wait_until(|| collector.spans().len() >= 2);
    let spans = collector.spans();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let (id, parent, kind) = if path == "/v1/traces" {
        ("spanId", "parentSpanId", ("kind", 3.into(), 2.into()))
    } else {
        ("id", "parentId", ("kind", "CLIENT".into(), "SERVER".into()))
    };
    let find = |wanted: &serde_json::Value| {
        spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| s[kind.0] == *wanted)
            .unwrap_or_else(|| panic!("no {wanted} span in {spans:?}"))
            .clone()
    };
    let client_span = find(&kind.1);
    let server_span = find(&kind.2);
    assert!(spans.iter().all(|(p, _)| p == path));
    for span in [&client_span, &server_span] {
        assert_eq!(span["traceId"], APP_TRACE, "{span}");
    }
    assert_eq!(client_span[parent], APP_SPAN, "{client_span}");
    assert_eq!(server_span[parent], client_span[id], "{server_span}");
    assert_eq!(server_span[id], callee_span.as_str(), "{server_span}");
    assert_eq!(
        client_span["name"],
        "reviews.default.svc.cluster.local:9080/*"
    );
    if path == "/api/v2/spans" {
        assert_eq!(client_span["localEndpoint"]["serviceName"], "productpage");
        assert_eq!(server_span["localEndpoint"]["serviceName"], "reviews");
        assert_eq!(server_span["tags"]["http.status_code"], "200");
        assert_eq!(client_span["tags"]["guid:x-request-id"], request_id);
    }
}

fn zipkin_spans_link_caller_callee_and_upstream(driver: &str) {
    the_upstream_sees_the_apps_trace_under_the_callees_span(driver, "/api/v2/spans");
}

fn otlp_spans_link_caller_callee_and_upstream(driver: &str) {
    the_upstream_sees_the_apps_trace_under_the_callees_span(driver, "/v1/traces");
}

fn sampling_starts_traces_and_a_request_id_is_kept(driver: &str) {
    let app = Upstream::start("reviews-app").unwrap();
    let collector = Collector::start();
    let telemetry = "telemetry { trace_sampling 100% }";
    let pair = pair(driver, &app, telemetry, &collector.url("/api/v2/spans"));
    let mut client = Client::connect(pair.caller.outbound).unwrap();
    let sent_id = [("x-request-id", "my-request-1")];
    let response = client.get("reviews:9080", "/headers", &sent_id).unwrap();
    let headers = received(&response);
    assert_eq!(header(&headers, "x-request-id"), Some("my-request-1"));
    let forwarded = header(&headers, "traceparent").expect("a new trace");
    wait_until(|| collector.spans().len() >= 2);
    let spans = collector.spans();
    let trace = forwarded.split('-').nth(1).unwrap();
    assert!(
        spans.iter().all(|(_, s)| s["traceId"] == trace),
        "{spans:?}"
    );
    let root = spans
        .iter()
        .find(|(_, s)| s["kind"] == "CLIENT")
        .map(|(_, s)| s)
        .unwrap();
    assert!(
        root.get("parentId").is_none(),
        "the caller starts the trace: {root}"
    );
}

fn unsampled_requests_pass_trace_headers_unchanged(driver: &str) {
    let app = Upstream::start("reviews-app").unwrap();
    let collector = Collector::start();
    let pair = pair(driver, &app, "", &collector.url("/api/v2/spans"));
    let mut client = Client::connect(pair.caller.outbound).unwrap();
    let response = client.get("reviews:9080", "/headers", &[]).unwrap();
    assert_eq!(header(&received(&response), "traceparent"), None);
    let unsampled = format!("00-{APP_TRACE}-{APP_SPAN}-00");
    let response = client
        .get("reviews:9080", "/headers", &[("traceparent", &unsampled)])
        .unwrap();
    assert_eq!(
        header(&received(&response), "traceparent"),
        Some(unsampled.as_str())
    );
    // A sampled request after them: once its spans arrive, any of theirs would have too (each
    // sidecar posts its spans in the order its requests ended).
    let marker = "0af7651916cd43dd8448eb211c80319c";
    let sampled = format!("00-{marker}-{APP_SPAN}-01");
    let response = client
        .get("reviews:9080", "/headers", &[("traceparent", &sampled)])
        .unwrap();
    assert_eq!(response.status, 200);
    wait_until(|| collector.spans().len() >= 2);
    let spans = collector.spans();
    assert!(
        spans.iter().all(|(_, s)| s["traceId"] == marker),
        "{spans:?}"
    );
}

fn a_collector_that_never_answers_costs_no_request(driver: &str) {
    let app = Upstream::start("reviews-app").unwrap();
    // Accepts connections and never reads or answers them.
    let blackhole = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v2/spans", blackhole.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in blackhole.incoming().flatten() {
            held.push(conn);
        }
    });
    let pair = pair(driver, &app, "telemetry { trace_sampling 100% }", &url);
    let mut client = Client::connect(pair.caller.outbound).unwrap();
    // Each post waits out its 1 s timeout on the exporter thread; requests never wait on one.
    for _ in 0..200 {
        assert_eq!(client.get("reviews:9080", "/", &[]).unwrap().status, 200);
    }
    let dropped = || {
        Client::connect(pair.caller.admin)
            .and_then(|mut c| c.get("admin", "/metrics", &[]))
            .map(|r| r.text())
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("ringmesh_spans_dropped_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    wait_until(|| dropped() > 0);
}

on_both_drivers!(
    zipkin_spans_link_caller_callee_and_upstream,
    otlp_spans_link_caller_callee_and_upstream,
    sampling_starts_traces_and_a_request_id_is_kept,
    unsampled_requests_pass_trace_headers_unchanged,
    a_collector_that_never_answers_costs_no_request,
);

#[test]
fn a_bad_collector_url_is_refused_at_start() {
    let scratch = Scratch::new();
    let snapshot = compile(&scratch, &one_service("web", free_port()));
    for url in [
        "https://127.0.0.1:4318/v1/traces",
        "http://127.0.0.1:9411/spans",
    ] {
        let stderr = refused_at_start(&snapshot, &["--trace-collector", url]);
        assert!(stderr.contains("--trace-collector"), "{url}: {stderr}");
    }
}

fn a_collector_named_in_config_gets_spans_and_a_reload_moves_them(driver: &str) {
    let app = Upstream::start("web").unwrap();
    let (first, second) = (Collector::start(), Collector::start());
    let config = |collector: &Collector| {
        format!(
            "telemetry {{ trace_sampling 100% trace_collector \"{}\" }}\n{}",
            collector.url("/v1/traces"),
            one_service("web", app.addr())
        )
    };
    let scratch = Scratch::new();
    let args = ["--watch-interval", "0s"];
    let meshd = serve(&scratch, &config(&first), driver, &args);
    let mut client = Client::connect(meshd.outbound).unwrap();
    assert_eq!(client.get("web", "/", &[]).unwrap().status, 200);
    wait_until(|| first.spans().len() == 1);

    let input = scratch.write("mesh.mesh", config(&second));
    let output = harness::compile(&[&input], &scratch.path().join("mesh.snap")).unwrap();
    assert!(output.status.success());
    let reloaded = Client::connect(meshd.admin)
        .and_then(|mut c| c.request("POST", "admin", "/reload", &[], b""))
        .unwrap();
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    assert_eq!(client.get("web", "/", &[]).unwrap().status, 200);
    wait_until(|| second.spans().len() == 1);
    // One exporter thread posts batches in order: once a later span reached the second
    // collector, anything the earlier one sent the first would have arrived.
    assert_eq!(client.get("web", "/", &[]).unwrap().status, 200);
    wait_until(|| second.spans().len() == 2);
    assert_eq!(
        first.spans().len(),
        1,
        "the first collector gets nothing more"
    );
}

on_both_drivers!(a_collector_named_in_config_gets_spans_and_a_reload_moves_them);

#[test]
fn a_bad_collector_url_in_config_is_a_compile_error() {
    let scratch = Scratch::new();
    let config = "telemetry { trace_collector \"https://c:4318/v1/traces\" }\n";
    let input = scratch.write("mesh.mesh", config);
    let output = harness::compile(&[&input], &scratch.path().join("out.snap")).unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("mesh.mesh:1:29: error[E0002]") && stderr.contains("http://"),
        "{stderr}"
    );
}

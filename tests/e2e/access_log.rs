//! Access logs written by a real meshd: one JSON object per request with every key, the text
//! format's operators rendered, SIGUSR1 reopening the file, a pipe nobody reads costing
//! counted lines and never a request, and a log meshd cannot open refused at start.

use std::path::Path;
use std::process::Command;

use ringmesh_tests::*;

/// The keys every JSON line carries (docs/access-log.md).
const KEYS: [&str; 21] = [
    "start_time",
    "method",
    "authority",
    "path",
    "protocol",
    "response_code",
    "response_flags",
    "duration_ms",
    "upstream_service_time_ms",
    "bytes_received",
    "bytes_sent",
    "upstream_host",
    "upstream_cluster",
    "downstream_remote_address",
    "peer_principal",
    "user_agent",
    "x_request_id",
    "trace_id",
    "route_name",
    "route_source",
    "snapshot",
];

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn canary_with(v1: &Upstream, v2: &Upstream, telemetry: &str) -> String {
    format!("{telemetry}\n{}", canary_config(v1, v2))
}

/// The line a rule's `rule` keyword is on in `config`, 1-based.
fn line_of(config: &str, needle: &str) -> usize {
    config
        .lines()
        .position(|l| l.contains(needle))
        .expect("in the config")
        + 1
}

fn json_lines_name_rule_source_and_snapshot(driver: &str) {
    let (v1, v2) = (
        Upstream::start("v1").unwrap(),
        Upstream::start("v2").unwrap(),
    );
    let scratch = Scratch::new();
    let config = canary_with(&v1, &v2, "telemetry { access_log json }");
    let log = scratch.path().join("access.log");
    let log_arg = log.to_str().unwrap();
    let meshd = serve(&scratch, &config, driver, &["--access-log", log_arg]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let canary = [
        ("x-canary", "true"),
        ("x-request-id", "req-1"),
        ("traceparent", traceparent),
    ];
    assert_eq!(
        client.get("reviews", "/r/1?a=b", &canary).unwrap().text(),
        "v2"
    );
    assert_eq!(client.get("reviews:9080", "/", &[]).unwrap().text(), "v1");
    assert_eq!(client.get("nowhere", "/", &[]).unwrap().status, 404);
    wait_until(|| lines(&log).len() == 3);

    let logged = json_lines(&log);
    for line in &logged {
        for key in KEYS {
            assert!(line.get(key).is_some(), "{key} missing from {line}");
        }
        assert_eq!(line["snapshot"], meshd.snapshot_hash.as_str());
        assert_eq!(line["protocol"], "HTTP/1.1");
        assert!(
            line["start_time"].as_str().unwrap().ends_with('Z'),
            "{line}"
        );
        let client = line["downstream_remote_address"].as_str().unwrap();
        assert!(client.starts_with("127.0.0.1:"), "{line}");
    }
    let file = scratch.path().join("mesh.mesh");
    let source = |rule: &str| format!("{}:{}", file.display(), line_of(&config, rule));
    let canary = &logged[0];
    assert_eq!(canary["method"], "GET");
    assert_eq!(canary["authority"], "reviews");
    assert_eq!(canary["path"], "/r/1?a=b");
    assert_eq!(canary["response_code"], 200);
    assert_eq!(canary["response_flags"], "-");
    assert_eq!(canary["route_name"], "canary");
    assert_eq!(canary["route_source"], source("rule canary"));
    assert_eq!(canary["upstream_host"], v2.addr().to_string());
    assert_eq!(canary["upstream_cluster"], "reviews/v2");
    assert_eq!(canary["x_request_id"], "req-1");
    assert_eq!(canary["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(canary["upstream_service_time_ms"].is_u64(), "{canary}");
    assert!(canary["bytes_sent"].as_u64().unwrap() > 0, "{canary}");

    let stable = &logged[1];
    assert_eq!(stable["authority"], "reviews:9080");
    assert_eq!(stable["route_name"], "stable");
    assert_eq!(stable["route_source"], source("rule stable"));
    assert_eq!(stable["upstream_host"], v1.addr().to_string());
    // meshd made one, as the request had none.
    assert_eq!(stable["x_request_id"].as_str().map(str::len), Some(36));

    let unrouted = &logged[2];
    assert_eq!(unrouted["response_code"], 404);
    assert_eq!(unrouted["response_flags"], "NR");
    assert_eq!(unrouted["route_name"], serde_json::Value::Null);
    assert_eq!(unrouted["upstream_host"], serde_json::Value::Null);

    let metrics = Client::connect(meshd.admin)
        .and_then(|mut c| c.get("admin", "/metrics", &[]))
        .unwrap()
        .text();
    assert!(
        metrics.contains("ringmesh_access_log_lines_total 3\n"),
        "{metrics}"
    );
}

fn text_format_renders_envoy_operators(driver: &str) {
    let (v1, v2) = (
        Upstream::start("v1").unwrap(),
        Upstream::start("v2").unwrap(),
    );
    let scratch = Scratch::new();
    let format = r#"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL% %RESPONSE_CODE% %RESPONSE_FLAGS% \"%REQ(USER-AGENT):5%\" %UPSTREAM_HOST% %ROUTE_NAME%"#;
    let telemetry = format!(r#"telemetry {{ access_log "{format}" }}"#);
    let config = canary_with(&v1, &v2, &telemetry);
    let log = scratch.path().join("access.log");
    let meshd = serve(
        &scratch,
        &config,
        driver,
        &["--access-log", log.to_str().unwrap()],
    );
    let mut client = Client::connect(meshd.outbound).unwrap();
    let agent = [("user-agent", "curl/8.11")];
    assert_eq!(
        client.get("reviews", "/split?x=1", &agent).unwrap().status,
        200
    );
    let mut fresh = Client::connect(meshd.outbound).unwrap();
    fresh
        .send(b"GET /a HTTP/1.0\r\nHost: none\r\n\r\n")
        .unwrap();
    assert_eq!(fresh.read_response(false).unwrap().status, 404);
    wait_until(|| lines(&log).len() == 2);
    let logged = lines(&log);
    let split = &logged[0];
    let (v1, v2) = (v1.addr().to_string(), v2.addr().to_string());
    assert!(
        [&v1, &v2]
            .iter()
            .any(|up| *split == format!("GET /split?x=1 HTTP/1.1 200 - \"curl/\" {up} split")),
        "{split}"
    );
    assert_eq!(logged[1], "GET /a HTTP/1.0 404 NR \"-\" - -");
}

fn sigusr1_reopens_the_log_file(driver: &str) {
    let up = Upstream::start("web").unwrap();
    let scratch = Scratch::new();
    let config = format!(
        "telemetry {{ access_log \"%REQ(:PATH)%\" }}\n{}",
        one_service("web", up.addr())
    );
    let snapshot = compile(&scratch, &config);
    let log = scratch.path().join("access.log");
    let stderr = scratch.path().join("meshd.err");
    let log_arg = log.to_str().unwrap();
    let meshd = start_logged(&snapshot, driver, &["--access-log", log_arg], &stderr);
    let mut client = Client::connect(meshd.outbound).unwrap();
    assert_eq!(client.get("web", "/before", &[]).unwrap().status, 200);
    wait_until(|| lines(&log) == ["/before"]);

    let rotated = scratch.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let pid = meshd.pid().to_string();
    assert!(Command::new("kill")
        .args(["-USR1", &pid])
        .status()
        .unwrap()
        .success());
    wait_until(|| {
        std::fs::read_to_string(&stderr).is_ok_and(|e| e.contains("access log reopened"))
    });
    assert_eq!(client.get("web", "/after", &[]).unwrap().status, 200);
    wait_until(|| lines(&log) == ["/after"]);
    assert_eq!(lines(&rotated), ["/before"]);
}

fn a_pipe_nobody_reads_costs_counted_lines_not_requests(driver: &str) {
    let up = Upstream::start("web").unwrap();
    let scratch = Scratch::new();
    let config = format!(
        "telemetry {{ access_log json }}\n{}",
        one_service("web", up.addr())
    );
    let fifo = scratch.path().join("access.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let meshd = serve(
        &scratch,
        &config,
        driver,
        &["--access-log", fifo.to_str().unwrap()],
    );
    // A pipe holds 64 KiB and each core's buffers 256 KiB; at ~500 bytes a line, 3000
    // requests overflow both.
    let mut client = Client::connect(meshd.outbound).unwrap();
    let padding = "x".repeat(200);
    for _ in 0..3000 {
        let response = client.get("web", "/", &[("user-agent", &padding)]).unwrap();
        assert_eq!(response.status, 200);
    }
    let dropped = || {
        let text = Client::connect(meshd.admin)
            .and_then(|mut c| c.get("admin", "/metrics", &[]))
            .map(|r| r.text())
            .unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("ringmesh_access_log_lines_dropped_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    wait_until(|| dropped() > 0);
    // Still serving, and the drain does not wait on the stuck writer for long.
    assert_eq!(client.get("web", "/", &[]).unwrap().status, 200);
    let status = meshd.terminate().unwrap();
    assert!(status.success(), "{status}");
}

on_both_drivers!(
    json_lines_name_rule_source_and_snapshot,
    text_format_renders_envoy_operators,
    sigusr1_reopens_the_log_file,
    a_pipe_nobody_reads_costs_counted_lines_not_requests,
);

#[test]
fn an_access_log_meshd_cannot_open_is_refused_at_start() {
    let up = Upstream::start("web").unwrap();
    let scratch = Scratch::new();
    let snapshot = compile(&scratch, &one_service("web", up.addr()));
    let missing = scratch.path().join("no-such-dir").join("access.log");
    let stderr = refused_at_start(&snapshot, &["--access-log", missing.to_str().unwrap()]);
    assert!(
        stderr.contains("cannot open access log") && stderr.contains("no-such-dir"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_operator_is_refused_at_its_column() {
    let scratch = Scratch::new();
    let config = "telemetry { access_log \"%REQ(:PATH)% %UPSTREAM_LOCAL_ADDRESS%\" }\n";
    let input = scratch.write("mesh.mesh", config);
    let output = harness::compile(&[&input], &scratch.path().join("out.snap")).unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("mesh.mesh:1:38: error[E0148]: unknown operator %UPSTREAM_LOCAL_ADDRESS%"),
        "{stderr}"
    );
}

//! Integration tests for the `meshload` binary and `tools::load::run` against in-process upstreams.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;
use tools::load::{self, Config, Rate};
use tools::upstream::Upstream;

fn meshload(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshload"))
        .args(args)
        .output()
        .expect("run meshload")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A unique JSON output path in the target's temporary directory.
fn json_path(test: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("meshload-{test}.json"))
}

fn read_json(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path).expect("json written");
    serde_json::from_str(&text).expect("valid json")
}

#[test]
fn short_open_loop_run_completes_every_request_and_writes_json() {
    let up = Upstream::start("v1").expect("start upstream");
    let url = format!("http://{}/", up.addr());
    let json = json_path("open-loop");
    let out = meshload(&[
        &url,
        "--rate",
        "200",
        "--duration",
        "1s",
        "--json",
        json.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    for label in [
        "target rate",
        "achieved rate",
        "requests",
        "errors",
        "status",
        "latency ms",
        "p99.9",
    ] {
        assert!(text.contains(label), "missing {label:?} in\n{text}");
    }
    let v = read_json(&json);
    for key in [
        "target_rate",
        "achieved_rate",
        "duration_s",
        "requests",
        "errors",
        "status",
        "latency_ms",
        "tally",
        "reconnects",
    ] {
        assert!(v.get(key).is_some(), "missing key {key} in {v}");
    }
    for key in ["connect", "timeout", "io", "status_5xx", "status_4xx"] {
        assert_eq!(v["errors"][key], 0, "errors.{key} in {v}");
    }
    for key in ["p50", "p90", "p99", "p999", "max", "mean"] {
        assert!(
            v["latency_ms"][key].as_f64().is_some_and(|ms| ms > 0.0),
            "latency_ms.{key} in {v}"
        );
    }
    assert_eq!(v["target_rate"], 200.0);
    // A 1 s run at 200/s is due to send exactly 200; on a loaded machine a few may be left unsent.
    let requests = v["requests"].as_u64().expect("requests");
    let unsent = v["unsent"].as_u64().expect("unsent");
    assert_eq!(requests + unsent, 200, "{v}");
    assert!(requests >= 100, "{v}");
    assert_eq!(v["status"]["200"].as_u64(), Some(requests));
    assert_eq!(v["tally"], serde_json::json!({}));
    assert_eq!(v["reconnects"], 0);
    assert_eq!(up.requests(), requests);
}

#[test]
fn tallies_a_response_header_across_upstreams() {
    let v1 = Upstream::start("v1").expect("start v1");
    let v2 = Upstream::start("v2").expect("start v2");
    // Two runs into one tally is what a proxy split would look like; here each run hits one upstream.
    let run = |addr: std::net::SocketAddr| {
        let out = meshload(&[
            &format!("http://{addr}/"),
            "--rate",
            "100",
            "--duration",
            "200ms",
            "--tally-header",
            "X-Upstream",
        ]);
        assert!(out.status.success(), "{out:?}");
        stdout(&out)
    };
    let text = run(v1.addr());
    assert!(text.contains("tally X-Upstream"), "{text}");
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("v1"))
        .expect("v1 row");
    assert!(row.contains("100.00%"), "{text}");
    assert_eq!(
        row.split_whitespace()
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok()),
        Some(v1.requests())
    );

    let mut config = Config::new(
        format!("http://{}/", v2.addr()).parse().expect("url"),
        Rate::PerSecond(100.0),
        Duration::from_millis(200),
    );
    config.tally_header = Some("x-upstream".into());
    let report = load::run(&config).expect("run");
    assert_eq!(report.tally.get("v2").copied(), Some(report.responses));
    assert_eq!(report.tally.len(), 1);
    assert_eq!(report.responses, v2.requests());
}

#[test]
fn counts_missing_tally_header_and_status_errors() {
    let up = Upstream::start("v1").expect("start");
    let mut config = Config::new(
        format!("http://{}/status/503", up.addr())
            .parse()
            .expect("url"),
        Rate::PerSecond(50.0),
        Duration::from_millis(200),
    );
    config.tally_header = Some("x-not-there".into());
    let report = load::run(&config).expect("run");
    assert_eq!(report.errors.status_5xx, report.responses);
    assert_eq!(report.errors.total(), report.responses);
    assert_eq!(report.status.get(&503).copied(), Some(report.responses));
    assert_eq!(
        report.tally.get("(missing)").copied(),
        Some(report.responses)
    );
    assert!(
        report.latency_ms.max > 0.0,
        "5xx latencies are still recorded"
    );
}

#[test]
fn closed_port_reports_connect_errors() {
    // Bind then drop to get a port with (almost certainly) nobody listening.
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let json = json_path("closed-port");
    let out = meshload(&[
        &format!("http://{addr}/"),
        "--rate",
        "100",
        "--duration",
        "200ms",
        "--json",
        json.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let v = read_json(&json);
    let requests = v["requests"].as_u64().expect("requests");
    assert!(requests > 0, "{v}");
    assert_eq!(v["errors"]["connect"].as_u64(), Some(requests), "{v}");
    assert_eq!(v["status"], serde_json::json!({}));
    assert_eq!(v["achieved_rate"], 0.0);
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for (args, message) in [
        (
            &["https://127.0.0.1/", "--rate", "1", "--duration", "1s"][..],
            "only plain http://",
        ),
        (
            &["http://h:99999/", "--rate", "1", "--duration", "1s"][..],
            "bad port",
        ),
        (
            &["http://127.0.0.1:1/", "--rate", "fast", "--duration", "1s"][..],
            "invalid rate",
        ),
        (
            &["http://127.0.0.1:1/", "--rate", "1", "--duration", "10"][..],
            "missing unit",
        ),
        (
            &[
                "http://127.0.0.1:1/",
                "--rate",
                "1",
                "--duration",
                "1s",
                "-c",
                "0",
            ][..],
            "greater than zero",
        ),
    ] {
        let out = meshload(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn max_rate_runs_closed_loop() {
    let up = Upstream::start("v1").expect("start");
    let url = format!("http://{}/", up.addr());
    let json = json_path("max");
    let out = meshload(&[
        &url,
        "--rate",
        "max",
        "--duration",
        "300ms",
        "-c",
        "2",
        "--json",
        json.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("max (closed loop)"));
    let v = read_json(&json);
    assert_eq!(v["target_rate"], Value::Null);
    let requests = v["requests"].as_u64().expect("requests");
    assert!(requests > 0, "{v}");
    assert_eq!(v["status"]["200"].as_u64(), Some(requests));
    assert_eq!(up.connections(), 2);
}

#[test]
fn reconnects_when_the_server_closes_each_connection() {
    let up = Upstream::start("v1").expect("start");
    let mut config = Config::new(
        format!("http://{}/", up.addr()).parse().expect("url"),
        Rate::PerSecond(50.0),
        Duration::from_millis(200),
    );
    config.connections = Some(1);
    config.headers.push(("connection".into(), "close".into()));
    let report = load::run(&config).expect("run");
    assert_eq!(report.errors.total(), 0, "{report}");
    assert_eq!(report.responses + report.unsent, 10, "{report}");
    // One connection per request; the first is not a reconnect.
    assert_eq!(report.reconnects, report.responses - 1, "{report}");
    assert_eq!(up.connections(), report.responses);
}

#[test]
fn reads_chunked_responses() {
    let up = Upstream::start("v1").expect("start");
    let config = Config::new(
        format!("http://{}/chunked?chunks=5&size=3000", up.addr())
            .parse()
            .expect("url"),
        Rate::Max,
        Duration::from_millis(100),
    );
    let report = load::run(&config).expect("run");
    assert!(report.responses > 0);
    assert_eq!(report.errors.total(), 0, "{report}");
    assert_eq!(
        report.reconnects, 0,
        "chunked bodies keep the connection reusable"
    );
}

#[test]
fn counts_timeouts_when_the_server_never_answers() {
    // The kernel completes handshakes into the backlog; nobody ever accepts or answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut config = Config::new(
        format!("http://{}/", silent.local_addr().expect("addr"))
            .parse()
            .expect("url"),
        Rate::PerSecond(10.0),
        Duration::from_millis(300),
    );
    config.connections = Some(1);
    config.timeout = Duration::from_millis(100);
    let report = load::run(&config).expect("run");
    assert!(report.requests >= 1, "{report}");
    assert_eq!(report.requests + report.unsent, 3, "{report}");
    assert_eq!(report.errors.timeout, report.requests, "{report}");
    assert_eq!(
        (report.responses, report.errors.connect),
        (0, 0),
        "{report}"
    );
}

#[test]
fn counts_io_errors_when_the_server_closes_mid_response() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Promises 10 body bytes, sends 3, closes. Detached: it ends with the test process.
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = [0u8; 1024];
            let _ = stream.read(&mut head);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc");
        }
    });
    let mut config = Config::new(
        format!("http://{addr}/").parse().expect("url"),
        Rate::PerSecond(20.0),
        Duration::from_millis(200),
    );
    config.connections = Some(1);
    let report = load::run(&config).expect("run");
    assert!(report.requests >= 1, "{report}");
    assert_eq!(report.errors.io, report.requests, "{report}");
    assert_eq!(report.responses, 0, "{report}");
}

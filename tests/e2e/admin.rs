//! The admin listener as operators and probes use it: HEAD, query strings, 405 with `Allow`,
//! and no listening where other hosts reach it unless asked.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use ringmesh_tests::*;

/// Sends `head` (a request head) to `admin` and reads the whole answer (admin closes).
fn exchange(admin: SocketAddr, head: &str) -> String {
    let mut stream = TcpStream::connect(admin).expect("connect to admin");
    stream.write_all(head.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    answer
}

fn request(admin: SocketAddr, method: &str, target: &str) -> String {
    exchange(
        admin,
        &format!("{method} {target} HTTP/1.1\r\nhost: admin\r\n\r\n"),
    )
}

#[test]
fn head_query_strings_and_method_errors_answer_as_http_says() {
    let up = Upstream::start("up").unwrap();
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &one_service("web", up.addr()), "epoll", &[]);

    let head = request(meshd.admin, "HEAD", "/ready");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("content-length: 6\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head:?}");

    let probed = request(meshd.admin, "GET", "/ready?probe=kubelet");
    assert!(probed.starts_with("HTTP/1.1 200 OK\r\n"), "{probed}");
    assert!(probed.ends_with("ready\n"), "{probed}");
    let scraped = request(meshd.admin, "GET", "/metrics?name[]=x");
    assert!(scraped.starts_with("HTTP/1.1 200 OK\r\n"), "{scraped}");

    let posted = request(meshd.admin, "POST", "/ready");
    assert!(
        posted.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{posted}"
    );
    assert!(posted.contains("allow: GET, HEAD\r\n"), "{posted}");
    let got = request(meshd.admin, "GET", "/drain");
    assert!(got.contains("allow: POST\r\n"), "{got}");

    let unknown = request(meshd.admin, "GET", "/nope");
    assert!(
        unknown.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{unknown}"
    );
    assert!(!unknown.contains("allow:"), "{unknown}");
}

#[test]
fn an_admin_address_other_hosts_reach_is_refused_unless_allowed() {
    let scratch = Scratch::new();
    let snapshot = compile(
        &scratch,
        &one_service("web", "127.0.0.1:9".parse().unwrap()),
    );
    let stderr = refused_at_start(&snapshot, &["--admin", "0.0.0.0:0"]);
    assert!(
        stderr.contains("admin address 0.0.0.0:0 is reachable from other hosts")
            && stderr.contains("--admin-allow-remote"),
        "{stderr}"
    );
}

#[test]
fn the_metrics_listener_serves_metrics_only() {
    let up = Upstream::start("up").unwrap();
    let scratch = Scratch::new();
    // A free port, taken back just before meshd binds it.
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let address = metrics.to_string();
    let args = ["--metrics", address.as_str()];
    let meshd = serve(&scratch, &one_service("web", up.addr()), "epoll", &args);
    let mut client = Client::connect(meshd.outbound).unwrap();
    assert_eq!(client.get("web", "/", &[]).unwrap().status, 200);

    let scraped = request(metrics, "GET", "/stats/prometheus");
    assert!(scraped.starts_with("HTTP/1.1 200 OK\r\n"), "{scraped}");
    assert!(scraped.contains("istio_requests_total{"), "{scraped}");
    for (method, path) in [("POST", "/drain"), ("POST", "/reload"), ("GET", "/config")] {
        let refused = request(metrics, method, path);
        assert!(
            refused.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{refused}"
        );
    }
    // Nothing drained: the admin listener still reports ready.
    assert!(request(meshd.admin, "GET", "/ready").ends_with("ready\n"));
}

/// meshd's own log lines: JSON with `--log-format json`, filtered by `--log-level`, and the
/// level changed at run time through admin `/logging`.
#[test]
fn log_lines_are_leveled_and_the_level_changes_at_run_time() {
    let up = Upstream::start("web").unwrap();
    let scratch = Scratch::new();
    let snapshot = compile(&scratch, &one_service("web", up.addr()));
    let stderr = scratch.path().join("meshd.err");
    let args = [
        "--log-format",
        "json",
        "--log-level",
        "warn",
        "--watch-interval",
        "0s",
    ];
    let meshd = start_logged(&snapshot, "epoll", &args, &stderr);
    let admin = |method: &str, path: &str| {
        Client::connect(meshd.admin)
            .and_then(|mut c| c.request(method, "admin", path, &[], b""))
            .unwrap()
    };
    assert_eq!(admin("GET", "/logging").text(), "level: warn\n");
    // At `warn` a reload's info line is not written; at `info` it is.
    let recompile = |service: &str| {
        let config = scratch.write("next.mesh", one_service(service, up.addr()));
        let output = harness::compile(&[&config], &snapshot).unwrap();
        assert!(output.status.success());
    };
    recompile("web2");
    assert_eq!(admin("POST", "/reload").status, 200);
    assert_eq!(admin("POST", "/logging?level=info").text(), "level: info\n");
    recompile("web3");
    assert_eq!(admin("POST", "/reload").status, 200);
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&stderr)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    wait_until(|| {
        lines().iter().any(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("reloaded snapshot"))
        })
    });
    let logged = lines();
    let reloads: Vec<_> = logged
        .iter()
        .filter(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("reloaded"))
        })
        .collect();
    assert_eq!(reloads.len(), 1, "{logged:?}");
    assert_eq!(reloads[0]["level"], "INFO");
    assert!(reloads[0]["timestamp"].is_string());
    let bad = admin("POST", "/logging?level=loud");
    assert_eq!(bad.status, 400);
    assert!(bad
        .text()
        .contains("one of off, error, warn, info, debug, trace"));
    assert_eq!(admin("POST", "/logging").status, 400);
}

#[test]
fn an_unknown_log_level_is_refused_at_start() {
    let scratch = Scratch::new();
    let snapshot = compile(&scratch, &one_service("web", free_port()));
    let stderr = refused_at_start(&snapshot, &["--log-level", "loud"]);
    assert!(
        stderr.contains("--log-level") && stderr.contains("loud"),
        "{stderr}"
    );
}

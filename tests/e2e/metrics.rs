//! One sidecar's request metrics for what goes wrong after a response started: an upstream
//! body that breaks off is `UC`, with the status the client already got.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use ringmesh_tests::*;

/// An upstream that promises 100 body bytes, sends 5, and closes.
fn truncating_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut head = [0u8; 1024];
            let _ = conn.read(&mut head);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort");
        }
    });
    addr
}

fn flags_of(admin: SocketAddr) -> Vec<String> {
    let text = Client::connect(admin)
        .and_then(|mut c| c.get("admin", "/metrics", &[]))
        .map(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .map(|l| {
            let code = l
                .split("response_code=\"")
                .nth(1)
                .unwrap_or("")
                .split('"')
                .next();
            let flags = l
                .split("response_flags=\"")
                .nth(1)
                .unwrap_or("")
                .split('"')
                .next();
            format!("{} {}", code.unwrap_or(""), flags.unwrap_or(""))
        })
        .collect()
}

#[test]
fn an_upstream_body_that_breaks_off_is_counted_uc_with_its_status() {
    let scratch = Scratch::new();
    let meshd = serve(
        &scratch,
        &one_service("web", truncating_upstream()),
        "epoll",
        &[],
    );
    let mut client = TcpStream::connect(meshd.outbound).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: web\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = client.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    wait_until(|| flags_of(meshd.admin) == ["200 UC"]);
}

/// The value of the sample `series` (name with its labels, as printed) in a scrape.
fn sample(admin: SocketAddr, series: &str) -> Option<f64> {
    let text = Client::connect(admin)
        .and_then(|mut c| c.get("admin", "/metrics", &[]))
        .map(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// meshd's own metrics follow what it did: the snapshot and its reloads, requests and open
/// connections per core, retries, rate-limited requests, and an endpoint outlier detection
/// ejected.
#[test]
fn meshd_counts_its_own_work() {
    let (flaky, good) = (
        Upstream::start("flaky").unwrap(),
        Upstream::start("good").unwrap(),
    );
    let config = |limit: &str| {
        format!(
            "service web {{\n  port 80 http\n  endpoint {}\n  endpoint {}\n  policy {{\n    \
             outlier {{\n      consecutive_5xx 1\n      interval 20ms\n      base_ejection 1h\n      \
             max_ejection_percent 100\n    \
             }}\n  }}\n}}\n\
             route web {{\n  rule limited {{\n    match path prefix \"/limited\"\n    to web\n    \
             rate_limit {limit} per 1m\n  }}\n  rule all {{\n    to web\n    \
             retries {{ attempts 1 on 503 backoff 1ms }}\n  }}\n}}\n",
            flaky.addr(),
            good.addr()
        )
    };
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &config("1"), "epoll", &[]);
    let admin = meshd.admin;
    let hash_info = format!("ringmesh_snapshot_info{{hash=\"{}\"}}", meshd.snapshot_hash);
    assert_eq!(sample(admin, &hash_info), Some(1.0));

    flaky.set_failing(Some(503));
    let mut client = Client::connect(meshd.outbound).unwrap();
    // Round robin: the first try goes to `flaky`, fails with 503 and is retried on `good`;
    // the failure ejects `flaky`, so the limited rule's requests go to `good`.
    assert_eq!(client.get("web", "/", &[]).unwrap().text(), "good");
    let flaky_ejected = format!(
        "ringmesh_endpoint_ejected{{cluster=\"web\",endpoint=\"{}\"}}",
        flaky.addr()
    );
    wait_until(|| sample(admin, &flaky_ejected) == Some(1.0));
    let ejections = format!(
        "ringmesh_endpoint_ejections_total{{cluster=\"web\",endpoint=\"{}\"}}",
        flaky.addr()
    );
    assert_eq!(sample(admin, &ejections), Some(1.0));
    assert_eq!(client.get("web", "/limited", &[]).unwrap().status, 200);
    assert_eq!(client.get("web", "/limited", &[]).unwrap().status, 429);
    wait_until(|| sample(admin, "ringmesh_core_requests_total{core=\"0\"}") == Some(3.0));
    assert_eq!(sample(admin, "ringmesh_retries_total"), Some(1.0));
    assert_eq!(sample(admin, "ringmesh_rate_limited_total"), Some(1.0));
    // The client's keep-alive connection is open.
    assert_eq!(
        sample(admin, "ringmesh_active_connections{core=\"0\"}"),
        Some(1.0)
    );

    // A changed snapshot is applied, a broken one refused.
    let snapshot = scratch.path().join("mesh.snap");
    let reload = || {
        Client::connect(admin)
            .and_then(|mut c| c.request("POST", "admin", "/reload", &[], b""))
            .map(|r| r.status)
            .unwrap()
    };
    let changed = scratch.write("changed.mesh", config("5"));
    let output = harness::compile(&[&changed], &snapshot).unwrap();
    assert!(output.status.success());
    assert_eq!(reload(), 200);
    std::fs::write(&snapshot, b"not a snapshot").unwrap();
    assert_ne!(reload(), 200);
    assert_eq!(
        sample(admin, "ringmesh_reloads_total{result=\"applied\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(admin, "ringmesh_reloads_total{result=\"refused\"}"),
        Some(1.0)
    );
}

/// meshd's own counters do not depend on Istio's metrics being on.
#[test]
fn meshd_counts_its_own_work_with_istio_metrics_off() {
    let up = Upstream::start("web").unwrap();
    let config = format!(
        "telemetry {{ metrics off }}\n\
         service web {{ port 80 http endpoint {} }}\n\
         route web {{ rule all {{ to web rate_limit 1 per 1m }} }}",
        up.addr()
    );
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &config, "epoll", &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    assert_eq!(client.get("web", "/", &[]).unwrap().status, 200);
    assert_eq!(client.get("web", "/", &[]).unwrap().status, 429);
    let admin = meshd.admin;
    wait_until(|| sample(admin, "ringmesh_core_requests_total{core=\"0\"}") == Some(2.0));
    assert_eq!(sample(admin, "ringmesh_rate_limited_total"), Some(1.0));
    let text = Client::connect(admin)
        .and_then(|mut c| c.get("admin", "/metrics", &[]))
        .unwrap()
        .text();
    assert!(!text.contains("istio_requests_total{"), "{text}");
}

//! The admin listener as operators and probes use it: HEAD, query strings, 405 with `Allow`,
//! and no listening where other hosts reach it unless asked.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;

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
    let output = Command::new(harness::binary("meshd").expect("meshd is built"))
        .arg("--snapshot")
        .arg(&snapshot)
        .args(["--admin", "0.0.0.0:0", "--outbound", "127.0.0.1:0"])
        .output()
        .expect("run meshd");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
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

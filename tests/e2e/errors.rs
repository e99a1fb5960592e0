//! Every failure gets a precise status and a body that says what happened; bad requests never
//! reach an upstream.

use std::net::TcpListener;

use ringmesh_tests::*;

fn unused_port() -> std::net::SocketAddr {
    // Bound and dropped: nothing listens there afterwards.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn no_route_gives_404(driver: &str) {
    let (v1, v2) = (
        Upstream::start("v1").unwrap(),
        Upstream::start("v2").unwrap(),
    );
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &canary_config(&v1, &v2), driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    let response = client.get("ratings", "/", &[]).unwrap();
    assert_eq!(response.status, 404);
    assert_eq!(response.header("x-ringmesh-flag"), Some("NR"));
    assert!(
        response
            .text()
            .starts_with("no route: no service for host \"ratings\""),
        "{}",
        response.text()
    );
    // The connection survives a local reply.
    assert_eq!(client.get("reviews", "/", &[]).unwrap().status, 200);
}

fn empty_subset_gives_503_no_healthy_upstream(driver: &str) {
    let v1 = Upstream::start("v1").unwrap();
    let scratch = Scratch::new();
    let config = format!(
        r#"
service reviews {{
  port 9080 http
  endpoint {v1} {{ version = "v1" }}
  subset v1 {{ version = "v1" }}
  subset v3 {{ version = "v3" }}
}}
route reviews {{
  rule all {{ to reviews/v3 }}
}}
"#,
        v1 = v1.addr()
    );
    let meshd = serve(&scratch, &config, driver, &[]);
    let response = Client::connect(meshd.outbound)
        .unwrap()
        .get("reviews", "/", &[])
        .unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(
        response.text(),
        "no healthy upstream: reviews/v3 has no endpoints\n"
    );
}

fn upstream_down_gives_503_not_a_hang(driver: &str) {
    let scratch = Scratch::new();
    let down = unused_port();
    let config = one_service("gone", down);
    let meshd = serve(&scratch, &config, driver, &[]);
    // The client's own read timeout (10 s) turns a hang into a test failure.
    let response = Client::connect(meshd.outbound)
        .unwrap()
        .get("gone", "/", &[])
        .unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(response.header("x-ringmesh-flag"), Some("UF"));
    let text = response.text();
    assert!(
        text.starts_with(&format!("upstream connect error: {down}: ")),
        "{text}"
    );
}

fn stalled_upstream_gives_504(driver: &str) {
    // A listener that never accepts: connects succeed, responses never come.
    let stalled = TcpListener::bind("127.0.0.1:0").unwrap();
    let scratch = Scratch::new();
    let addr = stalled.local_addr().unwrap();
    let config = one_service("slow", addr);
    let meshd = serve(&scratch, &config, driver, &["--upstream-timeout", "300ms"]);
    let response = Client::connect(meshd.outbound)
        .unwrap()
        .get("slow", "/", &[])
        .unwrap();
    assert_eq!(response.status, 504);
    assert_eq!(
        response.text(),
        "upstream request timeout: no response within 300 ms\n"
    );
}

fn smuggling_and_malformed_requests_never_reach_the_upstream(driver: &str) {
    let up = Upstream::start("victim").unwrap();
    let scratch = Scratch::new();
    let config = one_service("victim", up.addr());
    let meshd = serve(&scratch, &config, driver, &[]);
    let many_headers: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
    let many_headers = format!("GET / HTTP/1.1\r\nHost: victim\r\n{many_headers}\r\n");
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: victim\r\nx-big: {}\r\n\r\n",
        "b".repeat(70_000)
    );
    let cases: [(&[u8], u16); 11] = [
        (b"POST / HTTP/1.1\r\nHost: victim\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: victim\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", 400),
        (b"POST / HTTP/1.1\r\nHost: victim\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nabcde", 400),
        (b"POST / HTTP/1.1\r\nHost: victim\r\nContent-Length: 5, 5\r\n\r\nabcde", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET /\x01 HTTP/1.1\r\nHost: victim\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: victim\n\n", 400),
        (b"GET / HTTP/1.1\r\nHost: victim\r\nX-Folded: a\r\n b\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: victim\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
        (many_headers.as_bytes(), 431),
        (huge_header.as_bytes(), 431),
    ];
    for (raw, status) in cases {
        let mut client = Client::connect(meshd.outbound).unwrap();
        client.send(raw).unwrap();
        let response = client.read_response(false).unwrap();
        assert_eq!(
            response.status,
            status,
            "for {:?}",
            String::from_utf8_lossy(raw)
        );
        assert_eq!(response.header("connection"), Some("close"));
    }
    let mut client = Client::connect(meshd.outbound).unwrap();
    let huge = format!("GET /{} HTTP/1.1\r\nHost: victim\r\n\r\n", "a".repeat(9000));
    client.send(huge.as_bytes()).unwrap();
    assert_eq!(client.read_response(false).unwrap().status, 414);
    let mut client = Client::connect(meshd.outbound).unwrap();
    client
        .send(b"CONNECT victim:443 HTTP/1.1\r\nHost: victim:443\r\n\r\n")
        .unwrap();
    assert_eq!(client.read_response(false).unwrap().status, 501);
    let mut client = Client::connect(meshd.outbound).unwrap();
    client
        .send(b"POST / HTTP/1.0\r\nHost: victim\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .unwrap();
    assert_eq!(client.read_response(false).unwrap().status, 501);
    // Not even the head of a refused request went out: meshd never connected upstream (the
    // test upstream would refuse most of these itself, uncounted, had they reached it).
    assert_eq!(up.requests(), 0, "a refused request reached the upstream");
    assert_eq!(
        up.connections(),
        0,
        "meshd connected upstream for a refused request"
    );

    // Naming Content-Length in Connection must not strip it while the body is forwarded:
    // the body would reach the upstream as a second, smuggled request.
    let smuggled = b"GET /status/404 HTTP/1.1\r\nHost: victim\r\n\r\n";
    let mut raw = format!(
        "POST /echo HTTP/1.1\r\nHost: victim\r\nConnection: content-length\r\nContent-Length: {}\r\n\r\n",
        smuggled.len()
    )
    .into_bytes();
    raw.extend_from_slice(smuggled);
    let mut client = Client::connect(meshd.outbound).unwrap();
    client.send(&raw).unwrap();
    let response = client.read_response(false).unwrap();
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &smuggled[..])
    );
    assert_eq!(client.get("victim", "/", &[]).unwrap().text(), "victim");
    assert_eq!(up.requests(), 2, "the upstream saw a smuggled request");
}

fn slow_request_head_gets_408(driver: &str) {
    let up = Upstream::start("patient").unwrap();
    let scratch = Scratch::new();
    let config = one_service("s", up.addr());
    let meshd = serve(
        &scratch,
        &config,
        driver,
        &["--request-head-timeout", "200ms"],
    );
    let mut client = Client::connect(meshd.outbound).unwrap();
    client
        .send(b"GET / HTTP/1.1\r\nHost: s\r\nX-Slow: ")
        .unwrap();
    let response = client.read_response(false).unwrap();
    assert_eq!(response.status, 408);
    assert_eq!(
        response.text(),
        "bad request: request head not received in time\n"
    );
    assert_eq!(up.requests(), 0);
}

on_both_drivers!(
    no_route_gives_404,
    empty_subset_gives_503_no_healthy_upstream,
    upstream_down_gives_503_not_a_hang,
    stalled_upstream_gives_504,
    smuggling_and_malformed_requests_never_reach_the_upstream,
    slow_request_head_gets_408,
);

fn misbehaving_upstreams_get_precise_errors_and_are_not_reused(driver: &str) {
    let up = Upstream::start("flaky").unwrap();
    let scratch = Scratch::new();
    let config = one_service("s", up.addr());
    let meshd = serve(&scratch, &config, driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();

    let closed = client.get("s", "/fail/close", &[]).unwrap();
    assert_eq!(
        (closed.status, closed.header("x-ringmesh-flag")),
        (503, Some("UC"))
    );
    assert_eq!(
        closed.text(),
        "upstream reset before response headers: connection closed before response headers\n"
    );

    let garbage = Client::connect(meshd.outbound)
        .unwrap()
        .get("s", "/fail/garbage", &[])
        .unwrap();
    assert_eq!(
        (garbage.status, garbage.header("x-ringmesh-flag")),
        (502, Some("UPE"))
    );

    // A body cut short cannot be reported after the head went out: the client connection
    // closes, so the client sees a truncated body rather than a wrong one.
    let mut truncated = Client::connect(meshd.outbound).unwrap();
    assert!(truncated.get("s", "/fail/truncate", &[]).is_err());
    // The same for a reset (RST) in the middle of the body.
    let mut reset = Client::connect(meshd.outbound).unwrap();
    assert!(reset.get("s", "/fail/reset", &[]).is_err());
    // A reset before any response byte is answered 503 UC.
    up.reset_next(1);
    let response = Client::connect(meshd.outbound)
        .unwrap()
        .get("s", "/", &[])
        .unwrap();
    assert_eq!(
        (response.status, response.header("x-ringmesh-flag")),
        (503, Some("UC"))
    );

    // None of those connections went back to the pool: healthy requests still work.
    let before = up.connections();
    for _ in 0..5 {
        assert_eq!(
            Client::connect(meshd.outbound)
                .unwrap()
                .get("s", "/", &[])
                .unwrap()
                .text(),
            "flaky"
        );
    }
    assert_eq!(
        up.connections(),
        before + 1,
        "one fresh upstream connection, then reuse"
    );
}

on_both_drivers!(misbehaving_upstreams_get_precise_errors_and_are_not_reused);

fn connections_beyond_the_per_core_limit_get_503(driver: &str) {
    let up = Upstream::start("v1").unwrap();
    let scratch = Scratch::new();
    let config = one_service("s", up.addr());
    let meshd = serve(
        &scratch,
        &config,
        driver,
        &["--max-connections-per-core", "2"],
    );
    let mut first = Client::connect(meshd.outbound).unwrap();
    let mut second = Client::connect(meshd.outbound).unwrap();
    assert_eq!(first.get("s", "/", &[]).unwrap().status, 200);
    assert_eq!(second.get("s", "/", &[]).unwrap().status, 200);
    let shed = Client::connect(meshd.outbound)
        .unwrap()
        .get("s", "/", &[])
        .unwrap();
    assert_eq!(
        (shed.status, shed.header("x-ringmesh-flag")),
        (503, Some("DO"))
    );
    assert_eq!(shed.header("connection"), Some("close"));
    // A slot frees when a connection closes.
    drop(first);
    let mut retry = Client::connect(meshd.outbound).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while retry.get("s", "/", &[]).unwrap().status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "no slot freed after a close"
        );
        retry = Client::connect(meshd.outbound).unwrap();
    }
    assert_eq!(second.get("s", "/", &[]).unwrap().status, 200);
}

on_both_drivers!(connections_beyond_the_per_core_limit_get_503);

//! Retries and circuit breaking through the real meshc and meshd: a rule's `retries` block
//! (conditions, exhaustion, methods, the retry buffer, per-try timeouts) and a service's
//! `policy { pool { } }` limits (connect timeout, pending overflow, requests per connection).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;

use ringmesh_tests::*;

/// Service `web` over `endpoints`, with the route rules `rules` and the service policy
/// `policy` (empty for none).
fn web(endpoints: &[SocketAddr], rules: &str, policy: &str) -> String {
    let endpoints: String = endpoints
        .iter()
        .map(|e| format!("  endpoint {e}\n"))
        .collect();
    format!(
        "service web {{\n  port 80 http\n{endpoints}{policy}\n}}\n\nroute web {{\n{rules}\n}}\n"
    )
}

/// An address nothing listens on.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn retry_on_503_goes_to_the_other_endpoint(driver: &str) {
    let (bad, good) = (
        Upstream::start("bad").unwrap(),
        Upstream::start("good").unwrap(),
    );
    bad.fail_next(u64::MAX, 503);
    let rules = "  rule all {\n    to web\n    retries { attempts 1 on 503 backoff 1ms }\n  }";
    let scratch = Scratch::new();
    let config = web(&[bad.addr(), good.addr()], rules, "");
    let meshd = serve(&scratch, &config, driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    // Round robin starts half of these at the failing endpoint; one retry always reaches the
    // other, since a retry avoids the endpoint that failed.
    for _ in 0..4 {
        let response = client.get("web", "/", &[]).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "good");
    }
    assert!(
        bad.requests() >= 1,
        "some tries reached the failing endpoint"
    );
    assert_eq!(good.requests(), 4);
}

fn exhausted_retries_give_the_last_response_or_urx(driver: &str) {
    let flaky = Upstream::start("flaky").unwrap();
    flaky.fail_next(u64::MAX, 502);
    let rules = "  rule answers {\n    to web\n    \
                 retries { attempts 2 on gateway-error backoff 1ms }\n  }";
    let scratch = Scratch::new();
    let config = format!(
        "{}service gone {{\n  port 80 http\n  endpoint {}\n}}\n\
         route gone {{\n  rule refused {{\n    to gone\n    \
         retries {{ attempts 2 on connect-failure backoff 1ms }}\n  }}\n}}\n",
        web(&[flaky.addr()], rules, ""),
        closed_port()
    );
    let meshd = serve(&scratch, &config, driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    // The upstream's own last answer is passed on, after the first try and two retries.
    let response = client.get("web", "/answers", &[]).unwrap();
    assert_eq!(response.status, 502);
    assert_eq!(response.header("x-upstream"), Some("flaky"));
    assert_eq!(flaky.requests(), 3);
    // A local failure after the last retry says so with URX next to its own flag.
    let response = client.get("gone", "/", &[]).unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(response.header("x-ringmesh-flag"), Some("UF,URX"));
}

fn post_is_retried_only_with_non_idempotent(driver: &str) {
    let up = Upstream::start("up").unwrap();
    let rules = "  rule strict {\n    match path prefix \"/strict\"\n    to web\n    \
                 retries { attempts 1 on 5xx backoff 1ms }\n  }\n  \
                 rule lenient {\n    to web\n    \
                 retries { attempts 1 on 5xx backoff 1ms non_idempotent }\n  }";
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &web(&[up.addr()], rules, ""), driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();

    up.fail_next(1, 503);
    assert_eq!(client.post("web", "/strict", b"once").unwrap().status, 503);
    assert_eq!(up.requests(), 1);
    // GET under the same rule is retried.
    up.fail_next(1, 503);
    assert_eq!(client.get("web", "/strict", &[]).unwrap().status, 200);
    assert_eq!(up.requests(), 3);

    up.fail_next(1, 503);
    let body = vec![b'x'; 20 * 1024];
    let response = client.post("web", "/echo", &body).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.body, body,
        "the retry replays the whole buffered body"
    );
    assert_eq!(up.requests(), 5);
}

fn a_body_over_the_retry_buffer_is_not_retried(driver: &str) {
    let up = Upstream::start("up").unwrap();
    let rules = "  rule all {\n    to web\n    \
                 retries { attempts 2 on 5xx backoff 1ms non_idempotent }\n  }";
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &web(&[up.addr()], rules, ""), driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    up.fail_next(1, 503);
    let body = vec![b'y'; 64 * 1024 + 1];
    let response = client.request("PUT", "web", "/echo", &[], &body).unwrap();
    assert_eq!(response.status, 503, "streamed, so the first answer stands");
    assert_eq!(up.requests(), 1);
    // Exactly 64 KiB is still buffered and retried.
    up.fail_next(1, 503);
    let body = vec![b'z'; 64 * 1024];
    let response = client.request("PUT", "web", "/echo", &[], &body).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), body.len());
    assert_eq!(up.requests(), 3);
}

fn the_retry_buffer_flag_sets_the_limit(driver: &str) {
    let up = Upstream::start("up").unwrap();
    let rules = "  rule all {\n    to web\n    retries { attempts 1 on 503 backoff 1ms }\n  }";
    let scratch = Scratch::new();
    let config = web(&[up.addr()], rules, "");
    let meshd = serve(&scratch, &config, driver, &["--retry-buffer", "100"]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    up.fail_next(1, 503);
    let response = client
        .request("PUT", "web", "/echo", &[], &[b'a'; 101])
        .unwrap();
    assert_eq!(response.status, 503);
    up.fail_next(1, 503);
    let response = client
        .request("PUT", "web", "/echo", &[], &[b'a'; 100])
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(up.requests(), 3);
}

fn chunked_bodies_are_retried_within_the_retry_buffer(driver: &str) {
    let up = Upstream::start("up").unwrap();
    let rules = "  rule all {\n    to web\n    retries { attempts 1 on 503 backoff 1ms }\n  }";
    let scratch = Scratch::new();
    let config = web(&[up.addr()], rules, "");
    // The bound counts the chunk framing: 10 bytes of data in 5-byte chunks take 25 bytes.
    let meshd = serve(&scratch, &config, driver, &["--retry-buffer", "25"]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    up.fail_next(1, 503);
    let response = client
        .chunked("PUT", "web", "/echo", b"0123456789", 5)
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.text(),
        "0123456789",
        "the retry replays the buffered chunks"
    );
    assert_eq!(up.requests(), 2);
    // One byte more does not fit: what was buffered goes first, the rest streams after it, and
    // the first answer stands.
    up.fail_next(1, 503);
    let response = client
        .chunked("PUT", "web", "/echo", b"0123456789a", 5)
        .unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(up.requests(), 3);
    let body: Vec<u8> = (0..5000).map(|i| b'a' + (i % 26) as u8).collect();
    let response = client.chunked("PUT", "web", "/echo", &body, 7).unwrap();
    assert_eq!(response.status, 200);
    assert!(
        response.body == body,
        "the partly buffered body arrived changed"
    );
    assert_eq!(up.requests(), 4);
    // A malformed chunk size inside the buffered part is refused before any try.
    client
        .send(b"PUT /echo HTTP/1.1\r\nhost: web\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n")
        .unwrap();
    assert_eq!(client.read_response(false).unwrap().status, 400);
    assert_eq!(up.requests(), 4);
}

fn a_reset_is_retried_on_reset(driver: &str) {
    let up = Upstream::start("up").unwrap();
    let rules = "  rule all {\n    to web\n    retries { attempts 1 on reset backoff 1ms }\n  }";
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &web(&[up.addr()], rules, ""), driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    up.reset_next(1);
    let response = client.get("web", "/", &[]).unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(up.requests(), 2);
    // Two resets use up the one retry: 503 UC with URX.
    up.reset_next(2);
    let response = client.get("web", "/", &[]).unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(response.header("x-ringmesh-flag"), Some("UC,URX"));
    assert_eq!(up.requests(), 4);
}

fn per_try_timeout_retries_a_stalled_try(driver: &str) {
    let up = Upstream::start("up").unwrap();
    let rules = "  rule all {\n    to web\n    timeout 30s\n    \
                 retries { attempts 1 per_try_timeout 200ms on reset backoff 1ms }\n  }";
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &web(&[up.addr()], rules, ""), driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    // The first try stalls; the retry is answered.
    up.hold_next(1);
    let response = client.get("web", "/", &[]).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(up.requests(), 2);
    up.release();
    // Both tries stall: 504 UT, with URX for the used-up retry.
    up.hold_next(2);
    let response = client.get("web", "/", &[]).unwrap();
    assert_eq!(response.status, 504);
    assert_eq!(response.header("x-ringmesh-flag"), Some("UT,URX"));
    up.release();
}

/// An address whose connects hang: a listener with no room in its accept queue drops SYNs.
/// The returned sockets must stay open while it is used.
fn black_hole() -> (SocketAddr, socket2::Socket, TcpStream) {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    // Backlog 0: one connection fills the queue; it is never accepted.
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let filler = TcpStream::connect(addr).unwrap();
    (addr, listener, filler)
}

fn connect_timeout_bounds_a_connect_that_hangs(driver: &str) {
    let (hole, _listener, _filler) = black_hole();
    let scratch = Scratch::new();
    let policy = "  policy { pool { connect_timeout 50ms } }";
    let config = web(&[hole], "  rule all { to web }", policy);
    let meshd = serve(&scratch, &config, driver, &["--connect-timeout", "60m"]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    let response = client.get("web", "/", &[]).unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(response.header("x-ringmesh-flag"), Some("UF"));
    assert!(
        response.text().contains("no connection within 50 ms"),
        "{}",
        response.text()
    );
    drop(meshd);
    // Without a pool setting, --connect-timeout applies.
    let config = web(&[hole], "  rule all { to web }", "");
    let meshd = serve(&scratch, &config, driver, &["--connect-timeout", "80ms"]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    let response = client.get("web", "/", &[]).unwrap();
    assert_eq!(response.status, 503);
    assert!(
        response.text().contains("no connection within 80 ms"),
        "{}",
        response.text()
    );
}

fn max_pending_overflow_answers_503_uo(driver: &str) {
    let up = Upstream::start("up").unwrap();
    let policy = "  policy { pool { max_connections 1 max_pending 1 } }";
    let scratch = Scratch::new();
    let config = web(&[up.addr()], "  rule all { to web }", policy);
    let meshd = serve(&scratch, &config, driver, &[]);
    let outbound = meshd.outbound;
    let get = move || {
        Client::connect(outbound)
            .unwrap()
            .get("web", "/", &[])
            .unwrap()
    };

    // The first request holds the only connection.
    up.hold_next(1);
    let first = std::thread::spawn(get);
    wait_until(|| up.requests() == 1);
    // Of two more, one waits for the connection and the other overflows at once.
    let (tx, rx) = mpsc::channel();
    let others: Vec<_> = (0..2)
        .map(|_| {
            let tx = tx.clone();
            std::thread::spawn(move || tx.send(get()).unwrap())
        })
        .collect();
    let overflowed = rx.recv().unwrap();
    assert_eq!(overflowed.status, 503);
    assert_eq!(overflowed.header("x-ringmesh-flag"), Some("UO"));
    // Admin /clusters shows the pool as it stands: one connection open, one request waiting,
    // both in flight to the endpoint.
    let web = cluster(meshd.admin, "web");
    assert_eq!(web["pool"]["max_connections"], 1);
    assert_eq!(web["pool"]["open_connections"], 1, "{web}");
    assert_eq!(web["pool"]["pending_requests"], 1, "{web}");
    assert_eq!(web["endpoints"][0]["requests_in_flight"], 2, "{web}");
    up.release();
    assert_eq!(first.join().unwrap().status, 200);
    assert_eq!(
        rx.recv().unwrap().status,
        200,
        "the pending one gets the connection"
    );
    for other in others {
        other.join().unwrap();
    }
    assert_eq!(up.requests(), 2);
    assert_eq!(up.connections(), 1);
    // Once both are answered the connection is idle in the pool, still counted as open (the
    // pool takes it back just after the response went out).
    wait_until(|| cluster(meshd.admin, "web")["endpoints"][0]["idle_connections"] == 1);
    let web = cluster(meshd.admin, "web");
    assert_eq!(web["pool"]["open_connections"], 1, "{web}");
    assert_eq!(web["pool"]["pending_requests"], 0, "{web}");
    assert_eq!(web["endpoints"][0]["requests_in_flight"], 0, "{web}");
    assert_eq!(web["endpoints"][0]["idle_connections"], 1, "{web}");
}

/// Group `name` of admin `/clusters`.
fn cluster(admin: SocketAddr, name: &str) -> serde_json::Value {
    let all = clusters_json(admin);
    let clusters = all["clusters"].as_array().unwrap();
    let found = clusters.iter().find(|c| c["name"] == name);
    found
        .unwrap_or_else(|| panic!("no {name} in {all}"))
        .clone()
}

fn max_requests_per_connection_opens_new_connections(driver: &str) {
    let up = Upstream::start("up").unwrap();
    let policy =
        "  policy { pool { max_requests_per_connection 2 idle_timeout 60s connect_timeout 1s } }";
    let scratch = Scratch::new();
    let config = web(&[up.addr()], "  rule all { to web }", policy);
    let meshd = serve(&scratch, &config, driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    for _ in 0..6 {
        assert_eq!(client.get("web", "/", &[]).unwrap().status, 200);
    }
    assert_eq!(up.requests(), 6);
    assert_eq!(up.connections(), 3);
    assert_eq!(client.connections(), 1);
}

fn an_idle_timeout_retires_pooled_connections(driver: &str) {
    let up = Upstream::start("up").unwrap();
    let policy = "  policy { pool { idle_timeout 1ms } }";
    let scratch = Scratch::new();
    let config = web(&[up.addr()], "  rule all { to web }", policy);
    let meshd = serve(&scratch, &config, driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    assert_eq!(client.get("web", "/", &[]).unwrap().status, 200);
    // Longer than the idle timeout by construction, not a timing assertion.
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(client.get("web", "/", &[]).unwrap().status, 200);
    assert_eq!(up.connections(), 2);
}

on_both_drivers!(
    retry_on_503_goes_to_the_other_endpoint,
    exhausted_retries_give_the_last_response_or_urx,
    post_is_retried_only_with_non_idempotent,
    a_body_over_the_retry_buffer_is_not_retried,
    the_retry_buffer_flag_sets_the_limit,
    chunked_bodies_are_retried_within_the_retry_buffer,
    per_try_timeout_retries_a_stalled_try,
    a_reset_is_retried_on_reset,
    connect_timeout_bounds_a_connect_that_hangs,
    max_pending_overflow_answers_503_uo,
    max_requests_per_connection_opens_new_connections,
    an_idle_timeout_retires_pooled_connections,
);

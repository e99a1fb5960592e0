//! HTTP/2 on meshd's inbound: a client offering ALPN `h2` (curl, built on nghttp2) gets
//! HTTP/2, each stream bridged to the application's HTTP/1.1 with the caller's identity;
//! bodies without a length, bodies beyond the flow-control windows and concurrent streams on
//! one connection all arrive whole. With a client of the tests' own: a reset stream stops its
//! application request at once, a connection resetting stream after stream is sent away, a
//! connection cancelling answered streams is not, a client that never answers the GOAWAY is
//! closed all the same, a window kept shut has its stream reset, and what HTTP/2 cannot carry
//! is a 502.

use std::io::Write as _;
use std::process::Stdio;

use bytes::Bytes;
use h2::Reason;

use self::client::{silent_client_frames, H2Client};
use super::*;

mod client;

/// curl with A's certificate against B's inbound, with `args`, then `paths` (each a URL on
/// B), `stdin` as its input; its stdout and stderr (it must succeed).
fn curl_h2(pair: &Pair, args: &[&str], paths: &[&str], stdin: Option<&[u8]>) -> (Vec<u8>, String) {
    let certs = pair.scratch.path().join("a");
    let file = |name: &str| certs.join(name).to_str().unwrap().to_owned();
    let inbound = pair.b.inbound.unwrap();
    // -k: a SPIFFE certificate names no host for curl to check (see envoy.rs).
    let mut command = Command::new("curl");
    command
        .args(["-sS", "-k", "--http2", "-H", "host: reviews"])
        .args(["--cert", &file("cert.pem"), "--key", &file("key.pem")])
        .args(args)
        .args(paths.iter().map(|p| format!("https://{inbound}{p}")))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("curl");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "curl failed: {stderr}");
    (output.stdout, stderr)
}

fn curl_speaks_h2_to_the_inbound_side(driver: &str) {
    let pair = Pair::start(driver, "strict", "reviews", REVIEWS);
    let (out, _) = curl_h2(
        &pair,
        &["-w", "\n%{http_version} %{http_code}"],
        &["/headers"],
        None,
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.ends_with("\n2 200"), "{text}");
    // The application got HTTP/1.1 with the caller's identity and the :authority as Host.
    assert!(
        text.contains(&format!(
            "x-forwarded-client-cert: By={REVIEWS};URI={FRONTEND}"
        )),
        "{text}"
    );
    assert!(text.contains("host: reviews"), "{text}");

    // An upload without a length (curl -T - over h2 sends none) goes to the application
    // chunked; 1 MiB crosses both directions' 64 KiB windows many times.
    let body: Vec<u8> = (0..1_048_576u32).map(|i| b'a' + (i % 26) as u8).collect();
    let (echoed, _) = curl_h2(&pair, &["-T", "-"], &["/echo"], Some(&body));
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "the echoed body differs");

    // Ten concurrent streams on one connection, each answered by its own exchange.
    let paths = vec!["/slow/200"; 10];
    let mut args = vec!["--parallel", "--parallel-max", "10", "-w", "%{http_code}\n"];
    for _ in &paths {
        args.extend(["-o", "/dev/null"]);
    }
    let (codes, _) = curl_h2(&pair, &args, &paths, None);
    let codes = String::from_utf8_lossy(&codes);
    assert_eq!(codes.lines().filter(|c| *c == "200").count(), 10, "{codes}");
    assert_eq!(pair.upstream.requests(), 12);
    let counts = tls_counts(pair.b.admin);
    assert!(
        counts["inbound_h2_connections"].as_u64().unwrap() >= 3,
        "{counts}"
    );
}

on_both_drivers!(curl_speaks_h2_to_the_inbound_side);

/// A connection of the tests' own HTTP/2 client to B's inbound, as A.
fn h2_client(pair: &Pair, window: u32) -> H2Client {
    let certs = pair.scratch.path().join("a");
    H2Client::connect(pair.b.inbound.unwrap(), &certs, window)
}

fn get(path: &str) -> http::Request<()> {
    let uri = format!("https://reviews{path}");
    http::Request::get(uri).body(()).unwrap()
}

/// B's arguments making the application timeout longer than any wait of a test, so a held
/// request can only end early by the client's doing.
const PATIENT: [&str; 2] = ["--upstream-timeout", "60s"];

fn a_client_reset_stops_the_application_request(driver: &str) {
    let pair = Pair::start_b_with_args(driver, &PATIENT);
    let mut client = h2_client(&pair, 65_535);
    pair.upstream.hold_next(1);
    let (_response, mut stream) = client.open(get("/held"), true).unwrap();
    wait_until(|| pair.upstream.requests() == 1);
    stream.send_reset(Reason::CANCEL);
    // B drops the application connection now, not when the application answers.
    wait_until(|| pair.upstream.abandoned() == 1);
    // The connection serves on.
    let (response, _) = client.open(get("/"), true).unwrap();
    let status = client.run(response).unwrap().status();
    assert_eq!(status, 200);
}

on_both_drivers!(a_client_reset_stops_the_application_request);

/// Opens streams on `client` and resets each once the application holds its request, until
/// the sidecar sends the connection away: with GOAWAY `ENHANCE_YOUR_CALM`, once half of
/// Envoy's window of 500 streams was reset (with the lag of its bookkeeping).
fn reset_until_sent_away(pair: &Pair, mut client: H2Client) {
    // Every request stalls at the application, so each reset comes before its response.
    pair.upstream.hold_next(u64::MAX);
    let mut opened = 0;
    while opened < 1000 && !client.is_closed() {
        let Some((_response, mut stream)) = client.open(get("/"), true) else {
            break;
        };
        opened += 1;
        wait_until(|| pair.upstream.requests() == opened || client.is_closed());
        stream.send_reset(Reason::CANCEL);
    }
    let error = client.closed().expect_err("a GOAWAY");
    assert!(error.is_go_away() && error.is_remote(), "{error}");
    assert_eq!(error.reason(), Some(Reason::ENHANCE_YOUR_CALM), "{error}");
    assert!((250..=350).contains(&opened), "{opened} streams");
}

fn a_client_resetting_stream_after_stream_is_sent_away(driver: &str) {
    let pair = Pair::start_b_with_args(driver, &PATIENT);
    let client = h2_client(&pair, 65_535);
    reset_until_sent_away(&pair, client);
    // Every reset stopped its application request.
    wait_until(|| pair.upstream.abandoned() == pair.upstream.requests());
    wait_until(|| tls_counts(pair.b.admin)["inbound_h2_reset_floods"] == 1);
}

on_both_drivers!(a_client_resetting_stream_after_stream_is_sent_away);

/// The same defence on the outbound listener, for an application's h2c: the caller's sidecar
/// sends the flood away.
fn an_h2c_client_resetting_streams_on_the_outbound_side_is_sent_away(driver: &str) {
    let pair = Pair::start_b_with_args(driver, &PATIENT);
    let client = H2Client::connect_h2c(pair.a.outbound, 65_535);
    reset_until_sent_away(&pair, client);
    wait_until(|| tls_counts(pair.a.admin)["inbound_h2_reset_floods"] == 1);
}

on_both_drivers!(an_h2c_client_resetting_streams_on_the_outbound_side_is_sent_away);

fn cancelling_streams_that_were_answered_is_no_flood(driver: &str) {
    let pair = Pair::start_b_with_args(driver, &PATIENT);
    // More body than the window lets through: each stream has its head and waits.
    let mut client = h2_client(&pair, 65_535);
    for _ in 0..300 {
        let (response, mut stream) = client
            .open(get("/chunked?chunks=4&size=65536"), true)
            .expect("the connection stays open");
        let response = client.run(response).unwrap();
        assert_eq!(response.status(), 200);
        stream.send_reset(Reason::CANCEL);
    }
    let (response, _) = client.open(get("/"), true).expect("still open");
    assert_eq!(client.run(response).unwrap().status(), 200);
    assert_eq!(tls_counts(pair.b.admin)["inbound_h2_reset_floods"], 0);
}

on_both_drivers!(cancelling_streams_that_were_answered_is_no_flood);

fn a_client_that_never_answers_the_goaway_is_closed(driver: &str) {
    let pair = Pair::start_b_with_args(
        driver,
        &["--idle-timeout", "1s", "--request-head-timeout", "1s"],
    );
    let certs = pair.scratch.path().join("a");
    // Idle, B sends GOAWAY and the PING h2 waits on before its final GOAWAY; unanswered, it
    // must close the connection itself rather than wait for ever.
    let frames = silent_client_frames(pair.b.inbound.unwrap(), &certs);
    const GOAWAY: u8 = 7;
    const PING: u8 = 6;
    assert!(frames.contains(&GOAWAY), "{frames:?}");
    assert!(frames.contains(&PING), "{frames:?}");
}

on_both_drivers!(a_client_that_never_answers_the_goaway_is_closed);

fn a_window_kept_shut_gets_the_stream_reset(driver: &str) {
    let pair = Pair::start_b_with_args(driver, &["--idle-timeout", "1s"]);
    // No window at all: B can send the head, never a byte of the body.
    let mut client = h2_client(&pair, 0);
    let (response, _) = client
        .open(get("/chunked?chunks=4&size=65536"), true)
        .unwrap();
    let response = client.run(response).unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let error = client
        .run(body.data())
        .expect("an end")
        .expect_err("a reset");
    assert!(error.is_reset() && error.is_remote(), "{error}");
    assert_eq!(error.reason(), Some(Reason::CANCEL), "{error}");
    // With the stream gone the connection is idle, and closes (gracefully, though the
    // client may see the close as an IO error if it was writing then).
    if let Err(e) = client.closed() {
        assert!(e.is_io() || e.reason() == Some(Reason::NO_ERROR), "{e}");
    }
}

on_both_drivers!(a_window_kept_shut_gets_the_stream_reset);

fn what_http2_cannot_carry_is_a_502_and_a_repeated_length_is_one(driver: &str) {
    let pair = Pair::start(driver, "strict", "reviews", REVIEWS);
    // `transfer-encoding: gzip` from the application: HTTP/2 has no way to say it.
    let (out, _) = curl_h2(&pair, &["-w", "%{http_code}"], &["/fail/gzip-coded"], None);
    assert_eq!(String::from_utf8_lossy(&out), "502");

    // The same content-length twice is one length (h2 refuses differing ones).
    let mut client = h2_client(&pair, 65_535);
    let request = http::Request::post("https://reviews/echo")
        .header("content-length", "5")
        .header("content-length", "5")
        .body(())
        .unwrap();
    let (response, mut stream) = client.open(request, false).unwrap();
    stream
        .send_data(Bytes::from_static(b"hello"), true)
        .unwrap();
    let response = client.run(response).unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut echoed = Vec::new();
    while let Some(chunk) = client.run(body.data()) {
        echoed.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(echoed, b"hello");
}

on_both_drivers!(what_http2_cannot_carry_is_a_502_and_a_repeated_length_is_one);

/// An application's h2c through the pair: A (one core) calls B with HTTP/2 over mutual TLS,
/// and opens another connection to B only when its open ones carry as many streams as B
/// allows (100), and only one at a time: none of h2load's 300 concurrent slow streams is
/// refused or queued behind a full connection.
fn streams_beyond_the_servers_limit_open_another_connection(driver: &str) {
    let pair = Pair::start(driver, "strict", "reviews", REVIEWS);
    let url = format!("http://{}/slow/300", pair.a.outbound);
    let args = [
        "-n",
        "600",
        "-c",
        "3",
        "-m",
        "100",
        "-H",
        ":authority: reviews",
    ];
    let out = std::process::Command::new("h2load")
        .args(args)
        .arg(&url)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("600 succeeded, 0 failed") && report.contains("status codes: 600 2xx"),
        "{driver}: {report}"
    );
    let counts = tls_counts(pair.b.admin);
    // 300 streams at once, 100 a connection: three connections (a fourth at most, should a
    // stream's end be counted late), opened one at a time, not one per stream.
    let h2 = counts["inbound_h2_connections"].as_u64().unwrap();
    assert!((3..=4).contains(&h2), "{driver}: {counts}");
    assert_eq!(counts["inbound_handshakes"].as_u64(), Some(h2), "{counts}");
}

on_both_drivers!(streams_beyond_the_servers_limit_open_another_connection);

/// A caller's sidecar A (one core) and two sidecars B of the service `reviews` (its two
/// endpoints, each draining for up to 10 s), all with mutual TLS, before one upstream.
struct TwoCallees {
    scratch: Scratch,
    upstream: Upstream,
    b: [Sidecar; 2],
    a: Sidecar,
}

impl TwoCallees {
    /// With `policy` on the service and `extra` declarations in A's snapshot.
    fn start(driver: &str, policy: &str, extra: &str) -> Self {
        let scratch = Scratch::new();
        let ca = new_ca(&scratch, false);
        let (a_certs, b_certs) = (scratch.path().join("a"), scratch.path().join("b"));
        issue(&ca, FRONTEND, &a_certs);
        issue(&ca, REVIEWS, &b_certs);
        let upstream = Upstream::start("reviews-app").unwrap();
        let b_snapshot = compile_as(&scratch, "b", &config("127.0.0.1:9", &upstream, "strict"));
        let b_certs = b_certs.to_str().unwrap();
        let b_args = [
            "--workload",
            "reviews",
            "--certs",
            b_certs,
            "--drain-timeout",
            "10s",
        ];
        let b = [1, 2].map(|n| {
            let log = scratch.path().join(format!("b{n}.log"));
            start_logged(&b_snapshot, driver, &b_args, &log)
        });
        let endpoints = format!(
            "{}\n  endpoint {}",
            b[0].inbound.unwrap(),
            b[1].inbound.unwrap()
        );
        let a_config = config_with(&endpoints, &upstream, "strict", policy, extra);
        let a_snapshot = compile_as(&scratch, "a", &a_config);
        let a_args = [
            "--workload",
            "frontend",
            "--certs",
            a_certs.to_str().unwrap(),
        ];
        let a = start_logged(&a_snapshot, driver, &a_args, &scratch.path().join("a.log"));
        Self {
            scratch,
            upstream,
            b,
            a,
        }
    }
}

/// POSTs over HTTP/2 between the sidecars while one of the service's two sidecars drains
/// (SIGTERM) under them, as a pod does when it is replaced: it sends GOAWAY and serves every
/// stream it accepted, those whose heads were still on their way included; the caller sends
/// later streams to the other. Its connects to the drained sidecar, once gone, are retried
/// elsewhere (a connect failure loaded no upstream, so it is outside the retry budget) until
/// outlier detection ejects it. No request fails.
fn a_draining_callee_loses_no_stream_between_sidecars(driver: &str) {
    let ejected = "policy { outlier { consecutive_gateway_errors 1 interval 50ms \
                   max_ejection_percent 50 } }";
    let retried = "route reviews { rule all { to reviews\n\
                   retries { attempts 2 on connect-failure non_idempotent } } }";
    let TwoCallees {
        scratch,
        upstream,
        b: [mut draining, _staying],
        a,
    } = TwoCallees::start(driver, ejected, retried);

    let body = scratch.write("body", "a message");
    let url = format!("http://{}/", a.outbound);
    let h2load = std::process::Command::new("h2load")
        .args([
            "-n",
            "20000",
            "-c",
            "2",
            "-m",
            "10",
            "-H",
            ":authority: reviews",
        ])
        .arg("-d")
        .arg(&body)
        .arg(&url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(|| upstream.requests() >= 2000);
    draining.signal_terminate().unwrap();
    assert!(draining.wait().unwrap().success(), "{driver}");
    let out = h2load.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let metrics = admin_text(a.admin, "/metrics");
    let answered: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .filter_map(|l| Some(&l[l.find("response_code")?..]))
        .collect();
    assert!(
        report.contains("20000 succeeded, 0 failed") && report.contains("status codes: 20000 2xx"),
        "{driver}: {report}\n{answered:#?}"
    );
}

on_both_drivers!(a_draining_callee_loses_no_stream_between_sidecars);

/// h2load through A (one core, so its pool limits are whole) with `args` to `path`; its report.
fn h2load(pair: &Pair, args: &[&str], path: &str) -> String {
    let url = format!("http://{}{path}", pair.a.outbound);
    let out = std::process::Command::new("h2load")
        .args(args)
        .args(["-H", ":authority: reviews"])
        .arg(&url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The service's pool limits count HTTP/2 between the sidecars as Envoy's do: a connection
/// carries at most `max_requests_per_connection` streams over its life, then another opens.
fn a_connection_carries_at_most_max_requests_per_connection_streams(driver: &str) {
    let policy = "policy { pool { max_requests_per_connection 10 } }";
    let pair = Pair::start_with(driver, "strict", "reviews", REVIEWS, policy, "");
    let report = h2load(&pair, &["-n", "100", "-c", "1", "-m", "1"], "/");
    assert!(
        report.contains("100 succeeded, 0 failed") && report.contains("status codes: 100 2xx"),
        "{driver}: {report}"
    );
    let counts = tls_counts(pair.b.admin);
    assert_eq!(counts["inbound_h2_connections"], 10, "{driver}: {counts}");
}

/// `max_connections 1` holds A to one connection to B, whose 100 streams B allows; 10 more
/// streams wait as pending requests (`max_pending 10`) and are served as streams end; the
/// others are refused at once, 503 `UO`, as Envoy's circuit breaker refuses them.
fn max_connections_and_max_pending_bound_streams(driver: &str) {
    let policy = "policy { pool { max_connections 1 max_pending 10 } }";
    let pair = Pair::start_with(driver, "strict", "reviews", REVIEWS, policy, "");
    let report = h2load(&pair, &["-n", "300", "-c", "3", "-m", "100"], "/slow/300");
    assert!(
        report.contains("status codes: 110 2xx, 0 3xx, 0 4xx, 190 5xx"),
        "{driver}: {report}"
    );
    let counts = tls_counts(pair.b.admin);
    assert_eq!(counts["inbound_h2_connections"], 1, "{driver}: {counts}");
    let metrics = admin_text(pair.a.admin, "/metrics");
    assert!(
        metrics.contains("\nringmesh_pool_overflows_total 190\n"),
        "{driver}: {metrics}"
    );
}

on_both_drivers!(
    a_connection_carries_at_most_max_requests_per_connection_streams,
    max_connections_and_max_pending_bound_streams,
);

/// With `max_connections 1`, A's one connection goes to one of the two sidecars at a time:
/// the balancer alternates, and a stream for the other closes the idle connection (its place
/// is freed when it has closed) rather than waiting for a place that never frees.
fn an_idle_connection_makes_room_for_another_endpoint(driver: &str) {
    let policy = "policy { pool { max_connections 1 } }";
    let two = TwoCallees::start(driver, policy, "");
    let url = format!("http://{}/", two.a.outbound);
    let out = std::process::Command::new("h2load")
        .args([
            "-n",
            "20",
            "-c",
            "1",
            "-m",
            "1",
            "-H",
            ":authority: reviews",
        ])
        .arg(&url)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("20 succeeded, 0 failed") && report.contains("status codes: 20 2xx"),
        "{driver}: {report}"
    );
    for b in &two.b {
        let counts = tls_counts(b.admin);
        let h2 = counts["inbound_h2_connections"].as_u64().unwrap_or(0);
        assert!(h2 >= 5, "{driver}: each endpoint served some: {counts}");
    }
}

on_both_drivers!(an_idle_connection_makes_room_for_another_endpoint);

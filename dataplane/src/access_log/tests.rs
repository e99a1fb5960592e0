use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::http1::head::{parse_request, MAX_HEADERS};

fn captured(raw: &[u8], format: &Format, http2: bool) -> Captured {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = parse_request(raw, &mut headers)
        .expect("valid head")
        .expect("complete head");
    let mut captured = Captured::default();
    captured.capture(&head, format, http2, None);
    captured
}

fn rule() -> spec::RouteRule {
    spec::RouteRule {
        name: "v2-for-jason".into(),
        matches: Vec::new(),
        destinations: Vec::new(),
        source: spec::SourceLocation {
            file: "mesh.mesh".into(),
            line: 12,
            column: 3,
        },
        timeout_ms: None,
        retries: None,
        fault: None,
        headers: spec::HeaderOps::default(),
        rewrite: None,
        redirect: None,
        mirror: None,
        rate_limit: None,
    }
}

fn entry<'a>(request: &'a Captured, route: Option<&'a spec::RouteRule>) -> Entry<'a> {
    let addr = |s: &str| s.parse::<SocketAddr>().ok();
    Entry {
        start: UNIX_EPOCH + Duration::from_millis(1_796_000_000_123),
        request,
        code: 200,
        grpc_status: None,
        flags: "-",
        bytes_received: 5,
        bytes_sent: 120,
        duration: Duration::from_micros(7_900),
        response_duration: Some(Duration::from_millis(6)),
        upstream_service_time: Some(Duration::from_millis(4)),
        upstream_host: addr("127.0.0.1:9081"),
        upstream_cluster: Some("reviews/v2"),
        downstream: addr("127.0.0.1:50000"),
        downstream_principal: None,
        upstream_principal: Some("spiffe://cluster.local/ns/default/sa/reviews"),
        inbound: false,
        route,
        snapshot: "abc123",
        trace_id: Some(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
    }
}

const HEAD: &[u8] = b"GET /reviews/1?x=\"y\" HTTP/1.1\r\nHost: reviews:9080\r\nUser-Agent: curl/8\r\nx-request-id: r-1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";

#[test]
fn json_lines_carry_every_key_typed() {
    let format = Format::compile(&spec::AccessLog::Json).expect("json");
    let request = captured(HEAD, &format, false);
    let rule = rule();
    let mut out = Vec::new();
    format.render(&entry(&request, Some(&rule)), &mut out);
    assert_eq!(out.last(), Some(&b'\n'));
    let line: serde_json::Value = serde_json::from_slice(&out).expect("one JSON object");
    let expected = serde_json::json!({
        "start_time": "2026-11-30T00:53:20.123Z",
        "method": "GET",
        "authority": "reviews:9080",
        "path": "/reviews/1?x=\"y\"",
        "protocol": "HTTP/1.1",
        "response_code": 200,
        "response_flags": "-",
        "grpc_status": null,
        "duration_ms": 7,
        "upstream_service_time_ms": 4,
        "bytes_received": 5,
        "bytes_sent": 120,
        "upstream_host": "127.0.0.1:9081",
        "upstream_cluster": "reviews/v2",
        "downstream_remote_address": "127.0.0.1:50000",
        "peer_principal": "spiffe://cluster.local/ns/default/sa/reviews",
        "user_agent": "curl/8",
        "x_request_id": "r-1",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "route_name": "v2-for-jason",
        "route_source": "mesh.mesh:12",
        "snapshot": "abc123",
    });
    assert_eq!(line, expected);
}

#[test]
fn json_writes_null_for_what_a_request_lacks() {
    let format = Format::compile(&spec::AccessLog::Json).expect("json");
    let request = captured(b"GET / HTTP/1.0\r\n\r\n", &format, false);
    let mut e = entry(&request, None);
    e.upstream_service_time = None;
    e.upstream_host = None;
    e.trace_id = None;
    let mut out = Vec::new();
    format.render(&e, &mut out);
    let line: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
    for key in ["x_request_id", "trace_id", "route_name", "upstream_host"] {
        assert_eq!(line[key], serde_json::Value::Null, "{key}");
    }
    assert_eq!(line["upstream_service_time_ms"], serde_json::Value::Null);
    assert_eq!(line["protocol"], "HTTP/1.0");
}

#[test]
fn text_renders_operators_with_dashes_for_missing_values() {
    let text = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" \
                %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% \
                %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \
                \"%REQ(USER-AGENT):4%\" %UPSTREAM_HOST% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% \
                %ROUTE_NAME% %ROUTE_SOURCE% %TRACE_ID% %UPSTREAM_PEER_URI_SAN% \
                %DOWNSTREAM_PEER_URI_SAN%";
    let format = Format::compile(&spec::AccessLog::Text(text.into())).expect("text");
    let request = captured(HEAD, &format, true);
    let rule = rule();
    let mut out = Vec::new();
    format.render(&entry(&request, Some(&rule)), &mut out);
    assert_eq!(
        String::from_utf8(out).expect("UTF-8"),
        "[2026-11-30T00:53:20.123Z] \"GET /reviews/1?x=\"y\" HTTP/2\" 200 - 5 120 7 4 \"-\" \
         \"curl\" 127.0.0.1:9081 127.0.0.1 v2-for-jason mesh.mesh:12 \
         4bf92f3577b34da6a3ce929d0e0e4736 spiffe://cluster.local/ns/default/sa/reviews -\n"
    );
}

#[test]
fn truncation_keeps_characters_whole() {
    assert_eq!(truncated("héllo".as_bytes(), Some(2)), b"h");
    assert_eq!(truncated(b"hello", Some(10)), b"hello");
    assert_eq!(truncated(b"hello", None), b"hello");
}

#[test]
fn a_core_without_a_spare_buffer_drops_and_counts() {
    let (to_writer, from_core) = std::sync::mpsc::sync_channel(8);
    let (_spare_tx, spare) = std::sync::mpsc::channel();
    let log = crate::export::sink::CoreLog::new(
        0,
        Some(crate::export::sink::Channel { to_writer, spare }),
    );
    let line = vec![b'x'; 1023];
    let mut scheduled = 0;
    for _ in 0..200 {
        if log.append(|out| {
            out.extend_from_slice(&line);
            out.push(b'\n');
        }) {
            scheduled += 1;
        }
    }
    assert_eq!(scheduled, 1, "one flush is scheduled until it runs");
    let counts = log.counts();
    assert_eq!(counts.lines, 64, "64 KiB of lines fit one buffer");
    assert_eq!(counts.dropped, 136);
    assert!(
        from_core.try_recv().is_err(),
        "nothing went without a spare"
    );
}

#[test]
fn start_times_are_rfc3339_utc_with_milliseconds() {
    let at = |millis: u64| {
        let mut out = Vec::new();
        rfc3339_millis(&mut out, UNIX_EPOCH + Duration::from_millis(millis));
        String::from_utf8(out).expect("ASCII")
    };
    assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(at(951_782_400_007), "2000-02-29T00:00:00.007Z");
    assert_eq!(at(1_709_251_199_050), "2024-02-29T23:59:59.050Z");
    assert_eq!(at(1_735_689_600_000), "2025-01-01T00:00:00.000Z");
    assert_eq!(at(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
}

#[test]
fn addresses_are_written_as_socket_addresses_print() {
    for text in ["127.0.0.1:50000", "10.1.2.3:8", "[::1]:443", "[fe80::1]:80"] {
        let addr: SocketAddr = text.parse().expect("address");
        let mut out = Vec::new();
        crate::json::address(&mut out, Some(addr), true);
        assert_eq!(String::from_utf8(out).expect("ASCII"), text);
        let mut ip = Vec::new();
        crate::json::address(&mut ip, Some(addr), false);
        assert_eq!(String::from_utf8(ip).expect("ASCII"), addr.ip().to_string());
    }
}

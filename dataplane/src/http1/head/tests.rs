use super::*;

/// Framing, keep-alive, host, port, path.
type Parsed = (BodyFraming, bool, String, Option<u16>, String);

fn parse(raw: &[u8]) -> Result<Option<Parsed>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    Ok(parse_request(raw, &mut headers)?.map(|h| {
        (
            h.framing,
            h.keep_alive,
            h.host.to_owned(),
            h.port,
            h.path.to_owned(),
        )
    }))
}

fn forwarded(raw: &[u8]) -> String {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = parse_request(raw, &mut headers).unwrap().unwrap();
    let mut out = Vec::new();
    head.write_forwarded(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn parses_host_port_and_path() {
    let parsed = parse(b"GET /api/x?y=1 HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(
        parsed,
        (
            BodyFraming::None,
            true,
            "reviews".into(),
            Some(9080),
            "/api/x".into()
        )
    );
}

#[test]
fn needs_more_bytes_for_a_partial_head() {
    assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap(), None);
}

#[test]
fn takes_host_from_absolute_form_and_rewrites_target() {
    let raw = b"GET http://ratings:9080/r?q HTTP/1.1\r\nHost: other\r\n\r\n";
    let parsed = parse(raw).unwrap().unwrap();
    assert_eq!(
        (parsed.2.as_str(), parsed.3, parsed.4.as_str()),
        ("ratings", Some(9080), "/r")
    );
    let out = forwarded(raw);
    assert!(
        out.starts_with("GET /r?q HTTP/1.1\r\nhost: ratings:9080\r\n"),
        "{out}"
    );
    assert!(!out.contains("other"), "{out}");
}

#[test]
fn frames_bodies() {
    let cl = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(cl.0, BodyFraming::Length(5));
    let te = parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(te.0, BodyFraming::Chunked);
    let same =
        parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(same, Err(HeadError::DuplicateContentLength));
    let listed = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n");
    assert_eq!(listed, Err(HeadError::DuplicateContentLength));
}

#[test]
fn refuses_smuggling_shapes() {
    let both =
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(parse(both), Err(HeadError::LengthAndChunked));
    let differing = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
    assert_eq!(parse(differing), Err(HeadError::DuplicateContentLength));
    let signed = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n";
    assert_eq!(parse(signed), Err(HeadError::InvalidContentLength));
    let gzip_last = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n";
    assert_eq!(
        parse(gzip_last),
        Err(HeadError::UnsupportedTransferEncoding)
    );
    let no_host = b"GET / HTTP/1.1\r\n\r\n";
    assert_eq!(parse(no_host), Err(HeadError::MissingHost));
}

#[test]
fn maps_limits_to_status_codes() {
    let long_uri = format!(
        "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
        "a".repeat(MAX_URI_BYTES)
    );
    assert_eq!(parse(long_uri.as_bytes()).unwrap_err().status(), 414);
    let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
    let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    assert_eq!(parse(raw.as_bytes()).unwrap_err().status(), 431);
}

#[test]
fn keep_alive_follows_version_and_connection_header() {
    let close = parse(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(!close.1);
    let http10 = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
    assert!(!http10.1);
    let http10_ka = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(http10_ka.1);
}

#[test]
fn strips_hop_by_hop_headers_when_forwarding() {
    let out = forwarded(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, x-private\r\nKeep-Alive: 5\r\n\
          X-Private: secret\r\nTE: trailers\r\nX-Kept: yes\r\n\r\n",
    );
    assert_eq!(out, "GET / HTTP/1.1\r\nHost: a\r\nX-Kept: yes\r\n\r\n");
}

#[test]
fn response_framing_depends_on_method_and_status() {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    let head = parse_response(raw, &mut headers, "HEAD").unwrap().unwrap();
    assert_eq!(head.framing, BodyFraming::None);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = parse_response(raw, &mut headers, "GET").unwrap().unwrap();
    assert_eq!(head.framing, BodyFraming::Length(10));
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let raw = b"HTTP/1.1 200 OK\r\n\r\n";
    let head = parse_response(raw, &mut headers, "GET").unwrap().unwrap();
    assert_eq!(
        (head.framing, head.keep_alive),
        (BodyFraming::UntilClose, false)
    );
}

#[test]
fn connection_header_cannot_strip_framing_or_host() {
    // Stripping Content-Length while still forwarding the body would smuggle the body as a
    // second request to the upstream.
    let out = forwarded(
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length, host, transfer-encoding\r\n\
          Content-Length: 3\r\n\r\n",
    );
    assert_eq!(
        out,
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
    );
}

#[test]
fn forwards_the_original_transfer_coding() {
    let out = forwarded(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(
        out,
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    );
}

#[test]
fn keeps_the_query_of_an_absolute_form_target_without_path() {
    let raw = b"GET http://ratings?x=1 HTTP/1.1\r\n\r\n";
    assert_eq!(parse(raw).unwrap().unwrap().4, "/");
    assert!(forwarded(raw).starts_with("GET /?x=1 HTTP/1.1\r\nhost: ratings\r\n"));
}

#[test]
fn http10_requests_go_upstream_as_http10_and_may_not_be_chunked() {
    assert!(forwarded(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n").starts_with("GET / HTTP/1.0\r\n"));
    let chunked = b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(parse(chunked), Err(HeadError::UnsupportedTransferEncoding));
}

#[test]
fn response_with_a_transfer_coding_drops_content_length() {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    let head = parse_response(raw, &mut headers, "GET").unwrap().unwrap();
    assert_eq!(head.framing, BodyFraming::Chunked);
    let mut out = Vec::new();
    head.write_forwarded(&mut out, false);
    assert_eq!(
        out,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    );

    // A non-chunked final coding is delimited by close whatever the header order.
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n";
    let head = parse_response(raw, &mut headers, "GET").unwrap().unwrap();
    assert_eq!(
        (head.framing, head.keep_alive),
        (BodyFraming::UntilClose, false)
    );
}

#[test]
fn refuses_bare_lf_and_obs_fold() {
    assert_eq!(
        parse(b"GET / HTTP/1.1\nHost: a\n\n"),
        Err(HeadError::BareLf)
    );
    assert_eq!(
        parse(b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"),
        Err(HeadError::BareLf)
    );
    let folded = parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n");
    assert!(matches!(folded, Err(HeadError::Malformed(_))), "{folded:?}");
    assert_eq!(folded.unwrap_err().status(), 400);
}

#[test]
fn forwards_an_upgrade_request_with_its_upgrade_headers() {
    let raw = b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                Sec-WebSocket-Key: x\r\n\r\n";
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    assert!(parse_request(raw, &mut headers).unwrap().unwrap().upgrade);
    assert_eq!(
        forwarded(raw),
        "GET /chat HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key: x\r\nUpgrade: websocket\r\n\
         connection: upgrade\r\n\r\n"
    );
    // Without `Connection: upgrade` the Upgrade header is hop-by-hop noise and is dropped.
    let stray = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    assert!(!parse_request(stray, &mut headers).unwrap().unwrap().upgrade);
    assert_eq!(forwarded(stray), "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
}

fn value(name: &str, value: &str) -> spec::HeaderValue {
    spec::HeaderValue {
        name: name.into(),
        value: value.into(),
    }
}

#[test]
fn request_edits_remove_set_add_in_order_and_keep_the_query() {
    let raw = b"GET http://shop:8080/old/x?q=1&r HTTP/1.1\r\nHost: ignored\r\nX-Keep: k\r\n\
                X-Gone: g\r\nX-Set: old1\r\nx-set: old2\r\nContent-Length: 0\r\n\r\n";
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = parse_request(raw, &mut headers).unwrap().unwrap();
    assert_eq!(head.query, "q=1&r");
    let edits = HeaderEdits {
        set: vec![value("x-set", "new")],
        add: vec![value("x-add", "a"), value("x-keep", "k2")],
        remove: vec!["x-gone".into()],
    };
    let write_path = |out: &mut Vec<u8>| out.extend_from_slice(b"/new/x");
    let mut out = Vec::new();
    head.write_edited(
        &mut out,
        &RequestEdits {
            path: Some(&write_path),
            authority: Some("backend:81"),
            headers: &edits,
        },
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "GET /new/x?q=1&r HTTP/1.1\r\nhost: backend:81\r\nX-Keep: k\r\nContent-Length: 0\r\n\
         x-set: new\r\nx-add: a\r\nx-keep: k2\r\n\r\n"
    );
    // Without edits the absolute form still gets its Host written (port included).
    let mut out = Vec::new();
    head.write_forwarded(&mut out);
    assert!(String::from_utf8(out)
        .unwrap()
        .starts_with("GET /old/x?q=1&r HTTP/1.1\r\nhost: shop:8080\r\n"));
}

#[test]
fn response_edits_apply_to_the_returned_head() {
    let raw =
        b"HTTP/1.1 200 OK\r\nServer: origin\r\nX-Internal: secret\r\nContent-Length: 2\r\n\r\nok";
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = parse_response(raw, &mut headers, "GET").unwrap().unwrap();
    let edits = HeaderEdits {
        set: vec![value("server", "mesh")],
        add: vec![value("x-mesh", "1")],
        remove: vec!["x-internal".into()],
    };
    let mut out = Vec::new();
    head.write_edited(&mut out, true, &edits);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nserver: mesh\r\nx-mesh: 1\r\n\
         connection: close\r\n\r\n"
    );
}

#[test]
fn refuses_fragments_and_hosts_that_could_carry_a_path() {
    let fragment = parse(b"GET /healthz#/admin HTTP/1.1\r\nHost: web\r\n\r\n");
    assert_eq!(fragment.unwrap_err(), HeadError::Fragment);
    for host in ["x/admin", "x?a", "x#", "user@x", "x y"] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_eq!(
            parse(raw.as_bytes()).unwrap_err(),
            HeadError::InvalidHost,
            "{host}"
        );
    }
    for host in [
        "web",
        "web:8080",
        "10.0.0.1:80",
        "[::1]:80",
        "a-b.example_c",
    ] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert!(parse(raw.as_bytes()).is_ok(), "{host}");
    }
}

#[test]
fn empty_lines_before_a_request_line_are_skipped() {
    // RFC 9112 §2.2: the sniffer sends such bytes to the HTTP path rather than relaying them.
    let raw = b"\r\nGET / HTTP/1.1\r\nHost: reviews\r\nx-forwarded-client-cert: forged\r\n\r\n";
    let forwarded = forwarded(raw);
    assert!(forwarded.starts_with("GET / HTTP/1.1\r\n"), "{forwarded:?}");
}

//! Bodies stream through meshd intact, in both framings and both directions.

use std::io::Write;

use ringmesh_tests::*;

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn single_upstream(driver: &str) -> (Upstream, Scratch, Sidecar) {
    let up = Upstream::start("echo").unwrap();
    let scratch = Scratch::new();
    let config = one_service("echo", up.addr());
    let meshd = serve(&scratch, &config, driver, &[]);
    (up, scratch, meshd)
}

fn chunked_request_and_response_bodies_arrive_intact(driver: &str) {
    let (_up, _scratch, meshd) = single_upstream(driver);
    let mut client = Client::connect(meshd.outbound).unwrap();
    let body = payload(300_000);
    // Uneven chunk sizes so chunk boundaries fall everywhere relative to reads.
    let mut raw =
        b"POST /echo-chunked HTTP/1.1\r\nHost: echo\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for chunk in body.chunks(7919) {
        write!(raw, "{:x}\r\n", chunk.len()).unwrap();
        raw.extend_from_slice(chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    client.send(&raw).unwrap();
    let response = client.read_response(false).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert!(
        response.body == body,
        "echoed body differs ({} bytes back)",
        response.body.len()
    );

    // The same connection still works: the chunked messages ended where they should.
    let generated = client
        .get("echo", "/chunked?chunks=50&size=1000", &[])
        .unwrap();
    assert_eq!(generated.body.len(), 50_000);
    assert!(generated
        .body
        .iter()
        .enumerate()
        .all(|(i, &b)| b == b'a' + (i % 26) as u8));
}

fn content_length_bodies_stream_both_ways(driver: &str) {
    let (_up, _scratch, meshd) = single_upstream(driver);
    let mut client = Client::connect(meshd.outbound).unwrap();
    for len in [0, 1, 16 * 1024, 2_000_000] {
        let body = payload(len);
        let response = client.post("echo", "/echo", &body).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body.len(), len);
        assert!(response.body == body, "echo of {len} bytes differs");
    }
}

fn hop_by_hop_headers_are_not_forwarded(driver: &str) {
    let (_up, _scratch, meshd) = single_upstream(driver);
    let mut client = Client::connect(meshd.outbound).unwrap();
    let headers = [
        ("connection", "keep-alive, x-secret"),
        ("x-secret", "1"),
        ("x-app", "yes"),
    ];
    let seen = client
        .get("echo", "/headers", &headers)
        .unwrap()
        .text()
        .to_ascii_lowercase();
    assert!(seen.contains("x-app: yes"), "{seen}");
    assert!(!seen.contains("x-secret"), "{seen}");
    assert!(!seen.contains("connection:"), "{seen}");
}

on_both_drivers!(
    chunked_request_and_response_bodies_arrive_intact,
    content_length_bodies_stream_both_ways,
    hop_by_hop_headers_are_not_forwarded,
);

//! An application's HTTP/2 with prior knowledge (h2c) on the outbound listener: h2load and curl,
//! clients nobody here wrote, each stream served by the HTTP/1.1 request path (routing,
//! metrics) and answered in HTTP/2; HTTP/2 protocol errors get GOAWAY with their code.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use ringmesh_tests::*;

/// Longest any read here waits: a bound on a broken meshd, never a timing assertion.
const READ_BOUND: Duration = Duration::from_secs(10);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The sum of `istio_requests_total` with `code` on the sidecar whose admin is `admin`.
fn requests_counted(admin: SocketAddr, code: &str) -> u64 {
    let metrics = Client::connect(admin)
        .and_then(|mut c| c.get("admin", "/metrics", &[]))
        .unwrap()
        .text();
    let code = format!("response_code=\"{code}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{") && l.contains(&code))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

fn h2load_drives_the_outbound_listener_in_h2c(driver: &str) {
    let up = Upstream::start("reviews").unwrap();
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &one_service("reviews", up.addr()), driver, &[]);
    let url = format!("http://{}/", meshd.outbound);
    let args = [
        "-n",
        "2000",
        "-c",
        "4",
        "-m",
        "10",
        "-H",
        ":authority: reviews",
    ];
    let out = Command::new("h2load")
        .args(args)
        .arg(&url)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("2000 succeeded, 0 failed") && report.contains("status codes: 2000 2xx"),
        "{driver}: {report}"
    );
    assert_eq!(requests_counted(meshd.admin, "200"), 2000, "{driver}");
    // A request no route takes is HTTP/2 too, and the local reply keeps its flag.
    let curl = Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-D",
            "-",
        ])
        .args(["-H", "host: nowhere", &url])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&curl.stdout).to_ascii_lowercase();
    assert!(
        head.starts_with("http/2 404") && head.contains("x-ringmesh-flag: nr"),
        "{driver}: {head}"
    );
}

on_both_drivers!(h2load_drives_the_outbound_listener_in_h2c);

/// The GOAWAY error codes meshd sends after `frames` (a client preface's frames).
fn goaway_codes(addr: SocketAddr, frames: &[u8]) -> Vec<u32> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(READ_BOUND)).unwrap();
    stream.write_all(PREFACE).unwrap();
    stream.write_all(frames).unwrap();
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    let mut codes = Vec::new();
    let mut rest = &received[..];
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        let Some(payload) = rest.get(9..9 + len) else {
            break;
        };
        if rest[3] == 0x7 && payload.len() >= 8 {
            codes.push(u32::from_be_bytes([
                payload[4], payload[5], payload[6], payload[7],
            ]));
        }
        rest = &rest[9 + len..];
    }
    codes
}

fn protocol_errors_get_goaway_with_their_code(driver: &str) {
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &one_service("reviews", free_port()), driver, &[]);
    let settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    // DATA on stream 0: PROTOCOL_ERROR (RFC 9113 6.1).
    let data_on_zero = [&settings[..], b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00"].concat();
    assert_eq!(
        goaway_codes(meshd.outbound, &data_on_zero),
        [0x1],
        "{driver}"
    );
    // A frame longer than the 16 KiB SETTINGS_MAX_FRAME_SIZE allows: FRAME_SIZE_ERROR (4.2).
    let oversized = [&settings[..], b"\xff\xff\xff\x00\x00\x00\x00\x00\x01"].concat();
    assert_eq!(goaway_codes(meshd.outbound, &oversized), [0x6], "{driver}");
    // The sidecar still serves.
    let health = Client::connect(meshd.admin)
        .and_then(|mut c| c.get("admin", "/healthz", &[]))
        .unwrap();
    assert_eq!(health.status, 200);
}

on_both_drivers!(protocol_errors_get_goaway_with_their_code);

/// One HTTP/2 frame: its 9-byte header and `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The frames in `bytes` as (type, stream, payload).
fn frames(bytes: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        let Some(payload) = rest.get(9..9 + len) else {
            break;
        };
        let stream = u32::from_be_bytes([rest[5] & 0x7f, rest[6], rest[7], rest[8]]);
        out.push((rest[3], stream, payload.to_vec()));
        rest = &rest[9 + len..];
    }
    out
}

/// A client that opens more streams than the 100 meshd allows at once, none of them ending
/// (each request body still to come): the streams beyond are refused (RST_STREAM
/// REFUSED_STREAM, 0x7), the connection and the first 100 live on, and the sidecar serves.
fn a_stream_flood_beyond_the_limit_is_refused_stream_by_stream(driver: &str) {
    let up = Upstream::start("reviews").unwrap();
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &one_service("reviews", up.addr()), driver, &[]);
    let mut stream = TcpStream::connect(meshd.outbound).unwrap();
    stream.set_read_timeout(Some(READ_BOUND)).unwrap();
    stream.write_all(PREFACE).unwrap();
    stream.write_all(&frame(0x4, 0, 0, &[])).unwrap();
    // The server's SETTINGS (its stream limit among them) hold once acknowledged.
    let mut received = vec![0; 9];
    stream.read_exact(&mut received).unwrap();
    let len = u32::from_be_bytes([0, received[0], received[1], received[2]]) as usize;
    received.resize(9 + len, 0);
    stream.read_exact(&mut received[9..]).unwrap();
    assert_eq!(received[3], 0x4, "{driver}: not SETTINGS first");
    let mut flood = frame(0x4, 0x1, 0, &[]);
    // GET / for `reviews`: indexed :method, :scheme and :path, a literal :authority.
    let block = [&[0x82, 0x86, 0x84, 0x01, 0x07][..], b"reviews"].concat();
    for id in (1..=210).step_by(2) {
        flood.extend(frame(0x1, 0x4, id, &block));
    }
    stream.write_all(&flood).unwrap();
    // Read until the reset of the last stream comes.
    let mut bytes = Vec::new();
    let mut buf = [0; 16384];
    let refused = |bytes: &[u8]| -> Vec<u32> {
        let resets = frames(bytes).into_iter().filter(|(kind, ..)| *kind == 0x3);
        resets
            .filter(|(_, _, code)| code.as_slice() == [0, 0, 0, 7])
            .map(|(_, id, _)| id)
            .collect()
    };
    while !refused(&bytes).contains(&209) {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "{driver}: closed: {:?}", frames(&bytes));
        bytes.extend_from_slice(&buf[..n]);
    }
    let expected: Vec<u32> = (201..=209).step_by(2).collect();
    assert_eq!(refused(&bytes), expected, "{driver}");
    let goaway = frames(&bytes).into_iter().any(|(kind, ..)| kind == 0x7);
    assert!(!goaway, "{driver}: the connection was sent away");
    let health = Client::connect(meshd.admin)
        .and_then(|mut c| c.get("admin", "/healthz", &[]))
        .unwrap();
    assert_eq!(health.status, 200);
}

on_both_drivers!(a_stream_flood_beyond_the_limit_is_refused_stream_by_stream);

/// h2c on a listener that serves a strict port and a permissive one: the permissive port's
/// streams are served, the strict port's refused (plaintext, as any).
#[test]
fn h2c_never_reaches_a_strict_port_in_plaintext() {
    let up = Upstream::start("app").unwrap();
    let scratch = Scratch::new();
    let id = "spiffe://cluster.local/ns/default/sa/web";
    harness::issue_certificates(scratch.path(), &[("web", id)]).unwrap();
    let config = format!(
        "service web {{ port 9080 http endpoint {0} }}\n\
         workload web {{ identity \"{id}\" serves web\n\
           inbound 9080 http -> {0} mtls strict\n\
           inbound 9081 http -> {0} mtls permissive }}",
        up.addr()
    );
    let certs = scratch.path().join("web");
    let args = ["--workload", "web", "--certs", certs.to_str().unwrap()];
    let meshd = serve(&scratch, &config, "epoll", &args);
    let inbound = format!("http://{}/", meshd.inbound.unwrap());
    let call = |host: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-m",
                "5",
                "--http2-prior-knowledge",
                "-o",
                "/dev/null",
            ])
            .args(["-w", "%{http_code}", "-H", host, &inbound])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(call("host: web:9081"), "200");
    assert_ne!(call("host: web:9080"), "200");
    assert_eq!(
        up.requests(),
        1,
        "the strict port's request reached the application"
    );
}

//! What a proxy owes both sides of an HTTP/1.1 exchange (RFC 9110, RFC 9112): interim
//! responses, `Expect: 100-continue`, hop-by-hop response headers, and the keep-alive idle
//! timeout, over raw sockets so every byte meshd sends is seen.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use ringmesh_tests::*;

/// Longest any read here waits: a bound on a broken meshd, never a timing assertion.
const READ_BOUND: Duration = Duration::from_secs(10);

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(READ_BOUND)).unwrap();
    stream
}

/// Reads until `stream` closes.
fn read_all(stream: &mut TcpStream) -> String {
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// Reads one head (through its blank line).
fn read_head(reader: &mut impl BufRead) -> String {
    let mut head = String::new();
    loop {
        let before = head.len();
        reader.read_line(&mut head).unwrap();
        assert!(head.len() > before, "closed inside a head: {head:?}");
        if head.ends_with("\r\n\r\n") || head == "\r\n" {
            return head;
        }
    }
}

/// An origin that answers every request head it reads with `reply`.
fn raw_origin(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    // A head ends at its blank line; these requests carry no body.
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    if writer.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn interim_responses_reach_http11_clients_only(driver: &str) {
    let up = Upstream::start("hints").unwrap();
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &one_service("web", up.addr()), driver, &[]);
    let mut stream = connect(meshd.outbound);
    stream
        .write_all(b"GET /early-hints HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n")
        .unwrap();
    let text = read_all(&mut stream);
    assert!(
        text.starts_with("HTTP/1.1 103 Early Hints\r\n"),
        "no 103 first:\n{text}"
    );
    let (hints, rest) = text.split_once("\r\n\r\n").unwrap();
    assert!(hints.contains("link: </app.css>; rel=preload"), "{hints}");
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest}");
    assert!(rest.ends_with("hints"), "{rest}");
    // An HTTP/1.0 client must not get a 1xx (RFC 9110 15.2): only the final response.
    let mut stream = connect(meshd.outbound);
    stream
        .write_all(b"GET /early-hints HTTP/1.0\r\nhost: web\r\n\r\n")
        .unwrap();
    let text = read_all(&mut stream);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(!text.contains("103"), "{text}");
}

fn expect_100_continue_is_answered_before_the_body(driver: &str) {
    let up = Upstream::start("echo").unwrap();
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &one_service("web", up.addr()), driver, &[]);
    let mut stream = connect(meshd.outbound);
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nhost: web\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    // The client waits for the go-ahead before it sends the body.
    assert_eq!(read_head(&mut reader), "HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").unwrap();
    let head = read_head(&mut reader);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let mut body = [0u8; 5];
    reader.read_exact(&mut body).unwrap();
    assert_eq!(&body, b"hello");
    assert_eq!(up.requests(), 1);
}

fn an_upstream_100_continue_is_not_passed_on(driver: &str) {
    // An origin that sends its own 100 Continue before the answer: meshd already sent one.
    let origin =
        raw_origin(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &one_service("web", origin), driver, &[]);
    let mut stream = connect(meshd.outbound);
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n")
        .unwrap();
    let text = read_all(&mut stream);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    assert!(text.ends_with("ok"), "{text}");
}

fn hop_by_hop_response_headers_are_not_forwarded(driver: &str) {
    let origin = raw_origin(
        b"HTTP/1.1 200 OK\r\nconnection: x-internal\r\nx-internal: 1\r\n\
          keep-alive: timeout=5\r\nproxy-connection: keep-alive\r\nx-public: 1\r\n\
          content-length: 2\r\n\r\nok",
    );
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &one_service("web", origin), driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    let response = client.get("web", "/", &[]).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "ok");
    assert_eq!(response.header("x-public"), Some("1"));
    for hop in ["x-internal", "keep-alive", "proxy-connection"] {
        assert_eq!(response.header(hop), None, "{hop} was forwarded");
    }
    // The connection meshd owes the client is its own: still open for the next request.
    assert_eq!(client.get("web", "/", &[]).unwrap().text(), "ok");
    assert_eq!(client.connections(), 1);
}

fn an_idle_keep_alive_connection_is_closed(driver: &str) {
    let up = Upstream::start("web").unwrap();
    let scratch = Scratch::new();
    let config = one_service("web", up.addr());
    let meshd = serve(&scratch, &config, driver, &["--idle-timeout", "100ms"]);
    let mut stream = connect(meshd.outbound);
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: web\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let head = read_head(&mut reader);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    let mut body = [0u8; 3];
    reader.read_exact(&mut body).unwrap();
    // Nothing more is sent: meshd closes the idle connection (end of stream, not the bound).
    let mut rest = Vec::new();
    let read = reader.read_to_end(&mut rest);
    assert!(read.is_ok(), "not closed by meshd: {read:?}");
    assert!(rest.is_empty(), "{rest:?}");
}

on_both_drivers!(
    interim_responses_reach_http11_clients_only,
    expect_100_continue_is_answered_before_the_body,
    an_upstream_100_continue_is_not_passed_on,
    hop_by_hop_response_headers_are_not_forwarded,
    an_idle_keep_alive_connection_is_closed,
);

//! Integration tests for `tools::upstream::Upstream` and the `mesh-upstream` binary over real loopback sockets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use tools::upstream::Upstream;

/// A response as read by this test's own minimal client.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Sizes of the chunks when the body was chunked.
    chunks: Option<Vec<usize>>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client connection, deliberately independent of the code under test.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect to upstream");
        Self {
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, request: &[u8]) -> Resp {
        self.reader
            .get_mut()
            .write_all(request)
            .expect("write request");
        self.read_response()
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read line");
        assert!(line.ends_with("\r\n"), "line not CRLF-terminated: {line:?}");
        line.truncate(line.len() - 2);
        line
    }

    fn read_response(&mut self) -> Resp {
        let status_line = self.line();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let mut headers = Vec::new();
        loop {
            let line = self.line();
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').expect("header colon");
            headers.push((n.to_owned(), v.trim().to_owned()));
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
            chunks: None,
        };
        if resp.header("transfer-encoding") == Some("chunked") {
            let mut sizes = Vec::new();
            loop {
                let size = usize::from_str_radix(&self.line(), 16).expect("chunk size");
                if size == 0 {
                    assert_eq!(self.line(), "", "no trailers expected");
                    break;
                }
                sizes.push(size);
                let mut chunk = vec![0; size];
                self.reader.read_exact(&mut chunk).expect("chunk data");
                resp.body.extend_from_slice(&chunk);
                assert_eq!(self.line(), "");
            }
            resp.chunks = Some(sizes);
        } else {
            let len: usize = resp
                .header("content-length")
                .expect("content-length")
                .parse()
                .expect("len");
            resp.body = vec![0; len];
            self.reader.read_exact(&mut resp.body).expect("body");
        }
        resp
    }

    /// True when the server has closed the connection (EOF, no more bytes).
    fn at_eof(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).expect("read to eof");
        rest.is_empty()
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").into_bytes()
}

#[test]
fn echoes_a_content_length_body_with_identity_headers() {
    let up = Upstream::start("v1").expect("start");
    let mut c = Client::connect(up.addr());
    let resp = c.send(b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 11\r\n\r\nhello world");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"hello world");
    assert_eq!(resp.header("content-length"), Some("11"));
    assert_eq!(resp.header("x-upstream"), Some("v1"));
    assert_eq!(resp.header("content-type"), Some("text/plain"));
}

#[test]
fn echoes_a_chunked_request_body_decoded() {
    let up = Upstream::start("v1").expect("start");
    let mut c = Client::connect(up.addr());
    let resp = c.send(
        b"POST /echo HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n\
          5;ext=x\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: yes\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"hello world");
    assert_eq!(resp.header("content-length"), Some("11"));
    // The connection is still usable after the trailers.
    assert_eq!(c.send(&get("/")).body, b"v1");
}

#[test]
fn echo_chunked_replies_in_chunks_of_at_most_1000_bytes() {
    let up = Upstream::start("v1").expect("start");
    let mut c = Client::connect(up.addr());
    let body: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
    let mut req = b"PUT /echo-chunked HTTP/1.1\r\nhost: t\r\ncontent-length: 2500\r\n\r\n".to_vec();
    req.extend_from_slice(&body);
    let resp = c.send(&req);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.chunks, Some(vec![1000, 1000, 500]));
    assert_eq!(resp.body, body);
    assert_eq!(resp.header("x-upstream"), Some("v1"));
}

#[test]
fn chunked_route_sends_n_chunks_of_the_alphabet_pattern() {
    let up = Upstream::start("v1").expect("start");
    let mut c = Client::connect(up.addr());
    let resp = c.send(&get("/chunked?chunks=3&size=10"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.chunks, Some(vec![10, 10, 10]));
    let expected: Vec<u8> = (0..30u8).map(|i| b'a' + i % 26).collect();
    assert_eq!(resp.body, expected);
}

#[test]
fn headers_route_lists_request_headers_in_received_order() {
    let up = Upstream::start("v1").expect("start");
    let mut c = Client::connect(up.addr());
    let resp = c.send(b"GET /headers HTTP/1.1\r\nHost: svc\r\nX-B: 2\r\nx-a: 1\r\n\r\n");
    assert_eq!(resp.status, 200);
    assert_eq!(
        String::from_utf8(resp.body).expect("utf-8"),
        "Host: svc\nX-B: 2\nx-a: 1\n"
    );
}

#[test]
fn status_route_answers_with_the_code_and_the_name() {
    let up = Upstream::start("v2").expect("start");
    let mut c = Client::connect(up.addr());
    let resp = c.send(&get("/status/503"));
    assert_eq!(resp.status, 503);
    assert_eq!(resp.body, b"v2");
    assert_eq!(resp.header("x-upstream"), Some("v2"));
}

#[test]
fn set_failing_answers_every_path_with_the_status_until_cleared() {
    let up = Upstream::start("flaky").expect("start");
    let mut c = Client::connect(up.addr());
    assert_eq!(c.send(&get("/")).status, 200);
    up.set_failing(Some(503));
    for path in ["/", "/echo", "/status/200"] {
        let resp = c.send(&get(path));
        assert_eq!(
            (resp.status, resp.body.as_slice()),
            (503, b"flaky".as_slice())
        );
    }
    up.set_failing(None);
    assert_eq!(c.send(&get("/")).status, 200);
    assert_eq!(up.connections(), 1);
}

#[test]
fn other_paths_answer_with_the_name() {
    let up = Upstream::start("reviews-v3").expect("start");
    let mut c = Client::connect(up.addr());
    let resp = c.send(&get("/some/path?x=1"));
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, b"reviews-v3".as_slice())
    );
}

#[test]
fn keeps_the_connection_alive_between_requests() {
    let up = Upstream::start("v1").expect("start");
    let mut c = Client::connect(up.addr());
    assert_eq!(c.send(&get("/a")).body, b"v1");
    let second = c.send(&get("/b"));
    assert_eq!(second.body, b"v1");
    assert_eq!(second.header("connection"), None);
    assert_eq!(up.connections(), 1);
    assert_eq!(up.requests(), 2);
}

#[test]
fn honours_connection_close() {
    let up = Upstream::start("v1").expect("start");
    let mut c = Client::connect(up.addr());
    let resp = c.send(b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(c.at_eof());
}

#[test]
fn closes_http10_without_keep_alive_and_keeps_it_with() {
    let up = Upstream::start("v1").expect("start");
    let mut c = Client::connect(up.addr());
    let resp = c.send(b"GET /chunked?chunks=2&size=3 HTTP/1.0\r\nconnection: keep-alive\r\n\r\n");
    // HTTP/1.0 has no chunked coding: the body comes with a length instead.
    assert_eq!(
        (resp.body.as_slice(), &resp.chunks),
        (b"abcdef".as_slice(), &None)
    );
    assert_eq!(resp.header("connection"), Some("keep-alive"));
    let resp = c.send(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(c.at_eof());
}

#[test]
fn answers_malformed_requests_with_400_and_closes() {
    let up = Upstream::start("v1").expect("start");
    for request in [
        b"NOT A REQUEST\r\n\r\n".as_slice(),
        b"POST /echo HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n",
        b"POST /echo HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"GET /status/abc HTTP/1.1\r\n\r\n",
    ] {
        let mut c = Client::connect(up.addr());
        let resp = c.send(request);
        assert_eq!(resp.status, 400, "{}", String::from_utf8_lossy(request));
        assert!(c.at_eof());
    }
}

#[test]
fn dropping_closes_idle_connections_and_the_listener() {
    let up = Upstream::start("v1").expect("start");
    let addr = up.addr();
    let mut c = Client::connect(addr);
    assert_eq!(c.send(&get("/")).status, 200);
    drop(up);
    assert!(c.at_eof());
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn binary_prints_its_address_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mesh-upstream"))
        .args(["--name", "bin1", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn mesh-upstream");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read listening line");
    let addr: SocketAddr = line
        .trim_end()
        .strip_prefix("listening ")
        .expect("listening prefix")
        .parse()
        .expect("addr");
    let resp = Client::connect(addr).send(&get("/"));
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, b"bin1".as_slice())
    );
}

#[test]
fn fail_next_answers_the_status_n_times_then_routes_again() {
    let up = Upstream::start("flaky").unwrap();
    up.fail_next(2, 503);
    let mut c = Client::connect(up.addr());
    for _ in 0..2 {
        let r = c.send(&get("/echo"));
        assert_eq!(r.status, 503);
        assert_eq!(r.header("x-upstream"), Some("flaky"));
    }
    assert_eq!(c.send(&get("/")).status, 200);
    assert_eq!(up.requests(), 3);
}

#[test]
fn held_requests_are_counted_and_answer_once_released() {
    let up = Upstream::start("slow").unwrap();
    up.hold_next(1);
    let addr = up.addr();
    let held = std::thread::spawn(move || Client::connect(addr).send(&get("/")).status);
    while up.requests() == 0 {
        std::thread::yield_now();
    }
    // A request beyond the held ones is answered at once.
    assert_eq!(Client::connect(up.addr()).send(&get("/")).status, 200);
    assert!(!held.is_finished());
    up.release();
    assert_eq!(held.join().unwrap(), 200);
}

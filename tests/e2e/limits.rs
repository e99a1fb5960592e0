//! Local rate limits and request mirroring through the real meshc and meshd: DSL text as
//! docs/dsl.md documents it, real upstreams, real sockets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use ringmesh_tests::*;

/// `reviews` served by `main`; `shadow` served by `mirror`; `rules` go in the reviews route.
fn config(main: SocketAddr, mirror: SocketAddr, rules: &str) -> String {
    format!(
        r#"
service reviews {{
  port 9080 http
  endpoint {main}
}}

service shadow {{
  port 9080 http
  endpoint {mirror}
}}

route reviews {{
{rules}
  rule open {{
    to reviews
  }}
}}
"#
    )
}

/// A request as a [`Recorder`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    path: String,
    host: String,
    body: Vec<u8>,
}

/// A minimal HTTP/1.1 origin that records every request it reads. It answers `200 mirror`,
/// or never answers when built with [`Recorder::stalling`].
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Recorder {
    fn answering() -> Self {
        Self::start(true)
    }

    fn stalling() -> Self {
        Self::start(false)
    }

    fn start(answer: bool) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (s, st, c) = (seen.clone(), stop.clone(), conns.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let Ok(clone) = stream.try_clone() {
                    c.lock().unwrap().push(clone);
                }
                let seen = s.clone();
                thread::spawn(move || record(stream, &seen, answer));
            }
        });
        Self {
            addr,
            seen,
            stop,
            conns,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn saw(&self, path: &str) -> Option<Seen> {
        self.seen().into_iter().find(|s| s.path == path)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().iter() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        // Wake the accept loop so it sees the stop flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads requests (Content-Length or chunked bodies) until the peer closes; records each.
fn record(stream: TcpStream, seen: &Mutex<Vec<Seen>>, answer: bool) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts.next().unwrap_or("").to_owned();
        let (mut host, mut length, mut chunked) = (String::new(), 0usize, false);
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.to_ascii_lowercase().as_str() {
                    "host" => host = value.trim().to_owned(),
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
                    _ => {}
                }
            }
        }
        let body = if chunked {
            match read_chunked(&mut reader) {
                Some(body) => body,
                None => return,
            }
        } else {
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            body
        };
        seen.lock().unwrap().push(Seen {
            method,
            path,
            host,
            body,
        });
        if answer {
            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nmirror";
            if writer.write_all(reply).is_err() {
                return;
            }
        }
    }
}

/// Reads a chunked body (no trailers) and returns its data.
fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let size = usize::from_str_radix(line.trim_end(), 16).ok()?;
        let mut data = vec![0; size + 2];
        reader.read_exact(&mut data).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(&data[..size]);
    }
}

/// One GET from a client socket bound to `source`, on its own connection; the status and the
/// raw response.
fn get_from(source: Ipv4Addr, to: SocketAddr, path: &str) -> (u16, String) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    let request = format!("GET {path} HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

fn rate_limit_answers_429_after_the_bucket_empties(driver: &str) {
    let up = Upstream::start("up").unwrap();
    let unused = Recorder::answering();
    let rules = r#"
  rule limited {
    match path prefix "/limited"
    to reviews
    rate_limit 5 per 1m
  }
"#;
    let scratch = Scratch::new();
    let meshd = serve(
        &scratch,
        &config(up.addr(), unused.addr, rules),
        driver,
        &[],
    );
    let mut client = Client::connect(meshd.outbound).unwrap();
    for i in 0..5 {
        let response = client.get("reviews", "/limited", &[]).unwrap();
        assert_eq!(response.status, 200, "request {i}: {}", response.text());
    }
    let limited = client.get("reviews", "/limited", &[]).unwrap();
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert_eq!(limited.header("x-ringmesh-flag"), Some("RL"));
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "retry-after {retry_after}");
    assert!(
        limited.text().contains("reviews/limited"),
        "{}",
        limited.text()
    );
    assert_eq!(up.requests(), 5, "the upstream saw the limited request");
    // Other rules are not limited, and the connection stays usable.
    assert_eq!(client.get("reviews", "/other", &[]).unwrap().status, 200);
    assert_eq!(client.connections(), 1);
}

fn per_source_limits_each_client_address(driver: &str) {
    let up = Upstream::start("up").unwrap();
    let unused = Recorder::answering();
    let rules = r#"
  rule limited {
    match path prefix "/p"
    to reviews
    rate_limit 2 per 1m per_source
  }
"#;
    let scratch = Scratch::new();
    let meshd = serve(
        &scratch,
        &config(up.addr(), unused.addr, rules),
        driver,
        &[],
    );
    let first = Ipv4Addr::new(127, 0, 0, 1);
    let second = Ipv4Addr::new(127, 0, 0, 2);
    for _ in 0..2 {
        assert_eq!(get_from(first, meshd.outbound, "/p").0, 200);
    }
    let (status, response) = get_from(first, meshd.outbound, "/p");
    assert_eq!(status, 429, "{response}");
    assert!(
        response.to_ascii_lowercase().contains("retry-after:"),
        "{response}"
    );
    // Another caller has its own bucket.
    assert_eq!(get_from(second, meshd.outbound, "/p").0, 200);
    assert_eq!(get_from(second, meshd.outbound, "/p").0, 200);
    assert_eq!(get_from(second, meshd.outbound, "/p").0, 429);
    assert_eq!(up.requests(), 4);
}

fn buckets_survive_a_reload_unless_the_limit_changes(driver: &str) {
    let up = Upstream::start("up").unwrap();
    let other = Recorder::answering();
    // `marker` routes a path to the other upstream once a reload is installed.
    let rules = |limit: &str, marker: &str| {
        format!(
            r#"
  rule {marker} {{
    match path exact "/{marker}"
    to shadow
  }}
  rule limited {{
    match path prefix "/limited"
    to reviews
    rate_limit {limit}
  }}
"#
        )
    };
    let scratch = Scratch::new();
    let mesh = |limit: &str, marker: &str| config(up.addr(), other.addr, &rules(limit, marker));
    let meshd = serve(
        &scratch,
        &mesh("2 per 1m", "before"),
        driver,
        &["--watch-interval", "0s"],
    );
    let mut client = Client::connect(meshd.outbound).unwrap();
    let mut status = |path: &str| client.get("reviews", path, &[]).unwrap().status;
    assert_eq!(status("/limited"), 200);
    assert_eq!(status("/limited"), 200);
    assert_eq!(status("/limited"), 429);
    let reload_to = |limit: &str, marker: &str| {
        compile(&scratch, &mesh(limit, marker));
        let reply = Client::connect(meshd.admin)
            .unwrap()
            .request("POST", "admin", "/reload", &[], b"")
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        let path = format!("/{marker}");
        let mut client = Client::connect(meshd.outbound).unwrap();
        wait_until(|| client.get("reviews", &path, &[]).unwrap().text() == "mirror");
    };
    // Same rule, same limit (behind a new rule): still empty.
    reload_to("2 per 1m", "after");
    assert_eq!(status("/limited"), 429);
    // A changed limit starts full.
    reload_to("3 per 1m", "changed");
    assert_eq!(status("/limited"), 200);
}

fn mirror_copies_requests_with_a_shadow_host(driver: &str) {
    let up = Upstream::start("main").unwrap();
    let mirror = Recorder::answering();
    let rules = r#"
  rule mirrored {
    match path prefix "/m"
    to reviews
    mirror shadow
  }
"#;
    let scratch = Scratch::new();
    let meshd = serve(
        &scratch,
        &config(up.addr(), mirror.addr, rules),
        driver,
        &[],
    );
    let mut client = Client::connect(meshd.outbound).unwrap();
    let response = client.get("reviews", "/m/get?x=1", &[]).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "main", "the mirror answered the client");
    wait_until(|| mirror.saw("/m/get?x=1").is_some());
    let seen = mirror.saw("/m/get?x=1").unwrap();
    assert_eq!(seen.host, "reviews-shadow");
    assert_eq!(seen.method, "GET");

    // A small body goes with the head, a larger one streams: both are copied.
    let small = vec![b's'; 100];
    let streamed: Vec<u8> = (0..40 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    for (path, body) in [("/m/small", &small), ("/m/streamed", &streamed)] {
        let response = client.post("reviews", path, body).unwrap();
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.text(), "main");
    }
    wait_until(|| mirror.saw("/m/small").is_some() && mirror.saw("/m/streamed").is_some());
    assert_eq!(mirror.saw("/m/small").unwrap().body, small);
    let copy = mirror.saw("/m/streamed").unwrap();
    assert_eq!(copy.method, "POST");
    assert_eq!(copy.host, "reviews-shadow");
    assert!(copy.body == streamed, "the streamed body's copy differs");

    // Bodies over 64 KiB are forwarded but not mirrored; a later request's copy arriving
    // shows the big one was never sent (it is skipped before the request is forwarded).
    let big = vec![b'b'; 100 * 1024];
    assert_eq!(client.post("reviews", "/m/big", &big).unwrap().status, 200);
    assert_eq!(client.get("reviews", "/m/after", &[]).unwrap().status, 200);
    wait_until(|| mirror.saw("/m/after").is_some());
    assert!(mirror.saw("/m/big").is_none());
    // Chunked bodies are copied while they stay within 64 KiB, framing included; a longer
    // one loses its copy once it outgrows the bound, and is still forwarded whole.
    let chunked = &streamed[..30 * 1024];
    let response = client
        .chunked("POST", "reviews", "/m/chunked", chunked, 1000)
        .unwrap();
    assert_eq!(response.status, 200);
    let response = client
        .chunked("POST", "reviews", "/m/long", &big, 1000)
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        client.get("reviews", "/m/after-long", &[]).unwrap().status,
        200
    );
    wait_until(|| mirror.saw("/m/chunked").is_some() && mirror.saw("/m/after-long").is_some());
    assert!(
        mirror.saw("/m/chunked").unwrap().body == chunked,
        "the chunked copy differs"
    );
    // The long one's copy was given up (counted as failed, its slot freed), never sent.
    let mirrors = clusters_json(meshd.admin)["mirrors"].clone();
    assert_eq!(mirrors["failed"], 1, "{mirrors}");
    assert!(mirror.saw("/m/long").is_none());
    // Requests of other rules are not mirrored.
    assert_eq!(client.get("reviews", "/plain", &[]).unwrap().status, 200);
    assert_eq!(client.get("reviews", "/m/last", &[]).unwrap().status, 200);
    wait_until(|| mirror.saw("/m/last").is_some());
    assert!(mirror.saw("/plain").is_none());
    assert_eq!(up.requests(), 10);
}

fn a_stalled_mirror_never_fails_the_main_requests(driver: &str) {
    let up = Upstream::start("main").unwrap();
    let mirror = Recorder::stalling();
    let rules = r#"
  rule mirrored {
    match path prefix "/r"
    to reviews
    mirror shadow 100%
  }
"#;
    let scratch = Scratch::new();
    // Copies wait for the stalled mirror's answer for the whole test, so they stay in flight.
    let args = ["--upstream-timeout", "60m"];
    let meshd = serve(
        &scratch,
        &config(up.addr(), mirror.addr, rules),
        driver,
        &args,
    );
    let mut client = Client::connect(meshd.outbound).unwrap();
    // More requests than a core lets mirror copies be in flight (64): the rest are skipped.
    for i in 0..100 {
        let path = format!("/r/{i}");
        let response = client.post("reviews", &path, b"payload").unwrap();
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        assert_eq!(response.text(), "main");
    }
    assert_eq!(up.requests(), 100);
    // The copies did reach the stalled mirror, which never answered them.
    wait_until(|| !mirror.seen().is_empty());
    assert!(
        mirror.seen().len() <= 64,
        "{} copies in flight",
        mirror.seen().len()
    );
}

fn retried_requests_are_mirrored_once_with_their_buffered_body(driver: &str) {
    let up = Upstream::start("main").unwrap();
    let mirror = Recorder::answering();
    let rules = r#"
  rule mirrored {
    match path prefix "/m"
    to reviews
    retries { attempts 2 on 503 backoff 1ms non_idempotent }
    mirror shadow
  }
"#;
    let scratch = Scratch::new();
    let meshd = serve(
        &scratch,
        &config(up.addr(), mirror.addr, rules),
        driver,
        &[],
    );
    let mut client = Client::connect(meshd.outbound).unwrap();
    // Two failed tries and a third that succeeds: the copy goes out once, with the body that
    // was buffered for the retries (over the coalescing size, so not sent with the head).
    up.fail_next(2, 503);
    let body: Vec<u8> = (0..40 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let response = client.post("reviews", "/m/retried", &body).unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), "main");
    assert_eq!(up.requests(), 3);
    // Copies are tasks of their own, so the later request's small copy may arrive before the
    // first one's 40 KiB: wait for both, then count (a copy per try would have left by then).
    assert_eq!(client.get("reviews", "/m/after", &[]).unwrap().status, 200);
    wait_until(|| mirror.saw("/m/after").is_some() && mirror.saw("/m/retried").is_some());
    let copies: Vec<Seen> = mirror
        .seen()
        .into_iter()
        .filter(|s| s.path == "/m/retried")
        .collect();
    assert_eq!(copies.len(), 1, "one copy per client request, not per try");
    assert_eq!(copies[0].host, "reviews-shadow");
    assert!(copies[0].body == body, "the buffered body's copy differs");
}

on_both_drivers!(
    rate_limit_answers_429_after_the_bucket_empties,
    per_source_limits_each_client_address,
    buckets_survive_a_reload_unless_the_limit_changes,
    mirror_copies_requests_with_a_shadow_host,
    a_stalled_mirror_never_fails_the_main_requests,
    retried_requests_are_mirrored_once_with_their_buffered_body,
);

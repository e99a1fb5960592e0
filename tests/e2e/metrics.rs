//! One sidecar's request metrics for what goes wrong after a response started: an upstream
//! body that breaks off is `UC`, with the status the client already got.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use ringmesh_tests::*;

/// An upstream that promises 100 body bytes, sends 5, and closes.
fn truncating_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut head = [0u8; 1024];
            let _ = conn.read(&mut head);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort");
        }
    });
    addr
}

fn flags_of(admin: SocketAddr) -> Vec<String> {
    let text = Client::connect(admin)
        .and_then(|mut c| c.get("admin", "/metrics", &[]))
        .map(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .map(|l| {
            let code = l
                .split("response_code=\"")
                .nth(1)
                .unwrap_or("")
                .split('"')
                .next();
            let flags = l
                .split("response_flags=\"")
                .nth(1)
                .unwrap_or("")
                .split('"')
                .next();
            format!("{} {}", code.unwrap_or(""), flags.unwrap_or(""))
        })
        .collect()
}

#[test]
fn an_upstream_body_that_breaks_off_is_counted_uc_with_its_status() {
    let scratch = Scratch::new();
    let meshd = serve(
        &scratch,
        &one_service("web", truncating_upstream()),
        "epoll",
        &[],
    );
    let mut client = TcpStream::connect(meshd.outbound).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: web\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = client.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    wait_until(|| flags_of(meshd.admin) == ["200 UC"]);
}

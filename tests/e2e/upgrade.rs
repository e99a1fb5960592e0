//! Protocol upgrades (WebSocket handshakes) pass through meshd as a raw byte tunnel.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use ringmesh_tests::*;

/// An upstream that accepts one upgrade and then answers every byte upper-cased, each piece
/// as soon as it is read.
pub(crate) fn upgrading_upstream() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            if reader.read_line(&mut head).unwrap() == 0 {
                return;
            }
        }
        let lower = head.to_ascii_lowercase();
        let mut conn = conn;
        if !(lower.contains("upgrade: echo-upper") && lower.contains("connection: upgrade")) {
            conn.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
            return;
        }
        conn.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo-upper\r\nConnection: Upgrade\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => conn.write_all(&buf[..n].to_ascii_uppercase()).unwrap(),
            }
        }
        // The client's close reached us through meshd; close our side too.
    });
    addr
}

fn upgrade_becomes_a_two_way_tunnel(driver: &str) {
    let upstream = upgrading_upstream();
    let scratch = Scratch::new();
    let config = one_service("ws", upstream);
    let meshd = serve(&scratch, &config, driver, &[]);

    let mut conn = TcpStream::connect(meshd.outbound).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    conn.write_all(
        b"GET /chat HTTP/1.1\r\nHost: ws\r\nConnection: Upgrade\r\nUpgrade: echo-upper\r\n\r\n",
    )
    .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        assert!(
            reader.read_line(&mut head).unwrap() > 0,
            "closed during the handshake: {head}"
        );
    }
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo-upper"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase().contains("connection: upgrade"),
        "{head}"
    );

    for message in ["hello", "through the mesh"] {
        conn.write_all(message.as_bytes()).unwrap();
        let mut echoed = vec![0u8; message.len()];
        reader.read_exact(&mut echoed).unwrap();
        assert_eq!(echoed, message.to_ascii_uppercase().as_bytes());
    }
    // Half-close: the upstream sees the end, closes, and the client sees the end in turn.
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

on_both_drivers!(upgrade_becomes_a_two_way_tunnel);

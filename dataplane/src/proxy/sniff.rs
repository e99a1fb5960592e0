//! Captured connections need not speak HTTP: capture hands meshd every TCP connection the
//! application opens (TLS to an outside API, a database, SSH) and every one other hosts open to
//! it. The first bytes decide: an HTTP/1.x request line or HTTP/2's preface (h2c with prior
//! knowledge) is served as HTTP; anything else, or silence (a server-first protocol waits for
//! the server's greeting), is relayed as TCP, to where it was sent outbound and to the
//! application inbound.

use std::time::Duration;

use crate::conn::Conn;
use crate::percore::Core;

/// How long a captured connection may stay silent before it is taken for a server-first
/// protocol (MySQL, SMTP, Redis banners) and relayed; Istio's protocol detection waited as long.
const SNIFF_TIMEOUT: Duration = Duration::from_millis(100);

/// Longest method meshd waits for before deciding a connection is not HTTP.
const LONGEST_METHOD: usize = 16;

/// What the first bytes of a connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sniffed {
    /// An HTTP/1.x request line: serve it.
    Http,
    /// HTTP/2's connection preface (h2c with prior knowledge): serve it.
    Http2,
    /// Anything else: relay the bytes.
    Opaque,
    /// The client closed (or a read failed) before saying anything decisive.
    Closed,
}

/// Reads until the buffered bytes decide what `down` speaks; the bytes stay buffered.
pub(super) async fn sniff(down: &mut Conn, core: &Core) -> Sniffed {
    // Wait for bytes without reading them: a read abandoned at the timeout could take bytes
    // with it (io_uring may complete it as it is cancelled).
    match monoio::time::timeout(SNIFF_TIMEOUT, down.stream.readable()).await {
        Err(_) => return Sniffed::Opaque,
        Ok(Err(_)) => return Sniffed::Closed,
        Ok(Ok(())) => {}
    }
    if !matches!(down.fill().await, Ok(n) if n > 0) {
        return Sniffed::Closed;
    }
    loop {
        if let Some(decided) = classify(down.buffered()) {
            return decided;
        }
        // A partial method: the rest is due as fast as any request head.
        match monoio::time::timeout(core.settings.head_timeout, down.fill()).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Sniffed::Closed,
        }
    }
}

/// `None` while the bytes could still start a request line.
fn classify(bytes: &[u8]) -> Option<Sniffed> {
    // Empty lines before a request line are HTTP's to ignore (RFC 9112 §2.2): relayed raw,
    // they would carry a request past the sidecar's header handling (a forged
    // x-forwarded-client-cert), so the HTTP path takes them, and answers what is not HTTP 400.
    if matches!(bytes.first(), Some(b'\r' | b'\n')) {
        return Some(Sniffed::Http);
    }
    for (i, &byte) in bytes.iter().enumerate().take(LONGEST_METHOD + 1) {
        match byte {
            b'A'..=b'Z' => {}
            // HTTP/2's connection preface: the `PRI` method exists for nothing else.
            b' ' if &bytes[..i] == b"PRI" => return Some(Sniffed::Http2),
            b' ' if i > 0 => return Some(Sniffed::Http),
            _ => return Some(Sniffed::Opaque),
        }
    }
    (bytes.len() > LONGEST_METHOD).then_some(Sniffed::Opaque)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_is_http_and_anything_else_is_relayed() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Sniffed::Http));
        assert_eq!(classify(b"OPTIONS "), Some(Sniffed::Http));
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"\x16\x03\x01\x02\x00"), Some(Sniffed::Opaque));
        assert_eq!(classify(b"SSH-2.0-OpenSSH"), Some(Sniffed::Opaque));
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), Some(Sniffed::Http2));
        assert_eq!(classify(b" GET"), Some(Sniffed::Opaque));
        assert_eq!(classify(b"\r\nGET / HTTP/1.1\r\n"), Some(Sniffed::Http));
        assert_eq!(classify(b"\n"), Some(Sniffed::Http));
        assert_eq!(classify(&[b'A'; 17]), Some(Sniffed::Opaque));
    }
}

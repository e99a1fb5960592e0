//! Request and response heads: parse with httparse, decide body framing, refuse what could
//! smuggle, and write the forwarded head from the original bytes minus hop-by-hop headers.

use httparse::Header;
use spec::HeaderEdits;

use crate::actions::{edited_away, write_added, NO_EDITS};

/// Most headers a request or response head may carry.
pub const MAX_HEADERS: usize = 100;
/// Largest request or response head, in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Longest request target, in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

/// Why a head was refused; each maps to the status meshd answers with.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Not valid HTTP/1.x.
    #[error("malformed head: {0}")]
    Malformed(httparse::Error),
    /// More than [`MAX_HEADERS`] headers.
    #[error("more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    /// Longer than [`MAX_HEAD_BYTES`].
    #[error("head larger than {MAX_HEAD_BYTES} bytes")]
    TooLarge,
    /// Request target longer than [`MAX_URI_BYTES`].
    #[error("request target longer than {MAX_URI_BYTES} bytes")]
    UriTooLong,
    /// Both Content-Length and Transfer-Encoding: a request smuggling vector.
    #[error("both content-length and transfer-encoding present")]
    LengthAndChunked,
    /// Content-Length is not a number, or several disagree.
    #[error("invalid or conflicting content-length")]
    InvalidContentLength,
    /// A request carries Content-Length more than once (even with equal values): parsers that
    /// merge duplicates and parsers that take one of them disagree, which smuggling exploits.
    #[error("duplicate content-length")]
    DuplicateContentLength,
    /// A transfer coding other than a final `chunked`.
    #[error("unsupported transfer-encoding")]
    UnsupportedTransferEncoding,
    /// An HTTP/1.1 request without a Host header.
    #[error("missing host header")]
    MissingHost,
    /// A line ends in LF without CR: parsers disagree on those, which smuggling exploits.
    #[error("bare LF in the request head")]
    BareLf,
    /// The request target carries a fragment (`#`), which no request target has: a server
    /// that drops it sees another path than authorization did.
    #[error("fragment in the request target")]
    Fragment,
    /// The Host (or an absolute target's authority) holds what no host and port can (`/`,
    /// `?`, `#`, `@`, spaces): a hop that builds a URI from it would read another path.
    #[error("invalid host")]
    InvalidHost,
}

impl HeadError {
    /// The status code a proxy answers a bad request head with.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooManyHeaders | Self::TooLarge => 431,
            Self::UriTooLong => 414,
            Self::UnsupportedTransferEncoding => 501,
            _ => 400,
        }
    }
}

/// A parsed request head, borrowing the connection's read buffer.
#[derive(Debug)]
pub struct RequestHead<'b, 'h> {
    /// Method token.
    pub method: &'b str,
    /// Request target in origin form (`/path?query`).
    pub target: &'b str,
    /// Path without the query string.
    pub path: &'b str,
    /// Query string without the `?`; empty when there is none.
    pub query: &'b str,
    /// Host from the Host header or an absolute-form target, without port.
    pub host: &'b str,
    /// Port from the host, if given.
    pub port: Option<u16>,
    /// Minor HTTP version: 0 or 1.
    pub minor_version: u8,
    /// Headers as received.
    pub headers: &'h [Header<'b>],
    /// Bytes of the head including the final CRLF.
    pub len: usize,
    /// How the request body is delimited.
    pub framing: BodyFraming,
    /// Whether the client wants the connection kept open afterwards.
    pub keep_alive: bool,
    /// Whether the client sent `Expect: 100-continue`.
    pub expects_continue: bool,
    /// Whether the client asks to switch protocols (`Connection: upgrade` plus `Upgrade`), as a
    /// WebSocket handshake does; the two headers are then forwarded.
    pub upgrade: bool,
    /// Whether the target was in absolute form and so the Host header must be (re)written.
    absolute_form: bool,
}

/// A parsed response head, borrowing the upstream connection's read buffer.
#[derive(Debug)]
pub struct ResponseHead<'b, 'h> {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: &'b str,
    /// Headers as received.
    pub headers: &'h [Header<'b>],
    /// Bytes of the head including the final CRLF.
    pub len: usize,
    /// How the response body is delimited.
    pub framing: BodyFraming,
    /// Whether the upstream allows reusing the connection.
    pub keep_alive: bool,
    /// Whether a Transfer-Encoding header was present (it overrides Content-Length).
    transfer_encoding: bool,
}

/// Parses a request head; `Ok(None)` means more bytes are needed.
pub fn parse_request<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>; MAX_HEADERS],
) -> Result<Option<RequestHead<'b, 'h>>, HeadError> {
    let mut req = httparse::Request::new(headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if let Some(target) = req.path {
                if target.len() > MAX_URI_BYTES {
                    return Err(HeadError::UriTooLong);
                }
            }
            return if buf.len() >= MAX_HEAD_BYTES {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(e) => return Err(HeadError::Malformed(e)),
    };
    // httparse accepts bare LF line ends; a proxy must not, or it and the upstream may frame
    // the same bytes differently (RFC 9112 §2.2 lets a recipient refuse them).
    if has_bare_lf(&buf[..len]) {
        return Err(HeadError::BareLf);
    }
    let (Some(method), Some(raw_target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(HeadError::Malformed(httparse::Error::Token));
    };
    if raw_target.len() > MAX_URI_BYTES {
        return Err(HeadError::UriTooLong);
    }
    if raw_target.as_bytes().contains(&b'#') {
        return Err(HeadError::Fragment);
    }
    let headers: &'h [Header<'b>] = req.headers;

    let (target, authority, absolute_form) = split_target(raw_target);
    let mut host_header = None;
    let mut connection = Connection::default();
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut expects_continue = false;
    let mut upgrade_header = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade_header = true;
        } else if h.name.eq_ignore_ascii_case("host") {
            if host_header.is_some() {
                return Err(HeadError::Malformed(httparse::Error::HeaderValue));
            }
            host_header = Some(std::str::from_utf8(h.value).map_err(|_| HeadError::MissingHost)?);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() || h.value.contains(&b',') {
                return Err(HeadError::DuplicateContentLength);
            }
            content_length = Some(merge_content_length(None, h.value)?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            if !last_coding_is_chunked(h.value) {
                return Err(HeadError::UnsupportedTransferEncoding);
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection.add(h.value);
        } else if h.name.eq_ignore_ascii_case("expect") {
            expects_continue = h.value.eq_ignore_ascii_case(b"100-continue");
        }
    }
    let framing = match (transfer_encoding, content_length) {
        // HTTP/1.0 has no chunked coding; a 1.0 message claiming one is a smuggling attempt.
        (true, _) if minor_version == 0 => return Err(HeadError::UnsupportedTransferEncoding),
        (true, Some(_)) => return Err(HeadError::LengthAndChunked),
        (true, None) => BodyFraming::Chunked,
        (false, Some(0) | None) => BodyFraming::None,
        (false, Some(n)) => BodyFraming::Length(n),
    };
    let authority = match authority.or(host_header) {
        Some(a) => a,
        None if minor_version == 0 => "",
        None => return Err(HeadError::MissingHost),
    };
    if !is_authority(authority) {
        return Err(HeadError::InvalidHost);
    }
    let (host, port) = spec::host::split_authority(authority);
    let keep_alive = if minor_version == 0 {
        connection.keep_alive
    } else {
        !connection.close
    };
    let (path, query) = match target.split_once('?') {
        Some(("", query)) => ("/", query),
        Some((path, query)) => (path, query),
        None => (target, ""),
    };
    Ok(Some(RequestHead {
        method,
        target,
        path,
        query,
        host,
        port,
        minor_version,
        headers,
        len,
        framing,
        keep_alive,
        expects_continue,
        // HTTP/1.0 has no Upgrade (RFC 9110 §7.8).
        upgrade: upgrade_header && connection.upgrade && minor_version == 1,
        absolute_form,
    }))
}

/// Parses a response head to a request with `method`; `Ok(None)` means more bytes are needed.
pub fn parse_response<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>; MAX_HEADERS],
    method: &str,
) -> Result<Option<ResponseHead<'b, 'h>>, HeadError> {
    let mut res = httparse::Response::new(headers);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD_BYTES {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(e) => return Err(HeadError::Malformed(e)),
    };
    let (Some(status), Some(minor_version)) = (res.code, res.version) else {
        return Err(HeadError::Malformed(httparse::Error::Status));
    };
    let reason = res.reason.unwrap_or("");
    let headers: &'h [Header<'b>] = res.headers;
    let mut connection = Connection::default();
    let mut content_length = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length = Some(merge_content_length(content_length, h.value)?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            chunked = last_coding_is_chunked(h.value);
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection.add(h.value);
        }
    }
    let bodiless =
        method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if bodiless {
        BodyFraming::None
    } else if chunked {
        BodyFraming::Chunked
    } else if transfer_encoding {
        // Any other final coding is delimited by close, whatever Content-Length says
        // (RFC 9112 §6.3).
        BodyFraming::UntilClose
    } else {
        match content_length {
            Some(0) => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::UntilClose,
        }
    };
    let keep_alive = framing != BodyFraming::UntilClose
        && if minor_version == 0 {
            connection.keep_alive
        } else {
            !connection.close
        };
    Ok(Some(ResponseHead {
        transfer_encoding,
        status,
        reason,
        headers,
        len,
        framing,
        keep_alive,
    }))
}

/// Writes a rewritten path into the forwarded head.
pub type PathWriter<'e> = &'e dyn Fn(&mut Vec<u8>);

/// Changes a route rule makes to a forwarded request head, beyond hop-by-hop filtering.
#[derive(Clone, Copy)]
pub struct RequestEdits<'e> {
    /// Writes the new path (without the query, which is kept) in place of the original.
    pub path: Option<PathWriter<'e>>,
    /// Replaces the Host header.
    pub authority: Option<&'e str>,
    /// Header removals, replacements and additions (never framing, hop-by-hop or Host).
    pub headers: &'e HeaderEdits,
}

impl std::fmt::Debug for RequestEdits<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestEdits")
            .field("path", &self.path.map(|_| "<path writer>"))
            .field("authority", &self.authority)
            .field("headers", self.headers)
            .finish()
    }
}

impl RequestHead<'_, '_> {
    /// Writes the head to forward upstream: HTTP/1.1, hop-by-hop headers removed, keep-alive.
    pub fn write_forwarded(&self, out: &mut Vec<u8>) {
        self.write_edited(
            out,
            &RequestEdits {
                path: None,
                authority: None,
                headers: &NO_EDITS,
            },
        );
    }

    /// Like [`RequestHead::write_forwarded`], with a rule's edits applied.
    pub fn write_edited(&self, out: &mut Vec<u8>, edits: &RequestEdits<'_>) {
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        match edits.path {
            None => {
                if self.target.starts_with('?') {
                    // "http://host?q" in absolute form is "/?q" in origin form.
                    out.push(b'/');
                }
                out.extend_from_slice(self.target.as_bytes());
            }
            Some(write_path) => {
                write_path(out);
                if let Some(i) = self.target.find('?') {
                    out.extend_from_slice(&self.target.as_bytes()[i..]);
                }
            }
        }
        // A 1.0 client cannot read chunked responses: ask the upstream for 1.0 framing too.
        out.extend_from_slice(if self.minor_version == 0 {
            b" HTTP/1.0\r\n"
        } else {
            b" HTTP/1.1\r\n"
        });
        let host_rewritten = self.absolute_form || edits.authority.is_some();
        // Checked once: the plain path pays nothing per header for edits it does not have.
        let replaces = removes_or_sets(edits.headers);
        if let Some(authority) = edits.authority {
            out.extend_from_slice(b"host: ");
            out.extend_from_slice(authority.as_bytes());
            out.extend_from_slice(b"\r\n");
        } else if self.absolute_form || self.host.is_empty() {
            out.extend_from_slice(b"host: ");
            out.extend_from_slice(self.host.as_bytes());
            if let Some(port) = self.port {
                write_port(out, port);
            }
            out.extend_from_slice(b"\r\n");
        }
        for h in self.headers {
            if (host_rewritten && h.name.eq_ignore_ascii_case("host"))
                || is_hop_by_hop(h.name, self.headers)
                || h.name.eq_ignore_ascii_case("expect")
                || (replaces && edited_away(h.name, edits.headers))
            {
                continue;
            }
            write_header(out, h);
        }
        if adds_or_sets(edits.headers) {
            write_added(out, edits.headers);
        }
        if self.upgrade {
            write_upgrade(out, self.headers);
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Whether `edits` drops or replaces any header the message carries.
fn removes_or_sets(edits: &HeaderEdits) -> bool {
    !edits.remove.is_empty() || !edits.set.is_empty()
}

/// Whether `edits` writes any header of its own.
fn adds_or_sets(edits: &HeaderEdits) -> bool {
    !edits.add.is_empty() || !edits.set.is_empty()
}

/// Writes `:port` without allocating.
fn write_port(out: &mut Vec<u8>, port: u16) {
    out.push(b':');
    let mut digits = [0u8; 5];
    let mut n = port;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Re-adds the protocol switch that hop-by-hop filtering removed: the Upgrade header(s) as
/// sent and `connection: upgrade`.
fn write_upgrade(out: &mut Vec<u8>, headers: &[Header<'_>]) {
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("upgrade"))
    {
        write_header(out, h);
    }
    out.extend_from_slice(b"connection: upgrade\r\n");
}

impl ResponseHead<'_, '_> {
    /// Writes the head to return downstream; `close` adds `connection: close`.
    pub fn write_forwarded(&self, out: &mut Vec<u8>, close: bool) {
        self.write_edited(out, close, &NO_EDITS);
    }

    /// Like [`ResponseHead::write_forwarded`], with a rule's response header edits applied.
    pub fn write_edited(&self, out: &mut Vec<u8>, close: bool, edits: &HeaderEdits) {
        let replaces = removes_or_sets(edits);
        out.extend_from_slice(b"HTTP/1.1 ");
        // httparse guarantees three digits; written by hand so the hot path never allocates.
        let status = self.status.min(999);
        out.extend_from_slice(&[
            b'0' + (status / 100) as u8,
            b'0' + (status / 10 % 10) as u8,
            b'0' + (status % 10) as u8,
        ]);
        out.push(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        for h in self.headers {
            // With a transfer coding, Content-Length is wrong and must not reach the client
            // (RFC 9112 §6.2): it would desync anything that trusts it.
            let stale_length =
                self.transfer_encoding && h.name.eq_ignore_ascii_case("content-length");
            if !stale_length
                && !is_hop_by_hop(h.name, self.headers)
                && (!replaces || !edited_away(h.name, edits))
            {
                write_header(out, h);
            }
        }
        if adds_or_sets(edits) {
            write_added(out, edits);
        }
        if self.status == 101 {
            write_upgrade(out, self.headers);
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

fn write_header(out: &mut Vec<u8>, h: &Header<'_>) {
    out.extend_from_slice(h.name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(h.value);
    out.extend_from_slice(b"\r\n");
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus any header a Connection header names.
///
/// Transfer-Encoding is hop-by-hop too, but the body is forwarded byte for byte in the coding
/// it arrived in, so its header travels with it unchanged. Framing headers and Host can never
/// be removed by naming them in Connection: that would let a client strip Content-Length from
/// a request whose body is still forwarded, smuggling a second request.
fn is_hop_by_hop(name: &str, headers: &[Header<'_>]) -> bool {
    const FIXED: [&str; 5] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ];
    const PROTECTED: [&str; 3] = ["content-length", "transfer-encoding", "host"];
    if FIXED.iter().any(|f| name.eq_ignore_ascii_case(f)) {
        return true;
    }
    if PROTECTED.iter().any(|p| name.eq_ignore_ascii_case(p)) {
        return false;
    }
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| {
            h.value
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
        })
}

#[derive(Default)]
struct Connection {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
}

impl Connection {
    fn add(&mut self, value: &[u8]) {
        for token in value.split(|&b| b == b',') {
            let token = token.trim_ascii();
            self.close |= token.eq_ignore_ascii_case(b"close");
            self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            self.upgrade |= token.eq_ignore_ascii_case(b"upgrade");
        }
    }
}

fn merge_content_length(previous: Option<u64>, value: &[u8]) -> Result<u64, HeadError> {
    // A list like "5, 5" is allowed only when every member agrees (RFC 9110 §8.6).
    let mut result = previous;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) || part.len() > 19 {
            return Err(HeadError::InvalidContentLength);
        }
        let n: u64 = std::str::from_utf8(part)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(HeadError::InvalidContentLength)?;
        if result.is_some_and(|r| r != n) {
            return Err(HeadError::InvalidContentLength);
        }
        result = Some(n);
    }
    result.ok_or(HeadError::InvalidContentLength)
}

fn last_coding_is_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// Whether `text` can be a host and port (RFC 3986 `host [":" port]`): letters, digits and
/// `-._~%!$&'()*+,;=:[]` only.
fn is_authority(text: &str) -> bool {
    text.bytes().all(|b| AUTHORITY_BYTES[b as usize])
}

/// The bytes [`is_authority`] accepts, by value: one lookup per byte of every request's Host.
const AUTHORITY_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'~' | b'%')
            || matches!(
                c,
                b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b','
            )
            || matches!(c, b';' | b'=' | b':' | b'[' | b']');
        b += 1;
    }
    table
};

/// Splits an absolute-form target into origin form and authority.
fn split_target(target: &str) -> (&str, Option<&str>, bool) {
    let rest = match target.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("http://") => &target[7..],
        _ => return (target, None, false),
    };
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[i..], Some(&rest[..i]), true),
        // "http://host?q": the target keeps its query; write_forwarded adds the "/".
        Some(i) => (&rest[i..], Some(&rest[..i]), true),
        None => ("/", Some(rest), true),
    }
}

#[cfg(test)]
mod tests;

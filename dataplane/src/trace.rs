//! Request identity and distributed tracing: `x-request-id` generated when a request has none;
//! W3C `traceparent` and B3 (multi-header and single `b3`) read; for a sampled request a span
//! of this hop (a client span outbound, a server span inbound) whose id goes upstream as the
//! parent; spans rendered as Zipkin v2 or OTLP JSON for the collector.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use httparse::Header;

use crate::export::collector::Protocol;
use crate::json::{self, hex};

/// The request id header, as Envoy names it.
pub const REQUEST_ID: &str = "x-request-id";

/// Every trace header meshd reads and rewrites.
const TRACE_HEADERS: [&str; 7] = [
    "traceparent",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
];

/// A fresh request id: a random (version 4) UUID.
pub fn new_request_id() -> [u8; 36] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // Where each hex digit goes, around the dashes of 8-4-4-4-12; the version (14) and the
    // variant (19) digits are set after.
    const AT: [u8; 30] = [
        0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 15, 16, 17, 20, 21, 22, 24, 25, 26, 27, 28, 29, 30,
        31, 32, 33, 34, 35,
    ];
    let mut id = *b"00000000-0000-4000-8000-000000000000";
    let mut random = fastrand::u128(..);
    for at in AT {
        id[usize::from(at)] = DIGITS[(random & 0xf) as usize];
        random >>= 4;
    }
    id[19] = DIGITS[8 | (random & 0x3) as usize];
    id
}

/// The trace context a request arrived with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    pub trace_id: u128,
    /// The caller's span, the parent of this hop's.
    pub parent: Option<u64>,
    /// The caller's sampling decision, if it made one.
    pub sampled: Option<bool>,
}

/// Reads W3C `traceparent`, else B3 headers, else the single `b3` header.
pub fn incoming(headers: &[Header<'_>]) -> Option<Incoming> {
    let value = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    if let Some(traceparent) = value("traceparent") {
        // version-traceid-spanid-flags; an unknown version is read as version 00 is.
        let mut parts = traceparent.trim().split('-');
        let (_, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let trace_id = hex_id(trace, 32).filter(|&t| t != 0)?;
        let parent = hex_id(span, 16).filter(|&s| s != 0)? as u64;
        let flags = u8::from_str_radix(flags.get(..2)?, 16).ok()?;
        return Some(Incoming {
            trace_id,
            parent: Some(parent),
            sampled: Some(flags & 1 == 1),
        });
    }
    if let Some(trace) = value("x-b3-traceid") {
        let sampled = match (value("x-b3-flags"), value("x-b3-sampled")) {
            (Some("1"), _) => Some(true),
            (_, Some("1" | "true")) => Some(true),
            (_, Some("0" | "false")) => Some(false),
            _ => None,
        };
        return Some(Incoming {
            trace_id: b3_trace_id(trace)?,
            parent: value("x-b3-spanid")
                .and_then(|s| hex_id(s, 16))
                .map(|s| s as u64),
            sampled,
        });
    }
    // TRACEID-SPANID[-SAMPLED[-PARENT]], or a lone sampling decision (which starts no trace).
    let single = value("b3")?;
    let mut parts = single.split('-');
    let trace_id = b3_trace_id(parts.next()?)?;
    let parent = hex_id(parts.next()?, 16)? as u64;
    let sampled = match parts.next() {
        Some("1" | "d") => Some(true),
        Some("0") => Some(false),
        _ => None,
    };
    Some(Incoming {
        trace_id,
        parent: Some(parent),
        sampled,
    })
}

/// A 64- or 128-bit B3 trace id.
fn b3_trace_id(hex: &str) -> Option<u128> {
    match hex.len() {
        16 | 32 => hex_id(hex, hex.len()).filter(|&t| t != 0),
        _ => None,
    }
}

/// `hex` of exactly `len` lowercase or uppercase hex digits.
fn hex_id(hex: &str, len: usize) -> Option<u128> {
    if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(hex, 16).ok()
}

/// This hop's span in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: u128,
    pub span_id: u64,
    pub parent: Option<u64>,
}

/// This hop's span when the request is sampled: the caller's decision when it made one, else
/// `per_million` of requests. A sampled request without a trace starts one.
pub fn sample(incoming: Option<Incoming>, per_million: u32) -> Option<SpanContext> {
    let sampled = match incoming.and_then(|i| i.sampled) {
        Some(decided) => decided,
        None => per_million > 0 && fastrand::u32(..1_000_000) < per_million,
    };
    if !sampled {
        return None;
    }
    let mut span_id = fastrand::u64(..);
    while span_id == 0 {
        span_id = fastrand::u64(..);
    }
    Some(SpanContext {
        trace_id: incoming.map_or_else(|| fastrand::u128(1..), |i| i.trace_id),
        span_id,
        parent: incoming.and_then(|i| i.parent),
    })
}

/// Replaces the trace headers of the request head in `head` (which ends with its blank line)
/// with this hop's: W3C `traceparent` and B3 multi-headers, this span as the parent.
pub fn rewrite_headers(head: &mut Vec<u8>, span: &SpanContext) {
    remove_headers(head, &TRACE_HEADERS);
    head.truncate(head.len() - 2);
    head.extend_from_slice(b"traceparent: 00-");
    hex(head, span.trace_id, 32);
    head.push(b'-');
    hex(head, span.span_id.into(), 16);
    head.extend_from_slice(b"-01\r\nx-b3-traceid: ");
    hex(head, span.trace_id, 32);
    head.extend_from_slice(b"\r\nx-b3-spanid: ");
    hex(head, span.span_id.into(), 16);
    if let Some(parent) = span.parent {
        head.extend_from_slice(b"\r\nx-b3-parentspanid: ");
        hex(head, parent.into(), 16);
    }
    head.extend_from_slice(b"\r\nx-b3-sampled: 1\r\n\r\n");
}

/// Adds `name: value` to the request head in `head`.
pub fn add_header(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.truncate(head.len() - 2);
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n\r\n");
}

/// Removes the header lines named `names` (case-insensitively) from the head in `head`.
fn remove_headers(head: &mut Vec<u8>, names: &[&str]) {
    let Some(first) = head.windows(2).position(|w| w == b"\r\n") else {
        return;
    };
    let (mut read, mut write) = (first + 2, first + 2);
    while let Some(len) = head[read..].windows(2).position(|w| w == b"\r\n") {
        let line = read..read + len + 2;
        let name = head[line.clone()]
            .split(|&b| b == b':')
            .next()
            .unwrap_or(&[]);
        let drop = len > 0
            && names
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n.as_bytes()));
        if !drop {
            head.copy_within(line.clone(), write);
            write += line.len();
        }
        read = line.end;
        if len == 0 {
            break;
        }
    }
    head.truncate(write);
}

/// Which side of a call a span is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The caller's sidecar (outbound).
    Client,
    /// The callee's sidecar (inbound).
    Server,
}

/// A finished span.
#[derive(Debug)]
pub struct Span<'a> {
    pub context: SpanContext,
    pub kind: Kind,
    /// What the span is named by: the destination service's host and port, `/*`, as Istio
    /// names its spans.
    pub name: &'a str,
    pub start: SystemTime,
    pub duration: Duration,
    /// The sidecar's own name: its workload, or `meshd`.
    pub local_service: &'a str,
    pub method: &'a str,
    /// `authority` + path, as the client sent them.
    pub url: &'a str,
    pub status: u16,
    pub flags: &'static str,
    pub request_id: &'a str,
    pub upstream_cluster: Option<&'a str>,
    pub peer: Option<SocketAddr>,
}

/// Appends `span` as one JSON object and a comma (the collector's batch joins them as they
/// are), in the collector's format.
pub fn render(protocol: Protocol, span: &Span<'_>, out: &mut Vec<u8>) {
    match protocol {
        Protocol::Zipkin => zipkin(span, out),
        Protocol::Otlp => otlp(span, out),
    }
    out.push(b',');
}

/// The span's tags (Zipkin) or attributes (OTLP), all strings, as Istio's sidecars set them.
fn for_each_tag(span: &Span<'_>, mut tag: impl FnMut(&str, &str)) {
    tag("http.method", span.method);
    tag("http.url", span.url);
    tag("http.status_code", itoa::Buffer::new().format(span.status));
    tag("response_flags", span.flags);
    tag("guid:x-request-id", span.request_id);
    tag("component", "proxy");
    if let Some(cluster) = span.upstream_cluster {
        tag("upstream_cluster", cluster);
    }
    if failed(span) {
        tag("error", "true");
    }
}

/// A 5xx, or no response at all.
fn failed(span: &Span<'_>) -> bool {
    span.status >= 500 || span.status == 0
}

fn micros(time: SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A quoted hex id.
fn id(out: &mut Vec<u8>, value: u128, digits: usize) {
    out.push(b'"');
    hex(out, value, digits);
    out.push(b'"');
}

/// `{"traceId":...,<span key>...[,<parent key>...]`: how both formats open a span.
fn open_span(out: &mut Vec<u8>, ctx: SpanContext, span_key: &[u8], parent_key: &[u8]) {
    out.extend_from_slice(b"{\"traceId\":");
    id(out, ctx.trace_id, 32);
    out.extend_from_slice(span_key);
    id(out, ctx.span_id.into(), 16);
    if let Some(parent) = ctx.parent {
        out.extend_from_slice(parent_key);
        id(out, parent.into(), 16);
    }
}

fn zipkin(span: &Span<'_>, out: &mut Vec<u8>) {
    open_span(out, span.context, b",\"id\":", b",\"parentId\":");
    out.extend_from_slice(match span.kind {
        Kind::Client => b",\"kind\":\"CLIENT\",\"name\":",
        Kind::Server => b",\"kind\":\"SERVER\",\"name\":",
    });
    json::string(out, span.name);
    out.extend_from_slice(b",\"timestamp\":");
    json::number(out, micros(span.start));
    out.extend_from_slice(b",\"duration\":");
    json::number(out, (span.duration.as_micros() as u64).max(1));
    out.extend_from_slice(b",\"localEndpoint\":{\"serviceName\":");
    json::string(out, span.local_service);
    out.extend_from_slice(b"},\"tags\":{");
    let mut first = true;
    for_each_tag(span, |key, value| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        // Keys are this file's literals: nothing to escape.
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        json::string(out, value);
    });
    if span.peer.is_some() {
        out.extend_from_slice(b",\"peer.address\":\"");
        json::address(out, span.peer, true);
        out.push(b'"');
    }
    out.extend_from_slice(b"}}");
}

fn otlp(span: &Span<'_>, out: &mut Vec<u8>) {
    open_span(out, span.context, b",\"spanId\":", b",\"parentSpanId\":");
    out.extend_from_slice(b",\"name\":");
    json::string(out, span.name);
    // SPAN_KIND_SERVER = 2, SPAN_KIND_CLIENT = 3; times are decimal strings of nanoseconds.
    out.extend_from_slice(match span.kind {
        Kind::Server => b",\"kind\":2,\"startTimeUnixNano\":\"",
        Kind::Client => b",\"kind\":3,\"startTimeUnixNano\":\"",
    });
    let start = u128::from(micros(span.start)) * 1000;
    out.extend_from_slice(itoa::Buffer::new().format(start).as_bytes());
    out.extend_from_slice(b"\",\"endTimeUnixNano\":\"");
    let end = start + span.duration.as_nanos();
    out.extend_from_slice(itoa::Buffer::new().format(end).as_bytes());
    out.extend_from_slice(b"\",\"attributes\":[");
    let mut first = true;
    for_each_tag(span, |key, value| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\",\"value\":{\"stringValue\":");
        json::string(out, value);
        out.extend_from_slice(b"}}");
    });
    if span.peer.is_some() {
        out.extend_from_slice(b",{\"key\":\"peer.address\",\"value\":{\"stringValue\":\"");
        json::address(out, span.peer, true);
        out.extend_from_slice(b"\"}}");
    }
    // STATUS_CODE_ERROR = 2; otherwise unset.
    out.extend_from_slice(if failed(span) {
        b"],\"status\":{\"code\":2}}"
    } else {
        b"],\"status\":{}}"
    });
}

#[cfg(test)]
mod tests;

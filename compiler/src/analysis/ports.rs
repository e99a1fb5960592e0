//! Port protocols: HTTP declared on the well-known port of a protocol that is not HTTP
//! (W0113).
//!
//! The sidecar waits for an HTTP request head on an `http`, `http2` or `grpc` port. On a
//! server-first protocol (SMTP, MySQL, NATS) the client waits for the server's greeting, so the
//! connection hangs; the other protocols listed are client-first but never send HTTP, so every
//! request fails to parse. Either way the port should be `tcp`.

use crate::ast;
use crate::diag::{Code, Diagnostic, FileId, SourceSpan, Span};

/// `(port, protocol name, server speaks first)`, sorted by port.
const WELL_KNOWN: [(u64, &str, bool); 6] = [
    (25, "SMTP", true),
    (3306, "MySQL", true),
    (4222, "NATS", true),
    (5432, "PostgreSQL", false),
    (6379, "Redis", false),
    (11211, "memcached", false),
];

/// Service `port` lines.
pub(super) fn check_service(file: FileId, service: &ast::Service, out: &mut Vec<Diagnostic>) {
    for port in &service.ports {
        check(file, service.origin, port.number, port.protocol, out);
    }
}

/// Workload `inbound` lines (the sidecar parses HTTP there too).
pub(super) fn check_workload(
    file: FileId,
    origin: ast::Origin,
    workload: &ast::Workload,
    out: &mut Vec<Diagnostic>,
) {
    for inbound in &workload.inbound {
        check(file, origin, inbound.port, inbound.protocol, out);
    }
}

fn check(
    file: FileId,
    origin: ast::Origin,
    number: ast::Number,
    protocol: ast::Protocol,
    out: &mut Vec<Diagnostic>,
) {
    http_on_opaque_port(file, origin, number, protocol, out);
}

fn http_on_opaque_port(
    file: FileId,
    origin: ast::Origin,
    number: ast::Number,
    protocol: ast::Protocol,
    out: &mut Vec<Diagnostic>,
) {
    if protocol.value == spec::Protocol::Tcp {
        return;
    }
    let Some(&(_, name, server_first)) = WELL_KNOWN.iter().find(|(p, _, _)| *p == number.value)
    else {
        return;
    };
    let span = port_span(number, protocol);
    let (kind, reason) = if server_first {
        (
            "a server-first protocol",
            "a server-first protocol never sends an HTTP request".to_owned(),
        )
    } else {
        (
            "not HTTP",
            format!("{name} clients never send an HTTP request"),
        )
    };
    let message = format!(
        "port {} is the well-known {name} port ({kind}) but is declared `{}`",
        number.value,
        protocol.value.as_str()
    );
    let help = match origin {
        ast::Origin::Mesh => format!("declare it `tcp`; {reason}"),
        ast::Origin::Istio => format!("set `protocol: TCP`; {reason}"),
    };
    out.push(
        Diagnostic::new(Code::HttpOnOpaquePort, SourceSpan { file, span }, message).with_help(help),
    );
}

/// `port 3306 http`: the number through the protocol; in YAML they may be apart or reversed.
fn port_span(number: ast::Number, protocol: ast::Protocol) -> Span {
    if protocol.span.start >= number.span.end {
        Span::new(number.span.start, protocol.span.end)
    } else {
        number.span
    }
}

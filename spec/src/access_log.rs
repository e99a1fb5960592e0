//! Access log formats: Envoy's `%COMMAND%` operators, parsed once so that `meshc` refuses an
//! unknown operator at compile time (with its column) and `meshd` renders exactly what was
//! checked. The operators served are listed in [`OPERATORS`]; docs/access-log.md explains each.

use std::fmt;

/// What one access log line holds for a request, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// When the request head arrived, RFC 3339 UTC with milliseconds.
    StartTime,
    /// A request header as the client sent it, or a pseudo-header (`:method`, `:path` with
    /// its query, `:authority`, `:scheme`). `names` are lowercase; the first one present
    /// wins. `max_len` truncates the value (in bytes, at a character boundary).
    RequestHeader {
        names: Vec<String>,
        max_len: Option<usize>,
    },
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    Protocol,
    /// The status sent downstream; 0 when none was.
    ResponseCode,
    /// Envoy's response flags, `-` without any.
    ResponseFlags,
    /// A gRPC call's status, as a number; none for a request that is not a call, or a call
    /// that got none.
    GrpcStatus,
    /// Request body bytes read from the client.
    BytesReceived,
    /// Response bytes sent to the client, head included.
    BytesSent,
    /// Milliseconds from the request head to the last response byte.
    Duration,
    /// Milliseconds from the request head to the upstream's response head.
    ResponseDuration,
    /// Milliseconds the upstream took: from the start of the answered try to its response
    /// head.
    UpstreamServiceTime,
    /// The endpoint the last try went to (`IP:PORT`).
    UpstreamHost,
    /// The endpoint group of the last try (`service` or `service/subset`).
    UpstreamCluster,
    /// The client's address (`IP:PORT`).
    DownstreamRemoteAddress,
    /// The client's address without the port.
    DownstreamRemoteAddressWithoutPort,
    /// The client's SPIFFE ID from mutual TLS.
    DownstreamPeerUriSan,
    /// The upstream's SPIFFE ID from mutual TLS.
    UpstreamPeerUriSan,
    /// The other side's SPIFFE ID: the caller's inbound, the upstream's outbound.
    PeerPrincipal,
    /// The route rule's name.
    RouteName,
    /// Where the rule was written (`file:line`, as `meshc explain` names it).
    RouteSource,
    /// The trace the request belongs to: its span's when meshd traced it, else the one its
    /// headers carried (W3C `traceparent` or B3).
    TraceId,
    /// The content hash of the snapshot the request was routed with.
    Snapshot,
}

/// How a field's value is written in a JSON line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonKind {
    Number,
    String,
}

impl Field {
    /// Whether the value is a number (JSON writes it bare) or a string.
    pub fn json_kind(&self) -> JsonKind {
        match self {
            Self::ResponseCode
            | Self::GrpcStatus
            | Self::BytesReceived
            | Self::BytesSent
            | Self::Duration
            | Self::ResponseDuration
            | Self::UpstreamServiceTime => JsonKind::Number,
            _ => JsonKind::String,
        }
    }
}

/// A text format: literal text and fields, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Field(Field),
}

/// The operators a text format may use (with `REQ(...)` taking header names) and the fields
/// they name. `%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%`, the only response header Istio's
/// default format reads, names the upstream service time meshd measures.
pub const OPERATORS: &[&str] = &[
    "START_TIME",
    "REQ(HEADER?ALTERNATIVE):MAX_LENGTH",
    "PROTOCOL",
    "RESPONSE_CODE",
    "RESPONSE_FLAGS",
    "GRPC_STATUS(NUMBER)",
    "BYTES_RECEIVED",
    "BYTES_SENT",
    "DURATION",
    "RESPONSE_DURATION",
    "RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)",
    "UPSTREAM_HOST",
    "UPSTREAM_CLUSTER",
    "DOWNSTREAM_REMOTE_ADDRESS",
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_PEER_URI_SAN",
    "UPSTREAM_PEER_URI_SAN",
    "ROUTE_NAME",
    "ROUTE_SOURCE",
    "TRACE_ID",
    "SNAPSHOT",
];

/// Envoy's response header with the upstream service time, as Istio's default format reads it.
const UPSTREAM_SERVICE_TIME: &str = "X-ENVOY-UPSTREAM-SERVICE-TIME";

/// The keys of `access_log json`, in the order each line writes them, with their fields.
pub fn json_fields() -> Vec<(&'static str, Field)> {
    let header = |name: &str| Field::RequestHeader {
        names: vec![name.to_owned()],
        max_len: None,
    };
    vec![
        ("start_time", Field::StartTime),
        ("method", header(":method")),
        ("authority", header(":authority")),
        ("path", header(":path")),
        ("protocol", Field::Protocol),
        ("response_code", Field::ResponseCode),
        ("response_flags", Field::ResponseFlags),
        ("grpc_status", Field::GrpcStatus),
        ("duration_ms", Field::Duration),
        ("upstream_service_time_ms", Field::UpstreamServiceTime),
        ("bytes_received", Field::BytesReceived),
        ("bytes_sent", Field::BytesSent),
        ("upstream_host", Field::UpstreamHost),
        ("upstream_cluster", Field::UpstreamCluster),
        ("downstream_remote_address", Field::DownstreamRemoteAddress),
        ("peer_principal", Field::PeerPrincipal),
        ("user_agent", header("user-agent")),
        ("x_request_id", header("x-request-id")),
        ("trace_id", Field::TraceId),
        ("route_name", Field::RouteName),
        ("route_source", Field::RouteSource),
        ("snapshot", Field::Snapshot),
    ]
}

/// A format that cannot be served: where in it, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatError {
    /// Byte offset of the offending operator in the format.
    pub offset: usize,
    /// Its length in bytes.
    pub len: usize,
    pub message: String,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

impl std::error::Error for FormatError {}

/// Parses a text format. Text outside `%...%` is literal; every `%` must open an operator.
pub fn parse(format: &str) -> Result<Vec<Segment>, FormatError> {
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut rest = format;
    while let Some(start) = rest.find('%') {
        literal.push_str(&rest[..start]);
        let offset = format.len() - rest.len() + start;
        let after = &rest[start + 1..];
        let Some(end) = after.find('%') else {
            return Err(FormatError {
                offset,
                len: rest.len() - start,
                message: "a `%` that opens no operator; operators are written %NAME%".to_owned(),
            });
        };
        let operator = &after[..end];
        let field = operator_field(operator).map_err(|message| FormatError {
            offset,
            len: end + 2,
            message,
        })?;
        if !literal.is_empty() {
            segments.push(Segment::Literal(std::mem::take(&mut literal)));
        }
        segments.push(Segment::Field(field));
        rest = &after[end + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal));
    }
    Ok(segments)
}

/// The field one operator (the text between its `%`s) names.
fn operator_field(operator: &str) -> Result<Field, String> {
    let (name, argument, max_len) = split_operator(operator)?;
    let plain = |field: Field| match argument {
        None if max_len.is_none() => Ok(field),
        _ => Err(format!("%{name}% takes no argument or length")),
    };
    match name {
        "START_TIME" => plain(Field::StartTime),
        "PROTOCOL" => plain(Field::Protocol),
        "RESPONSE_CODE" => plain(Field::ResponseCode),
        "RESPONSE_FLAGS" => plain(Field::ResponseFlags),
        "GRPC_STATUS" => match (argument, max_len) {
            (Some("NUMBER"), None) => Ok(Field::GrpcStatus),
            _ => Err("%GRPC_STATUS% is served as a number: write %GRPC_STATUS(NUMBER)%".to_owned()),
        },
        "BYTES_RECEIVED" => plain(Field::BytesReceived),
        "BYTES_SENT" => plain(Field::BytesSent),
        "DURATION" => plain(Field::Duration),
        "RESPONSE_DURATION" => plain(Field::ResponseDuration),
        "UPSTREAM_HOST" => plain(Field::UpstreamHost),
        "UPSTREAM_CLUSTER" => plain(Field::UpstreamCluster),
        "DOWNSTREAM_REMOTE_ADDRESS" => plain(Field::DownstreamRemoteAddress),
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
            plain(Field::DownstreamRemoteAddressWithoutPort)
        }
        "DOWNSTREAM_PEER_URI_SAN" => plain(Field::DownstreamPeerUriSan),
        "UPSTREAM_PEER_URI_SAN" => plain(Field::UpstreamPeerUriSan),
        "ROUTE_NAME" => plain(Field::RouteName),
        "ROUTE_SOURCE" => plain(Field::RouteSource),
        "TRACE_ID" => plain(Field::TraceId),
        "SNAPSHOT" => plain(Field::Snapshot),
        "REQ" => {
            let Some(argument) = argument else {
                return Err("%REQ% names a header: %REQ(USER-AGENT)%".to_owned());
            };
            let names = argument
                .split('?')
                .map(|n| header_name(n, argument))
                .collect::<Result<Vec<_>, _>>()?;
            if names.len() > 2 {
                return Err(format!(
                    "%REQ({argument})% names more than one alternative header"
                ));
            }
            Ok(Field::RequestHeader { names, max_len })
        }
        "RESP" if argument.is_some_and(|a| a.eq_ignore_ascii_case(UPSTREAM_SERVICE_TIME)) => {
            match max_len {
                None => Ok(Field::UpstreamServiceTime),
                Some(_) => Err(format!("%RESP({UPSTREAM_SERVICE_TIME})% takes no length")),
            }
        }
        "RESP" => Err(
            "%RESP(...)% is served only for X-ENVOY-UPSTREAM-SERVICE-TIME (the upstream service \
             time meshd measures); meshd does not keep other response headers"
                .to_owned(),
        ),
        _ => Err(format!(
            "unknown operator %{operator}%; meshd serves {}",
            OPERATORS.join(", ")
        )),
    }
}

/// `NAME`, `NAME(ARGUMENT)` or `NAME(ARGUMENT):MAX_LENGTH`.
fn split_operator(operator: &str) -> Result<(&str, Option<&str>, Option<usize>), String> {
    let Some(open) = operator.find('(') else {
        if operator.is_empty() {
            return Err("an empty operator `%%`".to_owned());
        }
        return Ok((operator, None, None));
    };
    let name = &operator[..open];
    let Some(close) = operator.rfind(')').filter(|&close| close > open) else {
        return Err(format!("%{operator}% opens `(` without closing it"));
    };
    let argument = &operator[open + 1..close];
    let max_len = match &operator[close + 1..] {
        "" => None,
        tail => match tail.strip_prefix(':').map(str::parse::<usize>) {
            Some(Ok(n)) if n > 0 => Some(n),
            _ => {
                return Err(format!(
                    "%{operator}%: after `)` only a length such as `:64` may follow"
                ))
            }
        },
    };
    Ok((name, Some(argument), max_len))
}

/// A header name in `%REQ(...)%`, lowercased; pseudo-headers keep their `:`.
fn header_name(name: &str, argument: &str) -> Result<String, String> {
    const PSEUDO: [&str; 4] = [":method", ":path", ":authority", ":scheme"];
    let lower = name.to_ascii_lowercase();
    if let Some(pseudo) = PSEUDO.iter().find(|p| **p == lower) {
        return Ok((*pseudo).to_owned());
    }
    let token = !lower.is_empty()
        && lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&'*+-.^_`|~".contains(&b));
    if token {
        Ok(lower)
    } else {
        Err(format!(
            "%REQ({argument})%: `{name}` is not a header name (pseudo-headers: :METHOD, :PATH, \
             :AUTHORITY, :SCHEME)"
        ))
    }
}

#[cfg(test)]
mod tests;

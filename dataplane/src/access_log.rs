//! Access logs: one line per finished request, in the format the snapshot's telemetry setting
//! names (`json`, or Envoy's `%COMMAND%` operators as `spec::access_log` parses them).
//!
//! The request path pays for a log only while one is configured: the head's fields a format
//! reads are copied when the head is parsed ([`Captured`], a per-connection buffer reused
//! across requests), and the line is rendered when the request is recorded, into this core's
//! buffer ([`crate::export::sink::CoreLog`]). A writer thread ([`crate::export::writer`]) takes
//! full buffers off the cores and writes them; when it falls behind, cores drop lines and
//! count them rather than wait.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use spec::access_log::{Field, JsonKind, Segment};

use crate::http1::RequestHead;
use crate::json::{address, close_string, hex, number};

/// A format compiled for rendering: request headers resolved to capture slots.
#[derive(Debug)]
pub struct Format {
    style: Style,
    /// The request headers (and pseudo-headers) the format reads, lowercase: what
    /// [`Captured::capture`] keeps, slot by slot.
    headers: Vec<Box<str>>,
}

#[derive(Debug)]
enum Style {
    /// Each item with what precedes its value: `{"key":` for the first, `,"key":` after.
    Json(Vec<(Box<[u8]>, Item)>),
    Text(Vec<Piece>),
}

#[derive(Debug)]
enum Piece {
    Literal(Box<str>),
    Item(Item),
}

/// A field, with a request header's names replaced by their capture slots.
#[derive(Debug)]
enum Item {
    Header {
        slots: Vec<usize>,
        max_len: Option<usize>,
    },
    Other(Field),
}

impl Format {
    /// Compiles the snapshot's setting; a text format that does not parse (meshc refuses it,
    /// and the snapshot's validation too) is an error.
    pub fn compile(log: &spec::AccessLog) -> Result<Self, spec::access_log::FormatError> {
        let mut headers = Vec::new();
        let mut item = |field: Field| match field {
            Field::RequestHeader { names, max_len } => Item::Header {
                slots: names.iter().map(|n| slot(&mut headers, n)).collect(),
                max_len,
            },
            other => Item::Other(other),
        };
        let style = match log {
            spec::AccessLog::Json => Style::Json(
                spec::access_log::json_fields()
                    .into_iter()
                    .enumerate()
                    .map(|(i, (key, field))| {
                        let lead = if i == 0 { "{" } else { "," };
                        (format!("{lead}\"{key}\":").into_bytes().into(), item(field))
                    })
                    .collect(),
            ),
            spec::AccessLog::Text(format) => Style::Text(
                spec::access_log::parse(format)?
                    .into_iter()
                    .map(|segment| match segment {
                        Segment::Literal(text) => Piece::Literal(text.into()),
                        Segment::Field(field) => Piece::Item(item(field)),
                    })
                    .collect(),
            ),
        };
        Ok(Self { style, headers })
    }

    /// Appends one line for `entry` to `out`, ending in a line feed.
    pub fn render(&self, entry: &Entry<'_>, out: &mut Vec<u8>) {
        match &self.style {
            Style::Json(items) => {
                for (key, item) in items {
                    out.extend_from_slice(key);
                    self.json_value(item, entry, out);
                }
                out.extend_from_slice(b"}\n");
            }
            Style::Text(pieces) => {
                for piece in pieces {
                    match piece {
                        Piece::Literal(text) => out.extend_from_slice(text.as_bytes()),
                        Piece::Item(item) => {
                            if !self.write_value(item, entry, out) {
                                out.push(b'-');
                            }
                        }
                    }
                }
                if out.last() != Some(&b'\n') {
                    out.push(b'\n');
                }
            }
        }
    }

    fn json_value(&self, item: &Item, entry: &Entry<'_>, out: &mut Vec<u8>) {
        let kind = match item {
            Item::Header { .. } => JsonKind::String,
            Item::Other(field) => field.json_kind(),
        };
        let start = out.len();
        let string = kind == JsonKind::String;
        if string {
            out.push(b'"');
        }
        if !self.write_value(item, entry, out) {
            out.truncate(start);
            out.extend_from_slice(b"null");
        } else if string {
            close_string(out, start);
        }
    }

    /// Writes the item's value raw; `false` when the request has none.
    fn write_value(&self, item: &Item, entry: &Entry<'_>, out: &mut Vec<u8>) -> bool {
        let field = match item {
            Item::Header { slots, max_len } => {
                let Some(value) = slots.iter().find_map(|&s| entry.request.value(s)) else {
                    return false;
                };
                out.extend_from_slice(truncated(value, *max_len));
                return true;
            }
            Item::Other(field) => field,
        };
        let text = |out: &mut Vec<u8>, value: Option<&str>| match value {
            Some(v) => {
                out.extend_from_slice(v.as_bytes());
                true
            }
            None => false,
        };
        let millis = |out: &mut Vec<u8>, value: Option<Duration>| match value {
            Some(d) => number(out, d.as_millis() as u64),
            None => false,
        };
        match field {
            Field::StartTime => rfc3339_millis(out, entry.start),
            // Empty for a head that did not parse.
            Field::Protocol => text(out, Some(entry.request.protocol).filter(|p| !p.is_empty())),
            Field::ResponseCode => number(out, entry.code.into()),
            Field::ResponseFlags => text(out, Some(entry.flags)),
            Field::GrpcStatus => match entry.grpc_status {
                Some(status) => number(out, status.into()),
                None => false,
            },
            Field::BytesReceived => number(out, entry.bytes_received),
            Field::BytesSent => number(out, entry.bytes_sent),
            Field::Duration => millis(out, Some(entry.duration)),
            Field::ResponseDuration => millis(out, entry.response_duration),
            Field::UpstreamServiceTime => millis(out, entry.upstream_service_time),
            Field::UpstreamHost => address(out, entry.upstream_host, true),
            Field::UpstreamCluster => text(out, entry.upstream_cluster),
            Field::DownstreamRemoteAddress => address(out, entry.downstream, true),
            Field::DownstreamRemoteAddressWithoutPort => address(out, entry.downstream, false),
            Field::DownstreamPeerUriSan => text(out, entry.downstream_principal),
            Field::UpstreamPeerUriSan => text(out, entry.upstream_principal),
            Field::PeerPrincipal => text(out, entry.peer_principal()),
            Field::RouteName => text(out, entry.route.map(|r| r.name.as_str())),
            // `file:line`, as `meshc explain` names a rule.
            Field::RouteSource => match entry.route {
                Some(rule) => {
                    out.extend_from_slice(rule.source.file.as_bytes());
                    out.push(b':');
                    number(out, rule.source.line.into())
                }
                None => false,
            },
            Field::TraceId => match entry.trace_id {
                Some(id) => {
                    hex(out, id, 32);
                    true
                }
                None => false,
            },
            Field::Snapshot => text(out, Some(entry.snapshot)),
            // Compiled into `Item::Header`.
            Field::RequestHeader { .. } => false,
        }
    }
}

/// The slot of header `name` in `headers`, added when new.
fn slot(headers: &mut Vec<Box<str>>, name: &str) -> usize {
    match headers.iter().position(|h| &**h == name) {
        Some(i) => i,
        None => {
            headers.push(name.into());
            headers.len() - 1
        }
    }
}

/// `time` as RFC 3339 UTC with milliseconds (`2026-12-07T14:29:50.123Z`); `fmt` and a general
/// date library cost more than the rest of a log line.
fn rfc3339_millis(out: &mut Vec<u8>, time: SystemTime) -> bool {
    let Ok(since_epoch) = time.duration_since(std::time::UNIX_EPOCH) else {
        return false;
    };
    let secs = since_epoch.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let two = |out: &mut Vec<u8>, v: u64| {
        out.extend_from_slice(&[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8])
    };
    number(out, year);
    out.push(b'-');
    two(out, month);
    out.push(b'-');
    two(out, day);
    out.push(b'T');
    two(out, rest / 3600);
    out.push(b':');
    two(out, rest / 60 % 60);
    out.push(b':');
    two(out, rest % 60);
    let millis = u64::from(since_epoch.subsec_millis());
    out.extend_from_slice(&[b'.', b'0' + (millis / 100) as u8]);
    two(out, millis % 100);
    out.push(b'Z');
    true
}

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// At most `max_len` bytes of `value`, cut at a character boundary when it is UTF-8.
fn truncated(value: &[u8], max_len: Option<usize>) -> &[u8] {
    let Some(max) = max_len.filter(|&m| m < value.len()) else {
        return value;
    };
    let mut end = max;
    while end > 0 && (value[end] & 0b1100_0000) == 0b1000_0000 {
        end -= 1;
    }
    &value[..end]
}

/// The parts of a request head a format reads, copied out of the connection's read buffer
/// (which the next request reuses). Kept per connection, so its buffer is reused too.
#[derive(Debug, Default)]
pub struct Captured {
    bytes: Vec<u8>,
    values: Vec<Option<Range<usize>>>,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2` (a bridged stream).
    protocol: &'static str,
}

impl Captured {
    /// What a relayed TCP connection gives a format: its protocol, and no request fields.
    pub fn opaque() -> Self {
        Self {
            protocol: "TCP",
            ..Self::default()
        }
    }

    /// Forgets the last request's values, keeping the buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.values.clear();
        self.protocol = "";
    }

    /// Copies what `format` reads of `head`. `http2`: the request came as an HTTP/2 stream;
    /// `request_id`: the `x-request-id` meshd made for a request without one.
    pub fn capture(
        &mut self,
        head: &RequestHead<'_, '_>,
        format: &Format,
        http2: bool,
        request_id: Option<&[u8]>,
    ) {
        self.clear();
        self.protocol = match (http2, head.minor_version) {
            (true, _) => "HTTP/2",
            (false, 0) => "HTTP/1.0",
            (false, _) => "HTTP/1.1",
        };
        for name in &format.headers {
            let value: Option<&[u8]> = match &**name {
                ":method" => Some(head.method.as_bytes()),
                ":path" => Some(head.target.as_bytes()),
                ":scheme" => Some(b"http".as_slice()),
                ":authority" => head
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("host"))
                    .map(|h| h.value)
                    .or(Some(head.host.as_bytes())),
                name => head
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| h.value)
                    .or(request_id.filter(|_| name == crate::trace::REQUEST_ID)),
            };
            let range = value.map(|v| {
                self.bytes.extend_from_slice(v);
                self.bytes.len() - v.len()..self.bytes.len()
            });
            self.values.push(range);
        }
    }

    fn value(&self, slot: usize) -> Option<&[u8]> {
        let range = self.values.get(slot)?.clone()?;
        self.bytes.get(range)
    }
}

/// A finished request, as the access log sees it.
#[derive(Debug)]
pub struct Entry<'a> {
    /// When the request head arrived (wall clock).
    pub start: SystemTime,
    /// The head's fields, as captured.
    pub request: &'a Captured,
    /// Status sent downstream; 0 when none was.
    pub code: u16,
    /// A gRPC call's status, when one came.
    pub grpc_status: Option<crate::grpc::Status>,
    pub flags: &'static str,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration: Duration,
    /// From the head to the upstream's response head.
    pub response_duration: Option<Duration>,
    /// From the start of the answered try to its response head.
    pub upstream_service_time: Option<Duration>,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_cluster: Option<&'a str>,
    pub downstream: Option<SocketAddr>,
    pub downstream_principal: Option<&'a str>,
    pub upstream_principal: Option<&'a str>,
    /// Whether the request came in on the inbound listener.
    pub inbound: bool,
    pub route: Option<&'a spec::RouteRule>,
    /// The trace the request belongs to: this hop's span's when it is traced, else the one
    /// its headers carried.
    pub trace_id: Option<u128>,
    /// Content hash of the snapshot the request was served with.
    pub snapshot: &'a str,
}

impl Entry<'_> {
    fn peer_principal(&self) -> Option<&str> {
        if self.inbound {
            self.downstream_principal
        } else {
            self.upstream_principal
        }
    }
}

#[cfg(test)]
mod tests;

//! What the sidecar knows of gRPC (over the HTTP/1.1 request path, where a call's trailers
//! travel as a chunked body's trailer section): which requests are gRPC calls, where a call's
//! status is, and how a reply meshd makes itself reads to a gRPC client.

use std::time::Duration;

/// A gRPC status code (`grpc-status`), 0 to 16.
pub type Status = u8;

/// `OK`.
pub const OK: Status = 0;
/// `UNKNOWN`: an HTTP status with no closer meaning.
pub const UNKNOWN: Status = 2;
/// `DEADLINE_EXCEEDED`.
pub const DEADLINE_EXCEEDED: Status = 4;
/// `RESOURCE_EXHAUSTED`.
pub const RESOURCE_EXHAUSTED: Status = 8;
/// `PERMISSION_DENIED`.
pub const PERMISSION_DENIED: Status = 7;
/// `UNIMPLEMENTED`.
pub const UNIMPLEMENTED: Status = 12;
/// `INTERNAL`.
pub const INTERNAL: Status = 13;
/// `UNAVAILABLE`.
pub const UNAVAILABLE: Status = 14;
/// `UNAUTHENTICATED`.
pub const UNAUTHENTICATED: Status = 16;

/// Whether a request's `content-type` makes it a gRPC call: `application/grpc`, alone or with
/// a `+format` or parameters (gRPC-Web's `application/grpc-web` is another protocol).
pub fn is_grpc(content_type: &[u8]) -> bool {
    let Some(rest) = content_type.strip_prefix(b"application/grpc") else {
        return false;
    };
    matches!(rest.first(), None | Some(b'+' | b';'))
}

/// The gRPC status of a reply with HTTP `status`, as gRPC maps them
/// (`doc/http-grpc-status-mapping.md`) and Envoy answers gRPC calls.
pub fn status_for_http(status: u16) -> Status {
    match status {
        200 => OK,
        400 => INTERNAL,
        401 => UNAUTHENTICATED,
        403 => PERMISSION_DENIED,
        404 => UNIMPLEMENTED,
        429 | 502 | 503 | 504 => UNAVAILABLE,
        _ => UNKNOWN,
    }
}

/// The HTTP status a gRPC status stands for (Envoy's `grpcToHttpStatus`), by which a call's
/// error is judged where HTTP statuses are: retries on `5xx`, outlier detection.
pub fn http_status(status: Status) -> u16 {
    match status {
        OK => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        DEADLINE_EXCEEDED => 504,
        5 => 404,
        6 | 10 => 409,
        PERMISSION_DENIED => 403,
        RESOURCE_EXHAUSTED => 429,
        UNIMPLEMENTED => 501,
        UNAVAILABLE => 503,
        UNAUTHENTICATED => 401,
        _ => 500,
    }
}

/// The `grpc-status` among a head's or a trailer section's field lines (`name: value` lines
/// ending in CRLF); `None` without one, or with one that is not a status.
pub fn status_in(fields: &[u8]) -> Option<Status> {
    fields.split(|&b| b == b'\n').find_map(|line| {
        let (name, value) = line.split_at(line.iter().position(|&b| b == b':')?);
        if !name.trim_ascii().eq_ignore_ascii_case(b"grpc-status") {
            return None;
        }
        let value = std::str::from_utf8(&value[1..]).ok()?.trim_ascii();
        value.parse::<Status>().ok().filter(|&s| s <= 16)
    })
}

/// A call's `grpc-timeout` value: at most 8 digits and a unit, `H`, `M`, `S`, `m` (ms), `u`
/// (µs) or `n` (ns); `None` when malformed (the header is then ignored, as gRPC servers do).
pub fn timeout(value: &[u8]) -> Option<Duration> {
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Appends `message` as a `grpc-message` value: percent-encoded outside printable ASCII, and
/// `%` itself (the gRPC HTTP/2 protocol's rule).
pub fn write_message(out: &mut Vec<u8>, message: &str) {
    for &b in message.as_bytes() {
        if (b' '..=b'~').contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
}

/// The messages of a call's request body followed as it streams, each a flag byte and a
/// 4-byte big-endian length before its bytes, so one longer than a limit is refused before
/// any of it goes on.
#[derive(Debug)]
pub struct Messages {
    limit: u32,
    prefix: [u8; 5],
    /// Bytes of the next message's prefix seen so far.
    prefix_len: usize,
    /// Bytes of the current message still to come.
    payload_left: u64,
}

/// A message longer than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a gRPC message of {len} bytes is over the limit of {limit} (meshd --grpc-max-message)")]
pub struct TooLarge {
    pub len: u32,
    pub limit: u32,
}

impl Messages {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            prefix: [0; 5],
            prefix_len: 0,
            payload_left: 0,
        }
    }

    /// Follows `data`, the body's next bytes.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), TooLarge> {
        while !data.is_empty() {
            if self.payload_left > 0 {
                let skipped = self.payload_left.min(data.len() as u64);
                self.payload_left -= skipped;
                data = &data[skipped as usize..];
                continue;
            }
            let taken = (self.prefix.len() - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..][..taken].copy_from_slice(&data[..taken]);
            self.prefix_len += taken;
            data = &data[taken..];
            if self.prefix_len == self.prefix.len() {
                self.prefix_len = 0;
                let [_, a, b, c, d] = self.prefix;
                let len = u32::from_be_bytes([a, b, c, d]);
                if len > self.limit {
                    return Err(TooLarge {
                        len,
                        limit: self.limit,
                    });
                }
                self.payload_left = u64::from(len);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_is_told_by_its_content_type_alone() {
        assert!(is_grpc(b"application/grpc"));
        assert!(is_grpc(b"application/grpc+proto"));
        assert!(is_grpc(b"application/grpc;charset=utf-8"));
        assert!(!is_grpc(b"application/grpc-web"));
        assert!(!is_grpc(b"application/json"));
    }

    #[test]
    fn the_status_is_found_in_a_trailer_section_or_a_head() {
        let trailers = b"grpc-message: try elsewhere\r\ngrpc-status: 14\r\n\r\n";
        assert_eq!(status_in(trailers), Some(UNAVAILABLE));
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\nGrpc-Status:0\r\n\r\n";
        assert_eq!(status_in(head), Some(OK));
        assert_eq!(status_in(b"grpc-status: 17\r\n\r\n"), None);
        assert_eq!(status_in(b"x-grpc-status: 1\r\n\r\n"), None);
        assert_eq!(status_in(b"\r\n"), None);
    }

    #[test]
    fn http_statuses_map_as_grpc_says() {
        let mapped: Vec<Status> = [400, 401, 403, 404, 429, 502, 503, 504, 418]
            .map(status_for_http)
            .to_vec();
        assert_eq!(mapped, [13, 16, 7, 12, 14, 14, 14, 14, 2]);
    }

    #[test]
    fn grpc_statuses_stand_for_http_ones_as_envoy_says() {
        let mapped: Vec<u16> = (0..=16).map(http_status).collect();
        let envoy = [
            200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401,
        ];
        assert_eq!(mapped, envoy);
    }

    #[test]
    fn a_grpc_timeout_reads_every_unit_and_refuses_the_rest() {
        let ms = |v: &[u8]| timeout(v).map(|d| d.as_millis());
        assert_eq!(ms(b"1H"), Some(3_600_000));
        assert_eq!(ms(b"2M"), Some(120_000));
        assert_eq!(ms(b"3S"), Some(3_000));
        assert_eq!(ms(b"250m"), Some(250));
        assert_eq!(ms(b"99999999u"), Some(99_999));
        assert_eq!(ms(b"5000000n"), Some(5));
        for bad in [
            &b""[..],
            b"m",
            b"123456789m",
            b"1.5S",
            b"10x",
            b"-1S",
            b"1 S",
        ] {
            assert_eq!(timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_message_over_the_limit_is_found_by_its_prefix_wherever_the_frames_split_it() {
        let message = |len: u32| {
            let mut bytes = vec![0];
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.resize(5 + len as usize, b'x');
            bytes
        };
        let mut body = [message(10), message(0), message(16)].concat();
        let mut messages = Messages::new(16);
        for piece in body.chunks(3) {
            assert_eq!(messages.feed(piece), Ok(()));
        }
        body.extend_from_slice(&[0, 0, 0]);
        let mut split = Messages::new(16);
        assert_eq!(split.feed(&body), Ok(()));
        let refused = split.feed(&[0, 17]);
        assert_eq!(refused, Err(TooLarge { len: 17, limit: 16 }));
    }

    #[test]
    fn a_message_is_percent_encoded_outside_printable_ascii() {
        let mut out = Vec::new();
        write_message(&mut out, "100% down: é\n");
        assert_eq!(out, b"100%25 down: %C3%A9%0A");
    }
}

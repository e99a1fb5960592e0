//! Parsing of meshload's command-line values: the target URL, durations, the rate and extra headers.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why a command-line value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The URL does not start with `http://`.
    #[error("unsupported url `{url}`: only plain http://host[:port]/path is supported")]
    Scheme {
        /// The URL as given.
        url: String,
    },
    /// The URL starts with `http://` but is malformed.
    #[error("invalid url `{url}`: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A duration such as `500ms`, `10s` or `2m` could not be parsed.
    #[error("invalid duration `{input}`: {reason}")]
    Duration {
        /// The value as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The rate is neither a positive number nor `max`.
    #[error("invalid rate `{input}`: expected requests per second (e.g. 1000) or `max`")]
    Rate {
        /// The value as given.
        input: String,
    },
    /// A `-H` value is not `name: value`.
    #[error("invalid header `{input}`: {reason}")]
    Header {
        /// The value as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A parsed `http://host:port/path?query` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP address, without IPv6 brackets.
    pub host: String,
    /// TCP port; 80 when the URL has none.
    pub port: u16,
    /// The `Host` header value: the URL's authority as written.
    pub authority: String,
    /// The request target: path plus query, at least `/`.
    pub path_and_query: String,
}

impl FromStr for Target {
    type Err = ParseError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let bad = |reason| ParseError::Url {
            url: url.to_owned(),
            reason,
        };
        let Some(rest) = url
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
            .map(|_| &url[7..])
        else {
            return Err(ParseError::Scheme {
                url: url.to_owned(),
            });
        };
        if rest.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad("contains spaces or control characters"));
        }
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(bad("user info is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed `[` in host"))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| bad("junk after `]`"))?,
                    ),
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("bad port"))?,
        };
        let path_and_query = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            path_and_query,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path_and_query)
    }
}

/// How fast to send: a fixed open-loop rate or as fast as responses come back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Open loop: this many requests per second, on schedule regardless of responses.
    PerSecond(f64),
    /// Closed loop: each connection sends its next request when the previous response arrives.
    Max,
}

impl FromStr for Rate {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Self::Max);
        }
        match s.trim_end_matches("/s").parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 => Ok(Self::PerSecond(r)),
            _ => Err(ParseError::Rate {
                input: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PerSecond(r) => write!(f, "{r} req/s"),
            Self::Max => f.write_str("max"),
        }
    }
}

/// Parses `250us`, `500ms`, `10s`, `1.5s`, `2m` or `1h` into a duration.
pub fn parse_duration(input: &str) -> Result<Duration, ParseError> {
    let bad = |reason| ParseError::Duration {
        input: input.to_owned(),
        reason,
    };
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(bad("expected a number followed by a unit (ms, s, m)"));
    }
    let scale = match unit {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "" => return Err(bad("missing unit (ms, s, m)")),
        _ => return Err(bad("unknown unit; use us, ms, s, m or h")),
    };
    let value: f64 = number.parse().map_err(|_| bad("bad number"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| bad("out of range"))
}

/// Parses a `-H 'name: value'` argument.
pub fn parse_header(input: &str) -> Result<(String, String), ParseError> {
    let bad = |reason| ParseError::Header {
        input: input.to_owned(),
        reason,
    };
    let (name, value) = input
        .split_once(':')
        .ok_or_else(|| bad("expected `name: value`"))?;
    let name = name.trim();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(bad("header name must be a non-empty token"));
    }
    let value = value.trim();
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(bad("header value must not contain CR, LF or NUL"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests;

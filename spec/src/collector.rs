//! Trace collector URLs, checked once so that meshc refuses one meshd could not post to and
//! meshd reads exactly what was checked.

use std::fmt;

/// Which wire format a collector speaks, told by its URL's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `POST /api/v2/spans`: Zipkin v2 JSON.
    Zipkin,
    /// `POST /v1/traces`: OTLP/HTTP, JSON encoding.
    Otlp,
}

/// A collector URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorUrl {
    /// `host:port`.
    pub authority: String,
    pub path: String,
    pub protocol: Protocol,
}

/// A collector URL meshd cannot post to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    Scheme(String),
    Path(String),
    Authority(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scheme(url) => write!(
                f,
                "{url:?}: a trace collector URL starts with http:// (https is not supported)"
            ),
            Self::Path(url) => write!(
                f,
                "{url:?}: the path must be /api/v2/spans (Zipkin v2) or /v1/traces (OTLP/HTTP)"
            ),
            Self::Authority(url) => write!(f, "{url:?}: no host:port"),
        }
    }
}

impl std::error::Error for UrlError {}

/// Parses `http://HOST:PORT/api/v2/spans` or `http://HOST:PORT/v1/traces`.
pub fn parse(url: &str) -> Result<CollectorUrl, UrlError> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(UrlError::Scheme(url.to_owned()));
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let protocol = match path {
        "/api/v2/spans" => Protocol::Zipkin,
        "/v1/traces" => Protocol::Otlp,
        _ => return Err(UrlError::Path(url.to_owned())),
    };
    let port = authority.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
    if authority.is_empty() || !matches!(port, Some(Ok(_))) {
        return Err(UrlError::Authority(url.to_owned()));
    }
    Ok(CollectorUrl {
        authority: authority.to_owned(),
        path: path.to_owned(),
        protocol,
    })
}

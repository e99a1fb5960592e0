//! A trace collector meshd posts spans to: Zipkin v2 (`/api/v2/spans`, a JSON array of spans)
//! or OTLP/HTTP with JSON encoding (`/v1/traces`). One short-lived HTTP/1.1 connection per
//! batch, with tight timeouts: a collector that is down or stalled costs spans (counted by the
//! writer), never a request.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::ToSocketAddrs;
use std::time::Duration;

/// How long connecting, sending a batch and reading the status line may each take.
const TIMEOUT: Duration = Duration::from_secs(1);

pub use spec::collector::{Protocol, UrlError};

use crate::intercept::socket;

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collector {
    /// `host:port`, resolved at each post (a collector may move).
    authority: String,
    path: String,
    pub protocol: Protocol,
    /// `service.name` of the OTLP resource: the workload served, or `meshd`.
    pub service_name: String,
    /// The socket mark of connections to the collector (0: none).
    pub mark: u32,
}

impl std::fmt::Display for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

impl Collector {
    /// Parses `http://HOST:PORT/api/v2/spans` or `http://HOST:PORT/v1/traces`.
    pub fn parse(url: &str, service_name: &str) -> Result<Self, UrlError> {
        let parsed = spec::collector::parse(url)?;
        Ok(Self {
            authority: parsed.authority,
            path: parsed.path,
            protocol: parsed.protocol,
            service_name: service_name.to_owned(),
            mark: 0,
        })
    }

    /// Posts one batch: `spans` holds rendered spans, each followed by a comma.
    pub fn post(&self, spans: &[u8]) -> io::Result<()> {
        let body = self.body(spans);
        let addr =
            self.authority.to_socket_addrs()?.next().ok_or_else(|| {
                io::Error::other(format!("{} resolves to nothing", self.authority))
            })?;
        let mut stream = socket::connect_blocking(addr, self.mark, TIMEOUT)?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        let head = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n",
            self.path,
            self.authority,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(&body)?;
        let mut status = String::new();
        BufReader::new(stream.take(1024)).read_line(&mut status)?;
        match status.split_whitespace().nth(1) {
            Some(code) if code.starts_with('2') => Ok(()),
            _ => Err(io::Error::other(format!(
                "collector answered {:?}",
                status.trim_end()
            ))),
        }
    }

    /// The request body around the spans: a JSON array (Zipkin), or an OTLP export request
    /// with one resource and one scope.
    fn body(&self, spans: &[u8]) -> Vec<u8> {
        let mut body = Vec::with_capacity(spans.len() + 256);
        match self.protocol {
            Protocol::Zipkin => body.push(b'['),
            Protocol::Otlp => {
                body.extend_from_slice(b"{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
                body.extend_from_slice(b"{\"key\":\"service.name\",\"value\":{\"stringValue\":");
                let _ = serde_json::to_writer(&mut body, &self.service_name);
                body.extend_from_slice(b"}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"ringmesh\"},");
                body.extend_from_slice(b"\"spans\":[");
            }
        }
        body.extend_from_slice(spans.strip_suffix(b",").unwrap_or(spans));
        match self.protocol {
            Protocol::Zipkin => body.push(b']'),
            Protocol::Otlp => body.extend_from_slice(b"]}]}]}"),
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_protocol_by_path() {
        let zipkin = Collector::parse("http://127.0.0.1:9411/api/v2/spans", "w").expect("zipkin");
        assert_eq!(zipkin.protocol, Protocol::Zipkin);
        let otlp = Collector::parse("http://collector:4318/v1/traces", "w").expect("otlp");
        assert_eq!(otlp.protocol, Protocol::Otlp);
        for (url, error) in [
            ("https://c:4318/v1/traces", "http://"),
            ("http://c:4318/traces", "/api/v2/spans"),
            ("http://c/v1/traces", "host:port"),
            ("http://:x/v1/traces", "host:port"),
        ] {
            let e = Collector::parse(url, "w").expect_err(url).to_string();
            assert!(e.contains(error), "{url}: {e}");
        }
    }

    #[test]
    fn bodies_wrap_the_spans() {
        let spans = b"{\"a\":1},{\"b\":2},";
        let zipkin = Collector::parse("http://c:1/api/v2/spans", "w").expect("url");
        assert_eq!(zipkin.body(spans), b"[{\"a\":1},{\"b\":2}]");
        let otlp = Collector::parse("http://c:1/v1/traces", "reviews").expect("url");
        let body: serde_json::Value = serde_json::from_slice(&otlp.body(spans)).expect("JSON");
        let resource = &body["resourceSpans"][0];
        assert_eq!(
            resource["resource"]["attributes"][0]["value"]["stringValue"],
            "reviews"
        );
        assert_eq!(resource["scopeSpans"][0]["spans"][1]["b"], 2);
    }
}

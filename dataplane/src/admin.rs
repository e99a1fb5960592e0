//! The admin listener: a small blocking HTTP server on its own thread, off the data cores.
//! `/ready`, `/healthz`, `/config`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::routing::RouteState;

/// What the admin endpoints report.
#[derive(Debug)]
pub struct AdminState {
    /// The route state being served.
    pub routes: Arc<RouteState>,
    /// Set when draining starts; `/ready` then answers 503.
    pub draining: AtomicBool,
    /// The IO driver the workers run, for `/config`.
    pub driver: &'static str,
}

/// Serves admin requests until the process exits.
pub fn serve(listener: TcpListener, state: Arc<AdminState>) {
    for stream in listener.incoming().flatten() {
        // One request per connection keeps this trivial; admin traffic is light.
        if let Err(e) = handle(stream, &state) {
            eprintln!("meshd: admin request failed: {e}");
        }
    }
}

fn handle(stream: TcpStream, state: &AdminState) -> std::io::Result<()> {
    // One thread serves every admin request: a silent client must not block /ready.
    stream.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(std::time::Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the rest of the head; no admin endpoint reads a body yet.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/ready") if state.draining.load(Ordering::Relaxed) => {
            (503, "text/plain", "draining\n".to_owned())
        }
        ("GET", "/ready") => (200, "text/plain", "ready\n".to_owned()),
        ("GET", "/healthz") => (200, "text/plain", "ok\n".to_owned()),
        ("GET", "/config") => (200, "application/json", config_json(state)),
        (_, "/ready" | "/healthz" | "/config") => {
            (405, "text/plain", "method not allowed\n".into())
        }
        _ => (
            404,
            "text/plain",
            "unknown admin path; try /ready, /healthz, /config\n".into(),
        ),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        if status == 200 { "OK" } else { "Error" },
        body.len()
    )
}

fn config_json(state: &AdminState) -> String {
    let value = serde_json::json!({
        "hash": state.routes.hash,
        "io_driver": state.driver,
        "snapshot": state.routes.snapshot,
    });
    serde_json::to_string_pretty(&value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

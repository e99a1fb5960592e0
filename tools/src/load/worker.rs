//! One load connection: a thread with a blocking keep-alive socket that sends on schedule and records into its own histogram.

use super::report::Errors;
use super::schedule::{charged_latency, Schedule};
use crate::wire::{has_token, invalid, parse_content_length, BufConn};
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// Headers we accept in one response head.
const MAX_HEADERS: usize = 128;

/// Highest latency the histograms track, in microseconds; larger values are clamped to it.
const MAX_LATENCY_US: u64 = 60_000_000;

/// The tally key for responses that lack the tallied header.
pub(super) const MISSING: &str = "(missing)";

/// Everything a worker needs, shared read-only by all workers.
#[derive(Debug)]
pub(super) struct Plan<'a> {
    /// Resolved target addresses, tried in order on each connect.
    pub(super) addrs: &'a [SocketAddr],
    /// The complete request bytes, sent as-is every time.
    pub(super) request: &'a [u8],
    /// Connect timeout, and the limit from send to a complete response.
    pub(super) timeout: Duration,
    /// Response header to tally by value.
    pub(super) tally: Option<&'a str>,
    /// The open-loop schedule; `None` for closed loop.
    pub(super) schedule: Option<Schedule>,
    /// Number of workers (the stride of the round-robin deal).
    pub(super) connections: usize,
    /// How long to keep issuing requests.
    pub(super) duration: Duration,
}

/// What one worker measured; merged by `run`.
#[derive(Debug)]
pub(super) struct Stats {
    pub(super) latency_us: Histogram<u64>,
    pub(super) errors: Errors,
    /// Responses by status code, indexed by the code (0..1000).
    pub(super) status: Vec<u64>,
    pub(super) tally: HashMap<String, u64>,
    pub(super) requests: u64,
    pub(super) responses: u64,
    pub(super) unsent: u64,
    /// Successful connects, including the first.
    pub(super) connects: u64,
}

impl Stats {
    fn new() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
            errors: Errors::default(),
            status: vec![0; 1000],
            tally: HashMap::new(),
            requests: 0,
            responses: 0,
            unsent: 0,
            connects: 0,
        }
    }
}

/// A parsed response's outcome.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    status: u16,
    close: bool,
}

/// Runs worker `k`: connects, reports ready, waits for the start instant, then sends its share.
pub(super) fn run(k: usize, plan: &Plan<'_>, ready: Sender<()>, go: Receiver<Instant>) -> Stats {
    let mut stats = Stats::new();
    // Connect before the clock starts so set-up is not charged to the first requests;
    // a failure here is retried (and counted) by the first request.
    let mut conn = connect(plan).ok();
    stats.connects += u64::from(conn.is_some());
    let mut tally_value = String::new();
    let _ = ready.send(());
    let Ok(start) = go.recv() else { return stats };
    let end = start + plan.duration;
    if let Some(schedule) = plan.schedule {
        let mut mine = schedule.for_connection(k, plan.connections);
        let mut behind = false;
        for i in mine.by_ref() {
            let intended = start + schedule.offset(i);
            let now = Instant::now();
            if now >= end {
                behind = true;
                break;
            }
            if intended > now {
                thread::sleep(intended - now);
            }
            exchange(
                &mut conn,
                plan,
                &mut stats,
                &mut tally_value,
                Some(intended),
            );
        }
        if behind {
            stats.unsent = 1 + mine.count() as u64;
        }
    } else {
        while Instant::now() < end {
            exchange(&mut conn, plan, &mut stats, &mut tally_value, None);
        }
    }
    stats
}

/// Opens a connection to the first address that accepts one.
fn connect(plan: &Plan<'_>) -> io::Result<BufConn<TcpStream>> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    for addr in plan.addrs {
        match TcpStream::connect_timeout(addr, plan.timeout) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                // A per-read limit; the whole response is bounded by the deadline in BufConn.
                stream.set_read_timeout(Some(plan.timeout))?;
                stream.set_write_timeout(Some(plan.timeout))?;
                return Ok(BufConn::new(stream));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Sends one request and reads its response, connecting first if needed, and records the outcome.
fn exchange(
    conn: &mut Option<BufConn<TcpStream>>,
    plan: &Plan<'_>,
    stats: &mut Stats,
    tally_value: &mut String,
    intended: Option<Instant>,
) {
    stats.requests += 1;
    let c = match conn {
        Some(c) => c,
        None => match connect(plan) {
            Ok(c) => {
                stats.connects += 1;
                conn.insert(c)
            }
            Err(_) => {
                stats.errors.connect += 1;
                return;
            }
        },
    };
    let sent = Instant::now();
    c.deadline = Some(sent + plan.timeout);
    let result = c
        .get_mut()
        .write_all(plan.request)
        .and_then(|()| read_response(c, plan.tally, tally_value));
    let done = Instant::now();
    match result {
        Ok(outcome) => {
            let latency = charged_latency(intended, sent, done);
            let us = u64::try_from(latency.as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            stats.latency_us.saturating_record(us);
            stats.responses += 1;
            stats.status[usize::from(outcome.status)] += 1;
            match outcome.status {
                400..=499 => stats.errors.status_4xx += 1,
                500..=599 => stats.errors.status_5xx += 1,
                _ => {}
            }
            if plan.tally.is_some() {
                match stats.tally.get_mut(tally_value.as_str()) {
                    Some(n) => *n += 1,
                    None => {
                        stats.tally.insert(tally_value.clone(), 1);
                    }
                }
            }
            if outcome.close {
                *conn = None;
            }
        }
        Err(e) => {
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => stats.errors.timeout += 1,
                _ => stats.errors.io += 1,
            }
            *conn = None;
        }
    }
}

/// How a response body is framed (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Reads one complete final response (skipping 1xx), discarding the body.
///
/// Leaves the tallied header's value (or `MISSING`) in `tally_value`.
fn read_response(
    conn: &mut BufConn<TcpStream>,
    tally: Option<&str>,
    tally_value: &mut String,
) -> io::Result<Outcome> {
    loop {
        let (status, framing, close) = read_head(conn, tally, tally_value)?;
        match framing {
            Framing::None => {}
            Framing::Length(n) => conn.read_exact_body(n, None)?,
            Framing::Chunked => conn.read_chunked_body(None)?,
            Framing::UntilClose => conn.read_to_eof(None)?,
        }
        // Interim responses precede the real one (101 is not expected for a plain GET).
        if !(100..200).contains(&status) {
            return Ok(Outcome {
                status,
                close: close || matches!(framing, Framing::UntilClose),
            });
        }
    }
}

/// Reads and parses one response head.
fn read_head(
    conn: &mut BufConn<TcpStream>,
    tally: Option<&str>,
    tally_value: &mut String,
) -> io::Result<(u16, Framing, bool)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(conn.buffered()) {
            Ok(httparse::Status::Complete(n)) => {
                let parsed = interpret(&resp, tally, tally_value)?;
                conn.consume(n);
                return Ok(parsed);
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err(invalid("malformed response head")),
        }
        if conn.fill()? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "eof before response head",
            ));
        }
    }
}

/// Decides status, framing and persistence from a parsed head, and notes the tallied header.
fn interpret(
    resp: &httparse::Response<'_, '_>,
    tally: Option<&str>,
    tally_value: &mut String,
) -> io::Result<(u16, Framing, bool)> {
    let (Some(status), Some(version)) = (resp.code, resp.version) else {
        return Err(invalid("incomplete status line"));
    };
    if !(100..1000).contains(&status) {
        return Err(invalid("status code out of range"));
    }
    let mut length = None;
    let mut chunked = None;
    let mut close = false;
    let mut keep_alive = false;
    tally_value.clear();
    tally_value.push_str(MISSING);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = Some(parse_content_length(h.value)?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= has_token(h.value, "close");
            keep_alive |= has_token(h.value, "keep-alive");
        }
        if tally.is_some_and(|t| h.name.eq_ignore_ascii_case(t)) {
            tally_value.clear();
            tally_value.push_str(&String::from_utf8_lossy(h.value));
        }
    }
    let framing = match (status, chunked, length) {
        (100..=199 | 204 | 304, _, _) => Framing::None,
        (_, Some(true), _) => Framing::Chunked,
        (_, Some(false), _) => Framing::UntilClose,
        (_, None, Some(n)) => Framing::Length(n),
        (_, None, None) => Framing::UntilClose,
    };
    Ok((status, framing, close || (version == 0 && !keep_alive)))
}

//! Request mirroring (Envoy's shadowing): a share of the requests a rule matches is copied to
//! the rule's mirror destination, fire and forget. The copy goes out as its own task on the
//! same core, through the core's pool, with `-shadow` appended to its Host; its response is
//! read and discarded. It never delays or fails the request it copies: the main request does
//! not wait for it, and whatever happens to the copy is only counted.
//!
//! Bounds: at most [`MAX_IN_FLIGHT`] copies per core (beyond it a request is not mirrored);
//! only request bodies of at most [`MAX_BODY`] bytes are mirrored (copied while they are
//! forwarded): a larger Content-Length is not mirrored, and a chunked body that outgrows the
//! bound drops its copy. Requests that ask to switch protocols are not mirrored either.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use monoio::time::Instant;

use crate::balancer::Input;
use crate::conn::Conn;
use crate::http1::head::{parse_response, MAX_HEADERS};
use crate::http1::{BodyFraming, ChunkedScanner};
use crate::percore::Core;
use crate::pool::{Breaker, Upstream};
use crate::routing::{RouteState, RuleRef};
use crate::tls::CoreTls;
use crate::upstream::{self, ConnectError, Secure};

/// Most mirror requests one core has in flight; beyond it requests are not mirrored.
pub const MAX_IN_FLIGHT: usize = 64;

/// Largest request body mirrored (a chunked body counts its framing).
pub const MAX_BODY: u64 = 64 * 1024;

/// One core's mirroring state: the in-flight count and what happened to mirrored requests.
#[derive(Debug, Default)]
pub struct Mirrors {
    in_flight: Cell<usize>,
    /// Copies sent and answered (their response read to the end).
    pub completed: Cell<u64>,
    /// Copies that failed: no endpoint, connect error, timeout, bad or no response.
    pub failed: Cell<u64>,
    /// Requests selected for mirroring but skipped because [`MAX_IN_FLIGHT`] copies were out.
    pub skipped_busy: Cell<u64>,
    /// Requests selected for mirroring but skipped for their body (over [`MAX_BODY`]) or a
    /// protocol switch.
    pub skipped_body: Cell<u64>,
}

impl Mirrors {
    /// Mirror requests in flight on this core now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }
}

/// Whether a request is mirrored, given the rule's share in millionths and a uniform draw in
/// `0..1_000_000`.
pub fn selected(per_million: u32, draw: u32) -> bool {
    draw < per_million
}

/// Holds one of the core's in-flight slots until released or dropped.
#[derive(Debug)]
struct Slot {
    core: Rc<Core>,
    held: bool,
}

impl Slot {
    /// Gives the slot back now (a copy given up before its request ends).
    fn release(&mut self) {
        if std::mem::take(&mut self.held) {
            let in_flight = &self.core.mirrors.in_flight;
            in_flight.set(in_flight.get().saturating_sub(1));
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

/// The copy of one request, assembled while the original is forwarded.
#[derive(Debug)]
pub struct Shadow {
    slot: Slot,
    addr: SocketAddr,
    /// The mirror group's circuit breaker, if it has pool limits.
    breaker: Option<Rc<Breaker>>,
    /// The core's TLS configurations and the group's identities, when copies go over mTLS.
    secure: Option<(Rc<CoreTls>, Vec<String>)>,
    /// The forwarded head with the shadow Host, then the body bytes seen so far.
    bytes: Vec<u8>,
    /// Where the head ends in `bytes`.
    head_len: usize,
    /// The body that follows the head in full.
    body: Body,
    is_head: bool,
}

/// What a copy's body is known to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// This many bytes.
    Length(u64),
    /// Chunked, within [`MAX_BODY`] so far.
    Chunked,
    /// Chunked and over [`MAX_BODY`]: the copy is dropped.
    Overflowed,
}

/// Decides whether the request routed to `rule` is mirrored and, if so, starts its copy from
/// `forwarded`: the head as forwarded, plus any body that went with it. `rest` is how the rest
/// of the body follows (`BodyFraming::None` when it is all in `forwarded`).
pub fn begin(
    core: &Rc<Core>,
    routes: &RouteState,
    rule: RuleRef,
    forwarded: &[u8],
    rest: BodyFraming,
    is_head: bool,
    upgrade: bool,
) -> Option<Shadow> {
    let mirror = routes
        .snapshot
        .routes
        .get(rule.table as usize)?
        .rules
        .get(rule.rule as usize)?
        .mirror
        .as_ref()?;
    let draw = if mirror.per_million >= 1_000_000 {
        0
    } else {
        fastrand::u32(..1_000_000)
    };
    if !selected(mirror.per_million, draw) {
        return None;
    }
    let mirrors = &core.mirrors;
    // The body already in `forwarded`: a small coalesced one, or all of it when it was
    // buffered so that a retry can replay it. The bound counts it too.
    let sent = (forwarded.len() - forwarded_head_len(forwarded)) as u64;
    let body = match rest {
        BodyFraming::None if !upgrade && sent <= MAX_BODY => Body::Length(sent),
        BodyFraming::Length(n) if !upgrade && sent + n <= MAX_BODY => Body::Length(sent + n),
        BodyFraming::Chunked if !upgrade && sent <= MAX_BODY => Body::Chunked,
        _ => {
            mirrors.skipped_body.set(mirrors.skipped_body.get() + 1);
            if mirrors.skipped_body.get() == 1 {
                tracing::info!(
                    "note: a request of a mirrored rule was not mirrored: only bodies \
                     of at most {MAX_BODY} bytes are copied (not upgrades); further skips are \
                     only counted"
                );
            }
            return None;
        }
    };
    if mirrors.in_flight.get() >= MAX_IN_FLIGHT {
        mirrors.skipped_busy.set(mirrors.skipped_busy.get() + 1);
        return None;
    }
    let Some(destination) = routes.destination(mirror.service, mirror.subset) else {
        mirrors.failed.set(mirrors.failed.get() + 1);
        return None;
    };
    let group = destination.group;
    if group.endpoints.is_empty() || group.schedule.is_empty() {
        mirrors.failed.set(mirrors.failed.get() + 1);
        return None;
    }
    // The mirror group's own balancer, skipping ejected endpoints (no request key to hash on:
    // a hash balancer picks at random, as for a request without the key).
    let input = Input {
        headers: &[],
        peer: &|| None,
    };
    let slot = core
        .upstreams
        .balancing
        .borrow_mut()
        .pick(destination.group_index, group, &input)
        .endpoint;
    let addr = *group.endpoints.get(slot as usize)?;
    let breaker = core
        .upstreams
        .breakers
        .borrow()
        .get(destination.group_index)
        .cloned()
        .flatten();
    let secure = Secure::for_group(&core.security, group).map(|s| (s.tls, s.identities.to_vec()));
    let expected = match body {
        Body::Length(n) => n - sent,
        Body::Chunked | Body::Overflowed => 0,
    };
    let mut bytes = Vec::with_capacity(forwarded.len() + 16 + expected as usize);
    let head_len = shadow_head(forwarded, &mut bytes);
    mirrors.in_flight.set(mirrors.in_flight.get() + 1);
    Some(Shadow {
        slot: Slot {
            core: core.clone(),
            held: true,
        },
        addr,
        breaker,
        secure,
        bytes,
        head_len,
        body,
        is_head,
    })
}

impl Shadow {
    /// Copies the next bytes of the streamed body as they are forwarded; a chunked body that
    /// outgrows [`MAX_BODY`] gives up its copy, its memory and its in-flight slot at once.
    pub fn copy(&mut self, body: &[u8]) {
        if self.body == Body::Overflowed {
            return;
        }
        if self.body == Body::Chunked
            && (self.bytes.len() - self.head_len + body.len()) as u64 > MAX_BODY
        {
            self.body = Body::Overflowed;
            self.bytes = Vec::new();
            let mirrors = &self.slot.core.mirrors;
            mirrors.failed.set(mirrors.failed.get() + 1);
            self.slot.release();
            return;
        }
        self.bytes.extend_from_slice(body);
    }

    /// Sends the copy as its own task, if its body is complete (a body cut short is dropped).
    pub fn send(self) {
        let complete = match self.body {
            Body::Length(n) => (self.bytes.len() - self.head_len) as u64 == n,
            // The caller sends a chunked copy only once the body's last chunk went through.
            Body::Chunked => true,
            // Counted when it overflowed.
            Body::Overflowed => return,
        };
        if !complete {
            let mirrors = &self.slot.core.mirrors;
            mirrors.failed.set(mirrors.failed.get() + 1);
            return;
        }
        monoio::spawn(run(self));
    }
}

async fn run(copy: Shadow) {
    let Shadow {
        slot,
        addr,
        breaker,
        secure,
        bytes,
        is_head,
        ..
    } = copy;
    let core = &slot.core;
    let secure = secure.as_ref().map(|(tls, identities)| Secure {
        tls: tls.clone(),
        identities,
        alpn: None,
    });
    match exchange(
        core,
        addr,
        breaker.as_ref(),
        secure.as_ref(),
        bytes,
        is_head,
    )
    .await
    {
        Ok(reusable) => {
            core.mirrors.completed.set(core.mirrors.completed.get() + 1);
            if let Some(conn) = reusable {
                core.recycle(None, addr, conn);
            }
        }
        Err(_) => core.mirrors.failed.set(core.mirrors.failed.get() + 1),
    }
    // The slot is released here, when `slot` drops.
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("mirror: {what} timed out"))
}

/// Sends `bytes` to `addr` and reads the response to its end. Returns the connection when it
/// may be reused. A group with pool limits lends the copy a connection only if it is under its
/// limit right away: a copy never waits for (nor takes the place of) the traffic it mirrors.
async fn exchange(
    core: &Core,
    addr: SocketAddr,
    breaker: Option<&Rc<Breaker>>,
    secure: Option<&Secure<'_>>,
    bytes: Vec<u8>,
    is_head: bool,
) -> io::Result<Option<Upstream>> {
    let settings = core.settings;
    let mark = settings.marks.map_or(0, |m| m.mesh);
    let mut up = match core.upstreams.pool.take(addr, secure) {
        Some(up) => up,
        None => {
            let lease = match breaker {
                None => None,
                Some(breaker) => Some(breaker.lease().ok_or_else(|| {
                    io::Error::other("mirror: the group's connection limit is reached")
                })?),
            };
            let until = Instant::now() + settings.connect_timeout;
            let conn = match upstream::connect(&core.security, addr, mark, until, secure).await {
                Ok(conn) => conn,
                Err(ConnectError::TimedOut) => return Err(timed_out("connect")),
                Err(ConnectError::Refused(e) | ConnectError::Tls(e)) => return Err(e),
                Err(ConnectError::Naming(m)) => return Err(io::Error::other(m)),
            };
            Upstream::new(conn, lease)
        }
    };
    up.served += 1;
    let len = bytes.len();
    let write = up.stream.write_range(bytes, 0..len);
    let (written, _) = monoio::time::timeout(settings.idle_timeout, write)
        .await
        .map_err(|_| timed_out("send"))?;
    written?;
    let head = read_head(&mut up, is_head);
    let (framing, keep_alive) = monoio::time::timeout(settings.upstream_timeout, head)
        .await
        .map_err(|_| timed_out("response"))??;
    let complete = discard_body(&mut up, framing, settings.idle_timeout).await?;
    let reusable = complete && keep_alive && up.buffered().is_empty() && up.reusable();
    Ok(reusable.then_some(up))
}

/// Reads the final response head (skipping interim ones): its body framing and whether the
/// connection may be reused.
async fn read_head(up: &mut Conn, is_head: bool) -> io::Result<(BodyFraming, bool)> {
    let method = if is_head { "HEAD" } else { "GET" };
    loop {
        if !up.buffered().is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match parse_response(up.buffered(), &mut headers, method) {
                Ok(Some(head)) => {
                    let (len, status) = (head.len, head.status);
                    let parsed = (head.framing, head.keep_alive);
                    up.consume(len);
                    match status {
                        // A switch was never asked for: nothing sensible follows.
                        101 => return Ok((BodyFraming::None, false)),
                        100..=199 => continue,
                        _ => return Ok(parsed),
                    }
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
        }
        if up.fill().await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Reads and drops a response body; `Ok(false)` when it ran until the connection closed.
async fn discard_body(up: &mut Conn, framing: BodyFraming, idle: Duration) -> io::Result<bool> {
    let mut scanner = ChunkedScanner::default();
    let mut left = match framing {
        BodyFraming::None => return Ok(true),
        BodyFraming::Length(n) => n,
        BodyFraming::Chunked | BodyFraming::UntilClose => u64::MAX,
    };
    loop {
        if up.buffered().is_empty() {
            let read = monoio::time::timeout(idle, up.fill())
                .await
                .map_err(|_| timed_out("response body"))??;
            if read == 0 {
                return match framing {
                    BodyFraming::UntilClose => Ok(false),
                    _ => Err(io::ErrorKind::UnexpectedEof.into()),
                };
            }
        }
        let available = up.buffered().len();
        let n = match framing {
            BodyFraming::Chunked => scanner
                .feed(up.buffered())
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?,
            _ => left.min(available as u64) as usize,
        };
        up.consume(n);
        left = left.saturating_sub(n as u64);
        let done = match framing {
            BodyFraming::Chunked => scanner.is_done(),
            _ => left == 0,
        };
        if done {
            return Ok(true);
        }
    }
}

/// Length of the head at the start of `forwarded` (through the blank line), or all of it.
fn forwarded_head_len(forwarded: &[u8]) -> usize {
    find(forwarded, b"\r\n\r\n").map_or(forwarded.len(), |i| i + 4)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Writes `forwarded` (a head, maybe followed by body bytes) to `out` with `-shadow` appended
/// to the Host value; returns the length of the head as written.
pub fn shadow_head(forwarded: &[u8], out: &mut Vec<u8>) -> usize {
    let head_len = forwarded_head_len(forwarded);
    let mut start = find(forwarded, b"\r\n").map_or(head_len, |i| i + 2);
    while start < head_len {
        let Some(len) = find(&forwarded[start..head_len], b"\r\n") else {
            break;
        };
        if len == 0 {
            break;
        }
        let line = &forwarded[start..start + len];
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            if line[..colon].eq_ignore_ascii_case(b"host") {
                let value = &line[colon + 1..];
                let leading = value.len() - value.trim_ascii_start().len();
                let host = value.trim_ascii();
                let value_start = start + colon + 1 + leading;
                out.extend_from_slice(&forwarded[..value_start]);
                let before = out.len();
                shadow_host(host, out);
                let added = out.len() - before - host.len();
                out.extend_from_slice(&forwarded[value_start + host.len()..]);
                return head_len + added;
            }
        }
        start += len + 2;
    }
    out.extend_from_slice(forwarded);
    head_len
}

/// Writes `host` with `-shadow` appended to its name, before any port, as Envoy does:
/// `reviews:9080` becomes `reviews-shadow:9080`.
pub fn shadow_host(host: &[u8], out: &mut Vec<u8>) {
    let port_start = host
        .iter()
        .rposition(|&b| b == b':')
        .filter(|&i| !host[i..].contains(&b']'));
    let (name, port) = host.split_at(port_start.unwrap_or(host.len()));
    out.extend_from_slice(name);
    out.extend_from_slice(b"-shadow");
    out.extend_from_slice(port);
}

#[cfg(test)]
mod tests;

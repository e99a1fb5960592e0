//! Phases 3 to 5 of one try: a pooled or new upstream connection, the forwarded request, the
//! response head.

use std::cell::{Cell, OnceCell, RefCell};
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use monoio::time::Instant;

use spec::HeaderEdits;

use super::acquire::AcquireError;
use super::body::{copy_body, CopyError, Idle, Kept, Taps};
use super::response::{read_response_head, ResponseError, ResponsePlan};
use crate::balancer::{Inflight, Pick};
use crate::conn::Conn;
use crate::http1::reply::LocalReply;
use crate::http1::{BodyFraming, ChunkedScanner};
use crate::http2::client as h2;
use crate::mirror::Shadow;
use crate::percore::{Core, Installed, Security};
use crate::pool::{Breaker, Refused, Upstream};
use crate::retry::{Failure, Retries};
use crate::stream;
use crate::upstream::{self, Secure};

/// What every try of one request shares.
pub(super) struct Exchange<'a> {
    /// How the part of the request body not in the buffered head is framed.
    pub(super) request_framing: BodyFraming,
    /// Where a chunked body's scan stands after the part of it in the buffered head.
    pub(super) chunked_from: ChunkedScanner,
    /// The rule timeout's deadline for the whole request.
    pub(super) deadline: Option<Instant>,
    /// The rule timeout, or `--upstream-timeout` without one (for messages).
    pub(super) timeout: Duration,
    pub(super) is_head: bool,
    pub(super) upgrade: bool,
    /// The client speaks HTTP/1.1, so interim responses may go to it.
    pub(super) http11: bool,
    pub(super) edits: &'a HeaderEdits,
    /// The destination group's circuit breaker, if it has pool limits.
    pub(super) breaker: Option<&'a Rc<Breaker>>,
    /// The destination group's name, for messages.
    pub(super) group_name: &'a str,
    /// Mutual TLS to the destination, when its service has identities.
    pub(super) secure: Option<Secure<'a>>,
    /// The socket mark of new connections (0: none).
    pub(super) mark: u32,
    /// The upstream is called with HTTP/2 (see [`super::plan::Plan::h2_upstream`]): each try
    /// is a stream of this core's connection to it.
    pub(super) h2: bool,
    /// Request body bytes the last try sent (the buffered part included).
    pub(super) body_sent: Cell<u64>,
    /// A full-duplex body's task's report.
    pub(super) duplex: OnceCell<Rc<DuplexBody>>,
    /// A full-duplex body is kept while it fits in this many bytes, for a retry to replay.
    pub(super) keep_limit: Option<usize>,
}

/// Marks a full-duplex body's task ended when dropped.
struct EndOnDrop<'a>(&'a DuplexBody);

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.0.ended.set(Some(Instant::now()));
    }
}

/// What a full-duplex body's task reports once the body has ended.
#[derive(Debug)]
pub(super) struct DuplexBody {
    /// When either direction last moved a byte (see [`Idle`]).
    moved: Rc<Cell<Instant>>,
    /// Bytes it sent so far (chunk framing included).
    sent: Cell<u64>,
    /// When the task ended, however it did.
    ended: Cell<Option<Instant>>,
    /// The whole body, when it was kept and fitted.
    kept: RefCell<Option<Vec<u8>>>,
}

/// A try that did not produce a response to forward.
pub(super) enum Tried {
    /// The client went away: the request is over.
    ClientGone,
    /// The request is over: answer it with this reply and close, no retry (its body was
    /// refused, or the rule timeout expired while it streamed).
    Refused(LocalReply, String),
    /// The try failed; the reply to send unless it is retried.
    Failed(FailedTry),
}

pub(super) struct FailedTry {
    /// The retryable condition, if it is one.
    pub(super) failure: Option<Failure>,
    /// It ran on a pooled connection.
    pub(super) reused: bool,
    /// No response byte arrived.
    pub(super) before_response: bool,
    /// The downstream connection may stay open (nothing of the request is left unread).
    pub(super) keep_alive: bool,
    pub(super) reply: LocalReply,
    pub(super) detail: String,
}

impl Exchange<'_> {
    /// Request body bytes sent so far (a full-duplex body's as it streams).
    pub(super) fn body_sent(&self) -> u64 {
        self.body_sent.get() + self.duplex.get().map_or(0, |d| d.sent.get())
    }

    /// The idle clock of a try's response body: shared with its request body's when that
    /// streams on its own (full duplex).
    pub(super) fn response_idle(&self, timeout: Duration) -> Idle {
        Idle {
            timeout,
            shared: self.duplex.get().map(|d| d.moved.clone()),
        }
    }

    /// Whether no try has taken any of the streamed body from the client yet (a connect that
    /// failed, say): it is all still there to send.
    pub(super) fn body_untouched(&self) -> bool {
        self.duplex.get().is_none() && self.body_sent.get() == 0
    }

    /// Whether this try's body streams on its own (full duplex): `Some(None)` while it does,
    /// `Some(Some(t))` once it ended at `t`.
    fn duplex_body_end(&self) -> Option<Option<Instant>> {
        self.duplex.get().map(|d| d.ended.get())
    }

    /// A full-duplex body that ended whole within [`Self::keep_limit`], once.
    pub(super) fn take_kept_body(&self) -> Option<Vec<u8>> {
        self.duplex.get()?.kept.borrow_mut().take()
    }

    /// One try (phases 3–5): a connection to `addr` (pooled when `pooled_ok`), the request
    /// head and body, the response head. `per_try` bounds the try, within the rule deadline.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn attempt(
        &self,
        down: &mut Conn,
        core: &Core,
        addr: SocketAddr,
        per_try: Option<Duration>,
        pooled_ok: bool,
        request_out: &mut Vec<u8>,
        response_out: &mut Vec<u8>,
        inflight: &mut Option<Inflight<'_>>,
        shadow: &mut Option<Shadow>,
    ) -> Result<(Upstream, ResponsePlan), Tried> {
        // The per-try timeout counts only when it ends before the rule's deadline.
        let per_try_end = per_try
            .map(|t| Instant::now() + t)
            .filter(|end| self.deadline.is_none_or(|d| *end < d));
        let until = per_try_end.or(self.deadline);
        let timed_out = |detail: String| FailedTry {
            failure: per_try_end.map(|_| Failure::PerTryTimeout),
            reused: false,
            before_response: true,
            keep_alive: false,
            reply: LocalReply::UpstreamTimeout,
            detail,
        };
        // Phase 3: connect, or reuse a pooled connection.
        let (mut up, reused) = match self.acquire(core, addr, pooled_ok, until).await {
            Ok(acquired) => acquired,
            Err(error) => {
                if error.endpoint_fault() {
                    failed(inflight);
                }
                let failure = error.failure(per_try_end.is_some());
                let (reply, detail) = error.reply();
                return Err(Tried::Failed(FailedTry {
                    failure,
                    reused: false,
                    before_response: true,
                    keep_alive: true,
                    reply,
                    detail,
                }));
            }
        };
        up.served += 1;
        let reset = |detail: &str, before_response: bool| FailedTry {
            failure: Some(Failure::Reset),
            reused,
            before_response,
            keep_alive: false,
            reply: LocalReply::UpstreamReset,
            detail: detail.to_owned(),
        };
        // Phase 4: forward head (and a buffered body), then stream any remaining body.
        let head = std::mem::take(request_out);
        let len = head.len();
        let write = up.stream.write_range(head, 0..len);
        let (written, head) = match until {
            None => write.await,
            Some(until) => match monoio::time::timeout_at(until, write).await {
                Ok(done) => done,
                Err(_) => {
                    // The buffer went with the abandoned write: no try can follow.
                    failed(inflight);
                    let mut tried = timed_out("the timeout expired while sending".to_owned());
                    tried.failure = None;
                    return Err(Tried::Failed(tried));
                }
            },
        };
        *request_out = head;
        if written.is_err() {
            failed(inflight);
            return Err(Tried::Failed(reset("write failed", true)));
        }
        if let Err(tried) = self.send_body(down, &mut up, core, shadow).await {
            if matches!(&tried, Tried::Refused(LocalReply::UpstreamReset, _)) {
                failed(inflight);
            }
            return Err(tried);
        }
        // Phase 5: the response head, within the per-try, the rule's or the sidecar's timeout
        // (which counts from the end of the request body, when that streams on its own).
        let interim = self.http11.then_some(&mut down.stream);
        let read = {
            let mut read = pin!(read_response_head(
                &mut up,
                self.is_head,
                self.upgrade,
                self.edits,
                response_out,
                interim,
            ));
            let timeout = core.settings.upstream_timeout;
            let mut head_by = until.unwrap_or_else(|| Instant::now() + timeout);
            loop {
                match monoio::time::timeout_at(head_by, read.as_mut()).await {
                    Ok(read) => break Ok(read),
                    Err(_) => match self.duplex_body_end().filter(|_| until.is_none()) {
                        Some(None) => head_by = Instant::now() + timeout,
                        Some(Some(ended)) if ended + timeout > Instant::now() => {
                            head_by = ended + timeout;
                        }
                        _ => break Err(()),
                    },
                }
            }
        };
        let tried = match read {
            Ok(Ok(response)) => return Ok((up, response)),
            Ok(Err(ResponseError::Closed)) => {
                reset("connection closed before response headers", true)
            }
            Ok(Err(ResponseError::ClosedMidHead)) => reset(
                "connection closed in the middle of the response head",
                false,
            ),
            // TLS 1.3 ends the client's handshake before the server has checked its
            // certificate: a refusal arrives as an alert where the response should be.
            Ok(Err(ResponseError::Io(e))) if !reused && stream::is_fatal_alert(&e) => {
                core.security.count_authn(|c| c.outbound_failures += 1);
                FailedTry {
                    failure: Some(Failure::ConnectFailure),
                    reused,
                    before_response: true,
                    keep_alive: false,
                    reply: LocalReply::ConnectFailure,
                    detail: format!("{addr}: the server refused the TLS session: {e}"),
                }
            }
            Ok(Err(ResponseError::Io(e))) if stream::is_refused_stream(&e) => FailedTry {
                failure: Some(Failure::RefusedStream),
                ..reset(&format!("{addr}: {e}"), true)
            },
            Ok(Err(ResponseError::Io(e))) => reset(&e.to_string(), false),
            Ok(Err(ResponseError::Downstream)) => return Err(Tried::ClientGone),
            Ok(Err(ResponseError::Upgrade)) => FailedTry {
                failure: None,
                reused,
                before_response: false,
                keep_alive: false,
                reply: LocalReply::BadUpstreamResponse,
                detail: "101 Switching Protocols to a request that asked for no upgrade".to_owned(),
            },
            Ok(Err(ResponseError::Malformed(detail))) => FailedTry {
                failure: None,
                reused,
                before_response: false,
                keep_alive: false,
                reply: LocalReply::BadUpstreamResponse,
                detail,
            },
            Err(_elapsed) => {
                let (timeout, which) = match per_try_end.and(per_try) {
                    Some(t) => (t, " (per-try timeout)"),
                    None => (self.timeout, ""),
                };
                let ms = timeout.as_millis();
                timed_out(format!("no response within {ms} ms{which}"))
            }
        };
        failed(inflight);
        Err(Tried::Failed(tried))
    }

    /// Phase 4's body: streamed to `up` before the response is read; or, between two HTTP/2
    /// streams, by a task of its own while the response comes back (full duplex: a
    /// bidirectional call's server answers before its client ends; see [`DuplexBody`]).
    async fn send_body(
        &self,
        down: &mut Conn,
        up: &mut Upstream,
        core: &Core,
        shadow: &mut Option<Shadow>,
    ) -> Result<(), Tried> {
        let timeout = core.settings.idle_timeout;
        let (framing, scanner) = (self.request_framing, self.chunked_from.clone());
        if framing == BodyFraming::None {
            if let Some(shadow) = shadow.take() {
                shadow.send();
            }
            return Ok(());
        }
        // Both sides bridged HTTP/2 streams (so each split below gives a stream).
        if down.stream.is_bridged() && up.stream.is_bridged() {
            let split = (up.stream.bridged_output(), down.take_bridged_input());
            if let (Some(mut output), Some(mut input)) = split {
                let report = Rc::new(DuplexBody {
                    moved: Rc::new(Cell::new(Instant::now())),
                    sent: Cell::new(0),
                    ended: Cell::new(None),
                    kept: RefCell::new(None),
                });
                let _ = self.duplex.set(report.clone());
                let idle = Idle {
                    timeout,
                    shared: Some(report.moved.clone()),
                };
                let mut shadow = shadow.take();
                let mut kept = self.keep_limit.map(Kept::new);
                monoio::spawn(async move {
                    let _ended = EndOnDrop(&report);
                    let taps = Taps {
                        mirror: shadow.as_mut(),
                        kept: kept.as_mut(),
                        trailers: None,
                        sent: Some(&report.sent),
                    };
                    let framing = (framing, scanner);
                    let copy = copy_body(&mut input, &mut output, framing, &idle, taps);
                    if let Ok(copied) = copy.await {
                        report.sent.set(copied);
                        *report.kept.borrow_mut() = kept.and_then(Kept::into_bytes);
                        if let Some(shadow) = shadow {
                            shadow.send();
                        }
                    }
                });
                return Ok(());
            }
        }
        // Mirroring hook: a streamed body is copied into the mirror's request as it goes.
        let taps = Taps {
            mirror: shadow.as_mut(),
            ..Taps::default()
        };
        let idle = Idle::alone(timeout);
        let body = copy_body(down, &mut up.stream, (framing, scanner), &idle, taps);
        let copied = match self.deadline {
            None => body.await,
            Some(deadline) => match monoio::time::timeout_at(deadline, body).await {
                Ok(copied) => copied,
                Err(_elapsed) => {
                    let detail = "the rule timeout expired while sending the request body";
                    return Err(Tried::Refused(
                        LocalReply::UpstreamTimeout,
                        detail.to_owned(),
                    ));
                }
            },
        };
        match copied {
            Ok(copied) => self.body_sent.set(copied),
            Err(e) => {
                return Err(match e {
                    CopyError::Source | CopyError::Idle => Tried::ClientGone,
                    CopyError::Malformed => Tried::Refused(
                        LocalReply::BadRequest { status: 400 },
                        "invalid chunked body".to_owned(),
                    ),
                    CopyError::Destination(e) => {
                        let detail = format!("while sending the request body: {e}");
                        Tried::Refused(LocalReply::UpstreamReset, detail)
                    }
                })
            }
        }
        // Mirroring hook: the whole body went through, so the copy goes out, once (a body
        // streamed once is never streamed again by a retry).
        if let Some(shadow) = shadow.take() {
            shadow.send();
        }
        Ok(())
    }

    /// Phase 3: a pooled connection to `addr`, or a new one if the group's breaker has room;
    /// else wait (as a pending request) for one of the group's connections to come back.
    pub(super) async fn acquire(
        &self,
        core: &Core,
        addr: SocketAddr,
        pooled_ok: bool,
        until: Option<Instant>,
    ) -> Result<(Upstream, bool), AcquireError> {
        let secure = self.secure.as_ref();
        if self.h2 {
            let timeout = self
                .breaker
                .and_then(|b| b.connect_timeout)
                .unwrap_or(core.settings.connect_timeout);
            let own = Instant::now() + timeout;
            let connect_until = until.map_or(own, |d| d.min(own));
            let limits = h2::Limits {
                breaker: self.breaker,
                pool: &core.upstreams.pool,
                wait_until: until
                    .unwrap_or_else(|| Instant::now() + core.settings.upstream_timeout),
                connect_until,
            };
            let idle = core.settings.idle_timeout;
            let to = (addr, self.mark);
            let opened = core
                .upstreams
                .h2
                .open(&core.security, to, secure, limits, idle);
            let (conn, reused) = opened.await.map_err(|e| match e {
                h2::OpenError::Connect(e) => {
                    AcquireError::connect(addr, e, timeout, connect_until < own)
                }
                h2::OpenError::Overflow => AcquireError::Overflow {
                    group: self.group_name.to_owned(),
                },
                h2::OpenError::NoRoom => AcquireError::Deadline {
                    detail: format!("{}: no stream became free in time", self.group_name),
                    connecting: false,
                },
            })?;
            return Ok((Upstream::new(conn, None), reused));
        }
        let Some(breaker) = self.breaker else {
            if let Some(up) = pooled_ok
                .then(|| core.upstreams.pool.take(addr, secure))
                .flatten()
            {
                return Ok((up, true));
            }
            let timeout = core.settings.connect_timeout;
            let conn = connect(&core.security, (addr, self.mark), timeout, until, secure).await?;
            return Ok((Upstream::new(conn, None), false));
        };
        let wait_until = until.unwrap_or_else(|| Instant::now() + core.settings.upstream_timeout);
        loop {
            if let Some(up) = pooled_ok
                .then(|| core.upstreams.pool.take(addr, secure))
                .flatten()
            {
                return Ok((up, true));
            }
            if let Some(lease) = breaker.lease() {
                let timeout = breaker
                    .connect_timeout
                    .unwrap_or(core.settings.connect_timeout);
                let conn =
                    connect(&core.security, (addr, self.mark), timeout, until, secure).await?;
                return Ok((Upstream::new(conn, Some(lease)), false));
            }
            // An idle connection to another endpoint of the group makes room when closed: a
            // pooled one at once, an HTTP/2 one once its task ends (its lease wakes the wait).
            if core.upstreams.pool.close_one_idle(breaker) {
                continue;
            }
            core.upstreams.h2.retire_idle(breaker);
            match monoio::time::timeout_at(wait_until, breaker.wait()).await {
                Ok(Ok(())) => {}
                Ok(Err(Refused::Overflow)) => {
                    let group = self.group_name.to_owned();
                    return Err(AcquireError::Overflow { group });
                }
                Err(_elapsed) => {
                    let detail = format!("{}: no connection became free in time", self.group_name);
                    let connecting = false;
                    return Err(AcquireError::Deadline { detail, connecting });
                }
            }
        }
    }
}

/// The endpoint a policy's retry goes to: another of the group's, picked by the group's
/// balancer among the endpoints not ejected, when it has one.
pub(super) fn next_endpoint(
    core: &Core,
    routes: &Installed,
    group: Option<usize>,
    addr: SocketAddr,
    pick: Option<Pick>,
    retries: &Retries<'_>,
) -> (SocketAddr, Option<Pick>) {
    let (Some(index), Some(last)) = (group.filter(|_| retries.picks_another()), pick) else {
        return (addr, pick);
    };
    let Some(group) = routes.group(index) else {
        return (addr, pick);
    };
    let other = core
        .upstreams
        .balancing
        .borrow_mut()
        .pick_other(index, group, last.endpoint);
    match other.and_then(|e| Some((e, *group.endpoints.get(e as usize)?))) {
        Some((endpoint, addr)) => (
            addr,
            Some(Pick {
                group: last.group,
                endpoint,
            }),
        ),
        None => (addr, pick),
    }
}

/// Records a failed upstream exchange (gateway error) for outlier detection.
pub(super) fn failed(inflight: &mut Option<Inflight<'_>>) {
    if let Some(inflight) = inflight {
        inflight.failed();
    }
}

/// Connects within `timeout` (`--connect-timeout` or the group's), or by the try's `deadline`
/// when that comes first (then a timeout is the try's: 504 `UT`).
/// The TLS handshake, when the destination has identities, counts against the same time.
pub(super) async fn connect(
    security: &Security,
    (addr, mark): (SocketAddr, u32),
    timeout: Duration,
    deadline: Option<Instant>,
    secure: Option<&Secure<'_>>,
) -> Result<Conn, AcquireError> {
    let own = Instant::now() + timeout;
    let until = deadline.map_or(own, |d| d.min(own));
    upstream::connect(security, addr, mark, until, secure)
        .await
        .map_err(|e| AcquireError::connect(addr, e, timeout, until < own))
}

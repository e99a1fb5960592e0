//! Retries: which failed tries are tried again (a rule's [`RetryPolicy`], or the sidecar default
//! of one replay of an idempotent request whose reused connection turned out dead), how long to
//! back off (exponential, full jitter), and a per-core budget so retries cannot multiply the
//! load on an upstream that is already failing (Envoy's retry budget: retries in flight at most
//! 20% of the requests in flight, and never fewer than 3 allowed). Retries after a failed
//! connect are outside the budget: the request loaded no upstream.
//!
//! A retried request must be replayable: its body is sent from a buffer (at most
//! `--retry-buffer` bytes, 64 KiB by default, counting a chunked body's framing); a larger body
//! is streamed and the request is not retried.

use std::cell::Cell;
use std::io;
use std::time::Duration;

use monoio::time::Instant;
use spec::{RetryOn, RetryPolicy};

use crate::conn::Conn;
use crate::http1::{ChunkedError, ChunkedScanner};

/// Default `--retry-buffer`: the largest request body kept for a retry.
pub const DEFAULT_RETRY_BUFFER: usize = 64 * 1024;

/// Retries in flight may be at most this percentage of the requests in flight on a core.
const BUDGET_PERCENT: u32 = 20;
/// Retries in flight always allowed on a core, whatever the budget percentage gives.
const BUDGET_MIN: u32 = 3;

/// How one try ended without a response to pass on (or with one a policy may retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The TCP connection could not be established.
    ConnectFailure,
    /// The upstream closed or reset the connection before a complete response head.
    Reset,
    /// An HTTP/2 upstream refused the stream without processing it (`REFUSED_STREAM`, or
    /// above a graceful GOAWAY's last stream): replayed once whatever the method or policy,
    /// else retried as a reset.
    RefusedStream,
    /// The per-try timeout expired before the response head.
    PerTryTimeout,
    /// The upstream answered with this status.
    Status(u16),
    /// The upstream answered a gRPC call with this gRPC status in its response head (a
    /// trailers-only response: nothing of it has gone downstream yet).
    GrpcStatus(u8),
}

/// Whether `on` asks for `failure` to be retried (Envoy's `retry_on` semantics: `5xx` covers
/// any 5xx, resets, connect failures and per-try timeouts; `gateway-error` covers 502/503/504
/// and the same local failures; `reset` covers resets and per-try timeouts).
pub fn retried_on(on: &RetryOn, failure: Failure) -> bool {
    let any_local = on.server_error || on.gateway_error;
    match failure {
        Failure::ConnectFailure => any_local || on.reset || on.connect_failure,
        Failure::Reset | Failure::RefusedStream | Failure::PerTryTimeout => any_local || on.reset,
        Failure::Status(status) => {
            (on.server_error && (500..600).contains(&status))
                || (on.gateway_error && matches!(status, 502..=504))
                || on.status_codes.binary_search(&status).is_ok()
        }
        Failure::GrpcStatus(status) => on.grpc_statuses.binary_search(&status).is_ok(),
    }
}

/// The backoff before retry number `retry` (1 for the first retry): a uniform draw in
/// `0..=min(max, base * 2^(retry-1))` ("full jitter"). `draw(n)` returns a number in `0..n`.
pub fn backoff(
    retry: u32,
    base: Duration,
    max: Duration,
    draw: impl FnOnce(u64) -> u64,
) -> Duration {
    let base = base.as_millis().min(u128::from(u64::MAX)) as u64;
    let max = max.as_millis().min(u128::from(u64::MAX)) as u64;
    let shift = retry.saturating_sub(1).min(63);
    let ceiling = base
        .checked_shl(shift)
        .filter(|c| c >> shift == base)
        .unwrap_or(u64::MAX);
    let ceiling = ceiling.min(max);
    Duration::from_millis(draw(ceiling.saturating_add(1)).min(ceiling))
}

/// One core's retry budget: requests in flight and retries in flight. Plain cells: a core's
/// tasks never run at the same time.
#[derive(Debug, Default)]
pub struct RetryBudget {
    active: Cell<u32>,
    retrying: Cell<u32>,
}

/// Counts one request in flight until dropped.
#[derive(Debug)]
pub struct InFlight<'b>(&'b RetryBudget);

/// Counts one retry in flight until dropped.
#[derive(Debug)]
pub struct RetryInFlight<'b>(&'b RetryBudget);

impl RetryBudget {
    /// Counts a request forwarded upstream until the guard drops.
    pub fn request(&self) -> InFlight<'_> {
        self.active.set(self.active.get() + 1);
        InFlight(self)
    }

    /// Starts a retry if the budget allows one now.
    pub fn retry(&self) -> Option<RetryInFlight<'_>> {
        let allowed = (self.active.get() * BUDGET_PERCENT / 100).max(BUDGET_MIN);
        if self.retrying.get() >= allowed {
            return None;
        }
        self.retrying.set(self.retrying.get() + 1);
        Some(RetryInFlight(self))
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get().saturating_sub(1));
    }
}

impl Drop for RetryInFlight<'_> {
    fn drop(&mut self) {
        self.0.retrying.set(self.0.retrying.get().saturating_sub(1));
    }
}

/// Why a failed try is not tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again after this backoff.
    Retry(Duration),
    /// The failure is final: not a retried condition, not replayable, or no time left.
    Final,
    /// The policy's attempts are used up: the final failure carries the `URX` flag.
    Exhausted,
    /// The core's retry budget is spent.
    OverBudget,
}

/// The retry state of one request.
#[derive(Debug)]
pub struct Retries<'a> {
    policy: Option<&'a RetryPolicy>,
    /// The method may be sent again under the policy.
    method_ok: bool,
    /// The request can be sent again: its body (if any) is in the buffered head.
    replayable: bool,
    /// The body can be sent again (buffered whole, or kept as it streamed).
    body_whole: bool,
    /// A refused stream was replayed already.
    refused_replayed: bool,
    /// The last try took none of a streamed body from the client (see
    /// [`Retries::body_untouched`]).
    untouched: bool,
    /// Retries done so far.
    done: u32,
    /// The budget slot of the retry in progress.
    slot: Option<RetryInFlight<'a>>,
    budget: &'a RetryBudget,
}

impl<'a> Retries<'a> {
    /// The retry state for a request under `policy` (`None`: the sidecar default).
    /// `idempotent` is the method's safety; `buffered` whether the whole body went into the
    /// buffered head.
    pub fn new(
        policy: Option<&'a RetryPolicy>,
        idempotent: bool,
        buffered: bool,
        budget: &'a RetryBudget,
    ) -> Self {
        let method_ok = idempotent || policy.is_some_and(|p| p.non_idempotent);
        Self {
            policy,
            method_ok,
            replayable: method_ok && buffered,
            body_whole: buffered,
            refused_replayed: false,
            untouched: false,
            done: 0,
            slot: None,
            budget,
        }
    }

    /// Says whether the last try took none of a streamed body from the client: then a
    /// connect that failed leaves all of it to send to another endpoint, whatever its size.
    pub fn body_untouched(&mut self, untouched: bool) {
        self.untouched = untouched;
    }

    /// The body streamed by the first try was kept whole and now goes with the head: the
    /// request can be sent again if its method may.
    pub fn body_kept(&mut self) {
        self.replayable = self.method_ok;
        self.body_whole = true;
    }

    /// Whether the rule's policy (not the default) governs this request.
    pub fn has_policy(&self) -> bool {
        self.policy.is_some()
    }

    /// Whether the next try goes to another endpoint than the last: under a policy, or after
    /// a refused stream (its server may be draining). The default replay of a stale pooled
    /// connection's request goes to the same one.
    pub fn picks_another(&self) -> bool {
        self.policy.is_some() || self.refused_replayed
    }

    /// Retries done so far.
    pub fn done(&self) -> u32 {
        self.done
    }

    /// What a response with `status` (and `grpc`, a gRPC call's status in its head) is to
    /// the policy: its gRPC status when the policy retries that, else its status.
    pub fn response_failure(&self, status: u16, grpc: Option<u8>) -> Failure {
        let retried = |s: &u8| {
            self.policy
                .is_some_and(|p| retried_on(&p.retry_on, Failure::GrpcStatus(*s)))
        };
        match grpc.filter(retried) {
            Some(grpc) => Failure::GrpcStatus(grpc),
            None => Failure::Status(status),
        }
    }

    /// Whether a policy may want to retry a response that is `failure` (so its head must be
    /// inspected before anything is sent downstream).
    pub fn may_retry_response(&self, failure: Failure) -> bool {
        self.replayable
            && self
                .policy
                .is_some_and(|p| self.done < p.attempts && retried_on(&p.retry_on, failure))
    }

    /// Whether a response that is `failure` is one the policy retries but its attempts are
    /// used up (Envoy's `URX` on the response that goes to the client).
    pub fn exhausted_on_response(&self, failure: Failure) -> bool {
        self.replayable
            && self.policy.is_some_and(|p| {
                p.attempts > 0 && self.done >= p.attempts && retried_on(&p.retry_on, failure)
            })
    }

    /// The rule's per-try timeout.
    pub fn per_try(&self) -> Option<Duration> {
        self.policy
            .and_then(|p| p.per_try_timeout_ms)
            .map(Duration::from_millis)
    }

    /// The deadline of the next try: the per-try timeout from now, bounded by `overall`.
    pub fn try_deadline(&self, now: Instant, overall: Option<Instant>) -> Option<Instant> {
        let per_try = self
            .policy
            .and_then(|p| p.per_try_timeout_ms)
            .map(|ms| now + Duration::from_millis(ms));
        match (per_try, overall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Decides about a failed try. `reused`: it ran on a pooled connection; `before_response`:
    /// no response byte arrived. `time_left`: the rule deadline has not passed.
    pub fn after(
        &mut self,
        failure: Failure,
        reused: bool,
        before_response: bool,
        time_left: bool,
    ) -> Verdict {
        if !time_left {
            return Verdict::Final;
        }
        // Never processed (a draining sidecar's GOAWAY): as safe to send again as a request
        // that never left, whatever the method.
        if failure == Failure::RefusedStream && self.body_whole && !self.refused_replayed {
            self.refused_replayed = true;
            return Verdict::Retry(Duration::ZERO);
        }
        let unsent = failure == Failure::ConnectFailure && self.untouched && self.method_ok;
        if !self.replayable && !unsent {
            return Verdict::Final;
        }
        let Some(policy) = self.policy else {
            // The default: replay once what a stale pooled connection lost.
            let lost = matches!(failure, Failure::Reset | Failure::RefusedStream);
            let stale = reused && before_response && lost;
            if stale && self.done == 0 {
                self.done += 1;
                return Verdict::Retry(Duration::ZERO);
            }
            return Verdict::Final;
        };
        if !retried_on(&policy.retry_on, failure) {
            return Verdict::Final;
        }
        if self.done >= policy.attempts {
            return if policy.attempts > 0 {
                Verdict::Exhausted
            } else {
                Verdict::Final
            };
        }
        // Release this request's previous retry slot before taking another. A request that
        // never reached an upstream (its connect failed) loaded none, so trying it elsewhere
        // multiplies nothing: it takes no slot.
        self.slot = None;
        if failure != Failure::ConnectFailure {
            let Some(slot) = self.budget.retry() else {
                return Verdict::OverBudget;
            };
            self.slot = Some(slot);
        }
        self.done += 1;
        let base = Duration::from_millis(policy.backoff_base_ms);
        let max = Duration::from_millis(policy.backoff_max_ms);
        Verdict::Retry(backoff(self.done, base, max, |n| fastrand::u64(..n.max(1))))
    }
}

/// Whether a request body of `len` bytes is read whole before the first try, so a retry can
/// replay it: only under a retry policy that may retry the method, and within `limit`.
pub fn buffers_body(
    policy: Option<&RetryPolicy>,
    idempotent: bool,
    len: u64,
    limit: usize,
) -> bool {
    policy.is_some_and(|p| p.attempts > 0 && (idempotent || p.non_idempotent))
        && len <= limit as u64
}

/// Reads the `len`-byte body from `down` and appends it to `out` (the forwarded head). Each
/// read must make progress within `idle`.
pub async fn buffer_body(
    down: &mut Conn,
    len: usize,
    out: &mut Vec<u8>,
    idle: Duration,
) -> io::Result<()> {
    let mut left = len;
    loop {
        let n = left.min(down.buffered().len());
        out.extend_from_slice(&down.buffered()[..n]);
        down.consume(n);
        left -= n;
        if left == 0 {
            return Ok(());
        }
        match monoio::time::timeout(idle, down.fill()).await {
            Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
    }
}

/// How much of a chunked request body [`buffer_chunked`] kept.
#[derive(Debug)]
pub enum Chunked {
    /// The whole body, last chunk and trailers included: a retry can replay it.
    Whole,
    /// The body outgrew the bound: what was read is in the buffer, the rest streams on from
    /// this scanner state and the request is not retried.
    Partial(ChunkedScanner),
}

/// Why a chunked request body could not be buffered.
#[derive(Debug)]
pub enum BufferError {
    /// The client closed, failed or stalled past the idle timeout.
    Source,
    /// The body is not valid chunked framing.
    Malformed(ChunkedError),
}

/// Reads a chunked body from `down` into `out` (the forwarded head), raw framing and all, until
/// it ends or `out` grows by more than `limit` bytes. Each read must make progress within
/// `idle`.
pub async fn buffer_chunked(
    down: &mut Conn,
    limit: usize,
    out: &mut Vec<u8>,
    idle: Duration,
) -> Result<Chunked, BufferError> {
    let mut scanner = ChunkedScanner::default();
    let mut room = limit;
    loop {
        if down.buffered().is_empty() {
            match monoio::time::timeout(idle, down.fill()).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Err(BufferError::Source),
            }
        }
        let available = down.buffered().len().min(room);
        let n = scanner
            .feed(&down.buffered()[..available])
            .map_err(BufferError::Malformed)?;
        out.extend_from_slice(&down.buffered()[..n]);
        down.consume(n);
        room -= n;
        if scanner.is_done() {
            return Ok(Chunked::Whole);
        }
        if room == 0 {
            return Ok(Chunked::Partial(scanner));
        }
    }
}

/// Sleeps for `backoff`, but not past `deadline`.
pub async fn sleep_within(backoff: Duration, deadline: Option<Instant>) {
    let now = Instant::now();
    let wait = deadline.map_or(backoff, |d| backoff.min(d.saturating_duration_since(now)));
    if !wait.is_zero() {
        monoio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests;

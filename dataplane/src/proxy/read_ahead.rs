//! Before the first try: a small body is taken along with the head, a body a retry may replay
//! is kept (within `--retry-buffer`), and chunk framing that came with the head is checked
//! before any upstream sees the head.

use std::rc::Rc;

use spec::RetryPolicy;

use super::outcome::Outcome;
use super::plan::Plan;
use super::reply::{local_reply, send_continue};
use super::{client_gone, Next, COALESCE_BODY_BYTES};
use crate::conn::Conn;
use crate::http1::reply::LocalReply;
use crate::http1::{BodyFraming, ChunkedScanner};
use crate::percore::Core;
use crate::retry;

/// How the request body goes on after what was read ahead.
pub(super) struct RequestBody {
    /// How the part not in the forwarded head is framed (`None`: all of it is there).
    pub(super) framing: BodyFraming,
    /// Where a chunked body's scan stands after the part in the forwarded head.
    pub(super) chunked_from: ChunkedScanner,
    /// `100 Continue` went out already (to read a body kept for a retry).
    pub(super) continued: bool,
}

impl RequestBody {
    /// A request without a body.
    pub(super) fn none() -> Self {
        Self {
            framing: BodyFraming::None,
            chunked_from: ChunkedScanner::default(),
            continued: false,
        }
    }
}

/// Reads ahead what the request's body allows into `request_out`, after its head; `Err` when
/// the request ended instead (the client left, or a malformed body was answered 400).
pub(super) async fn read_ahead(
    down: &mut Conn,
    core: &Rc<Core>,
    (plan, policy): (&Plan, Option<&RetryPolicy>),
    (request_out, response_out): (&mut Vec<u8>, &mut Vec<u8>),
    outcome: &mut Outcome,
) -> Result<RequestBody, Next> {
    let head_end = request_out.len();
    let mut body = RequestBody {
        framing: plan.framing,
        chunked_from: ChunkedScanner::default(),
        continued: false,
    };
    if let BodyFraming::Length(n) = plan.framing {
        // Small body already buffered: send head and body in one write.
        if n <= COALESCE_BODY_BYTES && n as usize <= down.buffered().len() {
            request_out.extend_from_slice(&down.buffered()[..n as usize]);
            down.consume(n as usize);
            body.framing = BodyFraming::None;
        } else if retry::buffers_body(policy, plan.idempotent, n, core.settings.retry_buffer) {
            // A retry must be able to replay the body: keep all of it (within --retry-buffer).
            if plan.expects_continue && plan.http11 && !send_continue(down).await {
                return Err(client_gone(outcome));
            }
            body.continued = true;
            let idle = core.settings.idle_timeout;
            if retry::buffer_body(down, n as usize, request_out, idle)
                .await
                .is_err()
            {
                return Err(client_gone(outcome));
            }
            body.framing = BodyFraming::None;
        }
    }
    // A chunked body is kept the same way while it fits; one that outgrows the bound streams
    // on from where buffering stopped, and is not retried. A full-duplex one is kept as it
    // streams instead (a bidirectional call's client waits for replies before it ends).
    if plan.framing == BodyFraming::Chunked
        && !plan.duplex
        && retry::buffers_body(policy, plan.idempotent, 0, core.settings.retry_buffer)
    {
        if plan.expects_continue && plan.http11 && !send_continue(down).await {
            return Err(client_gone(outcome));
        }
        body.continued = true;
        let (limit, idle) = (core.settings.retry_buffer, core.settings.idle_timeout);
        match retry::buffer_chunked(down, limit, request_out, idle).await {
            Ok(retry::Chunked::Whole) => body.framing = BodyFraming::None,
            Ok(retry::Chunked::Partial(scanner)) => body.chunked_from = scanner,
            Err(retry::BufferError::Source) => return Err(client_gone(outcome)),
            Err(retry::BufferError::Malformed(e)) => {
                let reply = LocalReply::BadRequest { status: 400 };
                let detail = format!("invalid chunked body: {e}");
                return Err(
                    local_reply(down, response_out, (reply, &detail), false, outcome).await,
                );
            }
        }
    }
    // Chunk framing that came with the head is checked before any upstream sees the head, so
    // a malformed body there is refused without an upstream connection.
    if body.framing == BodyFraming::Chunked {
        if let Err(e) = body.chunked_from.clone().feed(down.buffered()) {
            let reply = LocalReply::BadRequest { status: 400 };
            let detail = format!("invalid chunked body: {e}");
            return Err(local_reply(down, response_out, (reply, &detail), false, outcome).await);
        }
    }
    outcome.bytes_received = (request_out.len() - head_end) as u64;
    Ok(body)
}

//! Answering the client: writes, local replies, and closing gracefully after them.

use std::io;
use std::time::Duration;

use monoio::time::Instant;

use super::outcome::Outcome;
use super::Next;
use crate::conn::Conn;
use crate::http1::reply::LocalReply;
use crate::stream::Stream;

/// Sends `100 Continue`; false when the client is gone.
pub(super) async fn send_continue(down: &mut Conn) -> bool {
    let mut interim = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
    send(&mut down.stream, &mut interim).await.is_ok()
}

/// Answers with `reply` (recorded in `outcome`), then keeps or closes the connection.
pub(super) async fn local_reply(
    down: &mut Conn,
    out: &mut Vec<u8>,
    (reply, detail): (LocalReply, &str),
    keep_alive: bool,
    outcome: &mut Outcome,
) -> Next {
    out.clear();
    reply.write_for(out, detail, !keep_alive, (false, outcome.grpc));
    outcome.replied(reply, false);
    finish_reply(down, out, keep_alive, outcome).await
}

/// Sends a response meshd wrote into `out` (a local reply or redirect: no body bytes of an
/// upstream's, so none are counted), then keeps or closes the connection.
pub(super) async fn finish_reply(
    down: &mut Conn,
    out: &mut Vec<u8>,
    keep_alive: bool,
    outcome: &mut Outcome,
) -> Next {
    match send(&mut down.stream, out).await {
        Ok(()) => {
            // Before lingering: the request is over for the client once its answer is out.
            outcome.finished = Some(Instant::now());
            if keep_alive {
                return Next::KeepAlive;
            }
            linger(down).await;
            Next::Close
        }
        Err(_) => {
            // Nothing reached the client: no status, and the flag says why.
            (outcome.status, outcome.reply, outcome.grpc_status) = (None, None, None);
            outcome.downstream_closed = true;
            Next::Close
        }
    }
}

/// Closes gracefully after a reply sent while request bytes may still be arriving: closing
/// with unread data makes Linux send RST, which can destroy the reply before the client reads
/// it (RFC 9112 §9.6). Half-close, then discard input for a bounded time and amount.
pub(super) async fn linger(down: &mut Conn) {
    const LINGER: Duration = Duration::from_secs(2);
    const MAX_DISCARD: usize = 256 * 1024;
    if down.stream.shutdown().await.is_err() {
        return;
    }
    // A bridged HTTP/2 stream has no socket to reset; its request body is the bridge's.
    if down.stream.is_bridged() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut discarded = 0;
    while discarded < MAX_DISCARD {
        let pending = down.buffered().len();
        down.consume(pending);
        match monoio::time::timeout_at(deadline, down.fill()).await {
            Ok(Ok(n)) if n > 0 => discarded += n,
            _ => return,
        }
    }
}

/// Writes all of `buf` and clears it, keeping its allocation.
pub(super) async fn send(stream: &mut Stream, buf: &mut Vec<u8>) -> io::Result<()> {
    let owned = std::mem::take(buf);
    let len = owned.len();
    let (result, mut owned) = stream.write_range(owned, 0..len).await;
    owned.clear();
    *buf = owned;
    result
}

//! Streaming a body from one connection to another without buffering it.

use std::cell::Cell;
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use monoio::time::Instant;

use crate::conn::Conn;
use crate::http1::{BodyFraming, ChunkedScanner};
use crate::mirror::Shadow;
use crate::stream::Stream;

pub(super) enum CopyError {
    Source,
    /// Neither side moved a byte for the idle timeout.
    Idle,
    Destination(io::Error),
    Malformed,
}

/// How long a body may go without moving a byte. In a full-duplex exchange (two bridged
/// HTTP/2 streams) both directions share one clock, as Envoy's stream idle timeout counts a
/// stream's frames either way: a bidirectional call whose client waits while its server talks
/// (or the other way round) is not idle.
#[derive(Debug, Clone)]
pub(super) struct Idle {
    pub(super) timeout: Duration,
    /// When either direction last moved a byte, in a full-duplex exchange.
    pub(super) shared: Option<Rc<Cell<Instant>>>,
}

impl Idle {
    pub(super) fn alone(timeout: Duration) -> Self {
        Self {
            timeout,
            shared: None,
        }
    }

    fn moved(&self) {
        if let Some(last) = &self.shared {
            last.set(Instant::now());
        }
    }

    /// When the wait that just timed out may go on until: the other direction moved since.
    fn extended(&self) -> Option<Instant> {
        let until = self.shared.as_ref()?.get() + self.timeout;
        (until > Instant::now()).then_some(until)
    }
}

/// Where a body streamed through also goes, as it goes.
#[derive(Default)]
pub(super) struct Taps<'a> {
    /// A mirror's copy of the request.
    pub(super) mirror: Option<&'a mut Shadow>,
    /// A copy kept to replay the body on a retry.
    pub(super) kept: Option<&'a mut Kept>,
    /// A chunked body's trailer section (a gRPC call's status is there).
    pub(super) trailers: Option<&'a mut Vec<u8>>,
    /// The bytes sent so far, kept as they go (a full-duplex body's, which the request's
    /// record reads whenever it ends).
    pub(super) sent: Option<&'a Cell<u64>>,
}

impl Taps<'_> {
    fn sent(&self, copied: u64) {
        if let Some(sent) = self.sent {
            sent.set(copied);
        }
    }

    fn copy(&mut self, bytes: &[u8]) {
        if let Some(mirror) = self.mirror.as_deref_mut() {
            mirror.copy(bytes);
        }
        if let Some(kept) = self.kept.as_deref_mut() {
            kept.copy(bytes);
        }
    }
}

/// A streamed body kept while it fits in `limit` bytes (framing included), so a retry can
/// send it again; given up on for good once it outgrows it.
#[derive(Debug)]
pub(super) struct Kept {
    bytes: Option<Vec<u8>>,
    limit: usize,
}

impl Kept {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            bytes: Some(Vec::new()),
            limit,
        }
    }

    fn copy(&mut self, more: &[u8]) {
        if let Some(bytes) = &mut self.bytes {
            if bytes.len() + more.len() > self.limit {
                self.bytes = None;
            } else {
                bytes.extend_from_slice(more);
            }
        }
    }

    /// The whole body, unless it outgrew the limit.
    pub(super) fn into_bytes(self) -> Option<Vec<u8>> {
        self.bytes
    }
}

/// Streams a body from `src` to `dst` without buffering more than one read at a time, and
/// says how many bytes went through (chunk framing included). Each read and each write must
/// make progress within `idle` (or the other direction must have, when it shares the clock).
/// A chunked body's scan starts at `scanner` (past the part of it already sent). The body also
/// goes to `taps`.
pub(super) async fn copy_body(
    src: &mut Conn,
    dst: &mut Stream,
    (framing, mut scanner): (BodyFraming, ChunkedScanner),
    idle: &Idle,
    mut taps: Taps<'_>,
) -> Result<u64, CopyError> {
    let mut copied = 0;
    match framing {
        BodyFraming::None => Ok(0),
        BodyFraming::Length(mut left) => {
            while left > 0 {
                if src.buffered().is_empty() && fill_within(src, idle).await? == 0 {
                    return Err(CopyError::Source);
                }
                let n = left.min(src.buffered().len() as u64) as usize;
                taps.copy(&src.buffered()[..n]);
                forward_within(src, dst, n, idle).await?;
                left -= n as u64;
                copied += n as u64;
                taps.sent(copied);
            }
            Ok(copied)
        }
        BodyFraming::Chunked => loop {
            if src.buffered().is_empty() && fill_within(src, idle).await? == 0 {
                return Err(CopyError::Source);
            }
            let n = match taps.trailers.as_deref_mut() {
                None => scanner.feed(src.buffered()),
                Some(trailers) => scanner.feed_keeping_trailers(src.buffered(), trailers),
            };
            let n = n.map_err(|_| CopyError::Malformed)?;
            taps.copy(&src.buffered()[..n]);
            forward_within(src, dst, n, idle).await?;
            copied += n as u64;
            taps.sent(copied);
            if scanner.is_done() {
                return Ok(copied);
            }
        },
        BodyFraming::UntilClose => loop {
            if src.buffered().is_empty() && fill_within(src, idle).await? == 0 {
                return Ok(copied);
            }
            let n = src.buffered().len();
            forward_within(src, dst, n, idle).await?;
            copied += n as u64;
            taps.sent(copied);
        },
    }
}

/// A read of `src` that must make progress within `idle`. The read is polled in place across
/// the deadlines a shared clock extends, never dropped and started again (an abandoned read
/// may take bytes with it).
pub(super) async fn fill_within(src: &mut Conn, idle: &Idle) -> Result<usize, CopyError> {
    let mut deadline = Instant::now() + idle.timeout;
    let mut read = pin!(src.fill());
    loop {
        match monoio::time::timeout_at(deadline, read.as_mut()).await {
            Ok(Ok(n)) => {
                idle.moved();
                return Ok(n);
            }
            Ok(Err(_)) => return Err(CopyError::Source),
            Err(_) => deadline = idle.extended().ok_or(CopyError::Idle)?,
        }
    }
}

/// A write of `n` buffered bytes of `src` to `dst` that must make progress within `idle`,
/// polled in place as [`fill_within`]'s read is (the write owns `src`'s buffer meanwhile).
pub(super) async fn forward_within(
    src: &mut Conn,
    dst: &mut Stream,
    n: usize,
    idle: &Idle,
) -> Result<(), CopyError> {
    let mut deadline = Instant::now() + idle.timeout;
    let mut write = pin!(src.forward_buffered(dst, n));
    loop {
        match monoio::time::timeout_at(deadline, write.as_mut()).await {
            Ok(result) => {
                idle.moved();
                return result.map_err(CopyError::Destination);
            }
            Err(_) => deadline = idle.extended().ok_or(CopyError::Idle)?,
        }
    }
}

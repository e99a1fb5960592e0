//! Streaming a body from one connection to another without buffering it.

use std::io;
use std::time::Duration;

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

/// Where a body streamed through also goes, as it goes.
#[derive(Default)]
pub(super) struct Taps<'a> {
    /// A mirror's copy of the request.
    pub(super) mirror: Option<&'a mut Shadow>,
    /// A copy kept to replay the body on a retry.
    pub(super) kept: Option<&'a mut Kept>,
    /// A chunked body's trailer section (a gRPC call's status is there).
    pub(super) trailers: Option<&'a mut Vec<u8>>,
}

impl Taps<'_> {
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
/// make progress within `idle`. A chunked body's scan starts at `scanner` (past the part of it
/// already sent). The body also goes to `taps`.
pub(super) async fn copy_body(
    src: &mut Conn,
    dst: &mut Stream,
    (framing, mut scanner): (BodyFraming, ChunkedScanner),
    idle: Duration,
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
        },
    }
}

pub(super) async fn fill_within(src: &mut Conn, idle: Duration) -> Result<usize, CopyError> {
    match monoio::time::timeout(idle, src.fill()).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(_)) => Err(CopyError::Source),
        Err(_) => Err(CopyError::Idle),
    }
}

pub(super) async fn forward_within(
    src: &mut Conn,
    dst: &mut Stream,
    n: usize,
    idle: Duration,
) -> Result<(), CopyError> {
    match monoio::time::timeout(idle, src.forward_buffered(dst, n)).await {
        Ok(result) => result.map_err(CopyError::Destination),
        Err(_) => Err(CopyError::Idle),
    }
}

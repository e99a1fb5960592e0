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

/// Streams a body from `src` to `dst` without buffering more than one read at a time, and
/// says how many bytes went through (chunk framing included). Each read and each write must
/// make progress within `idle`. A chunked body's scan starts at `scanner` (past the part of it
/// already sent). The body is also copied to `tee` when given (a mirror's copy), and a
/// chunked body's trailer section to `trailers` (a gRPC call's status is there).
pub(super) async fn copy_body(
    src: &mut Conn,
    dst: &mut Stream,
    (framing, mut scanner): (BodyFraming, ChunkedScanner),
    idle: Duration,
    mut tee: Option<&mut Shadow>,
    mut trailers: Option<&mut Vec<u8>>,
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
                if let Some(tee) = tee.as_deref_mut() {
                    tee.copy(&src.buffered()[..n]);
                }
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
            let n = match trailers.as_deref_mut() {
                None => scanner.feed(src.buffered()),
                Some(trailers) => scanner.feed_keeping_trailers(src.buffered(), trailers),
            };
            let n = n.map_err(|_| CopyError::Malformed)?;
            if let Some(tee) = tee.as_deref_mut() {
                tee.copy(&src.buffered()[..n]);
            }
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

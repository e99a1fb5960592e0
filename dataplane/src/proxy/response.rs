//! Reading the upstream's response head, forwarding interim responses.

use std::io;

use spec::HeaderEdits;

use super::reply::send;
use crate::conn::Conn;
use crate::http1::head::{parse_response, MAX_HEADERS};
use crate::http1::BodyFraming;
use crate::stream::Stream;

pub(super) struct ResponsePlan {
    pub(super) status: u16,
    pub(super) framing: BodyFraming,
    pub(super) keep_alive: bool,
    /// A 101 to a request that asked to upgrade.
    pub(super) switched: bool,
}

pub(super) enum ResponseError {
    /// Closed before sending any byte: the request may not have been processed.
    Closed,
    /// Closed after part of a head: the upstream did process the request.
    ClosedMidHead,
    /// 101 although the forwarded request carried no Upgrade.
    Upgrade,
    Io(io::Error),
    Malformed(String),
    /// Forwarding an interim response to the client failed: the client is gone.
    Downstream,
}

/// Reads the final response head and writes the head to send downstream into `out`. Interim
/// 1xx responses go to `interim` (the client, when it speaks HTTP/1.1) as they arrive.
pub(super) async fn read_response_head(
    up: &mut Conn,
    is_head: bool,
    upgrade: bool,
    edits: &HeaderEdits,
    out: &mut Vec<u8>,
    mut interim: Option<&mut Stream>,
) -> Result<ResponsePlan, ResponseError> {
    let method = if is_head { "HEAD" } else { "GET" };
    loop {
        // The parsed head borrows `headers` (3 KiB): no await may happen while it lives, or
        // every request's future carries the array.
        let mut forward_interim = false;
        if !up.buffered().is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match parse_response(up.buffered(), &mut headers, method) {
                Ok(Some(head)) if (100..200).contains(&head.status) && head.status != 101 => {
                    // Interim responses go on to an HTTP/1.1 client as they come (RFC 9110
                    // 15.2), but 100 Continue: meshd answered the client's expectation itself.
                    forward_interim = interim.is_some() && head.status != 100;
                    if forward_interim {
                        out.clear();
                        head.write_forwarded(out, false);
                    }
                    let len = head.len;
                    up.consume(len);
                    if !forward_interim {
                        continue;
                    }
                }
                Ok(Some(head)) if head.status == 101 && !upgrade => {
                    return Err(ResponseError::Upgrade)
                }
                Ok(Some(head)) => {
                    out.clear();
                    head.write_edited(out, false, edits);
                    let switched = head.status == 101;
                    let plan = ResponsePlan {
                        status: head.status,
                        framing: head.framing,
                        keep_alive: head.keep_alive && !switched,
                        switched,
                    };
                    let len = head.len;
                    up.consume(len);
                    return Ok(plan);
                }
                Ok(None) => {}
                Err(e) => return Err(ResponseError::Malformed(e.to_string())),
            }
        }
        if forward_interim {
            if let Some(down) = interim.as_deref_mut() {
                send(down, out)
                    .await
                    .map_err(|_| ResponseError::Downstream)?;
            }
            continue;
        }
        match up.fill().await {
            Ok(0) if up.buffered().is_empty() => return Err(ResponseError::Closed),
            Ok(0) => return Err(ResponseError::ClosedMidHead),
            Ok(_) => {}
            Err(e) => return Err(ResponseError::Io(e)),
        }
    }
}

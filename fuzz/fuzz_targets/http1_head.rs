//! HTTP/1 head handling on arbitrary bytes: request and response parsing, the forwarded heads,
//! and the chunked-body scanner fed in two pieces. Errors are fine, panics are bugs.
#![no_main]

use dataplane::http1::chunked::ChunkedError;
use dataplane::http1::head::{parse_request, parse_response, MAX_HEADERS};
use dataplane::http1::ChunkedScanner;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut body = data;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    if let Ok(Some(head)) = parse_request(data, &mut headers) {
        let mut out = Vec::new();
        head.write_forwarded(&mut out);
        // What follows a complete head is the body, chunked or not: scan that below.
        body = &data[head.len..];
    }

    for method in ["GET", "HEAD", "CONNECT"] {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        if let Ok(Some(head)) = parse_response(data, &mut headers, method) {
            let mut out = Vec::new();
            head.write_forwarded(&mut out, false);
        }
    }

    // Where the body ends must not depend on how its bytes were split into reads (a TCP segment
    // boundary deciding the end of a body is a smuggling bug); the first byte picks the split.
    let Some(&split) = data.first() else {
        return;
    };
    let at = usize::from(split) % (body.len() + 1);
    assert_eq!(
        scan_split(body, at),
        scan_split(body, body.len()),
        "split at {at}"
    );
});

/// Feeds `body` to a fresh scanner in two reads split at `at`: the body bytes used (or the
/// error) and whether the scanner saw the end.
fn scan_split(body: &[u8], at: usize) -> (Result<usize, ChunkedError>, bool) {
    let (first, second) = body.split_at(at);
    let mut scanner = ChunkedScanner::default();
    let used = match scanner.feed(first) {
        Ok(used) if used < first.len() || scanner.is_done() => Ok(used),
        Ok(used) => scanner.feed(second).map(|more| used + more),
        Err(e) => Err(e),
    };
    (used, scanner.is_done())
}

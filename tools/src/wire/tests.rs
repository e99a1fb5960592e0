//! Unit tests for the body framing readers, driven by scripted in-memory peers.

use super::*;
use std::io::Read;

/// A peer that hands out its bytes a few at a time, to exercise every split point.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(self.data.len()).min(buf.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn decode_chunked(wire: &[u8], step: usize) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut conn = BufConn::new(Trickle { data: wire, step });
    let mut out = Vec::new();
    conn.read_chunked_body(Some(&mut out))?;
    let mut rest = Vec::new();
    conn.read_to_eof(Some(&mut rest))?;
    Ok((out, rest))
}

#[test]
fn decodes_chunks_with_extensions_and_trailers_at_every_split() {
    let wire =
        b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
    for step in 1..wire.len() {
        let (body, rest) = decode_chunked(wire, step).expect("valid chunked body");
        assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz", "step {step}");
        assert_eq!(rest, b"NEXT", "step {step}");
    }
}

#[test]
fn rejects_chunk_longer_than_its_size() {
    let err = decode_chunked(b"2\r\nabc\r\n0\r\n\r\n", 64).expect_err("bad chunk");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn reports_eof_inside_a_chunk() {
    let err = decode_chunked(b"10\r\nshort", 64).expect_err("truncated");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn parses_chunk_sizes() {
    assert_eq!(parse_chunk_size(b"0").expect("zero"), 0);
    assert_eq!(parse_chunk_size(b"fF").expect("hex"), 255);
    assert_eq!(parse_chunk_size(b"10 ;name=value").expect("ext"), 16);
    assert!(parse_chunk_size(b"").is_err());
    assert!(parse_chunk_size(b"-1").is_err());
    assert!(parse_chunk_size(b"1234567890abcdef0").is_err());
}

#[test]
fn parses_content_length_strictly() {
    assert_eq!(parse_content_length(b" 42 ").expect("digits"), 42);
    assert!(parse_content_length(b"+1").is_err());
    assert!(parse_content_length(b"1,1").is_err());
    assert!(parse_content_length(b"99999999999999999999").is_err());
}

#[test]
fn finds_connection_tokens() {
    assert!(has_token(b"keep-alive, Close", "close"));
    assert!(!has_token(b"closed", "close"));
}

#[test]
fn reads_fixed_length_body_and_leaves_the_rest() {
    let mut conn = BufConn::new(Trickle {
        data: b"abcdefXYZ",
        step: 4,
    });
    let mut out = Vec::new();
    conn.read_exact_body(6, Some(&mut out)).expect("six bytes");
    assert_eq!(out, b"abcdef");
    let mut rest = Vec::new();
    conn.read_to_eof(Some(&mut rest)).expect("rest");
    assert_eq!(rest, b"XYZ");
}

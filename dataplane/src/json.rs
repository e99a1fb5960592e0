//! The few JSON writers the per-request paths need (access log lines, spans), written by hand
//! because they run for every logged or traced request: `serde_json` and `fmt` cost more than
//! the rest of a line (benches/RESULTS.md has the measurements).

use std::io::Write as _;
use std::net::SocketAddr;

/// Whether `bytes` hold anything a JSON string must escape (a control character, `"`, `\`)
/// or non-ASCII (escaped after a lossy UTF-8 conversion). Eight bytes at a time: this scan
/// runs over most of every JSON line.
pub fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let special = |v: u64| {
        let control = v.wrapping_sub(ONES * 0x20) & !v & HIGHS;
        control
            | zero_byte(v ^ (ONES * u64::from(b'"')))
            | zero_byte(v ^ (ONES * u64::from(b'\\')))
            | (v & HIGHS)
    };
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if special(u64::from_le_bytes(word)) != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\' || !b.is_ascii())
}

/// `value` in decimal; always `true` (a value was written).
pub fn number(out: &mut Vec<u8>, value: u64) -> bool {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    true
}

/// Ends the JSON string opened with a quote at `start`: as written when the value needs no
/// escaping (the common case, without allocating), else escaped.
pub fn close_string(out: &mut Vec<u8>, start: usize) {
    if !needs_escape(&out[start + 1..]) {
        out.push(b'"');
        return;
    }
    let raw = out.split_off(start + 1);
    out.truncate(start);
    // Writing a `str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, &String::from_utf8_lossy(&raw));
}

/// `IP:PORT` (`[IP]:PORT` for IPv6), or the IP alone.
pub fn address(out: &mut Vec<u8>, addr: Option<SocketAddr>, with_port: bool) -> bool {
    let Some(addr) = addr else {
        return false;
    };
    match (addr, with_port) {
        // IPv4, the common case, without `fmt`.
        (SocketAddr::V4(v4), _) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                number(out, octet.into());
            }
            if with_port {
                out.push(b':');
                number(out, addr.port().into());
            }
            true
        }
        (addr, true) => write!(out, "{addr}").is_ok(),
        (addr, false) => write!(out, "{}", addr.ip()).is_ok(),
    }
}

/// `value` as a JSON string.
pub fn string(out: &mut Vec<u8>, value: &str) {
    let start = out.len();
    out.push(b'"');
    out.extend_from_slice(value.as_bytes());
    close_string(out, start);
}

/// The low `digits` hex digits of `value`, zero-padded, lowercase.
pub fn hex(out: &mut Vec<u8>, value: u128, digits: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 32];
    let digits = digits.min(32);
    for (i, digit) in text[..digits].iter_mut().rev().enumerate() {
        *digit = DIGITS[((value >> (i * 4)) & 0xf) as usize];
    }
    out.extend_from_slice(&text[..digits]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_needed_exactly_for_controls_quotes_backslashes_and_non_ascii() {
        for b in 0u8..=255 {
            let expected = b < 0x20 || b == b'"' || b == b'\\' || b >= 0x80;
            for at in [0, 5, 9, 15] {
                let mut bytes = vec![b'a'; 16];
                bytes[at] = b;
                assert_eq!(needs_escape(&bytes), expected, "byte {b:#x} at {at}");
            }
            assert_eq!(needs_escape(&[b'x', b'y', b]), expected, "tail byte {b:#x}");
        }
        assert!(!needs_escape(b"GET /reviews/1?user=jason HTTP/1.1"));
    }

    #[test]
    fn strings_are_quoted_and_escaped_only_when_needed() {
        let mut out = Vec::new();
        string(&mut out, "plain");
        string(&mut out, "a\"b\n");
        assert_eq!(out, b"\"plain\"\"a\\\"b\\n\"");
        let mut hexed = Vec::new();
        hex(&mut hexed, 0xabc, 6);
        assert_eq!(hexed, b"000abc");
    }
}

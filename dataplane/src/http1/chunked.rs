//! Finds where a chunked body ends while its bytes are forwarded unchanged.

/// A malformed chunked body.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    /// A chunk-size line holds something other than hex digits and an extension.
    #[error("invalid chunk size")]
    InvalidSize,
    /// A chunk size does not fit in 64 bits.
    #[error("chunk size overflows")]
    SizeOverflow,
    /// Chunk data is not followed by CRLF.
    #[error("missing CRLF after chunk data")]
    MissingCrlf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size; `digits` counts them.
    Size {
        digits: u8,
    },
    /// Skipping a chunk extension up to CR.
    Extension,
    /// Expecting LF after the size line's CR.
    SizeLf,
    /// Inside chunk data with this many bytes left.
    Data(u64),
    DataCr,
    DataLf,
    /// In the trailer section; `empty_line` is true at the start of a line.
    Trailer {
        at_line_start: bool,
    },
    TrailerLf {
        ending: bool,
    },
    Done,
}

/// Incremental scanner for `Transfer-Encoding: chunked` bodies.
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: State,
    size: u64,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        Self {
            state: State::Size { digits: 0 },
            size: 0,
        }
    }
}

impl ChunkedScanner {
    /// True once the last chunk and the trailer section have been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Like [`feed`](Self::feed), and appends the chunks' data (the body without its framing)
    /// to `data`.
    pub fn decode(&mut self, input: &[u8], data: &mut Vec<u8>) -> Result<usize, ChunkedError> {
        self.decode_with_trailers(input, data, None)
    }

    /// Like [`decode`](Self::decode), and appends the trailer section's bytes (its field
    /// lines and the blank line ending it) to `trailers`, when given.
    pub fn decode_with_trailers(
        &mut self,
        input: &[u8],
        data: &mut Vec<u8>,
        trailers: Option<&mut Vec<u8>>,
    ) -> Result<usize, ChunkedError> {
        self.scan(input, Some(data), trailers)
    }

    /// Like [`feed`](Self::feed), and appends the trailer section's bytes to `trailers`.
    pub fn feed_keeping_trailers(
        &mut self,
        input: &[u8],
        trailers: &mut Vec<u8>,
    ) -> Result<usize, ChunkedError> {
        self.scan(input, None, Some(trailers))
    }

    fn scan(
        &mut self,
        input: &[u8],
        mut data: Option<&mut Vec<u8>>,
        mut trailers: Option<&mut Vec<u8>>,
    ) -> Result<usize, ChunkedError> {
        let mut i = 0;
        while i < input.len() && !self.is_done() {
            // Data in bulk; framing a byte at a time, so no data byte is scanned unseen.
            let (step, is_data) = match self.state {
                State::Data(left) => (left.min((input.len() - i) as u64) as usize, true),
                _ => (1, false),
            };
            let in_trailers = matches!(self.state, State::Trailer { .. } | State::TrailerLf { .. });
            let used = self.feed(&input[i..i + step])?;
            if let (true, Some(data)) = (is_data, data.as_deref_mut()) {
                data.extend_from_slice(&input[i..i + used]);
            } else if let (true, Some(trailers)) = (in_trailers, trailers.as_deref_mut()) {
                trailers.extend_from_slice(&input[i..i + used]);
            }
            i += used;
        }
        Ok(i)
    }

    /// Scans `input`, returning how many bytes belong to the body (all of them unless the
    /// body ends inside `input`, in which case the rest belongs to the next message).
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                State::Done => return Ok(i),
                State::Data(left) => {
                    // Skip chunk data in bulk; it is never inspected.
                    let take = left.min((input.len() - i) as u64);
                    i += take as usize;
                    let left = left - take;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data(left)
                    };
                    continue;
                }
                State::Size { digits } => match hex_value(b) {
                    Some(v) => {
                        if self.size > (u64::MAX >> 4) {
                            return Err(ChunkedError::SizeOverflow);
                        }
                        self.size = self.size << 4 | u64::from(v);
                        State::Size {
                            digits: digits.saturating_add(1),
                        }
                    }
                    None if digits == 0 => return Err(ChunkedError::InvalidSize),
                    None if b == b';' => State::Extension,
                    None if b == b'\r' => State::SizeLf,
                    None => return Err(ChunkedError::InvalidSize),
                },
                State::Extension => match b {
                    b'\r' => State::SizeLf,
                    b'\n' => return Err(ChunkedError::InvalidSize),
                    _ => State::Extension,
                },
                State::SizeLf if b == b'\n' => {
                    let size = std::mem::take(&mut self.size);
                    if size == 0 {
                        State::Trailer {
                            at_line_start: true,
                        }
                    } else {
                        State::Data(size)
                    }
                }
                State::SizeLf => return Err(ChunkedError::InvalidSize),
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => State::Size { digits: 0 },
                State::DataCr | State::DataLf => return Err(ChunkedError::MissingCrlf),
                State::Trailer { at_line_start } => match b {
                    b'\r' => State::TrailerLf {
                        ending: at_line_start,
                    },
                    b'\n' => return Err(ChunkedError::MissingCrlf),
                    _ => State::Trailer {
                        at_line_start: false,
                    },
                },
                State::TrailerLf { ending } if b == b'\n' => {
                    if ending {
                        self.state = State::Done;
                        return Ok(i + 1);
                    }
                    State::Trailer {
                        at_line_start: true,
                    }
                }
                State::TrailerLf { .. } => return Err(ChunkedError::MissingCrlf),
            };
            i += 1;
        }
        Ok(i)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(body: &[u8]) -> Result<usize, ChunkedError> {
        let mut s = ChunkedScanner::default();
        let n = s.feed(body)?;
        assert!(s.is_done(), "scanner not done after {n} bytes");
        Ok(n)
    }

    #[test]
    fn finds_the_end_of_a_simple_body() {
        let body = b"5\r\nhello\r\n0\r\n\r\nNEXT";
        assert_eq!(scan_all(body), Ok(body.len() - 4));
    }

    #[test]
    fn handles_extensions_and_trailers() {
        let body = b"3;name=val\r\nabc\r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n";
        assert_eq!(scan_all(body), Ok(body.len()));
    }

    #[test]
    fn decoding_keeps_the_trailer_section_when_asked() {
        let body = b"2\r\nok\r\n0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\nNEXT";
        for split in 0..=body.len() - 4 {
            let (mut s, mut data, mut trailers) =
                (ChunkedScanner::default(), Vec::new(), Vec::new());
            let first = s
                .decode_with_trailers(&body[..split], &mut data, Some(&mut trailers))
                .unwrap();
            let rest = &body[first..];
            s.decode_with_trailers(rest, &mut data, Some(&mut trailers))
                .unwrap();
            assert!(s.is_done());
            assert_eq!(data, b"ok");
            assert_eq!(
                trailers, b"grpc-status: 0\r\ngrpc-message: fine\r\n\r\n",
                "{split}"
            );
        }
    }

    #[test]
    fn decoding_yields_the_data_without_framing_whatever_the_split() {
        let body = b"4;x=y\r\nwiki\r\n5\r\npedia\r\n0\r\nt: 1\r\n\r\nNEXT";
        // Every split inside the body (the trailing NEXT belongs to the next message).
        for split in 0..=body.len() - 4 {
            let (mut s, mut data) = (ChunkedScanner::default(), Vec::new());
            let first = s.decode(&body[..split], &mut data).unwrap();
            assert_eq!(first, split);
            let rest = s.decode(&body[split..], &mut data).unwrap();
            assert!(s.is_done(), "split {split}");
            assert_eq!(
                (first + rest, &data[..]),
                (body.len() - 4, &b"wikipedia"[..])
            );
        }
        let mut data = Vec::new();
        let bad = ChunkedScanner::default().decode(b"4\r\nwikiX", &mut data);
        assert_eq!(bad, Err(ChunkedError::MissingCrlf));
    }

    #[test]
    fn works_byte_by_byte() {
        let body = b"4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n";
        let mut s = ChunkedScanner::default();
        for (i, b) in body.iter().enumerate() {
            assert_eq!(s.feed(std::slice::from_ref(b)), Ok(1), "byte {i}");
        }
        assert!(s.is_done());
    }

    #[test]
    fn rejects_invalid_sizes() {
        assert_eq!(
            ChunkedScanner::default().feed(b"zz\r\n"),
            Err(ChunkedError::InvalidSize)
        );
        assert_eq!(
            ChunkedScanner::default().feed(b"\r\n"),
            Err(ChunkedError::InvalidSize)
        );
        assert_eq!(
            ChunkedScanner::default().feed(b"5 \r\n"),
            Err(ChunkedError::InvalidSize)
        );
        assert_eq!(
            ChunkedScanner::default().feed(b"11111111111111111\r\n"),
            Err(ChunkedError::SizeOverflow)
        );
    }

    #[test]
    fn rejects_data_without_crlf() {
        assert_eq!(
            ChunkedScanner::default().feed(b"2\r\nabc\r\n"),
            Err(ChunkedError::MissingCrlf)
        );
    }
}

//! HTTP/1.1 framing on borrowed buffers: request/response heads (httparse), body framing,
//! the chunked-encoding scanner, and the local replies meshd answers itself.

pub mod chunked;
pub mod head;
pub mod reply;

pub use chunked::{ChunkedError, ChunkedScanner};
pub use head::{BodyFraming, HeadError, RequestHead, ResponseHead};

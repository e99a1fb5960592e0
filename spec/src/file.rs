//! The snapshot file: a fixed header, then the postcard-encoded [`Snapshot`].
//!
//! ```text
//! offset  size  field
//!      0     8  magic  b"RINGMESH"
//!      8     4  format version, u32 little-endian
//!     12     8  payload length in bytes, u64 little-endian
//!     20    32  SHA-256 of the payload
//!     52     …  payload
//! ```

use sha2::{Digest, Sha256};

use crate::{InvalidSnapshot, Snapshot};

/// The first eight bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"RINGMESH";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 10;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 8 + 4 + 8 + 32;

/// Why a snapshot file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the fixed header.
    #[error("truncated snapshot: {len} bytes is shorter than the {HEADER_LEN}-byte header")]
    TruncatedHeader {
        /// Bytes present.
        len: usize,
    },
    /// Does not start with [`MAGIC`].
    #[error("not a ringmesh snapshot: bad magic bytes (expected \"RINGMESH\")")]
    BadMagic,
    /// Written by a newer `meshc` than this build understands.
    #[error(
        "snapshot format version {found} is newer than this build supports ({supported}); \
         upgrade meshd or recompile with a matching meshc"
    )]
    NewerVersion {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// Written by an older, incompatible `meshc`.
    #[error("snapshot format version {found} is older than this build supports ({supported}); recompile it with this meshc")]
    OlderVersion {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The payload is shorter than the header says.
    #[error("truncated snapshot: header announces {expected} payload bytes, file has {actual}")]
    TruncatedPayload {
        /// Bytes the header announces.
        expected: u64,
        /// Bytes present.
        actual: u64,
    },
    /// Bytes follow the announced payload.
    #[error("corrupted snapshot: {extra} unexpected bytes after the payload")]
    TrailingBytes {
        /// Bytes past the payload.
        extra: u64,
    },
    /// The payload does not hash to the header's content hash.
    #[error("corrupted snapshot: content hash mismatch (header {expected}, payload {actual})")]
    HashMismatch {
        /// Hash in the header, hex.
        expected: String,
        /// Hash of the payload, hex.
        actual: String,
    },
    /// The payload hashes correctly but does not decode (a meshc bug, or a format mismatch).
    #[error("malformed snapshot payload: {0}")]
    Payload(String),
    /// The payload decodes but breaks an invariant.
    #[error("invalid snapshot: {0}")]
    Invalid(#[from] InvalidSnapshot),
}

/// Encodes a snapshot into the file format. The output is a pure function of the value.
pub fn encode(snapshot: &Snapshot) -> Vec<u8> {
    let payload =
        postcard::to_stdvec(snapshot).expect("serializing plain data into a Vec cannot fail");
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    out
}

/// Decodes and validates a snapshot file, returning the snapshot and its content hash (hex).
pub fn decode(bytes: &[u8]) -> Result<(Snapshot, String), DecodeError> {
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        // A short file that starts like a snapshot is truncated, not foreign.
        if bytes.len() < HEADER_LEN && MAGIC.starts_with(bytes) {
            return Err(DecodeError::TruncatedHeader { len: bytes.len() });
        }
        return Err(DecodeError::BadMagic);
    }
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::TruncatedHeader { len: bytes.len() });
    }
    let version = u32::from_le_bytes(field(bytes, 8));
    if version > FORMAT_VERSION {
        return Err(DecodeError::NewerVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if version < FORMAT_VERSION {
        return Err(DecodeError::OlderVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let expected_len = u64::from_le_bytes(field(bytes, 12));
    let expected_hash: [u8; 32] = field(bytes, 20);
    let payload = &bytes[HEADER_LEN..];
    let actual_len = payload.len() as u64;
    if actual_len < expected_len {
        return Err(DecodeError::TruncatedPayload {
            expected: expected_len,
            actual: actual_len,
        });
    }
    if actual_len > expected_len {
        return Err(DecodeError::TrailingBytes {
            extra: actual_len - expected_len,
        });
    }
    let actual_hash: [u8; 32] = Sha256::digest(payload).into();
    if actual_hash != expected_hash {
        return Err(DecodeError::HashMismatch {
            expected: hex(&expected_hash),
            actual: hex(&actual_hash),
        });
    }
    let snapshot: Snapshot =
        postcard::from_bytes(payload).map_err(|e| DecodeError::Payload(e.to_string()))?;
    snapshot.validate()?;
    Ok((snapshot, hex(&actual_hash)))
}

fn field<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[offset..offset + N]);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;

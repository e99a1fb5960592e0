//! Decodes arbitrary bytes as a snapshot file: `spec::decode` must reject, never panic.
//!
//! Mutated bytes almost never keep the header's SHA-256 right, so on its own this would only fuzz
//! the header checks. Each input is therefore decoded twice: as given (header checks), and with
//! its payload re-framed under a correct header (postcard decoding and `Snapshot::validate`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use spec::{FORMAT_VERSION, HEADER_LEN, MAGIC};

fuzz_target!(|data: &[u8]| {
    check(data);

    // A real snapshot in the corpus keeps its payload; anything else is all payload.
    let payload = match data.strip_prefix(&MAGIC) {
        Some(_) if data.len() >= HEADER_LEN => &data[HEADER_LEN..],
        _ => data,
    };
    let mut framed = Vec::with_capacity(HEADER_LEN + payload.len());
    framed.extend_from_slice(&MAGIC);
    framed.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    framed.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    framed.extend_from_slice(&Sha256::digest(payload));
    framed.extend_from_slice(payload);
    check(&framed);
});

fn check(bytes: &[u8]) {
    if let Ok((snapshot, _hash)) = spec::decode(bytes) {
        // Whatever decodes must re-encode to a file that decodes to the same snapshot. (Not
        // necessarily the same hash: the input's varints need not be canonical.)
        let again = spec::encode(&snapshot);
        let (round_trip, _) = spec::decode(&again).expect("re-encoded snapshot decodes");
        assert_eq!(round_trip, snapshot);
    }
}

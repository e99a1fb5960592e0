//! Relaying raw bytes after a protocol switch (101).

use std::io;

use crate::conn::Conn;
use crate::pool::Upstream;
use crate::stream::Stream;

/// Largest read one direction of a relay (a tunnel, an opaque TCP connection) makes at once.
/// A TLS record holds 16 KiB, so a smaller chunk splits records: tokio's default of 8 KiB
/// made the TLS relay a quarter slower (benches/RESULTS.md, TCP through the sidecar pair).
pub(super) const RELAY_CHUNK: usize = 64 * 1024;

/// Relays bytes both ways after a protocol switch until each side has closed its half; bytes
/// that arrived with either head go first. Neither connection is reused afterwards.
pub(super) async fn tunnel(mut down: Conn, up: Upstream) {
    // The lease (if any) keeps counting the connection until the tunnel ends.
    let Upstream {
        conn: mut up,
        lease: _lease,
        ..
    } = up;
    use monoio::io::Splitable;
    if down.forward_all_buffered(&mut up.stream).await.is_err()
        || up.forward_all_buffered(&mut down.stream).await.is_err()
    {
        return;
    }
    match (down.into_parts().0, up.into_parts().0) {
        (Stream::Plain(down), Stream::Plain(up)) => {
            let (mut down_read, mut down_write) = down.into_split();
            let (mut up_read, mut up_write) = up.into_split();
            let _ = monoio::join!(
                relay(&mut down_read, &mut up_write),
                relay(&mut up_read, &mut down_write)
            );
        }
        (down, up) => relay_unsplit(down, up).await,
    }
}

/// Relays both ways in one task, for a TLS side whose session cannot be split in two: both
/// sides in poll style, so a write waiting on one side never stops reading the other (each
/// peer may send everything before it reads). A side that ends half-closes the other.
pub(super) async fn relay_unsplit(down: Stream, up: Stream) {
    let (Ok(mut down), Ok(mut up)) = (down.into_poll(), up.into_poll()) else {
        return;
    };
    let _ = tokio::io::copy_bidirectional_with_sizes(&mut down, &mut up, RELAY_CHUNK, RELAY_CHUNK)
        .await;
}

/// Copies until `from` ends, then half-closes `to` so the other side sees the end too.
pub(super) async fn relay(
    from: &mut impl monoio::io::AsyncReadRent,
    to: &mut impl monoio::io::AsyncWriteRent,
) -> io::Result<u64> {
    let copied = monoio::io::copy(from, to).await;
    let _ = to.shutdown().await;
    copied
}

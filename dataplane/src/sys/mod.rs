//! The only module allowed `unsafe`: small socket calls monoio and socket2 do not expose for a
//! raw fd. Every block says why it is sound.
#![allow(unsafe_code)]

use std::os::fd::{BorrowedFd, RawFd};

use socket2::SockRef;

/// Whether the peer has closed an idle connection (or it has unexpected data pending), checked
/// without blocking so a pooled connection is not reused after the upstream dropped it.
pub(crate) fn idle_connection_is_stale(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: `fd` is an open socket owned by the caller for the duration of this call, and
    // recv writes at most one byte into `byte`, which outlives the call.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        // Nothing to read: the connection is idle and open.
        return err.kind() != std::io::ErrorKind::WouldBlock;
    }
    // 0 is EOF; any byte is an unsolicited response, so the connection is unusable either way.
    true
}

/// Runs `f` on the socket `fd` without taking it over, for the options socket2 reads and sets.
pub(crate) fn with_socket<R>(fd: RawFd, f: impl FnOnce(SockRef<'_>) -> R) -> R {
    // SAFETY: the caller keeps `fd` open for the duration of this call, and a SockRef never
    // closes the descriptor it borrows.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    f(SockRef::from(&borrowed))
}

//! The socket side of capture: marked connections, and a captured connection's original
//! destination.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use monoio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};

use crate::sys;

/// Connects to `addr` with the socket mark `mark` set before the SYN leaves (0: unmarked), so
/// the capture rules let the connection through.
pub async fn connect(addr: SocketAddr, mark: u32) -> io::Result<TcpStream> {
    if mark == 0 {
        return TcpStream::connect_addr(addr).await;
    }
    let socket = marked(addr, mark)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(socket.into())?;
    stream.writable(false).await?;
    sys::with_socket(stream.as_raw_fd(), |socket| {
        if let Some(e) = socket.take_error()? {
            return Err(e);
        }
        // monoio's io_uring sockets are blocking: on a non-blocking one its reads and writes
        // would come back with EAGAIN instead of waiting.
        if !monoio::utils::is_legacy() {
            socket.set_nonblocking(false)?;
        }
        Ok(())
    })?;
    Ok(stream)
}

/// Connects a blocking socket to `addr` within `timeout`, marked like [`connect`].
pub fn connect_blocking(
    addr: SocketAddr,
    mark: u32,
    timeout: std::time::Duration,
) -> io::Result<std::net::TcpStream> {
    if mark == 0 {
        return std::net::TcpStream::connect_timeout(&addr, timeout);
    }
    let socket = marked(addr, mark)?;
    socket.set_nonblocking(false)?;
    socket.connect_timeout(&addr.into(), timeout)?;
    Ok(socket.into())
}

fn marked(addr: SocketAddr, mark: u32) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    socket.set_mark(mark)?;
    Ok(socket)
}

/// Where the client of an accepted connection sent it, when the capture rules redirected it
/// to meshd; `None` when the client called meshd's listener itself (or nothing tracks it).
pub fn original_destination(stream: &TcpStream, peer: SocketAddr) -> Option<SocketAddr> {
    let original = sys::with_socket(stream.as_raw_fd(), |socket| {
        // A dual-stack listener's IPv4 clients answer only the IPv4 query.
        if peer.ip().to_canonical().is_ipv4() {
            socket.original_dst()
        } else {
            socket.original_dst_ipv6()
        }
    })
    .ok()?
    .as_socket()?;
    let original = SocketAddr::new(original.ip().to_canonical(), original.port());
    let local = stream.local_addr().ok()?;
    let local = SocketAddr::new(local.ip().to_canonical(), local.port());
    // Without a REDIRECT, conntrack reports the address the client used: meshd's own.
    (original != local).then_some(original)
}

/// Whether this process may mark its sockets (it needs CAP_NET_ADMIN).
pub fn may_mark(mark: u32) -> bool {
    Socket::new(Domain::IPV4, Type::STREAM, None).is_ok_and(|s| s.set_mark(mark).is_ok())
}

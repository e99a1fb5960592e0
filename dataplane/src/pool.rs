//! Per-core upstream keep-alive pools: idle connections by endpoint address, reused LIFO.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use crate::conn::Conn;
use crate::sys;

/// Most idle connections kept per endpoint on one core.
const MAX_IDLE_PER_ENDPOINT: usize = 128;

/// Idle upstream connections owned by one core.
#[derive(Debug, Default)]
pub struct Pool {
    idle: RefCell<HashMap<SocketAddr, Vec<Conn>>>,
}

impl Pool {
    /// Takes an idle connection to `addr`. Connections the upstream closed meanwhile, or that
    /// hold unsolicited bytes (which would be read as the next response), are discarded:
    /// one non-blocking peek each.
    pub fn take(&self, addr: SocketAddr) -> Option<Conn> {
        let mut idle = self.idle.borrow_mut();
        let conns = idle.get_mut(&addr)?;
        while let Some(conn) = conns.pop() {
            if !sys::idle_connection_is_stale(conn.stream.as_raw_fd()) {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps only the idle connections whose endpoint address satisfies `keep`.
    pub fn retain(&self, mut keep: impl FnMut(&SocketAddr) -> bool) {
        self.idle.borrow_mut().retain(|addr, _| keep(addr));
    }

    /// Returns a connection whose last response was fully read.
    pub fn put(&self, addr: SocketAddr, conn: Conn) {
        debug_assert!(conn.buffered().is_empty());
        let mut idle = self.idle.borrow_mut();
        let conns = idle.entry(addr).or_default();
        if conns.len() < MAX_IDLE_PER_ENDPOINT {
            conns.push(conn);
        }
    }
}

//! Per-core upstream keep-alive pools (idle connections by endpoint address, reused LIFO) and
//! circuit breakers: a service's or subset's `pool` limits, each core enforcing its share
//! (the limit divided by the number of cores, at least 1).
//!
//! A breaker counts the connections open to its group on this core; at `max_connections` a
//! request waits in the breaker's queue (FIFO, no locks: one core's tasks) until a connection
//! is returned or closed, and beyond `max_pending_requests` waiting requests it fails at once
//! (503 `UO`). Groups without limits have no breaker and pay nothing.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use monoio::time::Instant;
use rustc_hash::FxHashMap;

use crate::conn::Conn;
use crate::upstream::Secure;

/// Most idle connections kept per endpoint on one core.
const MAX_IDLE_PER_ENDPOINT: usize = 128;

/// An upstream connection with what the breaker of its group needs to know about it.
#[derive(Debug)]
pub struct Upstream {
    /// The connection.
    pub conn: Conn,
    /// Requests sent on it so far.
    pub served: u32,
    /// Its place in its group's connection count, when the group has a breaker.
    pub lease: Option<Lease>,
}

impl Upstream {
    /// Wraps a fresh connection.
    pub fn new(conn: Conn, lease: Option<Lease>) -> Self {
        Self {
            conn,
            served: 0,
            lease,
        }
    }

    /// Whether the connection may carry another request after the current one.
    pub fn reusable(&self) -> bool {
        let limit = self.lease.as_ref().and_then(|l| l.0.max_requests);
        limit.is_none_or(|max| self.served < max)
    }
}

impl std::ops::Deref for Upstream {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl std::ops::DerefMut for Upstream {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

/// An idle pooled connection.
#[derive(Debug)]
struct Idle {
    up: Upstream,
    /// When it became idle; only kept when its breaker has an idle timeout.
    since: Option<Instant>,
}

/// Idle upstream connections owned by one core.
#[derive(Debug, Default)]
pub struct Pool {
    /// By endpoint address; Fx hashing, as the addresses come from the snapshot.
    idle: RefCell<FxHashMap<SocketAddr, Vec<Idle>>>,
}

impl Pool {
    /// Takes an idle connection to `addr` that may carry a request secured as `secure` says
    /// (plain, or TLS to a server with one of the group's identities). Connections the
    /// upstream closed meanwhile, that hold unsolicited bytes (which would be read as the next
    /// response), that sat idle longer than their breaker's idle timeout, or that are secured
    /// otherwise, are discarded: one non-blocking peek each.
    pub fn take(&self, addr: SocketAddr, secure: Option<&Secure<'_>>) -> Option<Upstream> {
        let mut idle = self.idle.borrow_mut();
        let conns = idle.get_mut(&addr)?;
        // Newest first; a connection secured for another group stays for that group.
        let mut at = conns.len();
        while at > 0 {
            at -= 1;
            if !Secure::accepts(secure, &conns[at].up) {
                continue;
            }
            let mut entry = conns.remove(at);
            let expired = entry.since.is_some_and(|since| {
                let timeout = entry.up.lease.as_ref().and_then(|l| l.0.idle_timeout);
                timeout.is_some_and(|t| since.elapsed() >= t)
            });
            if !expired && !entry.up.stream.has_pending_input() && !entry.up.stream.idle_is_stale()
            {
                return Some(entry.up);
            }
        }
        None
    }

    /// Idle connections to `addr` now.
    pub fn idle_count(&self, addr: SocketAddr) -> usize {
        self.idle.borrow().get(&addr).map_or(0, Vec::len)
    }

    /// Keeps only the idle connections whose endpoint address satisfies `keep`.
    pub fn retain(&self, mut keep: impl FnMut(&SocketAddr) -> bool) {
        self.idle.borrow_mut().retain(|addr, _| keep(addr));
    }

    /// Returns a connection whose last response was fully read. A waiter of its breaker is
    /// woken to take it (or to close one idle connection to make room for its own).
    pub fn put(&self, addr: SocketAddr, up: Upstream) {
        debug_assert!(up.buffered().is_empty());
        let breaker = up.lease.as_ref().map(|l| l.0.clone());
        let since = breaker
            .as_ref()
            .and_then(|b| b.idle_timeout)
            .map(|_| Instant::now());
        {
            let mut idle = self.idle.borrow_mut();
            let conns = idle.entry(addr).or_default();
            if conns.len() < MAX_IDLE_PER_ENDPOINT {
                conns.push(Idle { up, since });
            }
        }
        if let Some(b) = breaker {
            b.wake_one();
        }
    }

    /// Closes one idle connection counted by `breaker`, if any: room for a connection to
    /// another endpoint of the group.
    pub fn close_one_idle(&self, breaker: &Rc<Breaker>) -> bool {
        let closed = {
            let mut idle = self.idle.borrow_mut();
            idle.values_mut().find_map(|conns| {
                let i = conns.iter().position(|e| {
                    e.up.lease
                        .as_ref()
                        .is_some_and(|l| Rc::ptr_eq(&l.0, breaker))
                })?;
                Some(conns.swap_remove(i))
            })
        };
        // Dropped outside the borrow: its lease wakes a waiter.
        closed.is_some()
    }
}

/// One group's limits on this core and its live counts.
#[derive(Debug)]
pub struct Breaker {
    /// Most connections open at once (this core's share).
    max_connections: Option<u32>,
    /// Most requests waiting for a connection (this core's share).
    max_pending: Option<u32>,
    /// Requests per connection before it is closed.
    max_requests: Option<u32>,
    /// How long a connection may sit idle in the pool.
    idle_timeout: Option<Duration>,
    /// Replaces `--connect-timeout` for this group.
    pub connect_timeout: Option<Duration>,
    open: Cell<u32>,
    waiters: RefCell<VecDeque<Rc<Waiter>>>,
}

/// A connection's place in its breaker's count; dropping it (closing the connection) frees
/// the place and wakes one waiter.
#[derive(Debug)]
pub struct Lease(Rc<Breaker>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get().saturating_sub(1));
        self.0.wake_one();
    }
}

#[derive(Debug, Default)]
struct Waiter {
    woken: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// Why no connection could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The pending queue is full (`UO`).
    Overflow,
}

/// This core's share of a sidecar-wide limit.
fn share(limit: Option<u32>, cores: usize) -> Option<u32> {
    let cores = u32::try_from(cores.max(1)).unwrap_or(u32::MAX);
    limit.map(|l| (l / cores).max(1))
}

impl Breaker {
    /// The breaker for `limits` on one of `cores` cores; `None` when there are no limits.
    pub fn new(limits: &spec::PoolLimits, cores: usize) -> Option<Rc<Self>> {
        if *limits == spec::PoolLimits::default() {
            return None;
        }
        Some(Rc::new(Self {
            max_connections: share(limits.max_connections, cores),
            max_pending: share(limits.max_pending_requests, cores),
            max_requests: limits.max_requests_per_connection.map(|n| n.max(1)),
            idle_timeout: limits.idle_timeout_ms.map(Duration::from_millis),
            connect_timeout: limits.connect_timeout_ms.map(Duration::from_millis),
            open: Cell::new(0),
            waiters: RefCell::new(VecDeque::new()),
        }))
    }

    /// Takes a place for a new connection if the group is under its connection limit.
    pub fn lease(self: &Rc<Self>) -> Option<Lease> {
        if self
            .max_connections
            .is_some_and(|max| self.open.get() >= max)
        {
            return None;
        }
        self.open.set(self.open.get() + 1);
        Some(Lease(self.clone()))
    }

    /// Waits until a connection of the group is returned or closed; refuses at once when the
    /// queue already holds `max_pending_requests`. The caller bounds the wait.
    pub async fn wait(&self) -> Result<(), Refused> {
        let queued = self.waiters.borrow().len();
        if self.max_pending.is_some_and(|max| queued >= max as usize) {
            return Err(Refused::Overflow);
        }
        let waiter = Rc::new(Waiter::default());
        self.waiters.borrow_mut().push_back(waiter.clone());
        let mut guard = Queued {
            breaker: self,
            waiter,
            finished: false,
        };
        poll_fn(|cx| {
            if guard.waiter.woken.get() {
                Poll::Ready(())
            } else {
                *guard.waiter.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        guard.finished = true;
        Ok(())
    }

    /// How many requests a connection of the group may carry over its life.
    pub fn max_requests(&self) -> Option<u32> {
        self.max_requests
    }

    /// A stream of one of the group's HTTP/2 connections ended: a request waiting for room
    /// may take its place. Every waiter looks, as the room is on one address and for one
    /// protocol, which the first in the queue may not want.
    pub fn stream_ended(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            w.woken.set(true);
            if let Some(waker) = w.waker.borrow_mut().take() {
                waker.wake();
            }
        }
    }

    /// Connections open under this breaker now.
    pub fn open(&self) -> u32 {
        self.open.get()
    }

    /// Requests waiting now.
    pub fn pending(&self) -> usize {
        self.waiters.borrow().len()
    }

    fn wake_one(&self) {
        let next = self.waiters.borrow_mut().pop_front();
        if let Some(w) = next {
            w.woken.set(true);
            if let Some(waker) = w.waker.borrow_mut().take() {
                waker.wake();
            }
        }
    }
}

/// A place in a breaker's queue; leaving it early (a timeout) passes a wake-up it received on.
struct Queued<'b> {
    breaker: &'b Breaker,
    waiter: Rc<Waiter>,
    /// The wait completed (its wake-up was used).
    finished: bool,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if self.waiter.woken.get() {
            self.breaker.wake_one();
            return;
        }
        self.breaker
            .waiters
            .borrow_mut()
            .retain(|w| !Rc::ptr_eq(w, &self.waiter));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: u32, max_pending: u32) -> spec::PoolLimits {
        spec::PoolLimits {
            max_connections: Some(max_connections),
            max_pending_requests: Some(max_pending),
            ..spec::PoolLimits::default()
        }
    }

    #[test]
    fn no_limits_no_breaker_and_shares_are_at_least_one() {
        assert!(Breaker::new(&spec::PoolLimits::default(), 4).is_none());
        let b = Breaker::new(&limits(10, 3), 4).unwrap();
        assert_eq!(b.max_connections, Some(2));
        assert_eq!(b.max_pending, Some(1));
        assert_eq!(share(Some(1), 8), Some(1));
    }

    #[test]
    fn leases_stop_at_the_limit_and_return_on_drop() {
        let b = Breaker::new(&limits(2, 1), 1).unwrap();
        let first = b.lease().unwrap();
        let _second = b.lease().unwrap();
        assert!(b.lease().is_none());
        drop(first);
        assert!(b.lease().is_some());
    }

    #[test]
    fn waiters_beyond_max_pending_overflow_and_a_release_wakes_the_first() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let b = Breaker::new(&limits(1, 1), 1).unwrap();
            let lease = b.lease().unwrap();
            let waiting = {
                let b = b.clone();
                monoio::spawn(async move { b.wait().await })
            };
            // Let the waiter queue up.
            while b.pending() == 0 {
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(b.wait().await, Err(Refused::Overflow));
            drop(lease);
            assert_eq!(waiting.await, Ok(()));
            assert_eq!(b.pending(), 0);
            // A waiter that gives up leaves the queue.
            let _lease = b.lease().unwrap();
            let gave_up = monoio::time::timeout(Duration::from_millis(1), b.wait()).await;
            assert!(gave_up.is_err());
            assert_eq!(b.pending(), 0);
        });
    }

    #[test]
    fn max_requests_per_connection_ends_reuse() {
        let b = Breaker::new(
            &spec::PoolLimits {
                max_requests_per_connection: Some(2),
                ..spec::PoolLimits::default()
            },
            1,
        )
        .unwrap();
        assert!(b.lease().is_some());
        assert_eq!(b.max_requests, Some(2));
    }
}

//! A small real HTTP/1.1 origin server (thread per connection) for tests, the demo and benchmarks.
//!
//! While [`Upstream::set_failing`] is in force every request answers that status instead.
//!
//! Routes: `/echo`, `/echo-chunked`, `/chunked?chunks=N&size=S`, `/headers`, `/status/NNN`,
//! `/slow/MS` (answers after MS milliseconds, at most 10 000),
//! `/early-hints` (a 103 before the 200),
//! `/fail/close` (no answer), `/fail/truncate` (body cut short), `/fail/garbage` (not HTTP),
//! `/fail/reset` (a TCP reset in the middle of the body), `/fail/gzip-coded` (a body with
//! `transfer-encoding: gzip`, delimited by the close),
//! and anything else answers 200 with the server's name. Every response carries
//! `x-upstream: <name>` and `content-type: text/plain`.
//!
//! A test may make the next requests misbehave whatever their route ([`Upstream::fail_next`]:
//! answer an error status; [`Upstream::hold_next`]: stall until [`Upstream::release`], or
//! until the client goes away ([`Upstream::abandoned`] counts those);
//! [`Upstream::reset_next`]: reset the connection without answering).

mod serve;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// A running origin server; dropping it closes the listener and every connection and joins its threads.
#[derive(Debug)]
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// State shared between the handle, the accept thread and connection threads.
#[derive(Debug)]
struct Shared {
    name: String,
    stop: AtomicBool,
    requests: AtomicU64,
    connections: AtomicU64,
    /// How the next requests misbehave, and how many of them are left.
    misbehave: Mutex<Option<(u64, Misbehave)>>,
    /// Held requests answer once this is set.
    released: AtomicBool,
    /// Held requests whose client closed the connection before their release.
    abandoned: AtomicU64,
    /// Status every request is answered with while nonzero (see [`Upstream::set_failing`]).
    failing: AtomicU16,
}

/// How a request misbehaves on a test's command, instead of following its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Misbehave {
    /// Answer this status (with the server's name as body).
    Status(u16),
    /// Read the request, then wait until released (or the server stops) before answering.
    Hold,
    /// Read the request, then reset the connection (RST, not FIN) without answering.
    Reset,
}

impl Shared {
    /// Takes one misbehaviour for the request being served, if any are left.
    pub(crate) fn next_misbehaviour(&self) -> Option<Misbehave> {
        let mut slot = self
            .misbehave
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (left, what) = (*slot)?;
        *slot = (left > 1).then_some((left - 1, what));
        Some(what)
    }
}

impl Upstream {
    /// Starts a server named `name` on `127.0.0.1:0`.
    pub fn start(name: &str) -> io::Result<Self> {
        Self::bind(name, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    /// Starts a server named `name` listening on `addr`.
    pub fn bind(name: &str, addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            stop: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            misbehave: Mutex::new(None),
            released: AtomicBool::new(false),
            abandoned: AtomicU64::new(0),
            failing: AtomicU16::new(0),
        });
        let acceptor = thread::Builder::new()
            .name(format!("upstream-{name}"))
            .spawn({
                let shared = Arc::clone(&shared);
                move || accept_loop(&listener, &shared)
            })?;
        Ok(Self {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's name, sent in `x-upstream` and as the default body.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Requests answered so far; counted before the response is written, so a client that has read a response sees it counted.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Makes every later request, whatever its path, answer `status` (e.g. 503), until called
    /// with `None`: an endpoint that fails on demand, for outlier detection tests.
    pub fn set_failing(&self, status: Option<u16>) {
        self.shared
            .failing
            .store(status.unwrap_or(0), Ordering::SeqCst);
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Makes the next `n` requests (whatever their route) answer `status`; later ones follow
    /// their routes again. `u64::MAX` fails every request.
    pub fn fail_next(&self, n: u64, status: u16) {
        self.set_misbehaviour(n, Misbehave::Status(status));
    }

    /// Makes the next `n` requests stall after being read (and counted) until [`Self::release`]
    /// is called or the server stops; then they follow their routes.
    pub fn hold_next(&self, n: u64) {
        self.shared.released.store(false, Ordering::SeqCst);
        self.set_misbehaviour(n, Misbehave::Hold);
    }

    /// Makes the next `n` requests reset their connection (a TCP RST) once read and counted,
    /// without a response byte; later ones follow their routes.
    pub fn reset_next(&self, n: u64) {
        self.set_misbehaviour(n, Misbehave::Reset);
    }

    /// Held requests whose client (the proxy) closed the connection before their release.
    pub fn abandoned(&self) -> u64 {
        self.shared.abandoned.load(Ordering::SeqCst)
    }

    /// Lets every held request (and any later one told to hold) answer.
    pub fn release(&self) {
        self.shared.released.store(true, Ordering::SeqCst);
    }

    fn set_misbehaviour(&self, n: u64, what: Misbehave) {
        let mut slot = self
            .shared
            .misbehave
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = (n > 0).then_some((n, what));
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        if TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok() {
            if let Some(acceptor) = self.acceptor.take() {
                // A panicked acceptor has nothing left to clean up.
                let _ = acceptor.join();
            }
        }
    }
}

/// Accepts until stopped, then shuts down and joins every live connection thread.
fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    // Each connection thread with the acceptor's handle on its socket (taken for a reset).
    type Live = (Arc<Mutex<Option<TcpStream>>>, JoinHandle<()>);
    let mut live: Vec<Live> = Vec::new();
    loop {
        let accepted = listener.accept();
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok((stream, _)) = accepted else {
            // EMFILE and friends: back off instead of spinning on the error.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        live.retain(|(_, handle)| !handle.is_finished());
        // Small responses must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        let clone = Arc::new(Mutex::new(Some(clone)));
        let spawned = thread::Builder::new()
            .name(format!("upstream-{}-conn", shared.name))
            .spawn({
                let (shared, clone) = (Arc::clone(shared), Arc::clone(&clone));
                move || serve::connection(stream, &shared, &clone)
            });
        if let Ok(handle) = spawned {
            live.push((clone, handle));
        }
    }
    for (stream, _) in &live {
        let stream = stream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(stream) = stream.as_ref() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
    for (_, handle) in live {
        let _ = handle.join();
    }
}

//! A core's downstream connections: how many are open, how many shed ones linger, and the
//! drain signal every connection watches.

use std::cell::Cell;

use crate::drain::Drain;

/// Downstream connections on one core.
#[derive(Debug, Default)]
pub struct Connections {
    /// Downstream connections open now.
    pub active: Cell<usize>,
    /// Connections refused over `max_connections_per_core` still lingering after the 503.
    pub shedding: Cell<usize>,
    /// Drain signal.
    pub drain: Drain,
}

impl Connections {
    /// Counts a connection open until the returned guard drops.
    pub fn open(&self) -> Open<'_> {
        self.active.set(self.active.get() + 1);
        Open(&self.active)
    }
}

/// One connection counted in [`Connections::active`].
#[derive(Debug)]
pub struct Open<'a>(&'a Cell<usize>);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

//! A per-core, one-shot "stop taking new work" signal that any number of tasks can await.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Set once when the sidecar starts draining; tasks waiting on it all wake.
#[derive(Debug, Default)]
pub struct Drain {
    started: Cell<bool>,
    // Slots so a waiting task re-registers in place instead of piling up wakers.
    waiters: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl Drain {
    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        self.started.get()
    }

    /// Starts draining and wakes every waiter.
    pub fn start(&self) {
        self.started.set(true);
        let wakers: Vec<Waker> = self
            .waiters
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Completes once draining has started.
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            drain: self,
            slot: None,
        }
    }
}

/// Future returned by [`Drain::wait`].
#[derive(Debug)]
pub struct Wait<'a> {
    drain: &'a Drain,
    slot: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.drain.started.get() {
            return Poll::Ready(());
        }
        let mut waiters = self.drain.waiters.borrow_mut();
        let slot = match self.slot {
            Some(slot) => slot,
            None => {
                let slot = self.drain.free.borrow_mut().pop().unwrap_or_else(|| {
                    waiters.push(None);
                    waiters.len() - 1
                });
                self.slot = Some(slot);
                slot
            }
        };
        waiters[slot] = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            self.drain.waiters.borrow_mut()[slot] = None;
            self.drain.free.borrow_mut().push(slot);
        }
    }
}

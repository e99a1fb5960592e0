//! One core's access log buffer. Lines are rendered into it on the request path; a full
//! buffer goes to the writer thread and one of the core's spare buffers takes its place. Each
//! core owns a fixed number of buffers, so a writer that cannot keep up (a full disk, a pipe
//! nobody reads) costs lines, counted, and never memory or a wait.

use std::cell::{Cell, RefCell};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant, SystemTime};

use super::writer::Message;

/// Buffers each core owns: the one it fills and its spares.
pub const BUFFERS_PER_CORE: usize = 4;
/// A buffer this full goes to the writer before the next line.
const HAND_OFF_BYTES: usize = 32 * 1024;
/// A buffer this full with no spare to swap in: lines are dropped.
const FULL_BYTES: usize = 64 * 1024;
/// How long a line may wait in a core's buffer before it goes to the writer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// Lines from one core, on their way to the writer.
#[derive(Debug)]
pub struct Batch {
    /// The core the buffer goes back to.
    pub core: usize,
    pub bytes: Vec<u8>,
    /// How many lines (entries) `bytes` holds.
    pub lines: u64,
}

/// A core's ends of the writer's channels.
#[derive(Debug)]
pub struct Channel {
    /// Full buffers to the writer. Its capacity holds every buffer of every core, so a send
    /// fails only when the writer is gone.
    pub to_writer: SyncSender<Message>,
    /// Written buffers, emptied, back from the writer.
    pub spare: Receiver<Vec<u8>>,
}

/// One core's access log buffer and counts.
#[derive(Debug)]
pub struct CoreLog {
    core: usize,
    current: RefCell<Vec<u8>>,
    channel: Option<Channel>,
    /// Whether a task will hand this buffer to the writer within [`FLUSH_INTERVAL`].
    flush_pending: Cell<bool>,
    /// Lines rendered, and lines dropped for want of a free buffer.
    lines: Cell<u64>,
    /// Lines in the current buffer.
    pending: Cell<u64>,
    dropped: Cell<u64>,
    /// A monotonic instant and the wall-clock time it was, refreshed at every flush: a line's
    /// start time is computed from it rather than read from the clock twice per line.
    anchor: Cell<(Instant, SystemTime)>,
}

/// What a core's log counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogCounts {
    pub lines: u64,
    pub dropped: u64,
}

impl CoreLog {
    /// A core's log; without a channel (no writer) every line is dropped.
    pub fn new(core: usize, channel: Option<Channel>) -> Self {
        Self {
            core,
            current: RefCell::new(Vec::new()),
            channel,
            flush_pending: Cell::new(false),
            lines: Cell::new(0),
            pending: Cell::new(0),
            dropped: Cell::new(0),
            anchor: Cell::new((Instant::now(), SystemTime::now())),
        }
    }

    /// The wall-clock time of `at` (an instant of this process).
    pub fn wall_clock(&self, at: Instant) -> SystemTime {
        let (instant, wall) = self.anchor.get();
        match at.checked_duration_since(instant) {
            Some(after) => wall + after,
            None => wall - instant.duration_since(at),
        }
    }

    /// Renders one line with `render`, or drops it (counted) when every buffer is full.
    /// Returns whether the caller must schedule [`Self::flush`] (see [`FLUSH_INTERVAL`]).
    pub fn append(&self, render: impl FnOnce(&mut Vec<u8>)) -> bool {
        let mut current = self.current.borrow_mut();
        if current.len() >= HAND_OFF_BYTES {
            self.hand_off(&mut current);
        }
        if current.len() >= FULL_BYTES || self.channel.is_none() {
            self.dropped.set(self.dropped.get() + 1);
            return false;
        }
        render(&mut current);
        self.lines.set(self.lines.get() + 1);
        self.pending.set(self.pending.get() + 1);
        !self.flush_pending.replace(true)
    }

    /// Hands what the buffer holds to the writer, if a spare buffer can take its place.
    /// Returns whether lines are still waiting (the writer has every spare).
    pub fn flush(&self) -> bool {
        self.anchor.set((Instant::now(), SystemTime::now()));
        let mut current = self.current.borrow_mut();
        if !current.is_empty() {
            self.hand_off(&mut current);
        }
        let waiting = !current.is_empty();
        self.flush_pending.set(waiting);
        waiting
    }

    /// Hands what the buffer holds to the writer now, if a spare can take its place, and
    /// leaves the next [`Self::append`] to schedule a flush for whatever stays.
    pub fn flush_now(&self) {
        self.flush();
        self.flush_pending.set(false);
    }

    /// Sends the last lines to the writer, without waiting for a spare: the core is stopping.
    pub fn close(&self) {
        let bytes = std::mem::take(&mut *self.current.borrow_mut());
        if let (Some(channel), false) = (&self.channel, bytes.is_empty()) {
            let _ = channel.to_writer.try_send(Message::Lines(Batch {
                core: self.core,
                bytes,
                lines: self.pending.take(),
            }));
        }
    }

    pub fn counts(&self) -> LogCounts {
        LogCounts {
            lines: self.lines.get(),
            dropped: self.dropped.get(),
        }
    }

    fn hand_off(&self, current: &mut Vec<u8>) {
        let Some(channel) = &self.channel else {
            return;
        };
        let Ok(spare) = channel.spare.try_recv() else {
            return;
        };
        let bytes = std::mem::replace(current, spare);
        // Fails only when the writer is gone; the lines go with it.
        let _ = channel.to_writer.try_send(Message::Lines(Batch {
            core: self.core,
            bytes,
            lines: self.pending.take(),
        }));
    }
}

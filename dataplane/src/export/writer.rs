//! The writer: a thread that takes the cores' full buffers and writes them to the destination
//! (for access logs a file, a pipe, or stdout; for spans a trace collector), off the request
//! path. SIGUSR1 makes it reopen a file, so `logrotate` can move the old one away.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use super::collector::Collector;
use super::sink::{Batch, Channel, BUFFERS_PER_CORE};

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    File(PathBuf),
    /// Spans, posted a batch at a time.
    Collector(Collector),
    /// Nowhere: spans while no collector is in force (none are made then).
    Discard,
}

impl Destination {
    /// Opens the destination for appending. A FIFO is opened for reading too, so that opening
    /// it does not wait for a reader (Linux allows that on a FIFO).
    fn open(&self) -> io::Result<Output> {
        let path = match self {
            Self::Stdout => return Ok(Output::Stdout),
            Self::Collector(collector) => return Ok(Output::Collector(collector.clone())),
            Self::Discard => return Ok(Output::Discard),
            Self::File(path) => path,
        };
        let fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(fifo)
            .open(path)?;
        Ok(Output::File(file))
    }
}

enum Output {
    Stdout,
    File(File),
    Collector(Collector),
    Discard,
}

impl Output {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Self::File(file) => file.write_all(bytes),
            Self::Collector(collector) => collector.post(bytes),
            Self::Discard => Err(io::Error::other("no trace collector in force")),
        }
    }
}

/// A destination, for log lines about it.
fn describe(destination: &Destination) -> String {
    match destination {
        Destination::Stdout => "stdout".to_owned(),
        Destination::File(path) => path.display().to_string(),
        Destination::Collector(collector) => format!("the collector {collector}"),
        Destination::Discard => "nowhere (no trace collector)".to_owned(),
    }
}

/// What goes to the writer thread.
#[derive(Debug)]
pub enum Message {
    Lines(Batch),
    /// Look at the reopen flag now (SIGUSR1 arrived).
    Wake,
    /// The cores have stopped and sent their last lines: stop after writing them.
    Finish,
}

/// The running writer: reopens on request, and is waited for at exit.
#[derive(Debug)]
pub struct Writer {
    destination: Destination,
    wake: SyncSender<Message>,
    reopen: Arc<AtomicBool>,
    /// New destinations (a reload named another collector), taken before the next write.
    retarget: Sender<Destination>,
    /// Lines lost to failed writes.
    pub failed_lines: Arc<AtomicU64>,
    done: Receiver<()>,
}

impl Writer {
    /// Opens `destination` (an unwritable path is an error now, not at the first request)
    /// and starts the writer for `cores` cores, returning each core's channel.
    pub fn start(destination: Destination, cores: usize) -> io::Result<(Self, Vec<Channel>)> {
        let output = destination.open()?;
        // Room for every buffer, a wake-up and the finish.
        let (to_writer, from_cores) = mpsc::sync_channel(cores * BUFFERS_PER_CORE + 2);
        let mut spares = Vec::with_capacity(cores);
        let mut channels = Vec::with_capacity(cores);
        for _ in 0..cores {
            let (spare_tx, spare_rx) = mpsc::channel();
            for _ in 1..BUFFERS_PER_CORE {
                let _ = spare_tx.send(Vec::new());
            }
            spares.push(spare_tx);
            channels.push(Channel {
                to_writer: to_writer.clone(),
                spare: spare_rx,
            });
        }
        let reopen = Arc::new(AtomicBool::new(false));
        let failed_lines = Arc::new(AtomicU64::new(0));
        let (done_tx, done) = mpsc::channel();
        let (retarget, retargets) = mpsc::channel();
        let thread = Thread {
            destination: destination.clone(),
            output,
            spares,
            reopen: reopen.clone(),
            retargets,
            failed_lines: failed_lines.clone(),
        };
        std::thread::Builder::new()
            .name(match destination {
                Destination::Collector(_) | Destination::Discard => "meshd-spans".into(),
                _ => "meshd-access-log".into(),
            })
            .spawn(move || {
                thread.run(from_cores);
                let _ = done_tx.send(());
            })?;
        let writer = Self {
            destination,
            wake: to_writer,
            reopen,
            retarget,
            failed_lines,
            done,
        };
        Ok((writer, channels))
    }

    /// Sends what the writer writes to `destination` from its next batch on.
    pub fn retarget(&self, destination: Destination) {
        if self.retarget.send(destination).is_ok() {
            // A full channel means the writer is busy and will take the change anyway.
            let _ = self.wake.try_send(Message::Wake);
        }
    }

    /// What asks the writer to reopen its file (for the signal thread).
    pub fn reopener(&self) -> Reopener {
        Reopener {
            file: matches!(self.destination, Destination::File(_)),
            wake: self.wake.clone(),
            reopen: self.reopen.clone(),
        }
    }

    /// Waits up to `limit` for the writer to write what the stopped cores handed it; a writer
    /// stuck on a destination nobody reads is left behind.
    pub fn finish(self, limit: Duration) {
        let _ = self.wake.try_send(Message::Finish);
        let _ = self.done.recv_timeout(limit);
    }
}

/// Asks the writer to reopen its file.
#[derive(Debug, Clone)]
pub struct Reopener {
    file: bool,
    wake: SyncSender<Message>,
    reopen: Arc<AtomicBool>,
}

impl Reopener {
    /// The writer reopens its file before its next write (stdout is left alone).
    pub fn reopen(&self) {
        if self.file {
            self.reopen.store(true, Ordering::Relaxed);
            // A full channel means the writer is busy and will see the flag anyway.
            let _ = self.wake.try_send(Message::Wake);
        }
    }
}

/// The writer thread's state.
struct Thread {
    destination: Destination,
    output: Output,
    spares: Vec<Sender<Vec<u8>>>,
    reopen: Arc<AtomicBool>,
    retargets: Receiver<Destination>,
    failed_lines: Arc<AtomicU64>,
}

impl Thread {
    /// Writes batches until every core and the handle have hung up.
    fn run(mut self, from_cores: Receiver<Message>) {
        let mut failing = false;
        for message in from_cores {
            if self.reopen.swap(false, Ordering::Relaxed) {
                self.reopen_output();
            }
            if let Some(destination) = self.retargets.try_iter().last() {
                self.retarget(destination);
            }
            let Batch {
                core,
                mut bytes,
                lines,
            } = match message {
                Message::Lines(batch) => batch,
                Message::Wake => continue,
                Message::Finish => break,
            };
            match self.output.write_all(&bytes) {
                Ok(()) => failing = false,
                Err(e) => {
                    self.failed_lines.fetch_add(lines, Ordering::Relaxed);
                    if !failing {
                        tracing::warn!("{} failed, dropping lines: {e}", self.what());
                        failing = true;
                    }
                }
            }
            bytes.clear();
            if let Some(spare) = self.spares.get(core) {
                let _ = spare.send(bytes);
            }
        }
    }

    /// Writes to `destination` from now on (a collector or nowhere: opening cannot fail).
    fn retarget(&mut self, destination: Destination) {
        match destination.open() {
            Ok(output) => {
                tracing::info!("spans now go to {}", describe(&destination));
                self.output = output;
                self.destination = destination;
            }
            Err(e) => tracing::warn!("cannot switch to {}: {e}", describe(&destination)),
        }
    }

    /// What the thread writes, for its log lines.
    fn what(&self) -> &'static str {
        match self.destination {
            Destination::Collector(_) | Destination::Discard => {
                "posting spans to the trace collector"
            }
            _ => "writing the access log",
        }
    }

    fn reopen_output(&mut self) {
        let Destination::File(path) = &self.destination else {
            return;
        };
        match self.destination.open() {
            Ok(output) => {
                self.output = output;
                tracing::info!("access log reopened {}", path.display());
            }
            // Keep writing to the old file rather than losing lines.
            Err(e) => tracing::warn!(
                "cannot reopen access log {}: {e}; still writing to the old file",
                path.display()
            ),
        }
    }
}

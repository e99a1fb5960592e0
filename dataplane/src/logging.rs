//! meshd's own log lines (not access logs): leveled, timestamped events through `tracing`, as
//! text or JSON on stderr, with a level an operator can change at run time (admin
//! `/logging`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, Registry};

/// How meshd's log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `TIMESTAMP LEVEL message`.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields.message`.
    Json,
}

/// The levels `--log-level` and admin `/logging` take.
pub const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Changes the level of the installed logger.
#[derive(Clone)]
pub struct LogLevel {
    set: Arc<dyn Fn(LevelFilter) -> Result<(), String> + Send + Sync>,
    /// The level in force, as an index into [`LEVELS`].
    current: Arc<AtomicUsize>,
}

impl std::fmt::Debug for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLevel")
            .field("current", &self.get())
            .finish()
    }
}

impl LogLevel {
    /// The level in force, by name.
    pub fn get(&self) -> &'static str {
        LEVELS
            .get(self.current.load(Ordering::Relaxed))
            .copied()
            .unwrap_or("info")
    }

    /// Sets the level by name (one of [`LEVELS`]).
    pub fn set(&self, name: &str) -> Result<(), String> {
        let level = parse_level(name)?;
        (self.set)(level)?;
        let index = LEVELS.iter().position(|l| *l == name).unwrap_or(3);
        self.current.store(index, Ordering::Relaxed);
        Ok(())
    }
}

/// `name` as a level filter.
pub fn parse_level(name: &str) -> Result<LevelFilter, String> {
    name.parse::<LevelFilter>()
        .ok()
        .filter(|_| LEVELS.contains(&name))
        .ok_or_else(|| format!("unknown log level {name:?}; one of {}", LEVELS.join(", ")))
}

/// Installs the logger for the process: `level` and `format` on stderr.
pub fn init(level: &str, format: LogFormat) -> Result<LogLevel, String> {
    let initial = parse_level(level)?;
    let (filter, handle) = reload::Layer::<LevelFilter, Registry>::new(initial);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_ansi(false),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_target(false),
            )
            .try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))?;
    let set = move |level: LevelFilter| {
        handle
            .modify(|filter| *filter = level)
            .map_err(|e| format!("cannot change the log level: {e}"))
    };
    Ok(LogLevel {
        set: Arc::new(set),
        current: Arc::new(AtomicUsize::new(
            LEVELS.iter().position(|l| *l == level).unwrap_or(3),
        )),
    })
}

//! `meshload`: an open-loop constant-rate HTTP/1.1 load generator with HDR latency histograms.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tools::load::{self, parse_duration, parse_header, Config, Rate, Target};

/// Send GET requests at a fixed rate and report latency corrected for coordinated omission.
#[derive(Debug, Parser)]
#[command(name = "meshload", version)]
struct Args {
    /// Target URL, http://host:port/path?query (plain HTTP/1.1 only; port defaults to 80).
    #[arg(value_parser = parse_target)]
    url: Target,
    /// Requests per second (open loop), or `max` for closed loop.
    #[arg(long, value_parser = parse_rate)]
    rate: Rate,
    /// How long to send, e.g. 500ms, 10s, 2m.
    #[arg(long, value_parser = parse_duration)]
    duration: Duration,
    /// Concurrent connections, one thread each [default: 16, fewer at tiny rates].
    #[arg(short = 'c', long)]
    connections: Option<usize>,
    /// Extra request header, `name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Count responses by the value of this response header (e.g. x-upstream).
    #[arg(long)]
    tally_header: Option<String>,
    /// Connect timeout and limit for each complete response.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
}

fn parse_target(s: &str) -> Result<Target, load::ParseError> {
    s.parse()
}

fn parse_rate(s: &str) -> Result<Rate, load::ParseError> {
    s.parse()
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.connections == Some(0) || args.duration.is_zero() || args.timeout.is_zero() {
        eprintln!("error: --connections, --duration and --timeout must be greater than zero");
        return ExitCode::from(2);
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut config = Config::new(args.url, args.rate, args.duration);
    config.connections = args.connections;
    config.headers = args.headers;
    config.tally_header = args.tally_header;
    config.timeout = args.timeout;
    let report = load::run(&config).context("meshload")?;
    print!("{report}");
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json() + "\n")
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

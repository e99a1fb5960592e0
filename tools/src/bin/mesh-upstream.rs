//! `mesh-upstream`: runs one `tools::upstream::Upstream` origin server until killed.

use clap::Parser;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use tools::upstream::Upstream;

/// A small HTTP/1.1 origin server for tests, the demo and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "mesh-upstream", version)]
struct Args {
    /// Name sent in `x-upstream` and as the default body.
    #[arg(long)]
    name: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let upstream = match Upstream::bind(&args.name, args.listen) {
        Ok(upstream) => upstream,
        Err(e) => {
            eprintln!("error: listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "listening {}", upstream.addr())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(stdout);
    // Serve until killed; park can wake spuriously, hence the loop.
    loop {
        std::thread::park();
    }
}

//! compile-bench: how long `meshc compile` takes, and how much memory, on a generated mesh of
//! many services and routes; then how long the data plane's route lookup takes on the result.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use dataplane::routing::{RequestView, RouteState};
use tools::harness;

/// Generate a large mesh, compile it with the real meshc, and time route lookups on it.
#[derive(Debug, Parser)]
#[command(name = "compile-bench")]
struct Args {
    /// Services to generate.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Route rules to generate in total, spread evenly over the services.
    #[arg(long, default_value_t = 50_000)]
    routes: usize,
    /// Compile runs; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Route lookups to time.
    #[arg(long, default_value_t = 1_000_000)]
    lookups: usize,
    /// Append the results to this markdown file.
    #[arg(long)]
    output: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compile-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    harness::ensure_built()?;
    let dir = std::env::temp_dir().join(format!("ringmesh-compile-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("big.mesh");
    let config = generate(args.services, args.routes);
    std::fs::write(&input, &config)?;
    let output = dir.join("big.snap");

    let mut runs = Vec::new();
    for _ in 0..args.runs.max(1) {
        // GNU time reports the child's peak RSS, which std does not expose.
        let result = Command::new("/usr/bin/time")
            .args(["-f", "%e %M"])
            .arg(harness::binary("meshc")?)
            .arg("compile")
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .output()
            .context("run /usr/bin/time meshc (apt-get install time)")?;
        if !result.status.success() {
            bail!("meshc failed: {}", String::from_utf8_lossy(&result.stderr));
        }
        let stderr = String::from_utf8_lossy(&result.stderr);
        let last = stderr.lines().last().unwrap_or("");
        let mut fields = last.split_whitespace();
        let seconds: f64 = fields
            .next()
            .and_then(|s| s.parse().ok())
            .context("time output")?;
        let kib: u64 = fields
            .next()
            .and_then(|s| s.parse().ok())
            .context("time output")?;
        runs.push((seconds, kib));
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (seconds, kib) = runs[runs.len() / 2];
    let bytes = std::fs::read(&output)?;
    let (snapshot, hash) = spec::decode(&bytes)?;
    let rules: usize = snapshot.routes.iter().map(|t| t.rules.len()).sum();

    let routes = RouteState::new(snapshot, hash, None)?;
    let per_service = (args.routes / args.services.max(1)).max(1);
    let started = Instant::now();
    let mut hits = 0usize;
    for i in 0..args.lookups {
        let service = i * 7919 % args.services.max(1);
        let host = format!("svc-{service}");
        // The last rule of each service: the worst case for a first-match scan.
        let path = format!("/p{}/x", per_service - 1);
        let view = RequestView {
            host: &host,
            port: None,
            path: &path,
            method: "GET",
            query: "",
            headers: &[],
        };
        if routes.route(&view, || 0).is_ok() {
            hits += 1;
        }
    }
    let elapsed = started.elapsed();
    if hits != args.lookups {
        bail!("only {hits} of {} lookups matched", args.lookups);
    }
    let per_lookup_ns = elapsed.as_nanos() as f64 / args.lookups as f64;
    let _ = std::fs::remove_dir_all(&dir);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## Compile benchmark: {} services, {} route rules ({} MiB of DSL)\n",
        args.services,
        rules,
        config.len() / (1024 * 1024)
    );
    let _ = writeln!(
        out,
        "Command: `cargo run --release --bin compile-bench -- --services {} --routes {} --runs {} --lookups {}`\n",
        args.services, args.routes, args.runs, args.lookups
    );
    let _ = writeln!(out, "| figure | measured | target |");
    let _ = writeln!(out, "|---|---|---|");
    let _ = writeln!(
        out,
        "| `meshc compile` wall time (median of {}) | {seconds:.2} s | < 1 s |",
        runs.len()
    );
    let _ = writeln!(
        out,
        "| `meshc compile` peak RSS | {:.0} MiB | < 500 MiB |",
        kib as f64 / 1024.0
    );
    let _ = writeln!(
        out,
        "| snapshot size | {:.1} MiB | — |",
        bytes.len() as f64 / (1024.0 * 1024.0)
    );
    let _ = writeln!(
        out,
        "| route lookup, last of {per_service} rules of one of {} hosts (incl. building the request strings) | {per_lookup_ns:.0} ns | < 1 µs |",
        args.services
    );
    print!("{out}");
    if let Some(path) = &args.output {
        let mut existing = std::fs::read_to_string(path).unwrap_or_default();
        existing.push_str(&out);
        std::fs::write(path, existing)?;
    }
    Ok(())
}

/// A mesh of `services` services, each with two endpoints and two subsets, and `routes` rules
/// spread over them: path-prefix rules splitting 90/10, the last one per service a catch-all.
fn generate(services: usize, routes: usize) -> String {
    let per_service = (routes / services.max(1)).max(1);
    let mut out = String::with_capacity(services * (300 + per_service * 120));
    for s in 0..services {
        let (a, b) = (10_000 + (s * 2) % 50_000, 10_001 + (s * 2) % 50_000);
        let _ = write!(
            out,
            "service svc-{s} {{\n  port 80 http\n  endpoint 127.0.0.1:{a} {{ version = \"v1\" }}\n  \
             endpoint 127.0.0.1:{b} {{ version = \"v2\" }}\n  subset v1 {{ version = \"v1\" }}\n  \
             subset v2 {{ version = \"v2\" }}\n}}\nroute svc-{s} {{\n"
        );
        for r in 0..per_service {
            let _ = write!(
                out,
                "  rule r{r} {{\n    match path prefix \"/p{r}/\" and header \"x-tenant\" = \"t{r}\"\n    \
                 match path exact \"/p{r}/x\"\n    to svc-{s}/v1 weight 90\n    to svc-{s}/v2 weight 10\n  }}\n"
            );
        }
        out.push_str("}\n");
    }
    out
}

//! mesh-demo: a local demo mesh end to end. Two versions of an upstream, a config with a 90/10
//! canary split and a header match compiled by meshc, a meshd sidecar, and meshload through it.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use tools::harness::{self, Sidecar};
use tools::load::{self, parse_duration, Config, Rate, Report, Target};
use tools::upstream::Upstream;

/// Run a local Ringmesh demo: upstreams, meshc, meshd, and a load run with its latency table.
#[derive(Debug, Parser)]
#[command(name = "mesh-demo")]
struct Args {
    /// Requests per second for the load runs.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Length of each load run (e.g. 5s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Worker cores for meshd (default: all).
    #[arg(long)]
    cores: Option<usize>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    harness::ensure_built().context("preparing meshc and meshd")?;
    let dir = std::env::temp_dir().join(format!("ringmesh-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    step("1", "upstreams: two versions of `reviews`");
    let v1 = Upstream::start("v1")?;
    let v2 = Upstream::start("v2")?;
    println!(
        "   reviews v1 at {}, reviews v2 at {}",
        v1.addr(),
        v2.addr()
    );

    step(
        "2",
        "config: 90/10 canary split, header `x-canary: true` pinned to v2",
    );
    let config_path = dir.join("reviews.mesh");
    let config = demo_config(v1.addr(), v2.addr());
    std::fs::write(&config_path, &config)?;
    for line in config.trim().lines() {
        println!("   | {line}");
    }

    step("3", "meshc compile");
    let snapshot = dir.join("mesh.snap");
    let output = harness::compile(&[&config_path], &snapshot)?;
    print!("   {}", String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        bail!("meshc failed");
    }

    step("4", "meshd: the sidecar");
    let mut meshd_args = vec!["--outbound", "127.0.0.1:0", "--admin", "127.0.0.1:0"];
    let cores = args.cores.map(|c| c.to_string());
    if let Some(cores) = &cores {
        meshd_args.extend(["--cores", cores.as_str()]);
    }
    let meshd = Sidecar::start(&snapshot, &meshd_args)?;
    println!(
        "   outbound {} · admin {} · io {} · snapshot {}…",
        meshd.outbound,
        meshd.admin,
        meshd.io_driver,
        &meshd.snapshot_hash[..12.min(meshd.snapshot_hash.len())]
    );

    step("5", "load through the sidecar (Host: reviews)");
    let through = load_run(meshd.outbound, &args, &[])?;
    print_report(&through);
    let v2_share = share(&through, "v2");
    println!(
        "   observed split: v1 {:.1}% · v2 {:.1}% (configured 90/10)",
        share(&through, "v1"),
        v2_share
    );

    step("6", "header match: x-canary: true");
    let canary = load_run(meshd.outbound, &args, &[("x-canary", "true")])?;
    println!(
        "   {} responses, {:.1}% from v2 (configured 100%), p99 {:.3} ms",
        canary.responses,
        share(&canary, "v2"),
        canary.latency_ms.p99
    );

    step(
        "7",
        "for comparison: the same load straight to v1, no sidecar",
    );
    let direct = load_run(v1.addr(), &args, &[])?;
    print_report(&direct);
    println!(
        "   sidecar hop added p50 {:+.3} ms, p99 {:+.3} ms (this VM's tails vary 2-7x run to run)",
        through.latency_ms.p50 - direct.latency_ms.p50,
        through.latency_ms.p99 - direct.latency_ms.p99
    );

    step("8", "SIGTERM: meshd drains and exits");
    let status = meshd.terminate()?;
    println!("   meshd exited: {status}");
    let _ = std::fs::remove_dir_all(&dir);
    let errors = through.errors.total() + canary.errors.total() + direct.errors.total();
    if errors > 0 || !status.success() {
        bail!("the demo saw {errors} failed requests");
    }
    if !(5.0..=15.0).contains(&v2_share) {
        bail!("observed v2 share {v2_share:.1}% is far from the configured 10%");
    }
    Ok(())
}

fn step(number: &str, title: &str) {
    println!("\n[{number}] {title}");
}

fn demo_config(v1: SocketAddr, v2: SocketAddr) -> String {
    format!(
        r#"
service reviews {{
  port 9080 http
  endpoint {v1} {{ version = "v1" }}
  endpoint {v2} {{ version = "v2" }}
  subset v1 {{ version = "v1" }}
  subset v2 {{ version = "v2" }}
}}

route reviews {{
  rule canary {{
    match header "x-canary" = "true"
    to reviews/v2
  }}
  rule split {{
    to reviews/v1 weight 90
    to reviews/v2 weight 10
  }}
}}
"#
    )
}

fn load_run(addr: SocketAddr, args: &Args, headers: &[(&str, &str)]) -> anyhow::Result<Report> {
    let target: Target = format!("http://{addr}/").parse()?;
    let mut config = Config::new(target, Rate::PerSecond(args.rate), args.duration);
    config.headers.push(("host".into(), "reviews".into()));
    config
        .headers
        .extend(headers.iter().map(|(n, v)| ((*n).into(), (*v).into())));
    config.tally_header = Some("x-upstream".into());
    let flags: String = headers
        .iter()
        .map(|(n, v)| format!(" -H '{n}: {v}'"))
        .collect();
    println!(
        "   meshload http://{addr}/ -H 'host: reviews'{flags} --rate {} --duration {:?} \
         --tally-header x-upstream",
        args.rate, args.duration
    );
    Ok(load::run(&config)?)
}

fn print_report(report: &Report) {
    for line in report.to_string().lines() {
        println!("   {line}");
    }
}

fn share(report: &Report, value: &str) -> f64 {
    let count = report.tally.get(value).copied().unwrap_or(0);
    if report.responses == 0 {
        0.0
    } else {
        100.0 * count as f64 / report.responses as f64
    }
}

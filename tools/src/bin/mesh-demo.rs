//! mesh-demo: a local demo mesh end to end. A meshca CA and workload certificates, two versions
//! of an upstream each behind its own sidecar (strict mTLS, an ALLOW policy), a config with a
//! 90/10 canary split and a header match compiled by meshc, the caller's sidecar, and meshload
//! through the three.

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

    step("2", "meshca: a CA and one SPIFFE certificate per workload");
    let workloads = [
        ("productpage", PRODUCTPAGE),
        ("reviews-v1", REVIEWS),
        ("reviews-v2", REVIEWS),
    ];
    harness::issue_certificates(&dir, &workloads)?;
    for (workload, id) in workloads {
        println!("   {workload}: {id} (meshca issue --spiffe {id} --out {workload}/)");
    }

    step(
        "3",
        "config: 90/10 canary split, `x-canary: true` pinned to v2, strict mTLS, one ALLOW policy",
    );
    // Each reviews version has its own sidecar (inbound, strict mTLS); their inbound addresses
    // are the service's endpoints, so they start first, from a snapshot compiled without them.
    let compile = |name: &str, config: &str| -> anyhow::Result<std::path::PathBuf> {
        let path = dir.join(format!("{name}.mesh"));
        std::fs::write(&path, config)?;
        let snapshot = dir.join(format!("{name}.snap"));
        let output = harness::compile(&[&path], &snapshot)?;
        if !output.status.success() {
            bail!("meshc failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(snapshot)
    };
    let placeholder: SocketAddr = ([127, 0, 0, 1], 9).into();
    let servers_snapshot = compile(
        "servers",
        &demo_config(placeholder, placeholder, v1.addr(), v2.addr()),
    )?;
    let cores = args.cores.map(|c| c.to_string());
    let start = |snapshot: &std::path::Path, workload: &str, cores: Option<&str>| {
        let certs = dir.join(workload);
        let certs = certs.to_str().context("a UTF-8 temp dir")?.to_owned();
        let mut meshd_args = vec!["--workload", workload, "--certs", &certs, "--cores"];
        meshd_args.push(cores.unwrap_or("1"));
        Sidecar::start(snapshot, &meshd_args).context("starting meshd")
    };
    let server_v1 = start(&servers_snapshot, "reviews-v1", None)?;
    let server_v2 = start(&servers_snapshot, "reviews-v2", None)?;
    let (e1, e2) = (
        server_v1.inbound.context("an inbound listener")?,
        server_v2.inbound.context("an inbound listener")?,
    );
    let config = demo_config(e1, e2, v1.addr(), v2.addr());
    for line in config.trim().lines() {
        println!("   | {line}");
    }

    step("4", "meshc compile, and three meshd sidecars");
    let snapshot = compile("mesh", &config)?;
    let meshd = start(&snapshot, "productpage", cores.as_deref())?;
    for (name, sidecar) in [
        ("productpage", &meshd),
        ("reviews-v1", &server_v1),
        ("reviews-v2", &server_v2),
    ] {
        println!(
            "   {name}: outbound {} · inbound {} · admin {} · io {}",
            sidecar.outbound,
            sidecar.inbound.map_or("-".to_owned(), |a| a.to_string()),
            sidecar.admin,
            sidecar.io_driver,
        );
    }
    println!(
        "   the application calls productpage's sidecar in plaintext; sidecar to sidecar is \
         mutual TLS with secure naming ({REVIEWS})"
    );

    step(
        "5",
        "load: app -> productpage sidecar -> mTLS -> reviews sidecar -> reviews (Host: reviews)",
    );
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
        "   two sidecar hops with mTLS added p50 {:+.3} ms, p99 {:+.3} ms (this VM's tails vary \
         2-7x run to run)",
        through.latency_ms.p50 - direct.latency_ms.p50,
        through.latency_ms.p99 - direct.latency_ms.p99
    );

    step("8", "SIGTERM: the sidecars drain and exit");
    let status = meshd.terminate()?;
    for server in [server_v1, server_v2] {
        server.terminate()?;
    }
    println!("   productpage's meshd exited: {status}");
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

const PRODUCTPAGE: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";

/// The mesh: `reviews` served by a sidecar per version (endpoints `e1`, `e2`, in front of the
/// applications `v1`, `v2`), called by `productpage`.
fn demo_config(e1: SocketAddr, e2: SocketAddr, v1: SocketAddr, v2: SocketAddr) -> String {
    format!(
        r#"
service reviews {{
  port 9080 http
  endpoint {e1} {{ version = "v1" }}
  endpoint {e2} {{ version = "v2" }}
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

workload productpage {{
  identity "{PRODUCTPAGE}"
  outbound reviews
}}
workload reviews-v1 {{
  identity "{REVIEWS}"
  serves reviews
  inbound 9080 http -> {v1} mtls strict
}}
workload reviews-v2 {{
  identity "{REVIEWS}"
  serves reviews
  inbound 9080 http -> {v2} mtls strict
}}

authorization productpage-only {{
  workloads reviews-v1, reviews-v2
  rule {{
    from {{ principals "cluster.local/ns/default/sa/productpage" }}
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

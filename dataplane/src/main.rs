//! meshd: serve a compiled Ringmesh snapshot as a sidecar.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use dataplane::control::{self, Options};
use dataplane::export::collector::Collector;
use dataplane::export::writer::Destination;
use dataplane::intercept::command::IptablesArgs;
use dataplane::intercept::{socket, Marks};
use dataplane::logging::{self, LogFormat};
use dataplane::percore::Settings;
use dataplane::worker::IoDriver;

/// The Ringmesh sidecar: routes plain HTTP from the local application across the mesh.
#[derive(Debug, Parser)]
#[command(
    name = "meshd",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Snapshot file written by `meshc compile`.
    #[arg(long, required = true)]
    snapshot: Option<PathBuf>,
    /// Workload to serve, by name (`NAMESPACE/NAME` when the name is used in several
    /// namespaces); without it every service is served outbound and there is no inbound.
    #[arg(long)]
    workload: Option<String>,
    /// The workload's certificates as `meshca issue` writes them (cert.pem, key.pem,
    /// bundle.pem); reloaded when they change. Mutual TLS with them: inbound on ports not
    /// `disable`, outbound to services whose servers have identities.
    #[arg(long)]
    certs: Option<PathBuf>,
    /// A `meshca serve` address: renew the certificates in --certs at half their lifetime
    /// (and obtain the first ones with --ca-token-file when the directory has none).
    #[arg(long, requires = "certs")]
    ca: Option<SocketAddr>,
    /// A file holding a one-time bootstrap token from `meshca token`.
    #[arg(long, requires = "ca")]
    ca_token_file: Option<PathBuf>,
    /// The trust bundle to verify meshca with while --certs has none yet.
    #[arg(long, requires = "ca")]
    ca_bundle: Option<PathBuf>,
    /// Outbound listener (the local application sends here).
    #[arg(long, default_value = "127.0.0.1:15001")]
    outbound: SocketAddr,
    /// Inbound listener (the mesh sends here; only with --workload).
    #[arg(long, default_value = "0.0.0.0:15006")]
    inbound: SocketAddr,
    /// Admin listener: /ready, /healthz, /config, /clusters, /certs, /metrics (also
    /// /stats/prometheus), /logging, POST /reload, POST /drain.
    #[arg(long, default_value = "127.0.0.1:15000")]
    admin: SocketAddr,
    /// Allow an --admin address other hosts can reach (its POST /drain and /reload take no
    /// credentials).
    #[arg(long)]
    admin_allow_remote: bool,
    /// Also serve /metrics and /stats/prometheus, read-only, on this address (which may be one
    /// other hosts reach, as a Prometheus elsewhere scrapes it), e.g. 0.0.0.0:15090.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Worker threads, one per core (at least 1); default: every core this process may run
    /// on.
    #[arg(long, value_parser = parse_cores)]
    cores: Option<usize>,
    /// IO driver for the workers.
    #[arg(long, value_enum, default_value = "auto")]
    io_driver: IoDriver,
    /// Upstream TCP connect timeout (e.g. 500ms, 5s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// How long to wait for an upstream's response head.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    upstream_timeout: Duration,
    /// How long requests in flight may finish after SIGTERM.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// How long a request head, once started, may take to arrive (then 408).
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    request_head_timeout: Duration,
    /// Most downstream connections one worker holds; more get 503 and are closed.
    #[arg(long, default_value_t = 10_000)]
    max_connections_per_core: usize,
    /// How often to check the snapshot file for changes and reload (0s disables; SIGHUP and
    /// admin POST /reload always work).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    watch_interval: Duration,
    /// How long a keep-alive connection may idle, or a body transfer stall, before closing.
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration)]
    idle_timeout: Duration,
    /// Where access log lines go when the snapshot's telemetry turns the log on (default:
    /// stdout). A file is appended to, and reopened on SIGUSR1 for log rotation.
    #[arg(long, value_name = "PATH")]
    access_log: Option<PathBuf>,
    /// Trace collector for the spans of sampled requests: http://HOST:PORT/api/v2/spans (Zipkin
    /// v2) or http://HOST:PORT/v1/traces (OTLP/HTTP JSON). Without it nothing is traced and
    /// trace headers pass unchanged.
    #[arg(long, value_name = "URL")]
    trace_collector: Option<String>,
    /// meshd's own log level: off, error, warn, info, debug or trace (admin POST
    /// /logging?level=... changes it at run time).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// meshd's own log lines on stderr: text, or one JSON object per line.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Largest request body (bytes, a chunked body with its framing) kept so a rule's retries
    /// can replay it; requests with larger bodies are streamed and not retried.
    #[arg(long, default_value_t = dataplane::retry::DEFAULT_RETRY_BUFFER)]
    retry_buffer: usize,
    /// Largest message (bytes) a gRPC call may send; a call that sends a larger one ends
    /// RESOURCE_EXHAUSTED before the message reaches its server. Without it, only the
    /// server's own limit applies (gRPC's default is 4194304).
    #[arg(long, value_name = "BYTES")]
    grpc_max_message: Option<u32>,
}

/// What meshd does besides serving.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Install the rules that capture this network namespace's TCP for meshd (as
    /// istio-iptables does); needs root (CAP_NET_ADMIN).
    Iptables(IptablesArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.command {
        Some(Command::Iptables(iptables)) => logging::init(&args.log_level, args.log_format)
            .map_err(anyhow::Error::msg)
            .and_then(|_| Ok(iptables.run()?)),
        None => run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let Some(snapshot) = args.snapshot.clone() else {
        anyhow::bail!("--snapshot is required");
    };
    let log_level = logging::init(&args.log_level, args.log_format)
        .map_err(|e| anyhow::anyhow!("--log-level: {e}"))?;
    dataplane::admin::check_address(args.admin, args.admin_allow_remote)
        .map_err(anyhow::Error::msg)?;
    let service_name = args.workload.as_deref().unwrap_or("meshd");
    let trace_collector = args
        .trace_collector
        .as_deref()
        .map(|url| Collector::parse(url, service_name))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--trace-collector {e}"))?;
    let routes = control::load(
        &snapshot,
        args.workload.as_deref(),
        trace_collector.as_ref().map(|c| c.protocol),
    )
    .map_err(anyhow::Error::msg)?;
    let marks = socket::may_mark(Marks::default().mesh).then(Marks::default);
    if marks.is_none() {
        tracing::warn!(
            "meshd may not mark its sockets (that needs CAP_NET_ADMIN): under `meshd iptables` \
             capture it closes captured outbound connections rather than capture its own again"
        );
    }
    let renewal = match (&args.certs, args.ca) {
        (Some(_), Some(_)) if args.watch_interval.is_zero() => {
            anyhow::bail!(
                "--ca renews into --certs, which needs the file watcher: drop --watch-interval 0s"
            )
        }
        (Some(dir), Some(ca)) => {
            let renewal = dataplane::renew::Renewal {
                dir: dir.clone(),
                ca,
                token_file: args.ca_token_file.clone(),
                bundle: args.ca_bundle.clone(),
                mark: marks.map_or(0, |m| m.mesh),
            };
            renewal.bootstrap()?;
            Some(renewal)
        }
        _ => None,
    };
    let certs = match &args.certs {
        Some(dir) => {
            let identity = dataplane::tls::Identity::load(dir)?;
            control::check_identity(&identity, &routes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            Some((dir.clone(), Arc::new(identity)))
        }
        None => None,
    };
    control::check_tls_needs(&routes, certs.is_some()).map_err(anyhow::Error::msg)?;
    if let Some(renewal) = renewal {
        renewal.spawn()?;
    }
    control::run(Options {
        routes: Arc::new(routes),
        snapshot,
        workload: args.workload.clone(),
        watch_interval: args.watch_interval,
        outbound: args.outbound,
        inbound: args.workload.is_some().then_some(args.inbound),
        admin: args.admin,
        metrics: args.metrics,
        cores: args.cores,
        driver: args.io_driver,
        settings: Settings {
            connect_timeout: args.connect_timeout,
            upstream_timeout: args.upstream_timeout,
            drain_timeout: args.drain_timeout,
            head_timeout: args.request_head_timeout,
            idle_timeout: args.idle_timeout,
            max_connections_per_core: args.max_connections_per_core.max(1),
            retry_buffer: args.retry_buffer,
            grpc_max_message: args.grpc_max_message,
            marks,
        },
        certs,
        access_log: args
            .access_log
            .map_or(Destination::Stdout, Destination::File),
        trace_collector,
        log_level: Some(log_level),
    })
}

/// [`parse_duration`], refusing zero (a timeout that would end every connection at once).
fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!("{text:?}: must be more than zero")),
        duration => Ok(duration),
    }
}

/// Parses `250ms`, `5s`, `2m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected e.g. 500ms, 5s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{text:?}: unit must be ms, s or m")),
    }
}

/// `--cores`: a count of worker threads, at least one.
fn parse_cores(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

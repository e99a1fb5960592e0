//! gRPC through two sidecars with Python's grpcio on both ends (`grpc/peer.py`): unary, server-,
//! client- and bidirectional streaming calls (the last in lockstep, so only full duplex serves
//! it), and an error status, each carried in HTTP/2 trailers from the application's port
//! (declared `grpc`, so the callee's sidecar calls it with h2c) back to the client.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use ringmesh_tests::*;

pub(crate) const GRPC_PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/grpc/peer.py");

/// The gRPC server of `peer.py` on `port`, killed on drop.
pub(crate) struct GrpcServer(Child);

impl GrpcServer {
    pub(crate) fn start(command: Command) -> Self {
        let mut command = command;
        let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "listening", "the gRPC server did not start");
        Self(child)
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Python's grpcio server (`peer.py serve`) on a free port, and one sidecar (`args` added)
/// whose snapshot has `head` (declarations, or nothing) and the service `echo`, port 50051
/// `grpc`, served by it.
struct EchoCalls {
    _server: GrpcServer,
    scratch: Scratch,
    caller: Sidecar,
}

impl EchoCalls {
    fn start(head: &str, args: &[&str]) -> Self {
        Self::start_in(Scratch::new(), head, args)
    }

    /// [`Self::start`] with its snapshot in `scratch` (where `args` may name files).
    fn start_in(scratch: Scratch, head: &str, args: &[&str]) -> Self {
        let app = free_port();
        let mut server = Command::new("python3");
        server.args([GRPC_PEER, "serve", &app.port().to_string()]);
        let server = GrpcServer::start(server);
        let config = format!("{head}\nservice echo {{ port 50051 grpc endpoint {app} }}");
        let snapshot = compile(&scratch, &config);
        let caller = Sidecar::start(&snapshot, args).unwrap();
        Self {
            _server: server,
            scratch,
            caller,
        }
    }

    /// `peer.py COMMAND TARGET echo:50051 EXTRA...` through the sidecar: its stdout, and its
    /// stdout and stderr together for messages.
    fn peer(&self, command: &str, extra: &[&str]) -> (String, String) {
        let target = self.caller.outbound.to_string();
        let called = Command::new("python3")
            .args([GRPC_PEER, command, &target, "echo:50051"])
            .args(extra)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&called.stdout).into_owned();
        let err = String::from_utf8_lossy(&called.stderr);
        let both = format!("{said}{err}");
        (said, both)
    }
}

fn grpc_calls_go_through_both_sidecars(driver: &str) {
    let app = free_port();
    let mut server = Command::new("python3");
    server.args([GRPC_PEER, "serve", &app.port().to_string()]);
    let _server = GrpcServer::start(server);
    let callee_inbound = free_port();
    let config = format!(
        "service echo {{ port 50051 grpc endpoint {callee_inbound} }}\n\
         workload echo {{ serves echo inbound 50051 grpc -> {app} mtls disable }}"
    );
    let scratch = Scratch::new();
    let snapshot = compile(&scratch, &config);
    let inbound = callee_inbound.to_string();
    let callee_args = [
        "--workload",
        "echo",
        "--inbound",
        &inbound,
        "--io-driver",
        driver,
    ];
    let _callee = Sidecar::start(&snapshot, &callee_args).unwrap();
    let caller = Sidecar::start(&snapshot, &["--io-driver", driver]).unwrap();

    let called = Command::new("python3")
        .args([
            GRPC_PEER,
            "call",
            &caller.outbound.to_string(),
            "echo:50051",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&called.stdout);
    let err = String::from_utf8_lossy(&called.stderr);
    assert!(called.status.success(), "{driver}: {said}{err}");
    assert_eq!(said.lines().last(), Some("ok"), "{driver}: {said}");

    // Each call is counted as gRPC with its status, from the response's trailers (four OK)
    // or its trailers-only head (Fail's UNAVAILABLE).
    let metrics = admin_text(caller.admin, "/metrics");
    let calls = |status: &str| {
        let labels = ["request_protocol=\"grpc\"", status];
        series_total(&metrics, "istio_requests_total{", &labels)
    };
    assert_eq!(
        calls("grpc_response_status=\"0\""),
        4,
        "{driver}: {metrics}"
    );
    assert_eq!(
        calls("grpc_response_status=\"14\""),
        1,
        "{driver}: {metrics}"
    );
}

on_both_drivers!(grpc_calls_go_through_both_sidecars);

/// The sum of the series of `metric` (`name{`) whose labels hold every one of `labels`.
fn series_total(metrics: &str, metric: &str, labels: &[&str]) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(metric) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

/// What a gRPC client sees of a call meshd answers itself: a gRPC error (trailers-only), its
/// status mapped as gRPC maps HTTP's (an injected 503 is UNAVAILABLE, a denial
/// PERMISSION_DENIED), with meshd's reason as the message; the access log and the metrics
/// carry the status too.
fn meshd_replies_to_grpc_calls_with_grpc_errors(driver: &str) {
    let config = "telemetry { access_log json }\n\
                  service echo { port 50051 grpc endpoint 127.0.0.1:9 }\n\
                  route echo { rule down { to echo fault { abort 503 } } }";
    let scratch = Scratch::new();
    let snapshot = compile(&scratch, config);
    let log = scratch.path().join("access.log");
    let args = ["--io-driver", driver, "--access-log", log.to_str().unwrap()];
    let caller = Sidecar::start(&snapshot, &args).unwrap();
    let target = caller.outbound.to_string();
    let called = Command::new("python3")
        .args([GRPC_PEER, "status", &target, "echo:50051"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&called.stdout);
    assert_eq!(
        said.trim(),
        "UNAVAILABLE fault filter abort: rule echo/down injected an abort",
        "{driver}: {}",
        String::from_utf8_lossy(&called.stderr)
    );
    let metrics = admin_text(caller.admin, "/metrics");
    let labels = [
        "request_protocol=\"grpc\"",
        "response_code=\"200\"",
        "response_flags=\"FI\"",
        "grpc_response_status=\"14\"",
    ];
    assert_eq!(
        series_total(&metrics, "istio_requests_total{", &labels),
        1,
        "{metrics}"
    );
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(|| logged().contains("\"grpc_status\":14"));
}

on_both_drivers!(meshd_replies_to_grpc_calls_with_grpc_errors);

/// An Istio VirtualService retrying gRPC calls on `unavailable` (a POST, retried as Envoy
/// retries whatever the method): a call its server first answers UNAVAILABLE (trailers-only)
/// succeeds on the retry, and one that always is ends UNAVAILABLE after the attempts, `URX`.
/// Streaming calls on the route still stream both ways.
fn an_istio_retry_on_unavailable_retries_the_call(driver: &str) {
    let app = free_port();
    let mut server = Command::new("python3");
    server.args([GRPC_PEER, "serve", &app.port().to_string()]);
    let _server = GrpcServer::start(server);
    let yaml = format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo, namespace: default}}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 50051, name: grpc, protocol: GRPC}}]
  endpoints: [{{address: {ip}, ports: {{grpc: {port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo, namespace: default}}
spec:
  hosts: [echo]
  http:
  - route: [{{destination: {{host: echo}}}}]
    retries: {{attempts: 2, retryOn: unavailable}}
"#,
        ip = app.ip(),
        port = app.port()
    );
    let scratch = Scratch::new();
    let input = scratch.write("echo.yaml", &yaml);
    let snapshot = scratch.path().join("mesh.snap");
    let compiled = harness::compile(&[&input], &snapshot).unwrap();
    let stderr = String::from_utf8_lossy(&compiled.stderr);
    assert!(
        compiled.status.success() && !stderr.contains("W0200"),
        "{stderr}"
    );
    let caller = Sidecar::start(&snapshot, &["--io-driver", driver]).unwrap();
    let target = caller.outbound.to_string();
    let call = |method: &str| {
        let called = Command::new("python3")
            .args([GRPC_PEER, "status", &target, "echo:50051", method])
            .output()
            .unwrap();
        String::from_utf8_lossy(&called.stdout).trim().to_owned()
    };
    assert_eq!(call("Flaky"), "OK echo:hi", "{driver}");
    assert_eq!(call("Fail"), "UNAVAILABLE try elsewhere", "{driver}");
    let metrics = admin_text(caller.admin, "/metrics");
    let ok = ["grpc_response_status=\"0\"", "response_flags=\"-\""];
    assert_eq!(
        series_total(&metrics, "istio_requests_total{", &ok),
        1,
        "{metrics}"
    );
    let exhausted = ["grpc_response_status=\"14\"", "response_flags=\"URX\""];
    assert_eq!(
        series_total(&metrics, "istio_requests_total{", &exhausted),
        1,
        "{metrics}"
    );
    // Every kind of call on the same route, a bidirectional one in lockstep among them: a
    // streamed body is kept for a retry as it goes, never waited for before the first try.
    let called = Command::new("python3")
        .args([GRPC_PEER, "call", &target, "echo:50051"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&called.stdout);
    let err = String::from_utf8_lossy(&called.stderr);
    assert_eq!(said.lines().last(), Some("ok"), "{driver}: {said}{err}");
}

on_both_drivers!(an_istio_retry_on_unavailable_retries_the_call);

/// A client stream longer than the sidecar's upstream timeout (1 s here) whose server answers
/// at its end: the timeout counts from the end of the streamed body, as Envoy's does from the
/// end of the request, so the call succeeds.
fn the_upstream_timeout_counts_from_the_end_of_a_streamed_body(driver: &str) {
    let calls = EchoCalls::start("", &["--io-driver", driver, "--upstream-timeout", "1s"]);
    let (said, both) = calls.peer("slow", &["0.6"]);
    assert_eq!(said.trim(), "a+b+c", "{driver}: {both}");
}

on_both_drivers!(the_upstream_timeout_counts_from_the_end_of_a_streamed_body);

/// A call's own deadline (`grpc-timeout`, 300 ms here, sent by curl, which does not enforce
/// it itself) bounds it at the sidecar as Istio's do: a server that takes 3 s is answered by
/// meshd with DEADLINE_EXCEEDED, flag `UT`, counted with its gRPC status.
fn a_calls_grpc_timeout_is_its_deadline_at_the_sidecar(driver: &str) {
    let EchoCalls {
        scratch, caller, ..
    } = &EchoCalls::start("", &["--io-driver", driver]);
    // An empty message: its flag byte and its length.
    let message = scratch.write("message", "\0\0\0\0\0");
    let url = format!("http://{}/ringmesh.test.Echo/Slow", caller.outbound);
    let curl = Command::new("curl")
        .args([
            "-s",
            "-m",
            "10",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-D",
            "-",
        ])
        .args([
            "-H",
            "host: echo:50051",
            "-H",
            "content-type: application/grpc",
        ])
        .args(["-H", "te: trailers", "-H", "grpc-timeout: 300m"])
        .arg("--data-binary")
        .arg(format!("@{}", message.display()))
        .arg(&url)
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&curl.stdout).to_ascii_lowercase();
    assert!(
        head.starts_with("http/2 200")
            && head.contains("grpc-status: 4\r\n")
            && head.contains("x-ringmesh-flag: ut\r\n"),
        "{driver}: {head}"
    );
    let metrics = admin_text(caller.admin, "/metrics");
    let labels = ["grpc_response_status=\"4\"", "response_flags=\"UT\""];
    assert_eq!(
        series_total(&metrics, "istio_requests_total{", &labels),
        1,
        "{metrics}"
    );
}

on_both_drivers!(a_calls_grpc_timeout_is_its_deadline_at_the_sidecar);

/// A call that sends a message over `--grpc-max-message` (1 KiB here) ends RESOURCE_EXHAUSTED
/// at the caller's sidecar, as at a server over its own limit, and the message never reaches
/// the server: trailers-only with meshd's reason when nothing was answered yet, a reset that
/// gRPC reads the same way once the response has started (a bidirectional call). Each is
/// counted, and the sidecar serves on.
fn a_message_over_the_limit_ends_the_call_resource_exhausted(driver: &str) {
    let calls = EchoCalls::start("", &["--io-driver", driver, "--grpc-max-message", "1024"]);
    let (said, both) = calls.peer("big", &["2000"]);
    let lines: Vec<&str> = said.lines().collect();
    let refused = "RESOURCE_EXHAUSTED a gRPC message of 2000 bytes is over the limit of 1024 \
                   (meshd --grpc-max-message)";
    assert_eq!(lines.first().copied(), Some(refused), "{driver}: {both}");
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("RESOURCE_EXHAUSTED"))
            && lines.len() == 3,
        "{driver}: {both}"
    );
    let metrics = admin_text(calls.caller.admin, "/metrics");
    assert!(
        metrics.contains("ringmesh_requests_refused_total{reason=\"grpc_message_too_large\"} 2"),
        "{driver}: {metrics}"
    );
    // A message within the limit still goes through.
    assert_eq!(calls.peer("status", &[]).0.trim(), "OK echo:hi");
}

on_both_drivers!(a_message_over_the_limit_ends_the_call_resource_exhausted);

/// A bidirectional call whose client says nothing for longer than the idle timeout (1 s here)
/// while its server streams replies: the two directions share one idle clock, as Envoy's
/// stream idle timeout counts frames either way, so the call is not idle and goes on.
fn a_quiet_client_is_not_idle_while_its_server_talks(driver: &str) {
    let calls = EchoCalls::start("", &["--io-driver", driver, "--idle-timeout", "1s"]);
    let (said, both) = calls.peer("quiet", &[]);
    assert_eq!(said.lines().last(), Some("ok"), "{driver}: {both}");
}

on_both_drivers!(a_quiet_client_is_not_idle_while_its_server_talks);

/// A call whose server answers before its client has sent everything: the request's record
/// counts the body bytes that went, though its stream had not ended when the call did.
fn a_full_duplex_body_is_counted_as_it_streams(driver: &str) {
    let scratch = Scratch::new();
    let log = scratch.path().join("access.log");
    let args = ["--io-driver", driver, "--access-log", log.to_str().unwrap()];
    let calls = EchoCalls::start_in(scratch, "telemetry { access_log json }", &args);
    let (said, both) = calls.peer("slow", &["1", "First"]);
    assert_eq!(said.trim(), "first:a", "{driver}: {both}");
    let line = || -> Option<serde_json::Value> {
        let logged = std::fs::read_to_string(&log).ok()?;
        serde_json::from_str(logged.lines().next()?).ok()
    };
    wait_until(|| line().is_some());
    let line = line().unwrap();
    // The first message: its flag, its length and one byte, in a chunk of the HTTP/1.1 path.
    let received = line["bytes_received"].as_u64().unwrap_or(0);
    assert!(received >= 6, "{driver}: {line}");
}

on_both_drivers!(a_full_duplex_body_is_counted_as_it_streams);

//! An unmodified gRPC client and server (Python's grpcio) on two hosts, each with a sidecar
//! under capture and mutual TLS between them: the client calls the service by name, and the
//! callee's sidecar sees the caller's identity. Between the sidecars the calls are HTTP/2
//! streams over one mutual TLS connection, so a bidirectional call stays full duplex. The
//! caller's sidecar retries a call its server answers UNAVAILABLE, and a call's deadline
//! reaches the server through both sidecars. h2load drives the same pair in h2c.

use super::*;
use crate::grpc::{GrpcServer, GRPC_PEER};

#[test]
fn grpc_between_captured_hosts_goes_over_mutual_tls() {
    let network = Network::new(2);
    let (client, server) = (&network.hosts[0], &network.hosts[1]);
    let mut app = server.command("python3");
    app.args([GRPC_PEER, "serve", "50051"]);
    let _app = GrpcServer::start(app);
    let _web = upstream(server, "127.0.0.1:9080", "web");
    let scratch = Scratch::new();
    let caller_id = "spiffe://cluster.local/ns/default/sa/frontend";
    let callee_id = "spiffe://cluster.local/ns/default/sa/echo";
    harness::issue_certificates(
        scratch.path(),
        &[("frontend", caller_id), ("echo", callee_id)],
    )
    .unwrap();
    let config = format!(
        "service echo {{ port 50051 grpc endpoint {0}:50051 address 198.18.1.30 }}\n\
         service web {{ port 9080 http2 endpoint {0}:9080 address 198.18.1.31 }}\n\
         route echo {{ rule all {{ to echo retries {{ attempts 2 on unavailable non_idempotent }} }} }}\n\
         workload frontend {{ identity \"{caller_id}\" outbound echo, web }}\n\
         workload echo {{ identity \"{callee_id}\" serves echo, web\n\
           inbound 50051 grpc -> 127.0.0.1:50051 mtls strict\n\
           inbound 9080 http -> 127.0.0.1:9080 mtls strict }}",
        server.addr
    );
    let snapshot = compile(&scratch, &config);
    let caller = (client, "frontend", "epoll");
    let _sidecars = captured_pair(&snapshot, &scratch, caller, (server, "echo", "uring"));
    client.set_hosts(&[("198.18.1.30", "echo"), ("198.18.1.31", "web")]);

    // By the service's address, and by its name from the host's resolver.
    for target in ["198.18.1.30:50051", "echo:50051"] {
        let called = client.run("python3", &[GRPC_PEER, "call", target, "echo:50051"]);
        assert_eq!(checked(&called, target).lines().last(), Some("ok"));
    }
    let (_, metrics) = curl(server, "http://127.0.0.1:15000/metrics", &[]);
    let principal = format!("source_principal=\"{caller_id}\"");
    let calls: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{") && l.contains(&principal))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    // Five calls each time, and each Fail (UNAVAILABLE) tried three times: the route retries.
    assert_eq!(calls, 14, "{metrics}");

    // The server's first answer to Flaky is UNAVAILABLE; the caller's sidecar retries it.
    let status = |method: &str, deadline: &str| {
        let args = [
            GRPC_PEER,
            "status",
            "echo:50051",
            "echo:50051",
            method,
            deadline,
        ];
        checked(&client.run("python3", &args), method)
            .trim()
            .to_owned()
    };
    assert_eq!(status("Flaky", "10"), "OK echo:hi");
    let (_, metrics) = curl(client, "http://127.0.0.1:15000/metrics", &[]);
    assert!(
        metrics.contains("\nringmesh_retries_total 5\n"),
        "{metrics}"
    );
    // The client's deadline travels as grpc-timeout through both sidecars to the server,
    // and a call that outlives it ends DEADLINE_EXCEEDED.
    let remaining = status("Remaining", "5");
    let seconds = remaining
        .strip_prefix("OK ")
        .and_then(|s| s.parse::<f64>().ok());
    assert!(seconds.is_some_and(|s| s > 0.0 && s <= 5.0), "{remaining}");
    let late = status("Slow", "0.5");
    assert!(late.starts_with("DEADLINE_EXCEEDED"), "{late}");
    // Every call was an HTTP/2 stream between the sidecars: each mutual TLS connection the
    // callee accepted negotiated h2, and the calls shared them.
    let (_, certs) = curl(server, "http://127.0.0.1:15000/certs", &[]);
    let certs: serde_json::Value = serde_json::from_str(&certs).unwrap();
    let (h2, handshakes) = (
        &certs["tls"]["inbound_h2_connections"],
        &certs["tls"]["inbound_handshakes"],
    );
    assert!(h2.as_u64().is_some_and(|n| (1..10).contains(&n)), "{certs}");
    assert_eq!(h2, handshakes, "{certs}");

    // An HTTP/2 client with prior knowledge (h2c), captured by the caller's host, many
    // streams at once on each connection.
    let args = ["-n", "1000", "-c", "2", "-m", "10", "http://web:9080/"];
    let report = checked(&client.run("h2load", &args), "h2load");
    assert!(
        report.contains("1000 succeeded, 0 failed") && report.contains("status codes: 1000 2xx"),
        "{report}"
    );
    let destination = requests_reported(server, "destination");
    assert_eq!(destination, 14 + 2 + 1 + 1 + 1000, "callee");
}

//! An unmodified gRPC client and server (Python's grpcio) on two hosts, each with a sidecar
//! under capture and mutual TLS between them: the client calls the service by name, and the
//! callee's sidecar sees the caller's identity. Between the sidecars the calls are HTTP/2
//! streams over one mutual TLS connection, so a bidirectional call stays full duplex.

use super::*;
use crate::grpc::{GrpcServer, GRPC_PEER};

#[test]
fn grpc_between_captured_hosts_goes_over_mutual_tls() {
    let network = Network::new(2);
    let (client, server) = (&network.hosts[0], &network.hosts[1]);
    let mut app = server.command("python3");
    app.args([GRPC_PEER, "serve", "50051"]);
    let _app = GrpcServer::start(app);
    let scratch = Scratch::new();
    let caller_id = "spiffe://cluster.local/ns/default/sa/frontend";
    let callee_id = "spiffe://cluster.local/ns/default/sa/echo";
    harness::issue_certificates(
        scratch.path(),
        &[("frontend", caller_id), ("echo", callee_id)],
    )
    .unwrap();
    let config = format!(
        "service echo {{ port 50051 grpc endpoint {}:50051 address 198.18.1.30 }}\n\
         workload frontend {{ identity \"{caller_id}\" outbound echo }}\n\
         workload echo {{ identity \"{callee_id}\" serves echo\n\
           inbound 50051 grpc -> 127.0.0.1:50051 mtls strict }}",
        server.addr
    );
    let snapshot = compile(&scratch, &config);
    let caller = (client, "frontend", "epoll");
    let _sidecars = captured_pair(&snapshot, &scratch, caller, (server, "echo", "uring"));
    client.set_hosts(&[("198.18.1.30", "echo")]);

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
    assert_eq!(calls, 10, "{metrics}");
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
}

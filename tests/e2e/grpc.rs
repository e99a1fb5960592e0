//! gRPC through two sidecars with Python's grpcio on both ends (`grpc/peer.py`): unary, server-
//! and client-streaming calls, and an error status, each carried in HTTP/2 trailers from the
//! application's port (declared `grpc`, so the callee's sidecar calls it with h2c) back to the
//! client.

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
}

on_both_drivers!(grpc_calls_go_through_both_sidecars);

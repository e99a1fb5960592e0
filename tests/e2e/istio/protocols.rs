//! A `GRPC` ServiceEntry port is served whole (bidirectional streaming included), so it
//! compiles without a warning and is not listed under `/config`'s `not_enforced`; every Istio
//! field meshc accepted without serving (W0200, W0203, ...) is listed there.

use super::*;

const GRPC_API: &str = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.default.svc.cluster.local]
  addresses: [198.18.0.10]
  subjectAltNames: [spiffe://cluster.local/ns/default/sa/api]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9000, name: grpc-api, protocol: GRPC}
  endpoints:
  - address: 127.0.0.1
"#;

fn a_grpc_port_is_served_and_an_unserved_field_is_listed(driver: &str) {
    let scratch = Scratch::new();
    let input = scratch.write("api.yaml", GRPC_API);
    let snapshot = scratch.path().join("mesh.snap");
    let output = harness::compile(&[&input], &snapshot).unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("W0114"), "{stderr}");
    let meshd = Sidecar::start(&snapshot, &["--cores", "1", "--io-driver", driver]).unwrap();
    let config = admin_json(meshd.admin, "/config");
    let listed = config["not_enforced"].to_string();
    assert!(!listed.contains("port 9000"), "{listed}");
    let ignored = format!(
        "{}:7:20: W0200 `spec.subjectAltNames` is not supported yet, ignored",
        input.display()
    );
    assert!(
        listed.contains("config meshc accepted without serving it") && listed.contains(&ignored),
        "{listed}"
    );
    // The ServiceEntry's `addresses` are served (a captured connection to one routes to it).
    assert!(!listed.contains("spec.addresses"), "{listed}");
}

on_both_drivers!(a_grpc_port_is_served_and_an_unserved_field_is_listed);

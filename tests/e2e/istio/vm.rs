//! A service on a VM, as Istio models one: a ServiceEntry selecting a WorkloadEntry by labels.
//! The WorkloadEntry's sidecar serves it with the identity of its `serviceAccount`, enforces
//! the PeerAuthentication and AuthorizationPolicy that select it, and its callers reach it
//! over mutual TLS, checking that identity. The VM's address is 127.0.0.2 (its sidecar's
//! inbound listener); its application listens on the VM's loopback, 127.0.0.1, on the same
//! port, as behind Istio's sidecar on a VM.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tools::envoy;

use super::*;

const PRODUCTPAGE: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";

/// The mesh: `reviews` on WorkloadEntry `reviews-vm` at `vm` (its port for `http`), STRICT,
/// GET allowed from productpage only; productpage is WorkloadEntry `productpage-vm`.
fn mesh(vm: SocketAddr) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: 9080, name: http, protocol: HTTP}}
  workloadSelector:
    labels: {{app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews-vm, namespace: default}}
spec:
  address: {ip}
  ports: {{http: {port}}}
  labels: {{app: reviews, version: v1}}
  serviceAccount: reviews
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: productpage-vm, namespace: default}}
spec:
  address: 127.0.0.3
  labels: {{app: productpage}}
  serviceAccount: productpage
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: reviews-strict, namespace: default}}
spec:
  selector:
    matchLabels: {{app: reviews}}
  mtls: {{mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: reviews-viewer, namespace: default}}
spec:
  selector:
    matchLabels: {{app: reviews}}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/default/sa/productpage]
    to:
    - operation:
        methods: [GET]
"#,
        ip = vm.ip(),
        port = vm.port()
    )
}

/// The VM's application on 127.0.0.1:P, and the VM's address 127.0.0.2:P for its sidecar.
fn vm_application() -> (Upstream, SocketAddr) {
    let app = Upstream::start("reviews-vm").unwrap();
    let vm = SocketAddr::from(([127, 0, 0, 2], app.addr().port()));
    (app, vm)
}

/// The sidecar of WorkloadEntry `workload` at `vm` (its inbound listener), with a meshca
/// certificate for service account `account` from `ca`.
fn vm_sidecar(
    (scratch, ca): (&Scratch, &Path),
    (snapshot, driver): (&Path, &str),
    (workload, account): (&str, &str),
    vm: SocketAddr,
) -> Sidecar {
    let certs = scratch.path().join(account);
    issue(
        ca,
        &format!("spiffe://cluster.local/ns/default/sa/{account}"),
        &certs,
    );
    let inbound = vm.to_string();
    let args = [
        "--workload",
        workload,
        "--inbound",
        &inbound,
        "--certs",
        certs.to_str().unwrap(),
    ];
    let log = scratch.path().join(format!("{workload}.log"));
    start_logged(snapshot, driver, &args, &log)
}

/// The caller's sidecar, `productpage-vm`, with its meshca certificate from `ca`.
fn productpage(scratch: &Scratch, ca: &Path, snapshot: &Path, driver: &str) -> Sidecar {
    let certs = scratch.path().join("productpage");
    issue(ca, PRODUCTPAGE, &certs);
    let args = [
        "--workload",
        "productpage-vm",
        "--certs",
        certs.to_str().unwrap(),
    ];
    start_logged(
        snapshot,
        driver,
        &args,
        &scratch.path().join("productpage.log"),
    )
}

/// Sends a plaintext request straight to `addr`: the answer, or `None` when it was refused.
fn plaintext(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = b"GET / HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n";
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) if !response.is_empty() => Some(String::from_utf8_lossy(&response).into_owned()),
        _ => None,
    }
}

fn the_vm_sidecar_enforces_its_policies_and_is_called_over_mtls(driver: &str) {
    let scratch = Scratch::new();
    let ca = new_ca(&scratch, false);
    let (app, vm) = vm_application();
    let snapshot = compile_yaml(&scratch, "mesh", &[("bookinfo-vm.yaml", &mesh(vm))]);
    let reviews = vm_sidecar(
        (&scratch, &ca),
        (&snapshot, driver),
        ("reviews-vm", "reviews"),
        vm,
    );
    let caller = productpage(&scratch, &ca, &snapshot, driver);
    let mut client = Client::connect(caller.outbound).unwrap();

    let allowed = client.get("reviews", "/", &[]).unwrap();
    assert_eq!(
        (allowed.status, allowed.text().as_str()),
        (200, "reviews-vm")
    );
    let tls = admin_json(reviews.admin, "/certs")["tls"].clone();
    assert_eq!(tls["inbound_handshakes"], 1, "{tls}");

    let denied = client.post("reviews", "/", b"x").unwrap();
    assert_eq!(denied.status, 403);
    assert!(
        denied.text().contains("reviews-viewer"),
        "{}",
        denied.text()
    );
    // `meshc explain` predicts both decisions, for the same caller.
    let said = |request| explain_request(&snapshot, Some("productpage-vm"), request, &[]);
    let get = said("GET http://reviews/");
    assert_eq!(get["authz"]["decision"], "allow", "{get}");
    let post = said("POST http://reviews/");
    assert_eq!(post["authz"]["decision"], "deny", "{post}");
    assert_eq!(
        post["authz"]["workloads"][0]["workload"], "reviews-vm",
        "{post}"
    );

    // STRICT: the VM's sidecar refuses plaintext, so nothing reaches the application.
    let before = app.requests();
    assert_eq!(plaintext(vm), None);
    assert_eq!(app.requests(), before);
}

/// Another VM, `ratings-vm`, with its own service and identity.
const RATINGS_VM: &str = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  workloadSelector:
    labels: {app: ratings}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-vm, namespace: default}
spec:
  address: 127.0.0.4
  labels: {app: ratings}
  serviceAccount: ratings
"#;

fn a_vm_presenting_another_identity_fails_secure_naming(driver: &str) {
    let scratch = Scratch::new();
    let ca = new_ca(&scratch, false);
    let (app, vm) = vm_application();
    let files = [
        ("bookinfo-vm.yaml", mesh(vm)),
        ("ratings-vm.yaml", RATINGS_VM.to_owned()),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let snapshot = compile_yaml(&scratch, "mesh", &files);
    // reviews' address answers with ratings' sidecar and certificate.
    let _ratings = vm_sidecar(
        (&scratch, &ca),
        (&snapshot, driver),
        ("ratings-vm", "ratings"),
        vm,
    );
    let caller = productpage(&scratch, &ca, &snapshot, driver);
    let response = Client::connect(caller.outbound)
        .and_then(|mut c| c.get("reviews", "/", &[]))
        .unwrap();
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.header("x-ringmesh-flag"), Some("SN"));
    assert!(response.text().contains(REVIEWS), "{}", response.text());
    assert_eq!(app.requests(), 0);
}

fn an_envoy_sidecar_on_the_vm_is_called_over_mtls(driver: &str) {
    let scratch = Scratch::new();
    let ca = new_ca(&scratch, false);
    let app = Upstream::start("reviews-behind-envoy").unwrap();
    let listen = free_port();
    let snapshot = compile_yaml(&scratch, "mesh", &[("bookinfo-vm.yaml", &mesh(listen))]);
    let envoy_certs = scratch.path().join("envoy");
    issue(&ca, REVIEWS, &envoy_certs);
    // Envoy requires a client certificate from productpage, as Istio's sidecar under STRICT.
    let from_productpage = envoy::Mtls {
        certs: &envoy_certs,
        peer: PRODUCTPAGE,
        h2: false,
    };
    let yaml = envoy::bootstrap(
        &[envoy::listener(
            "inbound",
            listen,
            "app",
            Some(from_productpage),
        )],
        &[envoy::cluster("app", app.addr(), None)],
    );
    let _envoy = Envoy::start(&scratch, "envoy-vm", &yaml, listen);
    let caller = productpage(&scratch, &ca, &snapshot, driver);
    let response = Client::connect(caller.outbound)
        .and_then(|mut c| c.get("reviews", "/headers", &[]))
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    // Envoy verified the caller's certificate and says whose it was.
    let seen = response.text();
    assert!(seen.contains(&format!("URI={PRODUCTPAGE}")), "{seen}");
}

/// A DestinationRule with `tls.mode: DISABLE` has callers use plaintext to a PERMISSIVE server.
fn a_destination_rule_with_tls_disable_calls_the_vm_in_plaintext(driver: &str) {
    let scratch = Scratch::new();
    let ca = new_ca(&scratch, false);
    let (_app, vm) = vm_application();
    let permissive = mesh(vm).replace("mode: STRICT", "mode: PERMISSIVE");
    let disable = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    tls: {mode: DISABLE}
"#;
    let files = [
        ("bookinfo-vm.yaml", permissive.as_str()),
        ("reviews-dr.yaml", disable),
    ];
    let snapshot = compile_yaml(&scratch, "mesh", &files);
    let reviews = vm_sidecar(
        (&scratch, &ca),
        (&snapshot, driver),
        ("reviews-vm", "reviews"),
        vm,
    );
    let caller = productpage(&scratch, &ca, &snapshot, driver);
    let response = Client::connect(caller.outbound)
        .and_then(|mut c| c.get("reviews", "/", &[]))
        .unwrap();
    // Plaintext carries no identity: the ALLOW policy for productpage's principal denies it.
    assert_eq!(response.status, 403, "{}", response.text());
    let tls = admin_json(reviews.admin, "/certs")["tls"].clone();
    assert_eq!(tls["inbound_handshakes"], 0, "{tls}");
    let outbound = admin_json(caller.admin, "/certs")["tls"].clone();
    assert_eq!(outbound["outbound_handshakes"], 0, "{outbound}");
}

on_both_drivers!(
    the_vm_sidecar_enforces_its_policies_and_is_called_over_mtls,
    a_vm_presenting_another_identity_fails_secure_naming,
    an_envoy_sidecar_on_the_vm_is_called_over_mtls,
    a_destination_rule_with_tls_disable_calls_the_vm_in_plaintext,
);

//! Transparent capture on hosts built from network namespaces: `meshd iptables` installs its
//! rules once, removes only its own, and sends an unmodified application's connections
//! through the sidecars on both ends.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use ringmesh_tests::netns::{checked, Host, Network};
use ringmesh_tests::*;

mod grpc;
mod tcp;

/// The nat table as `iptables-save` prints it, without its timestamps and packet counters.
fn nat_rules(host: &Host, tool: &str) -> String {
    let saved = checked(&host.run(tool, &["-t", "nat"]), tool);
    saved
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.rfind(" [") {
            Some(i) if l.starts_with(':') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn meshd_iptables(host: &Host, args: &[&str]) -> String {
    let meshd = harness::binary("meshd").unwrap();
    let output = host.command(meshd).arg("iptables").args(args).output();
    checked(&output.unwrap(), "meshd iptables")
}

#[test]
fn rules_install_once_and_cleanup_leaves_other_rules() {
    let network = Network::new(1);
    let host = &network.hosts[0];
    let foreign = [
        "-t", "nat", "-A", "OUTPUT", "-p", "udp", "--dport", "53", "-j", "RETURN",
    ];
    checked(&host.run("iptables", &foreign), "iptables");
    let untouched = nat_rules(host, "iptables-save");

    let printed = meshd_iptables(host, &["--dry-run", "--exclude-ports", "22"]);
    assert!(
        printed.contains("-A RINGMESH_INBOUND -p tcp --dport 22 -j RETURN"),
        "{printed}"
    );
    assert_eq!(
        nat_rules(host, "iptables-save"),
        untouched,
        "--dry-run changed rules"
    );

    meshd_iptables(host, &[]);
    let installed = nat_rules(host, "iptables-save");
    meshd_iptables(host, &[]);
    assert_eq!(
        nat_rules(host, "iptables-save"),
        installed,
        "applying twice changed rules"
    );
    for jump in [
        "-A OUTPUT -p tcp -j RINGMESH_OUTPUT",
        "-A PREROUTING -p tcp -j RINGMESH_INBOUND",
        "--dport 15000 -j RETURN",
        "-A RINGMESH_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
    ] {
        assert_eq!(
            installed.matches(jump).count(),
            1,
            "{jump} in:\n{installed}"
        );
    }
    let v6 = nat_rules(host, "ip6tables-save");
    assert!(
        v6.contains("-A RINGMESH_OUTPUT -d ::1/128 -j RETURN"),
        "{v6}"
    );

    meshd_iptables(host, &["--cleanup"]);
    meshd_iptables(host, &["--cleanup"]);
    assert_eq!(nat_rules(host, "iptables-save"), untouched);
    assert!(!nat_rules(host, "ip6tables-save").contains("RINGMESH"));
}

/// A process inside a host, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `mesh-upstream` answering with `name` on `listen` inside `host`, once it listens.
fn upstream(host: &Host, listen: &str, name: &str) -> Running {
    let binary = harness::binary("mesh-upstream").unwrap();
    let mut child = host
        .command(binary)
        .args(["--listen", listen, "--name", name])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(line.starts_with("listening"), "mesh-upstream: {line:?}");
    Running(child)
}

/// meshd inside `host` on the ports the capture rules send to, with `args`.
fn sidecar(host: &Host, snapshot: &Path, driver: &str, args: &[&str]) -> Sidecar {
    let meshd = host.command(harness::binary("meshd").unwrap());
    sidecar_from(meshd, snapshot, driver, args)
}

/// [`sidecar`] started by `meshd`, a command prepared inside a host (its stderr redirected,
/// say).
fn sidecar_from(meshd: Command, snapshot: &Path, driver: &str, args: &[&str]) -> Sidecar {
    let mut all = vec![
        "--outbound",
        "127.0.0.1:15001",
        "--admin",
        "127.0.0.1:15000",
        "--io-driver",
        driver,
    ];
    all.extend_from_slice(args);
    Sidecar::start_with(meshd, snapshot, &all).unwrap()
}

/// [`sidecar`] with its log lines in `log`.
fn logged_sidecar(
    host: &Host,
    snapshot: &Path,
    driver: &str,
    args: &[&str],
    log: &Path,
) -> Sidecar {
    let mut meshd = host.command(harness::binary("meshd").unwrap());
    meshd.stderr(std::fs::File::create(log).unwrap());
    sidecar_from(meshd, snapshot, driver, args)
}

/// A captured pair with mutual TLS: workload `caller`'s sidecar on `client`, `callee`'s on
/// `server` (inbound on 15006), each with the certificates `harness::issue_certificates` wrote
/// for it into `scratch`, both hosts' traffic captured. The callee's sidecar comes first.
fn captured_pair(
    snapshot: &Path,
    scratch: &Scratch,
    (client, caller, caller_driver): (&Host, &str, &str),
    (server, callee, callee_driver): (&Host, &str, &str),
) -> (Sidecar, Sidecar) {
    let certs = |name: &str| scratch.path().join(name).to_str().unwrap().to_owned();
    let (callee_certs, caller_certs) = (certs(callee), certs(caller));
    let callee_args = [
        "--workload",
        callee,
        "--inbound",
        "0.0.0.0:15006",
        "--certs",
        &callee_certs,
    ];
    let callee_side = sidecar(server, snapshot, callee_driver, &callee_args);
    let caller_args = ["--workload", caller, "--certs", &caller_certs];
    let caller_side = sidecar(client, snapshot, caller_driver, &caller_args);
    meshd_iptables(client, &[]);
    meshd_iptables(server, &[]);
    (callee_side, caller_side)
}

/// curl inside `host`: the status code and the body.
fn curl(host: &Host, url: &str, headers: &[&str]) -> (u16, String) {
    let mut args = vec!["-s", "-m", "5", "-w", "\n%{http_code}", url];
    for header in headers {
        args.extend(["-H", header]);
    }
    let out = checked(&host.run("curl", &args), "curl");
    let (body, code) = out.rsplit_once('\n').unwrap();
    (code.parse().unwrap_or(0), body.to_owned())
}

/// The sum of `istio_requests_total` with `reporter` on the sidecar inside `host`.
fn requests_reported(host: &Host, reporter: &str) -> u64 {
    let (_, metrics) = curl(host, "http://127.0.0.1:15000/metrics", &[]);
    let label = format!("reporter=\"{reporter}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

#[test]
fn an_unmodified_client_is_served_by_both_sidecars() {
    for driver in ["epoll", "uring"] {
        let network = Network::new(3);
        let (client, server, outside) = (&network.hosts[0], &network.hosts[1], &network.hosts[2]);
        let _app = upstream(server, "0.0.0.0:9080", "reviews");
        let _other = upstream(server, "0.0.0.0:9081", "ratings");
        let _outside = upstream(outside, "0.0.0.0:8080", "outside");
        let scratch = Scratch::new();
        let config = format!(
            "service reviews {{ port 9080 http endpoint {0}:9080 address 198.18.1.10 }}\n\
             service ratings {{ port 9081 http endpoint {0}:9081 }}\n\
             workload reviews {{ serves reviews, ratings\n\
               inbound 9080 http -> 127.0.0.1:9080 mtls disable\n\
               inbound 9081 http -> 127.0.0.1:9081 mtls disable }}",
            server.addr
        );
        let snapshot = compile(&scratch, &config);
        let _callee = sidecar(
            server,
            &snapshot,
            driver,
            &["--workload", "reviews", "--inbound", "0.0.0.0:15006"],
        );
        let _caller = sidecar(client, &snapshot, driver, &[]);
        meshd_iptables(client, &[]);
        meshd_iptables(server, &[]);

        // The application calls the service's endpoint as if there were no mesh.
        let url = format!("http://{}:9080/", server.addr);
        let (code, body) = curl(client, &url, &["host: reviews:9080"]);
        assert_eq!((code, body.as_str()), (200, "reviews"), "{driver}");
        assert_eq!(requests_reported(client, "source"), 1, "{driver}: caller");
        assert_eq!(
            requests_reported(server, "destination"),
            1,
            "{driver}: callee"
        );

        // Without a service's name, the address the connection was sent to routes it, and
        // the callee picks its inbound port by that address too, whatever the Host says.
        let (code, body) = curl(client, &url, &[]);
        assert_eq!((code, body.as_str()), (200, "reviews"), "{driver}");
        let (code, body) = curl(client, &url, &["host: somewhere.else:9081"]);
        assert_eq!((code, body.as_str()), (200, "reviews"), "{driver}");
        assert_eq!(requests_reported(client, "source"), 3, "{driver}: caller");
        assert_eq!(
            requests_reported(server, "destination"),
            3,
            "{driver}: callee"
        );

        // The service's virtual address, and its name as the host's resolver gives it.
        client.set_hosts(&[("198.18.1.10", "reviews")]);
        for url in ["http://198.18.1.10:9080/", "http://reviews:9080/"] {
            let (code, body) = curl(client, url, &[]);
            assert_eq!((code, body.as_str()), (200, "reviews"), "{driver} {url}");
        }
        assert_eq!(
            requests_reported(server, "destination"),
            5,
            "{driver}: callee"
        );

        // A destination outside the mesh passes through the caller's sidecar.
        let (code, body) = curl(client, &format!("http://{}:8080/", outside.addr), &[]);
        assert_eq!((code, body.as_str()), (200, "outside"), "{driver}");
        assert_eq!(requests_reported(client, "source"), 6, "{driver}: caller");
    }
}

/// What Istio users write for the same calls: a ServiceEntry with `addresses`, and a
/// Kubernetes Service with its cluster IP and the EndpointSlice the cluster reports.
const ISTIO_SERVICES: &str = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  addresses: [198.18.1.11]
  ports: [{number: 9081, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 198.18.0.2}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  type: ClusterIP
  clusterIP: 198.18.1.10
  clusterIPs: [198.18.1.10]
  selector: {app: reviews}
  ports: [{port: 9080, name: http}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: reviews-abc12
  namespace: default
  labels: {kubernetes.io/service-name: reviews}
addressType: IPv4
ports: [{name: http, port: 9080, protocol: TCP}]
endpoints:
- addresses: [198.18.0.2]
  conditions: {ready: true}
";

/// The same two services in TOML.
const TOML_SERVICES: &str = r#"
[[service]]
name = "reviews"
ports = [{ number = 9080, protocol = "http" }]
endpoints = [{ address = "198.18.0.2:9080" }]
addresses = ["198.18.1.10"]

[[service]]
name = "ratings"
ports = [{ number = 9081, protocol = "http" }]
endpoints = [{ address = "198.18.0.2:9081" }]
addresses = ["198.18.1.0/28"]
"#;

#[test]
fn istio_service_addresses_route_captured_connections() {
    serve_virtual_addresses("services.yaml", ISTIO_SERVICES);
}

#[test]
fn toml_service_addresses_route_captured_connections() {
    serve_virtual_addresses("services.toml", TOML_SERVICES);
}

/// Serves `config` (reviews at 198.18.1.10:9080, ratings at 198.18.1.11:9081) on a captured
/// client host and calls both by address and by name.
fn serve_virtual_addresses(file: &str, config: &str) {
    let network = Network::new(2);
    let (client, server) = (&network.hosts[0], &network.hosts[1]);
    let _reviews = upstream(server, "0.0.0.0:9080", "reviews");
    let _ratings = upstream(server, "0.0.0.0:9081", "ratings");
    let scratch = Scratch::new();
    let (snapshot, _) = compile_file(&scratch, file, config);
    let _caller = sidecar(client, &snapshot, "epoll", &[]);
    meshd_iptables(client, &[]);
    client.set_hosts(&[
        ("198.18.1.10", "reviews.default.svc.cluster.local"),
        ("198.18.1.11", "ratings.default.svc.cluster.local"),
    ]);

    for (url, expected) in [
        ("http://198.18.1.10:9080/", "reviews"),
        ("http://198.18.1.11:9081/", "ratings"),
        ("http://reviews.default.svc.cluster.local:9080/", "reviews"),
        ("http://ratings.default.svc.cluster.local:9081/", "ratings"),
    ] {
        let (code, body) = curl(client, url, &[]);
        assert_eq!((code, body.as_str()), (200, expected), "{url}");
    }
    assert_eq!(requests_reported(client, "source"), 4);
}

const TCP_PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/intercept/tcp_peer.py");

/// `tcp_peer.py` serving `mode` on `port` inside `host`.
fn tcp_peer(host: &Host, mode: &str, port: &str) -> Running {
    started(
        host,
        "python3",
        &[TCP_PEER, "serve", mode, port],
        "listening",
    )
}

/// `tcp_peer.py` calling a `mode` peer at `addr`:`port` from inside `host`: it exits 0 and
/// prints `ok` when the peer answered as `mode` says.
fn tcp_call(host: &Host, mode: &str, addr: &str, port: &str) -> std::process::Output {
    host.run("python3", &[TCP_PEER, "call", mode, addr, port])
}

/// `tcp_peer.py`'s echo server on port 7000, inside `host`.
fn echo_server(host: &Host) -> Running {
    tcp_peer(host, "echo", "7000")
}

/// `tcp_peer.py`'s echo server on port 7000 and its server-first one on 2525, inside `host`.
fn echo_and_banner(host: &Host) -> (Running, Running) {
    (echo_server(host), tcp_peer(host, "banner", "2525"))
}

/// Compiles `config`, written to `file` in `scratch`, which must succeed: the snapshot's path
/// and meshc's warnings.
fn compile_file(scratch: &Scratch, file: &str, config: &str) -> (std::path::PathBuf, String) {
    let input = scratch.write(file, config);
    let snapshot = scratch.path().join("mesh.snap");
    let compiled = harness::compile(&[&input], &snapshot).unwrap();
    let stderr = String::from_utf8_lossy(&compiled.stderr).into_owned();
    assert!(compiled.status.success(), "{stderr}");
    (snapshot, stderr)
}

/// A process inside `host` started with `args`, once it printed `ready` (a line starting so).
fn started(host: &Host, program: &str, args: &[&str], ready: &str) -> Running {
    let mut child = host
        .command(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.starts_with(ready))),
        "{program} {args:?} never printed {ready:?}"
    );
    // Keep draining its output, so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Running(child)
}

#[test]
fn captured_connections_that_are_not_http_pass_through_both_sidecars() {
    for driver in ["epoll", "uring"] {
        let network = Network::new(2);
        let (client, server) = (&network.hosts[0], &network.hosts[1]);
        let (_echo, _banner) = echo_and_banner(server);
        let _http = upstream(server, "0.0.0.0:9090", "undeclared");
        let scratch = Scratch::new();
        let (cert, key) = (
            scratch.path().join("cert.pem"),
            scratch.path().join("key.pem"),
        );
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=server", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap();
        checked(&made, "openssl req");
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let tls_args = [
            "s_server", "-accept", "8443", "-www", "-cert", cert, "-key", key,
        ];
        let _tls = started(server, "openssl", &tls_args, "ACCEPT");

        // The server's workload declares one HTTP port; the ports above are not declared.
        let config = format!(
            "service web {{ port 9080 http endpoint {}:9080 }}\n\
             workload web {{ serves web inbound 9080 http -> 127.0.0.1:9080 mtls disable }}",
            server.addr
        );
        let snapshot = compile(&scratch, &config);
        let inbound = ["--workload", "web", "--inbound", "0.0.0.0:15006"];
        let _callee = sidecar(server, &snapshot, driver, &inbound);
        let _caller = sidecar(client, &snapshot, driver, &[]);
        meshd_iptables(client, &[]);
        meshd_iptables(server, &[]);

        let addr = server.addr.to_string();
        for (mode, port) in [("echo", "7000"), ("banner", "2525")] {
            let called = tcp_call(client, mode, &addr, port);
            assert_eq!(checked(&called, mode).trim(), "ok", "{driver} {mode}");
        }
        // The application's own TLS (its self-signed certificate trusted with -k): both
        // sidecars relay the handshake untouched.
        let url = format!("https://{addr}:8443/");
        let args = [
            "-sk",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ];
        assert_eq!(
            checked(&client.run("curl", &args), "curl"),
            "200",
            "{driver}"
        );
        // HTTP to a port the workload does not declare passes through both sidecars too.
        let (code, body) = curl(client, &format!("http://{addr}:9090/"), &[]);
        assert_eq!((code, body.as_str()), (200, "undeclared"), "{driver}");
        assert_eq!(requests_reported(client, "source"), 1, "{driver}: caller");
        assert_eq!(
            requests_reported(server, "destination"),
            1,
            "{driver}: callee"
        );
    }
}

#[test]
fn strict_mutual_tls_serves_captured_calls_and_refuses_plaintext_around_the_sidecar() {
    let network = Network::new(3);
    let (client, server, stranger) = (&network.hosts[0], &network.hosts[1], &network.hosts[2]);
    let _app = upstream(server, "0.0.0.0:9080", "reviews");
    let scratch = Scratch::new();
    let caller_id = "spiffe://cluster.local/ns/default/sa/productpage";
    let callee_id = "spiffe://cluster.local/ns/default/sa/reviews";
    harness::issue_certificates(
        scratch.path(),
        &[("productpage", caller_id), ("reviews", callee_id)],
    )
    .unwrap();
    let config = format!(
        "service reviews {{ port 9080 http endpoint {}:9080 address 198.18.1.10 }}\n\
         workload productpage {{ identity \"{caller_id}\" outbound reviews }}\n\
         workload reviews {{ identity \"{callee_id}\" serves reviews\n\
           inbound 9080 http -> 127.0.0.1:9080 mtls strict }}",
        server.addr
    );
    let snapshot = compile(&scratch, &config);
    let caller = (client, "productpage", "uring");
    let _sidecars = captured_pair(&snapshot, &scratch, caller, (server, "reviews", "epoll"));
    client.set_hosts(&[("198.18.1.10", "reviews")]);

    // The unmodified application calls the service by name, and by its address; the
    // callee's sidecar saw the caller's certificate.
    for url in ["http://reviews:9080/", "http://198.18.1.10:9080/"] {
        let (code, body) = curl(client, url, &[]);
        assert_eq!((code, body.as_str()), (200, "reviews"), "{url}");
    }
    // So does an application speaking HTTP/2 with prior knowledge.
    let h2c = client.run(
        "curl",
        &[
            "-s",
            "--http2-prior-knowledge",
            "-m",
            "5",
            "-w",
            " %{http_version}",
            "http://reviews:9080/",
        ],
    );
    assert_eq!(checked(&h2c, "curl --http2-prior-knowledge"), "reviews 2");
    let (_, metrics) = curl(server, "http://127.0.0.1:15000/metrics", &[]);
    let principal = format!("source_principal=\"{caller_id}\"");
    let from_caller: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{") && l.contains(&principal))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    assert_eq!(from_caller, 3, "{metrics}");

    // A host without a sidecar cannot reach the application's port around the callee's.
    let url = format!("http://{}:9080/", server.addr);
    let refused = stranger.run(
        "curl",
        &[
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ],
    );
    let code = String::from_utf8_lossy(&refused.stdout);
    assert!(
        !refused.status.success() && code == "000",
        "plaintext to a strict port must be refused: {} {code}",
        refused.status
    );
    assert_eq!(requests_reported(server, "destination"), 3);
}

#[test]
fn registry_only_refuses_destinations_outside_the_mesh_from_the_dsl() {
    let config =
        "service reviews { port 9080 http endpoint 198.18.0.2:9080 address 198.18.1.10 }\n\
                  workload app { outbound reviews outbound_traffic registry_only }";
    registry_only_refuses_destinations_outside_the_mesh("mesh.mesh", config);
}

#[test]
fn registry_only_refuses_destinations_outside_the_mesh_from_toml() {
    let config = r#"
[[service]]
name = "reviews"
ports = [{ number = 9080, protocol = "http" }]
endpoints = [{ address = "198.18.0.2:9080" }]
addresses = ["198.18.1.10"]

[[workload]]
name = "app"
outbound = ["reviews"]
outbound_traffic = "registry_only"
"#;
    registry_only_refuses_destinations_outside_the_mesh("mesh.toml", config);
}

/// Serves `config` (workload `app` calling `reviews` at 198.18.0.2, registry_only) on a
/// captured client: the service is reached, anything else refused.
fn registry_only_refuses_destinations_outside_the_mesh(file: &str, config: &str) {
    let network = Network::new(3);
    let (client, server, outside) = (&network.hosts[0], &network.hosts[1], &network.hosts[2]);
    let _reviews = upstream(server, "0.0.0.0:9080", "reviews");
    let _web = upstream(outside, "0.0.0.0:8080", "outside");
    let _echo = echo_server(outside);
    let scratch = Scratch::new();
    let (snapshot, _) = compile_file(&scratch, file, config);
    let _caller = sidecar(client, &snapshot, "epoll", &["--workload", "app"]);
    meshd_iptables(client, &[]);

    let (code, body) = curl(client, "http://198.18.1.10:9080/", &[]);
    assert_eq!((code, body.as_str()), (200, "reviews"));
    let (code, body) = curl(client, &format!("http://{}:8080/", outside.addr), &[]);
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("registry_only"), "{body}");
    let (_, metrics) = curl(client, "http://127.0.0.1:15000/metrics", &[]);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_requests_total{")
                && l.contains("response_code=\"502\"")
                && l.contains("response_flags=\"NR\"")),
        "{metrics}"
    );
    // Not HTTP: the connection is closed before anything reaches the outside host.
    let refused = tcp_call(client, "echo", &outside.addr.to_string(), "7000");
    assert!(
        !refused.status.success(),
        "an opaque connection outside the mesh went through"
    );
}

#[test]
fn opaque_connections_to_a_service_address_reach_its_endpoints() {
    let network = Network::new(2);
    let (client, server) = (&network.hosts[0], &network.hosts[1]);
    let (_echo, _banner) = echo_and_banner(server);
    let scratch = Scratch::new();
    let config = format!(
        "service db {{ port 7000 tcp endpoint {0}:7000 address 198.18.1.12 }}\n\
         service mail {{ port 2525 tcp endpoint {0}:2525 address 198.18.1.13 }}",
        server.addr
    );
    let snapshot = compile(&scratch, &config);
    let _caller = sidecar(client, &snapshot, "uring", &[]);
    meshd_iptables(client, &[]);

    // No host has these addresses: only the sidecar knows where the services are.
    for (mode, addr, port) in [
        ("echo", "198.18.1.12", "7000"),
        ("banner", "198.18.1.13", "2525"),
    ] {
        let called = tcp_call(client, mode, addr, port);
        assert_eq!(checked(&called, mode).trim(), "ok", "{mode}");
    }
}

#[test]
fn registry_only_refuses_destinations_outside_the_mesh_from_an_istio_sidecar() {
    let yaml = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [198.18.1.10]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 198.18.0.2}]
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: default, labels: {app: app}}
spec:
  containers: [{name: app, image: app}]
status: {podIP: 198.18.0.1}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
";
    registry_only_refuses_destinations_outside_the_mesh("mesh.yaml", yaml);
}

#[test]
fn authorization_is_never_bypassed_by_bytes_that_are_not_a_request_line() {
    let network = Network::new(2);
    let (client, server) = (&network.hosts[0], &network.hosts[1]);
    let _app = upstream(server, "0.0.0.0:9080", "secret");
    let _echo = echo_server(server);
    let scratch = Scratch::new();
    let config = format!(
        "service web {{ port 9080 http endpoint {}:9080 }}\n\
         workload web {{ serves web inbound 9080 http -> 127.0.0.1:9080 mtls disable }}\n\
         authorization deny-all {{ workloads web }}",
        server.addr
    );
    let snapshot = compile(&scratch, &config);
    let inbound = ["--workload", "web", "--inbound", "0.0.0.0:15006"];
    let log = scratch.path().join("meshd.log");
    let _callee = logged_sidecar(server, &snapshot, "epoll", &inbound, &log);
    meshd_iptables(server, &[]);

    let url = format!("http://{}:9080/", server.addr);
    let (code, _) = curl(client, &url, &[]);
    assert_eq!(code, 403);
    // A blank line before the request line: not a request line, so not relayed as bytes to an
    // application that would skip the blank line and answer.
    let smuggled = format!(
        "import socket; s = socket.create_connection(('{}', 9080), timeout=5); \
         s.sendall(b'\\r\\nGET / HTTP/1.1\\r\\nhost: web\\r\\n\\r\\n'); \
         print(s.recv(4096).decode(errors='replace'))",
        server.addr
    );
    let answer = checked(&client.run("python3", &["-c", &smuggled]), "python3");
    assert!(
        !answer.contains("secret") && !answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    // Bytes that are no protocol at all, to the HTTP port: answered 400, closed, logged and
    // counted.
    let garbage = format!(
        "import socket; s = socket.create_connection(('{}', 9080), timeout=5); \
         s.sendall(b'\\x00\\x01 garbage\\r\\n\\r\\n'); \
         print(s.recv(4096).decode(errors='replace'))",
        server.addr
    );
    let answer = checked(&client.run("python3", &["-c", &garbage]), "python3");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let (_, metrics) = curl(server, "http://127.0.0.1:15000/metrics", &[]);
    assert!(
        metrics.contains("ringmesh_requests_refused_total{reason=\"malformed\"} 1"),
        "{metrics}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    let from = format!("not HTTP from {}", client.addr);
    assert_eq!(logged.matches(&from).count(), 1, "{logged}");
    // Bytes to an undeclared port are relayed only as far as the policies let a TCP caller:
    // `deny-all` lets none.
    let refused = tcp_call(client, "echo", &server.addr.to_string(), "7000");
    assert!(
        !refused.status.success(),
        "an opaque connection went around authorization"
    );
}

#[test]
fn a_call_to_one_endpoints_address_goes_to_that_endpoint() {
    let network = Network::new(2);
    let (client, server) = (&network.hosts[0], &network.hosts[1]);
    let _a = upstream(server, "0.0.0.0:9080", "pod-a");
    let _b = upstream(server, "0.0.0.0:9081", "pod-b");
    let scratch = Scratch::new();
    let config = format!(
        "service reviews {{ port 9080 http endpoint {0}:9080 endpoint {0}:9081 }}",
        server.addr
    );
    let snapshot = compile(&scratch, &config);
    let _caller = sidecar(client, &snapshot, "epoll", &[]);
    meshd_iptables(client, &[]);

    // Routed by the service the address belongs to, but never balanced away from it (as a
    // StatefulSet's peers call each other).
    let url = format!("http://{}:9081/", server.addr);
    for _ in 0..4 {
        let (code, body) = curl(client, &url, &[]);
        assert_eq!((code, body.as_str()), (200, "pod-b"));
    }
    assert_eq!(requests_reported(client, "source"), 4);
}

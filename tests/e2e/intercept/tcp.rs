//! Opaque TCP between sidecars: an unmodified client's connection to a TCP service goes over
//! mutual TLS, the callee's sidecar authorizes the caller at L4 (principals, ports, source
//! addresses, Istio's reading of HTTP-only fields) before relaying to the application, both
//! count Istio's TCP metrics, and a silent connection is closed after its idle timeout.

use super::*;

const CALLER: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const STRANGER: &str = "spiffe://cluster.local/ns/default/sa/other";
const CALLEE: &str = "spiffe://cluster.local/ns/default/sa/db";

/// The sum of the samples of `family` on `host`'s sidecar whose labels hold every `part`;
/// `None` when there is none.
fn sample(host: &Host, family: &str, parts: &[&str]) -> Option<f64> {
    let (_, metrics) = curl(host, "http://127.0.0.1:15000/metrics", &[]);
    let prefix = format!("{family}{{");
    metrics
        .lines()
        .filter(|l| l.starts_with(&prefix) && parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .reduce(|sum, value| sum + value)
}

#[test]
fn opaque_tcp_goes_over_mutual_tls_and_is_authorized_at_l4() {
    for (caller_driver, callee_driver) in [("uring", "epoll"), ("epoll", "uring")] {
        let network = Network::new(3);
        let (client, server, stranger) = (&network.hosts[0], &network.hosts[1], &network.hosts[2]);
        let (_echo, _banner) = echo_and_banner(server);
        let scratch = Scratch::new();
        harness::issue_certificates(
            scratch.path(),
            &[("productpage", CALLER), ("other", STRANGER), ("db", CALLEE)],
        )
        .unwrap();
        // The stranger has an identity the policy names, but calls from another address; an
        // ALLOW rule reading the method matches no TCP connection (Istio drops it for TCP).
        let config = format!(
            "service db {{ port 7000 tcp endpoint {server}:7000 address 198.18.1.20 }}\n\
             service mail {{ port 2525 tcp endpoint {server}:2525 }}\n\
             workload productpage {{ identity \"{CALLER}\" outbound db, mail }}\n\
             workload other {{ identity \"{STRANGER}\" outbound db, mail }}\n\
             workload db {{ identity \"{CALLEE}\" serves db, mail\n\
               inbound 7000 tcp -> 127.0.0.1:7000 mtls strict\n\
               inbound 2525 tcp -> 127.0.0.1:2525 mtls strict }}\n\
             authorization db-callers {{ workloads db\n\
               rule {{ from {{ principals \"cluster.local/ns/default/sa/productpage\",\n\
                 \"cluster.local/ns/default/sa/other\" ip_blocks \"{client}/32\" }}\n\
                 to {{ ports 7000, 2525 }} }}\n\
               rule {{ to {{ methods \"GET\" }} }} }}\n\
             telemetry {{ access_log json }}",
            server = server.addr,
            client = client.addr,
        );
        let snapshot = compile(&scratch, &config);
        let certs = |name: &str| scratch.path().join(name).to_str().unwrap().to_owned();
        let (db, productpage, other) = (certs("db"), certs("productpage"), certs("other"));
        let callee_log = scratch.path().join("db.log");
        let access_log = scratch.path().join("db-access.log");
        let callee_args = [
            "--workload",
            "db",
            "--inbound",
            "0.0.0.0:15006",
            "--certs",
            &db,
            "--access-log",
            access_log.to_str().unwrap(),
        ];
        let _callee = logged_sidecar(server, &snapshot, callee_driver, &callee_args, &callee_log);
        let caller_args = ["--workload", "productpage", "--certs", &productpage];
        let _caller = sidecar(client, &snapshot, caller_driver, &caller_args);
        let stranger_args = ["--workload", "other", "--certs", &other];
        let _stranger = sidecar(stranger, &snapshot, caller_driver, &stranger_args);
        for host in [client, server, stranger] {
            meshd_iptables(host, &[]);
        }
        let drivers = format!("{caller_driver} -> {callee_driver}");

        // The service's address and an endpoint's: a client-first and a server-first protocol,
        // each half-closed by the client.
        let addr = server.addr.to_string();
        for (mode, to, port) in [("echo", "198.18.1.20", "7000"), ("banner", &addr, "2525")] {
            let called = tcp_call(client, mode, to, port);
            assert_eq!(checked(&called, mode).trim(), "ok", "{drivers} {mode}");
        }
        // The callee saw the caller's certificate; both counted the connections (the callee
        // once its side of the second one closed too).
        let from_caller = [
            "reporter=\"destination\"",
            "source_principal=\"spiffe://cluster.local/ns/default/sa/productpage\"",
            "connection_security_policy=\"mutual_tls\"",
        ];
        wait_until(|| {
            sample(server, "istio_tcp_connections_closed_total", &from_caller) == Some(2.0)
        });
        let received = sample(server, "istio_tcp_received_bytes_total", &from_caller);
        assert!(received.is_some_and(|b| b > 0.0), "{drivers}: {received:?}");
        // Each connection has its access log line once it closed, as Envoy's TCP proxy writes.
        let lines = || -> Vec<serde_json::Value> {
            let logged = std::fs::read_to_string(&access_log).unwrap_or_default();
            logged
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        };
        wait_until(|| lines().len() == 2);
        for (line, app) in lines().iter().zip(["127.0.0.1:7000", "127.0.0.1:2525"]) {
            assert_eq!(line["protocol"], "TCP", "{drivers}: {line}");
            assert_eq!(line["response_flags"], "-", "{drivers}: {line}");
            assert_eq!(line["upstream_host"], app, "{drivers}: {line}");
            assert_eq!(line["peer_principal"], CALLER, "{drivers}: {line}");
            assert!(line["bytes_received"].as_u64() > Some(0), "{line}");
            assert!(line["bytes_sent"].as_u64() > Some(0), "{line}");
        }
        let to_db = [
            "reporter=\"source\"",
            "destination_service_name=\"db\"",
            "destination_principal=\"spiffe://cluster.local/ns/default/sa/db\"",
        ];
        let opened = sample(client, "istio_tcp_connections_opened_total", &to_db);
        assert_eq!(opened, Some(1.0), "{drivers}");

        // The stranger's identity is allowed, its address is not.
        let refused = tcp_call(stranger, "echo", "198.18.1.20", "7000");
        assert!(
            !refused.status.success(),
            "{drivers}: the stranger got through"
        );
        let log = std::fs::read_to_string(&callee_log).unwrap();
        let denial = format!(
            "authz: TCP connection to port 7000 from {STRANGER} ({}) no ALLOW policy matches",
            stranger.addr
        );
        assert!(log.contains(&denial), "{drivers}: {log}");
    }
}

#[test]
fn a_silent_relayed_connection_is_closed_after_the_pools_tcp_idle_timeout() {
    let config = "service db { port 7000 tcp endpoint 198.18.0.2:7000 address 198.18.1.20\n\
                  policy { pool { tcp_idle_timeout 1s } } }";
    closes_silent_connections("mesh.mesh", config);
}

#[test]
fn a_destination_rules_tcp_idle_timeout_closes_silent_connections() {
    let yaml = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [db.default.svc.cluster.local]
  addresses: [198.18.1.20]
  ports: [{number: 7000, name: tcp-db, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 198.18.0.2}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: default}
spec:
  host: db.default.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp: {idleTimeout: 1s}
";
    closes_silent_connections("mesh.yaml", yaml);
}

/// Serves `config` (service db at 198.18.1.20:7000, endpoint 198.18.0.2:7000, idle timeout
/// 1 s) on a captured client host, whose silent connection the sidecar must close.
fn closes_silent_connections(file: &str, config: &str) {
    let network = Network::new(2);
    let (client, server) = (&network.hosts[0], &network.hosts[1]);
    let _echo = echo_server(server);
    let scratch = Scratch::new();
    let (snapshot, stderr) = compile_file(&scratch, file, config);
    assert!(!stderr.contains("idleTimeout"), "{stderr}");
    let _caller = sidecar(client, &snapshot, "uring", &[]);
    meshd_iptables(client, &[]);

    // The client talks once, then stays silent: the sidecar closes the connection (the
    // client's own 20 s timeout would fail the script first otherwise).
    let silent = "import socket\n\
                  s = socket.create_connection(('198.18.1.20', 7000), timeout=20)\n\
                  s.sendall(b'hello')\n\
                  assert s.recv(5) == b'hello'\n\
                  assert s.recv(1) == b'', 'data after silence'\n\
                  print('closed')";
    let closed = checked(&client.run("python3", &["-c", silent]), "python3");
    assert_eq!(closed.trim(), "closed");
}

/// Policies decide a relayed connection for as long as it lives: a reload that denies its
/// caller closes it, and a port declared `tcp` relays even bytes that look like HTTP.
#[test]
fn a_reload_that_denies_the_caller_closes_its_open_connections() {
    let network = Network::new(2);
    let (client, server) = (&network.hosts[0], &network.hosts[1]);
    let _echo = echo_server(server);
    let scratch = Scratch::new();
    harness::issue_certificates(scratch.path(), &[("productpage", CALLER), ("db", CALLEE)])
        .unwrap();
    let mesh = |policy: &str| {
        format!(
            "service db {{ port 7000 tcp endpoint {}:7000 address 198.18.1.20 }}\n\
             workload productpage {{ identity \"{CALLER}\" outbound db }}\n\
             workload db {{ identity \"{CALLEE}\" serves db\n\
               inbound 7000 tcp -> 127.0.0.1:7000 mtls strict }}\n\
             authorization callers {{ workloads db {policy} }}",
            server.addr
        )
    };
    let allowed = "rule { from { principals \"cluster.local/ns/default/sa/productpage\" } }";
    let snapshot = compile(&scratch, &mesh(allowed));
    let caller = (client, "productpage", "uring");
    let _sidecars = captured_pair(&snapshot, &scratch, caller, (server, "db", "epoll"));

    // An HTTP request on the tcp port is bytes to echo, not a request to route.
    let request = "import socket\n\
                   s = socket.create_connection(('198.18.1.20', 7000), timeout=5)\n\
                   s.sendall(b'GET / HTTP/1.1\\r\\nhost: db\\r\\n\\r\\n')\n\
                   print(s.recv(64).decode())";
    let echoed = checked(&client.run("python3", &["-c", request]), "python3");
    assert!(echoed.starts_with("GET / HTTP/1.1"), "{echoed}");

    let held = "import socket, sys\n\
                s = socket.create_connection(('198.18.1.20', 7000), timeout=30)\n\
                s.sendall(b'hello')\n\
                assert s.recv(5) == b'hello'\n\
                print('open', flush=True)\n\
                assert s.recv(1) == b'', 'data after the reload'\n\
                print('closed', flush=True)";
    let mut child = client
        .command("python3")
        .args(["-c", held])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "open");
    // The callee's sidecar picks the new snapshot up from its file.
    compile(&scratch, &mesh(""));
    assert_eq!(lines.next().unwrap().unwrap(), "closed");
    assert!(child.wait().unwrap().success());
}

/// A reload that makes a permissive port strict closes the plaintext connections it relays
/// (a caller without a sidecar), as it refuses new ones.
#[test]
fn a_reload_to_strict_closes_plaintext_relayed_connections() {
    let network = Network::new(2);
    let (stranger, server) = (&network.hosts[0], &network.hosts[1]);
    let _echo = echo_server(server);
    let scratch = Scratch::new();
    harness::issue_certificates(scratch.path(), &[("db", CALLEE)]).unwrap();
    let mesh = |mode: &str| {
        format!(
            "service db {{ port 7000 tcp endpoint {}:7000 }}\n\
             workload db {{ identity \"{CALLEE}\" serves db\n\
               inbound 7000 tcp -> 127.0.0.1:7000 mtls {mode} }}",
            server.addr
        )
    };
    let snapshot = compile(&scratch, &mesh("permissive"));
    let certs = scratch.path().join("db");
    let args = ["--workload", "db", "--inbound", "0.0.0.0:15006"];
    let args = [&args[..], &["--certs", certs.to_str().unwrap()]].concat();
    let _sidecar = sidecar(server, &snapshot, "epoll", &args);
    meshd_iptables(server, &[]);
    let held = format!(
        "import socket\n\
         s = socket.create_connection(('{}', 7000), timeout=30)\n\
         s.sendall(b'hello')\n\
         assert s.recv(5) == b'hello'\n\
         print('open', flush=True)\n\
         assert s.recv(1) == b'', 'data after the reload'\n\
         print('closed', flush=True)",
        server.addr
    );
    let mut child = stranger
        .command("python3")
        .args(["-c", &held])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "open");
    compile(&scratch, &mesh("strict"));
    assert_eq!(lines.next().unwrap().unwrap(), "closed");
    assert!(child.wait().unwrap().success());
}

/// A connection to a service's address goes to the endpoint its balancer picks: round robin
/// alternates between an echo and a server-first endpoint.
#[test]
fn connections_to_a_service_address_are_balanced_over_its_endpoints() {
    let network = Network::new(2);
    let (client, server) = (&network.hosts[0], &network.hosts[1]);
    let (_echo, _banner) = echo_and_banner(server);
    let scratch = Scratch::new();
    let config = format!(
        "service db {{ port 7000 tcp endpoint {0}:7000 endpoint {0}:2525 address 198.18.1.12 }}",
        server.addr
    );
    let snapshot = compile(&scratch, &config);
    // One core: each core balances on its own.
    let _caller = sidecar(client, &snapshot, "uring", &["--cores", "1"]);
    meshd_iptables(client, &[]);

    let greeted = "import socket\n\
                   greeted = 0\n\
                   for _ in range(4):\n\
                   \x20   s = socket.create_connection(('198.18.1.12', 7000), timeout=5)\n\
                   \x20   s.sendall(b'x')\n\
                   \x20   greeted += s.recv(3) == b'220'\n\
                   \x20   s.close()\n\
                   print(greeted)";
    let greeted = checked(&client.run("python3", &["-c", greeted]), "python3");
    assert_eq!(greeted.trim(), "2", "round robin over the two endpoints");
}

/// The subject line of the certificate `openssl s_client` on `host` was shown at `addr`
/// (`host:port`), offering SNI `app.example`.
fn served_certificate(host: &Host, addr: &str) -> String {
    let args = ["s_client", "-connect", addr, "-servername", "app.example"];
    let mut client = host.command("openssl");
    let out = client
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    said.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_default()
        .to_owned()
}

/// An application that speaks TLS itself on a permissive port, as Istio serves it: a caller
/// without a sidecar reaches the application's own TLS through the callee's sidecar (its
/// ClientHello offers no protocol of the mesh's), and a caller with one reaches it too, inside
/// the mesh's mutual TLS, where the callee's sidecar sees the caller's identity.
#[test]
fn an_applications_own_tls_passes_a_permissive_port() {
    let network = Network::new(3);
    let (client, server, plain) = (&network.hosts[0], &network.hosts[1], &network.hosts[2]);
    let scratch = Scratch::new();
    let (key, cert) = (
        scratch.path().join("app.key"),
        scratch.path().join("app.pem"),
    );
    let made = server.run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=app.example",
            "-days",
            "1",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    );
    assert!(made.status.success(), "{made:?}");
    let s_server = [
        "s_server",
        "-accept",
        "127.0.0.1:8443",
        "-www",
        "-key",
        key.to_str().unwrap(),
        "-cert",
        cert.to_str().unwrap(),
    ];
    let _app = started(server, "openssl", &s_server, "ACCEPT");
    harness::issue_certificates(scratch.path(), &[("productpage", CALLER), ("db", CALLEE)])
        .unwrap();
    let config = format!(
        "service db {{ port 8443 tcp endpoint {}:8443 }}\n\
         workload productpage {{ identity \"{CALLER}\" outbound db }}\n\
         workload db {{ identity \"{CALLEE}\" serves db\n\
           inbound 8443 tcp -> 127.0.0.1:8443 mtls permissive }}",
        server.addr
    );
    let snapshot = compile(&scratch, &config);
    let certs = |name: &str| scratch.path().join(name).to_str().unwrap().to_owned();
    let (db, productpage) = (certs("db"), certs("productpage"));
    let callee_args = [
        "--workload",
        "db",
        "--inbound",
        "0.0.0.0:15006",
        "--certs",
        &db,
    ];
    let _callee = sidecar(server, &snapshot, "uring", &callee_args);
    let caller_args = ["--workload", "productpage", "--certs", &productpage];
    let _caller = sidecar(client, &snapshot, "epoll", &caller_args);
    meshd_iptables(server, &[]);
    meshd_iptables(client, &[]);

    let app = format!("{}:8443", server.addr);
    for host in [plain, client] {
        let subject = served_certificate(host, &app);
        assert!(
            subject.contains("app.example"),
            "{}: {subject:?}",
            host.addr
        );
    }
    // Only the call from the host with a sidecar came in the mesh's mutual TLS.
    let from_caller = [
        "reporter=\"destination\"",
        "source_principal=\"spiffe://cluster.local/ns/default/sa/productpage\"",
        "connection_security_policy=\"mutual_tls\"",
    ];
    wait_until(|| sample(server, "istio_tcp_connections_closed_total", &from_caller) == Some(1.0));
    let plain_text = ["reporter=\"destination\"", "source_principal=\"unknown\""];
    let opened = sample(server, "istio_tcp_connections_opened_total", &plain_text);
    assert_eq!(opened, Some(1.0));
}

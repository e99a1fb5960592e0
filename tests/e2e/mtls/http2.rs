//! HTTP/2 on meshd's inbound: a client offering ALPN `h2` (curl, built on nghttp2) gets
//! HTTP/2, each stream bridged to the application's HTTP/1.1 with the caller's identity;
//! bodies without a length, bodies beyond the flow-control windows and concurrent streams on
//! one connection all arrive whole.

use std::io::Write as _;
use std::process::Stdio;

use super::*;

/// curl with A's certificate against B's inbound, with `args`, then `paths` (each a URL on
/// B), `stdin` as its input; its stdout and stderr (it must succeed).
fn curl_h2(pair: &Pair, args: &[&str], paths: &[&str], stdin: Option<&[u8]>) -> (Vec<u8>, String) {
    let certs = pair.scratch.path().join("a");
    let file = |name: &str| certs.join(name).to_str().unwrap().to_owned();
    let inbound = pair.b.inbound.unwrap();
    // -k: a SPIFFE certificate names no host for curl to check (see envoy.rs).
    let mut command = Command::new("curl");
    command
        .args(["-sS", "-k", "--http2", "-H", "host: reviews"])
        .args(["--cert", &file("cert.pem"), "--key", &file("key.pem")])
        .args(args)
        .args(paths.iter().map(|p| format!("https://{inbound}{p}")))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("curl");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "curl failed: {stderr}");
    (output.stdout, stderr)
}

fn curl_speaks_h2_to_the_inbound_side(driver: &str) {
    let pair = Pair::start(driver, "strict", "reviews", REVIEWS);
    let (out, _) = curl_h2(
        &pair,
        &["-w", "\n%{http_version} %{http_code}"],
        &["/headers"],
        None,
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.ends_with("\n2 200"), "{text}");
    // The application got HTTP/1.1 with the caller's identity and the :authority as Host.
    assert!(
        text.contains(&format!(
            "x-forwarded-client-cert: By={REVIEWS};URI={FRONTEND}"
        )),
        "{text}"
    );
    assert!(text.contains("host: reviews"), "{text}");

    // An upload without a length (curl -T - over h2 sends none) goes to the application
    // chunked; 1 MiB crosses both directions' 64 KiB windows many times.
    let body: Vec<u8> = (0..1_048_576u32).map(|i| b'a' + (i % 26) as u8).collect();
    let (echoed, _) = curl_h2(&pair, &["-T", "-"], &["/echo"], Some(&body));
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "the echoed body differs");

    // Ten concurrent streams on one connection, each answered by its own exchange.
    let paths = vec!["/slow/200"; 10];
    let mut args = vec!["--parallel", "--parallel-max", "10", "-w", "%{http_code}\n"];
    for _ in &paths {
        args.extend(["-o", "/dev/null"]);
    }
    let (codes, _) = curl_h2(&pair, &args, &paths, None);
    let codes = String::from_utf8_lossy(&codes);
    assert_eq!(codes.lines().filter(|c| *c == "200").count(), 10, "{codes}");
    assert_eq!(pair.upstream.requests(), 12);
    let counts = tls_counts(pair.b.admin);
    assert!(
        counts["inbound_h2_connections"].as_u64().unwrap() >= 3,
        "{counts}"
    );
}

on_both_drivers!(curl_speaks_h2_to_the_inbound_side);

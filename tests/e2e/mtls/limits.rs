//! A `per_source` rate limit on a route rule is enforced again by the serving workload's
//! inbound side, keyed on the caller's mTLS identity: two callers from the same address, with
//! different identities, have separate buckets; the caller side keys on the local client.

use super::*;

/// One token per minute per caller (so one per core): the second request of a caller on one
/// connection is over the limit, whatever the core count.
const LIMITED: &str = r#"
route reviews {
  rule limited {
    to reviews
    rate_limit 1 per 1m per_source
  }
}
"#;

/// Sends GET `/` twice on one keep-alive connection to B's inbound as the workload whose
/// certificates are in `certs`; the two status codes, and the response heads.
fn twice_as(pair: &Pair, certs: &Path) -> (String, String) {
    let file = |name: &str| certs.join(name).to_str().unwrap().to_owned();
    let url = format!("https://{}/", pair.b.inbound.unwrap());
    // -k: a SPIFFE certificate names no host for curl to check (see envoy.rs).
    let output = Command::new("curl")
        .args(["-sS", "-k", "-H", "host: reviews", "-o", "/dev/null"])
        .args(["-D", "-", "-w", "%{http_code}\\n"])
        .args([
            "--cert",
            &file("cert.pem"),
            "--key",
            &file("key.pem"),
            &url,
            &url,
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let codes: Vec<&str> = text.lines().filter(|l| l.len() == 3).collect();
    (codes.join(" "), text)
}

#[test]
fn per_source_limits_key_on_the_caller_identity_at_the_serving_side() {
    // B runs on one core, so an address-keyed bucket would be shared by both callers below.
    let pair = Pair::start_with("uring", "strict", "reviews", REVIEWS, "", LIMITED);
    let frontend = pair.scratch.path().join("a");
    let (codes, heads) = twice_as(&pair, &frontend);
    assert_eq!(codes, "200 429", "{heads}");
    assert!(heads.contains("x-ringmesh-flag: RL"), "{heads}");
    assert!(heads.contains("retry-after: "), "{heads}");

    // Another identity from the same address has its own bucket.
    let other = pair.scratch.path().join("other");
    issue(&pair.ca, authz::OTHER, &other);
    let (codes, heads) = twice_as(&pair, &other);
    assert_eq!(codes, "200 429", "{heads}");
    assert_eq!(pair.upstream.requests(), 2);
}

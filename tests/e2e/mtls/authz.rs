//! Authorization on B's inbound: ALLOW, DENY and AUDIT policies decide by the caller's mTLS
//! identity and the request; a denial is 403 naming the deciding policy and its `file:line`,
//! logged, and never reaches the application.

use super::*;

pub(super) const OTHER: &str = "spiffe://cluster.local/ns/default/sa/other";

const POLICIES: &str = r#"
authorization allow-frontend {
  workloads reviews
  rule {
    from { principals "cluster.local/ns/default/sa/frontend" }
    to { methods "GET" }
  }
}
authorization deny-admin {
  workloads reviews
  action deny
  rule { to { paths "/admin*" } }
}
authorization audit-headers {
  workloads reviews
  action audit
  rule { to { paths "/headers" } }
}
"#;

fn b_log(pair: &Pair) -> String {
    std::fs::read_to_string(pair.scratch.path().join("b.log")).unwrap()
}

fn policies_allow_deny_and_audit_by_caller_identity(driver: &str) {
    let pair = Pair::start_with(driver, "strict", "reviews", REVIEWS, "", POLICIES);
    let response = pair.call("/headers", &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    let served = pair.upstream.requests();

    // DENY is decided before ALLOW, and names the policy and where it was written.
    let denied = pair.call("/admin/users", &[]);
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert_eq!(denied.header("x-ringmesh-flag"), Some("RBAC"));
    let body = denied.text();
    assert!(
        body.contains("RBAC: access denied: denied by DENY policy deny-admin (")
            && body.contains("b.mesh:"),
        "{body}"
    );
    // A request no ALLOW policy matches (the method) names the ALLOW policies.
    let posted = Client::connect(pair.a.outbound)
        .and_then(|mut c| c.post("reviews", "/headers", b"x"))
        .unwrap();
    assert_eq!(posted.status, 403, "{}", posted.text());
    assert!(
        posted
            .text()
            .contains("no ALLOW policy matches: allow-frontend ("),
        "{}",
        posted.text()
    );
    assert_eq!(
        pair.upstream.requests(),
        served,
        "a denied request reached the app"
    );

    let log = b_log(&pair);
    assert!(
        log.contains(&format!(
            "authz: audit: policy audit-headers ({}",
            pair.scratch.path().join("b.mesh").display()
        )) && log.contains(&format!("matches GET /headers from {FRONTEND}")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "authz: GET /admin/users from {FRONTEND} (127.0.0.1) denied by DENY policy \
             deny-admin"
        )),
        "{log}"
    );
}

on_both_drivers!(policies_allow_deny_and_audit_by_caller_identity);

#[test]
fn a_caller_outside_the_allow_list_gets_403_naming_the_policy() {
    let pair = Pair::start_with("uring", "strict", "reviews", REVIEWS, "", POLICIES);
    let other = pair.scratch.path().join("other");
    issue(&pair.ca, OTHER, &other);
    let file = |name: &str| other.join(name).to_str().unwrap().to_owned();
    let url = format!("https://{}/", pair.b.inbound.unwrap());
    // -k: a SPIFFE certificate names no host for curl to check (see envoy.rs).
    let output = Command::new("curl")
        .args(["-sS", "-k", "-i", "-H", "host: reviews"])
        .args(["--cert", &file("cert.pem"), "--key", &file("key.pem"), &url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("HTTP/2 403"), "{text}");
    assert!(
        text.contains("no ALLOW policy matches: allow-frontend (") && text.contains("b.mesh:"),
        "{text}"
    );
    assert_eq!(pair.upstream.requests(), 0);
    let log = b_log(&pair);
    assert!(
        log.contains(&format!("GET / from {OTHER} (127.0.0.1) no ALLOW")),
        "{log}"
    );
}

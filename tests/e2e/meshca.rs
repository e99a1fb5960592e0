//! meshca end to end: the real binary creates a CA and issues workload certificates that
//! OpenSSL, which nobody here wrote, accepts as SPIFFE X.509 SVIDs; roots rotate through a
//! two-root bundle.

use std::path::Path;
use std::process::{Command, Output};

use ringmesh_tests::*;

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is not installed: run .ci/run as root, or apt-get install openssl")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `openssl verify` of `dir/cert.pem` (its chain as untrusted) against `bundle`.
fn verifies(dir: &Path, bundle: &Path) -> bool {
    let cert = dir.join("cert.pem");
    let output = openssl(&[
        "verify",
        "-CAfile",
        path(bundle),
        "-untrusted",
        path(&cert),
        "-purpose",
        "sslclient",
        path(&cert),
    ]);
    output.status.success()
}

#[test]
fn openssl_accepts_the_issued_svid() {
    let scratch = Scratch::new();
    let ca = scratch.path().join("ca");
    let out = scratch.path().join("reviews");
    let created = succeeded(&meshca(&[
        "init",
        "--dir",
        path(&ca),
        "--trust-domain",
        "cluster.local",
        "--intermediate",
    ]));
    assert!(created.contains("cluster.local"), "{created}");
    let spiffe = "spiffe://cluster.local/ns/default/sa/reviews";
    let issued = succeeded(&meshca(&[
        "issue",
        "--dir",
        path(&ca),
        "--spiffe",
        spiffe,
        "--ttl",
        "1h",
        "--out",
        path(&out),
    ]));
    assert!(
        issued.contains(spiffe) && issued.contains("serial"),
        "{issued}"
    );

    let text = openssl(&[
        "x509",
        "-in",
        path(&out.join("cert.pem")),
        "-noout",
        "-text",
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("URI:{spiffe}")), "{text}");
    assert!(text.contains("prime256v1"), "not ECDSA P-256:\n{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("TLS Web Server Authentication, TLS Web Client Authentication"));
    // The chain (leaf, intermediate) verifies against the bundle, as client and server.
    assert!(verifies(&out, &out.join("bundle.pem")));
    let cert = out.join("cert.pem");
    let server = openssl(&[
        "verify",
        "-CAfile",
        path(&out.join("bundle.pem")),
        "-untrusted",
        path(&cert),
        "-purpose",
        "sslserver",
        path(&cert),
    ]);
    assert!(
        server.status.success(),
        "{}",
        String::from_utf8_lossy(&server.stdout)
    );
    // The key matches the certificate and is the owner's alone.
    let key_pub = openssl(&["pkey", "-in", path(&out.join("key.pem")), "-pubout"]);
    let cert_pub = openssl(&["x509", "-in", path(&cert), "-noout", "-pubkey"]);
    assert_eq!(key_pub.stdout, cert_pub.stdout);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn bad_requests_get_clear_errors() {
    let scratch = Scratch::new();
    let ca = new_ca(&scratch, false);
    let out = scratch.path().join("out");
    for (spiffe, expected) in [
        (
            "spiffe://evil.org/ns/a/sa/b",
            "not in this CA's trust domain cluster.local",
        ),
        ("spiffe://cluster.local", "has no path"),
        (
            "https://cluster.local/ns/a",
            "does not start with spiffe://",
        ),
    ] {
        let output = meshca(&[
            "issue",
            "--dir",
            path(&ca),
            "--spiffe",
            spiffe,
            "--out",
            path(&out),
        ]);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{spiffe}: {stderr}");
    }
    assert!(!out.exists(), "nothing is written for a refused request");
    let again = meshca(&[
        "init",
        "--dir",
        path(&ca),
        "--trust-domain",
        "cluster.local",
    ]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a CA"));
    let nowhere = scratch.path().join("nowhere");
    let missing = meshca(&["bundle", "--dir", path(&nowhere)]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("meshca init"));
}

#[test]
fn a_root_rotates_with_both_roots_trusted_in_between() {
    let scratch = Scratch::new();
    let ca = new_ca(&scratch, true);
    let issue = |name: &str| {
        let out = scratch.path().join(name);
        let spiffe = format!("spiffe://cluster.local/ns/default/sa/{name}");
        succeeded(&meshca(&[
            "issue",
            "--dir",
            path(&ca),
            "--spiffe",
            &spiffe,
            "--out",
            path(&out),
        ]));
        out
    };
    let old = issue("old");
    succeeded(&meshca(&["root", "add", "--dir", path(&ca)]));
    let new = issue("new");
    // The new leaf's bundle trusts both roots: old and new leaves verify against it.
    let both = new.join("bundle.pem");
    assert!(verifies(&old, &both) && verifies(&new, &both));
    // The old bundle does not know the new root.
    assert!(!verifies(&new, &old.join("bundle.pem")));
    succeeded(&meshca(&["root", "retire", "--dir", path(&ca)]));
    let bundle = scratch.path().join("bundle.pem");
    std::fs::write(&bundle, succeeded(&meshca(&["bundle", "--dir", path(&ca)]))).unwrap();
    assert!(verifies(&new, &bundle));
    assert!(
        !verifies(&old, &bundle),
        "a leaf of the retired root still verifies"
    );
    let last = meshca(&["root", "retire", "--dir", path(&ca)]);
    assert!(String::from_utf8_lossy(&last.stderr).contains("single root"));
}

/// A running `meshca serve`, killed on drop; its stderr (the issuance log) goes to a file.
/// A new P-256 key and a CSR for it from openssl, with `san` as subjectAltName if given.
fn csr(dir: &Path, name: &str, san: Option<&str>) -> (std::path::PathBuf, std::path::PathBuf) {
    let (key, csr) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.csr")),
    );
    let mut args = vec![
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/O=workload",
        "-keyout",
        path(&key),
        "-out",
        path(&csr),
    ];
    let ext;
    if let Some(san) = san {
        ext = format!("subjectAltName={san}");
        args.extend(["-addext", &ext]);
    }
    let output = openssl(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (key, csr)
}

/// POSTs `csr` to /v1/sign with curl plus `auth` arguments; the status and the body file.
fn curl_sign(service: &CaService, bundle: &Path, csr: &Path, auth: &[&str], out: &Path) -> String {
    let url = format!("https://{}/v1/sign", service.addr);
    let data = format!("@{}", path(csr));
    let output = Command::new("curl")
        .args(["-sS", "--cacert", path(bundle), "--data-binary", &data])
        .args(["-H", "content-type: application/pkcs10", "-o", path(out)])
        .args(["-w", "%{http_code}"])
        .args(auth)
        .arg(&url)
        .output()
        .expect("curl is not installed: run .ci/run as root, or apt-get install curl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_csr_service_bootstraps_by_token_renews_by_certificate_and_limits() {
    let scratch = Scratch::new();
    let ca = new_ca(&scratch, true);
    let spiffe = "spiffe://cluster.local/ns/default/sa/reviews";
    let token = succeeded(&meshca(&["token", "--dir", path(&ca), "--spiffe", spiffe]));
    let token = token.trim();
    let bundle = scratch.path().join("bundle.pem");
    std::fs::write(&bundle, succeeded(&meshca(&["bundle", "--dir", path(&ca)]))).unwrap();
    let service = CaService::start(&ca, &[], scratch.path().join("meshca.log"));
    let dir = scratch.path();

    // First certificate: a one-time token. curl checks the service's certificate.
    let (key, request) = csr(dir, "first", None);
    let cert = dir.join("first.pem");
    let bearer = format!("authorization: Bearer {token}");
    assert_eq!(
        curl_sign(&service, &bundle, &request, &["-H", &bearer], &cert),
        "200"
    );
    let text = openssl(&["x509", "-in", path(&cert), "-noout", "-text"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains(&format!("URI:{spiffe}")));
    let pubkey = openssl(&["pkey", "-in", path(&key), "-pubout"]);
    let cert_pubkey = openssl(&["x509", "-in", path(&cert), "-noout", "-pubkey"]);
    assert_eq!(
        pubkey.stdout, cert_pubkey.stdout,
        "signed over the CSR's key"
    );
    // The token is spent.
    let again = dir.join("again.pem");
    assert_eq!(
        curl_sign(&service, &bundle, &request, &["-H", &bearer], &again),
        "401"
    );
    // No credentials at all.
    assert_eq!(curl_sign(&service, &bundle, &request, &[], &again), "401");
    // A token made while the service runs works at once; a refused request does not spend it.
    let admin = "spiffe://cluster.local/ns/default/sa/admin";
    let late = succeeded(&meshca(&["token", "--dir", path(&ca), "--spiffe", admin]));
    let late_bearer = format!("authorization: Bearer {}", late.trim());
    let (_, wrong) = csr(dir, "wrong", Some(&format!("URI:{spiffe}")));
    let denied = dir.join("denied.txt");
    assert_eq!(
        curl_sign(&service, &bundle, &wrong, &["-H", &late_bearer], &denied),
        "403"
    );
    let (_, right) = csr(dir, "right", None);
    let admin_cert = dir.join("admin.pem");
    assert_eq!(
        curl_sign(
            &service,
            &bundle,
            &right,
            &["-H", &late_bearer],
            &admin_cert
        ),
        "200"
    );
    let text = openssl(&["x509", "-in", path(&admin_cert), "-noout", "-text"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains(&format!("URI:{admin}")));

    // Renewal with the current certificate (mutual TLS): the same identity only.
    let client = ["--cert", path(&cert), "--key", path(&key)];
    let (_, renewal) = csr(dir, "renewal", Some(&format!("URI:{spiffe}")));
    let renewed = dir.join("renewed.pem");
    assert_eq!(
        curl_sign(&service, &bundle, &renewal, &client, &renewed),
        "200"
    );
    let other = "URI:spiffe://cluster.local/ns/default/sa/admin";
    let (_, stolen) = csr(dir, "stolen", Some(other));
    let refused = dir.join("refused.txt");
    assert_eq!(
        curl_sign(&service, &bundle, &stolen, &client, &refused),
        "403"
    );
    let reason = std::fs::read_to_string(&refused).unwrap();
    assert!(reason.contains("may only obtain spiffe://cluster.local/ns/default/sa/reviews"));
    // Garbage is a clear 400.
    let junk = dir.join("junk.csr");
    std::fs::write(&junk, "not a csr").unwrap();
    assert_eq!(
        curl_sign(&service, &bundle, &junk, &client, &refused),
        "400"
    );

    // Five issuances per identity per minute: two so far, three more, then 429.
    for _ in 0..3 {
        assert_eq!(
            curl_sign(&service, &bundle, &renewal, &client, &renewed),
            "200"
        );
    }
    assert_eq!(
        curl_sign(&service, &bundle, &renewal, &client, &refused),
        "429"
    );

    // Every issuance and refusal is logged with the caller.
    let log = std::fs::read_to_string(&service.log).unwrap();
    assert_eq!(
        log.matches(&format!("issued {spiffe} serial")).count(),
        5,
        "{log}"
    );
    assert!(
        log.contains("(bootstrap token)") && log.contains("(client certificate)"),
        "{log}"
    );
    assert!(
        log.contains("refused 127.0.0.1:") && log.contains(": 429 "),
        "{log}"
    );

    // TLS 1.3, and the bundle is served too.
    let url = format!("https://{}/v1/bundle", service.addr);
    let served = Command::new("curl")
        .args(["-sS", "--tlsv1.3", "--cacert", path(&bundle), &url])
        .output()
        .unwrap();
    assert_eq!(served.stdout, std::fs::read(&bundle).unwrap());
}

//! meshca end to end: the real binary creates a CA and issues workload certificates that
//! OpenSSL, which nobody here wrote, accepts as SPIFFE X.509 SVIDs; roots rotate through a
//! two-root bundle.

use std::path::Path;
use std::process::{Command, Output};

use ringmesh_tests::*;

fn meshca(args: &[&str]) -> Output {
    Command::new(harness::binary("meshca").unwrap())
        .args(args)
        .output()
        .unwrap()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "meshca failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

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
    let created = ok(&meshca(&[
        "init",
        "--dir",
        path(&ca),
        "--trust-domain",
        "cluster.local",
        "--intermediate",
    ]));
    assert!(created.contains("cluster.local"), "{created}");
    let spiffe = "spiffe://cluster.local/ns/default/sa/reviews";
    let issued = ok(&meshca(&[
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
    let ca = scratch.path().join("ca");
    ok(&meshca(&[
        "init",
        "--dir",
        path(&ca),
        "--trust-domain",
        "cluster.local",
    ]));
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
    let ca = scratch.path().join("ca");
    ok(&meshca(&[
        "init",
        "--dir",
        path(&ca),
        "--trust-domain",
        "cluster.local",
        "--intermediate",
    ]));
    let issue = |name: &str| {
        let out = scratch.path().join(name);
        let spiffe = format!("spiffe://cluster.local/ns/default/sa/{name}");
        ok(&meshca(&[
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
    ok(&meshca(&["root", "add", "--dir", path(&ca)]));
    let new = issue("new");
    // The new leaf's bundle trusts both roots: old and new leaves verify against it.
    let both = new.join("bundle.pem");
    assert!(verifies(&old, &both) && verifies(&new, &both));
    // The old bundle does not know the new root.
    assert!(!verifies(&new, &old.join("bundle.pem")));
    ok(&meshca(&["root", "retire", "--dir", path(&ca)]));
    let bundle = scratch.path().join("bundle.pem");
    std::fs::write(&bundle, ok(&meshca(&["bundle", "--dir", path(&ca)]))).unwrap();
    assert!(verifies(&new, &bundle));
    assert!(
        !verifies(&old, &bundle),
        "a leaf of the retired root still verifies"
    );
    let last = meshca(&["root", "retire", "--dir", path(&ca)]);
    assert!(String::from_utf8_lossy(&last.stderr).contains("single root"));
}

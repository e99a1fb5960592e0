//! meshd with a workload identity from meshca (`--certs DIR`): loaded and checked at start,
//! reloaded when meshca re-issues into the directory, a bad set refused with a log line while
//! the current certificate stays, and expiry on admin `/certs`.

use std::path::Path;
use std::process::Command;

use ringmesh_tests::*;

const SPIFFE: &str = "spiffe://cluster.local/ns/default/sa/reviews";

fn issue(ca: &Path, out: &Path) {
    let (ca, out) = (ca.to_str().unwrap(), out.to_str().unwrap());
    succeeded(&meshca(&[
        "issue", "--dir", ca, "--spiffe", SPIFFE, "--ttl", "2h", "--out", out,
    ]));
}

fn certs(admin: std::net::SocketAddr) -> serde_json::Value {
    admin_json(admin, "/certs")
}

fn certificates_rotate_and_a_bad_set_is_refused(driver: &str) {
    let scratch = Scratch::new();
    let (ca, dir) = (new_ca(&scratch, true), scratch.path().join("certs"));
    issue(&ca, &dir);
    let snapshot = compile(
        &scratch,
        &one_service("web", "127.0.0.1:9".parse().unwrap()),
    );
    let log_path = scratch.path().join("meshd.log");
    let certs_dir = dir.to_str().unwrap();
    let args = ["--watch-interval", "20ms", "--certs", certs_dir];
    let meshd = start_logged(&snapshot, driver, &args, &log_path);

    let first = certs(meshd.admin);
    assert_eq!(first["spiffe_id"], SPIFFE, "{first}");
    let expires = first["expires_in_s"].as_i64().unwrap();
    assert!(expires > 3600 && expires <= 7200, "{first}");
    assert!(first["last_refusal"].is_null(), "{first}");

    // meshca re-issues into the same directory: meshd picks up the new serial.
    issue(&ca, &dir);
    wait_until(|| certs(meshd.admin)["serial"] != first["serial"]);
    let second = certs(meshd.admin);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("certificates reloaded:"), "{log}");

    // A certificate that does not parse is refused; the current one stays.
    let junk = scratch.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::rename(&junk, dir.join("cert.pem")).unwrap();
    wait_until(|| !certs(meshd.admin)["last_refusal"].is_null());
    let after = certs(meshd.admin);
    assert_eq!(after["serial"], second["serial"], "{after}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let refused = log
        .lines()
        .rfind(|l| l.contains("refused"))
        .unwrap_or_default();
    assert!(
        refused.contains("cert.pem") && refused.contains("keeping serial"),
        "{log}"
    );
}

on_both_drivers!(certificates_rotate_and_a_bad_set_is_refused);

#[test]
fn meshd_refuses_to_start_with_unusable_certificates() {
    let scratch = Scratch::new();
    let snapshot = compile(
        &scratch,
        &one_service("web", "127.0.0.1:9".parse().unwrap()),
    );
    let empty = scratch.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let output = Command::new(harness::binary("meshd").unwrap())
        .arg("--snapshot")
        .arg(&snapshot)
        .args([
            "--outbound",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--certs",
        ])
        .arg(&empty)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cert.pem"), "{stderr}");
}

fn bootstraps_with_a_token_and_renews_at_half_life(driver: &str) {
    let scratch = Scratch::new();
    let ca = new_ca(&scratch, true);
    let ca_dir = ca.to_str().unwrap();
    let token = succeeded(&meshca(&["token", "--dir", ca_dir, "--spiffe", SPIFFE]));
    let token_file = scratch.write("token", token);
    let bundle = succeeded(&meshca(&["bundle", "--dir", ca_dir]));
    let bundle_file = scratch.write("bundle.pem", bundle);
    // Ten-second certificates: renewed after about five.
    let service = CaService::start(&ca, &["--ttl", "10s"], scratch.path().join("meshca.log"));
    let dir = scratch.path().join("certs");
    let snapshot = compile(
        &scratch,
        &one_service("web", "127.0.0.1:9".parse().unwrap()),
    );
    let log_path = scratch.path().join("meshd.log");
    let addr = service.addr.to_string();
    let args = [
        "--watch-interval",
        "20ms",
        "--certs",
        dir.to_str().unwrap(),
        "--ca",
        &addr,
        "--ca-token-file",
        token_file.to_str().unwrap(),
        "--ca-bundle",
        bundle_file.to_str().unwrap(),
    ];
    let meshd = start_logged(&snapshot, driver, &args, &log_path);
    // The first certificate came from the token: the directory was empty.
    let first = certs(meshd.admin);
    assert_eq!(first["spiffe_id"], SPIFFE, "{first}");
    // Half way through its life it is renewed with itself as the credential.
    wait_until(|| certs(meshd.admin)["serial"] != first["serial"]);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("obtained a first certificate from meshca"),
        "{log}"
    );
    assert!(
        log.contains(&format!("renewed {SPIFFE} from meshca")),
        "{log}"
    );
    assert_eq!(certs(meshd.admin)["spiffe_id"], SPIFFE);
}

on_both_drivers!(bootstraps_with_a_token_and_renews_at_half_life);

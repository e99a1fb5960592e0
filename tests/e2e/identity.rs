//! meshd with a workload identity from meshca (`--certs DIR`): loaded and checked at start,
//! reloaded when meshca re-issues into the directory, a bad set refused with a log line while
//! the current certificate stays, and expiry on admin `/certs`.

use std::path::Path;
use std::process::Command;

use ringmesh_tests::*;

const SPIFFE: &str = "spiffe://cluster.local/ns/default/sa/reviews";

fn meshca(args: &[&str]) {
    let output = Command::new(harness::binary("meshca").unwrap())
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "meshca {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn issue(ca: &Path, out: &Path) {
    let (ca, out) = (ca.to_str().unwrap(), out.to_str().unwrap());
    meshca(&[
        "issue", "--dir", ca, "--spiffe", SPIFFE, "--ttl", "2h", "--out", out,
    ]);
}

fn certs(admin: std::net::SocketAddr) -> serde_json::Value {
    let text = Client::connect(admin)
        .unwrap()
        .get("admin", "/certs", &[])
        .unwrap()
        .text();
    serde_json::from_str(&text).unwrap()
}

fn certificates_rotate_and_a_bad_set_is_refused(driver: &str) {
    let scratch = Scratch::new();
    let (ca, dir) = (scratch.path().join("ca"), scratch.path().join("certs"));
    let ca_dir = ca.to_str().unwrap();
    meshca(&[
        "init",
        "--dir",
        ca_dir,
        "--trust-domain",
        "cluster.local",
        "--intermediate",
    ]);
    issue(&ca, &dir);
    let snapshot = compile(
        &scratch,
        &one_service("web", "127.0.0.1:9".parse().unwrap()),
    );
    let log_path = scratch.path().join("meshd.log");
    let mut command = Command::new(harness::binary("meshd").unwrap());
    command.stderr(std::fs::File::create(&log_path).unwrap());
    let certs_dir = dir.to_str().unwrap();
    let args = [
        "--cores",
        "1",
        "--io-driver",
        driver,
        "--watch-interval",
        "20ms",
        "--certs",
        certs_dir,
    ];
    let meshd = Sidecar::start_with(command, &snapshot, &args).expect("start meshd");

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
    assert!(log.contains("meshd: certificates reloaded:"), "{log}");

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

/// A running `meshca serve`, killed on drop.
struct CaService(std::process::Child, std::net::SocketAddr);

impl Drop for CaService {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ca_service(ca: &Path, ttl: &str) -> CaService {
    use std::io::BufRead;
    let mut child = Command::new(harness::binary("meshca").unwrap())
        .args([
            "serve",
            "--dir",
            ca.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--ttl", ttl])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("meshca serving on ")
        .unwrap()
        .parse()
        .unwrap();
    CaService(child, addr)
}

fn bootstraps_with_a_token_and_renews_at_half_life(driver: &str) {
    let scratch = Scratch::new();
    let ca = scratch.path().join("ca");
    let ca_dir = ca.to_str().unwrap();
    meshca(&[
        "init",
        "--dir",
        ca_dir,
        "--trust-domain",
        "cluster.local",
        "--intermediate",
    ]);
    let token = Command::new(harness::binary("meshca").unwrap())
        .args(["token", "--dir", ca_dir, "--spiffe", SPIFFE])
        .output()
        .unwrap();
    let token_file = scratch.write("token", &token.stdout);
    let bundle = Command::new(harness::binary("meshca").unwrap())
        .args(["bundle", "--dir", ca_dir])
        .output()
        .unwrap();
    let bundle_file = scratch.write("bundle.pem", &bundle.stdout);
    // Ten-second certificates: renewed after about five.
    let service = ca_service(&ca, "10s");
    let dir = scratch.path().join("certs");
    let snapshot = compile(
        &scratch,
        &one_service("web", "127.0.0.1:9".parse().unwrap()),
    );
    let log_path = scratch.path().join("meshd.log");
    let mut command = Command::new(harness::binary("meshd").unwrap());
    command.stderr(std::fs::File::create(&log_path).unwrap());
    let addr = service.1.to_string();
    let args = [
        "--cores",
        "1",
        "--io-driver",
        driver,
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
    let meshd = Sidecar::start_with(command, &snapshot, &args).expect("start meshd");
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

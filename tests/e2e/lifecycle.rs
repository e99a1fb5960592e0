//! Starting, refusing bad snapshots, and draining on SIGTERM.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use ringmesh_tests::*;
use tools::load::{self, Config, Rate};

#[test]
fn corrupted_snapshot_is_refused_with_a_clear_message() {
    let up = Upstream::start("v1").unwrap();
    let scratch = Scratch::new();
    let config = one_service("s", up.addr());
    let snapshot = compile(&scratch, &config);
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let corrupted = scratch.write("corrupted.snap", &bytes);
    let truncated = scratch.write("truncated.snap", &bytes[..30]);
    for (path, expected) in [
        (&corrupted, "content hash mismatch"),
        (&truncated, "truncated snapshot"),
    ] {
        let output = Command::new(harness::binary("meshd").unwrap())
            .args(["--snapshot"])
            .arg(path)
            .args(["--outbound", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("refusing snapshot"), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(output.stdout.is_empty(), "meshd said it was ready");
    }
}

#[test]
fn unknown_workload_is_refused_naming_the_known_ones() {
    let scratch = Scratch::new();
    let config = "service s {\n  port 80 http\n  endpoint 127.0.0.1:1\n}\n\
                  workload web {\n  inbound 80 http -> 127.0.0.1:2\n}\n";
    let snapshot = compile(&scratch, config);
    let output = Command::new(harness::binary("meshd").unwrap())
        .arg("--snapshot")
        .arg(&snapshot)
        .args([
            "--workload",
            "api",
            "--outbound",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown workload `api`; the snapshot has: web"),
        "{stderr}"
    );
}

/// An upstream that holds the first request until told to answer.
fn held_upstream() -> (std::net::SocketAddr, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (received_tx, received) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            conn.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        received_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nfinished")
            .unwrap();
    });
    (addr, received, release)
}

fn sigterm_finishes_the_request_in_flight(driver: &str) {
    let (addr, received, release) = held_upstream();
    let scratch = Scratch::new();
    let config = one_service("slow", addr);
    let mut meshd = serve(&scratch, &config, driver, &["--drain-timeout", "20s"]);
    let outbound = meshd.outbound;
    let in_flight = std::thread::spawn(move || {
        let mut client = Client::connect(outbound).unwrap();
        client.get("slow", "/", &[]).unwrap()
    });
    received.recv().unwrap();
    meshd.signal_terminate().unwrap();
    // Draining closes the listeners; wait for that before releasing the response.
    let admin = meshd.admin;
    wait_until(|| {
        Client::connect(admin)
            .and_then(|mut c| c.get("admin", "/ready", &[]))
            .map_or(true, |r| r.status == 503)
    });
    release.send(()).unwrap();
    let response = in_flight.join().unwrap();
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "finished")
    );
    let status = meshd.wait().unwrap();
    assert!(status.success(), "meshd exited with {status}");
}

fn idle_sidecar_exits_cleanly_on_sigterm(driver: &str) {
    let scratch = Scratch::new();
    let meshd = serve(
        &scratch,
        "service s {\n  port 80 http\n  endpoint 127.0.0.1:1\n}\n",
        driver,
        &[],
    );
    // An idle keep-alive connection must not hold the drain open.
    let mut idle = Client::connect(meshd.outbound).unwrap();
    let _ = idle.get("s", "/", &[]).unwrap();
    let status = meshd.terminate().unwrap();
    assert!(status.success(), "meshd exited with {status}");
}

/// Every request meshd accepted (read and forwarded: the upstream saw it) gets its 200 while
/// it drains under load. Requests it never took — a connect after the listener closed, a
/// request written into a keep-alive connection meshd closed while it was idle — fail on the
/// client side and are not counted against it.
fn sigterm_under_load_fails_no_accepted_request(driver: &str) {
    let up = Upstream::start("app").unwrap();
    let scratch = Scratch::new();
    let config = one_service("app", up.addr());
    let mut meshd = serve(&scratch, &config, driver, &["--drain-timeout", "10s"]);
    // Each answer takes 20 ms, so about 20 requests are in flight when the signal lands.
    let target = format!("http://{}/slow/20", meshd.outbound)
        .parse()
        .unwrap();
    let mut load_config = Config::new(target, Rate::PerSecond(1000.0), Duration::from_secs(3));
    load_config.headers.push(("host".into(), "app".into()));
    load_config.connections = Some(64);
    let load = std::thread::spawn(move || load::run(&load_config).unwrap());
    wait_until(|| up.requests() >= 500);
    meshd.signal_terminate().unwrap();
    let status = meshd.wait().unwrap();
    assert!(status.success(), "meshd exited with {status}");
    let report = load.join().unwrap();
    let ok = report.status.get(&200).copied().unwrap_or(0);
    assert_eq!(report.status.keys().copied().max(), Some(200), "{report}");
    assert_eq!(report.errors.timeout, 0, "{report}");
    assert_eq!(
        ok,
        up.requests(),
        "the upstream answered requests the client never got: {report}"
    );
}

on_both_drivers!(
    sigterm_finishes_the_request_in_flight,
    idle_sidecar_exits_cleanly_on_sigterm,
    sigterm_under_load_fails_no_accepted_request,
);

fn admin_drain_stops_accepting_but_stays_up_until_sigterm(driver: &str) {
    let up = Upstream::start("v1").unwrap();
    let scratch = Scratch::new();
    let config = one_service("s", up.addr());
    let mut meshd = serve(&scratch, &config, driver, &[]);
    let mut kept = Client::connect(meshd.outbound).unwrap();
    assert_eq!(kept.get("s", "/", &[]).unwrap().status, 200);

    let admin = meshd.admin;
    let reply = Client::connect(admin)
        .unwrap()
        .request("POST", "admin", "/drain", &[], b"")
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let ready = Client::connect(admin)
        .unwrap()
        .get("admin", "/ready", &[])
        .unwrap();
    assert_eq!(ready.status, 503);
    // The listeners close: new connections are refused once every core has drained.
    let outbound = meshd.outbound;
    wait_until(|| std::net::TcpStream::connect(outbound).is_err());
    // The process is still up (admin answers) until a signal.
    assert_eq!(
        Client::connect(admin)
            .unwrap()
            .get("admin", "/healthz", &[])
            .unwrap()
            .status,
        200
    );
    meshd.signal_terminate().unwrap();
    assert!(meshd.wait().unwrap().success());
}

on_both_drivers!(admin_drain_stops_accepting_but_stays_up_until_sigterm);

/// What cannot work is refused at start, each error said once: no worker at all, a port
/// another process listens on (another meshd included: SO_REUSEPORT would have shared it),
/// a certificate directory that is not there.
#[test]
fn what_cannot_work_is_refused_at_start_once() {
    let scratch = Scratch::new();
    let snapshot = compile(&scratch, &one_service("web", free_port()));
    let stderr = refused_at_start(&snapshot, &["--cores", "0"]);
    assert!(
        stderr.contains("'--cores <CORES>': must be at least 1"),
        "{stderr}"
    );

    let running = Sidecar::start(&snapshot, &[]).unwrap();
    let taken = running.outbound.to_string();
    let stderr = refused_at_start(&snapshot, &["--outbound", &taken]);
    let said =
        format!("cannot listen on outbound {taken}: the address is in use by another process");
    assert!(stderr.contains(&said), "{stderr}");
    let foreign = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = foreign.local_addr().unwrap().to_string();
    let stderr = refused_at_start(&snapshot, &["--outbound", &taken]);
    assert!(stderr.contains("in use by another process"), "{stderr}");

    let missing = scratch.path().join("no-certs");
    let stderr = refused_at_start(&snapshot, &["--certs", missing.to_str().unwrap()]);
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}

//! Snapshot reload: admin POST /reload, SIGHUP and a changed file all switch every core
//! between requests; a bad snapshot is refused and the old one keeps serving.

use std::process::Command;

use ringmesh_tests::*;
use tools::load::Report;

fn config(stable: &str, v1: &Upstream, v2: &Upstream) -> String {
    format!(
        r#"
service reviews {{
  port 9080 http
  endpoint {a} {{ version = "v1" }}
  endpoint {b} {{ version = "v2" }}
  subset v1 {{ version = "v1" }}
  subset v2 {{ version = "v2" }}
}}
route reviews {{
  rule stable {{ to reviews/{stable} }}
}}
"#,
        a = v1.addr(),
        b = v2.addr()
    )
}

fn reload(admin: std::net::SocketAddr) -> Response {
    Client::connect(admin)
        .unwrap()
        .request("POST", "admin", "/reload", &[], b"")
        .unwrap()
}

fn admin_reload_switches_routing_and_refuses_bad_snapshots(driver: &str) {
    let (v1, v2) = (
        Upstream::start("v1").unwrap(),
        Upstream::start("v2").unwrap(),
    );
    let scratch = Scratch::new();
    let meshd = serve(
        &scratch,
        &config("v1", &v1, &v2),
        driver,
        &["--watch-interval", "0s"],
    );
    let mut client = Client::connect(meshd.outbound).unwrap();
    assert_eq!(client.get("reviews", "/", &[]).unwrap().text(), "v1");

    compile(&scratch, &config("v2", &v1, &v2));
    let reply = reload(meshd.admin);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let hash = reply
        .text()
        .trim()
        .strip_prefix("serving snapshot ")
        .unwrap()
        .to_owned();
    assert_ne!(hash, meshd.snapshot_hash);
    // The same keep-alive connection routes by the new snapshot from its next request.
    assert_eq!(client.get("reviews", "/", &[]).unwrap().text(), "v2");
    assert_eq!(client.connections(), 1);

    std::fs::write(
        scratch.path().join("mesh.snap"),
        b"not a snapshot at all, clearly",
    )
    .unwrap();
    let refused = reload(meshd.admin);
    assert_eq!(refused.status, 422);
    assert!(
        refused.text().contains("refusing snapshot"),
        "{}",
        refused.text()
    );
    assert!(refused.text().contains("bad magic"), "{}", refused.text());
    assert_eq!(
        client.get("reviews", "/", &[]).unwrap().text(),
        "v2",
        "the old snapshot stopped serving"
    );
    let config = Client::connect(meshd.admin)
        .unwrap()
        .get("admin", "/config", &[])
        .unwrap();
    assert!(
        config.text().contains(&hash),
        "/config does not show the serving snapshot"
    );
}

fn sighup_reloads(driver: &str) {
    let (v1, v2) = (
        Upstream::start("v1").unwrap(),
        Upstream::start("v2").unwrap(),
    );
    let scratch = Scratch::new();
    let meshd = serve(
        &scratch,
        &config("v1", &v1, &v2),
        driver,
        &["--watch-interval", "0s"],
    );
    compile(&scratch, &config("v2", &v1, &v2));
    let status = Command::new("kill")
        .args(["-HUP", &meshd.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut client = Client::connect(meshd.outbound).unwrap();
    wait_until(|| client.get("reviews", "/", &[]).unwrap().text() == "v2");
}

fn changed_snapshot_file_reloads(driver: &str) {
    let (v1, v2) = (
        Upstream::start("v1").unwrap(),
        Upstream::start("v2").unwrap(),
    );
    let scratch = Scratch::new();
    let meshd = serve(
        &scratch,
        &config("v1", &v1, &v2),
        driver,
        &["--watch-interval", "50ms"],
    );
    compile(&scratch, &config("v2", &v1, &v2));
    let mut client = Client::connect(meshd.outbound).unwrap();
    wait_until(|| client.get("reviews", "/", &[]).unwrap().text() == "v2");
}

/// One of several meshes to swap between: weights, rules and the endpoint set all change.
fn variant(i: usize, ups: &[Upstream; 3]) -> String {
    let [a, b, c] = [ups[0].addr(), ups[1].addr(), ups[2].addr()];
    let (endpoints, route) = match i % 4 {
        0 => (
            vec![(a, "v1"), (b, "v2")],
            "to reviews/v1 weight 90\n    to reviews/v2 weight 10",
        ),
        1 => (
            vec![(a, "v1"), (b, "v2")],
            "to reviews/v1 weight 50\n    to reviews/v2 weight 50",
        ),
        2 => (vec![(a, "v1"), (c, "v2")], "to reviews/v2"),
        _ => (vec![(c, "v1"), (b, "v2")], "to reviews"),
    };
    let endpoints: String = endpoints
        .iter()
        .map(|(addr, v)| format!("  endpoint {addr} {{ version = \"{v}\" }}\n"))
        .collect();
    format!(
        "service reviews {{\n  port 9080 http\n{endpoints}  subset v1 {{ version = \"v1\" }}\n  \
         subset v2 {{ version = \"v2\" }}\n}}\nroute reviews {{\n  rule r{i} {{\n    {route}\n  }}\n}}\n"
    )
}

fn twenty_swaps_under_load_fail_no_request(driver: &str) {
    let ups = [
        Upstream::start("a").unwrap(),
        Upstream::start("b").unwrap(),
        Upstream::start("c").unwrap(),
    ];
    let scratch = Scratch::new();
    // Two cores: every one of them must switch between requests.
    let snapshot = compile(&scratch, &variant(0, &ups));
    let args = [
        "--cores",
        "2",
        "--io-driver",
        driver,
        "--watch-interval",
        "0s",
    ];
    let meshd = Sidecar::start(&snapshot, &args).expect("start meshd");
    // The real meshload binary, 2000 req/s for 5 s.
    let json = scratch.path().join("load.json");
    let mut load = Command::new(harness::binary("meshload").unwrap())
        .arg(format!("http://{}/", meshd.outbound))
        .args([
            "--rate",
            "2000",
            "--duration",
            "5s",
            "-H",
            "host: reviews",
            "--json",
        ])
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let served = || ups.iter().map(Upstream::requests).sum::<u64>();
    for i in 1..=20 {
        // Pace the swaps by traffic, not by the clock: 150 more requests between swaps.
        let before = served();
        wait_until(|| served() >= before + 150);
        compile(&scratch, &variant(i, &ups));
        let reply = reload(meshd.admin);
        assert_eq!(reply.status, 200, "swap {i}: {}", reply.text());
    }
    assert!(load.wait().unwrap().success(), "meshload failed");
    let report: Report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report.errors.total(), 0, "{report}");
    assert_eq!(report.unsent, 0, "{report}");
    assert_eq!(
        report.status.keys().copied().collect::<Vec<_>>(),
        [200],
        "{report}"
    );
    assert!(report.responses >= 9_000, "{report}");
    // Endpoint c exists only in some variants: traffic reaching it shows the swaps took effect.
    assert!(
        ups[2].requests() > 0,
        "no request reached the endpoint added by a reload"
    );
}

fn bad_snapshots_from_the_file_or_sighup_are_refused_with_a_log_line(driver: &str) {
    let (v1, v2) = (
        Upstream::start("v1").unwrap(),
        Upstream::start("v2").unwrap(),
    );
    let scratch = Scratch::new();
    let snapshot = compile(&scratch, &config("v1", &v1, &v2));
    let log_path = scratch.path().join("meshd.log");
    let args = ["--watch-interval", "20ms"];
    let meshd = start_logged(&snapshot, driver, &args, &log_path);
    let log = || std::fs::read_to_string(&log_path).unwrap();
    let expected = format!("still serving {}", meshd.snapshot_hash);
    // Only whole lines: stderr is unbuffered, so a line can be read half written.
    let refusals = || {
        log()
            .lines()
            .filter(|l| l.contains("refused") && l.ends_with(&expected))
            .count()
    };

    // Truncated mid-header, as a copy cut short would leave it.
    let good = std::fs::read(&snapshot).unwrap();
    // Renamed into place, so the watcher sees one change, not a truncation then a write.
    let partial = scratch.path().join("partial.snap");
    std::fs::write(&partial, &good[..10]).unwrap();
    std::fs::rename(&partial, &snapshot).unwrap();
    wait_until(|| refusals() == 1);
    let line = log()
        .lines()
        .find(|l| l.contains("refused"))
        .unwrap()
        .to_owned();
    assert!(line.contains(&expected), "{line}");
    assert!(
        line.contains("truncated"),
        "the reason is not named: {line}"
    );

    let status = Command::new("kill")
        .args(["-HUP", &meshd.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_until(|| refusals() == 2);
    let last = log()
        .lines()
        .rfind(|l| l.contains("refused"))
        .unwrap()
        .to_owned();
    assert!(
        last.contains("SIGHUP") && last.contains(&expected),
        "{last}"
    );

    let mut client = Client::connect(meshd.outbound).unwrap();
    assert_eq!(client.get("reviews", "/", &[]).unwrap().text(), "v1");
}

fn pools_to_removed_endpoints_drain(driver: &str) {
    let (a, b) = (Upstream::start("a").unwrap(), Upstream::start("b").unwrap());
    let scratch = Scratch::new();
    let meshd = serve(
        &scratch,
        &one_service("web", a.addr()),
        driver,
        &["--watch-interval", "0s"],
    );
    // A request is in flight to `a` while a reload replaces `a` with `b`.
    a.hold_next(1);
    let outbound = meshd.outbound;
    let held = std::thread::spawn(move || {
        Client::connect(outbound)
            .unwrap()
            .get("web", "/", &[])
            .unwrap()
    });
    wait_until(|| a.requests() == 1);
    compile(&scratch, &one_service("web", b.addr()));
    assert_eq!(reload(meshd.admin).status, 200);
    let mut client = Client::connect(meshd.outbound).unwrap();
    assert_eq!(client.get("web", "/", &[]).unwrap().text(), "b");
    // The old request finishes on the old state; its connection is closed, not pooled.
    a.release();
    assert_eq!(held.join().unwrap().text(), "a");
    // Bring `a` back: a pooled connection would be reused, a drained one is gone.
    compile(&scratch, &one_service("web", a.addr()));
    assert_eq!(reload(meshd.admin).status, 200);
    assert_eq!(client.get("web", "/", &[]).unwrap().text(), "a");
    assert_eq!(
        a.connections(),
        2,
        "the connection to the removed endpoint was pooled"
    );
}

on_both_drivers!(
    bad_snapshots_from_the_file_or_sighup_are_refused_with_a_log_line,
    pools_to_removed_endpoints_drain,
    admin_reload_switches_routing_and_refuses_bad_snapshots,
    sighup_reloads,
    changed_snapshot_file_reloads,
    twenty_swaps_under_load_fail_no_request,
);

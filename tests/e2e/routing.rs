//! Host, header and weighted routing through meshd.

use ringmesh_tests::*;

fn header_match_routes_to_the_right_subset(driver: &str) {
    let (v1, v2) = (
        Upstream::start("v1").unwrap(),
        Upstream::start("v2").unwrap(),
    );
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &canary_config(&v1, &v2), driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    for _ in 0..20 {
        let canary = client.get("reviews", "/", &[("x-canary", "true")]).unwrap();
        assert_eq!((canary.status, canary.text().as_str()), (200, "v2"));
        let stable = client
            .get("reviews:9080", "/", &[("x-canary", "false")])
            .unwrap();
        assert_eq!((stable.status, stable.text().as_str()), (200, "v1"));
    }
    let fqdn = client
        .get("reviews.default.svc.cluster.local", "/", &[])
        .unwrap();
    assert_eq!(fqdn.text(), "v1");
}

fn weighted_split_holds_over_2000_requests(driver: &str) {
    let (v1, v2) = (
        Upstream::start("v1").unwrap(),
        Upstream::start("v2").unwrap(),
    );
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &canary_config(&v1, &v2), driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    let mut to_v2 = 0;
    const N: u32 = 2000;
    for _ in 0..N {
        let response = client.get("reviews", "/split", &[]).unwrap();
        assert_eq!(response.status, 200);
        if response.header("x-upstream") == Some("v2") {
            to_v2 += 1;
        }
    }
    // Binomial(2000, 0.1): mean 200, sd 13.4; ±5 sd fails by chance about once in 10^6 runs.
    assert!(
        (133..=267).contains(&to_v2),
        "v2 got {to_v2} of {N}, expected about 200"
    );
    assert_eq!(v1.requests() + v2.requests(), u64::from(N));
}

fn keep_alive_is_used_in_both_directions(driver: &str) {
    let (v1, v2) = (
        Upstream::start("v1").unwrap(),
        Upstream::start("v2").unwrap(),
    );
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &canary_config(&v1, &v2), driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    for _ in 0..50 {
        assert_eq!(client.get("reviews", "/", &[]).unwrap().status, 200);
    }
    assert_eq!(client.connections(), 1, "the client had to reconnect");
    assert_eq!(v1.requests(), 50);
    assert_eq!(
        v1.connections(),
        1,
        "meshd opened a new upstream connection per request"
    );
}

fn inbound_listener_forwards_to_the_workload(driver: &str) {
    let app = Upstream::start("productpage-app").unwrap();
    let scratch = Scratch::new();
    let config = format!(
        r#"
service details {{
  port 9080 http
  endpoint 127.0.0.1:1
}}
workload productpage {{
  identity "spiffe://cluster.local/ns/default/sa/productpage"
  inbound 9080 http -> {app}
  outbound details
}}
"#,
        app = app.addr()
    );
    let meshd = serve(&scratch, &config, driver, &["--workload", "productpage"]);
    let inbound = meshd.inbound.expect("inbound listener");
    let mut client = Client::connect(inbound).unwrap();
    let response = client.get("productpage:9080", "/", &[]).unwrap();
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "productpage-app")
    );
}

on_both_drivers!(
    header_match_routes_to_the_right_subset,
    weighted_split_holds_over_2000_requests,
    keep_alive_is_used_in_both_directions,
    inbound_listener_forwards_to_the_workload,
);

#[test]
fn every_core_gets_a_worker_sharing_one_port() {
    let (v1, v2) = (
        Upstream::start("v1").unwrap(),
        Upstream::start("v2").unwrap(),
    );
    let scratch = Scratch::new();
    let snapshot = compile(&scratch, &canary_config(&v1, &v2));
    let meshd = Sidecar::start(&snapshot, &["--cores", "2"]).unwrap();
    // SO_REUSEPORT spreads connections across both workers; every one must be served.
    for _ in 0..32 {
        let response = Client::connect(meshd.outbound)
            .unwrap()
            .get("reviews", "/", &[])
            .unwrap();
        assert_eq!((response.status, response.text().as_str()), (200, "v1"));
    }
    assert!(meshd.terminate().unwrap().success());
}

fn endpoint_weights_are_honoured(driver: &str) {
    let (heavy, light) = (
        Upstream::start("heavy").unwrap(),
        Upstream::start("light").unwrap(),
    );
    let scratch = Scratch::new();
    let config = format!(
        "service s {{\n  port 80 http\n  endpoint {} weight 3\n  endpoint {} weight 1\n}}\n",
        heavy.addr(),
        light.addr()
    );
    let meshd = serve(&scratch, &config, driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    for _ in 0..400 {
        assert_eq!(client.get("s", "/", &[]).unwrap().status, 200);
    }
    // One core, one balancer cursor: smooth weighted round robin is exact over whole cycles.
    assert_eq!((heavy.requests(), light.requests()), (300, 100));
}

on_both_drivers!(endpoint_weights_are_honoured);

//! Bookinfo as Istio's "Request routing" task applies it: the unmodified Kubernetes platform
//! manifest, `destination-rule-all.yaml` and `virtual-service-reviews-test-v2.yaml`, plus the
//! Pods and EndpointSlices a cluster would report (`kubectl get pods,endpointslices -o yaml`).
//! The reviews-v1 Pod's address is 127.0.0.2, its sidecar's inbound listener; its application
//! listens on 127.0.0.1 at the same port, as beside Istio's sidecar in a Pod.

use std::net::SocketAddr;

use super::*;

const V1_POD: &str = "reviews-v1-5c8d7b6f4-k2x9q";
const V2_POD: &str = "reviews-v2-7f6c9d8b5-m4p7z";

/// The cluster's state: reviews-v1's Pod at `v1_pod`, reviews-v2's at `v2_pod`.
fn cluster(v1_pod: SocketAddr, v2_pod: SocketAddr) -> String {
    let items = [
        pod(("reviews", "v1"), V1_POD, v1_pod.ip()),
        pod(("reviews", "v2"), V2_POD, v2_pod.ip()),
        slice("reviews", "reviews-a1b2c", V1_POD, v1_pod),
        slice("reviews", "reviews-d3e4f", V2_POD, v2_pod),
    ];
    list(&items)
}

fn reviews_routes_jason_to_v2_through_the_pods_and_their_sidecar(driver: &str) {
    let (v1, v2) = (
        Upstream::start("v1").unwrap(),
        Upstream::start("v2").unwrap(),
    );
    let v1_pod = SocketAddr::from(([127, 0, 0, 2], v1.addr().port()));
    let scratch = Scratch::new();
    let files = [
        (
            "bookinfo.yaml",
            sample("bookinfo__platform__kube__bookinfo.yaml"),
        ),
        (
            "destination-rule-all.yaml",
            sample("bookinfo__networking__destination-rule-all.yaml"),
        ),
        (
            "virtual-service-reviews-test-v2.yaml",
            sample("bookinfo__networking__virtual-service-reviews-test-v2.yaml"),
        ),
        ("cluster.yaml", cluster(v1_pod, v2.addr())),
    ];
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (*n, t.as_str()))
        .chain([LOG_EVERY_REQUEST])
        .collect();
    let snapshot = compile_yaml(&scratch, "bookinfo", &files);

    let inbound = v1_pod.to_string();
    let args = ["--workload", V1_POD, "--inbound", &inbound];
    let sidecar = start_logged(
        &snapshot,
        driver,
        &args,
        &scratch.path().join("reviews-v1.log"),
    );
    let access_log = scratch.path().join("caller-access.log");
    let log_arg = ["--access-log", access_log.to_str().unwrap()];
    let caller = start_logged(
        &snapshot,
        driver,
        &log_arg,
        &scratch.path().join("caller.log"),
    );
    let logged = Logged {
        outbound: caller.outbound,
        log: &access_log,
    };
    let mut client = Client::connect(caller.outbound).unwrap();
    for host in [
        "reviews",
        "reviews:9080",
        "reviews.default.svc.cluster.local",
    ] {
        let jason = client.get(host, "/", &[("end-user", "jason")]).unwrap();
        assert_eq!((jason.status, jason.text().as_str()), (200, "v2"), "{host}");
        let anyone = client.get(host, "/", &[]).unwrap();
        assert_eq!(
            (anyone.status, anyone.text().as_str()),
            (200, "v1"),
            "{host}"
        );
        explain_agrees(
            &snapshot,
            &logged,
            host,
            &[("end-user", "jason")],
            &["v2".into()],
        );
        explain_agrees(&snapshot, &logged, host, &[], &["v1".into()]);
    }
    // v1's requests (three, and explain_agrees's three probes) came through the Pod's sidecar,
    // which forwards to the application, and its metrics name the Pod's workload by its
    // labels, as Istio's do.
    assert_eq!(v1.requests(), 6);
    let served = [
        "reporter=\"destination\"",
        "destination_app=\"reviews\"",
        "destination_version=\"v1\"",
        "destination_service=\"reviews.default.svc.cluster.local\"",
        "response_code=\"200\"",
    ];
    let counted = || {
        let text = Client::connect(sidecar.admin)
            .and_then(|mut c| c.get("admin", "/metrics", &[]))
            .map(|r| r.text())
            .unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("istio_requests_total{"))
            .filter(|l| served.iter().all(|label| l.contains(label)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u32>().ok())
            .sum::<u32>()
    };
    wait_until(|| counted() == 6);
    let direct = Client::connect(v1_pod)
        .and_then(|mut c| c.get("reviews", "/", &[]))
        .unwrap();
    assert_eq!((direct.status, direct.text().as_str()), (200, "v1"));
}

on_both_drivers!(reviews_routes_jason_to_v2_through_the_pods_and_their_sidecar);

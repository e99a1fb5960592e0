//! Bookinfo's Kubernetes platform manifest compiled with its networking samples, as Istio's
//! task pages apply them.

use std::path::{Path, PathBuf};

use compiler::compile;

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/corpus/istio/samples")
        .join(name)
}

fn inputs(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut inputs = vec![
        sample("bookinfo__platform__kube__bookinfo.yaml"),
        sample("bookinfo__networking__destination-rule-all.yaml"),
        sample("bookinfo__networking__virtual-service-all-v1.yaml"),
    ];
    inputs.extend_from_slice(extra);
    inputs
}

const REVIEWS: &str = "reviews.default.svc.cluster.local";

#[test]
fn bookinfo_services_have_subsets_and_deployments_serve_them() {
    let compiled = compile(&inputs(&[])).unwrap_or_else(|f| panic!("{}", f.render()));
    let snapshot = &compiled.snapshot;
    for name in ["details", "productpage", "ratings", "reviews"] {
        let host = format!("{name}.default.svc.cluster.local");
        let (_, service) = snapshot.service(&host).expect("service");
        assert_eq!(service.ports[0].number, 9080);
        assert!(service.endpoints.is_empty());
    }
    let (index, reviews) = snapshot.service(REVIEWS).expect("reviews");
    let subsets: Vec<&str> = reviews.subsets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(subsets, ["v1", "v2", "v3"]);
    assert!(reviews.subsets.iter().all(|s| s.endpoints.is_empty()));
    for version in ["v1", "v2", "v3"] {
        let workload = snapshot
            .workload(&format!("reviews-{version}"))
            .expect("workload");
        assert_eq!(
            workload.identity.as_deref(),
            Some("spiffe://cluster.local/ns/default/sa/bookinfo-reviews")
        );
        assert_eq!(workload.serves, [index]);
        assert_eq!(workload.inbound[0].port, 9080);
        assert_eq!(workload.inbound[0].target.to_string(), "127.0.0.1:9080");
    }
}

const PODS_AND_SLICES: &str = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: reviews-v1-545db77b95-abcde, labels: {app: reviews, version: v1}}
  spec: {serviceAccountName: bookinfo-reviews, containers: [{name: reviews}]}
  status: {podIP: 10.1.0.11}
- apiVersion: v1
  kind: Pod
  metadata: {name: reviews-v2-7bf8c9648f-fghij, labels: {app: reviews, version: v2}}
  spec: {serviceAccountName: bookinfo-reviews, containers: [{name: reviews}]}
  status: {podIP: 10.1.0.12}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: reviews-x7k2p, labels: {kubernetes.io/service-name: reviews}}
  addressType: IPv4
  ports: [{name: http, port: 9080, protocol: TCP}]
  endpoints:
  - addresses: [10.1.0.11]
    conditions: {ready: true}
    targetRef: {kind: Pod, name: reviews-v1-545db77b95-abcde, namespace: default}
  - addresses: [10.1.0.12]
    conditions: {ready: true}
    targetRef: {kind: Pod, name: reviews-v2-7bf8c9648f-fghij, namespace: default}
";

#[test]
fn bookinfo_with_endpoint_slices_puts_each_pod_in_its_subset() {
    let file = std::env::temp_dir().join(format!("bookinfo-slices-{}.yaml", std::process::id()));
    std::fs::write(&file, PODS_AND_SLICES).expect("write the slices");
    let result = compile(&inputs(std::slice::from_ref(&file)));
    let _ = std::fs::remove_file(&file);
    let compiled = result.unwrap_or_else(|f| panic!("{}", f.render()));
    let (_, reviews) = compiled.snapshot.service(REVIEWS).expect("reviews");
    let addresses: Vec<String> = reviews
        .endpoints
        .iter()
        .map(|e| e.address.to_string())
        .collect();
    assert_eq!(addresses, ["10.1.0.11:9080", "10.1.0.12:9080"]);
    let members: Vec<&[u32]> = reviews
        .subsets
        .iter()
        .map(|s| s.endpoints.as_slice())
        .collect();
    assert_eq!(members, [&[0][..], &[1], &[]]);
    let pod = compiled
        .snapshot
        .workload("reviews-v2-7bf8c9648f-fghij")
        .expect("pod");
    assert_eq!(pod.inbound[0].port, 9080);
}

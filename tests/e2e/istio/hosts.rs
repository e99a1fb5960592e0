//! The host names Istio gives a service: a ServiceEntry declared by its FQDN, routed by a
//! VirtualService and DestinationRule that use its short name, answers to every name of the
//! caller's DNS search path, with and without the port.

use super::*;

fn reviews_by_fqdn(v1: &Upstream, v2: &Upstream) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: 9080, name: http, protocol: HTTP}}
  endpoints:
  - {{address: {v1_ip}, ports: {{http: {v1_port}}}, labels: {{version: v1}}}}
  - {{address: {v2_ip}, ports: {{http: {v2_port}}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: default
spec:
  host: reviews
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        end-user: {{exact: jason}}
    route:
    - destination: {{host: reviews, subset: v2}}
  - route:
    - destination: {{host: reviews, subset: v1}}
"#,
        v1_ip = v1.addr().ip(),
        v1_port = v1.addr().port(),
        v2_ip = v2.addr().ip(),
        v2_port = v2.addr().port(),
    )
}

const NAMES: [&str; 4] = [
    "reviews",
    "reviews.default",
    "reviews.default.svc",
    "reviews.default.svc.cluster.local",
];

fn every_search_path_name_routes_with_and_without_the_port(driver: &str) {
    let (v1, v2) = (
        Upstream::start("v1").unwrap(),
        Upstream::start("v2").unwrap(),
    );
    let scratch = Scratch::new();
    let yaml = reviews_by_fqdn(&v1, &v2);
    let files = [("reviews.yaml", yaml.as_str()), LOG_EVERY_REQUEST];
    let snapshot = compile_yaml(&scratch, "mesh", &files);
    let access_log = scratch.path().join("access.log");
    let log_arg = access_log.to_str().unwrap();
    let args = [
        "--cores",
        "1",
        "--io-driver",
        driver,
        "--access-log",
        log_arg,
    ];
    let meshd = Sidecar::start(&snapshot, &args).unwrap();
    let logged = Logged {
        outbound: meshd.outbound,
        log: &access_log,
    };
    let mut client = Client::connect(meshd.outbound).unwrap();
    for name in NAMES {
        for host in [name.to_owned(), format!("{name}:9080")] {
            let plain = client.get(&host, "/", &[]).unwrap();
            assert_eq!((plain.status, plain.text().as_str()), (200, "v1"), "{host}");
            explain_agrees(&snapshot, &logged, &host, &[], &["v1".into()]);
            let jason = client.get(&host, "/", &[("end-user", "jason")]).unwrap();
            assert_eq!((jason.status, jason.text().as_str()), (200, "v2"), "{host}");
            let end_user = [("end-user", "jason")];
            explain_agrees(&snapshot, &logged, &host, &end_user, &["v2".into()]);
        }
    }
    for other in [
        "reviews.other",
        "reviews.other.svc.cluster.local",
        "reviews.default.svc.cluster",
    ] {
        let response = client.get(other, "/", &[]).unwrap();
        assert_eq!(response.status, 404, "{other}");
        assert!(explain(&snapshot, None, &format!("http://{other}/"), &[])["route"].is_null());
    }
}

fn a_short_name_belongs_to_the_callers_namespace(driver: &str) {
    let (v1, v2) = (
        Upstream::start("v1").unwrap(),
        Upstream::start("v2").unwrap(),
    );
    let scratch = Scratch::new();
    let yaml = reviews_by_fqdn(&v1, &v2);
    // A caller in namespace `shop`: `reviews` would be `reviews.shop`, which does not exist.
    let caller = r#"apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: cart
  namespace: shop
spec:
  address: 127.0.0.1
  labels: {app: cart}
"#;
    let files = [("reviews.yaml", yaml.as_str()), ("cart.yaml", caller)];
    let snapshot = compile_yaml(&scratch, "mesh", &files);
    let args = ["--cores", "1", "--io-driver", driver, "--workload", "cart"];
    let meshd = Sidecar::start(&snapshot, &args).unwrap();
    let mut client = Client::connect(meshd.outbound).unwrap();
    assert_eq!(client.get("reviews", "/", &[]).unwrap().status, 404);
    let said = explain(&snapshot, Some("cart"), "http://reviews/", &[]);
    assert!(said["route"].is_null(), "{said}");
    for host in &NAMES[1..] {
        let response = client.get(host, "/", &[]).unwrap();
        assert_eq!((response.status, response.text().as_str()), (200, "v1"));
    }
}

on_both_drivers!(
    every_search_path_name_routes_with_and_without_the_port,
    a_short_name_belongs_to_the_callers_namespace,
);

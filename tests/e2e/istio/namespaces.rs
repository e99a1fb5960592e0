//! One workload name in two namespaces, as Istio's security tasks deploy `httpbin` and `curl`
//! in `foo` and `bar`: each is its own workload (`meshd --workload foo/httpbin`), a short host
//! name resolves in the caller's namespace, and a policy in `foo` leaves `bar`'s `httpbin` alone.
//! Each httpbin Pod's address (127.0.0.2 in foo, 127.0.0.3 in bar) is its sidecar's inbound
//! listener; its application listens on 127.0.0.1 at the same port.

use std::net::{IpAddr, SocketAddr};

use super::*;

/// `namespace`'s httpbin Service, Deployment and EndpointSlice (its Pod at `pod`), and its curl
/// Deployment, as `kubectl get -A -o yaml` lists them.
fn namespace(namespace: &str, pod: SocketAddr) -> String {
    let (ip, port) = (pod.ip(), pod.port());
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: httpbin, namespace: {namespace}, labels: {{app: httpbin, service: httpbin}}}}
spec:
  selector: {{app: httpbin}}
  ports: [{{name: http, port: 8000, targetPort: {port}}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: httpbin, namespace: {namespace}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: httpbin, version: v1}}}}
  template:
    metadata: {{labels: {{app: httpbin, version: v1}}}}
    spec:
      serviceAccountName: httpbin
      containers:
      - name: httpbin
        image: docker.io/mccutchen/go-httpbin:v2.15.0
        ports: [{{containerPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: httpbin-x7k2p
  namespace: {namespace}
  labels: {{kubernetes.io/service-name: httpbin}}
addressType: IPv4
ports: [{{name: http, port: {port}, protocol: TCP}}]
endpoints:
- addresses: ["{ip}"]
  conditions: {{ready: true}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: curl, namespace: {namespace}}}
spec:
  selector: {{matchLabels: {{app: curl}}}}
  template:
    metadata: {{labels: {{app: curl}}}}
    spec:
      serviceAccountName: curl
      containers: [{{name: curl, image: curlimages/curl}}]
"#
    )
}

/// Istio's "allow nothing" for httpbin, in namespace `foo` only.
const ALLOW_NOTHING_IN_FOO: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: foo}
spec:
  selector:
    matchLabels: {app: httpbin}
"#;

/// httpbin's application in `namespace`, and its Pod's address (the sidecar's inbound).
fn httpbin(namespace: &str, pod_ip: [u8; 4]) -> (Upstream, SocketAddr) {
    let app = Upstream::start(&format!("httpbin-{namespace}")).unwrap();
    let pod = SocketAddr::from((pod_ip, app.addr().port()));
    (app, pod)
}

fn one_name_in_two_namespaces_is_two_workloads(driver: &str) {
    let (foo_app, foo_pod) = httpbin("foo", [127, 0, 0, 2]);
    let (bar_app, bar_pod) = httpbin("bar", [127, 0, 0, 3]);
    let scratch = Scratch::new();
    let cluster = [namespace("foo", foo_pod), namespace("bar", bar_pod)].join("---\n");
    let snapshot = compile_yaml(
        &scratch,
        "mesh",
        &[
            ("cluster.yaml", &cluster),
            ("allow-nothing.yaml", ALLOW_NOTHING_IN_FOO),
        ],
    );

    let sidecar = |workload: &str, inbound: Option<SocketAddr>| {
        let inbound = inbound.map(|a| a.to_string());
        let mut args = vec!["--workload", workload];
        if let Some(inbound) = &inbound {
            args.extend(["--inbound", inbound.as_str()]);
        }
        let log = scratch
            .path()
            .join(format!("{}.log", workload.replace('/', ".")));
        start_logged(&snapshot, driver, &args, &log)
    };
    let _foo_httpbin = sidecar("foo/httpbin", Some(foo_pod));
    let _bar_httpbin = sidecar("bar/httpbin", Some(bar_pod));
    let foo_curl = sidecar("foo/curl", None);
    let bar_curl = sidecar("bar/curl", None);

    // From foo, `httpbin` is foo's, which allows nothing; bar's answers by its full names.
    let mut client = Client::connect(foo_curl.outbound).unwrap();
    let denied = client.get("httpbin:8000", "/", &[]).unwrap();
    assert_eq!(denied.status, 403, "{}", denied.text());
    for host in ["httpbin.bar", "httpbin.bar.svc.cluster.local:8000"] {
        let answer = client.get(host, "/", &[]).unwrap();
        assert_eq!(
            (answer.status, answer.text().as_str()),
            (200, "httpbin-bar"),
            "{host}"
        );
    }
    // From bar, `httpbin` is bar's.
    let mut client = Client::connect(bar_curl.outbound).unwrap();
    let answer = client.get("httpbin", "/", &[]).unwrap();
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "httpbin-bar")
    );
    assert_eq!(foo_app.requests(), 0, "foo's policy stopped every request");
    assert_eq!(bar_app.requests(), 3);

    // `meshc explain` takes the same names and agrees.
    let said = explain(&snapshot, Some("foo/curl"), "http://httpbin:8000/", &[]);
    assert_eq!(said["authz"]["decision"], "deny", "{said}");
    assert_eq!(said["authz"]["workload"], "foo/httpbin", "{said}");
    let said = explain(&snapshot, Some("bar/curl"), "http://httpbin/", &[]);
    assert_eq!(said["authz"]["decision"], "allow", "{said}");
}

/// A bare name used in two namespaces is refused with the namespaces to choose from.
#[test]
fn a_bare_name_of_two_namespaces_is_refused_naming_them() {
    let scratch = Scratch::new();
    let local = |last: u8| SocketAddr::new(IpAddr::from([127, 0, 0, last]), 8080);
    let cluster = [namespace("foo", local(2)), namespace("bar", local(3))].join("---\n");
    let snapshot = compile_yaml(&scratch, "mesh", &[("cluster.yaml", &cluster)]);
    let output = Command::new(harness::binary("meshd").expect("meshd is built"))
        .arg("--snapshot")
        .arg(&snapshot)
        .args(["--workload", "httpbin", "--admin", "127.0.0.1:0"])
        .args(["--outbound", "127.0.0.1:0", "--inbound", "127.0.0.1:0"])
        .output()
        .expect("run meshd");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("workload `httpbin` is in namespaces bar, foo: give NAMESPACE/httpbin"),
        "{stderr}"
    );

    // Directory output names each file as meshd asks for it.
    let dir = scratch.path().join("snaps/");
    let cluster = scratch.path().join("cluster.yaml");
    let compiled = harness::compile(&[cluster.as_path()], &dir).expect("run meshc");
    assert!(compiled.status.success());
    for file in [
        "foo.httpbin.snap",
        "bar.httpbin.snap",
        "foo.curl.snap",
        "all.snap",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
}

on_both_drivers!(one_name_in_two_namespaces_is_two_workloads);

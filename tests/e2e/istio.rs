//! Istio YAML as users write it, compiled by the real meshc and served by real meshd sidecars:
//! the behaviour Istio's documentation describes, not only the compile verdict.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use ringmesh_tests::*;

mod bookinfo;
mod hosts;
mod kubernetes;
mod namespaces;
mod protocols;
mod telemetry;
mod vm;

/// Compiles the YAML `files` (name, text) into `NAME.snap`; fails the test on a meshc error.
fn compile_yaml(scratch: &Scratch, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let inputs: Vec<PathBuf> = files
        .iter()
        .map(|(file, text)| scratch.write(file, text))
        .collect();
    let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let out = scratch.path().join(format!("{name}.snap"));
    let output = harness::compile(&refs, &out).expect("run meshc");
    assert!(
        output.status.success(),
        "meshc failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// What `meshc explain --json` says of `GET URL` on `snapshot` for the caller `workload`, with
/// `headers`.
fn explain(
    snapshot: &Path,
    workload: Option<&str>,
    url: &str,
    headers: &[&str],
) -> serde_json::Value {
    explain_request(snapshot, workload, &format!("GET {url}"), headers)
}

/// What `meshc explain --json` says of `request` (`METHOD URL`) on `snapshot` for the caller
/// `workload`, with `headers`.
fn explain_request(
    snapshot: &Path,
    workload: Option<&str>,
    request: &str,
    headers: &[&str],
) -> serde_json::Value {
    let mut command = Command::new(harness::binary("meshc").expect("meshc is built"));
    command.arg("explain").arg(snapshot);
    command.args(["--request", request, "--json"]);
    if let Some(workload) = workload {
        command.args(["--workload", workload]);
    }
    for header in headers {
        command.args(["-H", header]);
    }
    let output = command.output().expect("run meshc explain");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "meshc explain {request}: {e}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// A DSL file turning on JSON access logs mesh-wide, compiled beside the Istio YAML so that a
/// caller sidecar names the rule of each request it routed.
const LOG_EVERY_REQUEST: (&str, &str) = ("telemetry.mesh", "telemetry { access_log json }\n");

/// A caller sidecar, with the access log it writes (see [`LOG_EVERY_REQUEST`]).
struct Logged<'a> {
    outbound: SocketAddr,
    log: &'a Path,
}

/// The access log line of one more `GET http://host/` with `headers` through `caller`, sent
/// with its own `x-request-id` to find it by.
fn logged_request(caller: &Logged<'_>, host: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    static PROBES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let probe = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("probe-{}-{probe}", std::process::id());
    let mut headers = headers.to_vec();
    headers.push(("x-request-id", &id));
    let mut client = Client::connect(caller.outbound).unwrap();
    client.get(host, "/", &headers).unwrap();
    let mut found = None;
    wait_until(|| {
        let log = std::fs::read_to_string(caller.log).unwrap_or_default();
        found = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["x_request_id"] == id.as_str());
        found.is_some()
    });
    found.unwrap_or_default()
}

/// Checks that `meshc explain` predicts what meshd did: every upstream in `seen` (`app-vN`)
/// is a destination subset the explanation gives for `host` with `headers`, and the rule
/// meshd logged for such a request (name and `file:line`) is the one explain names.
fn explain_agrees(
    snapshot: &Path,
    caller: &Logged<'_>,
    host: &str,
    headers: &[(&str, &str)],
    seen: &[String],
) {
    let logged = logged_request(caller, host, headers);
    assert!(logged["route_name"].is_string(), "no rule logged: {logged}");
    let header_lines: Vec<String> = headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let header_lines: Vec<&str> = header_lines.iter().map(String::as_str).collect();
    let said = explain(snapshot, None, &format!("http://{host}/"), &header_lines);
    assert_eq!(
        (&logged["route_name"], &logged["route_source"]),
        (&said["route"]["rule"], &said["route"]["source"]),
        "meshd logged {logged}; explain said {said}"
    );
    let destinations = said["destinations"].as_array().cloned().unwrap_or_default();
    let predicted: Vec<String> = destinations
        .iter()
        .filter(|d| d["weight"].as_u64() != Some(0))
        .filter_map(|d| d["subset"].as_str().map(str::to_owned))
        .collect();
    for upstream in seen {
        let version = upstream.rsplit('-').next().unwrap_or_default();
        assert!(
            predicted.iter().any(|p| p == version),
            "meshd sent {host} {headers:?} to {upstream}; explain said {said}"
        );
    }
}

/// A file of the Istio corpus's `samples/` folder (Istio's own sample YAML, unmodified).
fn sample(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus/istio/samples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A Pod of a Bookinfo-style Deployment of `app` at `version` (labels `app`, `version`, service
/// account `bookinfo-<app>`, or `<app>` for httpbin), as `kubectl get pods -o yaml` lists it.
fn pod((app, version): (&str, &str), name: &str, ip: IpAddr) -> String {
    let account = if app == "httpbin" {
        app.to_owned()
    } else {
        format!("bookinfo-{app}")
    };
    format!(
        r#"- apiVersion: v1
  kind: Pod
  metadata:
    name: {name}
    namespace: default
    labels: {{app: {app}, version: {version}, pod-template-hash: 5c8d7b}}
  spec:
    serviceAccountName: {account}
    containers:
    - name: {app}
      image: registry.istio.io/release/examples-bookinfo-{app}-{version}:1.20.3
  status:
    phase: Running
    podIP: {ip}
"#
    )
}

/// An EndpointSlice of Service `service` with one ready Pod, `pod`, at `addr` (port `http`).
fn slice(service: &str, name: &str, pod: &str, addr: SocketAddr) -> String {
    format!(
        r#"- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: {name}
    namespace: default
    labels: {{kubernetes.io/service-name: {service}}}
  addressType: IPv4
  ports: [{{name: http, port: {port}, protocol: TCP}}]
  endpoints:
  - addresses: ["{ip}"]
    conditions: {{ready: true, serving: true, terminating: false}}
    targetRef: {{kind: Pod, name: {pod}, namespace: default}}
"#,
        ip = addr.ip(),
        port = addr.port()
    )
}

/// `items` (List entries) as one `kind: List` document, as `kubectl get -o yaml` prints it.
fn list(items: &[String]) -> String {
    format!("apiVersion: v1\nkind: List\nitems:\n{}", items.concat())
}

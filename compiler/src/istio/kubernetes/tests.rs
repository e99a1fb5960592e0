//! The Kubernetes import, through `compile_sources` so the lowering runs too.

use crate::diag::{Code, Sources};
use crate::{compile_sources, Compiled, Diagnostic, Failed};

fn compile(yaml: &str) -> Result<Compiled, Failed> {
    let mut sources = Sources::new();
    sources.add("k8s.yaml", yaml);
    compile_sources(sources)
}

fn compiled(yaml: &str) -> Compiled {
    compile(yaml).unwrap_or_else(|failed| panic!("{}", failed.render()))
}

/// Code and line of every diagnostic, in order.
fn found(diagnostics: &[Diagnostic], sources: &Sources) -> Vec<(Code, usize)> {
    diagnostics
        .iter()
        .map(|d| (d.code, d.location(sources).map_or(0, |(_, line, _)| line)))
        .collect()
}

fn warnings(compiled: &Compiled) -> Vec<(Code, usize)> {
    found(&compiled.warnings, &compiled.sources)
}

fn addresses(compiled: &Compiled, service: &str) -> Vec<String> {
    let (_, service) = compiled.snapshot.service(service).expect("service");
    service
        .endpoints
        .iter()
        .map(|e| e.address.to_string())
        .collect()
}

const REVIEWS: &str = "\
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  type: ClusterIP
  selector: {app: reviews}
  ports:
  - {port: 9080, name: http, targetPort: web}
";

const POD_V1: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: reviews-v1-a
  namespace: shop
  labels: {app: reviews, version: v1}
spec:
  serviceAccountName: bookinfo-reviews
  containers:
  - name: reviews
    image: reviews:v1
    ports: [{name: web, containerPort: 9081}]
status: {podIP: 10.0.0.1}
";

fn docs(parts: &[&str]) -> String {
    parts.join("---\n")
}

#[test]
fn a_service_is_named_by_its_fqdn_in_its_namespace() {
    let compiled = compiled(REVIEWS);
    let (_, service) = compiled
        .snapshot
        .service("reviews.shop.svc.cluster.local")
        .expect("service");
    assert_eq!(service.namespace, "shop");
    assert_eq!(service.ports[0].number, 9080);
    assert_eq!(service.ports[0].protocol, spec::Protocol::Http);
    assert_eq!(warnings(&compiled), [(Code::IstioIncomplete, 3)]);
}

#[test]
fn destination_rules_and_virtual_services_resolve_the_short_name() {
    let yaml = docs(&[
        REVIEWS,
        POD_V1,
        "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
",
        "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
",
    ]);
    let compiled = compiled(&yaml);
    let (_, service) = compiled
        .snapshot
        .service("reviews.shop.svc.cluster.local")
        .expect("service");
    assert_eq!(service.subsets[0].endpoints, [0]);
    assert!(
        compiled.warnings.is_empty(),
        "{}",
        compiled.render_warnings()
    );
}

#[test]
fn port_protocol_is_app_protocol_then_name_prefix_else_tcp_with_a_warning() {
    let yaml = "\
apiVersion: v1
kind: Service
metadata: {name: multi}
spec:
  ports:
  - {port: 1, name: tcp-x, appProtocol: kubernetes.io/h2c}
  - {port: 2, name: grpc-api}
  - {port: 3, name: http-web}
  - {port: 4, name: web}
  - {port: 5, name: https}
";
    let compiled = compiled(yaml);
    let (_, service) = compiled
        .snapshot
        .service("multi.default.svc.cluster.local")
        .expect("service");
    let protocols: Vec<spec::Protocol> = service.ports.iter().map(|p| p.protocol).collect();
    use spec::Protocol::{Grpc, Http, Http2, Tcp};
    assert_eq!(protocols, [Http2, Grpc, Http, Tcp, Tcp]);
    let found = warnings(&compiled);
    assert!(found.contains(&(Code::IstioNotExpressible, 9)), "{found:?}");
    assert!(
        found.contains(&(Code::IstioNotExpressible, 10)),
        "{found:?}"
    );
    assert!(
        found.contains(&(Code::IstioUnsupportedField, 7)),
        "{found:?}"
    );
}

#[test]
fn udp_ports_are_left_out_with_a_warning() {
    let yaml = "\
apiVersion: v1
kind: Service
metadata: {name: dns}
spec:
  ports:
  - {port: 53, name: dns, protocol: UDP}
  - {port: 8080, name: http, protocol: TCP}
";
    let compiled = compiled(yaml);
    let (_, service) = compiled
        .snapshot
        .service("dns.default.svc.cluster.local")
        .expect("service");
    assert_eq!(service.ports.len(), 1);
    assert_eq!(service.ports[0].number, 8080);
    assert_eq!(
        warnings(&compiled),
        [(Code::IstioIncomplete, 3), (Code::IstioNotExpressible, 6)]
    );
}

#[test]
fn cluster_settings_warn_unless_they_are_the_default() {
    let yaml = "\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: ClusterIP
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
  sessionAffinity: ClientIP
  ports: [{port: 80, name: http}]
status: {loadBalancer: {}}
";
    let compiled = compiled(yaml);
    assert_eq!(
        warnings(&compiled),
        [
            (Code::IstioIncomplete, 3),
            (Code::IstioUnsupportedField, 10)
        ]
    );
    let addresses: Vec<String> = compiled.snapshot.services[0]
        .addresses
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(addresses, ["10.96.0.10"]);
}

#[test]
fn endpoint_slices_win_and_label_endpoints_as_their_pods() {
    let slice = "\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: reviews-abc
  namespace: shop
  labels: {kubernetes.io/service-name: reviews}
addressType: IPv4
ports: [{name: http, port: 9090, protocol: TCP}]
endpoints:
- addresses: [10.0.0.1]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: reviews-v1-a, namespace: shop}
- addresses: [10.0.0.9]
  conditions: {ready: false}
- addresses: [10.0.0.2]
";
    let endpoints = "\
apiVersion: v1
kind: Endpoints
metadata: {name: reviews, namespace: shop}
subsets: [{addresses: [{ip: 10.9.9.9}], ports: [{name: http, port: 1}]}]
";
    let compiled = compiled(&docs(&[REVIEWS, POD_V1, slice, endpoints]));
    let service = "reviews.shop.svc.cluster.local";
    assert_eq!(
        addresses(&compiled, service),
        ["10.0.0.1:9090", "10.0.0.2:9090"]
    );
    let (_, service) = compiled.snapshot.service(service).expect("service");
    assert_eq!(service.endpoints[0].labels["version"], "v1");
    assert!(service.endpoints[1].labels.is_empty());
    // The Pod's inbound port is its own port in the slice.
    let pod = compiled.snapshot.workload("reviews-v1-a").expect("pod");
    assert_eq!(pod.inbound[0].port, 9090);
    assert_eq!(pod.inbound[0].target.to_string(), "127.0.0.1:9090");
}

#[test]
fn endpoints_come_from_the_endpoints_object_without_slices() {
    let endpoints = "\
apiVersion: v1
kind: Endpoints
metadata: {name: reviews, namespace: shop}
subsets:
- addresses:
  - {ip: 10.0.0.1, targetRef: {kind: Pod, name: reviews-v1-a}}
  notReadyAddresses: [{ip: 10.0.0.7}]
  ports: [{name: http, port: 9082}]
";
    let compiled = compiled(&docs(&[REVIEWS, POD_V1, endpoints]));
    let service = "reviews.shop.svc.cluster.local";
    assert_eq!(addresses(&compiled, service), ["10.0.0.1:9082"]);
    let (_, service) = compiled.snapshot.service(service).expect("service");
    assert_eq!(service.endpoints[0].labels["app"], "reviews");
}

#[test]
fn selected_pods_with_an_ip_are_endpoints_at_the_named_target_port() {
    let unready = "\
apiVersion: v1
kind: Pod
metadata: {name: reviews-v2-b, namespace: shop, labels: {app: reviews, version: v2}}
spec: {containers: [{name: r, ports: [{name: web, containerPort: 9082}]}]}
status: {podIP: 10.0.0.2, conditions: [{type: Ready, status: 'False'}]}
";
    let pending = "\
apiVersion: v1
kind: Pod
metadata: {name: reviews-v3-c, namespace: shop, labels: {app: reviews}}
spec: {containers: [{name: r}]}
";
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n{}",
        [POD_V1, unready, pending]
            .iter()
            .map(|d| format!("- {}", d.trim_end().replace('\n', "\n  ")))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let compiled = compiled(&docs(&[REVIEWS, &list]));
    assert_eq!(
        addresses(&compiled, "reviews.shop.svc.cluster.local"),
        ["10.0.0.1:9081"]
    );
    // The pending Pod has no container port `web`: no inbound for it, at the `targetPort`.
    assert_eq!(warnings(&compiled), [(Code::IstioNotExpressible, 8)]);
}

#[test]
fn a_deployment_is_a_workload_serving_the_services_selecting_its_template() {
    let deployment = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: reviews}}
  template:
    metadata: {labels: {app: reviews, version: v1}}
    spec:
      containers:
      - name: reviews
        image: reviews:v1
        ports: [{name: web, containerPort: 9081}]
";
    let compiled = compile(&docs(&[REVIEWS, deployment])).expect("compiles");
    let workload = compiled.snapshot.workload("reviews-v1").expect("workload");
    assert_eq!(workload.namespace, "shop");
    assert_eq!(
        workload.identity.as_deref(),
        Some("spiffe://cluster.local/ns/shop/sa/default")
    );
    let (index, _) = compiled
        .snapshot
        .service("reviews.shop.svc.cluster.local")
        .expect("service");
    assert_eq!(workload.serves, [index]);
    assert_eq!(workload.inbound.len(), 1);
    assert_eq!(workload.inbound[0].port, 9081);
    assert_eq!(workload.inbound[0].protocol, spec::Protocol::Http);
    assert_eq!(workload.inbound[0].target.to_string(), "127.0.0.1:9081");
}

#[test]
fn controllers_of_every_kind_become_workloads_with_their_service_account() {
    let yaml = ["StatefulSet", "DaemonSet", "ReplicaSet"]
        .iter()
        .map(|kind| {
            format!(
                "apiVersion: apps/v1\nkind: {kind}\nmetadata: {{name: {}}}\nspec:\n  \
                 template:\n    spec: {{serviceAccountName: sa-{0}, containers: [{{name: c}}]}}\n",
                kind.to_lowercase()
            )
        })
        .collect::<Vec<_>>()
        .join("---\n");
    let compiled = compiled(&yaml);
    let identity = |name: &str| {
        compiled
            .snapshot
            .workload(name)
            .and_then(|w| w.identity.clone())
    };
    assert_eq!(
        identity("daemonset").as_deref(),
        Some("spiffe://cluster.local/ns/default/sa/sa-daemonset")
    );
    assert!(identity("statefulset").is_some() && identity("replicaset").is_some());
}

#[test]
fn peer_authentication_applies_to_a_pod_workload() {
    let strict = "\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: shop}
spec: {selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}
";
    let compiled = compiled(&docs(&[REVIEWS, POD_V1, strict]));
    let pod = compiled.snapshot.workload("reviews-v1-a").expect("pod");
    assert_eq!(pod.inbound[0].port, 9081);
    assert_eq!(pod.inbound[0].tls, spec::TlsMode::Strict);
}

#[test]
fn a_service_entry_for_the_same_fqdn_is_a_duplicate_host() {
    let entry = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  addresses: [10.1.1.1]
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.5}]
";
    let compiled = compiled(&docs(&[REVIEWS, POD_V1, entry]));
    assert_eq!(
        addresses(&compiled, "reviews.shop.svc.cluster.local"),
        ["10.0.0.1:9081"]
    );
    let found = warnings(&compiled);
    assert!(
        found.contains(&(Code::IstioNotExpressible, 28)),
        "{found:?}"
    );
}

#[test]
fn service_accounts_and_namespaces_are_accepted_and_other_kinds_are_out_of_scope() {
    let yaml = "\
apiVersion: v1
kind: ServiceAccount
metadata: {name: bookinfo-reviews}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
---
apiVersion: extensions/v1beta1
kind: Deployment
metadata: {name: old}
";
    let compiled = compiled(yaml);
    assert_eq!(
        warnings(&compiled),
        [(Code::IstioOutOfScope, 10), (Code::IstioOutOfScope, 14)]
    );
}

#[test]
fn unknown_fields_and_unmodeled_fields_are_reported_where_they_are() {
    let yaml = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations: {sidecar.istio.io/proxyCPU: 100m}
spec:
  replicaz: 1
  template:
    spec:
      hostNetwork: true
      containers:
      - name: web
        imagez: nginx
";
    let compiled = compiled(yaml);
    assert_eq!(
        warnings(&compiled),
        [
            (Code::IstioUnsupportedField, 5),
            (Code::IstioUnknownField, 7),
            (Code::IstioUnsupportedField, 10),
            (Code::IstioUnknownField, 13)
        ]
    );
}

#[test]
fn a_later_service_of_the_same_name_replaces_the_earlier_one() {
    let yaml = docs(&[
        REVIEWS,
        &REVIEWS.replace("9080, name: http", "9090, name: http"),
    ]);
    let compiled = compiled(&yaml);
    let (_, service) = compiled
        .snapshot
        .service("reviews.shop.svc.cluster.local")
        .expect("service");
    assert_eq!(service.ports[0].number, 9090);
    assert_eq!(warnings(&compiled)[0], (Code::IstioReplaced, 12));
}

#[test]
fn a_subset_selecting_no_pod_of_a_service_without_endpoints_is_w0107() {
    let deployment = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: shop}
spec:
  template:
    metadata: {labels: {app: reviews, version: v1}}
    spec: {containers: [{name: r, ports: [{name: web, containerPort: 9081}]}]}
";
    let rule = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v9, labels: {version: v9}}
";
    let compiled = compiled(&docs(&[REVIEWS, deployment, rule]));
    let found = warnings(&compiled);
    assert!(found.contains(&(Code::EmptySubset, 25)), "{found:?}");
    assert!(!found.contains(&(Code::EmptySubset, 24)), "{found:?}");
}

#[test]
fn a_slice_without_service_label_or_with_dns_names_is_ignored_with_a_warning() {
    let yaml = "\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: orphan}
addressType: IPv4
endpoints: []
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: dns, labels: {kubernetes.io/service-name: x}}
addressType: FQDN
endpoints: [{addresses: [example.com]}]
";
    let compiled = compiled(yaml);
    assert_eq!(
        warnings(&compiled),
        [
            (Code::IstioNotExpressible, 3),
            (Code::IstioNotExpressible, 10)
        ]
    );
}

#[test]
fn only_the_first_port_gets_endpoint_addresses_but_workloads_serve_every_port() {
    let service = "\
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  selector: {app: api}
  ports:
  - {port: 80, name: http, targetPort: 8080}
  - {port: 9090, name: grpc}
---
apiVersion: v1
kind: Pod
metadata: {name: api-1, labels: {app: api}}
spec: {containers: [{name: api}]}
status: {podIP: 10.0.0.3}
";
    let compiled = compiled(service);
    assert_eq!(
        addresses(&compiled, "api.default.svc.cluster.local"),
        ["10.0.0.3:8080"]
    );
    let pod = compiled.snapshot.workload("api-1").expect("pod");
    let ports: Vec<u16> = pod.inbound.iter().map(|i| i.port).collect();
    assert_eq!(ports, [8080, 9090]);
    assert!(warnings(&compiled).contains(&(Code::IstioUnsupportedField, 8)));
}

#[test]
fn a_service_port_without_port_number_is_a_schema_error() {
    let yaml = "\
apiVersion: v1
kind: Service
metadata: {name: bad}
spec: {ports: [{name: http, protocol: HTTP}]}
";
    let failed = compile(yaml).expect_err("fails");
    assert_eq!(
        found(&failed.diagnostics, &failed.sources)[0],
        (Code::IstioSchema, 4)
    );
}

#[test]
fn a_service_selecting_a_workload_entry_is_w0203_at_the_service() {
    let entry = "\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-vm, namespace: shop}
spec:
  address: 10.0.0.9
  labels: {app: reviews}
";
    let compiled = compiled(&docs(&[REVIEWS, POD_V1, entry]));
    assert_eq!(
        addresses(&compiled, "reviews.shop.svc.cluster.local"),
        ["10.0.0.1:9081"],
        "the WorkloadEntry is not made an endpoint"
    );
    assert_eq!(warnings(&compiled), [(Code::IstioNotExpressible, 3)]);
}

#[test]
fn a_workload_entry_in_another_namespace_is_not_selected() {
    let entry = "\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-vm, namespace: other}
spec:
  address: 10.0.0.9
  labels: {app: reviews}
";
    let compiled = compiled(&docs(&[REVIEWS, POD_V1, entry]));
    assert_eq!(warnings(&compiled), []);
}

#[test]
fn a_service_entry_selecting_a_pod_is_w0203_at_its_workload_selector() {
    let entry = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: shop}
spec:
  hosts: [ratings.example.com]
  addresses: [10.1.1.2]
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
";
    let compiled = compiled(&docs(&[REVIEWS, POD_V1, entry]));
    let found = warnings(&compiled);
    assert!(
        found.contains(&(Code::IstioNotExpressible, 32)),
        "{found:?}"
    );
    let rendered: Vec<String> = compiled
        .warnings
        .iter()
        .map(|d| d.message.clone())
        .collect();
    assert!(
        rendered
            .iter()
            .any(|m| m.contains("matches Kubernetes workload `reviews-v1-a`")),
        "{rendered:?}"
    );
}

#[test]
fn one_workload_name_in_two_namespaces_makes_two_workloads() {
    let deployment = |namespace: &str| {
        format!(
            "\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: httpbin, namespace: {namespace}}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  template:
    metadata: {{labels: {{app: httpbin}}}}
    spec:
      serviceAccountName: httpbin
      containers: [{{name: httpbin, image: httpbin}}]
"
        )
    };
    let compiled = compiled(&docs(&[&deployment("foo"), &deployment("bar")]));
    let snapshot = &compiled.snapshot;
    for namespace in ["foo", "bar"] {
        let workload = snapshot
            .workload(&format!("{namespace}/httpbin"))
            .expect("found by namespace");
        assert_eq!(
            workload.identity.as_deref(),
            Some(format!("spiffe://cluster.local/ns/{namespace}/sa/httpbin").as_str())
        );
    }
    let ambiguous = snapshot
        .find_workload("httpbin")
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        ambiguous.as_deref(),
        Some("workload `httpbin` is in namespaces bar, foo: give NAMESPACE/httpbin")
    );
}

#[test]
fn an_empty_workload_selector_matches_every_pod_of_the_namespace_with_w0203() {
    let entry = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: shop}
spec:
  hosts: [ratings.example.com]
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {}}
";
    let compiled = compiled(&docs(&[REVIEWS, POD_V1, entry]));
    let rendered: Vec<String> = compiled
        .warnings
        .iter()
        .map(|d| d.message.clone())
        .collect();
    assert!(
        rendered
            .iter()
            .any(|m| m.contains("matches Kubernetes workload `reviews-v1-a`")),
        "{rendered:?}"
    );
}

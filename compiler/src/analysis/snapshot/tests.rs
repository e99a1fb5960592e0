//! The snapshot analyses over snapshots built directly (no config text produces most of these
//! fields yet), with positions in a placeholder file `m.mesh` whose line N reads `lineN`.

use std::collections::BTreeMap;

use spec::{
    AuthorizationPolicy, AuthzAction, AuthzCondition, AuthzOperation, AuthzRule, AuthzSource,
    ConditionKey, Endpoint, InboundPort, OutlierDetection, Protocol, RequestMatch, RetryPolicy,
    RouteRule, RouteTable, Service, ServicePort, Snapshot, SourceLocation, StringPattern, Subset,
    TlsMode, TrafficPolicy, ValueMatch, Workload,
};

use super::*;
use crate::diag::{Diagnostic, Sources};

/// A snapshot under construction, with the positions of what it holds.
struct Fixture {
    snapshot: Snapshot,
    sources: Sources,
    anchors: Anchors,
}

fn loc(line: u32) -> SourceLocation {
    SourceLocation {
        file: "m.mesh".to_owned(),
        line,
        column: 1,
    }
}

impl Fixture {
    fn new() -> Self {
        let mut sources = Sources::new();
        let text: String = (1..=99).map(|n| format!("line{n}\n")).collect();
        sources.add("m.mesh", text);
        Self {
            snapshot: Snapshot::default(),
            sources,
            anchors: Anchors::default(),
        }
    }

    fn span(&self, line: u32) -> SourceSpan {
        self.sources.span_at(&loc(line)).unwrap()
    }

    /// A service on port 9080 with `endpoints` endpoints, declared at `line`.
    fn service(&mut self, name: &str, endpoints: usize, line: u32) -> u32 {
        self.snapshot.services.push(Service {
            name: name.to_owned(),
            namespace: "default".to_owned(),
            ports: vec![ServicePort {
                number: 9080,
                protocol: Protocol::Http,
            }],
            endpoints: (0..endpoints)
                .map(|i| Endpoint {
                    address: format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
                    labels: BTreeMap::new(),
                    weight: 1,
                })
                .collect(),
            subsets: Vec::new(),
            policy: TrafficPolicy::default(),
            identities: Vec::new(),
            addresses: Vec::new(),
        });
        self.anchors.services.insert(
            name.to_owned(),
            ServiceAnchor {
                name: self.span(line),
                outlier: None,
                subsets: HashMap::new(),
            },
        );
        (self.snapshot.services.len() - 1) as u32
    }

    /// Gives a service outlier detection written at `line`.
    fn outlier(&mut self, service: u32, outlier: OutlierDetection, line: u32) {
        let span = self.span(line);
        let service = &mut self.snapshot.services[service as usize];
        service.policy.outlier = Some(outlier.clone());
        for subset in &mut service.subsets {
            subset.policy.outlier = Some(outlier.clone());
        }
        let name = service.name.clone();
        self.anchors.services.get_mut(&name).unwrap().outlier = Some(span);
    }

    /// A subset with the given endpoints, inheriting the service policy, declared at `line`.
    fn subset(&mut self, service: u32, name: &str, endpoints: Vec<u32>, line: u32) {
        let span = self.span(line);
        let service = &mut self.snapshot.services[service as usize];
        service.subsets.push(Subset {
            name: name.to_owned(),
            selector: BTreeMap::new(),
            endpoints,
            policy: service.policy.clone(),
        });
        let anchor = self.anchors.services.get_mut(&service.name).unwrap();
        anchor.subsets.insert(name.to_owned(), (span, None));
    }

    fn route(&mut self, service: u32, rules: Vec<RouteRule>) {
        self.snapshot.routes.push(RouteTable {
            service,
            rules,
            index: Default::default(),
        });
    }

    fn workload(&mut self, workload: Workload, line: u32) {
        let span = self.span(line);
        let key = (workload.name.clone(), workload.namespace.clone());
        self.anchors.workloads.insert(key, span);
        self.snapshot.workloads.push(workload);
    }

    fn diagnostics(&self) -> Vec<Diagnostic> {
        analyze(&self.snapshot, &self.anchors, &self.sources)
    }

    /// `(code, "file:line")` of every diagnostic.
    fn found(&self) -> Vec<(&'static str, String)> {
        self.diagnostics()
            .iter()
            .map(|d| {
                let (file, line, _) = d.location(&self.sources).unwrap_or_default();
                (d.code.as_str(), format!("{file}:{line}"))
            })
            .collect()
    }

    /// The only diagnostic.
    fn only(&self) -> Diagnostic {
        let mut diagnostics = self.diagnostics();
        assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
        diagnostics.remove(0)
    }
}

fn at(code: &'static str, line: u32) -> (&'static str, String) {
    (code, format!("m.mesh:{line}"))
}

// ---- retries ----

fn retried(name: &str, line: u32, timeout: Option<u64>, retries: RetryPolicy) -> RouteRule {
    RouteRule {
        name: name.to_owned(),
        source: loc(line),
        timeout_ms: timeout,
        retries: Some(retries),
        ..RouteRule::default()
    }
}

fn retry(attempts: u32, per_try: Option<u64>) -> RetryPolicy {
    RetryPolicy {
        attempts,
        per_try_timeout_ms: per_try,
        retry_on: spec::RetryOn::default(),
        backoff_base_ms: 25,
        backoff_max_ms: 250,
        non_idempotent: false,
    }
}

fn with_routes(rules: Vec<RouteRule>) -> Fixture {
    let mut f = Fixture::new();
    let web = f.service("web", 2, 1);
    f.route(web, rules);
    f
}

#[test]
fn tries_longer_than_the_timeout_warn_with_total_and_timeout() {
    let f = with_routes(vec![retried("r", 7, Some(3000), retry(3, Some(1000)))]);
    assert_eq!(f.found(), vec![at("W0160", 7)]);
    let d = f.only();
    assert!(
        d.message.contains("rule `r` of route `web`"),
        "{}",
        d.message
    );
    assert!(
        d.message.contains("4 tries of up to 1s take up to 4s"),
        "{}",
        d.message
    );
    assert!(d.message.contains("rule timeout 3s"), "{}", d.message);
    assert!(d.help.unwrap().contains("at least 4s"));
}

#[test]
fn tries_that_fit_the_timeout_are_fine() {
    let f = with_routes(vec![
        retried("exact", 5, Some(3000), retry(2, Some(1000))),
        retried("no-timeout", 6, None, retry(9, Some(1000))),
        retried("no-per-try", 7, Some(100), retry(9, None)),
        retried("disabled", 8, Some(100), retry(0, Some(1000))),
    ]);
    assert_eq!(f.found(), vec![]);
}

#[test]
fn a_per_try_timeout_not_below_the_timeout_warns_once() {
    let f = with_routes(vec![
        retried("equal", 5, Some(2000), retry(2, Some(2000))),
        retried("above", 9, Some(1500), retry(1, Some(2500))),
    ]);
    assert_eq!(f.found(), vec![at("W0161", 5), at("W0161", 9)]);
    let d = &f.diagnostics()[1];
    assert!(
        d.message.contains("per-try timeout 2500ms"),
        "{}",
        d.message
    );
    assert!(d.message.contains("rule timeout 1500ms"), "{}", d.message);
}

fn method(value: ValueMatch) -> RequestMatch {
    RequestMatch {
        method: Some(value),
        ..RequestMatch::default()
    }
}

fn matching(line: u32, matches: Vec<RequestMatch>, non_idempotent: bool) -> RouteRule {
    let mut retries = retry(2, None);
    retries.non_idempotent = non_idempotent;
    let mut rule = retried(&format!("m{line}"), line, None, retries);
    rule.matches = matches;
    rule
}

#[test]
fn retries_on_post_only_rules_never_happen() {
    let exact = |m: &str| method(ValueMatch::Exact(m.to_owned()));
    let f = with_routes(vec![
        matching(5, vec![exact("POST")], false),
        matching(6, vec![exact("POST"), exact("PATCH")], false),
        matching(
            7,
            vec![method(ValueMatch::Regex("POST|PATCH".to_owned()))],
            false,
        ),
        matching(8, vec![method(ValueMatch::Prefix("PO".to_owned()))], false),
    ]);
    assert_eq!(
        f.found(),
        vec![
            at("W0162", 5),
            at("W0162", 6),
            at("W0162", 7),
            at("W0162", 8)
        ]
    );
    let d = &f.diagnostics()[0];
    assert!(
        d.message.contains("rule `m5` of route `web`"),
        "{}",
        d.message
    );
    assert!(
        d.message.contains("these retries never happen"),
        "{}",
        d.message
    );
}

#[test]
fn retries_that_may_apply_do_not_warn() {
    let exact = |m: &str| method(ValueMatch::Exact(m.to_owned()));
    let f = with_routes(vec![
        // Opted in.
        matching(5, vec![exact("POST")], true),
        // No method condition, or one admitting an idempotent method.
        matching(6, vec![RequestMatch::default()], false),
        matching(7, vec![], false),
        matching(8, vec![exact("POST"), exact("GET")], false),
        matching(9, vec![method(ValueMatch::Prefix("P".to_owned()))], false),
        matching(10, vec![method(ValueMatch::Regex("P.*".to_owned()))], false),
        matching(11, vec![method(ValueMatch::Present)], false),
        // An invalid regex is not known to exclude GET.
        matching(12, vec![method(ValueMatch::Regex("(".to_owned()))], false),
    ]);
    assert_eq!(f.found(), vec![]);
}

// ---- ejection ----

fn outlier(max_ejection_percent: u32) -> OutlierDetection {
    OutlierDetection {
        consecutive_5xx: Some(5),
        consecutive_gateway_errors: None,
        interval_ms: 10_000,
        base_ejection_ms: 30_000,
        max_ejection_percent,
    }
}

#[test]
fn ejecting_every_endpoint_warns_at_the_outlier_block() {
    let mut f = Fixture::new();
    let s = f.service("reviews", 3, 2);
    f.outlier(s, outlier(100), 6);
    assert_eq!(f.found(), vec![at("W0163", 6)]);
    let d = f.only();
    assert!(
        d.message
            .contains("service `reviews` has 3 endpoints and `max_ejection_percent 100`"),
        "{}",
        d.message
    );
    assert!(d.message.contains("panic mode"));
}

#[test]
fn a_limit_below_every_endpoint_is_fine() {
    let mut f = Fixture::new();
    let s = f.service("reviews", 3, 2);
    f.outlier(s, outlier(99), 6);
    let quiet = f.service("ratings", 1, 10);
    let mut off = outlier(100);
    off.consecutive_5xx = None;
    f.outlier(quiet, off, 11);
    f.service("details", 1, 20);
    assert_eq!(f.found(), vec![]);
}

#[test]
fn a_single_endpoint_with_outlier_detection_warns() {
    let mut f = Fixture::new();
    let s = f.service("ratings", 1, 2);
    let mut gateway = outlier(10);
    gateway.consecutive_5xx = None;
    gateway.consecutive_gateway_errors = Some(3);
    f.outlier(s, gateway, 4);
    assert_eq!(f.found(), vec![at("W0163", 4)]);
    assert!(f.only().message.contains("single endpoint"));
}

#[test]
fn subsets_are_checked_with_their_own_endpoints() {
    let mut f = Fixture::new();
    let s = f.service("reviews", 3, 2);
    f.subset(s, "v1", vec![0], 8);
    f.subset(s, "v2", vec![1, 2], 9);
    f.outlier(s, outlier(50), 5);
    // v1 inherits the policy, so the warning points at the subset.
    assert_eq!(f.found(), vec![at("W0163", 8)]);
    assert!(f.only().message.contains("subset `reviews/v1`"));
    // A subset's own outlier block is where its warning points.
    let span = f.span(12);
    let anchor = f.anchors.services.get_mut("reviews").unwrap();
    anchor.subsets.insert("v2".to_owned(), (span, Some(span)));
    f.snapshot.services[0].subsets[1].policy.outlier = Some(outlier(100));
    assert_eq!(f.found(), vec![at("W0163", 8), at("W0163", 12)]);
}

#[test]
fn an_inheriting_subset_is_covered_by_the_service_warning() {
    let mut f = Fixture::new();
    let s = f.service("reviews", 2, 2);
    f.subset(s, "v1", vec![0], 8);
    f.outlier(s, outlier(100), 5);
    assert_eq!(f.found(), vec![at("W0163", 5)]);
}

#[test]
fn a_service_without_position_still_warns() {
    let mut f = Fixture::new();
    let s = f.service("reviews", 1, 2);
    f.outlier(s, outlier(100), 5);
    f.anchors = Anchors::default();
    let d = f.only();
    assert_eq!(d.code, Code::CanEjectEveryEndpoint);
    assert_eq!(d.span, None);
}

// ---- authorization ----

fn workload(name: &str) -> Workload {
    Workload {
        name: name.to_owned(),
        namespace: "default".into(),
        identity: Some(format!("spiffe://cluster.local/ns/default/sa/{name}")),
        inbound: vec![inbound(9080, TlsMode::Permissive)],
        outbound: Vec::new(),
        serves: Vec::new(),
        authorization: Vec::new(),
        jwt: Vec::new(),
        telemetry: spec::Telemetry::default(),
        labels: Default::default(),
        outbound_traffic: Default::default(),
    }
}

fn inbound(port: u16, tls: TlsMode) -> InboundPort {
    InboundPort {
        port,
        protocol: Protocol::Http,
        target: format!("127.0.0.1:{}", port + 1).parse().unwrap(),
        tls,
    }
}

fn policy(
    name: &str,
    action: AuthzAction,
    line: u32,
    rules: Vec<AuthzRule>,
) -> AuthorizationPolicy {
    AuthorizationPolicy {
        name: name.to_owned(),
        action,
        rules,
        source: loc(line),
    }
}

fn exact(s: &str) -> StringPattern {
    StringPattern::Exact(s.to_owned())
}

fn paths(patterns: Vec<StringPattern>) -> AuthzRule {
    AuthzRule {
        to: vec![AuthzOperation {
            paths: patterns,
            ..AuthzOperation::default()
        }],
        ..AuthzRule::default()
    }
}

fn principals(patterns: Vec<StringPattern>) -> AuthzRule {
    AuthzRule {
        from: vec![AuthzSource {
            principals: patterns,
            ..AuthzSource::default()
        }],
        ..AuthzRule::default()
    }
}

/// A fixture with one workload at line 1 holding these policies, with health paths allowed
/// unless the policies say otherwise.
fn authorized(mut w: Workload, policies: Vec<AuthorizationPolicy>) -> Fixture {
    w.authorization = policies;
    let mut f = Fixture::new();
    f.workload(w, 1);
    f
}

fn health() -> AuthorizationPolicy {
    policy(
        "health",
        AuthzAction::Allow,
        30,
        vec![paths(vec![exact("/healthz")])],
    )
}

#[test]
fn an_allow_policy_without_rules_alone_denies_everything() {
    let f = authorized(
        workload("w"),
        vec![policy("none", AuthzAction::Allow, 4, vec![])],
    );
    assert_eq!(f.found(), vec![at("W0164", 4)]);
    let d = f.only();
    assert!(
        d.message.contains("allow policy `none` of workload `w`"),
        "{}",
        d.message
    );
    assert!(d.message.contains("denies every request"));
    // Another ALLOW policy with rules makes it harmless.
    let f = authorized(
        workload("w"),
        vec![policy("none", AuthzAction::Allow, 4, vec![]), health()],
    );
    assert_eq!(f.found(), vec![]);
}

#[test]
fn a_deny_rule_matching_everything_is_an_error() {
    let f = authorized(
        workload("w"),
        vec![
            policy("empty", AuthzAction::Deny, 4, vec![AuthzRule::default()]),
            policy(
                "star",
                AuthzAction::Deny,
                5,
                vec![paths(vec![StringPattern::Any])],
            ),
            policy(
                "all-ports",
                AuthzAction::Deny,
                6,
                vec![AuthzRule {
                    to: vec![AuthzOperation {
                        ports: vec![9080],
                        methods: vec![StringPattern::Any],
                        ..AuthzOperation::default()
                    }],
                    when: vec![AuthzCondition {
                        key: ConditionKey::DestinationPort,
                        values: vec![StringPattern::Any],
                        not_values: vec![],
                    }],
                    ..AuthzRule::default()
                }],
            ),
            // The second rule matches everything: one is enough.
            policy(
                "second",
                AuthzAction::Deny,
                7,
                vec![paths(vec![exact("/a")]), AuthzRule::default()],
            ),
        ],
    );
    assert_eq!(
        f.found(),
        vec![
            at("E0165", 4),
            at("E0165", 5),
            at("E0165", 6),
            at("E0165", 7)
        ]
    );
    let d = &f.diagnostics()[0];
    assert!(
        d.message.contains("deny policy `empty` of workload `w`"),
        "{}",
        d.message
    );
    assert!(d
        .help
        .as_deref()
        .unwrap()
        .contains("allow policy with no rules"));
}

#[test]
fn narrower_deny_rules_are_not_errors() {
    let narrow = vec![
        paths(vec![exact("/admin")]),
        AuthzRule {
            to: vec![AuthzOperation {
                not_paths: vec![exact("/public")],
                ..AuthzOperation::default()
            }],
            ..AuthzRule::default()
        },
        AuthzRule {
            to: vec![AuthzOperation {
                ports: vec![9090],
                ..AuthzOperation::default()
            }],
            ..AuthzRule::default()
        },
        // A JWT is optional, so `*` request principals do not cover every request.
        AuthzRule {
            from: vec![AuthzSource {
                request_principals: vec![StringPattern::Any],
                ..AuthzSource::default()
            }],
            ..AuthzRule::default()
        },
        // Plaintext callers have no principal on a permissive port.
        principals(vec![StringPattern::Any]),
        AuthzRule {
            when: vec![AuthzCondition {
                key: ConditionKey::RequestHeader("x-block".to_owned()),
                values: vec![StringPattern::Any],
                not_values: vec![],
            }],
            ..AuthzRule::default()
        },
    ];
    for (i, rule) in narrow.into_iter().enumerate() {
        let f = authorized(
            workload("w"),
            vec![policy("deny", AuthzAction::Deny, 4, vec![rule])],
        );
        assert!(
            f.diagnostics()
                .iter()
                .all(|d| d.code != Code::DenyPolicyDeniesAll),
            "rule {i}: {:?}",
            f.found()
        );
    }
}

#[test]
fn a_deny_on_any_principal_covers_everything_when_every_port_is_strict() {
    let mut w = workload("w");
    w.inbound = vec![inbound(9080, TlsMode::Strict)];
    let f = authorized(
        w,
        vec![policy(
            "peers",
            AuthzAction::Deny,
            4,
            vec![principals(vec![StringPattern::Any])],
        )],
    );
    assert_eq!(f.found(), vec![at("E0165", 4)]);
}

#[test]
fn principal_rules_on_a_plaintext_workload_warn() {
    let mut w = workload("w");
    w.inbound = vec![
        inbound(9080, TlsMode::Disable),
        inbound(9090, TlsMode::Disable),
    ];
    let namespaces = AuthzRule {
        from: vec![AuthzSource {
            namespaces: vec![exact("default")],
            ..AuthzSource::default()
        }],
        ..AuthzRule::default()
    };
    let by_condition = AuthzRule {
        when: vec![AuthzCondition {
            key: ConditionKey::SourcePrincipal,
            values: vec![exact("spiffe://cluster.local/ns/default/sa/a")],
            not_values: vec![],
        }],
        ..AuthzRule::default()
    };
    let f = authorized(
        w.clone(),
        vec![
            policy(
                "a",
                AuthzAction::Allow,
                4,
                vec![principals(vec![exact("spiffe://x")])],
            ),
            policy("b", AuthzAction::Allow, 8, vec![namespaces, by_condition]),
        ],
    );
    // The probes are denied too, but W0166 already says every request is.
    assert_eq!(f.found(), vec![at("W0166", 4)]);
    let d = &f.diagnostics()[0];
    assert!(
        d.message.contains("workload `w` (`a`, `b`)"),
        "{}",
        d.message
    );
    // One rule that does not need an identity is enough to stay quiet.
    let f = authorized(
        w.clone(),
        vec![
            policy(
                "a",
                AuthzAction::Allow,
                4,
                vec![principals(vec![exact("spiffe://x")])],
            ),
            health(),
        ],
    );
    assert_eq!(f.found(), vec![]);
    // So is one port accepting mTLS.
    w.inbound[1].tls = TlsMode::Permissive;
    let f = authorized(
        w,
        vec![
            policy(
                "a",
                AuthzAction::Allow,
                4,
                vec![principals(vec![exact("spiffe://x")])],
            ),
            health(),
        ],
    );
    assert_eq!(f.found(), vec![]);
}

#[test]
fn a_deny_matching_a_health_path_warns_naming_path_and_policy() {
    let f = authorized(
        workload("w"),
        vec![policy(
            "no-probes",
            AuthzAction::Deny,
            6,
            vec![paths(vec![
                exact("/healthz"),
                StringPattern::Prefix("/read".to_owned()),
            ])],
        )],
    );
    assert_eq!(f.found(), vec![at("W0167", 6)]);
    let d = f.only();
    assert!(
        d.message.contains("deny policy `no-probes` of workload `w` denies the health probe paths `/healthz`, `/ready`, `/readyz`"),
        "{}",
        d.message
    );
}

#[test]
fn a_deny_of_plaintext_callers_denies_probes() {
    let f = authorized(
        workload("w"),
        vec![policy(
            "mtls-only",
            AuthzAction::Deny,
            6,
            vec![AuthzRule {
                from: vec![AuthzSource {
                    not_principals: vec![StringPattern::Any],
                    ..AuthzSource::default()
                }],
                ..AuthzRule::default()
            }],
        )],
    );
    assert_eq!(f.found(), vec![at("W0167", 6)]);
}

#[test]
fn allow_policies_admitting_no_health_path_warn() {
    let api = policy(
        "api",
        AuthzAction::Allow,
        3,
        vec![paths(vec![StringPattern::Prefix("/api/".to_owned())])],
    );
    let f = authorized(workload("w"), vec![api.clone()]);
    assert_eq!(f.found(), vec![at("W0167", 3)]);
    let d = f.only();
    assert!(
        d.message
            .contains("no allow policy of workload `w` (`api`)"),
        "{}",
        d.message
    );
    assert!(d.message.contains("`/healthz`"), "{}", d.message);
    // Admitting one probe path is enough; so is admitting it on one of several ports.
    let f = authorized(workload("w"), vec![api.clone(), health()]);
    assert_eq!(f.found(), vec![]);
    let mut w = workload("w");
    w.inbound.push(inbound(15021, TlsMode::Permissive));
    let on_port = AuthzRule {
        to: vec![AuthzOperation {
            ports: vec![15021],
            ..AuthzOperation::default()
        }],
        ..AuthzRule::default()
    };
    let f = authorized(
        w,
        vec![api, policy("status", AuthzAction::Allow, 9, vec![on_port])],
    );
    assert_eq!(f.found(), vec![]);
}

#[test]
fn health_is_not_checked_without_http_inbound_ports() {
    let api = policy(
        "api",
        AuthzAction::Allow,
        3,
        vec![paths(vec![StringPattern::Prefix("/api/".to_owned())])],
    );
    let mut w = workload("w");
    w.inbound.clear();
    assert_eq!(authorized(w.clone(), vec![api.clone()]).found(), vec![]);
    w.inbound = vec![inbound(5432, TlsMode::Permissive)];
    w.inbound[0].protocol = Protocol::Tcp;
    assert_eq!(authorized(w, vec![api]).found(), vec![]);
}

#[test]
fn no_policies_no_findings() {
    let f = authorized(workload("w"), vec![]);
    assert_eq!(f.found(), vec![]);
}

// ---- identity ----

/// `server` (line 10) serves `reviews` on 9080 with the given mode; `caller` (line 20) calls it.
fn mesh(tls: TlsMode, server_identity: bool, caller_identity: bool) -> Fixture {
    let mut f = Fixture::new();
    let reviews = f.service("reviews", 1, 2);
    let mut caller = workload("caller");
    caller.outbound = vec![reviews];
    if !caller_identity {
        caller.identity = None;
    }
    let mut server = workload("server");
    server.serves = vec![reviews];
    server.inbound = vec![inbound(9080, tls)];
    if !server_identity {
        server.identity = None;
    }
    f.workload(caller, 20);
    f.workload(server, 10);
    f
}

#[test]
fn a_caller_without_identity_of_a_strict_server_is_an_error() {
    let f = mesh(TlsMode::Strict, true, false);
    assert_eq!(f.found(), vec![at("E0168", 20)]);
    let d = f.only();
    assert!(
        d.message
            .contains("workload `caller` calls service `reviews`, but `server` serves it"),
        "{}",
        d.message
    );
    assert!(d.message.contains("port 9080"), "{}", d.message);
}

#[test]
fn callers_with_identity_or_permissive_servers_are_fine() {
    assert_eq!(mesh(TlsMode::Strict, true, true).found(), vec![]);
    assert_eq!(mesh(TlsMode::Permissive, true, false).found(), vec![]);
    assert_eq!(mesh(TlsMode::Disable, false, false).found(), vec![]);
    // Strict on a port the service does not expose does not concern its callers.
    let mut f = mesh(TlsMode::Strict, true, false);
    f.snapshot.workloads[1].inbound[0].port = 15000;
    assert_eq!(f.found(), vec![]);
}

#[test]
fn a_strict_server_without_identity_warns() {
    let f = mesh(TlsMode::Strict, false, true);
    assert_eq!(f.found(), vec![at("W0169", 10)]);
    assert!(f
        .only()
        .message
        .contains("workload `server` requires mTLS on port 9080"));
}

#[test]
fn one_error_per_caller_and_service() {
    let mut f = mesh(TlsMode::Strict, true, false);
    let mut second = f.snapshot.workloads[1].clone();
    second.name = "server2".to_owned();
    f.workload(second, 30);
    assert_eq!(f.found(), vec![at("E0168", 20)]);
}

// ---- positions from the syntax tree ----

#[test]
fn anchors_point_at_declaration_names() {
    let text = "service reviews {\n  port 9080 http\n  endpoint 127.0.0.1:9081 { version = \"v1\" }\n  subset v1 { version = \"v1\" }\n}\nworkload pp {\n  inbound 9080 http -> 127.0.0.1:9081\n}\n";
    let mut sources = Sources::new();
    let id = sources.add("a.mesh", text);
    let file = crate::parse::parse_file(id, text).unwrap();
    let anchors = Anchors::from_files(&[file]);
    let line = |at: Option<SourceSpan>| sources.describe(at.unwrap());
    assert_eq!(line(anchors.workload(&workload("pp"))), "a.mesh:6");
    assert_eq!(line(anchors.service_outlier("reviews")), "a.mesh:1");
    assert_eq!(line(anchors.subset_outlier("reviews", "v1")), "a.mesh:4");
    assert_eq!(anchors.workload(&workload("nope")), None);
    let mut elsewhere = workload("pp");
    elsewhere.namespace = "other".into();
    assert_eq!(anchors.workload(&elsewhere), None);
    assert_eq!(anchors.subset_outlier("reviews", "v9"), None);
}

#[test]
fn durations_read_like_the_config() {
    assert_eq!(duration(2000), "2s");
    assert_eq!(duration(1500), "1500ms");
    assert_eq!(duration(0), "0ms");
}

#[test]
fn renders_at_the_recorded_position() {
    let mut f = with_routes(vec![retried("r", 7, Some(3000), retry(3, Some(1000)))]);
    f.snapshot.routes[0].rules[0].source.column = 3;
    let d = f.only();
    let text = d.render(&f.sources);
    assert!(
        text.starts_with("m.mesh:7:3: warning[W0160]: rule `r` of route `web`: 4 tries"),
        "{text}"
    );
    assert!(text.contains(" 7 | line7\n"), "{text}");
    assert!(text.contains("   |   ^^^\n"), "{text}");
}

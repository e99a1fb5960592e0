use crate::SourceLocation;

use super::*;

fn exact(s: &str) -> StringPattern {
    StringPattern::Exact(s.to_owned())
}

fn policy(name: &str, action: AuthzAction, rules: Vec<AuthzRule>) -> AuthorizationPolicy {
    AuthorizationPolicy {
        name: name.to_owned(),
        action,
        rules,
        source: SourceLocation::default(),
    }
}

fn from_principal(p: StringPattern) -> AuthzRule {
    AuthzRule {
        from: vec![AuthzSource {
            principals: vec![p],
            ..AuthzSource::default()
        }],
        ..AuthzRule::default()
    }
}

fn to(op: AuthzOperation) -> AuthzRule {
    AuthzRule {
        to: vec![op],
        ..AuthzRule::default()
    }
}

fn get(path: &str) -> AuthzRequest {
    AuthzRequest {
        method: "GET".to_owned(),
        host: Some("Reviews.default".to_owned()),
        path: path.to_owned(),
        port: Some(9080),
        ..AuthzRequest::default()
    }
}

fn with_principal(mut request: AuthzRequest, principal: &str) -> AuthzRequest {
    request.principal = Some(principal.to_owned());
    request
}

const PRODUCTPAGE: &str = "spiffe://cluster.local/ns/default/sa/productpage";

#[test]
fn no_policy_allows() {
    assert_eq!(evaluate(&[], &get("/")), Decision::Allow(None));
    assert!(evaluate(&[], &get("/")).is_allowed());
}

#[test]
fn an_allow_policy_without_rules_matches_nothing() {
    let policies = [policy("nothing", AuthzAction::Allow, vec![])];
    assert_eq!(evaluate(&policies, &get("/")), Decision::Deny(None));
    // A DENY policy without rules matches nothing either.
    let policies = [policy("nothing", AuthzAction::Deny, vec![])];
    assert_eq!(evaluate(&policies, &get("/")), Decision::Allow(None));
}

#[test]
fn an_empty_rule_matches_everything() {
    let policies = [policy(
        "all",
        AuthzAction::Allow,
        vec![AuthzRule::default()],
    )];
    assert_eq!(
        evaluate(&policies, &get("/x")),
        Decision::Allow(Some(&policies[0]))
    );
}

#[test]
fn deny_is_evaluated_before_allow() {
    let policies = [
        policy("allow-all", AuthzAction::Allow, vec![AuthzRule::default()]),
        policy(
            "deny-admin",
            AuthzAction::Deny,
            vec![to(AuthzOperation {
                paths: vec![StringPattern::Prefix("/admin".to_owned())],
                ..AuthzOperation::default()
            })],
        ),
    ];
    assert_eq!(
        evaluate(&policies, &get("/admin/users")),
        Decision::Deny(Some(&policies[1]))
    );
    assert_eq!(
        evaluate(&policies, &get("/api")),
        Decision::Allow(Some(&policies[0]))
    );
}

#[test]
fn any_allow_policy_may_allow() {
    let policies = [
        policy(
            "pp",
            AuthzAction::Allow,
            vec![from_principal(exact(PRODUCTPAGE))],
        ),
        policy(
            "health",
            AuthzAction::Allow,
            vec![to(AuthzOperation {
                paths: vec![exact("/healthz")],
                ..AuthzOperation::default()
            })],
        ),
    ];
    assert_eq!(
        evaluate(&policies, &get("/healthz")),
        Decision::Allow(Some(&policies[1]))
    );
    assert_eq!(
        evaluate(&policies, &with_principal(get("/api"), PRODUCTPAGE)),
        Decision::Allow(Some(&policies[0]))
    );
    assert_eq!(evaluate(&policies, &get("/api")), Decision::Deny(None));
}

#[test]
fn audit_never_decides() {
    let policies = [policy(
        "log",
        AuthzAction::Audit,
        vec![AuthzRule::default()],
    )];
    assert_eq!(evaluate(&policies, &get("/")), Decision::Allow(None));
    let request = get("/");
    let audited: Vec<_> = audits(&policies, &request).collect();
    assert_eq!(audited, vec![&policies[0]]);
}

#[test]
fn any_pattern_requires_the_attribute() {
    let rule = from_principal(StringPattern::Any);
    assert!(!rule_matches(&rule, &get("/")));
    assert!(rule_matches(&rule, &with_principal(get("/"), PRODUCTPAGE)));
    // `not_principals ["*"]` holds exactly for requests without identity.
    let rule = AuthzRule {
        from: vec![AuthzSource {
            not_principals: vec![StringPattern::Any],
            ..AuthzSource::default()
        }],
        ..AuthzRule::default()
    };
    assert!(rule_matches(&rule, &get("/")));
    assert!(!rule_matches(&rule, &with_principal(get("/"), PRODUCTPAGE)));
    // Hosts: a request without a Host header matches no host pattern.
    let rule = to(AuthzOperation {
        hosts: vec![StringPattern::Any],
        ..AuthzOperation::default()
    });
    let mut request = get("/");
    assert!(rule_matches(&rule, &request));
    request.host = None;
    assert!(!rule_matches(&rule, &request));
}

#[test]
fn patterns_compare_exact_prefix_and_suffix() {
    assert!(pattern_matches(&exact("/a"), Some("/a")));
    assert!(!pattern_matches(&exact("/a"), Some("/ab")));
    assert!(pattern_matches(
        &StringPattern::Prefix("/a".into()),
        Some("/ab")
    ));
    assert!(!pattern_matches(
        &StringPattern::Prefix("/a".into()),
        Some("/b")
    ));
    assert!(pattern_matches(
        &StringPattern::Suffix(".json".into()),
        Some("/x.json")
    ));
    assert!(!pattern_matches(
        &StringPattern::Suffix(".json".into()),
        Some("/x.xml")
    ));
    assert!(!pattern_matches(&exact(""), None));
}

#[test]
fn a_rule_needs_any_from_and_any_to_and_every_when() {
    let rule = AuthzRule {
        from: vec![
            AuthzSource {
                principals: vec![exact("spiffe://td/ns/a/sa/x")],
                ..AuthzSource::default()
            },
            AuthzSource {
                namespaces: vec![exact("default")],
                ..AuthzSource::default()
            },
        ],
        to: vec![
            AuthzOperation {
                methods: vec![exact("GET")],
                ..AuthzOperation::default()
            },
            AuthzOperation {
                methods: vec![exact("POST")],
                paths: vec![exact("/submit")],
                ..AuthzOperation::default()
            },
        ],
        when: vec![
            AuthzCondition {
                key: ConditionKey::RequestHeader("x-team".into()),
                values: vec![exact("blue")],
                not_values: vec![],
            },
            AuthzCondition {
                key: ConditionKey::DestinationPort,
                values: vec![exact("9080")],
                not_values: vec![],
            },
        ],
    };
    let mut request = with_principal(get("/"), PRODUCTPAGE);
    request.headers.push(("X-Team".into(), "blue".into()));
    assert!(
        rule_matches(&rule, &request),
        "second from, first to, both when"
    );
    request.method = "POST".into();
    assert!(!rule_matches(&rule, &request), "POST only to /submit");
    request.path = "/submit".into();
    assert!(rule_matches(&rule, &request));
    request.port = Some(9090);
    assert!(!rule_matches(&rule, &request), "every when must hold");
    request.port = Some(9080);
    request.principal = Some("spiffe://td/ns/other/sa/y".into());
    assert!(!rule_matches(&rule, &request), "no from holds");
    request.principal = Some("spiffe://td/ns/a/sa/x".into());
    assert!(rule_matches(&rule, &request));
    request.headers.clear();
    assert!(!rule_matches(&rule, &request), "absent header");
}

#[test]
fn not_lists_exclude() {
    let rule = to(AuthzOperation {
        paths: vec![StringPattern::Prefix("/api/".into())],
        not_paths: vec![exact("/api/admin")],
        not_methods: vec![exact("DELETE")],
        not_ports: vec![15021],
        ..AuthzOperation::default()
    });
    assert!(rule_matches(&rule, &get("/api/users")));
    assert!(!rule_matches(&rule, &get("/api/admin")));
    let mut request = get("/api/users");
    request.method = "DELETE".into();
    assert!(!rule_matches(&rule, &request));
    let mut request = get("/api/users");
    request.port = Some(15021);
    assert!(!rule_matches(&rule, &request));
    // An unknown port matches no `ports` condition and is excluded by no `not_ports`.
    request.port = None;
    assert!(rule_matches(&rule, &request));
    let ports = to(AuthzOperation {
        ports: vec![9080],
        ..AuthzOperation::default()
    });
    assert!(!rule_matches(&ports, &request));
    assert!(rule_matches(&ports, &get("/")));
}

#[test]
fn hosts_compare_case_insensitively() {
    let rule = to(AuthzOperation {
        hosts: vec![exact("reviews.DEFAULT")],
        ..AuthzOperation::default()
    });
    assert!(rule_matches(&rule, &get("/")));
    let rule = to(AuthzOperation {
        not_hosts: vec![StringPattern::Suffix(".Default".into())],
        ..AuthzOperation::default()
    });
    assert!(!rule_matches(&rule, &get("/")));
}

#[test]
fn namespaces_come_from_the_spiffe_id() {
    assert_eq!(spiffe_namespace(PRODUCTPAGE), Some("default"));
    assert_eq!(spiffe_namespace("spiffe://td/ns/prod/sa/x"), Some("prod"));
    assert_eq!(spiffe_namespace("spiffe://td/sa/x"), None);
    assert_eq!(spiffe_namespace("spiffe://td/ns/"), None);
    assert_eq!(spiffe_namespace("td/ns/a/sa/x"), None);
    let rule = AuthzRule {
        from: vec![AuthzSource {
            namespaces: vec![StringPattern::Any],
            not_namespaces: vec![exact("test")],
            ..AuthzSource::default()
        }],
        ..AuthzRule::default()
    };
    assert!(rule_matches(&rule, &with_principal(get("/"), PRODUCTPAGE)));
    assert!(!rule_matches(
        &rule,
        &with_principal(get("/"), "spiffe://td/ns/test/sa/x")
    ));
    assert!(!rule_matches(&rule, &get("/")));
    let when = AuthzRule {
        when: vec![AuthzCondition {
            key: ConditionKey::SourceNamespace,
            values: vec![],
            not_values: vec![exact("test")],
        }],
        ..AuthzRule::default()
    };
    assert!(when_holds_for(&when, "spiffe://td/ns/default/sa/x"));
    assert!(!when_holds_for(&when, "spiffe://td/ns/test/sa/x"));
    assert!(
        rule_matches(&when, &get("/")),
        "no identity: nothing to exclude"
    );
}

fn when_holds_for(rule: &AuthzRule, principal: &str) -> bool {
    rule_matches(rule, &with_principal(get("/"), principal))
}

#[test]
fn jwt_attributes() {
    let jwt = JwtFacts {
        principal: Some("https://issuer/alice".into()),
        audiences: vec!["a".into(), "b".into()],
        presenter: Some("app".into()),
        claims: vec![(vec!["groups".into()], vec!["dev".into(), "ops".into()])],
    };
    let mut request = get("/");
    let condition = |key, value: &str| AuthzRule {
        when: vec![AuthzCondition {
            key,
            values: vec![exact(value)],
            not_values: vec![],
        }],
        ..AuthzRule::default()
    };
    let rules = [
        condition(ConditionKey::JwtClaim(vec!["groups".into()]), "ops"),
        condition(ConditionKey::JwtAudience, "b"),
        condition(ConditionKey::JwtPresenter, "app"),
        condition(ConditionKey::RequestPrincipal, "https://issuer/alice"),
    ];
    for rule in &rules {
        assert!(!rule_matches(rule, &request), "no token: {rule:?}");
    }
    request.jwt = Some(jwt);
    for rule in &rules {
        assert!(rule_matches(rule, &request), "{rule:?}");
    }
    assert!(!rule_matches(
        &condition(ConditionKey::JwtClaim(vec!["groups".into()]), "qa"),
        &request
    ));
    let source = AuthzRule {
        from: vec![AuthzSource {
            request_principals: vec![StringPattern::Prefix("https://issuer/".into())],
            not_request_principals: vec![exact("https://issuer/bob")],
            ..AuthzSource::default()
        }],
        ..AuthzRule::default()
    };
    assert!(rule_matches(&source, &request));
    assert!(!rule_matches(&source, &get("/")));
}

#[test]
fn source_ip_and_principal_conditions() {
    let rule = AuthzRule {
        when: vec![
            AuthzCondition {
                key: ConditionKey::SourceIp,
                values: vec![exact("10.0.0.0/8"), exact("192.0.2.1")],
                not_values: vec![],
            },
            AuthzCondition {
                key: ConditionKey::SourcePrincipal,
                values: vec![StringPattern::Any],
                not_values: vec![],
            },
        ],
        ..AuthzRule::default()
    };
    let mut request = with_principal(get("/"), PRODUCTPAGE);
    assert!(!rule_matches(&rule, &request));
    request.source_ip = Some([10, 0, 0, 7].into());
    assert!(rule_matches(&rule, &request));
    request.source_ip = Some([192, 0, 2, 1].into());
    assert!(rule_matches(&rule, &request));
    request.source_ip = Some([192, 0, 2, 2].into());
    assert!(!rule_matches(&rule, &request));
    request.principal = None;
    assert!(!rule_matches(&rule, &request));
}

#[test]
fn ip_blocks_hold_for_callers_inside_them() {
    let block = |text: &str| text.parse::<crate::AddressBlock>().unwrap();
    let rule = AuthzRule {
        from: vec![AuthzSource {
            ip_blocks: vec![block("198.18.0.0/24")],
            not_ip_blocks: vec![block("198.18.0.9")],
            ..AuthzSource::default()
        }],
        ..AuthzRule::default()
    };
    let mut request = get("/");
    assert!(!rule_matches(&rule, &request), "no address");
    request.source_ip = Some([198, 18, 0, 2].into());
    assert!(rule_matches(&rule, &request));
    // An IPv4 caller seen on an IPv6 socket is the same caller.
    request.source_ip = Some("::ffff:198.18.0.2".parse().unwrap());
    assert!(rule_matches(&rule, &request));
    request.source_ip = Some([198, 18, 0, 9].into());
    assert!(!rule_matches(&rule, &request), "excluded");
    request.source_ip = Some([198, 18, 1, 2].into());
    assert!(!rule_matches(&rule, &request), "outside");
}

/// Istio's "TCP traffic" task: for a connection, an ALLOW rule with a method never matches,
/// and a DENY rule with a method denies every connection it otherwise matches.
#[test]
fn connections_read_rules_as_istio_does_for_tcp() {
    let connection = AuthzRequest {
        port: Some(9000),
        principal: Some(PRODUCTPAGE.to_owned()),
        tcp: true,
        ..AuthzRequest::default()
    };
    let by_port = to(AuthzOperation {
        ports: vec![9000],
        ..AuthzOperation::default()
    });
    let by_port_and_method = to(AuthzOperation {
        ports: vec![9000],
        methods: vec![exact("GET")],
        ..AuthzOperation::default()
    });
    let allow = |rule: &AuthzRule| [policy("allow", AuthzAction::Allow, vec![rule.clone()])];
    assert!(evaluate(&allow(&by_port), &connection).is_allowed());
    assert_eq!(
        evaluate(&allow(&by_port_and_method), &connection),
        Decision::Deny(None),
        "an ALLOW rule reading the method allows no connection"
    );
    let deny = [policy("deny", AuthzAction::Deny, vec![by_port_and_method])];
    assert!(
        !evaluate(&deny, &connection).is_allowed(),
        "a DENY rule reading the method denies every connection to the port"
    );
    let mut other_port = connection.clone();
    other_port.port = Some(9001);
    assert!(evaluate(&deny, &other_port).is_allowed());

    // JWT and header conditions likewise; identity conditions hold as for HTTP.
    let mut rule = from_principal(exact(PRODUCTPAGE));
    rule.when.push(AuthzCondition {
        key: ConditionKey::RequestHeader("x-token".into()),
        values: vec![exact("secret")],
        not_values: vec![],
    });
    assert!(!evaluate(&allow(&rule), &connection).is_allowed());
    let deny = [policy("deny", AuthzAction::Deny, vec![rule])];
    assert!(!evaluate(&deny, &connection).is_allowed());
    let mut stranger = connection;
    stranger.principal = None;
    assert!(evaluate(&deny, &stranger).is_allowed());
}

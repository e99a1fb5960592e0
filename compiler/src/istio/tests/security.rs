//! The security kinds: AuthorizationPolicy, PeerAuthentication, RequestAuthentication.

use super::*;

#[test]
fn checks_security_resources_before_importing_them() {
    let yaml = "\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: r}
spec:
  jwtRules:
  - issuer: example
    timeout: apple
    jwksUri: example.com/keys
";
    let failed = compile(yaml).unwrap_err();
    let found = codes_and_lines(&failed.diagnostics, &failed.sources);
    assert_eq!(found, [(Code::IstioSchema, 7), (Code::IstioSchema, 8)]);
}

#[test]
fn imports_authorization_policies() {
    let yaml = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-deny, namespace: istio-system}
spec:
  action: DENY
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/a/sa/b]
        notPrincipals: ['*/sa/admin']
        requestPrincipals: ['issuer/*']
        notRequestPrincipals: [x/y]
        namespaces: [dev]
        notNamespaces: [prod]
        ipBlocks: [10.0.0.0/8]
    - source: {serviceAccounts: [ops/robot, local]}
    to:
    - operation:
        hosts: [a.example]
        notHosts: [b.example]
        methods: [GET]
        notMethods: [POST]
        paths: [/admin*]
        notPaths: [/admin/health]
        ports: ['8080']
        notPorts: ['9090']
    when:
    - key: request.headers[x-token]
      values: [secret]
      notValues: [public]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-some, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules:
  - from: [{source: {remoteIpBlocks: [1.2.3.4]}}]
  - to: [{operation: {methods: [GET]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: shop}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: shop}
spec: {action: CUSTOM, provider: {name: opa}}
";
    let (items, found) = import_ast(yaml);
    assert_eq!(
        found,
        [
            (Code::IstioUnsupportedField, 38), // remoteIpBlocks in an ALLOW rule: rule dropped
            (Code::IstioUnsupportedField, 49), // provider
            (Code::IstioUnsupportedField, 49), // CUSTOM
        ],
        "{found:?}"
    );
    let policies = authorizations(&items);
    assert_eq!(policies.len(), 3);

    let deny = policies[0];
    assert_eq!(deny.name.name, "istio-system/mesh-deny");
    assert_eq!(deny.target, ast::PolicyTarget::default());
    assert_eq!(deny.action.unwrap().0, spec::AuthzAction::Deny);
    assert_eq!(deny.origin, ast::Origin::Istio);
    let rule = &deny.rules[0];
    let strs = |list: &[ast::Str]| list.iter().map(|s| s.value.clone()).collect::<Vec<_>>();
    let source = &rule.from[0];
    assert_eq!(strs(&source.principals), ["cluster.local/ns/a/sa/b"]);
    assert_eq!(
        strs(&rule.from[1].principals),
        ["*/ns/ops/sa/robot", "*/ns/istio-system/sa/local"]
    );
    assert_eq!(strs(&source.not_principals), ["*/sa/admin"]);
    assert_eq!(strs(&source.request_principals), ["issuer/*"]);
    assert_eq!(strs(&source.not_request_principals), ["x/y"]);
    assert_eq!(strs(&source.namespaces), ["dev"]);
    assert_eq!(strs(&source.not_namespaces), ["prod"]);
    assert_eq!(strs(&source.ip_blocks), ["10.0.0.0/8"]);
    let op = &rule.to[0];
    assert_eq!(strs(&op.hosts), ["a.example"]);
    assert_eq!(strs(&op.not_hosts), ["b.example"]);
    assert_eq!(strs(&op.methods), ["GET"]);
    assert_eq!(strs(&op.not_methods), ["POST"]);
    assert_eq!(strs(&op.paths), ["/admin*"]);
    assert_eq!(strs(&op.not_paths), ["/admin/health"]);
    assert_eq!(op.ports[0].value, 8080);
    assert_eq!(op.not_ports[0].value, 9090);
    let when = &rule.when[0];
    assert_eq!(when.key.value, "request.headers[x-token]");
    assert_eq!(strs(&when.values), ["secret"]);
    assert_eq!(strs(&when.not_values), ["public"]);

    let allow = policies[1];
    assert_eq!(allow.name.name, "shop/allow-some");
    assert_eq!(allow.target.namespace.as_ref().unwrap().name, "shop");
    let selector = allow.target.selector.as_ref().unwrap();
    assert_eq!(
        (
            selector[0].key.name.as_str(),
            selector[0].value.value.as_str()
        ),
        ("app", "web")
    );
    assert_eq!(allow.action, None);
    assert_eq!(allow.rules.len(), 1);
    assert_eq!(strs(&allow.rules[0].to[0].methods), ["GET"]);

    let deny_all = policies[2];
    assert_eq!(deny_all.name.name, "shop/deny-all");
    assert_eq!((deny_all.action, deny_all.rules.len()), (None, 0));
}

#[test]
fn imports_peer_authentications() {
    let yaml = "\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  mtls: {mode: UNSET}
  portLevelMtls:
    5432: {mode: DISABLE}
    '8080': {mode: PERMISSIVE}
";
    let (items, found) = import_ast(yaml);
    assert!(found.is_empty(), "{found:?}");
    let peers: Vec<&ast::PeerAuthentication> = items
        .iter()
        .filter_map(|i| match i {
            ast::Item::PeerAuthentication(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(peers[0].name.name, "istio-system/default");
    assert_eq!(peers[0].target.namespace, None);
    assert_eq!(peers[0].mode.unwrap().value, spec::TlsMode::Strict);
    assert_eq!(peers[1].target.namespace.as_ref().unwrap().name, "shop");
    assert_eq!(peers[1].mode, None);
    let ports: Vec<(u64, spec::TlsMode)> = peers[1]
        .port_modes
        .iter()
        .map(|(n, m)| (n.value, m.value))
        .collect();
    assert_eq!(
        ports,
        [
            (5432, spec::TlsMode::Disable),
            (8080, spec::TlsMode::Permissive)
        ]
    );
    assert_eq!(peers[1].origin, ast::Origin::Istio);
}

#[test]
fn imports_request_authentication_with_local_keys_only() {
    let yaml = "\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  jwtRules:
  - issuer: https://local.example
    audiences: [web, api]
    jwksUri: file:///etc/mesh/jwks.json
    forwardOriginalToken: true
  - issuer: https://remote.example
    jwksUri: https://remote.example/keys
  - issuer: inline
    jwks: '{\"keys\": []}'
  - issuer: discovered
";
    let (items, found) = import_ast(yaml);
    assert_eq!(
        found,
        [
            (Code::IstioUnsupportedField, 10), // forwardOriginalToken
            (Code::IstioUnsupportedField, 12), // https jwksUri
            (Code::IstioUnsupportedField, 14), // inline jwks
            (Code::IstioUnsupportedField, 15), // no key source (OpenID discovery)
        ],
        "{found:?}"
    );
    let ast::Item::Authentication(authn) = &items[0] else {
        panic!("{items:?}")
    };
    assert_eq!(authn.name.name, "shop/jwt");
    assert_eq!(authn.jwt.len(), 1);
    let rule = &authn.jwt[0];
    assert_eq!(rule.issuer.value, "https://local.example");
    assert_eq!(rule.jwks.value, "/etc/mesh/jwks.json");
    let audiences: Vec<&str> = rule.audiences.iter().map(|a| a.value.as_str()).collect();
    assert_eq!(audiences, ["web", "api"]);
}

#[test]
fn security_resources_targeting_gateways_are_skipped() {
    let yaml = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gw, namespace: shop}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]
  action: DENY
";
    let (items, found) = import_ast(yaml);
    assert!(items.is_empty(), "{items:?}");
    assert_eq!(found, [(Code::IstioUnsupportedField, 5)]);
}

#[test]
fn workload_entry_sets_namespace_and_labels() {
    let yaml = "\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: shop}
spec:
  address: 10.1.0.5
  labels: {app: db}
";
    let (items, found) = import_ast(yaml);
    assert!(found.is_empty(), "{found:?}");
    let ast::Item::Workload(workload) = &items[0] else {
        panic!("{items:?}")
    };
    assert_eq!(workload.namespace.as_ref().unwrap().name, "shop");
    assert_eq!(workload.labels[0].key.name, "app");
    assert_eq!(workload.labels[0].value.value, "db");
}

#[test]
fn rejects_invalid_policies_at_the_field() {
    let yaml = format!(
        "{SERVICE_ENTRY}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: shop}}
spec:
  host: reviews.example
  trafficPolicy:
    loadBalancer: {{simple: FASTEST}}
    outlierDetection: {{maxEjectionPercent: 101}}
  subsets:
  - name: v1
    trafficPolicy: {{loadBalancer: {{consistentHash: {{ringHash: {{}}}}}}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: a, namespace: shop}}
spec:
  action: MAYBE
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: b, namespace: shop}}
spec:
  rules:
  - to: [{{operation: {{ports: ['http']}}}}]
    from: [{{source: {{serviceAccounts: [a/b/c]}}}}]
"
    );
    let (items, found) = import_ast(&yaml);
    assert_eq!(
        found,
        [
            // Security resources are lowered as they are read, networking ones afterwards.
            (Code::IstioSchema, 37), // action: MAYBE
            (Code::IstioSchema, 45), // serviceAccounts a/b/c
            (Code::IstioSchema, 44), // ports: [http]
            (Code::IstioSchema, 27), // simple: FASTEST
            (Code::IstioSchema, 28), // maxEjectionPercent: 101
            (Code::IstioSchema, 31), // consistentHash without a key
        ],
        "{found:?}"
    );
    assert!(authorizations(&items).is_empty(), "{items:?}");
}

#[test]
fn keeps_any_method_istio_accepts() {
    let yaml = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: methods, namespace: istio-system}
spec:
  rules:
  - to:
    - operation:
        methods: [method, method-prefix-*, '*-suffix-method', GET]
        notMethods: [l7-method]
";
    let (items, found) = import_ast(yaml);
    assert!(found.is_empty(), "{found:?}");
    let methods: Vec<&str> = authorizations(&items)[0].rules[0].to[0]
        .methods
        .iter()
        .map(|m| m.value.as_str())
        .collect();
    assert_eq!(
        methods,
        ["method", "method-prefix-*", "*-suffix-method", "GET"]
    );
    // The lowering accepts them too (E0144 is only for `.mesh` and TOML methods).
    let compiled = compile(yaml).unwrap_or_else(|f| panic!("{}", f.render()));
    assert!(
        !compiled
            .warnings
            .iter()
            .any(|d| d.code == Code::InvalidAuthzValue),
        "{}",
        compiled.render_warnings()
    );
}

#[test]
fn drops_path_templates_towards_denying_more() {
    let yaml = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: shop}
spec:
  rules:
  - to: [{operation: {paths: [/exact, '/path/template/{*}']}}]
  - to: [{operation: {notPaths: ['/{**}/path']}}]
  - to: [{operation: {paths: ['/prefix/*'], methods: [GET]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: shop}
spec:
  action: DENY
  rules:
  - to:
    - operation:
        paths: [/admin, '/api/{*}/secret']
        notPaths: [/health]
        methods: [POST]
";
    let (items, found) = import_ast(yaml);
    assert_eq!(
        found,
        [
            (Code::IstioUnsupportedField, 6),  // ALLOW rule 0: dropped
            (Code::IstioUnsupportedField, 7),  // ALLOW rule 1 (notPaths): dropped
            (Code::IstioUnsupportedField, 18), // DENY: the `paths` list is ignored
        ],
        "{found:?}"
    );
    let policies = authorizations(&items);
    let allow = &policies[0].rules;
    assert_eq!(allow.len(), 1);
    assert_eq!(allow[0].to[0].paths[0].value, "/prefix/*");
    let deny = &policies[1].rules[0].to[0];
    assert!(deny.paths.is_empty(), "{deny:?}");
    assert_eq!(deny.not_paths[0].value, "/health");
    assert_eq!(deny.methods[0].value, "POST");

    let mut sources = Sources::new();
    let id = sources.add("mesh.yaml", yaml);
    let mut diagnostics = Vec::new();
    let file = crate::istio::YamlFile {
        id,
        path: "mesh.yaml",
        text: yaml,
    };
    crate::istio::import(&[file], &[], &mut diagnostics);
    assert_eq!(
        diagnostics[0].message,
        "`spec.rules[0].to[0].operation.paths[1]: path template /path/template/{*}` is not \
         supported yet, the whole rule is dropped: the policy allows fewer requests than \
         Istio's would"
    );
    assert!(
        diagnostics[2]
            .message
            .contains("the whole `paths` list is ignored"),
        "{}",
        diagnostics[2].message
    );
}

#[test]
fn drops_condition_keys_the_snapshot_lacks_towards_denying_more() {
    let yaml = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: shop}
spec:
  rules:
  - when: [{key: remote.ip, values: [10.0.0.1]}]
  - when: [{key: destination.ip, values: [10.0.0.2]}]
  - when: [{key: connection.sni, values: [a.example]}]
  - when: [{key: 'experimental.envoy.filters.a.b[c]', values: [x]}]
  - when: [{key: source.trustDomain, values: [td]}]
  - when: [{key: 'request.headers[x-a]', values: [b]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: shop}
spec:
  action: AUDIT
  rules:
  - when: [{key: remote.ip, values: [10.0.0.1]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: shop}
spec:
  action: DENY
  rules:
  - when:
    - {key: connection.sni, values: [a.example]}
    - {key: source.namespace, values: [dev]}
";
    let (items, found) = import_ast(yaml);
    assert_eq!(
        found,
        [
            (Code::IstioUnsupportedField, 6),
            (Code::IstioUnsupportedField, 7),
            (Code::IstioUnsupportedField, 8),
            (Code::IstioUnsupportedField, 9),
            (Code::IstioUnsupportedField, 10),
            (Code::IstioUnsupportedField, 19),
            (Code::IstioUnsupportedField, 28),
        ],
        "{found:?}"
    );
    let policies = authorizations(&items);
    // ALLOW and AUDIT: every rule with such a key is dropped.
    assert_eq!(policies[0].rules.len(), 1);
    assert_eq!(
        policies[0].rules[0].when[0].key.value,
        "request.headers[x-a]"
    );
    assert!(policies[1].rules.is_empty());
    // DENY: only the condition goes, the rule keeps the others.
    let when = &policies[2].rules[0].when;
    assert_eq!(when.len(), 1);
    assert_eq!(when[0].key.value, "source.namespace");
    // Nothing reaches the lowering's E0145.
    let compiled = compile(yaml).unwrap_or_else(|f| panic!("{}", f.render()));
    assert!(!compiled
        .warnings
        .iter()
        .any(|d| d.code == Code::UnknownConditionKey));
}

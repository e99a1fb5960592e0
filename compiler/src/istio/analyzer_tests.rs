//! Unit tests of the Istio analyzer checks of the import (W0180-W0184): code and line of each.

use crate::diag::Code;

/// The W018x diagnostics of importing one YAML file, as (code, line).
fn analyzer_findings(yaml: &str) -> Vec<(Code, usize)> {
    let (_, found) = super::tests::import_ast(yaml);
    found
        .into_iter()
        .filter(|(code, _)| code.as_str().starts_with("W018"))
        .collect()
}

/// A ServiceEntry `reviews.example` with two HTTP ports and an endpoint.
const TWO_PORTS: &str = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.example]
  resolution: STATIC
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  - {number: 9090, name: http-admin, protocol: HTTP}
  endpoints:
  - address: 10.0.0.1
---
";

#[test]
fn deprecated_fields_are_w0180_at_the_field() {
    let yaml = format!(
        "{TWO_PORTS}\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: shop}}
spec:
  hosts: [reviews.example]
  http:
  - match: [{{uri: {{prefix: /a}}}}]
    route: [{{destination: {{host: reviews.example, port: {{number: 9080}}}}}}]
    mirror: {{host: reviews.example, port: {{number: 9090}}}}
    mirrorPercent: 5
  - match: [{{uri: {{prefix: /b}}}}]
    route: [{{destination: {{host: reviews.example, port: {{number: 9080}}}}}}]
    mirror: {{host: reviews.example, port: {{number: 9090}}}}
    mirror_percent: 5
  - route: [{{destination: {{host: reviews.example, port: {{number: 9080}}}}}}]
    fault:
      delay: {{fixedDelay: 1s, percent: 10}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: shop}}
spec:
  host: reviews.example
  trafficPolicy:
    loadBalancer: {{simple: LEAST_CONN}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews-hash, namespace: other}}
spec:
  host: reviews.example
  trafficPolicy:
    loadBalancer:
      consistentHash: {{httpHeaderName: x-user, minimumRingSize: 1024}}
"
    );
    let mut found = analyzer_findings(&yaml);
    found.sort_by_key(|&(_, line)| line);
    assert_eq!(
        found,
        [
            (Code::IstioDeprecated, 22), // mirrorPercent
            (Code::IstioDeprecated, 26), // mirror_percent
            (Code::IstioDeprecated, 29), // fault.delay.percent
            (Code::IstioDeprecated, 37), // LEAST_CONN
            (Code::IstioDeprecated, 46), // consistentHash.minimumRingSize
        ]
    );
}

#[test]
fn a_destination_of_a_multi_port_service_without_port_is_w0181() {
    let yaml = format!(
        "{TWO_PORTS}\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: shop}}
spec:
  hosts: [reviews.example]
  http:
  - match: [{{uri: {{prefix: /a}}}}]
    route:
    - destination: {{host: reviews.example}}
    mirror: {{host: reviews.example}}
  - route:
    - destination: {{host: reviews.example, port: {{number: 9080}}}}
"
    );
    assert_eq!(
        analyzer_findings(&yaml),
        [
            (Code::IstioDestinationPortRequired, 21), // route destination
            (Code::IstioDestinationPortRequired, 22), // mirror
        ]
    );
}

#[test]
fn a_destination_of_a_single_port_service_needs_no_port() {
    let yaml = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.example]
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.example]
  http:
  - route: [{destination: {host: reviews.example}}]
";
    assert_eq!(analyzer_findings(yaml), []);
}

#[test]
fn a_tcp_or_protocol_less_port_without_addresses_is_w0182() {
    let yaml = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: shop}
spec:
  hosts: [db.example]
  resolution: DNS
  ports:
  - {number: 5432, name: pg, protocol: tcp}
  - {number: 5433, name: pg-replica}
  - {number: 8080, name: http, protocol: HTTP}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cache, namespace: shop}
spec:
  hosts: [cache.example]
  addresses: [10.1.0.0/16]
  resolution: STATIC
  ports: [{number: 6379, name: redis, protocol: TCP}]
  endpoints: [{address: 10.1.0.1}]
";
    assert_eq!(
        analyzer_findings(yaml),
        [
            (Code::IstioServiceEntryAddressesRequired, 8),
            (Code::IstioServiceEntryAddressesRequired, 9),
        ]
    );
}

const CLAIM_ROUTE: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web.example]
  gateways: [shop-gateway]
  http:
  - match:
    - headers:
        x-plain: {exact: a}
        \"@request.auth.claims.group\": {exact: admin}
    route: [{destination: {host: web.example}}]
";

#[test]
fn a_jwt_claim_route_without_request_authentication_is_w0183() {
    assert_eq!(
        analyzer_findings(CLAIM_ROUTE),
        [(Code::IstioJwtClaimRouteWithoutAuthentication, 11)]
    );
}

#[test]
fn a_request_authentication_in_the_namespace_or_root_covers_claim_routes() {
    for namespace in ["shop", "istio-system"] {
        let yaml = format!(
            "{CLAIM_ROUTE}---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: {namespace}}}
spec:
  jwtRules: [{{issuer: https://local.example, jwksUri: file:///etc/jwks.json}}]
"
        );
        assert_eq!(analyzer_findings(&yaml), [], "{namespace}");
    }
}

#[test]
fn one_host_and_port_with_two_protocols_is_w0184() {
    let entry = |name: &str, protocol: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: shop}}
spec:
  hosts: [api.example]
  addresses: [10.2.0.1]
  resolution: DNS
  ports: [{{number: 443, name: p, protocol: {protocol}}}]
---
"
        )
    };
    let yaml = [entry("a", "HTTPS"), entry("b", "https"), entry("c", "HTTP")].concat();
    assert_eq!(
        analyzer_findings(&yaml),
        [(Code::IstioConflictingServiceEntryProtocol, 26)]
    );
}

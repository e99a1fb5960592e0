//! DestinationRule: subsets and traffic policies (load balancer, pool, outlier detection).

use super::client_tls::client_tls;
use super::{float, ident, number, Imported, Resolver};
use crate::ast;
use crate::diag::Code;
use crate::istio::yaml::Node;
use crate::istio::{Out, Resource};

pub(super) fn destination_rule(
    out: &mut Out<'_>,
    r: &Resource<'_>,
    resolver: &Resolver,
    services: &mut [Imported],
) {
    let spec = r.spec;
    out.check_fields(
        spec,
        "spec",
        &[
            "host",
            "trafficPolicy",
            "subsets",
            "exportTo",
            "workloadSelector",
        ],
    );
    for field in ["exportTo", "workloadSelector"] {
        if let Some(value) = spec.get(field) {
            out.unsupported(&format!("spec.{field}"), value, "ignored");
        }
    }
    let policy = spec
        .get("trafficPolicy")
        .and_then(|p| traffic_policy(out, p, "spec.trafficPolicy"));
    let mut subsets = Vec::new();
    if let Some(list) = spec.get("subsets") {
        for (i, subset) in out
            .seq(list, "spec.subsets")
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let path = format!("spec.subsets[{i}]");
            if out.map(subset, &path).is_none() {
                continue;
            }
            out.check_fields(subset, &path, &["name", "labels", "trafficPolicy"]);
            let mut policy = subset
                .get("trafficPolicy")
                .and_then(|p| traffic_policy(out, p, &format!("{path}.trafficPolicy")));
            if let Some(tls) = policy.as_mut().and_then(|p| p.tls.take()) {
                out.unsupported_at(
                    &format!("{path}.trafficPolicy.tls"),
                    tls.span,
                    "ignored (a subset is called as its service is)",
                );
            }
            let Some(name_node) = subset.get("name") else {
                out.schema(subset.span, format!("`{path}.name`: required value"));
                continue;
            };
            let Some(name) = out.str(name_node, &format!("{path}.name")) else {
                continue;
            };
            let selector = subset
                .get("labels")
                .map(|l| out.labels(l, &format!("{path}.labels")))
                .unwrap_or_default();
            subsets.push(ast::Subset {
                file: Some(r.file),
                policy,
                name: ident(name, name_node.span),
                selector,
            });
        }
    }
    let Some(host_node) = spec.get("host") else {
        out.schema(r.kind_span, "`spec.host`: required value".to_owned());
        return;
    };
    let Some(host) = out.str(host_node, "spec.host") else {
        return;
    };
    match resolver.resolve(host, &r.namespace) {
        Some((_, Some(index))) => {
            let service = &mut services[*index].service;
            service.subsets.extend(subsets);
            service.policies.extend(policy);
        }
        Some((name, None)) => out.inexpressible(
            host_node.span,
            format!(
                "`{host}` is service `{name}` declared in a .mesh file; its subsets and traffic \
                 policy cannot come from a DestinationRule yet, rule ignored"
            ),
            "declare the subsets and the policy in the .mesh file",
        ),
        None => out.inexpressible(
            host_node.span,
            format!("host `{host}` is not a declared service, destination rule ignored"),
            "declare it with a ServiceEntry or in a .mesh file",
        ),
    }
}

/// A `trafficPolicy`: load balancer, connection pool and outlier detection. `None` when nothing
/// in it could be lowered (each part left out has its own diagnostic).
pub(super) fn traffic_policy(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ast::Policy> {
    out.map(node, path)?;
    out.fields(
        node,
        path,
        &["loadBalancer", "connectionPool", "outlierDetection", "tls"],
        &[
            "portLevelSettings",
            "tunnel",
            "proxyProtocol",
            "retryBudget",
        ],
        "ignored",
    );
    warmup(out, node, path);
    let policy = ast::Policy {
        span: node.span,
        file: Some(out.file),
        load_balancer: node
            .get("loadBalancer")
            .and_then(|lb| load_balancer(out, lb, &format!("{path}.loadBalancer"))),
        pool: node
            .get("connectionPool")
            .and_then(|p| pool(out, p, &format!("{path}.connectionPool"))),
        outlier: node
            .get("outlierDetection")
            .and_then(|o| outlier(out, o, &format!("{path}.outlierDetection"))),
        tls: node
            .get("tls")
            .and_then(|t| client_tls(out, t, &format!("{path}.tls"))),
    };
    let empty = policy.load_balancer.is_none()
        && policy.pool.is_none()
        && policy.outlier.is_none()
        && policy.tls.is_none();
    (!empty).then_some(policy)
}

/// `loadBalancer.simple` or `loadBalancer.consistentHash`.
pub(super) fn load_balancer(
    out: &mut Out<'_>,
    node: &Node,
    path: &str,
) -> Option<ast::LoadBalancer> {
    out.map(node, path)?;
    out.fields(
        node,
        path,
        &["simple", "consistentHash"],
        &["localityLbSetting", "warmupDurationSecs", "warmup"],
        "ignored",
    );
    if let (Some(simple), Some(_)) = (node.get("simple"), node.get("consistentHash")) {
        out.schema(
            simple.span,
            format!("`{path}`: only one of `simple` and `consistentHash` can be set"),
        );
        return None;
    }
    if let Some(simple) = node.get("simple") {
        let kind = match out.str(simple, &format!("{path}.simple"))? {
            "ROUND_ROBIN" => ast::LbKind::RoundRobin,
            "LEAST_REQUEST" => ast::LbKind::LeastRequest,
            "LEAST_CONN" => {
                out.deprecated(
                    &format!("{path}.simple: LEAST_CONN"),
                    simple.span,
                    "LEAST_REQUEST",
                );
                ast::LbKind::LeastRequest
            }
            "RANDOM" => ast::LbKind::Random,
            "UNSPECIFIED" => return None,
            "PASSTHROUGH" => {
                out.unsupported(
                    &format!("{path}.simple: PASSTHROUGH"),
                    simple,
                    "the default load balancer is used (meshd always picks an endpoint)",
                );
                return None;
            }
            other => {
                out.schema(
                    simple.span,
                    format!(
                        "`{path}.simple`: unsupported value {other:?}, expected one of \
                         UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST"
                    ),
                );
                return None;
            }
        };
        return Some(ast::LoadBalancer {
            kind,
            key: None,
            minimum_ring_size: None,
            span: simple.span,
        });
    }
    let hash = node.get("consistentHash")?;
    let hash_path = format!("{path}.consistentHash");
    out.map(hash, &hash_path)?;
    out.fields(
        hash,
        &hash_path,
        &[
            "httpHeaderName",
            "httpCookie",
            "useSourceIp",
            "ringHash",
            "maglev",
            "minimumRingSize",
        ],
        &["httpQueryParameterName"],
        "the consistent hash is left out (the default load balancer is used)",
    );
    if hash.get("httpQueryParameterName").is_some() {
        return None;
    }
    let mut key = None;
    let mut keys = 0;
    if let Some(header) = hash.get("httpHeaderName") {
        keys += 1;
        key = Some(ast::HashKey::Header(
            out.ast_str(header, &format!("{hash_path}.httpHeaderName"))?,
        ));
    }
    if let Some(cookie) = hash.get("httpCookie") {
        keys += 1;
        let cookie_path = format!("{hash_path}.httpCookie");
        out.map(cookie, &cookie_path)?;
        out.fields(
            cookie,
            &cookie_path,
            &["name", "ttl"],
            &["path", "attributes"],
            "ignored (the cookie meshd sets has no path or attributes)",
        );
        let Some(name) = cookie.get("name") else {
            out.schema(cookie.span, format!("`{cookie_path}.name`: required value"));
            return None;
        };
        let name = out.ast_str(name, &format!("{cookie_path}.name"))?;
        let ttl = match cookie.get("ttl") {
            Some(ttl) => Some(out.duration(ttl, &format!("{cookie_path}.ttl"))?),
            None => None,
        };
        key = Some(ast::HashKey::Cookie { name, ttl });
    }
    if let Some(source) = hash.get("useSourceIp") {
        match source.value {
            crate::istio::yaml::Value::Bool(true) => {
                keys += 1;
                key = Some(ast::HashKey::SourceIp(source.span));
            }
            crate::istio::yaml::Value::Bool(false) => {}
            _ => {
                out.schema(
                    source.span,
                    format!(
                        "`{hash_path}.useSourceIp` must be a boolean, found {}",
                        source.display()
                    ),
                );
                return None;
            }
        }
    }
    if keys > 1 {
        out.schema(
            hash.span,
            format!(
                "`{hash_path}`: only one of `httpHeaderName`, `httpCookie`, `useSourceIp` and \
                 `httpQueryParameterName` can be set"
            ),
        );
        return None;
    }
    let Some(key) = key else {
        out.schema(
            hash.span,
            format!(
                "`{hash_path}` needs a hash key: `httpHeaderName`, `httpCookie`, `useSourceIp` \
                 or `httpQueryParameterName`"
            ),
        );
        return None;
    };
    let mut kind = ast::LbKind::RingHash;
    let mut minimum_ring_size = None;
    if let Some(size) = hash.get("minimumRingSize") {
        out.deprecated(
            &format!("{hash_path}.minimumRingSize"),
            size.span,
            "`ringHash.minimumRingSize`",
        );
        let n = out.int(size, &format!("{hash_path}.minimumRingSize"), 0, i64::MAX)?;
        minimum_ring_size = Some(number(n, size.span));
    }
    match (hash.get("ringHash"), hash.get("maglev")) {
        (Some(ring), Some(_)) => {
            out.schema(
                ring.span,
                format!("`{hash_path}`: only one of `ringHash` and `maglev` can be set"),
            );
            return None;
        }
        (Some(ring), None) => {
            let ring_path = format!("{hash_path}.ringHash");
            out.map(ring, &ring_path)?;
            out.check_fields(ring, &ring_path, &["minimumRingSize"]);
            if let Some(size) = ring.get("minimumRingSize") {
                let n = out.int(size, &format!("{ring_path}.minimumRingSize"), 0, i64::MAX)?;
                minimum_ring_size = Some(number(n, size.span));
            }
        }
        (None, Some(maglev)) => {
            let maglev_path = format!("{hash_path}.maglev");
            out.map(maglev, &maglev_path)?;
            out.fields(
                maglev,
                &maglev_path,
                &[],
                &["tableSize"],
                "ignored (meshd uses its default table size)",
            );
            kind = ast::LbKind::Maglev;
        }
        (None, None) => {}
    }
    Some(ast::LoadBalancer {
        kind,
        key: Some(key),
        minimum_ring_size,
        span: hash.span,
    })
}

/// `connectionPool.tcp` and `connectionPool.http`.
pub(super) fn pool(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ast::Pool> {
    out.map(node, path)?;
    out.check_fields(node, path, &["tcp", "http"]);
    let mut pool = ast::Pool {
        span: node.span,
        ..ast::Pool::default()
    };
    let count = |out: &mut Out<'_>, n: &Node, p: String| {
        out.int(n, &p, 0, i64::from(i32::MAX))
            .map(|v| number(v, n.span))
    };
    if let Some(tcp) = node.get("tcp") {
        let tcp_path = format!("{path}.tcp");
        out.map(tcp, &tcp_path)?;
        out.fields(
            tcp,
            &tcp_path,
            &["maxConnections", "connectTimeout", "idleTimeout"],
            &["tcpKeepalive", "maxConnectionDuration"],
            "ignored",
        );
        if let Some(n) = tcp.get("maxConnections") {
            pool.max_connections = Some(count(out, n, format!("{tcp_path}.maxConnections"))?);
        }
        if let Some(n) = tcp.get("connectTimeout") {
            pool.connect_timeout = Some(out.duration(n, &format!("{tcp_path}.connectTimeout"))?);
        }
        if let Some(n) = tcp.get("idleTimeout") {
            pool.tcp_idle_timeout = Some(out.duration(n, &format!("{tcp_path}.idleTimeout"))?);
        }
    }
    if let Some(http) = node.get("http") {
        let http_path = format!("{path}.http");
        out.map(http, &http_path)?;
        out.fields(
            http,
            &http_path,
            &[
                "http1MaxPendingRequests",
                "maxRequestsPerConnection",
                "idleTimeout",
            ],
            &[
                "http2MaxRequests",
                "maxRetries",
                "h2UpgradePolicy",
                "useClientProtocol",
                "maxConcurrentStreams",
            ],
            "ignored",
        );
        if let Some(n) = http.get("http1MaxPendingRequests") {
            pool.max_pending = Some(count(
                out,
                n,
                format!("{http_path}.http1MaxPendingRequests"),
            )?);
        }
        if let Some(n) = http.get("maxRequestsPerConnection") {
            pool.max_requests_per_connection = Some(count(
                out,
                n,
                format!("{http_path}.maxRequestsPerConnection"),
            )?);
        }
        if let Some(n) = http.get("idleTimeout") {
            pool.idle_timeout = Some(out.duration(n, &format!("{http_path}.idleTimeout"))?);
        }
    }
    let set = pool.max_connections.is_some()
        || pool.connect_timeout.is_some()
        || pool.max_pending.is_some()
        || pool.max_requests_per_connection.is_some()
        || pool.idle_timeout.is_some()
        || pool.tcp_idle_timeout.is_some();
    set.then_some(pool)
}

/// `outlierDetection`, with Istio's defaults: `consecutive5xxErrors` unset is 5 (Envoy's
/// default, which Istio leaves in place), 0 turns that trigger off, and so does an unset or 0
/// `consecutiveGatewayErrors`.
pub(super) fn outlier(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ast::Outlier> {
    out.map(node, path)?;
    out.fields(
        node,
        path,
        &[
            "consecutive5xxErrors",
            "consecutiveGatewayErrors",
            "consecutiveErrors",
            "interval",
            "baseEjectionTime",
            "maxEjectionPercent",
        ],
        &[
            "minHealthPercent",
            "splitExternalLocalOriginErrors",
            "consecutiveLocalOriginFailures",
        ],
        "ignored",
    );
    if let Some(legacy) = node.get("consecutiveErrors") {
        out.push(
            Code::IstioDeprecatedIgnored,
            legacy.span,
            format!(
                "`{path}.consecutiveErrors` is deprecated and Istio's sidecars ignore it; so \
                 does meshd"
            ),
            "use `consecutiveGatewayErrors` (502, 503, 504 and connect failures) or \
             `consecutive5xxErrors` (IST0002)",
        );
    }
    let mut outlier = ast::Outlier {
        span: node.span,
        ..ast::Outlier::default()
    };
    let count = |out: &mut Out<'_>, field: &str, max: i64| -> Option<Option<ast::Number>> {
        match node.get(field) {
            None => Some(None),
            Some(n) => out
                .int(n, &format!("{path}.{field}"), 0, max)
                .map(|v| Some(number(v, n.span))),
        }
    };
    let max = i64::from(u32::MAX);
    let enabled = |n: Option<ast::Number>| n.filter(|n| n.value > 0);
    outlier.consecutive_5xx = match count(out, "consecutive5xxErrors", max)? {
        None => Some(number(5, node.span)),
        set => enabled(set),
    };
    outlier.consecutive_gateway_errors = enabled(count(out, "consecutiveGatewayErrors", max)?);
    outlier.triggers_off =
        outlier.consecutive_5xx.is_none() && outlier.consecutive_gateway_errors.is_none();
    outlier.max_ejection_percent = count(out, "maxEjectionPercent", 100)?;
    if let Some(n) = node.get("interval") {
        outlier.interval = Some(out.duration(n, &format!("{path}.interval"))?);
    }
    if let Some(n) = node.get("baseEjectionTime") {
        outlier.base_ejection = Some(out.duration(n, &format!("{path}.baseEjectionTime"))?);
    }
    Some(outlier)
}

/// Checks what Istio validates in `loadBalancer.warmup` (the warmup itself is not modeled).
pub(super) fn warmup(out: &mut Out<'_>, policy: &Node, path: &str) {
    let Some(warmup) = policy.get("loadBalancer").and_then(|lb| lb.get("warmup")) else {
        return;
    };
    let path = format!("{path}.loadBalancer.warmup");
    if out.map(warmup, &path).is_none() {
        return;
    }
    if warmup.get("duration").is_none() {
        out.schema(warmup.span, format!("`{path}.duration`: required value"));
    }
    if let Some(percent) = warmup.get("minimumPercent") {
        let value = float(percent);
        if !value.is_some_and(|v| (0.0..=100.0).contains(&v)) {
            out.schema(
                percent.span,
                format!(
                    "`{path}.minimumPercent` {}: must be between 0 and 100",
                    percent.display()
                ),
            );
        }
    }
    if let Some(aggression) = warmup.get("aggression") {
        if !float(aggression).is_some_and(|v| v >= 1.0) {
            out.schema(
                aggression.span,
                format!(
                    "`{path}.aggression` {}: must be at least 1",
                    aggression.display()
                ),
            );
        }
    }
}

//! VirtualService: HTTP routes, their rules and destinations.

use std::collections::HashSet;

use super::http_actions::{fault, header_edits, http_redirect, mirror, retries, rewrite};
use super::http_match::request_match;
use super::{ident, require_port, unknown_host, Resolver};
use crate::ast;
use crate::diag::{Code, Span};
use crate::istio::security::ROOT_NAMESPACE;
use crate::istio::yaml::Node;
use crate::istio::{Out, Resource};

pub(super) const HTTP_ROUTE_FIELDS: &[&str] = &[
    "name",
    "match",
    "route",
    "redirect",
    "directResponse",
    "delegate",
    "rewrite",
    "timeout",
    "retries",
    "fault",
    "mirror",
    "mirrors",
    "mirrorPercentage",
    "mirrorPercent",
    "mirror_percent",
    "corsPolicy",
    "headers",
];

/// W0183 (Istio IST0149): every match header `@request.auth.claims.*` of a VirtualService in a
/// namespace that no RequestAuthentication covers (neither its own nor the root `istio-system`):
/// no JWT is validated there, so the claim is never set and the match never succeeds.
pub(super) fn jwt_claim_routes(
    out: &mut Out<'_>,
    r: &Resource<'_>,
    authenticated: &HashSet<String>,
) {
    if authenticated.contains(&r.namespace) || authenticated.contains(ROOT_NAMESPACE) {
        return;
    }
    let rules = r.spec.get("http").and_then(Node::items).unwrap_or_default();
    for rule in rules {
        let matches = rule.get("match").and_then(Node::items).unwrap_or_default();
        for m in matches {
            let headers = m.get("headers").and_then(Node::entries).unwrap_or_default();
            for (name, _) in headers {
                let Some(claim) = name
                    .as_str()
                    .filter(|n| n.starts_with(super::http_match::JWT_CLAIM_PREFIX))
                else {
                    continue;
                };
                out.push(
                    Code::IstioJwtClaimRouteWithoutAuthentication,
                    name.span,
                    format!(
                        "virtual service `{}/{}` routes on JWT claim `{claim}`, but no \
                         RequestAuthentication in namespace `{}` or `{ROOT_NAMESPACE}` validates \
                         a JWT: the claim is never set and this match never succeeds",
                        r.namespace, r.name.name, r.namespace
                    ),
                    "add a RequestAuthentication for the workloads this route runs on (IST0149)",
                );
            }
        }
    }
}

pub(super) fn virtual_service(
    out: &mut Out<'_>,
    r: &Resource<'_>,
    resolver: &Resolver,
    authenticated: &HashSet<String>,
) -> Vec<ast::Route> {
    let spec = r.spec;
    jwt_claim_routes(out, r, authenticated);
    out.check_fields(
        spec,
        "spec",
        &[
            "hosts", "gateways", "http", "tls", "tcp", "exportTo", "delegate",
        ],
    );
    if ["http", "tcp", "tls"].iter().all(|f| spec.get(f).is_none()) {
        out.schema(
            spec.span,
            "virtual service must have at least one of `http`, `tcp` or `tls`".to_owned(),
        );
        return Vec::new();
    }
    for field in ["tcp", "tls", "exportTo"] {
        if let Some(value) = spec.get(field) {
            out.unsupported(&format!("spec.{field}"), value, "ignored");
        }
    }
    let mut hosts = Vec::new();
    if let Some(list) = spec.get("hosts") {
        for (i, host) in out
            .seq(list, "spec.hosts")
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if let Some(name) = out.str(host, &format!("spec.hosts[{i}]")) {
                hosts.push((name, host.span));
            }
        }
    }
    if let Some(gateways) = spec.get("gateways") {
        let names = out.seq(gateways, "spec.gateways").unwrap_or_default();
        let mesh = names.is_empty() || names.iter().any(|g| g.as_str() == Some("mesh"));
        if !mesh {
            out.unsupported(
                "spec.gateways",
                gateways,
                "the virtual service binds only to gateways (no `mesh`) and is ignored",
            );
            return Vec::new();
        }
    }
    let mut rules = Vec::new();
    if let Some(http) = spec.get("http") {
        for (i, entry) in out
            .seq(http, "spec.http")
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if let Some(rule) = http_rule(out, r, entry, i, resolver) {
                rules.push(rule);
            }
        }
    }
    let mut routes: Vec<ast::Route> = Vec::new();
    for (host, span) in hosts {
        let Some((service, _)) = resolver.resolve(host, &r.namespace) else {
            out.inexpressible(
                span,
                format!("host `{host}` is not a declared service, skipped"),
                "declare it with a ServiceEntry or in a .mesh file",
            );
            continue;
        };
        if routes.iter().any(|route| &route.service.name == service) {
            continue;
        }
        if rules.is_empty() {
            out.inexpressible(
                span,
                format!(
                    "no rule of virtual service `{}` could be imported, service `{service}` \
                     keeps its default route",
                    r.name.name
                ),
                "see the warnings above for each dropped rule",
            );
            continue;
        }
        routes.push(ast::Route {
            keyword: r.kind_span,
            service: ident(service.clone(), span),
            rules: rules.clone(),
        });
    }
    routes
}

pub(super) fn http_rule(
    out: &mut Out<'_>,
    r: &Resource<'_>,
    entry: &Node,
    index: usize,
    resolver: &Resolver,
) -> Option<ast::Rule> {
    let path = format!("spec.http[{index}]");
    out.map(entry, &path)?;
    out.check_fields(entry, &path, HTTP_ROUTE_FIELDS);
    let name = match entry.get("name") {
        Some(node) => ident(out.str(node, &format!("{path}.name"))?, node.span),
        None => ident(format!("{}-{index}", r.name.name), entry.span),
    };
    let drop_note = "the whole rule is dropped (requests it would match fall through to the \
                     following rules)";
    let mut keep = true;
    for field in ["directResponse", "delegate"] {
        if let Some(value) = entry.get(field) {
            out.unsupported(&format!("{path}.{field}"), value, drop_note);
            keep = false;
        }
    }
    if let Some(value) = entry.get("corsPolicy") {
        out.unsupported(
            &format!("{path}.corsPolicy"),
            value,
            "ignored (the rule is kept)",
        );
    }
    for field in ["mirrorPercent", "mirror_percent"] {
        if let Some(value) = entry.get(field) {
            out.deprecated(
                &format!("{path}.{field}"),
                value.span,
                "`mirrorPercentage: {value: N}`",
            );
        }
    }
    let mut matches = Vec::new();
    if let Some(list) = entry.get("match") {
        for (i, m) in out
            .seq(list, &format!("{path}.match"))
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            match request_match(out, m, &format!("{path}.match[{i}]"), drop_note) {
                Some(m) => matches.push(m),
                None => keep = false,
            }
        }
    }
    let mut rule = ast::Rule {
        keyword: Span::new(entry.span.start, entry.span.start),
        name,
        matches,
        ..ast::Rule::default()
    };
    let redirect = entry.get("redirect");
    match (entry.get("route"), redirect) {
        (Some(route), Some(_)) => {
            out.schema(
                route.span,
                format!("`{path}`: a rule cannot have both `route` and `redirect`"),
            );
            keep = false;
        }
        (None, Some(node)) => match http_redirect(out, node, &format!("{path}.redirect")) {
            Some(redirect) => rule.redirect = Some(redirect),
            None => keep = false,
        },
        (None, None) if keep => {
            out.schema(entry.span, format!("`{path}.route`: required value"));
            keep = false;
        }
        (None, None) => {}
        (Some(list), None) => {
            let route_path = format!("{path}.route");
            for (i, d) in out
                .seq(list, &route_path)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                match destination(out, r, d, &format!("{route_path}[{i}]"), resolver) {
                    Ok(Some(d)) => rule.destinations.push(d),
                    Ok(None) => {}
                    Err(()) => keep = false,
                }
            }
            if rule.destinations.is_empty() && keep {
                out.inexpressible(
                    list.span,
                    format!("`{route_path}` has no destination left, rule dropped"),
                    "",
                );
                keep = false;
            }
        }
    }
    if let Some(node) = entry.get("timeout") {
        rule.timeout = out.duration(node, &format!("{path}.timeout"));
    }
    if let Some(node) = entry.get("retries") {
        rule.retries = retries(out, node, &format!("{path}.retries"));
    }
    if let Some(node) = entry.get("fault") {
        rule.fault = fault(out, node, &format!("{path}.fault"));
    }
    if let Some(node) = entry.get("rewrite") {
        rule.rewrite = rewrite(out, node, &format!("{path}.rewrite"));
    }
    if let Some(node) = entry.get("headers") {
        let headers_path = format!("{path}.headers");
        if out.map(node, &headers_path).is_some() {
            out.check_fields(node, &headers_path, &["request", "response"]);
            if let Some(edits) = node.get("request") {
                rule.request_headers = header_edits(out, edits, &format!("{headers_path}.request"));
            }
            if let Some(edits) = node.get("response") {
                rule.response_headers =
                    header_edits(out, edits, &format!("{headers_path}.response"));
            }
        }
    }
    rule.mirror = mirror(out, r, entry, &path, resolver);
    keep.then_some(rule)
}

/// One `route[]` destination: `Ok(None)` when it is left out without changing the traffic
/// (weight 0), `Err` when the rule must be dropped.
pub(super) fn destination(
    out: &mut Out<'_>,
    r: &Resource<'_>,
    d: &Node,
    path: &str,
    resolver: &Resolver,
) -> Result<Option<ast::Destination>, ()> {
    out.map(d, path).ok_or(())?;
    out.check_fields(d, path, &["destination", "weight", "headers"]);
    if let Some(headers) = d.get("headers") {
        out.unsupported(
            &format!("{path}.headers"),
            headers,
            "ignored (the rule is kept)",
        );
    }
    let Some(dest) = d.get("destination") else {
        out.schema(d.span, format!("`{path}.destination`: required value"));
        return Err(());
    };
    out.map(dest, &format!("{path}.destination")).ok_or(())?;
    out.check_fields(
        dest,
        &format!("{path}.destination"),
        &["host", "subset", "port"],
    );
    if let Some(port) = dest.get("port") {
        out.unsupported(
            &format!("{path}.destination.port"),
            port,
            "ignored (the rule is kept)",
        );
    }
    let weight = match d.get("weight") {
        None => None,
        Some(node) => {
            let w = out.int(node, &format!("{path}.weight"), 0, 100).ok_or(())?;
            if w == 0 {
                out.inexpressible(
                    node.span,
                    format!("`{path}` has weight 0 and receives no traffic, left out"),
                    "",
                );
                return Ok(None);
            }
            Some(ast::Number {
                value: w as u64,
                span: node.span,
            })
        }
    };
    let Some(host_node) = dest.get("host") else {
        out.schema(
            dest.span,
            format!("`{path}.destination.host`: required value"),
        );
        return Err(());
    };
    let host = out
        .str(host_node, &format!("{path}.destination.host"))
        .ok_or(())?;
    let Some((service, _)) = resolver.resolve(host, &r.namespace) else {
        unknown_host(out, host_node.span, "destination host", host, &r.namespace);
        return Err(());
    };
    require_port(out, resolver, service, dest, &format!("{path}.destination"));
    let subset = match dest.get("subset") {
        None => None,
        Some(node) => Some(ident(
            out.str(node, &format!("{path}.destination.subset"))
                .ok_or(())?,
            node.span,
        )),
    };
    Ok(Some(ast::Destination {
        service: ident(service.clone(), host_node.span),
        subset,
        weight,
        span: d.span,
    }))
}

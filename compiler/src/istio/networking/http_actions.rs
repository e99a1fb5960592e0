//! A VirtualService rule's actions: redirect, retries, fault, rewrite, header edits, mirror.

use super::{ident, number, require_port, unknown_host, Resolver};
use crate::ast;
use crate::istio::yaml::Node;
use crate::istio::{Out, Resource};

/// `redirect`: `uri`, `authority`, `port`, `scheme`, `redirectCode`.
pub(super) fn http_redirect(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ast::Redirect> {
    out.map(node, path)?;
    out.fields(
        node,
        path,
        &["uri", "authority", "port", "scheme", "redirectCode"],
        &["derivePort"],
        "ignored (the redirect keeps the request's port unless `port` is set)",
    );
    let mut redirect = ast::Redirect {
        span: node.span,
        ..ast::Redirect::default()
    };
    let field = |name: &str| node.get(name);
    if let Some(n) = field("uri") {
        redirect.path = Some(out.ast_str(n, &format!("{path}.uri"))?);
    }
    if let Some(n) = field("authority") {
        redirect.authority = Some(out.ast_str(n, &format!("{path}.authority"))?);
    }
    if let Some(n) = field("scheme") {
        redirect.scheme = Some(out.ast_str(n, &format!("{path}.scheme"))?);
    }
    if let Some(n) = field("port") {
        let port = out.int(n, &format!("{path}.port"), 1, 65535)?;
        redirect.port = Some(number(port, n.span));
    }
    if let Some(n) = field("redirectCode") {
        let code = out.int(n, &format!("{path}.redirectCode"), 300, 399)?;
        redirect.code = Some(number(code, n.span));
    }
    Some(redirect)
}

/// Retry conditions the snapshot models, as Istio (Envoy) spells them.
pub(super) const RETRY_ON_MODELED: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "connect-failure",
    "retriable-status-codes",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];
/// Other conditions Istio accepts (Envoy HTTP and gRPC names): warned about and left out.
pub(super) const RETRY_ON_OTHER: &[&str] = &[
    "retriable-4xx",
    "refused-stream",
    "retriable-headers",
    "envoy-ratelimited",
    "reset-before-request",
    "http3-post-connect-failure",
];

/// `retries`: `attempts`, `perTryTimeout`, `retryOn`.
pub(super) fn retries(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ast::Retries> {
    out.map(node, path)?;
    out.fields(
        node,
        path,
        &["attempts", "perTryTimeout", "retryOn"],
        &[
            "retryRemoteLocalities",
            "retryIgnorePreviousHosts",
            "backoff",
        ],
        "ignored",
    );
    // Envoy retries whatever the method (a gRPC call is a POST): so does an imported policy.
    let mut retries = ast::Retries {
        span: node.span,
        non_idempotent: Some(node.span),
        ..ast::Retries::default()
    };
    if let Some(n) = node.get("attempts") {
        let attempts = out.int(n, &format!("{path}.attempts"), 0, i64::from(i32::MAX))?;
        retries.attempts = Some(number(attempts, n.span));
    }
    if let Some(n) = node.get("perTryTimeout") {
        retries.per_try_timeout = Some(out.duration(n, &format!("{path}.perTryTimeout"))?);
    }
    if let Some(n) = node.get("retryOn") {
        let list = out.str(n, &format!("{path}.retryOn"))?;
        let mut ignored = Vec::new();
        for condition in list.split(',').map(str::trim) {
            let status = condition
                .parse::<u16>()
                .is_ok_and(|c| (100..=599).contains(&c));
            if status || RETRY_ON_MODELED.contains(&condition) {
                // The span of the whole string: conditions have no position of their own.
                retries.retry_on.push(ast::Str {
                    value: condition.to_owned(),
                    span: n.span,
                });
            } else if RETRY_ON_OTHER.contains(&condition) {
                ignored.push(condition);
            } else {
                out.schema(
                    n.span,
                    format!("`{path}.retryOn`: {condition:?} is not a valid retryOn policy"),
                );
                return None;
            }
        }
        if !ignored.is_empty() {
            out.unsupported(
                &format!("{path}.retryOn: {}", ignored.join(", ")),
                n,
                "these conditions are ignored (meshd retries on 5xx, gateway-error, reset, \
                 connect-failure, retriable-status-codes, status codes and the gRPC \
                 statuses cancelled, deadline-exceeded, internal, resource-exhausted and \
                 unavailable)",
            );
        }
    }
    Some(retries)
}

/// `fault`: `delay` (`fixedDelay`) and `abort` (`httpStatus`), each with a `percentage`.
pub(super) fn fault(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ast::Fault> {
    out.map(node, path)?;
    out.check_fields(node, path, &["delay", "abort"]);
    let mut fault = ast::Fault {
        span: node.span,
        ..ast::Fault::default()
    };
    if let Some(delay) = node.get("delay") {
        let delay_path = format!("{path}.delay");
        out.map(delay, &delay_path)?;
        out.fields(
            delay,
            &delay_path,
            &["fixedDelay", "percentage", "percent"],
            &["exponentialDelay"],
            "the delay is left out",
        );
        if let Some(percent) = delay.get("percent") {
            out.deprecated(
                &format!("{delay_path}.percent"),
                percent.span,
                "`percentage: {value: N}`",
            );
        }
        if let Some(fixed) = delay.get("fixedDelay") {
            let duration = out.duration(fixed, &format!("{delay_path}.fixedDelay"))?;
            let share = share(out, delay, &delay_path, true)?;
            fault.delay = Some((duration, share));
        } else if delay.get("exponentialDelay").is_none() {
            out.schema(
                delay.span,
                format!("`{delay_path}.fixedDelay`: required value"),
            );
            return None;
        }
    }
    if let Some(abort) = node.get("abort") {
        let abort_path = format!("{path}.abort");
        out.map(abort, &abort_path)?;
        out.fields(
            abort,
            &abort_path,
            &["httpStatus", "percentage"],
            &["grpcStatus", "http2Error"],
            "the abort is left out",
        );
        if let Some(status) = abort.get("httpStatus") {
            let code = out.int(status, &format!("{abort_path}.httpStatus"), 200, 599)?;
            let share = share(out, abort, &abort_path, false)?;
            fault.abort = Some((number(code, status.span), share));
        } else if ["grpcStatus", "http2Error"]
            .iter()
            .all(|f| abort.get(f).is_none())
        {
            out.schema(
                abort.span,
                format!("`{abort_path}.httpStatus`: required value"),
            );
            return None;
        }
    }
    (fault.delay.is_some() || fault.abort.is_some()).then_some(fault)
}

/// The `percentage.value` (or, for a delay, the legacy integer `percent`) of a fault;
/// `Some(None)` = 100%.
pub(super) fn share(
    out: &mut Out<'_>,
    node: &Node,
    path: &str,
    legacy: bool,
) -> Option<Option<ast::Percent>> {
    if let Some(percentage) = node.get("percentage") {
        let p = format!("{path}.percentage");
        out.map(percentage, &p)?;
        out.check_fields(percentage, &p, &["value"]);
        return match percentage.get("value") {
            Some(value) => out.percent(value, &format!("{p}.value")).map(Some),
            // An empty percentage is 0%.
            None => Some(Some(ast::Percent {
                per_million: 0,
                span: percentage.span,
            })),
        };
    }
    if let Some(percent) = node.get("percent").filter(|_| legacy) {
        let value = out.int(percent, &format!("{path}.percent"), 0, 100)?;
        return Some(Some(ast::Percent {
            per_million: u64::try_from(value).unwrap_or(0) * 10_000,
            span: percent.span,
        }));
    }
    Some(None)
}

/// `rewrite`: `uri` (replaces the matched prefix), `uriRegexRewrite`, `authority`.
pub(super) fn rewrite(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ast::Rewrite> {
    out.map(node, path)?;
    out.check_fields(node, path, &["uri", "uriRegexRewrite", "authority"]);
    let mut rewrite = ast::Rewrite {
        span: node.span,
        ..ast::Rewrite::default()
    };
    if let (Some(uri), Some(_)) = (node.get("uri"), node.get("uriRegexRewrite")) {
        out.schema(
            uri.span,
            format!("`{path}`: only one of `uri` and `uriRegexRewrite` can be set"),
        );
        return None;
    }
    if let Some(uri) = node.get("uri") {
        rewrite.prefix = Some(out.ast_str(uri, &format!("{path}.uri"))?);
    }
    if let Some(regex) = node.get("uriRegexRewrite") {
        let p = format!("{path}.uriRegexRewrite");
        out.map(regex, &p)?;
        out.check_fields(regex, &p, &["match", "rewrite"]);
        let pattern = regex
            .get("match")
            .and_then(|n| out.ast_str(n, &format!("{p}.match")));
        let with = regex
            .get("rewrite")
            .and_then(|n| out.ast_str(n, &format!("{p}.rewrite")));
        match (pattern, with) {
            (Some(pattern), Some(with)) => rewrite.regex = Some((pattern, with)),
            _ => {
                out.schema(
                    regex.span,
                    format!("`{p}` needs both `match` and `rewrite`"),
                );
                return None;
            }
        }
    }
    if let Some(authority) = node.get("authority") {
        rewrite.authority = Some(out.ast_str(authority, &format!("{path}.authority"))?);
    }
    Some(rewrite)
}

/// `headers.request` / `headers.response`: `set`, `add`, `remove`.
pub(super) fn header_edits(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ast::HeaderEdits> {
    out.map(node, path)?;
    out.check_fields(node, path, &["set", "add", "remove"]);
    let mut edits = ast::HeaderEdits {
        span: node.span,
        ..ast::HeaderEdits::default()
    };
    for (field, into) in [("set", &mut edits.set), ("add", &mut edits.add)] {
        let Some(map) = node.get(field) else { continue };
        for label in out.labels(map, &format!("{path}.{field}")) {
            into.push((
                ast::Str {
                    value: label.key.name,
                    span: label.key.span,
                },
                label.value,
            ));
        }
    }
    if let Some(remove) = node.get("remove") {
        edits.remove = out.strings(remove, &format!("{path}.remove"));
    }
    Some(edits)
}

/// `mirror` + `mirrorPercentage` (or legacy `mirrorPercent`), or the first of `mirrors[]`.
/// A mirror to an undeclared host is left out with W0203 (the rule is kept).
pub(super) fn mirror(
    out: &mut Out<'_>,
    r: &Resource<'_>,
    entry: &Node,
    path: &str,
    resolver: &Resolver,
) -> Option<ast::Mirror> {
    let (destination, dest_path, percent) = if let Some(node) = entry.get("mirror") {
        if let Some(list) = entry.get("mirrors") {
            out.schema(
                list.span,
                format!("`{path}`: only one of `mirror` and `mirrors` can be set"),
            );
            return None;
        }
        let percent = match (
            entry.get("mirrorPercentage"),
            entry
                .get("mirrorPercent")
                .or_else(|| entry.get("mirror_percent")),
        ) {
            (Some(p), _) => {
                let pp = format!("{path}.mirrorPercentage");
                out.map(p, &pp)?;
                out.check_fields(p, &pp, &["value"]);
                match p.get("value") {
                    Some(v) => Some(out.percent(v, &format!("{pp}.value"))?),
                    None => Some(ast::Percent {
                        per_million: 0,
                        span: p.span,
                    }),
                }
            }
            (None, Some(p)) => {
                let value = out.int(p, &format!("{path}.mirrorPercent"), 0, 100)?;
                Some(ast::Percent {
                    per_million: u64::try_from(value).unwrap_or(0) * 10_000,
                    span: p.span,
                })
            }
            (None, None) => None,
        };
        (node, format!("{path}.mirror"), percent)
    } else if let Some(list) = entry.get("mirrors") {
        let items = out.seq(list, &format!("{path}.mirrors"))?;
        if let Some(extra) = items.get(1) {
            out.unsupported(
                &format!("{path}.mirrors[1..]"),
                extra,
                "only the first mirror is kept (a rule mirrors to one destination)",
            );
        }
        let first = items.first()?;
        let first_path = format!("{path}.mirrors[0]");
        out.map(first, &first_path)?;
        out.check_fields(first, &first_path, &["destination", "percentage"]);
        let percent = match first.get("percentage") {
            Some(p) => {
                let pp = format!("{first_path}.percentage");
                out.map(p, &pp)?;
                out.check_fields(p, &pp, &["value"]);
                match p.get("value") {
                    Some(v) => Some(out.percent(v, &format!("{pp}.value"))?),
                    None => Some(ast::Percent {
                        per_million: 0,
                        span: p.span,
                    }),
                }
            }
            None => None,
        };
        let Some(destination) = first.get("destination") else {
            out.schema(
                first.span,
                format!("`{first_path}.destination`: required value"),
            );
            return None;
        };
        (destination, format!("{first_path}.destination"), percent)
    } else {
        for field in ["mirrorPercentage", "mirrorPercent", "mirror_percent"] {
            if let Some(node) = entry.get(field) {
                out.inexpressible(
                    node.span,
                    format!("`{path}.{field}` without `mirror` has no effect, ignored"),
                    "",
                );
            }
        }
        return None;
    };
    out.map(destination, &dest_path)?;
    out.fields(
        destination,
        &dest_path,
        &["host", "subset"],
        &["port"],
        "ignored (the mirror uses the service's port)",
    );
    let Some(host_node) = destination.get("host") else {
        out.schema(
            destination.span,
            format!("`{dest_path}.host`: required value"),
        );
        return None;
    };
    let host = out.str(host_node, &format!("{dest_path}.host"))?;
    let Some((service, _)) = resolver.resolve(host, &r.namespace) else {
        unknown_host(out, host_node.span, "mirror host", host, &r.namespace);
        return None;
    };
    require_port(out, resolver, service, destination, &dest_path);
    let subset = match destination.get("subset") {
        None => None,
        Some(node) => Some(ident(
            out.str(node, &format!("{dest_path}.subset"))?,
            node.span,
        )),
    };
    Some(ast::Mirror {
        span: destination.span,
        service: ident(service.clone(), host_node.span),
        subset,
        percent,
    })
}

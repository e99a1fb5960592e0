//! Schema checks for the security kinds. They are not imported yet (W0201), but a resource Istio
//! would reject is still an error (E0201), so a broken file never passes silently.

use super::yaml::Node;
use super::Out;

/// Checks the parts of a security resource's `spec` that Istio's CRD and webhook validate.
pub(super) fn validate(out: &mut Out<'_>, kind: &str, spec: Option<&Node>) {
    let Some(spec) = spec else { return };
    if out.map(spec, "spec").is_none() {
        return;
    }
    match kind {
        "AuthorizationPolicy" => authorization_policy(out, spec),
        "PeerAuthentication" => peer_authentication(out, spec),
        _ => request_authentication(out, spec),
    }
}

fn authorization_policy(out: &mut Out<'_>, spec: &Node) {
    let Some(rules) = spec.get("rules") else {
        return;
    };
    for (i, rule) in out
        .seq(rules, "spec.rules")
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let Some(from) = rule.get("from") else {
            continue;
        };
        let path = format!("spec.rules[{i}].from");
        for (j, from) in out.seq(from, &path).unwrap_or_default().iter().enumerate() {
            let Some(source) = from.get("source") else {
                continue;
            };
            let Some(accounts) = source.get("serviceAccounts") else {
                continue;
            };
            if ["namespaces", "principals"]
                .iter()
                .any(|f| source.get(f).is_some())
            {
                out.schema(
                    accounts.span,
                    format!(
                        "`{path}[{j}].source.serviceAccounts` cannot be set together with \
                         `namespaces` or `principals`"
                    ),
                );
            }
        }
    }
}

const MTLS_MODES: &[&str] = &["UNSET", "DISABLE", "PERMISSIVE", "STRICT"];

fn mtls_mode(out: &mut Out<'_>, mtls: &Node, path: &str) {
    let Some(mode) = mtls.get("mode") else {
        return;
    };
    let path = format!("{path}.mode");
    if let Some(value) = out.str(mode, &path) {
        if !MTLS_MODES.contains(&value) {
            out.schema(
                mode.span,
                format!(
                    "`{path}`: unsupported value {value:?}, expected one of {}",
                    MTLS_MODES.join(", ")
                ),
            );
        }
    }
}

fn peer_authentication(out: &mut Out<'_>, spec: &Node) {
    if let Some(mtls) = spec.get("mtls") {
        mtls_mode(out, mtls, "spec.mtls");
    }
    let Some(ports) = spec.get("portLevelMtls") else {
        return;
    };
    let Some(entries) = out.map(ports, "spec.portLevelMtls") else {
        return;
    };
    if entries.is_empty() {
        out.schema(
            ports.span,
            "`spec.portLevelMtls` must have at least one port".to_owned(),
        );
    }
    if spec.get("selector").is_none() {
        out.schema(
            ports.span,
            "`spec.portLevelMtls` requires `spec.selector`".to_owned(),
        );
    }
    for (port, mtls) in entries {
        let number = match &port.value {
            super::yaml::Value::Int(n) => Some(*n),
            super::yaml::Value::Str(s) => s.parse::<i64>().ok(),
            _ => None,
        };
        match number {
            Some(n) if (1..=65535).contains(&n) => {}
            Some(n) => out.schema(
                port.span,
                format!("`spec.portLevelMtls` port {n} must be between 1 and 65535"),
            ),
            None => out.schema(
                port.span,
                format!(
                    "`spec.portLevelMtls` key {} is not a port number",
                    port.display()
                ),
            ),
        }
        mtls_mode(out, mtls, "spec.portLevelMtls[]");
    }
}

fn non_empty_strings(out: &mut Out<'_>, list: Option<&Node>, path: &str) {
    let Some(list) = list else { return };
    for (i, item) in out.seq(list, path).unwrap_or_default().iter().enumerate() {
        let path = format!("{path}[{i}]");
        if out.str(item, &path) == Some("") {
            out.schema(item.span, format!("`{path}` must not be empty"));
        }
    }
}

fn required_string(out: &mut Out<'_>, parent: &Node, field: &str, path: &str) -> Option<String> {
    match parent.get(field) {
        None => {
            out.schema(parent.span, format!("`{path}.{field}`: required value"));
            None
        }
        Some(node) => {
            let value = out.str(node, &format!("{path}.{field}"))?;
            if value.is_empty() {
                out.schema(node.span, format!("`{path}.{field}` must not be empty"));
            }
            Some(value.to_owned())
        }
    }
}

fn matches_pattern(value: &str, allowed: impl Fn(char) -> bool) -> bool {
    !value.is_empty() && value.chars().all(allowed)
}

fn target_ref(out: &mut Out<'_>, target: &Node, path: &str) {
    if out.map(target, path).is_none() {
        return;
    }
    required_string(out, target, "name", path);
    if let Some(namespace) = target.get("namespace") {
        if namespace.as_str().is_some_and(|n| !n.is_empty()) {
            out.schema(
                namespace.span,
                format!("`{path}.namespace`: cross namespace referencing is not supported"),
            );
        }
    }
    if let Some(group) = target.get("group") {
        if let Some(value) = out.str(group, &format!("{path}.group")) {
            let ok = value.is_empty()
                || value.split('.').all(|part| {
                    matches_pattern(part, |c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
                    }) && !part.starts_with('-')
                        && !part.ends_with('-')
                });
            if !ok {
                out.schema(
                    group.span,
                    format!("`{path}.group` {value:?} is not a valid API group"),
                );
            }
        }
    }
    if let Some(kind) = target.get("kind") {
        if let Some(value) = out.str(kind, &format!("{path}.kind")) {
            let ok = value.starts_with(|c: char| c.is_ascii_alphabetic())
                && matches_pattern(value, |c| c.is_ascii_alphanumeric() || c == '-')
                && !value.ends_with('-');
            if !ok {
                out.schema(
                    kind.span,
                    format!("`{path}.kind` {value:?} is not a valid kind"),
                );
            }
        }
    }
}

fn request_authentication(out: &mut Out<'_>, spec: &Node) {
    let targets = spec.get("targetRef").or_else(|| spec.get("targetRefs"));
    if let (Some(targets), Some(_)) = (targets, spec.get("selector")) {
        out.schema(
            targets.span,
            "only one of `spec.targetRefs` (or `targetRef`) and `spec.selector` can be set"
                .to_owned(),
        );
    }
    if let Some(target) = spec.get("targetRef") {
        target_ref(out, target, "spec.targetRef");
    }
    if let Some(list) = spec.get("targetRefs") {
        for (i, target) in out
            .seq(list, "spec.targetRefs")
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            target_ref(out, target, &format!("spec.targetRefs[{i}]"));
        }
    }
    let Some(rules) = spec.get("jwtRules") else {
        return;
    };
    for (i, rule) in out
        .seq(rules, "spec.jwtRules")
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let path = format!("spec.jwtRules[{i}]");
        if rule.entries().is_none() {
            out.schema(
                rule.span,
                format!("`{path}` must be a mapping, found {}", rule.kind()),
            );
            continue;
        }
        non_empty_strings(out, rule.get("audiences"), &format!("{path}.audiences"));
        non_empty_strings(out, rule.get("fromParams"), &format!("{path}.fromParams"));
        non_empty_strings(out, rule.get("fromCookies"), &format!("{path}.fromCookies"));
        non_empty_strings(
            out,
            rule.get("spaceDelimitedClaims"),
            &format!("{path}.spaceDelimitedClaims"),
        );
        if let Some(timeout) = rule.get("timeout") {
            if !timeout.as_str().is_some_and(is_duration) {
                out.schema(
                    timeout.span,
                    format!(
                        "`{path}.timeout` {} must be a valid duration such as \"5s\"",
                        timeout.display()
                    ),
                );
            }
        }
        if let Some(uri) = rule.get("jwksUri") {
            if let Some(value) = out.str(uri, &format!("{path}.jwksUri")) {
                let scheme = value.split_once("://").map(|(s, _)| s);
                if !scheme.is_some_and(|s| matches_pattern(s, |c| c.is_ascii_alphanumeric())) {
                    out.schema(
                        uri.span,
                        format!("`{path}.jwksUri` {value:?}: url must have a scheme"),
                    );
                }
            }
        }
        if let Some(headers) = rule.get("fromHeaders") {
            let list_path = format!("{path}.fromHeaders");
            for (j, header) in out
                .seq(headers, &list_path)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let item = format!("{list_path}[{j}]");
                if out.map(header, &item).is_some() {
                    required_string(out, header, "name", &item);
                }
            }
        }
        if let Some(claims) = rule.get("outputClaimToHeaders") {
            let list_path = format!("{path}.outputClaimToHeaders");
            for (j, claim) in out
                .seq(claims, &list_path)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let item = format!("{list_path}[{j}]");
                if claim.is_null() {
                    out.schema(
                        claim.span,
                        format!("`{item}` must be a mapping, found null"),
                    );
                    continue;
                }
                if out.map(claim, &item).is_none() {
                    continue;
                }
                required_string(out, claim, "claim", &item);
                let header = required_string(out, claim, "header", &item);
                let header_node = claim.get("header");
                if let (Some(header), Some(node)) = (header, header_node) {
                    let ok = header.is_empty()
                        || matches_pattern(&header, |c| {
                            c.is_ascii_alphanumeric() || c == '-' || c == '_'
                        });
                    if !ok {
                        out.schema(
                            node.span,
                            format!("`{item}.header` {header:?} must match ^[-_A-Za-z0-9]+$"),
                        );
                    }
                }
            }
        }
    }
}

/// A protobuf-JSON duration as Kubernetes accepts it: `1.5s`, `300ms`, `1m30s`, `2h`.
pub(super) fn is_duration(text: &str) -> bool {
    let mut rest = text;
    let mut any = false;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .iter()
            .find(|u| rest.starts_with(*u))
        else {
            return false;
        };
        rest = &rest[unit.len()..];
        any = true;
    }
    any
}

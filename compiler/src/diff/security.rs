//! Changes to the workload, security and telemetry parts of a snapshot: served services and
//! service identities, inbound mTLS modes, authorization policies, JWT rules and telemetry.
//! All of them apply between requests, so every change is a hot swap.

use spec::{AuthorizationPolicy, JwtRule, Snapshot, Workload};

use super::{by_name, list, service_name, union, Changes, Impact, Kind};

/// Service identities (secure naming) that changed, for services in both snapshots.
pub(super) fn identities(out: &mut Changes, old: &Snapshot, new: &Snapshot) {
    let a = by_name(&old.services, |s| &s.name);
    let b = by_name(&new.services, |s| &s.name);
    for name in union(&a, &b) {
        if let (Some(x), Some(y)) = (a.get(name), b.get(name)) {
            out.changed(
                format!("service {name} identities"),
                list(&x.identities),
                list(&y.identities),
                Impact::HotSwap,
            );
        }
    }
}

/// The security and telemetry changes of a workload in both snapshots.
pub(super) fn workload(
    out: &mut Changes,
    what: &str,
    old: &Snapshot,
    x: &Workload,
    new: &Snapshot,
    y: &Workload,
) {
    let serves = |s: &Snapshot, w: &Workload| {
        let mut names: Vec<String> = w.serves.iter().map(|&i| service_name(s, i)).collect();
        names.sort();
        list(&names)
    };
    out.changed(
        format!("{what} serves"),
        serves(old, x),
        serves(new, y),
        Impact::HotSwap,
    );
    // Ports opened or closed show in the `inbound` line; here only modes of kept ports.
    for p in &x.inbound {
        if let Some(q) = y.inbound.iter().find(|q| q.port == p.port) {
            out.changed(
                format!("{what} mtls port {}", p.port),
                p.tls.as_str().to_owned(),
                q.tls.as_str().to_owned(),
                Impact::HotSwap,
            );
        }
    }
    authorization(out, what, &x.authorization, &y.authorization);
    let jwt = |w: &Workload| {
        let rules: Vec<String> = w.jwt.iter().map(jwt_rule).collect();
        list(&rules)
    };
    out.changed(format!("{what} jwt"), jwt(x), jwt(y), Impact::HotSwap);
    let telemetry = |w: &Workload| {
        let log = w
            .telemetry
            .access_log
            .as_ref()
            .map_or_else(|| "off".to_owned(), |f| format!("{f:?}"));
        let sampling = w.telemetry.trace_sampling_per_million;
        format!(
            "access_log {log}, trace_sampling {}.{:04}%",
            sampling / 10_000,
            sampling % 10_000
        )
    };
    out.changed(
        format!("{what} telemetry"),
        telemetry(x),
        telemetry(y),
        Impact::HotSwap,
    );
}

/// Policies by name: added, removed, changed (action, rules), and a changed evaluation order.
fn authorization(
    out: &mut Changes,
    what: &str,
    x: &[AuthorizationPolicy],
    y: &[AuthorizationPolicy],
) {
    let a = by_name(x, |p| &p.name);
    let b = by_name(y, |p| &p.name);
    for name in union(&a, &b) {
        let policy = format!("{what} authorization {name}");
        match (a.get(name), b.get(name)) {
            (Some(_), None) => out.push(Kind::Removed, policy, Impact::HotSwap),
            (None, Some(p)) => out.push(
                Kind::Added,
                format!("{policy} ({})", p.action.as_str()),
                Impact::HotSwap,
            ),
            (Some(p), Some(q)) => {
                out.changed(
                    format!("{policy} action"),
                    p.action.as_str().to_owned(),
                    q.action.as_str().to_owned(),
                    Impact::HotSwap,
                );
                if p.rules != q.rules {
                    out.push(Kind::Changed, format!("{policy} rules"), Impact::HotSwap);
                }
            }
            (None, None) => {}
        }
    }
    let order = |policies: &[AuthorizationPolicy]| -> Vec<String> {
        policies
            .iter()
            .filter(|p| a.contains_key(&p.name) && b.contains_key(&p.name))
            .map(|p| p.name.clone())
            .collect()
    };
    out.changed(
        format!("{what} authorization order"),
        list(&order(x)),
        list(&order(y)),
        Impact::HotSwap,
    );
}

fn jwt_rule(rule: &JwtRule) -> String {
    let audiences = if rule.audiences.is_empty() {
        String::new()
    } else {
        format!(" audiences {}", rule.audiences.join("|"))
    };
    format!("{:?}{audiences} jwks {:?}", rule.issuer, rule.jwks_file)
}

#[cfg(test)]
mod tests;

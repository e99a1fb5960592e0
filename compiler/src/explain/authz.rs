//! Authorization of one request on the inbound side of one workload, with Istio's semantics:
//! a strict-mTLS port refuses callers without a peer identity; then DENY policies (any match
//! denies); then, when the workload has ALLOW policies, the request must match one of them;
//! AUDIT policies never decide, they are listed.
//!
//! `explain` takes no JWT and no source address, so `request.auth.*` and `source.ip` attributes
//! are absent; every policy that reads them gets a note saying so rather than a silent answer.

use spec::{
    AuthzAction, AuthzCondition, AuthzOperation, AuthzRule, AuthzSource, ConditionKey,
    SourceLocation, StringPattern, TlsMode, Workload,
};

use super::Request;

/// The request attributes authorization reads.
#[derive(Clone, Copy, Debug)]
pub(super) struct Attributes<'a> {
    /// The request (method, host, path, headers).
    pub(super) request: &'a Request,
    /// The caller's SPIFFE ID; `None` without a peer identity.
    pub(super) principal: Option<&'a str>,
    /// The port the caller addressed, when known.
    pub(super) port: Option<u16>,
}

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The request reaches the application.
    Allow,
    /// The sidecar answers 403 (or refuses the connection, for a strict-mTLS port).
    Deny,
}

impl Decision {
    /// `allow` or `deny`, as in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// The decision of one workload's sidecar and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The workload whose inbound policies were evaluated.
    pub workload: String,
    /// Allow or deny.
    pub decision: Decision,
    /// The policy that decided, with its source; `None` when no policy decided.
    pub policy: Option<(String, SourceLocation)>,
    /// One sentence saying why.
    pub reason: String,
    /// ALLOW policies tried without a match, when that is why the request is denied.
    pub allow_policies: Vec<String>,
    /// AUDIT policies that match the request.
    pub audited_by: Vec<String>,
    /// Attributes `explain` cannot know that some policy reads.
    pub notes: Vec<String>,
}

/// Evaluates `workload`'s inbound authorization for a request with these attributes.
pub(super) fn evaluate(workload: &Workload, attrs: Attributes<'_>) -> Verdict {
    let mut verdict = Verdict {
        workload: workload.name.clone(),
        decision: Decision::Allow,
        policy: None,
        reason: String::new(),
        allow_policies: Vec::new(),
        audited_by: Vec::new(),
        notes: Vec::new(),
    };
    if !workload.jwt.is_empty() {
        let issuers: Vec<&str> = workload.jwt.iter().map(|j| j.issuer.as_str()).collect();
        verdict.notes.push(format!(
            "a JWT from {} is validated when the request carries one (an invalid token gets \
             401); explain sends none",
            issuers.join(", ")
        ));
    }
    let inbound = attrs
        .port
        .and_then(|p| workload.inbound.iter().find(|i| i.port == p));
    let mut attrs = attrs;
    match inbound.map(|i| i.tls) {
        Some(TlsMode::Strict) if attrs.principal.is_none() => {
            verdict.decision = Decision::Deny;
            verdict.reason = format!(
                "inbound port {} requires mutual TLS (strict) and the request has no peer \
                 identity (give the caller's with --from)",
                inbound.map_or(0, |i| i.port)
            );
            return verdict;
        }
        Some(TlsMode::Disable) if attrs.principal.is_some() => {
            verdict.notes.push(format!(
                "inbound port {} is plaintext only (tls disable): the caller has no peer \
                 identity there, so --from is ignored",
                inbound.map_or(0, |i| i.port)
            ));
            attrs.principal = None;
        }
        _ => {}
    }
    let mut eval = Eval {
        attrs,
        policy: String::new(),
        notes: Vec::new(),
    };
    let matching = |action: AuthzAction, eval: &mut Eval<'_>| -> Vec<usize> {
        let mut found = Vec::new();
        for (i, policy) in workload.authorization.iter().enumerate() {
            if policy.action == action {
                eval.policy = policy.name.clone();
                // Every rule is looked at so that each note is collected.
                let hits = policy.rules.iter().filter(|r| eval.rule(r)).count();
                if hits > 0 {
                    found.push(i);
                }
            }
        }
        found
    };
    let denies = matching(AuthzAction::Deny, &mut eval);
    let allows = matching(AuthzAction::Allow, &mut eval);
    let audits = matching(AuthzAction::Audit, &mut eval);
    let policies = &workload.authorization;
    let named = |i: usize| (policies[i].name.clone(), policies[i].source.clone());
    verdict.audited_by = audits.iter().map(|&i| policies[i].name.clone()).collect();
    verdict.notes.extend(eval.notes);
    if let Some(&first) = denies.first() {
        verdict.decision = Decision::Deny;
        verdict.policy = Some(named(first));
        verdict.reason = format!("DENY policy {} matches", policies[first].name);
        return verdict;
    }
    let allow_names: Vec<String> = policies
        .iter()
        .filter(|p| p.action == AuthzAction::Allow)
        .map(|p| p.name.clone())
        .collect();
    if let Some(&first) = allows.first() {
        verdict.policy = Some(named(first));
        verdict.reason = format!("ALLOW policy {} matches", policies[first].name);
    } else if allow_names.is_empty() {
        verdict.reason = if policies.is_empty() {
            "no authorization policy".to_owned()
        } else {
            "no DENY policy matches and there is no ALLOW policy".to_owned()
        };
    } else {
        verdict.decision = Decision::Deny;
        verdict.reason = format!("no ALLOW policy matched ({})", allow_names.join(", "));
        verdict.allow_policies = allow_names;
    }
    verdict
}

/// Rule evaluation with the notes it collects.
struct Eval<'a> {
    attrs: Attributes<'a>,
    /// The policy being evaluated, for notes.
    policy: String,
    notes: Vec<String>,
}

impl Eval<'_> {
    fn note(&mut self, attribute: &str) {
        let note = format!(
            "policy {} reads {attribute}, which explain cannot know: treated as absent",
            self.policy
        );
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// A rule holds when any `from`, any `to` and every `when` hold (an empty list holds).
    fn rule(&mut self, rule: &AuthzRule) -> bool {
        // Evaluated eagerly (no short-circuit) so that the notes are complete.
        let from: Vec<bool> = rule.from.iter().map(|s| self.source(s)).collect();
        let to: Vec<bool> = rule.to.iter().map(|o| self.operation(o)).collect();
        let when: Vec<bool> = rule.when.iter().map(|c| self.condition(c)).collect();
        (from.is_empty() || from.contains(&true))
            && (to.is_empty() || to.contains(&true))
            && !when.contains(&false)
    }

    fn source(&mut self, s: &AuthzSource) -> bool {
        let principal: Vec<&str> = self.attrs.principal.into_iter().collect();
        let namespace: Vec<&str> = self
            .attrs
            .principal
            .and_then(namespace)
            .into_iter()
            .collect();
        if !s.request_principals.is_empty() || !s.not_request_principals.is_empty() {
            self.note("request principals (JWT)");
        }
        field(&s.principals, &s.not_principals, &principal, false)
            && field(&s.namespaces, &s.not_namespaces, &namespace, false)
            && field(&s.request_principals, &s.not_request_principals, &[], false)
    }

    fn operation(&mut self, o: &AuthzOperation) -> bool {
        let r = self.attrs.request;
        let host = r.host.to_ascii_lowercase();
        let ports_ok = (o.ports.is_empty()
            || self.attrs.port.is_some_and(|p| o.ports.contains(&p)))
            && !self.attrs.port.is_some_and(|p| o.not_ports.contains(&p));
        if self.attrs.port.is_none() && !(o.ports.is_empty() && o.not_ports.is_empty()) {
            self.note("the destination port (give it in the --request URL)");
        }
        field(&o.hosts, &o.not_hosts, &[host.as_str()], true)
            && field(&o.methods, &o.not_methods, &[r.method.as_str()], false)
            && field(&o.paths, &o.not_paths, &[r.path.as_str()], false)
            && ports_ok
    }

    fn condition(&mut self, c: &AuthzCondition) -> bool {
        let r = self.attrs.request;
        let port = self.attrs.port.map(|p| p.to_string());
        let values: Vec<&str> = match &c.key {
            ConditionKey::RequestHeader(name) => r
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect(),
            ConditionKey::SourcePrincipal => self.attrs.principal.into_iter().collect(),
            ConditionKey::SourceNamespace => self
                .attrs
                .principal
                .and_then(namespace)
                .into_iter()
                .collect(),
            ConditionKey::DestinationPort => {
                if port.is_none() {
                    self.note("destination.port (give the port in the --request URL)");
                }
                port.as_deref().into_iter().collect()
            }
            ConditionKey::JwtClaim(path) => {
                self.note(&format!("request.auth.claims[{}]", path.join("][")));
                Vec::new()
            }
            ConditionKey::RequestPrincipal => {
                self.note("request.auth.principal");
                Vec::new()
            }
            ConditionKey::JwtAudience => {
                self.note("request.auth.audiences");
                Vec::new()
            }
            ConditionKey::JwtPresenter => {
                self.note("request.auth.presenter");
                Vec::new()
            }
            ConditionKey::SourceIp => {
                self.note("source.ip");
                Vec::new()
            }
        };
        field(&c.values, &c.not_values, &values, false)
    }
}

/// A field holds when it is empty or one of the attribute's values matches one of its
/// patterns, and no value matches a `not` pattern. An absent attribute (no values) fails a
/// non-empty positive list and passes any `not` list.
fn field(values: &[StringPattern], not: &[StringPattern], attr: &[&str], fold: bool) -> bool {
    let hit = |patterns: &[StringPattern]| {
        attr.iter()
            .any(|a| patterns.iter().any(|p| pattern(p, a, fold)))
    };
    (values.is_empty() || hit(values)) && !hit(not)
}

fn pattern(p: &StringPattern, value: &str, fold: bool) -> bool {
    let norm = |s: &str| {
        if fold {
            s.to_ascii_lowercase()
        } else {
            s.to_owned()
        }
    };
    let value = norm(value);
    match p {
        StringPattern::Exact(s) => value == norm(s),
        StringPattern::Prefix(s) => value.starts_with(&norm(s)),
        StringPattern::Suffix(s) => value.ends_with(&norm(s)),
        StringPattern::Any => true,
    }
}

/// The namespace of a SPIFFE ID `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/ACCOUNT`.
fn namespace(principal: &str) -> Option<&str> {
    let rest = principal.strip_prefix("spiffe://")?;
    let mut parts = rest.split('/').skip(1);
    match (parts.next(), parts.next()) {
        (Some("ns"), Some(ns)) if !ns.is_empty() => Some(ns),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::namespace;

    #[test]
    fn namespace_comes_from_the_spiffe_path() {
        assert_eq!(
            namespace("spiffe://cluster.local/ns/prod/sa/api"),
            Some("prod")
        );
        assert_eq!(namespace("spiffe://cluster.local/sa/api"), None);
        assert_eq!(namespace("cluster.local/ns/prod/sa/api"), None);
    }
}

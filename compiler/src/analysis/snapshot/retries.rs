//! Retry policies that cannot work as written: tries that outlast the rule timeout (W0160,
//! W0161), and retries on a rule that only matches methods `meshd` never retries (W0162).

use regex::Regex;
use spec::http::IDEMPOTENT_METHODS as IDEMPOTENT;
use spec::{RequestMatch, RetryPolicy, RouteRule, Snapshot, ValueMatch};

use super::{at_location, duration};
use crate::diag::{Code, Diagnostic, Sources};

pub(super) fn check(snapshot: &Snapshot, sources: &Sources, out: &mut Vec<Diagnostic>) {
    for table in &snapshot.routes {
        let route = snapshot
            .services
            .get(table.service as usize)
            .map_or("?", |s| s.name.as_str());
        for rule in &table.rules {
            let Some(retries) = rule.retries.as_ref().filter(|r| r.attempts > 0) else {
                continue;
            };
            check_timeouts(route, rule, retries, sources, out);
            check_methods(route, rule, retries, sources, out);
        }
    }
}

fn check_timeouts(
    route: &str,
    rule: &RouteRule,
    retries: &RetryPolicy,
    sources: &Sources,
    out: &mut Vec<Diagnostic>,
) {
    let (Some(timeout), Some(per_try)) = (rule.timeout_ms, retries.per_try_timeout_ms) else {
        return;
    };
    let name = &rule.name;
    if per_try >= timeout {
        out.push(
            at_location(
                Code::PerTryTimeoutNotBelowTimeout,
                sources,
                &rule.source,
                format!(
                    "rule `{name}` of route `{route}`: the per-try timeout {} is not below the \
                     rule timeout {}, so the first try can use the whole timeout and no retry \
                     ever starts",
                    duration(per_try),
                    duration(timeout)
                ),
            )
            .with_help("make `per_try_timeout` shorter than `timeout`, or remove the retries"),
        );
        return;
    }
    let tries = u64::from(retries.attempts) + 1;
    let total = per_try.saturating_mul(tries);
    if total > timeout {
        out.push(
            at_location(
                Code::RetriesExceedTimeout,
                sources,
                &rule.source,
                format!(
                    "rule `{name}` of route `{route}`: {tries} tries of up to {} take up to {} \
                     (without backoff), longer than the rule timeout {}; the last tries are cut off",
                    duration(per_try),
                    duration(total),
                    duration(timeout)
                ),
            )
            .with_help(format!(
                "raise `timeout` to at least {}, or lower `attempts` or `per_try_timeout`",
                duration(total)
            )),
        );
    }
}

fn check_methods(
    route: &str,
    rule: &RouteRule,
    retries: &RetryPolicy,
    sources: &Sources,
    out: &mut Vec<Diagnostic>,
) {
    if retries.non_idempotent || rule.matches.is_empty() {
        return;
    }
    if rule.matches.iter().any(admits_idempotent) {
        return;
    }
    out.push(
        at_location(
            Code::RetriesNeverHappen,
            sources,
            &rule.source,
            format!(
                "rule `{}` of route `{route}` only matches non-idempotent methods, which `meshd` \
                 does not retry without `non_idempotent`: these retries never happen",
                rule.name
            ),
        )
        .with_help(
            "add `non_idempotent` to the retries if replaying these requests is safe, or remove \
             the retries",
        ),
    );
}

/// Whether a match may admit a method `meshd` retries by default. Unknown (an invalid regex)
/// counts as yes, so the warning is only given when it is certain.
fn admits_idempotent(request_match: &RequestMatch) -> bool {
    let Some(method) = &request_match.method else {
        return true;
    };
    match method {
        ValueMatch::Exact(m) => IDEMPOTENT.contains(&m.as_str()),
        ValueMatch::Prefix(p) => IDEMPOTENT.iter().any(|m| m.starts_with(p.as_str())),
        ValueMatch::Regex(r) => Regex::new(&format!("^(?:{r})$"))
            .map_or(true, |re| IDEMPOTENT.iter().any(|m| re.is_match(m))),
        ValueMatch::Present => true,
        ValueMatch::Absent => false,
    }
}

//! What a matched rule does besides picking a destination: timeout, fault injection, header
//! edits, path and authority rewrite, redirect. Compiled once per snapshot load; applied on the
//! request path without allocating (a regex path rewrite is the one exception).
//!
//! Also lists, once per load, the snapshot features this meshd does not enforce yet, so none is
//! ignored silently.

use std::time::Duration;

use regex::bytes::Regex;
use spec::{HeaderEdits, HeaderValue, Redirect, RetryPolicy, RouteRule, Snapshot};

/// Headers a rule's header edits may not touch: framing and hop-by-hop headers (editing them
/// would desynchronize the body framing between the two hops) and Host (the rewrite's
/// `authority` changes it).
const PROTECTED_HEADERS: [&str; 9] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "expect",
    "host",
];

/// Whether a header edit naming `name` would be refused (and so is left out).
fn protected(name: &str) -> bool {
    PROTECTED_HEADERS
        .iter()
        .any(|p| name.eq_ignore_ascii_case(p))
}

/// A compiled rule's actions, ready for the request path.
#[derive(Debug, Default)]
pub struct RuleActions {
    /// `table-service/rule`, for messages.
    pub name: String,
    /// Bound on the whole upstream exchange; `None` uses `--upstream-timeout`.
    pub timeout: Option<Duration>,
    /// Delay and its share in millionths.
    pub delay: Option<(Duration, u32)>,
    /// Abort status and its share in millionths.
    pub abort: Option<(u16, u32)>,
    /// Edits to the forwarded request head (protected headers left out).
    pub request_headers: HeaderEdits,
    /// Edits to the returned response head (protected headers left out).
    pub response_headers: HeaderEdits,
    /// How the path is rewritten, if at all.
    pub path: Option<PathRewrite>,
    /// New Host, if any.
    pub authority: Option<String>,
    /// Answer with this redirect instead of forwarding.
    pub redirect: Option<Redirect>,
    /// The rule's retry policy; `None` uses the sidecar default (see `retry`).
    pub retries: Option<RetryPolicy>,
}

/// A path rewrite.
#[derive(Debug)]
pub enum PathRewrite {
    /// Replace the part of the path the rule's conditions covered.
    Prefix(String),
    /// Replace every match of the regex; `$1` in the substitution names a group.
    Regex(Regex, String),
}

/// Header edits that do nothing, for requests whose rule has none.
pub static NO_EDITS: HeaderEdits = HeaderEdits {
    set: Vec::new(),
    add: Vec::new(),
    remove: Vec::new(),
};

impl RuleActions {
    /// Compiles a rule's actions; `name` is `service/rule`. Fails on an invalid rewrite regex.
    pub fn compile(name: String, rule: &RouteRule) -> Result<Self, String> {
        let filter = |edits: &HeaderEdits| HeaderEdits {
            set: edits
                .set
                .iter()
                .filter(|h| !protected(&h.name))
                .cloned()
                .collect(),
            add: edits
                .add
                .iter()
                .filter(|h| !protected(&h.name))
                .cloned()
                .collect(),
            remove: edits
                .remove
                .iter()
                .filter(|n| !protected(n))
                .cloned()
                .collect(),
        };
        let rewrite = rule.rewrite.as_ref();
        let path = match rewrite {
            Some(r) => match (&r.path_prefix, &r.path_regex) {
                (Some(prefix), _) => Some(PathRewrite::Prefix(prefix.clone())),
                (None, Some(re)) => {
                    let regex = Regex::new(&re.pattern).map_err(|e| {
                        format!(
                            "rule {name}: invalid path rewrite regex {:?}: {}",
                            re.pattern,
                            regex_reason(&e)
                        )
                    })?;
                    Some(PathRewrite::Regex(regex, re.substitution.clone()))
                }
                (None, None) => None,
            },
            None => None,
        };
        let fault = rule.fault.as_ref();
        Ok(Self {
            timeout: rule.timeout_ms.map(Duration::from_millis),
            delay: fault
                .and_then(|f| f.delay.as_ref())
                .map(|d| (Duration::from_millis(d.delay_ms), d.per_million)),
            abort: fault
                .and_then(|f| f.abort.as_ref())
                .map(|a| (a.status, a.per_million)),
            request_headers: filter(&rule.headers.request),
            response_headers: filter(&rule.headers.response),
            path,
            authority: rewrite.and_then(|r| r.authority.clone()),
            redirect: rule.redirect.clone(),
            retries: rule.retries.clone(),
            name,
        })
    }

    /// Whether the forwarded request head needs anything beyond hop-by-hop filtering.
    pub fn edits_request(&self) -> bool {
        self.path.is_some() || self.authority.is_some() || !is_empty(&self.request_headers)
    }
}

/// The one-line reason of a regex error (its display spans lines, with a caret under the
/// pattern as compiled, which is not the pattern as written when it was anchored).
pub fn regex_reason(error: &regex::Error) -> String {
    let text = error.to_string();
    let reason = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    reason.trim().to_owned()
}

fn is_empty(edits: &HeaderEdits) -> bool {
    edits.set.is_empty() && edits.add.is_empty() && edits.remove.is_empty()
}

/// Draws whether an event with this share (in millionths) happens to this request.
pub fn chance(per_million: u32) -> bool {
    per_million >= 1_000_000 || (per_million > 0 && fastrand::u32(..1_000_000) < per_million)
}

impl PathRewrite {
    /// Writes the rewritten `path` (no query) into `out`. `covered` is how many leading bytes
    /// of the path the rule's matching conditions covered ([`spec::matching::rule_holds`]).
    pub fn write(&self, path: &str, covered: usize, out: &mut Vec<u8>) {
        let start = out.len();
        match self {
            Self::Prefix(replacement) => {
                out.extend_from_slice(replacement.as_bytes());
                let rest = path.get(covered..).unwrap_or("");
                out.extend_from_slice(rest.as_bytes());
            }
            Self::Regex(regex, substitution) => {
                // The one allocating action: only when the pattern matches.
                let replaced = regex.replace_all(path.as_bytes(), substitution.as_bytes());
                out.extend_from_slice(&replaced);
            }
        }
        if out.len() == start || out[start] != b'/' {
            out.insert(start, b'/');
        }
    }
}

/// Whether header `name` is removed or replaced by `edits` (so the original is not forwarded).
pub fn edited_away(name: &str, edits: &HeaderEdits) -> bool {
    edits.remove.iter().any(|r| name.eq_ignore_ascii_case(r))
        || edits.set.iter().any(|s| name.eq_ignore_ascii_case(&s.name))
}

/// Writes the headers `edits` sets and adds.
pub fn write_added(out: &mut Vec<u8>, edits: &HeaderEdits) {
    let write = |out: &mut Vec<u8>, h: &HeaderValue| {
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    for h in edits.set.iter().chain(&edits.add) {
        write(out, h);
    }
}

/// One snapshot feature this meshd does not enforce, and where the snapshot uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotEnforced {
    /// What the feature is, e.g. `retries`.
    pub feature: &'static str,
    /// Where it is used: `rules reviews/canary`, `services ratings`, `workloads productpage`.
    pub used_by: Vec<String>,
}

impl NotEnforced {
    /// The warning line logged at load.
    pub fn warning(&self) -> String {
        format!(
            "snapshot uses {} ({}) which this meshd does not enforce yet",
            self.feature,
            self.used_by.join(", ")
        )
    }
}

/// Lists the features `snapshot` uses that this meshd does not enforce; with `workload`, only
/// that workload's own settings count among the workloads'.
pub fn not_enforced(snapshot: &Snapshot, workload: Option<&str>) -> Vec<NotEnforced> {
    let mut found: Vec<NotEnforced> = Vec::new();
    let mut note = |feature: &'static str, place: String| match found
        .iter_mut()
        .find(|n| n.feature == feature)
    {
        Some(n) => n.used_by.push(place),
        None => found.push(NotEnforced {
            feature,
            used_by: vec![place],
        }),
    };
    for table in &snapshot.routes {
        let service = snapshot
            .services
            .get(table.service as usize)
            .map_or("?", |s| s.name.as_str());
        for rule in &table.rules {
            let place = || format!("rule {service}/{}", rule.name);
            let edits = [&rule.headers.request, &rule.headers.response];
            let touches_protected = edits.iter().any(|e| {
                e.set.iter().chain(&e.add).any(|h| protected(&h.name))
                    || e.remove.iter().any(|n| protected(n))
            });
            if touches_protected {
                note(
                    "header edits of framing, hop-by-hop or Host headers",
                    place(),
                );
            }
            if let Some(r) = &rule.rewrite {
                if r.path_prefix.is_some() && r.path_regex.is_some() {
                    note("a path_regex rewrite beside a path_prefix one", place());
                }
            }
        }
    }
    for unserved in &snapshot.unserved {
        let place = format!(
            "{}: {} {}",
            unserved.source, unserved.code, unserved.message
        );
        note("config meshc accepted without serving it", place);
    }
    let own = workload.and_then(|query| snapshot.workload(query));
    for w in &snapshot.workloads {
        if workload.is_some() && !own.is_some_and(|own| std::ptr::eq(own, w)) {
            continue;
        }
        if w.telemetry.trace_sampling_per_million > 0 {
            note(TRACE_SAMPLING, format!("workload {}", w.name));
        }
    }
    if workload.is_none() && snapshot.telemetry.trace_sampling_per_million > 0 {
        note(TRACE_SAMPLING, "the mesh-wide telemetry".to_owned());
    }
    found
}

/// The feature name of trace sampling without a collector (meshd --trace-collector): the
/// sidecar traces nothing.
pub const TRACE_SAMPLING: &str = "trace sampling (no --trace-collector)";

#[cfg(test)]
mod tests;

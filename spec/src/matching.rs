//! Whether a request meets a route rule's match conditions, and how much of its path they
//! covered (what a prefix rewrite replaces).
//!
//! One definition for both sides of the contract: `meshd` routes live requests with it, over
//! its borrowed view of the request and without allocating, and `meshc explain` predicts those
//! routes with it. Regular expressions are compiled by each side ([`Pattern`]), so this crate
//! stays free of a regex engine; everything else about a match is decided here.
//!
//! The semantics are Envoy's, as Istio configures it:
//! - a rule matches when any of its alternatives holds, and a rule without any matches all;
//! - an alternative holds when every condition it has holds;
//! - a regex matches the whole value;
//! - header names compare without case, and a header sent several times matches when any of its
//!   values does;
//! - query parameters compare after percent-decoding (`+` stays `+`), and a parameter without
//!   `=` has the empty value.

use crate::http::{percent_decoded, query_pairs};
use crate::{PathMatch, RequestMatch, ValueMatch};

/// `pattern` anchored at both ends, for a regex engine to compile into a [`Pattern`]: a match
/// condition's regex must match the whole value.
pub fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

/// A compiled regular expression that matches a whole value (anchored at both ends).
pub trait Pattern {
    /// Whether `value` matches.
    fn is_match(&self, value: &[u8]) -> bool;
}

/// The parts of a request that route matching reads.
pub trait Request {
    /// Path without the query string.
    fn path(&self) -> &str;
    /// Method token, e.g. `GET`.
    fn method(&self) -> &str;
    /// Query string without the `?`, as sent (not decoded); empty when there is none.
    fn query(&self) -> &str;
    /// Every header as `(name, value)`, in the order sent.
    fn headers(&self) -> impl Iterator<Item = (&str, &[u8])>;
}

/// A compiled [`RequestMatch`]: one alternative of a rule.
#[derive(Debug)]
pub struct Conditions<P> {
    path: Option<PathCondition<P>>,
    /// Method, header and query conditions; boxed and `None` without any, so the path
    /// conditions a first-match scan reads sit close together.
    rest: Option<Box<OtherConditions<P>>>,
}

#[derive(Debug)]
struct OtherConditions<P> {
    method: Option<ValueCondition<P>>,
    headers: Vec<(Box<str>, ValueCondition<P>)>,
    query: Vec<(Box<str>, ValueCondition<P>)>,
}

#[derive(Debug)]
enum PathCondition<P> {
    Exact(Box<str>),
    Prefix(Box<str>),
    Regex(P),
}

#[derive(Debug)]
enum ValueCondition<P> {
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    Regex(P),
    Present,
    Absent,
}

/// Whether a rule with these alternatives matches `request`; if so, how many leading bytes of
/// the path its matching alternative covered. A rule without alternatives matches every
/// request, as an alternative without a path condition does: both cover the leading `/`, as
/// the `prefix: /` Envoy route Istio generates for them.
#[inline(always)]
pub fn rule_holds<P: Pattern>(
    alternatives: &[Conditions<P>],
    request: &impl Request,
) -> Option<usize> {
    if alternatives.is_empty() {
        return Some(root_covered(request.path()));
    }
    alternatives.iter().find_map(|m| m.holds(request))
}

fn root_covered(path: &str) -> usize {
    usize::from(path.starts_with('/'))
}

impl<P: Pattern> Conditions<P> {
    /// Compiles `m`; `regex(pattern, what)` compiles each regular expression (`what` names the
    /// attribute, e.g. `path` or `header "end-user"`), to match the whole value.
    pub fn compile<E>(
        m: &RequestMatch,
        mut regex: impl FnMut(&str, &str) -> Result<P, E>,
    ) -> Result<Self, E> {
        let path = match &m.path {
            None => None,
            Some(PathMatch::Exact(p)) => Some(PathCondition::Exact(p.as_str().into())),
            Some(PathMatch::Prefix(p)) => Some(PathCondition::Prefix(p.as_str().into())),
            Some(PathMatch::Regex(p)) => Some(PathCondition::Regex(regex(p, "path")?)),
        };
        let mut value = |v: &ValueMatch, what: &str| {
            Ok(match v {
                ValueMatch::Exact(s) => ValueCondition::Exact(s.as_bytes().into()),
                ValueMatch::Prefix(s) => ValueCondition::Prefix(s.as_bytes().into()),
                ValueMatch::Regex(p) => ValueCondition::Regex(regex(p, what)?),
                ValueMatch::Present => ValueCondition::Present,
                ValueMatch::Absent => ValueCondition::Absent,
            })
        };
        let method = m.method.as_ref().map(|v| value(v, "method")).transpose()?;
        let headers = m
            .headers
            .iter()
            .map(|h| {
                let what = format!("header {:?}", h.name);
                Ok((h.name.as_str().into(), value(&h.value, &what)?))
            })
            .collect::<Result<Vec<_>, E>>()?;
        let query = m
            .query
            .iter()
            .map(|q| {
                let what = format!("query parameter {:?}", q.name);
                Ok((q.name.as_str().into(), value(&q.value, &what)?))
            })
            .collect::<Result<Vec<_>, E>>()?;
        let rest = (method.is_some() || !headers.is_empty() || !query.is_empty()).then(|| {
            Box::new(OtherConditions {
                method,
                headers,
                query,
            })
        });
        Ok(Self { path, rest })
    }

    /// Whether every condition holds; if so, how many leading bytes of the path the path
    /// condition covered: the prefix, the whole path for an exact or regex match, the leading
    /// `/` without a path condition.
    #[inline]
    pub fn holds(&self, request: &impl Request) -> Option<usize> {
        let path = request.path();
        let covered = match &self.path {
            None => root_covered(path),
            Some(PathCondition::Exact(p)) => (path == &**p).then_some(p.len())?,
            Some(PathCondition::Prefix(p)) => path.starts_with(&**p).then_some(p.len())?,
            Some(PathCondition::Regex(re)) => re.is_match(path.as_bytes()).then_some(path.len())?,
        };
        let Some(rest) = &self.rest else {
            return Some(covered);
        };
        let method_ok = rest
            .method
            .as_ref()
            .is_none_or(|m| m.holds_for(std::iter::once(request.method().as_bytes())));
        let headers_ok = rest.headers.iter().all(|(name, condition)| {
            let values = request
                .headers()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v);
            condition.holds_for(values)
        });
        let query_ok = rest
            .query
            .iter()
            .all(|(name, condition)| query_holds(request.query(), name, condition));
        (method_ok && headers_ok && query_ok).then_some(covered)
    }
}

impl<P: Pattern> ValueCondition<P> {
    /// Whether the condition holds for an attribute with these values (several headers of
    /// one name: any value matching counts).
    fn holds_for<'v>(&self, mut values: impl Iterator<Item = &'v [u8]>) -> bool {
        match self {
            Self::Present => values.next().is_some(),
            Self::Absent => values.next().is_none(),
            _ => values.any(|v| self.accepts(v)),
        }
    }

    /// Whether one value satisfies an Exact, Prefix or Regex condition.
    fn accepts(&self, value: &[u8]) -> bool {
        match self {
            Self::Exact(want) => value == &**want,
            Self::Prefix(want) => value.starts_with(want),
            Self::Regex(re) => re.is_match(value),
            Self::Present => true,
            Self::Absent => false,
        }
    }
}

/// Whether the query parameter `name` satisfies `condition`, names and values compared after
/// percent-decoding.
fn query_holds<P: Pattern>(query: &str, name: &str, condition: &ValueCondition<P>) -> bool {
    let mut seen = false;
    for (key, value) in query_pairs(query) {
        if !percent_decoded(key.as_bytes()).eq(name.bytes()) {
            continue;
        }
        seen = true;
        let accepted = match condition {
            ValueCondition::Present => return true,
            ValueCondition::Absent => return false,
            _ => with_decoded(value.as_bytes(), |v| condition.accepts(v)),
        };
        if accepted {
            return true;
        }
    }
    matches!(condition, ValueCondition::Absent) && !seen
}

/// Longest value decoded on the stack; meshd's request-target limit keeps every value under it.
const STACK_DECODE_BYTES: usize = 8 * 1024;

/// Runs `f` on the percent-decoded `raw`: on `raw` itself when it has no `%` (the common case),
/// else on a copy decoded into a stack buffer (a heap one past [`STACK_DECODE_BYTES`]).
fn with_decoded<R>(raw: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    if !raw.contains(&b'%') {
        return f(raw);
    }
    if raw.len() > STACK_DECODE_BYTES {
        let decoded: Vec<u8> = percent_decoded(raw).collect();
        return f(&decoded);
    }
    let mut buf = [0u8; STACK_DECODE_BYTES];
    let mut len = 0;
    for b in percent_decoded(raw) {
        buf[len] = b;
        len += 1;
    }
    f(&buf[..len])
}

#[cfg(test)]
mod tests;

//! Rule shadowing within one route table.
//!
//! The data plane takes the first rule with a match that holds (a rule without matches matches
//! every request; a rule's matches are ORed, the conditions of one match ANDed). A later rule is
//! *unreachable* when every one of its matches is contained in a match of an earlier rule, and
//! *partly overlapped* when it stays reachable but one of its matches is contained in a match of
//! an earlier rule (that match can never be why it is selected).
//!
//! Containment is tested match against match, which is sound but not complete: when this module
//! says a rule can never match, it cannot; a match covered only by several earlier matches
//! together, or by `path prefix "/"` (a request target need not start with `/`), is missed.
//!
//! One `ast::Route` is one route table: lowering rejects a second route for a service (E0103),
//! whatever file or language it comes from, so a table never mixes files.

use std::collections::HashSet;

use crate::ast;
use crate::diag::{Code, Diagnostic, FileId, SourceSpan, Sources};

/// A path condition as the data plane compares it (byte for byte, on the path without query).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PathCond<'a> {
    /// No path condition: every path.
    Any,
    Exact(&'a str),
    Prefix(&'a str),
}

/// One `match` line: a path condition and header conditions, all of which must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Conds<'a> {
    path: PathCond<'a>,
    /// `(lower-case name, exact value)`.
    headers: Vec<(String, &'a str)>,
    /// The line also has conditions this analysis does not model (path regex, method, query,
    /// header prefix/regex/present/absent). They only narrow the line, so it may still be found
    /// contained in an earlier line, but it is never taken to contain another line.
    opaque: bool,
}

impl<'a> Conds<'a> {
    /// No condition: matches every request.
    fn any() -> Self {
        Self {
            path: PathCond::Any,
            headers: Vec::new(),
            opaque: false,
        }
    }

    fn new(m: &'a ast::Match) -> Self {
        let mut out = Self::any();
        for condition in &m.conditions {
            match condition {
                // Lowering reports a second path condition (E0103) and keeps the first.
                ast::Condition::PathExact { value, .. } if out.path == PathCond::Any => {
                    out.path = PathCond::Exact(&value.value);
                }
                ast::Condition::PathPrefix { value, .. } if out.path == PathCond::Any => {
                    out.path = PathCond::Prefix(&value.value);
                }
                ast::Condition::PathExact { .. } | ast::Condition::PathPrefix { .. } => {}
                ast::Condition::Header {
                    name,
                    value: ast::ValueCondition::Exact(value),
                } => {
                    out.headers
                        .push((name.value.to_ascii_lowercase(), value.value.as_str()));
                }
                ast::Condition::PathRegex { value, .. } if out.path == PathCond::Any => {
                    match literal_regex(&value.value) {
                        Some(path) => out.path = path,
                        None => {
                            // Undecided, but every path it matches starts with its literal
                            // head, so an earlier rule may still be found to take it.
                            out.opaque = true;
                            if let Some(prefix) = implied_prefix(&value.value) {
                                out.path = PathCond::Prefix(prefix);
                            }
                        }
                    }
                }
                ast::Condition::PathRegex { .. }
                | ast::Condition::Method { .. }
                | ast::Condition::Query { .. }
                | ast::Condition::Header { .. } => out.opaque = true,
            }
        }
        out
    }

    fn is_any(&self) -> bool {
        self.path == PathCond::Any && self.headers.is_empty() && !self.opaque
    }

    /// Whether every request satisfying `other` satisfies `self`. Unmodeled conditions of
    /// `other` only narrow it; unmodeled conditions of `self` make the answer unknown (false).
    fn contains(&self, other: &Self) -> bool {
        if self.opaque {
            return false;
        }
        let path = match (self.path, other.path) {
            (PathCond::Any, _) => true,
            (PathCond::Prefix(p), PathCond::Prefix(q) | PathCond::Exact(q)) => q.starts_with(p),
            (PathCond::Exact(e), PathCond::Exact(f)) => e == f,
            (PathCond::Exact(_), PathCond::Prefix(_)) | (_, PathCond::Any) => false,
        };
        // A header condition holds when some header line has that name and value, so `other`'s
        // lines satisfy every condition of `self` that `other` also requires.
        path && self.headers.iter().all(|h| other.headers.contains(h))
    }
}

/// The path condition a path regex is equivalent to, where that is decidable: a regex without
/// metacharacters is an exact path and one ending in `.*` a prefix (regexes match the whole
/// path, and a path holds no line break for `.` to miss). `None` for any other regex.
fn literal_regex(pattern: &str) -> Option<PathCond<'_>> {
    let pattern = pattern.strip_prefix('^').unwrap_or(pattern);
    let pattern = match pattern.strip_suffix('$') {
        Some(rest) if !rest.ends_with('\\') => rest,
        _ => pattern,
    };
    let is_literal = |s: &str| !s.contains(|c: char| "\\.+*?()|[]{}^$".contains(c));
    match pattern.strip_suffix(".*") {
        Some(prefix) if is_literal(prefix) => Some(PathCond::Prefix(prefix)),
        _ if is_literal(pattern) => Some(PathCond::Exact(pattern)),
        _ => None,
    }
}

/// The literal head every path a regex matches starts with: the text before its first
/// metacharacter, less the last character when a quantifier makes it optional. `None` when the
/// regex has an alternation (`|` may drop the head) or no literal head.
fn implied_prefix(pattern: &str) -> Option<&str> {
    let pattern = pattern.strip_prefix('^').unwrap_or(pattern);
    if pattern.contains('|') {
        return None;
    }
    let meta = pattern.find(|c: char| "\\.+*?()|[]{}^$".contains(c))?;
    let mut head = &pattern[..meta];
    if pattern[meta..].starts_with(['?', '*', '{']) {
        let last = head.char_indices().next_back().map_or(0, |(i, _)| i);
        head = &head[..last];
    }
    (!head.is_empty()).then_some(head)
}

/// A rule with its matches in evaluation form; a rule without `match` lines is one empty match.
struct View<'a> {
    rule: &'a ast::Rule,
    matches: Vec<Conds<'a>>,
}

impl<'a> View<'a> {
    fn new(rule: &'a ast::Rule) -> Self {
        let mut matches: Vec<Conds<'a>> = rule.matches.iter().map(Conds::new).collect();
        if matches.is_empty() {
            matches.push(Conds::any());
        }
        Self { rule, matches }
    }

    fn name(&self) -> &'a str {
        &self.rule.name.name
    }

    /// Matches every request: no `match` line, or a `match` without conditions.
    fn is_catch_all(&self) -> bool {
        self.matches.iter().any(Conds::is_any)
    }

    /// Whether every request `other` matches is matched by `self` (sound, not complete).
    fn contains(&self, other: &Self) -> bool {
        other
            .matches
            .iter()
            .all(|b| self.matches.iter().any(|a| a.contains(b)))
    }
}

/// Reports unreachable (E0110, or W0112 for Istio rules) and partly overlapped (W0111) rules of
/// one route.
pub(super) fn check_route(
    file: FileId,
    origin: ast::Origin,
    route: &ast::Route,
    sources: &Sources,
    out: &mut Vec<Diagnostic>,
) {
    let describe = |rule: &ast::Rule| {
        sources.describe(SourceSpan {
            file,
            span: rule.keyword,
        })
    };
    let mut names = HashSet::new();
    let mut earlier: Vec<View<'_>> = Vec::new();
    for rule in &route.rules {
        // A second rule with one name is E0103 and lowering leaves it out of the table.
        if !names.insert(rule.name.name.as_str()) {
            continue;
        }
        let view = View::new(rule);
        let at = SourceSpan {
            file,
            span: rule.keyword,
        };
        redundant_matches(file, &view, out);
        if let Some(covering) = covering_rules(&earlier, &view) {
            let listed: Vec<String> = covering
                .iter()
                .map(|a| format!("`{}` ({})", a.name(), describe(a.rule)))
                .collect();
            let (who, narrow) = match covering.as_slice() {
                [a] => (format!("rule {}", listed[0]), format!("`{}`", a.name())),
                _ => (
                    format!("rules {}", listed.join(" and ")),
                    covering
                        .iter()
                        .map(|a| format!("`{}`", a.name()))
                        .collect::<Vec<_>>()
                        .join(" and "),
                ),
            };
            let name = view.name();
            let (code, tail, help) = match origin {
                ast::Origin::Mesh => (
                    Code::RuleNeverMatches,
                    "",
                    format!("move it above {narrow}, or narrow {narrow}"),
                ),
                ast::Origin::Istio => (
                    Code::ImportedRuleNeverMatches,
                    " (Istio accepts this, IST0130)",
                    format!("move it above {narrow} in `http[]`, or narrow {narrow}"),
                ),
            };
            let message = format!(
                "rule `{name}` can never match: every request it matches is taken by {who}{tail}"
            );
            out.push(Diagnostic::new(code, at, message).with_help(help));
        } else if !view.is_catch_all() {
            // Still reachable. Report a match of it that earlier rules take entirely (Istio's
            // IST0131). Requests that satisfy an earlier match and this one without either
            // containing the other (a header canary before a path rule) are the usual layering
            // and are not reported; neither is a catch-all or a broader rule after a narrower one.
            let taken = view.matches.iter().enumerate().find_map(|(i, mb)| {
                earlier
                    .iter()
                    .find(|a| a.matches.iter().any(|ma| ma.contains(mb)))
                    .map(|a| (i, a))
            });
            if let Some((i, a)) = taken {
                let message = format!(
                    "rule `{}` partly overlaps rule `{}` ({}): every request its match #{} \
                     matches is taken by `{}`",
                    view.name(),
                    a.name(),
                    describe(a.rule),
                    i + 1,
                    a.name(),
                );
                let help = format!(
                    "remove that match from `{}`, or move `{}` above `{}`",
                    view.name(),
                    view.name(),
                    a.name()
                );
                out.push(Diagnostic::new(Code::RuleOverlap, at, message).with_help(help));
            }
        }
        earlier.push(view);
    }
}

/// W0185: a match of a rule contained in an earlier match of the same rule (Istio's IST0131
/// inside one rule): it never decides whether the rule is selected.
fn redundant_matches(file: FileId, view: &View<'_>, out: &mut Vec<Diagnostic>) {
    for (j, (later, m)) in view.matches.iter().zip(&view.rule.matches).enumerate() {
        let Some(i) = view.matches[..j].iter().position(|a| a.contains(later)) else {
            continue;
        };
        let at = SourceSpan {
            file,
            span: match_span(m).unwrap_or(view.rule.keyword),
        };
        let message = format!(
            "match #{} of rule `{}` never decides anything: every request it matches satisfies \
             match #{} of the same rule",
            j + 1,
            view.name(),
            i + 1
        );
        out.push(
            Diagnostic::new(Code::MatchNeverDecides, at, message)
                .with_help("remove the redundant match, or narrow the earlier one"),
        );
    }
}

/// Where a match starts: its first condition.
fn match_span(m: &ast::Match) -> Option<crate::diag::Span> {
    m.conditions.first().map(|c| match c {
        ast::Condition::PathExact { span, .. }
        | ast::Condition::PathPrefix { span, .. }
        | ast::Condition::PathRegex { span, .. }
        | ast::Condition::Method { span, .. } => *span,
        ast::Condition::Header { name, .. } | ast::Condition::Query { name, .. } => name.span,
    })
}

/// The earlier rules that together take every request `rule` matches: one rule containing it
/// when there is one, else the first earlier rule containing each of its matches.
fn covering_rules<'v, 'a>(earlier: &'v [View<'a>], rule: &View<'a>) -> Option<Vec<&'v View<'a>>> {
    if let Some(a) = earlier.iter().find(|a| a.contains(rule)) {
        return Some(vec![a]);
    }
    let mut covering: Vec<usize> = Vec::new();
    for b in &rule.matches {
        covering.push(
            earlier
                .iter()
                .position(|a| a.matches.iter().any(|ma| ma.contains(b)))?,
        );
    }
    covering.sort_unstable();
    covering.dedup();
    Some(covering.into_iter().map(|i| &earlier[i]).collect())
}

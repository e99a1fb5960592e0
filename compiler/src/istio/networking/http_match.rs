//! A VirtualService rule's `match` conditions.

use crate::ast;
use crate::istio::yaml::Node;
use crate::istio::Out;

const MATCH_FIELDS: &[&str] = &[
    "name",
    "uri",
    "scheme",
    "method",
    "authority",
    "headers",
    "port",
    "sourceLabels",
    "gateways",
    "queryParams",
    "ignoreUriCase",
    "withoutHeaders",
    "sourceNamespace",
    "statPrefix",
];

/// One `match[]` entry, or `None` when it uses a condition the model lacks (rule dropped).
pub(super) fn request_match(
    out: &mut Out<'_>,
    m: &Node,
    path: &str,
    drop_note: &str,
) -> Option<ast::Match> {
    out.map(m, path)?;
    out.check_fields(m, path, MATCH_FIELDS);
    let mut conditions = Vec::new();
    let mut supported = true;
    for (key, value) in m.entries().unwrap_or_default() {
        let field = crate::istio::plain(key);
        match field.as_str() {
            "name" => {}
            "statPrefix" => out.unsupported(&format!("{path}.statPrefix"), value, "ignored"),
            "uri" => match string_match(value) {
                Some(StringMatch::Exact(value_str)) => {
                    conditions.push(ast::Condition::PathExact {
                        value: value_str,
                        span: value.span,
                    });
                }
                Some(StringMatch::Prefix(value_str)) => {
                    conditions.push(ast::Condition::PathPrefix {
                        value: value_str,
                        span: value.span,
                    });
                }
                Some(StringMatch::Regex(value_str)) => {
                    conditions.push(ast::Condition::PathRegex {
                        value: value_str,
                        span: value.span,
                    });
                }
                _ => {
                    out.unsupported(&format!("{path}.uri"), value, drop_note);
                    supported = false;
                }
            },
            "method" => match string_match(value).and_then(StringMatch::value) {
                Some(condition) => conditions.push(ast::Condition::Method {
                    value: condition,
                    span: value.span,
                }),
                None => {
                    out.unsupported(&format!("{path}.method"), value, drop_note);
                    supported = false;
                }
            },
            "headers" | "queryParams" | "withoutHeaders" => {
                for (name, matcher) in out
                    .map(value, &format!("{path}.{field}"))
                    .unwrap_or_default()
                {
                    let name_str = ast::Str {
                        value: crate::istio::plain(name),
                        span: name.span,
                    };
                    if field != "queryParams" && name_str.value.starts_with(JWT_CLAIM_PREFIX) {
                        out.inexpressible(
                            name.span,
                            format!(
                                "`{path}.{field}.{}`: routing on a JWT claim needs the validated \
                                 token where the route is chosen, and meshd chooses it on the \
                                 caller's sidecar, which validates none (Istio serves claim \
                                 routes on ingress gateways only); {drop_note}",
                                name_str.value
                            ),
                            "route on a header the application sets, or authorize on the claim \
                             with an AuthorizationPolicy `when` condition on the server",
                        );
                        supported = false;
                        continue;
                    }
                    let found = string_match(matcher);
                    let condition = match (field.as_str(), found) {
                        ("headers", Some(StringMatch::Present)) => {
                            Some(ast::ValueCondition::Present(matcher.span))
                        }
                        ("withoutHeaders", Some(StringMatch::Present)) => {
                            Some(ast::ValueCondition::Absent(matcher.span))
                        }
                        ("withoutHeaders", _) => None,
                        (_, found) => found.and_then(StringMatch::value),
                    };
                    let Some(condition) = condition else {
                        let item_path = format!("{path}.{field}.{}", name_str.value);
                        out.unsupported(&item_path, matcher, drop_note);
                        supported = false;
                        continue;
                    };
                    conditions.push(if field == "queryParams" {
                        ast::Condition::Query {
                            name: name_str,
                            value: condition,
                        }
                    } else {
                        ast::Condition::Header {
                            name: name_str,
                            value: condition,
                        }
                    });
                }
            }
            _ => {
                out.unsupported(&format!("{path}.{field}"), value, drop_note);
                supported = false;
            }
        }
    }
    supported.then_some(ast::Match { conditions })
}

/// The header-name prefix Istio uses for matches on a validated JWT's claims.
pub(super) const JWT_CLAIM_PREFIX: &str = "@request.auth.claims";

/// An Istio `StringMatch`: one of `exact`, `prefix`, `regex` with a string, or `{}`.
pub(super) enum StringMatch {
    Exact(ast::Str),
    Prefix(ast::Str),
    Regex(ast::Str),
    /// `{}`: the header is present (with any value).
    Present,
}

impl StringMatch {
    /// The value condition of an `exact`, `prefix` or `regex` match.
    fn value(self) -> Option<ast::ValueCondition> {
        match self {
            Self::Exact(s) => Some(ast::ValueCondition::Exact(s)),
            Self::Prefix(s) => Some(ast::ValueCondition::Prefix(s)),
            Self::Regex(s) => Some(ast::ValueCondition::Regex(s)),
            Self::Present => None,
        }
    }
}

/// An Istio `StringMatch` with at most one string-valued field.
pub(super) fn string_match(node: &Node) -> Option<StringMatch> {
    let entries = node.entries()?;
    let [(key, value)] = entries else {
        return entries.is_empty().then_some(StringMatch::Present);
    };
    let text = ast::Str {
        value: value.as_str()?.to_owned(),
        span: value.span,
    };
    match key.as_str()? {
        "exact" => Some(StringMatch::Exact(text)),
        "prefix" => Some(StringMatch::Prefix(text)),
        "regex" => Some(StringMatch::Regex(text)),
        _ => None,
    }
}

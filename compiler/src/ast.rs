//! The syntax tree of one `.mesh` file, exactly as written: values are raw (not range-checked,
//! names not resolved) and every node carries its byte span. `lower` validates it.

use crate::diag::{FileId, Span};

/// One parsed file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct File {
    pub(crate) id: FileId,
    pub(crate) items: Vec<Item>,
}

/// A top-level declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    Service(Service),
    Route(Route),
    Workload(Workload),
}

/// A name as written (`[A-Za-z_][A-Za-z0-9_.-]*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ident {
    pub(crate) name: String,
    pub(crate) span: Span,
}

/// A double-quoted string with escapes resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Str {
    pub(crate) value: String,
    pub(crate) span: Span,
}

/// A decimal number; saturates at `u64::MAX` so lowering can report it as out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Number {
    pub(crate) value: u64,
    pub(crate) span: Span,
}

/// A socket address token, not yet parsed (e.g. `127.0.0.1:9081`, `[::1]:80`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Address {
    pub(crate) text: String,
    pub(crate) span: Span,
}

/// `key = "value"` inside braces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Label {
    pub(crate) key: Ident,
    pub(crate) value: Str,
}

/// A protocol keyword; the parser only accepts known ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Protocol {
    pub(crate) value: spec::Protocol,
    pub(crate) span: Span,
}

/// `service NAME { ... }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Service {
    /// The `service` keyword.
    pub(crate) keyword: Span,
    pub(crate) name: Ident,
    /// Every `namespace` line (more than one is a duplicate definition).
    pub(crate) namespaces: Vec<Ident>,
    pub(crate) ports: Vec<Port>,
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) subsets: Vec<Subset>,
    /// The closing brace, where "missing port" diagnostics could point.
    pub(crate) close: Span,
    /// Where the declaration came from; imported ones get softer checks where noted.
    pub(crate) origin: Origin,
}

/// The input language a declaration was written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A `.mesh` file.
    #[default]
    Mesh,
    /// An Istio resource imported from YAML (`crate::istio`).
    Istio,
}

/// `port NUMBER PROTOCOL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Port {
    pub(crate) number: Number,
    pub(crate) protocol: Protocol,
}

/// `endpoint ADDRESS [{ labels }] [weight N]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) address: Address,
    pub(crate) labels: Vec<Label>,
    pub(crate) weight: Option<Number>,
}

/// `subset NAME { labels }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Subset {
    pub(crate) name: Ident,
    pub(crate) selector: Vec<Label>,
}

/// `route SERVICE { rule ... }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) keyword: Span,
    pub(crate) service: Ident,
    /// At least one (the parser requires it).
    pub(crate) rules: Vec<Rule>,
}

/// `rule NAME { match ... to ... }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    /// The `rule` keyword: the rule's source location in the snapshot.
    pub(crate) keyword: Span,
    pub(crate) name: Ident,
    /// Alternatives (OR), one per `match` line.
    pub(crate) matches: Vec<Match>,
    /// At least one (the parser requires it).
    pub(crate) destinations: Vec<Destination>,
}

/// One `match` line: conditions joined by `and`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Match {
    pub(crate) conditions: Vec<Condition>,
}

/// One condition of a `match` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Condition {
    /// `path exact "..."`; the span covers the whole condition.
    PathExact { value: Str, span: Span },
    /// `path prefix "..."`.
    PathPrefix { value: Str, span: Span },
    /// `header "name" = "value"`.
    Header { name: Str, value: Str },
}

/// `to SERVICE[/SUBSET] [weight N]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Destination {
    pub(crate) service: Ident,
    pub(crate) subset: Option<Ident>,
    pub(crate) weight: Option<Number>,
    /// From `to` to the end of the line's last token.
    pub(crate) span: Span,
}

/// `workload NAME { ... }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Workload {
    pub(crate) keyword: Span,
    pub(crate) name: Ident,
    /// Every `identity` line (more than one is a duplicate definition).
    pub(crate) identities: Vec<Str>,
    pub(crate) inbound: Vec<Inbound>,
    /// `None` when no `outbound` line is present; several lines accumulate.
    pub(crate) outbound: Option<Vec<Ident>>,
}

/// `inbound PORT PROTOCOL -> ADDRESS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Inbound {
    pub(crate) port: Number,
    pub(crate) protocol: Protocol,
    pub(crate) target: Address,
}

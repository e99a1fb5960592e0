//! `meshc check`: every diagnostic of a compilation without writing a snapshot, as plain text
//! or as one JSON document.

use std::path::Path;

use serde_json::{json, Value};

use crate::diag::{Code, Diagnostic, Severity, Sources};

/// Which warnings fail a run, as `istioctl analyze --failure-threshold` does:
/// `--deny warnings` makes every warning fail it, except those of the `--allow`ed codes.
/// Errors always fail; the default gate fails on errors only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gate {
    /// Whether warnings fail the run (`--deny warnings`).
    pub deny_warnings: bool,
    /// Warning codes that never fail the run (`--allow CODE`).
    pub allow: Vec<Code>,
}

impl Gate {
    /// Whether `diagnostic` is a warning this gate turns into a failure.
    pub fn denies(&self, diagnostic: &Diagnostic) -> bool {
        self.deny_warnings
            && diagnostic.severity == Severity::Warning
            && !self.allow.contains(&diagnostic.code)
    }

    /// How many of `diagnostics` this gate denies.
    pub fn denied(&self, diagnostics: &[Diagnostic]) -> usize {
        diagnostics.iter().filter(|d| self.denies(d)).count()
    }

    /// Whether the run fails: an error, or a denied warning.
    pub fn fails(&self, diagnostics: &[Diagnostic]) -> bool {
        diagnostics.iter().any(|d| d.is_error() || self.denies(d))
    }
}

/// Why a code cannot be given to `--allow`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllowError {
    /// No diagnostic has this code.
    #[error("unknown diagnostic code `{0}` (the codes are listed in docs/diagnostics.md)")]
    Unknown(String),
    /// The code is not a warning: letting it through would not change the outcome.
    #[error("`{0}` is not a warning code; only warnings can be allowed")]
    NotAWarning(Code),
}

/// The warning code `text` names, for `--allow`.
pub fn allowed_code(text: &str) -> Result<Code, AllowError> {
    let code = Code::parse(text).ok_or_else(|| AllowError::Unknown(text.to_owned()))?;
    if code.severity() != Severity::Warning {
        return Err(AllowError::NotAWarning(code));
    }
    Ok(code)
}

/// The diagnostics of one compilation, whether or not it succeeded.
#[derive(Debug)]
pub struct Report {
    /// Every error and warning, in file and position order.
    pub diagnostics: Vec<Diagnostic>,
    /// The inputs that could be read, for rendering.
    pub sources: Sources,
}

impl Report {
    /// Compiles `inputs` (files or directories, as [`crate::compile`]) and keeps the diagnostics.
    pub fn check<P: AsRef<Path>>(inputs: &[P]) -> Self {
        match crate::compile(inputs) {
            Ok(compiled) => Self {
                diagnostics: compiled.warnings,
                sources: compiled.sources,
            },
            Err(failed) => Self {
                diagnostics: failed.diagnostics,
                sources: failed.sources,
            },
        }
    }

    /// How many diagnostics are errors.
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// How many diagnostics are warnings.
    pub fn warnings(&self) -> usize {
        count(&self.diagnostics, Severity::Warning)
    }

    /// Every diagnostic rendered as plain text, as `meshc compile` prints them.
    pub fn render(&self) -> String {
        self.diagnostics
            .iter()
            .map(|d| d.render(&self.sources))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The JSON document `--format json` prints (see [`to_json`]).
    pub fn to_json(&self, gate: &Gate) -> Value {
        to_json(&self.diagnostics, &self.sources, gate)
    }
}

/// `{"diagnostics":[{severity, code, message, file, line, column, end_line, end_column, help}],
/// "errors", "warnings", "notes", "denied"}`; the end is exclusive (just past the span). Positions are
/// null for diagnostics without one, `help` when absent; `denied` counts the warnings `gate`
/// turns into failures.
pub fn to_json(diagnostics: &[Diagnostic], sources: &Sources, gate: &Gate) -> Value {
    let items: Vec<Value> = diagnostics
        .iter()
        .map(|d| {
            let (file, line, column) = match d.location(sources) {
                Some((file, line, column)) => (json!(file), json!(line), json!(column)),
                None => (Value::Null, Value::Null, Value::Null),
            };
            let (end_line, end_column) = match d.end(sources) {
                Some((line, column)) => (json!(line), json!(column)),
                None => (Value::Null, Value::Null),
            };
            json!({
                "severity": d.severity.as_str(),
                "code": d.code.as_str(),
                "message": d.message,
                "file": file,
                "line": line,
                "column": column,
                "end_line": end_line,
                "end_column": end_column,
                "help": d.help,
            })
        })
        .collect();
    json!({
        "diagnostics": items,
        "errors": count(diagnostics, Severity::Error),
        "warnings": count(diagnostics, Severity::Warning),
        "notes": count(diagnostics, Severity::Note),
        "denied": gate.denied(diagnostics),
    })
}

/// How many of `diagnostics` have `severity`.
pub fn count(diagnostics: &[Diagnostic], severity: Severity) -> usize {
    diagnostics
        .iter()
        .filter(|d| d.severity == severity)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{Code, SourceSpan, Span};

    #[test]
    fn positioned_and_spanless_diagnostics_become_json() {
        let mut sources = Sources::new();
        let file = sources.add("a.mesh", "service s {\n  to x/v3\n}\n");
        let at = SourceSpan {
            file,
            span: Span::new(19, 21),
        };
        let diagnostics = vec![
            Diagnostic::without_span(Code::CannotRead, "cannot read `b.mesh`"),
            Diagnostic::new(Code::UnknownSubset, at, "unknown subset `v3`")
                .with_help("declared: v1"),
            Diagnostic::new(Code::EmptySubset, at, "selects no endpoint"),
        ];
        let json = to_json(&diagnostics, &sources, &Gate::default());
        assert_eq!(json["errors"], 2);
        assert_eq!(json["warnings"], 1);
        let first = &json["diagnostics"][0];
        assert_eq!(first["code"], "E0100");
        for key in ["file", "line", "column", "end_line", "end_column"] {
            assert!(first[key].is_null(), "{key}");
        }
        assert!(first["help"].is_null());
        let second = &json["diagnostics"][1];
        assert_eq!(second["severity"], "error");
        assert_eq!(second["file"], "a.mesh");
        assert_eq!(
            (second["line"].as_u64(), second["column"].as_u64()),
            (Some(2), Some(8))
        );
        assert_eq!(
            (second["end_line"].as_u64(), second["end_column"].as_u64()),
            (Some(2), Some(10))
        );
        assert_eq!(second["help"], "declared: v1");
        assert_eq!(json["diagnostics"][2]["severity"], "warning");
    }

    #[test]
    fn json_end_is_exclusive_and_may_lie_on_a_later_line() {
        let mut sources = Sources::new();
        let file = sources.add("a.mesh", "«é» {\n  x\n}\n");
        let whole = SourceSpan {
            file,
            span: Span::new(0, "«é» {\n  x\n}".len()),
        };
        let empty = SourceSpan {
            file,
            span: Span::new(2, 2),
        };
        let diagnostics = vec![
            Diagnostic::new(Code::Syntax, whole, "whole block"),
            Diagnostic::new(Code::Syntax, empty, "empty"),
        ];
        let json = to_json(&diagnostics, &sources, &Gate::default());
        let position = |d: &Value, line: &str, column: &str| (d[line].as_u64(), d[column].as_u64());
        let whole = &json["diagnostics"][0];
        assert_eq!(position(whole, "line", "column"), (Some(1), Some(1)));
        assert_eq!(
            position(whole, "end_line", "end_column"),
            (Some(3), Some(2))
        );
        // Columns count characters: `é` starts at byte 2 but is the second character.
        let empty = &json["diagnostics"][1];
        assert_eq!(position(empty, "line", "column"), (Some(1), Some(2)));
        assert_eq!(
            position(empty, "end_line", "end_column"),
            (Some(1), Some(2))
        );
    }

    fn spanless(code: Code) -> Diagnostic {
        Diagnostic::without_span(code, "x")
    }

    #[test]
    fn default_gate_fails_on_errors_only() {
        let gate = Gate::default();
        assert!(!gate.fails(&[spanless(Code::EmptySubset)]));
        assert!(gate.fails(&[spanless(Code::EmptySubset), spanless(Code::UnknownSubset)]));
        assert_eq!(gate.denied(&[spanless(Code::EmptySubset)]), 0);
    }

    #[test]
    fn deny_warnings_fails_on_any_warning_but_the_allowed_codes() {
        let gate = Gate {
            deny_warnings: true,
            allow: vec![Code::EmptySubset],
        };
        let allowed = [spanless(Code::EmptySubset), spanless(Code::EmptySubset)];
        assert!(!gate.fails(&allowed));
        let mixed = [spanless(Code::EmptySubset), spanless(Code::RuleOverlap)];
        assert!(gate.fails(&mixed));
        assert_eq!(gate.denied(&mixed), 1);
        let json = to_json(&mixed, &Sources::new(), &gate);
        assert_eq!(
            (json["warnings"].as_u64(), json["denied"].as_u64()),
            (Some(2), Some(1))
        );
    }

    #[test]
    fn only_existing_warning_codes_can_be_allowed() {
        assert_eq!(allowed_code("W0107"), Ok(Code::EmptySubset));
        assert_eq!(allowed_code("w0111"), Ok(Code::RuleOverlap));
        assert_eq!(
            allowed_code("W9999"),
            Err(AllowError::Unknown("W9999".to_owned()))
        );
        assert_eq!(
            allowed_code("E0102"),
            Err(AllowError::NotAWarning(Code::UnknownSubset))
        );
    }
}

//! `meshc check`: every diagnostic of a compilation without writing a snapshot, as plain text
//! or as one JSON document.

use std::path::Path;

use serde_json::{json, Value};

use crate::diag::{Diagnostic, Severity, Sources};

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
        self.diagnostics.len() - self.errors()
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
    pub fn to_json(&self) -> Value {
        to_json(&self.diagnostics, &self.sources)
    }
}

/// `{"diagnostics":[{severity, code, message, file, line, column, end_line, end_column, help}],
/// "errors", "warnings"}`; the end is exclusive (just past the span). Positions are null for
/// diagnostics without one, `help` when absent.
pub fn to_json(diagnostics: &[Diagnostic], sources: &Sources) -> Value {
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
                "severity": match d.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                },
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
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    json!({
        "diagnostics": items,
        "errors": errors,
        "warnings": diagnostics.len() - errors,
    })
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
        let json = to_json(&diagnostics, &sources);
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
        let json = to_json(&diagnostics, &sources);
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
}

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

/// `{"diagnostics":[{severity, code, message, file, line, column, help}], "errors", "warnings"}`;
/// `file`, `line` and `column` are null for diagnostics without a position, `help` when absent.
pub fn to_json(diagnostics: &[Diagnostic], sources: &Sources) -> Value {
    let items: Vec<Value> = diagnostics
        .iter()
        .map(|d| {
            let (file, line, column) = match d.location(sources) {
                Some((file, line, column)) => (json!(file), json!(line), json!(column)),
                None => (Value::Null, Value::Null, Value::Null),
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
        assert!(first["file"].is_null() && first["line"].is_null() && first["column"].is_null());
        assert!(first["help"].is_null());
        let second = &json["diagnostics"][1];
        assert_eq!(second["severity"], "error");
        assert_eq!(second["file"], "a.mesh");
        assert_eq!(
            (second["line"].as_u64(), second["column"].as_u64()),
            (Some(2), Some(8))
        );
        assert_eq!(second["help"], "declared: v1");
        assert_eq!(json["diagnostics"][2]["severity"], "warning");
    }
}

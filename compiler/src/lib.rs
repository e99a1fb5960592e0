//! `meshc`'s library: compiles `.mesh` files into one validated [`spec::Snapshot`], or into
//! diagnostics that point at the offending config lines.
#![forbid(unsafe_code)]

mod analysis;
mod ast;
pub mod check;
pub mod diag;
pub mod diff;
pub mod explain;
pub mod input;
pub mod istio;
mod lower;
mod parse;
pub mod prune;
mod toml_input;

use std::path::Path;

pub use diag::{Code, Diagnostic, FileId, Severity, SourceFile, SourceSpan, Sources, Span};
use input::Language;
use spec::Snapshot;

/// A successful compilation.
#[derive(Debug)]
pub struct Compiled {
    /// The validated snapshot.
    pub snapshot: Snapshot,
    /// Warnings and notes found on the way (they do not fail the compilation).
    pub warnings: Vec<Diagnostic>,
    /// The inputs, for rendering the warnings.
    pub sources: Sources,
}

/// A failed compilation: at least one diagnostic is an error.
#[derive(Debug, thiserror::Error)]
#[error("compilation failed with {} error(s)", self.error_count())]
pub struct Failed {
    /// Every error and warning, in file and position order.
    pub diagnostics: Vec<Diagnostic>,
    /// The inputs that could be read, for rendering the diagnostics.
    pub sources: Sources,
}

impl Failed {
    /// How many diagnostics are errors.
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Every diagnostic rendered as plain text, one after another.
    pub fn render(&self) -> String {
        render_all(&self.diagnostics, &self.sources)
    }
}

impl Compiled {
    /// The warnings rendered as plain text.
    pub fn render_warnings(&self) -> String {
        render_all(&self.warnings, &self.sources)
    }
}

fn render_all(diagnostics: &[Diagnostic], sources: &Sources) -> String {
    diagnostics
        .iter()
        .map(|d| d.render(sources))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Compiles files, directories and standard input (`-`). A directory is scanned recursively
/// for config: every `.mesh` file, `.toml` files that are mesh TOML (the DSL's model as tables),
/// and `.yaml`, `.yml` and `.json` files that are Kubernetes manifests (imported as Istio
/// resources, see `docs/istio.md`); hidden directories and `target` are not entered, and each
/// file skipped gets an N0100 note. A file named explicitly is always read, in the language of
/// its extension; standard input's language is decided by its content (`docs/cli.md`).
///
/// The expanded file list is sorted before parsing (standard input comes last), so the argument
/// order and directory listing order never change the snapshot. Paths in diagnostics and rule
/// source locations are the paths as given (a directory's files are the directory path joined
/// with their relative path; standard input is `<stdin>`).
pub fn compile<P: AsRef<Path>>(inputs: &[P]) -> Result<Compiled, Failed> {
    compile_with_stdin(inputs, &mut std::io::stdin().lock())
}

/// [`compile`], reading `stdin` for the input `-`.
pub fn compile_with_stdin<P: AsRef<Path>>(
    inputs: &[P],
    stdin: &mut dyn std::io::Read,
) -> Result<Compiled, Failed> {
    let read = input::read(inputs, stdin);
    compile_inner(read.sources, &read.languages, read.diagnostics)
}

/// Compiles in-memory sources, in the order they were added, each in the language of its
/// path's extension.
pub fn compile_sources(sources: Sources) -> Result<Compiled, Failed> {
    let languages: Vec<_> = sources
        .iter()
        .map(|(_, file)| Some(Language::from_path(file.path())))
        .collect();
    compile_inner(sources, &languages, Vec::new())
}

/// Compiles `sources`, each in its language (`None`: skipped, not compiled), after the
/// diagnostics of reading them.
fn compile_inner(
    sources: Sources,
    languages: &[Option<Language>],
    mut diagnostics: Vec<Diagnostic>,
) -> Result<Compiled, Failed> {
    let (mut files, yaml) = parse_sources(&sources, languages, &mut diagnostics);
    // Istio YAML becomes the same AST, after the `.mesh` files so it can refer to their services.
    let imported = istio::import(&yaml, &files, &mut diagnostics);
    let istio_files: Vec<FileId> = yaml.iter().map(|f| f.id).collect();
    files.extend(imported);
    // Lowering half the input would only add noise (unknown services declared in a file that
    // did not parse), so unreadable or unparsable input stops here.
    let mut snapshot = None;
    if !diagnostics.iter().any(Diagnostic::is_error) {
        let (lowered, found) = lower::lower(&files, &sources);
        diagnostics.extend(found);
        diagnostics.extend(analysis::analyze(&files, &sources, &istio_files));
        // The snapshot analyses read what lowering resolved, so they need it to have succeeded.
        if let Some(lowered) = &lowered {
            let anchors = analysis::snapshot::Anchors::from_files(&files);
            diagnostics.extend(analysis::snapshot::analyze(lowered, &anchors, &sources));
        }
        snapshot = lowered;
    }
    diagnostics.sort_by_key(|d| d.span.map(|s| (s.file, s.span.start)));
    match snapshot {
        Some(mut snapshot) if !diagnostics.iter().any(Diagnostic::is_error) => {
            snapshot.unserved = unserved(&diagnostics, &sources);
            Ok(Compiled {
                snapshot,
                warnings: diagnostics,
                sources,
            })
        }
        _ => Err(Failed {
            diagnostics,
            sources,
        }),
    }
}

/// The warnings that say config is accepted without being served, with where it was written.
fn unserved(diagnostics: &[Diagnostic], sources: &Sources) -> Vec<spec::Unserved> {
    diagnostics
        .iter()
        .filter(|d| d.code.means_unserved())
        .filter_map(|d| {
            let (file, line, column) = d.location(sources)?;
            Some(spec::Unserved {
                code: d.code.as_str().to_owned(),
                message: d.message.clone(),
                source: spec::SourceLocation {
                    file,
                    line: u32::try_from(line).unwrap_or(u32::MAX),
                    column: u32::try_from(column).unwrap_or(u32::MAX),
                },
            })
        })
        .collect()
}

/// Parses the DSL and TOML sources into syntax trees, and sets the manifests aside for the
/// Istio import.
fn parse_sources<'s>(
    sources: &'s Sources,
    languages: &[Option<Language>],
    diagnostics: &mut Vec<Diagnostic>,
) -> (Vec<ast::File>, Vec<istio::YamlFile<'s>>) {
    let mut files = Vec::new();
    let mut yaml = Vec::new();
    for ((id, file), language) in sources.iter().zip(languages) {
        let parsed = match language {
            None => continue,
            Some(Language::Manifest) => {
                yaml.push(istio::YamlFile {
                    id,
                    path: file.path(),
                    text: file.text(),
                });
                continue;
            }
            Some(Language::Toml) => toml_input::parse_file(id, file.text()),
            Some(Language::Mesh) => parse::parse_file(id, file.text()),
        };
        match parsed {
            Ok(ast) => files.push(ast),
            Err(d) => diagnostics.push(d),
        }
    }
    (files, yaml)
}

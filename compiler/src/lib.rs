//! `meshc`'s library: compiles `.mesh` files into one validated [`spec::Snapshot`], or into
//! diagnostics that point at the offending config lines.
#![forbid(unsafe_code)]

mod analysis;
mod ast;
pub mod check;
pub mod diag;
pub mod diff;
pub mod explain;
pub mod istio;
mod lower;
mod parse;
pub mod prune;
mod toml_input;

use std::path::{Path, PathBuf};

pub use diag::{Code, Diagnostic, FileId, Severity, SourceFile, SourceSpan, Sources, Span};
use spec::Snapshot;

/// A successful compilation.
#[derive(Debug)]
pub struct Compiled {
    /// The validated snapshot.
    pub snapshot: Snapshot,
    /// Warnings found on the way (they do not fail the compilation).
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

/// Compiles files and directories (every `*.mesh`, `*.toml`, `*.yaml` and `*.yml` file below a
/// directory, recursively; TOML is the DSL's model as tables, YAML is imported as Istio
/// resources, see `docs/istio.md`).
///
/// The expanded file list is sorted before parsing, so the argument order and directory listing
/// order never change the snapshot. Paths in diagnostics and rule source locations are the paths
/// as given (a directory's files are the directory path joined with their relative path).
pub fn compile<P: AsRef<Path>>(inputs: &[P]) -> Result<Compiled, Failed> {
    let (paths, mut diagnostics) = expand_inputs(inputs);
    let mut sources = Sources::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                sources.add(path.display().to_string(), text);
            }
            Err(e) => diagnostics.push(cannot_read(&path, &e)),
        }
    }
    compile_inner(sources, diagnostics)
}

/// Compiles in-memory sources, in the order they were added.
pub fn compile_sources(sources: Sources) -> Result<Compiled, Failed> {
    compile_inner(sources, Vec::new())
}

fn compile_inner(sources: Sources, mut diagnostics: Vec<Diagnostic>) -> Result<Compiled, Failed> {
    let mut files = Vec::new();
    let mut yaml = Vec::new();
    for (id, file) in sources.iter() {
        if istio::is_manifest_path(file.path()) {
            yaml.push(istio::YamlFile {
                id,
                path: file.path(),
                text: file.text(),
            });
            continue;
        }
        let parsed = if is_toml_path(file.path()) {
            toml_input::parse_file(id, file.text())
        } else {
            parse::parse_file(id, file.text())
        };
        match parsed {
            Ok(ast) => files.push(ast),
            Err(d) => diagnostics.push(d),
        }
    }
    // Istio YAML becomes the same AST, after the `.mesh` files so it can refer to their services.
    let imported = istio::import(&yaml, &files, &mut diagnostics);
    files.extend(imported);
    // Lowering half the input would only add noise (unknown services declared in a file that
    // did not parse), so unreadable or unparsable input stops here.
    let mut snapshot = None;
    if !diagnostics.iter().any(Diagnostic::is_error) {
        let (lowered, found) = lower::lower(&files, &sources);
        diagnostics.extend(found);
        diagnostics.extend(analysis::analyze(&files, &sources));
        // The snapshot analyses read what lowering resolved, so they need it to have succeeded.
        if let Some(lowered) = &lowered {
            let anchors = analysis::snapshot::Anchors::from_files(&files);
            diagnostics.extend(analysis::snapshot::analyze(lowered, &anchors, &sources));
        }
        snapshot = lowered;
    }
    diagnostics.sort_by_key(|d| d.span.map(|s| (s.file, s.span.start)));
    match snapshot {
        Some(snapshot) if !diagnostics.iter().any(Diagnostic::is_error) => Ok(Compiled {
            snapshot,
            warnings: diagnostics,
            sources,
        }),
        _ => Err(Failed {
            diagnostics,
            sources,
        }),
    }
}

fn cannot_read(path: &Path, error: &std::io::Error) -> Diagnostic {
    Diagnostic::without_span(
        Code::CannotRead,
        format!("cannot read `{}`: {error}", path.display()),
    )
}

/// Expands the command-line inputs into a sorted, de-duplicated list of files, plus an E0100
/// diagnostic for every input that cannot be read or is a directory without `.mesh` (or Istio
/// `.yaml`/`.yml`) files.
pub fn expand_inputs<P: AsRef<Path>>(inputs: &[P]) -> (Vec<PathBuf>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut diagnostics = Vec::new();
    for input in inputs {
        let input = input.as_ref();
        match std::fs::metadata(input) {
            Err(e) => diagnostics.push(cannot_read(input, &e)),
            Ok(meta) if meta.is_dir() => {
                let before = files.len();
                walk(input, &mut files, &mut diagnostics);
                if files.len() == before {
                    diagnostics.push(Diagnostic::without_span(
                        Code::CannotRead,
                        format!(
                            "cannot read `{}`: no .mesh, .toml or .yaml files in this directory",
                            input.display()
                        ),
                    ));
                }
            }
            Ok(_) => files.push(input.to_path_buf()),
        }
    }
    files.sort();
    files.dedup();
    (files, diagnostics)
}

/// Collects `*.mesh`, `*.toml`, `*.yaml` and `*.yml` files below `dir`. Symlinked directories are not
/// followed (no cycles).
fn walk(dir: &Path, files: &mut Vec<PathBuf>, diagnostics: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return diagnostics.push(cannot_read(dir, &e)),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                diagnostics.push(cannot_read(dir, &e));
                continue;
            }
        };
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir {
            walk(&path, files, diagnostics);
        } else if path
            .extension()
            .is_some_and(|e| e == "mesh" || e == "toml" || istio::is_manifest_extension(e))
            && path.is_file()
        {
            files.push(path);
        }
    }
}

/// Whether a path names a TOML mesh file.
fn is_toml_path(path: &str) -> bool {
    Path::new(path).extension().is_some_and(|e| e == "toml")
}

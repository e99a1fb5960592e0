//! What `meshc` reads: the command-line inputs expanded into files (a directory scan keeps only
//! what looks like config and notes what it skipped), standard input (`-`), and the language
//! each file is read in. `docs/cli.md` states the rules.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::diag::{Code, Diagnostic, FileId, SourceSpan, Sources, Span};
use crate::{istio, toml_input};

/// The input argument that stands for standard input.
pub const STDIN_ARG: &str = "-";

/// The name standard input has in diagnostics and rule source locations.
pub const STDIN_NAME: &str = "<stdin>";

/// The language a source file is read in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Language {
    /// The `.mesh` DSL.
    Mesh,
    /// The mesh model as TOML.
    Toml,
    /// Kubernetes manifests (Istio resources), YAML or JSON.
    Manifest,
}

impl Language {
    /// By extension: `.toml` is TOML, `.yaml`, `.yml` and `.json` are manifests, anything else
    /// is the DSL.
    pub(crate) fn from_path(path: &str) -> Self {
        if istio::is_manifest_path(path) {
            Self::Manifest
        } else if Path::new(path).extension().is_some_and(|e| e == "toml") {
            Self::Toml
        } else {
            Self::Mesh
        }
    }

    /// For text without a file name (standard input): manifests when a document has
    /// `apiVersion` and `kind`, else TOML when it has a mesh table, else the DSL.
    pub(crate) fn of_content(text: &str) -> Self {
        if istio::looks_like_manifest(text) {
            Self::Manifest
        } else if toml_input::is_mesh_toml(text) {
            Self::Toml
        } else {
            Self::Mesh
        }
    }
}

/// The inputs of one compilation, read.
#[derive(Debug, Default)]
pub(crate) struct Inputs {
    /// Every file read, in path order, then standard input.
    pub(crate) sources: Sources,
    /// The language of each source (indexed by its [`FileId`]); `None` for a file the directory
    /// scan skipped (it is in `sources` only so that its N0100 note has a position).
    pub(crate) languages: Vec<Option<Language>>,
    /// E0100 for what could not be read, N0100 for what was skipped.
    pub(crate) diagnostics: Vec<Diagnostic>,
}

/// A file found while expanding the inputs.
#[derive(Debug)]
struct Found {
    path: PathBuf,
    /// Named on the command line (always read), or found by a directory scan (read only when
    /// it looks like config).
    named: bool,
}

/// Reads `inputs`: files, directories (scanned), and `-` for `stdin` (read once however often
/// it is given).
pub(crate) fn read<P: AsRef<Path>>(inputs: &[P], stdin: &mut dyn Read) -> Inputs {
    let mut out = Inputs::default();
    let mut found = Vec::new();
    let mut scanned_dirs = Vec::new();
    let mut wants_stdin = false;
    for input in inputs {
        let input = input.as_ref();
        if input == Path::new(STDIN_ARG) {
            wants_stdin = true;
            continue;
        }
        match std::fs::metadata(input) {
            Err(e) => out.diagnostics.push(cannot_read(input, &e)),
            Ok(meta) if meta.is_dir() => {
                let before = found.len();
                walk(input, &mut found, &mut out.diagnostics);
                let paths: Vec<PathBuf> = found[before..].iter().map(|f| f.path.clone()).collect();
                scanned_dirs.push((input.to_path_buf(), paths));
            }
            Ok(_) => found.push(Found {
                path: input.to_path_buf(),
                named: true,
            }),
        }
    }
    // A file both named and found by a scan is read as named.
    found.sort_by(|a, b| a.path.cmp(&b.path).then(b.named.cmp(&a.named)));
    found.dedup_by(|later, earlier| later.path == earlier.path);
    let kept = out.add_files(found);
    for (dir, paths) in scanned_dirs {
        if !paths.iter().any(|p| kept.contains(p)) {
            out.diagnostics.push(no_config_in(&dir, !paths.is_empty()));
        }
    }
    if wants_stdin {
        out.add_stdin(stdin);
    }
    out
}

impl Inputs {
    /// Reads each file and decides its language; returns the paths of the files kept.
    fn add_files(&mut self, found: Vec<Found>) -> HashSet<PathBuf> {
        let mut kept = HashSet::new();
        for Found { path, named } in found {
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) => {
                    self.diagnostics.push(cannot_read(&path, &e));
                    continue;
                }
            };
            let name = path.display().to_string();
            let language = if named {
                Ok(Language::from_path(&name))
            } else {
                scanned_language(&path, &text)
            };
            let id = self.sources.add(name, text);
            match language {
                Ok(language) => {
                    self.languages.push(Some(language));
                    kept.insert(path);
                }
                Err(skip) => {
                    self.languages.push(None);
                    self.diagnostics.push(skip.note(id, &path));
                }
            }
        }
        kept
    }

    /// Reads standard input as `<stdin>`, its language decided by its content.
    fn add_stdin(&mut self, stdin: &mut dyn Read) {
        let mut text = String::new();
        if let Err(e) = stdin.read_to_string(&mut text) {
            self.diagnostics.push(Diagnostic::without_span(
                Code::CannotRead,
                format!("cannot read standard input: {e}"),
            ));
            return;
        }
        self.languages.push(Some(Language::of_content(&text)));
        self.sources.add(STDIN_NAME, text);
    }
}

/// Why the directory scan skips a file it found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Skip {
    /// A `.toml` file without any of the mesh's tables (`Cargo.toml`, `rustfmt.toml`, ...).
    NotMeshToml,
    /// A `.yaml`, `.yml` or `.json` file without a Kubernetes document (CI workflows,
    /// docker-compose files, ...).
    NotManifest,
}

impl Skip {
    /// The N0100 note, at the start of the skipped file.
    fn note(self, file: FileId, path: &Path) -> Diagnostic {
        let reason = match self {
            Self::NotMeshToml => format!(
                "a TOML file with none of the mesh's tables ({})",
                toml_input::TABLES.join(", ")
            ),
            Self::NotManifest => {
                "no document has both `apiVersion` and `kind` (not a Kubernetes manifest)"
                    .to_owned()
            }
        };
        let at = SourceSpan {
            file,
            span: Span::new(0, 0),
        };
        Diagnostic::new(Code::SkippedInput, at, format!("skipped: {reason}")).with_help(format!(
            "name `{}` on the command line to read it anyway",
            path.display()
        ))
    }
}

/// The language of a file the directory scan found, or why it is skipped: `.mesh` files are
/// always read, `.toml` files when they are mesh TOML, `.yaml`/`.yml`/`.json` files when they
/// are Kubernetes manifests.
fn scanned_language(path: &Path, text: &str) -> Result<Language, Skip> {
    match Language::from_path(&path.display().to_string()) {
        Language::Mesh => Ok(Language::Mesh),
        Language::Toml if toml_input::is_mesh_toml(text) => Ok(Language::Toml),
        Language::Toml => Err(Skip::NotMeshToml),
        Language::Manifest if istio::looks_like_manifest(text) => Ok(Language::Manifest),
        Language::Manifest => Err(Skip::NotManifest),
    }
}

/// Whether the directory scan looks at a file: `.mesh`, `.toml`, `.yaml`, `.yml`, `.json`.
fn is_candidate(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e == "mesh" || e == "toml" || istio::is_manifest_extension(e))
}

/// Whether the directory scan enters a directory below the one it was given: not hidden ones
/// (`.git`, `.github`) nor build output (`target`).
fn is_scanned_dir(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    !name.starts_with(b".") && name != b"target"
}

/// Collects the candidate files below `dir`. Symlinked directories are not followed (no
/// cycles).
fn walk(dir: &Path, found: &mut Vec<Found>, diagnostics: &mut Vec<Diagnostic>) {
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
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            if is_scanned_dir(&entry.file_name()) {
                walk(&path, found, diagnostics);
            }
        } else if is_candidate(&path) && path.is_file() {
            found.push(Found { path, named: false });
        }
    }
}

fn cannot_read(path: &Path, error: &std::io::Error) -> Diagnostic {
    Diagnostic::without_span(
        Code::CannotRead,
        format!("cannot read `{}`: {error}", path.display()),
    )
}

/// E0100 for a directory argument in which the scan kept no file.
fn no_config_in(dir: &Path, skipped_some: bool) -> Diagnostic {
    let diagnostic = Diagnostic::without_span(
        Code::CannotRead,
        format!(
            "cannot read `{}`: no config files in this directory (.mesh files, mesh .toml \
             files, Kubernetes .yaml/.yml/.json manifests)",
            dir.display()
        ),
    );
    if skipped_some {
        diagnostic.with_help("the N0100 notes say why each file found was skipped")
    } else {
        diagnostic
    }
}

#[cfg(test)]
mod tests;

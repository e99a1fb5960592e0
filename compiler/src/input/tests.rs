use std::path::{Path, PathBuf};

use super::*;
use crate::diag::Severity;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("meshc-input-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.0.join(relative);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create parent");
        std::fs::write(&path, text).expect("write file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SERVICE: &str = "service a { port 80 http endpoint 127.0.0.1:8080 }\n";
const MESH_TOML: &str = "[[service]]\nname = \"b\"\n";
const MANIFEST: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n";
const WORKFLOW: &str = "name: CI\non: [push]\njobs:\n  test:\n    runs-on: ubuntu-latest\n";
const COMPOSE: &str = "services:\n  web:\n    image: nginx\n";

fn no_stdin() -> &'static [u8] {
    b""
}

/// `(file name relative to `dir`, language)` of every source read.
fn read_files(dir: &Path, inputs: &[&Path]) -> (Vec<(String, Option<Language>)>, Inputs) {
    let read = read(inputs, &mut no_stdin());
    let files = read
        .sources
        .iter()
        .zip(&read.languages)
        .map(|((_, file), language)| {
            let path = Path::new(file.path());
            let relative = path.strip_prefix(dir).unwrap_or(path);
            (relative.display().to_string(), *language)
        })
        .collect();
    (files, read)
}

fn codes(diagnostics: &[Diagnostic]) -> Vec<Code> {
    diagnostics.iter().map(|d| d.code).collect()
}

#[test]
fn the_directory_scan_reads_config_and_notes_every_other_candidate() {
    let dir = TempDir::new("scan");
    dir.write("a.mesh", SERVICE);
    dir.write("b.toml", MESH_TOML);
    dir.write("Cargo.toml", "[package]\nname = \"x\"\n[dependencies]\n");
    dir.write("rustfmt.toml", "max_width = 100\n");
    dir.write("deny.toml", "[licenses]\nallow = [\"MIT\"]\n");
    dir.write("clippy.toml", "disallowed-types = []\n");
    dir.write("c.yaml", MANIFEST);
    dir.write("ci.yml", WORKFLOW);
    dir.write("docker-compose.yml", COMPOSE);
    dir.write(
        "list.json",
        r#"{"apiVersion": "v1", "kind": "List", "items": []}"#,
    );
    dir.write("package.json", r#"{"name": "x", "version": "1.0.0"}"#);
    dir.write("README.md", "# not config\n");
    dir.write(".github/workflows/ci.yml", MANIFEST);
    dir.write(".git/x.mesh", SERVICE);
    dir.write("target/ci/x.mesh", SERVICE);
    dir.write("sub/d.mesh", SERVICE);

    let (files, read) = read_files(&dir.0, &[&dir.0]);
    let expected = [
        ("Cargo.toml", None),
        ("a.mesh", Some(Language::Mesh)),
        ("b.toml", Some(Language::Toml)),
        ("c.yaml", Some(Language::Manifest)),
        ("ci.yml", None),
        ("clippy.toml", None),
        ("deny.toml", None),
        ("docker-compose.yml", None),
        ("list.json", Some(Language::Manifest)),
        ("package.json", None),
        ("rustfmt.toml", None),
        ("sub/d.mesh", Some(Language::Mesh)),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(f, l)| ((*f).to_owned(), *l))
        .collect();
    assert_eq!(files, expected);
    assert_eq!(codes(&read.diagnostics), [Code::SkippedInput; 7]);
    let note = &read.diagnostics[0];
    assert_eq!(note.severity, Severity::Note);
    let (path, line, column) = note.location(&read.sources).expect("a position");
    assert_eq!((path.ends_with("Cargo.toml"), line, column), (true, 1, 1));
    assert!(
        note.message.contains("none of the mesh's tables"),
        "{}",
        note.message
    );
}

#[test]
fn a_file_named_on_the_command_line_is_always_read() {
    let dir = TempDir::new("named");
    let cargo = dir.write("Cargo.toml", "[package]\nname = \"x\"\n");
    let workflow = dir.write("ci.yml", WORKFLOW);
    let (files, read) = read_files(&dir.0, &[&cargo, &workflow]);
    let expected = [
        ("Cargo.toml".to_owned(), Some(Language::Toml)),
        ("ci.yml".to_owned(), Some(Language::Manifest)),
    ];
    assert_eq!(files, expected);
    assert!(read.diagnostics.is_empty());
    // Named and found by a scan: read as named.
    let (files, read) = read_files(&dir.0, &[&dir.0, &cargo]);
    assert_eq!(files[0], ("Cargo.toml".to_owned(), Some(Language::Toml)));
    assert_eq!(codes(&read.diagnostics), [Code::SkippedInput]);
}

#[test]
fn broken_config_is_read_so_that_its_error_is_reported() {
    let dir = TempDir::new("broken");
    dir.write("a.toml", "[[service]]\nname = \n");
    dir.write("b.yaml", "apiVersion: v1\nkind: [\n");
    dir.write("c.json", "{\"kind\": \"List\",\n");
    let (files, read) = read_files(&dir.0, &[&dir.0]);
    assert!(files.iter().all(|(_, l)| l.is_some()), "{files:?}");
    assert!(read.diagnostics.is_empty());
}

#[test]
fn a_directory_without_config_is_an_error_after_its_notes() {
    let dir = TempDir::new("empty");
    dir.write("Cargo.toml", "[package]\n");
    let (_, read) = read_files(&dir.0, &[&dir.0]);
    assert_eq!(
        codes(&read.diagnostics),
        [Code::SkippedInput, Code::CannotRead]
    );
    assert!(read.diagnostics[1].help.is_some());
    let only_hidden = TempDir::new("hidden");
    only_hidden.write(".config/a.mesh", SERVICE);
    let (_, read) = read_files(&only_hidden.0, &[&only_hidden.0]);
    assert_eq!(codes(&read.diagnostics), [Code::CannotRead]);
    assert!(read.diagnostics[0].help.is_none());
    // A hidden directory named on the command line is scanned.
    let named = only_hidden.0.join(".config");
    let (files, _) = read_files(&named, &[&named]);
    assert_eq!(files, [("a.mesh".to_owned(), Some(Language::Mesh))]);
}

#[test]
fn standard_input_is_read_once_after_the_files() {
    let dir = TempDir::new("stdin");
    let a = dir.write("a.mesh", SERVICE);
    let dash = PathBuf::from(STDIN_ARG);
    let mut stdin: &[u8] = MESH_TOML.as_bytes();
    let read = read(&[dash.clone(), a, dash], &mut stdin);
    let names: Vec<&str> = read.sources.iter().map(|(_, f)| f.path()).collect();
    assert_eq!(names.len(), 2);
    assert_eq!(names[1], STDIN_NAME);
    assert_eq!(read.languages[1], Some(Language::Toml));
    assert!(read.diagnostics.is_empty());
}

#[test]
fn unreadable_standard_input_is_e0100() {
    let mut stdin: &[u8] = b"service \xff";
    let read = read(&[STDIN_ARG], &mut stdin);
    assert_eq!(codes(&read.diagnostics), [Code::CannotRead]);
    assert!(read.diagnostics[0].message.contains("standard input"));
}

#[test]
fn standard_input_language_comes_from_its_content() {
    let cases = [
        (MANIFEST, Language::Manifest),
        (
            "---\n# a comment\napiVersion: v1\nkind: List\nitems: []\n",
            Language::Manifest,
        ),
        (
            r#"{"apiVersion":"v1","kind":"List","items":[]}"#,
            Language::Manifest,
        ),
        (
            "{\n    \"kind\": \"List\",\n    \"apiVersion\": \"v1\"\n}\n",
            Language::Manifest,
        ),
        // Broken YAML that is meant as a manifest.
        ("apiVersion: v1\nkind: [\n", Language::Manifest),
        (MESH_TOML, Language::Toml),
        ("# mesh\n[telemetry]\naccess_log = true\n", Language::Toml),
        (SERVICE, Language::Mesh),
        ("# only a comment\n", Language::Mesh),
        ("", Language::Mesh),
        // Neither a manifest nor mesh TOML: read as the DSL, whose syntax error says so.
        (COMPOSE, Language::Mesh),
    ];
    for (text, language) in cases {
        assert_eq!(Language::of_content(text), language, "{text:?}");
    }
}

#[test]
fn a_named_file_language_comes_from_its_extension() {
    let cases = [
        ("a.mesh", Language::Mesh),
        ("a.toml", Language::Toml),
        ("a.yaml", Language::Manifest),
        ("a.yml", Language::Manifest),
        ("a.json", Language::Manifest),
        ("a.conf", Language::Mesh),
        ("toml", Language::Mesh),
    ];
    for (path, language) in cases {
        assert_eq!(Language::from_path(path), language, "{path}");
    }
}

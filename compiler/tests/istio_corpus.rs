//! Compiles every file of the Istio corpus (`shared/corpus/istio/INDEX.tsv`) through the library
//! and checks it against the row's `expected` column.

use std::path::{Path, PathBuf};

use compiler::{compile, Diagnostic};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/istio")
}

struct Row {
    file: String,
    expected: String,
    notes: String,
}

fn rows(dir: &Path) -> Vec<Row> {
    let index = dir.join("INDEX.tsv");
    let text = std::fs::read_to_string(&index).unwrap_or_else(|e| {
        panic!(
            "the Istio corpus is required by this test: cannot read {}: {e}",
            index.display()
        )
    });
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert!(cols.len() >= 5, "malformed INDEX.tsv row: {line}");
            Row {
                file: cols[0].to_owned(),
                expected: cols[4].to_owned(),
                notes: cols.get(5).copied().unwrap_or("").to_owned(),
            }
        })
        .collect()
}

/// The companion files whose notes name this file (e.g. a meshConfig fragment).
fn companions<'a>(row: &Row, all: &'a [Row]) -> Vec<&'a str> {
    let name = Path::new(&row.file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    all.iter()
        .filter(|r| r.expected == "companion" && r.notes.contains(&format!(" {name}")))
        .map(|r| r.file.as_str())
        .collect()
}

fn errors(diagnostics: &[Diagnostic]) -> Vec<&Diagnostic> {
    diagnostics.iter().filter(|d| d.is_error()).collect()
}

#[test]
fn istio_corpus_matches_expectations() {
    let dir = corpus_dir();
    assert!(
        dir.is_dir(),
        "the Istio corpus directory {} is missing; this test never skips",
        dir.display()
    );
    let all = rows(&dir);
    assert!(!all.is_empty(), "INDEX.tsv has no rows");
    let mut failures = Vec::new();
    let (mut passed, mut pending, mut skipped) = (0, 0, 0);
    for row in &all {
        let path = dir.join(&row.file);
        let mut inputs = vec![path.clone()];
        inputs.extend(companions(row, &all).iter().map(|c| dir.join(c)));
        match row.expected.as_str() {
            "valid" | "doc-example" => match compile(&inputs) {
                Ok(_) => passed += 1,
                Err(failed) => failures.push(format!(
                    "{} ({}): expected no errors, got:\n{}",
                    row.file,
                    row.expected,
                    failed.render()
                )),
            },
            "invalid-schema" | "invalid-parse" => match compile(&inputs) {
                Ok(_) => failures.push(format!("{}: expected an error, compiled", row.file)),
                Err(failed) => {
                    let inside = errors(&failed.diagnostics).iter().any(|d| {
                        d.location(&failed.sources)
                            .is_some_and(|(file, _, _)| Path::new(&file) == path)
                    });
                    if inside {
                        passed += 1;
                    } else {
                        failures.push(format!(
                            "{}: no error located in the file:\n{}",
                            row.file,
                            failed.render()
                        ));
                    }
                }
            },
            "golden-output" | "companion" => skipped += 1,
            analyzer if analyzer.starts_with("analyzer:") => {
                // Not part of this step: only require that compiling does not panic.
                let _ = compile(&inputs);
                pending += 1;
            }
            other => failures.push(format!("{}: unknown expectation {other:?}", row.file)),
        }
    }
    println!(
        "istio corpus: {passed} passed, {} failed, {skipped} not compiled (golden/companion)",
        failures.len()
    );
    println!("{pending} analyzer rows pending (issue #3)");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

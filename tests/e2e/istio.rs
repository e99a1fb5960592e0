//! Istio YAML as users write it, compiled by the real meshc and served by real meshd sidecars:
//! the behaviour Istio's documentation describes, not only the compile verdict.

use std::path::{Path, PathBuf};
use std::process::Command;

use ringmesh_tests::*;

mod hosts;
mod kubernetes;
mod protocols;
mod vm;

/// Compiles the YAML `files` (name, text) into `NAME.snap`; fails the test on a meshc error.
fn compile_yaml(scratch: &Scratch, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let inputs: Vec<PathBuf> = files
        .iter()
        .map(|(file, text)| scratch.write(file, text))
        .collect();
    let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let out = scratch.path().join(format!("{name}.snap"));
    let output = harness::compile(&refs, &out).expect("run meshc");
    assert!(
        output.status.success(),
        "meshc failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// What `meshc explain --json` says of `GET http://HOST/PATH` on `snapshot` for the caller
/// `workload`, with `headers`.
fn explain(
    snapshot: &Path,
    workload: Option<&str>,
    url: &str,
    headers: &[&str],
) -> serde_json::Value {
    let mut command = Command::new(harness::binary("meshc").expect("meshc is built"));
    command.arg("explain").arg(snapshot);
    command.args(["--request", &format!("GET {url}"), "--json"]);
    if let Some(workload) = workload {
        command.args(["--workload", workload]);
    }
    for header in headers {
        command.args(["-H", header]);
    }
    let output = command.output().expect("run meshc explain");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "meshc explain {url}: {e}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

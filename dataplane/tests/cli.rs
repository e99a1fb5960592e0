//! meshd's command line: errors a user meets before any traffic flows.

use std::process::Command;

fn meshd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshd"))
}

#[test]
fn missing_snapshot_file_is_named_in_the_error() {
    let output = meshd()
        .args([
            "--snapshot",
            "/nonexistent/mesh.snap",
            "--outbound",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("meshd: cannot read snapshot /nonexistent/mesh.snap:"),
        "{stderr}"
    );
}

#[test]
fn foreign_file_is_refused_as_not_a_snapshot() {
    let path = std::env::temp_dir().join(format!("meshd-cli-{}.snap", std::process::id()));
    std::fs::write(&path, "service reviews { port 9080 http }\n".repeat(3)).unwrap();
    let output = meshd().arg("--snapshot").arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not a ringmesh snapshot: bad magic bytes"),
        "{stderr}"
    );
}

#[test]
fn bad_duration_flag_is_a_usage_error() {
    let output = meshd()
        .args(["--snapshot", "x", "--upstream-timeout", "5 parsecs"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unit must be ms, s or m"));
}

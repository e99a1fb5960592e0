//! Drives the real `meshc` binary against files in a fresh temporary directory.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::TempDir;

const REVIEWS: &str = r#"service reviews {
  port 9080 http
  endpoint 127.0.0.1:9081 { version = "v1" }
  endpoint 127.0.0.1:9082 { version = "v2" }
  subset v1 { version = "v1" }
  subset v2 { version = "v2" }
}
"#;

const ROUTES: &str = r#"route reviews {
  rule canary {
    match header "x-canary" = "true"
    to reviews/v2
  }
  rule split {
    match path prefix "/"
    to reviews/v1 weight 90
    to reviews/v2 weight 10
  }
}
"#;

const WORKLOADS: &str = r#"service ratings { port 9090 grpc endpoint 127.0.0.1:9091 }
workload productpage {
  identity "spiffe://cluster.local/ns/default/sa/productpage"
  inbound 9080 http -> 127.0.0.1:9090
  outbound reviews
}
"#;

fn meshc(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshc"))
        .args(args)
        .output()
        .expect("run meshc")
}

fn compile(inputs: &[&Path], out: &Path) -> Output {
    let mut args: Vec<&Path> = vec![Path::new("compile")];
    args.extend_from_slice(inputs);
    args.extend([Path::new("-o"), out]);
    meshc(&args)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn compiles_and_dumps_a_snapshot() {
    let dir = TempDir::new("roundtrip");
    let a = dir.write("reviews.mesh", REVIEWS);
    let b = dir.write("routes.mesh", ROUTES);
    let out = dir.path("mesh.snap");
    let output = compile(&[&a, &b], &out);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(
        err.starts_with(&format!(
            "compiled 1 services, 2 route rules, 0 workloads into {} (sha256 ",
            out.display()
        )),
        "{err}"
    );
    let bytes = fs::read(&out).expect("snapshot written");
    assert!(
        err.trim_end()
            .ends_with(&format!(", {} bytes)", bytes.len())),
        "{err}"
    );
    assert!(!dir.path("mesh.snap.tmp").exists());
    let (snapshot, hash) = spec::decode(&bytes).expect("valid snapshot");
    assert!(err.contains(&hash), "{err}");

    let dump = meshc(&[Path::new("dump"), &out]);
    assert!(dump.status.success(), "{}", stderr(&dump));
    let json: serde_json::Value = serde_json::from_slice(&dump.stdout).expect("dump prints JSON");
    assert_eq!(json["services"][0]["name"], "reviews");
    assert_eq!(json["routes"][0]["rules"][1]["name"], "split");
    assert_eq!(json["hosts"].as_array().map(Vec::len), Some(4));
    let rule = &snapshot.routes[0].rules[0];
    assert_eq!(rule.source.file, b.display().to_string());
    assert_eq!((rule.source.line, rule.source.column), (2, 3));
    assert_eq!(
        json["routes"][0]["rules"][0]["source"]["file"],
        rule.source.file
    );
}

#[test]
fn reports_errors_with_exit_1_and_writes_nothing() {
    let dir = TempDir::new("error");
    let a = dir.write("reviews.mesh", REVIEWS);
    let bad = dir.write(
        "routes.mesh",
        &ROUTES.replace("to reviews/v2 weight 10", "to reviews/v3 weight 10"),
    );
    let out = dir.path("mesh.snap");
    let output = compile(&[&a, &bad], &out);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    let expected = format!(
        "{}:9:16: error[E0102]: unknown subset `v3` of service `reviews`\n",
        bad.display()
    );
    assert!(err.starts_with(&expected), "{err}");
    assert!(
        err.contains("   = help: declared subsets: v1, v2\n"),
        "{err}"
    );
    assert!(!out.exists());
    assert!(!dir.path("mesh.snap.tmp").exists());
}

#[test]
fn reports_warnings_and_still_compiles() {
    let dir = TempDir::new("warning");
    let a = dir.write(
        "a.mesh",
        &REVIEWS.replace(
            "subset v2 { version = \"v2\" }",
            "subset v3 { version = \"v3\" }",
        ),
    );
    let out = dir.path("mesh.snap");
    let output = compile(&[&a], &out);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(
        err.starts_with(&format!("{}:6:10: warning[W0107]: ", a.display())),
        "{err}"
    );
    assert!(out.exists());
}

#[test]
fn unreadable_input_is_e0100() {
    let dir = TempDir::new("missing");
    let empty = dir.path("empty");
    fs::create_dir_all(&empty).expect("create dir");
    dir.write("empty/notes.txt", "not mesh");
    let missing = dir.path("missing.mesh");
    let output = compile(&[&missing, &empty], &dir.path("mesh.snap"));
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains(&format!(
            "error[E0100]: cannot read `{}`: ",
            missing.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "error[E0100]: cannot read `{}`: no config files in this directory",
            empty.display()
        )),
        "{err}"
    );
}

#[test]
fn output_does_not_depend_on_input_order() {
    let dir = TempDir::new("determinism");
    let a = dir.write("mesh/a.mesh", REVIEWS);
    let b = dir.write("mesh/nested/b.mesh", ROUTES);
    let c = dir.write("mesh/c.mesh", WORKLOADS);
    dir.write("mesh/ignored.txt", "service junk {");
    let runs = [
        (vec![a.as_path(), b.as_path(), c.as_path()], "one.snap"),
        (vec![c.as_path(), a.as_path(), b.as_path()], "two.snap"),
        (
            vec![b.as_path(), c.as_path(), a.as_path(), b.as_path()],
            "three.snap",
        ),
    ];
    let mut outputs = Vec::new();
    for (inputs, name) in &runs {
        let out = dir.path(name);
        let output = compile(inputs, &out);
        assert!(output.status.success(), "{}", stderr(&output));
        outputs.push(fs::read(&out).expect("snapshot written"));
    }
    let mesh = dir.path("mesh");
    let out = dir.path("dir.snap");
    let output = compile(&[&mesh], &out);
    assert!(output.status.success(), "{}", stderr(&output));
    outputs.push(fs::read(&out).expect("snapshot written"));
    for other in &outputs[1..] {
        assert!(other == &outputs[0], "snapshots differ");
    }
}

#[test]
fn dump_refuses_a_corrupted_snapshot() {
    let dir = TempDir::new("corrupt");
    let a = dir.write("a.mesh", REVIEWS);
    let out = dir.path("mesh.snap");
    assert!(compile(&[&a], &out).status.success());
    let mut bytes = fs::read(&out).expect("snapshot written");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&out, &bytes).expect("rewrite");
    let dump = meshc(&[Path::new("dump"), &out]);
    assert_eq!(dump.status.code(), Some(1));
    assert!(dump.stdout.is_empty());
    let err = stderr(&dump);
    assert!(
        err.starts_with(&format!(
            "meshc: {}: corrupted snapshot: content hash mismatch",
            out.display()
        )),
        "{err}"
    );

    let text = dir.write("text.snap", "hello");
    let dump = meshc(&[Path::new("dump"), &text]);
    assert_eq!(dump.status.code(), Some(1));
    assert!(
        stderr(&dump).contains("not a ringmesh snapshot"),
        "{}",
        stderr(&dump)
    );
}

#[test]
fn usage_errors_exit_2() {
    let output = meshc(&[Path::new("compile"), Path::new("x.mesh")]);
    assert_eq!(output.status.code(), Some(2));
    // A request `explain` cannot read is one too, said before any input is read.
    let args = ["explain", "missing.mesh", "--request", "GET reviews"].map(Path::new);
    let output = meshc(&args);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("url \"reviews\""),
        "{}",
        stderr(&output)
    );
}

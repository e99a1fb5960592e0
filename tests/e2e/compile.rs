//! meshc diagnostics, as a user running the real binary sees them.

use ringmesh_tests::*;

#[test]
fn compile_errors_point_at_the_right_line() {
    let scratch = Scratch::new();
    let input = scratch.write(
        "reviews.mesh",
        "service reviews {\n  port 9080 http\n  endpoint 127.0.0.1:9081 { version = \"v1\" }\n  \
         subset v1 { version = \"v1\" }\n}\n\nroute reviews {\n  rule r {\n    to reviews/v1 weight 90\n    \
         to reviews/v3 weight 10\n  }\n}\n",
    );
    let out = scratch.path().join("out.snap");
    let output = harness::compile(&[&input], &out).unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "{}:10:16: error[E0102]: unknown subset `v3`",
        input.display()
    );
    assert!(
        stderr.starts_with(&expected),
        "expected {expected:?} first, got:\n{stderr}"
    );
    assert!(
        stderr.contains("    to reviews/v3 weight 10"),
        "no source line:\n{stderr}"
    );
    assert!(!out.exists(), "a snapshot was written despite errors");
}

#[test]
fn syntax_errors_point_at_the_offending_token() {
    let scratch = Scratch::new();
    let input = scratch.write("bad.mesh", "service a {\n  port 80 htp\n}\n");
    let output = harness::compile(&[&input], &scratch.path().join("out.snap")).unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!("{}:2:11: error[E0001]:", input.display());
    assert!(
        stderr.starts_with(&expected),
        "expected {expected:?} first, got:\n{stderr}"
    );
}

//! The dependency directions docs/design.md allows between our crates, checked on the manifests.

use std::path::Path;

/// Names of the workspace crates a crate's `[dependencies]` table lists.
fn workspace_deps(krate: &str) -> Vec<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        let name = line.split(['=', '.', ' ']).next().unwrap_or("");
        let ours = ["spec", "compiler", "dataplane", "ca", "tools"];
        if in_deps && ours.contains(&name) {
            deps.push(name.to_owned());
        }
    }
    deps
}

#[test]
fn crates_depend_only_in_the_allowed_directions() {
    assert_eq!(
        workspace_deps("spec"),
        Vec::<String>::new(),
        "spec depends on nothing of ours"
    );
    assert_eq!(workspace_deps("compiler"), ["spec"]);
    assert_eq!(
        workspace_deps("dataplane"),
        ["ca", "spec"],
        "the data plane only loads snapshots (and uses meshca's client half to renew)"
    );
    assert!(workspace_deps("ca").iter().all(|d| d == "spec"));
    assert!(
        workspace_deps("tools").iter().all(|d| d == "spec"),
        "a load generator must not share the proxy's code paths"
    );
}

//! `meshc compile -o DIR/`: one pruned snapshot per workload plus `all.snap`, driven through the
//! real binary in a fresh temporary directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::TempDir;

/// `productpage` calls `reviews`, whose canary rule sends to `ratings`; `details` is only
/// reachable by `detailer`; `gateway` (no outbound list) may call everything.
const MESH: &str = r#"service details { port 9070 http endpoint 127.0.0.1:9071 }
service ratings { port 9090 grpc endpoint 127.0.0.1:9091 }
service reviews {
  port 9080 http
  endpoint 127.0.0.1:9081 { version = "v1" }
  subset v1 { version = "v1" }
}
route reviews {
  rule canary {
    match header "x-canary" = "true"
    to ratings
  }
  rule rest { to reviews/v1 }
}
workload detailer { outbound details }
workload gateway { inbound 8080 http -> 127.0.0.1:8081 }
workload productpage {
  identity "spiffe://cluster.local/ns/default/sa/productpage"
  inbound 9080 http -> 127.0.0.1:9090
  outbound reviews
}
"#;

const NO_WORKLOADS: &str = "service reviews { port 9080 http endpoint 127.0.0.1:9081 }\n";

fn compile(input: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshc"))
        .arg("compile")
        .arg(input)
        .arg("-o")
        .arg(out)
        .output()
        .expect("run meshc")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// File names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list output directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn decode(path: &Path) -> spec::Snapshot {
    let bytes = fs::read(path).expect("snapshot written");
    spec::decode(&bytes).expect("valid snapshot").0
}

fn names<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<&str> {
    items.iter().map(name).collect()
}

/// `(workload, services, rules, bytes)` from the `workload NAME: …` lines of stderr.
fn workload_lines(err: &str) -> Vec<(String, usize, usize, usize)> {
    err.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("workload ")?;
            let (name, counts) = rest.split_once(": ")?;
            let numbers: Vec<usize> = counts
                .split(", ")
                .map(|part| {
                    part.split(' ')
                        .next()
                        .expect("a count")
                        .parse()
                        .expect("a number")
                })
                .collect();
            Some((name.to_owned(), numbers[0], numbers[1], numbers[2]))
        })
        .collect()
}

#[test]
fn directory_mode_writes_one_snapshot_per_workload_and_all() {
    let dir = TempDir::new("dir");
    let input = dir.write("mesh.mesh", MESH);
    let out = dir.path("out");
    fs::create_dir(&out).expect("create output dir");
    let output = compile(&input, &out);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert_eq!(
        listing(&out),
        [
            "all.snap",
            "detailer.snap",
            "gateway.snap",
            "productpage.snap"
        ]
    );

    let all = decode(&out.join("all.snap"));
    assert_eq!(all.workloads.len(), 3);
    assert_eq!(all.services.len(), 3);

    let productpage = decode(&out.join("productpage.snap"));
    assert_eq!(names(&productpage.workloads, |w| &w.name), ["productpage"]);
    assert_eq!(
        names(&productpage.services, |s| &s.name),
        ["ratings", "reviews"]
    );
    let detailer = decode(&out.join("detailer.snap"));
    assert_eq!(names(&detailer.services, |s| &s.name), ["details"]);
    let gateway = decode(&out.join("gateway.snap"));
    assert_eq!(gateway.services, all.services);
    assert_eq!(gateway.routes, all.routes);

    // The lines come in workload order and count what each file holds.
    let lines = workload_lines(&err);
    let expected: Vec<(String, usize, usize, usize)> = ["detailer", "gateway", "productpage"]
        .iter()
        .map(|name| {
            let path = out.join(format!("{name}.snap"));
            let snapshot = decode(&path);
            let rules = snapshot.routes.iter().map(|t| t.rules.len()).sum();
            let bytes = fs::metadata(&path).expect("stat").len() as usize;
            ((*name).to_owned(), snapshot.services.len(), rules, bytes)
        })
        .collect();
    assert_eq!(lines, expected, "{err}");
    assert_eq!(lines[2].1..=lines[2].2, 2..=3, "{err}");

    // Today's summary line comes last and names all.snap.
    let last = err.lines().last().unwrap_or_default();
    let all_path = out.join("all.snap");
    assert!(
        last.starts_with(&format!(
            "compiled 3 services, 4 route rules, 3 workloads into {} (sha256 ",
            all_path.display()
        )),
        "{err}"
    );
    let size = fs::metadata(&all_path).expect("stat").len();
    assert!(last.ends_with(&format!(", {size} bytes)")), "{err}");
}

#[test]
fn directory_mode_matches_single_file_mode_for_the_whole_mesh() {
    let dir = TempDir::new("same");
    let input = dir.write("mesh.mesh", MESH);
    let single = dir.path("mesh.snap");
    let output = compile(&input, &single);
    let single_err = stderr(&output);
    assert!(output.status.success(), "{single_err}");
    let out = dir.path("out");
    fs::create_dir(&out).expect("create output dir");
    let output = compile(&input, &out);
    assert!(output.status.success(), "{}", stderr(&output));

    let all = fs::read(out.join("all.snap")).expect("all.snap");
    assert_eq!(all, fs::read(&single).expect("single snapshot"));
    // Single-file mode prints the same per-workload sizes without writing the files.
    assert_eq!(
        workload_lines(&single_err),
        workload_lines(&stderr(&output))
    );
    assert_eq!(workload_lines(&single_err).len(), 3);
    assert_eq!(listing(&dir.0), ["mesh.mesh", "mesh.snap", "out"]);

    // Compiling again gives byte-identical files.
    let first = fs::read(out.join("productpage.snap")).expect("written");
    let output = compile(&input, &out);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        fs::read(out.join("productpage.snap")).expect("rewritten"),
        first
    );
}

#[test]
fn a_trailing_slash_creates_the_output_directory() {
    let dir = TempDir::new("slash");
    let input = dir.write("mesh.mesh", MESH);
    let out = PathBuf::from(format!("{}/", dir.path("new/nested").display()));
    let output = compile(&input, &out);
    assert!(output.status.success(), "{}", stderr(&output));
    let created = dir.path("new/nested");
    assert!(created.is_dir());
    assert_eq!(listing(&created).len(), 4);
}

#[test]
fn directory_mode_without_workloads_writes_only_all_and_says_so() {
    let dir = TempDir::new("empty");
    let input = dir.write("mesh.mesh", NO_WORKLOADS);
    let out = dir.path("out");
    fs::create_dir(&out).expect("create output dir");
    let output = compile(&input, &out);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert_eq!(listing(&out), ["all.snap"]);
    assert!(err.contains("no workloads: wrote only "), "{err}");
    assert!(workload_lines(&err).is_empty(), "{err}");
    assert_eq!(decode(&out.join("all.snap")).services.len(), 1);
}

#[test]
fn a_workload_named_all_is_refused_in_directory_mode() {
    let dir = TempDir::new("all");
    let input = dir.write("mesh.mesh", &format!("{NO_WORKLOADS}workload all {{ }}\n"));
    let out = dir.path("out");
    fs::create_dir(&out).expect("create output dir");
    let output = compile(&input, &out);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("workload `all` would overwrite all.snap"),
        "{err}"
    );
    assert!(listing(&out).is_empty(), "{err}");
}

#[test]
fn a_workload_name_that_is_no_plain_file_name_is_refused_in_directory_mode() {
    let dir = TempDir::new("escape");
    let input = dir.write(
        "mesh.toml",
        "[[service]]\nname = \"reviews\"\nports = [{ number = 9080, protocol = \"http\" }]\n\
         endpoints = [{ address = \"127.0.0.1:9081\" }]\n\
         [[workload]]\nname = \"../escape\"\n",
    );
    let out = dir.path("out");
    fs::create_dir(&out).expect("create output dir");
    let output = compile(&input, &out);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("workload name `../escape` holds a `/`"),
        "{err}"
    );
    assert!(listing(&out).is_empty(), "{err}");
    assert!(!dir.path("escape.snap").exists());

    let hidden = dir.write(
        "hidden.toml",
        "[[service]]\nname = \"reviews\"\nports = [{ number = 9080, protocol = \"http\" }]\n\
         endpoints = [{ address = \"127.0.0.1:9081\" }]\n\
         [[workload]]\nname = \".hidden\"\n",
    );
    let output = compile(&hidden, &out);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("not a plain file name"), "{err}");
    assert!(listing(&out).is_empty(), "{err}");
}

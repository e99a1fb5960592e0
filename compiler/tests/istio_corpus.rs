//! Compiles every file of the Istio corpus (`tests/corpus/istio/INDEX.tsv`) through the library
//! and checks it against the row's `expected` column.

use std::path::{Path, PathBuf};

use compiler::{compile, Code, Compiled, Diagnostic, Failed};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/istio")
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

/// A meshc code, and the message fragment a diagnostic of that code must contain (if any).
type Meaning = (&'static str, Option<&'static str>);

/// Which meshc diagnostics report what an Istio analyzer code reports: the code, and a message
/// prefix or fragment when only some diagnostics of that code mean it (W0203 covers several
/// inexpressible values). Keep in sync with the "Istio analyzer coverage" table of
/// `docs/diagnostics.md`.
const MAPPED: &[(&str, &[Meaning])] = &[
    ("IST0002", &[("W0180", None)]),
    ("IST0101", &[("E0101", None), ("E0102", None)]),
    ("IST0109", &[("E0103", None)]),
    ("IST0112", &[("W0181", None)]),
    ("IST0127", &[("W0141", None)]),
    ("IST0130", &[("E0110", None), ("W0112", None)]),
    ("IST0131", &[("W0111", None), ("W0185", None)]),
    ("IST0134", &[("W0182", None)]),
    ("IST0149", &[("W0183", None)]),
    ("IST0173", &[("W0107", None)]),
    ("IST0174", &[("W0203", Some("destination rule ignored"))]),
    ("IST0177", &[("W0184", None)]),
];

/// Istio analyzer codes that cannot apply to a mesh without Kubernetes, with the reason.
const NOT_APPLICABLE: &[(&str, &str)] = &[
    (
        "IST0128",
        "TLS origination to external services is not modeled (`trafficPolicy.tls` is W0200)",
    ),
    (
        "IST0129",
        "TLS origination to external services is not modeled (`portLevelSettings` is W0200)",
    ),
    ("IST0132", "Gateways are out of scope (W0205)"),
    ("IST0140", "needs ingress Gateways and Kubernetes Services"),
    ("IST0145", "Gateways are out of scope (W0205)"),
    ("IST0162", "needs Gateways and Kubernetes Services"),
    ("IST0165", "Gateways are out of scope (W0205)"),
    ("IST0166", "no Kubernetes Gateway API gateways"),
    (
        "IST0171",
        "`status` is written by controllers; the import reads `spec` only",
    ),
    (
        "IST0175",
        "reads the istiod Deployment; meshc never fetches a `jwksUri` (only `file://` keys)",
    ),
];

/// Corpus rows whose file cannot trigger an applicable code here, with the reason.
///
/// When the reason is that the file relies on Kubernetes Services it does not declare, the last
/// field lists those hosts: the test then compiles the file again after a generated
/// ServiceEntry per host (one HTTP port, one endpoint without labels, as a stand-in for the
/// Service) and requires a mapped diagnostic, which shows the reason is the only obstacle.
const CANNOT_TRIGGER: &[(&str, &str, &str, &[&str])] = &[
    (
        "analyzer/authorizationpolicies.yaml",
        "IST0101",
        "the missing references are Kubernetes Namespaces, which meshc does not model",
        &[],
    ),
    (
        "analyzer/gateway-no-workload.yaml",
        "IST0101",
        "the reference is a Gateway selector; Gateways are out of scope",
        &[],
    ),
    (
        "integration/pilot__gateway.yaml",
        "IST0101",
        "the reference is a Gateway selector; Gateways are out of scope",
        &[],
    ),
    (
        "analyzer/virtualservice_gateways.yaml",
        "IST0101",
        "the missing reference is a Gateway; Gateways are out of scope (W0205)",
        &[],
    ),
    (
        "analyzer/virtualservice_conflictingmeshgatewayhosts.yaml",
        "IST0109",
        "the hosts are Kubernetes Services, not declared here, so no route is imported",
        &[
            "productpage.foo.svc.cluster.local",
            "reviews.foo.svc.cluster.local",
            "ratings.foo.svc.cluster.local",
        ],
    ),
    (
        "analyzer/virtualservice_conflictingmeshgatewayhosts_with_exportto.yaml",
        "IST0109",
        "the hosts are wildcards (`*.productpage`) over Kubernetes Services, scoped by \
         `exportTo`; neither is modeled, so no route is imported",
        &[],
    ),
    (
        "analyzer/virtualservice_destinationhosts.yaml",
        "IST0112",
        "the multi-port Service `reviews-2port` gives its ports `protocol: HTTP` and `HTTPS`, \
         which Kubernetes rejects (E0201), so it is imported without ports",
        &[],
    ),
    (
        "analyzer/virtualservice_dupmatches.yaml",
        "IST0130",
        "the hosts are Kubernetes Services, not declared here, so no rule reaches the \
         reachability analysis (and `tcp`/`tls` routes are not imported)",
        SAMPLE_HOSTS,
    ),
    (
        "analyzer/virtualservice_dupmatches.yaml",
        "IST0131",
        "the hosts are Kubernetes Services, not declared here, so no rule reaches the overlap \
         analysis (and `tcp`/`tls` routes are not imported)",
        SAMPLE_HOSTS,
    ),
    (
        "analyzer/virtualservice_overlappingmatches.yaml",
        "IST0131",
        "the hosts are Kubernetes Services, not declared here, so no rule reaches the overlap \
         analysis",
        SAMPLE_HOSTS,
    ),
];

/// The Kubernetes Services of the `virtualservice_*matches.yaml` files.
const SAMPLE_HOSTS: &[&str] = &[
    "sample.foo.svc.cluster.local",
    "sample.bar.svc.cluster.local",
    "sample.baz.svc.cluster.local",
];

/// One ServiceEntry per host, standing in for the Kubernetes Services a corpus file assumes,
/// each served by a WorkloadEntry with a service account (a workload with a sidecar).
fn stand_in_services(hosts: &[&str]) -> String {
    hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            format!(
                "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
                 metadata: {{name: stand-in-{i}}}\nspec:\n  hosts: [{host}]\n  \
                 addresses: [10.250.0.{i}]\n  resolution: STATIC\n  \
                 ports: [{{number: 80, name: http, protocol: HTTP}}]\n  \
                 workloadSelector: {{labels: {{stand-in: \"{i}\"}}}}\n---\n\
                 apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n\
                 metadata: {{name: stand-in-{i}}}\nspec:\n  address: 10.251.0.{i}\n  \
                 labels: {{stand-in: \"{i}\"}}\n  serviceAccount: stand-in-{i}\n---\n"
            )
        })
        .collect()
}

/// The diagnostics of compiling `inputs`, whether the compilation failed or not.
fn diagnostics_of(inputs: &[PathBuf]) -> Vec<Diagnostic> {
    match compile(inputs) {
        Ok(compiled) => compiled.warnings,
        Err(failed) => failed.diagnostics,
    }
}

/// Whether a diagnostic of a code mapped to `mapped` is among `diagnostics`.
fn has_mapped(mapped: &[Meaning], diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(|d| {
        mapped.iter().any(|(code, fragment)| {
            d.code.as_str() == *code && fragment.is_none_or(|f| d.message.contains(f))
        })
    })
}

/// Counts of expected Istio analyzer codes by outcome.
#[derive(Default)]
struct Tally {
    covered: usize,
    not_applicable: usize,
    cannot_trigger: usize,
    with_stand_ins: usize,
    missing: usize,
}

enum Outcome {
    Covered,
    NotApplicable,
    CannotTrigger,
    /// Cannot trigger on the file alone; does once its Kubernetes Services are declared.
    WithStandIns,
    Missing(String),
}

/// The IST codes of an `analyzer:IST0101x4,IST0127x4` expectation, without the counts.
fn expected_ist_codes(expected: &str) -> Vec<&str> {
    expected
        .trim_start_matches("analyzer:")
        .split(',')
        .map(|code| code.split_once('x').map_or(code, |(c, _)| c).trim())
        .collect()
}

fn analyzer_outcome(row: &Row, inputs: &[PathBuf], ist: &str) -> Outcome {
    if NOT_APPLICABLE.iter().any(|(code, _)| *code == ist) {
        return Outcome::NotApplicable;
    }
    let Some((_, mapped)) = MAPPED.iter().find(|(code, _)| *code == ist) else {
        return Outcome::Missing(format!(
            "{ist} is neither mapped to a meshc code nor listed as not applicable"
        ));
    };
    let diagnostics = diagnostics_of(inputs);
    if has_mapped(mapped, &diagnostics) {
        return Outcome::Covered;
    }
    let codes: Vec<String> = mapped
        .iter()
        .map(|(code, fragment)| match fragment {
            Some(f) => format!("{code} ({f:?})"),
            None => (*code).to_owned(),
        })
        .collect();
    let Some((_, _, _, hosts)) = CANNOT_TRIGGER
        .iter()
        .find(|(f, code, _, _)| *f == row.file && *code == ist)
    else {
        let got: Vec<&str> = diagnostics.iter().map(|d| d.code.as_str()).collect();
        return Outcome::Missing(format!(
            "no {} diagnostic (got {})",
            codes.join(" / "),
            got.join(", ")
        ));
    };
    if hosts.is_empty() {
        return Outcome::CannotTrigger;
    }
    let diagnostics = match with_stand_ins(row, inputs, hosts) {
        Ok(compiled) => compiled.warnings,
        Err(failed) => failed.diagnostics,
    };
    if has_mapped(mapped, &diagnostics) {
        Outcome::WithStandIns
    } else {
        Outcome::Missing(format!(
            "no {} diagnostic even with its Kubernetes Services declared as ServiceEntries",
            codes.join(" / ")
        ))
    }
}

/// Whether a `valid` file compiles. Like Istio's samples, many route to Kubernetes Services (and
/// DestinationRule subsets) they do not declare, which meshc refuses (E0101, E0102), as
/// `istioctl analyze` does (IST0101): such a file is valid when it compiles once stand-ins
/// declare those hosts and subsets.
fn compiles_given_its_services(row: &Row, inputs: &[PathBuf]) -> Result<(), String> {
    with_stand_ins(row, inputs, &[])
        .map(|_| ())
        .map_err(|failed| failed.render())
}

/// Compiles `inputs` with stand-in ServiceEntries for `hosts`, and for every host and subset
/// the errors say is missing: subsets show up once their host exists, hence the rounds.
fn with_stand_ins(row: &Row, inputs: &[PathBuf], hosts: &[&str]) -> Result<Compiled, Failed> {
    let stand_ins = std::env::temp_dir().join(format!(
        "istio-corpus-{}-{}-stand-ins.yaml",
        std::process::id(),
        row.file.replace('/', "_")
    ));
    let mut missing = Missing {
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        subsets: Vec::new(),
    };
    let mut round = 0;
    let result = loop {
        round += 1;
        let mut with_services = inputs.to_vec();
        if !missing.hosts.is_empty() {
            std::fs::write(&stand_ins, missing.stand_ins())
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", stand_ins.display()));
            with_services.insert(0, stand_ins.clone());
        }
        match compile(&with_services) {
            Err(failed) if round < 3 && missing.add(&failed.diagnostics) => continue,
            result => break result,
        }
    };
    let _ = std::fs::remove_file(&stand_ins);
    result
}

/// Hosts and subsets a file refers to without declaring them.
#[derive(Default)]
struct Missing {
    hosts: Vec<String>,
    /// Service host, subset name.
    subsets: Vec<(String, String)>,
}

impl Missing {
    /// Adds what the errors say is missing; whether anything was new.
    fn add(&mut self, diagnostics: &[Diagnostic]) -> bool {
        let mut added = false;
        for d in errors(diagnostics) {
            let quoted: Vec<&str> = d.message.split('`').skip(1).step_by(2).collect();
            let about_a_host =
                d.message.starts_with("destination host ") || d.message.starts_with("mirror host ");
            if d.code == Code::UnknownService && about_a_host {
                // "destination host `c` (`c.default.svc.cluster.local` in namespace ...)".
                if let Some(host) = quoted.get(1).or(quoted.first()) {
                    added |= push_new(&mut self.hosts, (*host).to_owned());
                }
            } else if d.code == Code::UnknownSubset && quoted.len() >= 2 {
                // "unknown subset `v3` of service `reviews.default.svc.cluster.local`".
                let subset = (quoted[1].to_owned(), quoted[0].to_owned());
                added |= push_new(&mut self.subsets, subset);
            }
        }
        added
    }

    /// A ServiceEntry per host, and a DestinationRule per host with subsets (each selecting
    /// `version: <subset name>`).
    fn stand_ins(&self) -> String {
        let hosts: Vec<&str> = self.hosts.iter().map(String::as_str).collect();
        let mut yaml = stand_in_services(&hosts);
        for (i, host) in self.hosts.iter().enumerate() {
            let subsets: Vec<String> = self
                .subsets
                .iter()
                .filter(|(h, _)| h == host)
                .map(|(_, s)| format!("{{name: {s}, labels: {{version: {s}}}}}"))
                .collect();
            if !subsets.is_empty() {
                yaml.push_str(&format!(
                    "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
                     metadata: {{name: stand-in-{i}}}\nspec:\n  host: {host}\n  \
                     subsets: [{}]\n---\n",
                    subsets.join(", ")
                ));
            }
        }
        yaml
    }
}

fn push_new<T: PartialEq>(list: &mut Vec<T>, item: T) -> bool {
    let new = !list.contains(&item);
    if new {
        list.push(item);
    }
    new
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
    let (mut passed, mut skipped) = (0, 0);
    let mut analyzer_tally = Tally::default();
    for row in &all {
        let path = dir.join(&row.file);
        let mut inputs = vec![path.clone()];
        inputs.extend(companions(row, &all).iter().map(|c| dir.join(c)));
        match row.expected.as_str() {
            "valid" | "doc-example" => match compiles_given_its_services(row, &inputs) {
                Ok(()) => passed += 1,
                Err(rendered) => failures.push(format!(
                    "{} ({}): expected no errors, got:\n{rendered}",
                    row.file, row.expected,
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
                for ist in expected_ist_codes(analyzer) {
                    match analyzer_outcome(row, &inputs, ist) {
                        Outcome::Covered => analyzer_tally.covered += 1,
                        Outcome::NotApplicable => analyzer_tally.not_applicable += 1,
                        Outcome::CannotTrigger => analyzer_tally.cannot_trigger += 1,
                        Outcome::WithStandIns => analyzer_tally.with_stand_ins += 1,
                        Outcome::Missing(why) => {
                            analyzer_tally.missing += 1;
                            failures.push(format!("{} expects {ist}: {why}", row.file));
                        }
                    }
                }
            }
            other => failures.push(format!("{}: unknown expectation {other:?}", row.file)),
        }
    }
    println!(
        "istio corpus: {passed} passed, {} failed, {skipped} not compiled (golden/companion)",
        failures.len()
    );
    println!(
        "istio analyzer codes: {} covered by a meshc diagnostic, {} covered once the file's \
         Kubernetes Services are declared, {} cannot trigger on their corpus file, {} not \
         applicable without Kubernetes, {} missing",
        analyzer_tally.covered,
        analyzer_tally.with_stand_ins,
        analyzer_tally.cannot_trigger,
        analyzer_tally.not_applicable,
        analyzer_tally.missing
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

use super::*;

fn one_file(path: &str, text: &str) -> (Sources, FileId) {
    let mut sources = Sources::new();
    let id = sources.add(path, text);
    (sources, id)
}

/// A diagnostic covering the first occurrence of `needle` in the file.
fn at(sources: &Sources, file: FileId, code: Code, needle: &str, message: &str) -> Diagnostic {
    let text = sources.get(file).text();
    let start = text.find(needle).expect("needle is in the text");
    let span = SourceSpan {
        file,
        span: Span::new(start, start + needle.len()),
    };
    Diagnostic::new(code, span, message)
}

#[test]
fn renders_the_documented_layout() {
    let text = "route reviews {\n  rule split {\n    match path prefix \"/\"\n    to reviews/v1 weight 90\n\n\n    to reviews/v3 weight 10\n  }\n}\n";
    let (sources, file) = one_file("mesh/reviews.mesh", text);
    let d = at(
        &sources,
        file,
        Code::UnknownSubset,
        "v3",
        "unknown subset `v3` of service `reviews`",
    )
    .with_help("declared subsets: v1, v2");
    let expected = "\
mesh/reviews.mesh:7:16: error[E0102]: unknown subset `v3` of service `reviews`
   |
 7 |     to reviews/v3 weight 10
   |                ^^
   = help: declared subsets: v1, v2
";
    assert_eq!(d.render(&sources), expected);
}

#[test]
fn aligns_carets_under_non_ascii_text() {
    let (sources, file) = one_file("é.mesh", "# ünïcödé\nservice ß { port 1 \"ü\" }\n");
    let d = at(&sources, file, Code::Syntax, "\"ü\"", "expected a protocol");
    let rendered = d.render(&sources);
    let lines: Vec<&str> = rendered.lines().collect();
    assert_eq!(lines[0], "é.mesh:2:20: error[E0001]: expected a protocol");
    assert_eq!(lines[2], " 2 | service ß { port 1 \"ü\" }");
    assert_eq!(lines[3], "   |                    ^^^");
    // The caret starts in the same character column as the token.
    let token_col = lines[2].chars().position(|c| c == '"');
    assert_eq!(lines[3].chars().position(|c| c == '^'), token_col);
}

#[test]
fn reuses_tabs_in_the_caret_line() {
    let (sources, file) = one_file("t.mesh", "route r {\n\trule x {\n\t\tto nope\n\t}\n}\n");
    let d = at(
        &sources,
        file,
        Code::UnknownService,
        "nope",
        "unknown service `nope`",
    );
    let rendered = d.render(&sources);
    assert!(rendered.starts_with("t.mesh:3:6: error[E0101]: unknown service `nope`\n"));
    assert!(rendered.contains(" 3 | \t\tto nope\n"), "{rendered}");
    assert!(rendered.contains("   | \t\t   ^^^^\n"), "{rendered}");
    assert!(!rendered.contains("help"));
}

#[test]
fn renders_warnings_as_warnings() {
    let (sources, file) = one_file("w.mesh", "subset v9 {}");
    let d = at(
        &sources,
        file,
        Code::EmptySubset,
        "v9",
        "subset `v9` selects no endpoint",
    );
    assert_eq!(d.severity, Severity::Warning);
    assert!(d
        .render(&sources)
        .starts_with("w.mesh:1:8: warning[W0107]: subset"));
}

#[test]
fn widens_the_gutter_for_long_line_numbers() {
    let text = format!("{}service x {{}}\n", "\n".repeat(11));
    let (sources, file) = one_file("g.mesh", &text);
    let d =
        at(&sources, file, Code::NoPort, "x", "service `x` has no port").with_help("add a port");
    let expected = "\
g.mesh:12:9: error[E0105]: service `x` has no port
    |
 12 | service x {}
    |         ^
    = help: add a port
";
    assert_eq!(d.render(&sources), expected);
}

#[test]
fn stops_carets_at_the_end_of_the_first_line_of_a_span() {
    let (sources, file) = one_file("m.mesh", "rule r {\n  to x\n}\r\n");
    let d = at(&sources, file, Code::WeightSum, "r {\n  to", "weights");
    let rendered = d.render(&sources);
    assert!(
        rendered.contains(" 1 | rule r {\n   |      ^^^\n"),
        "{rendered}"
    );
}

#[test]
fn points_at_end_of_file_with_one_caret() {
    let (sources, file) = one_file("e.mesh", "service s {");
    let d = Diagnostic::new(
        Code::Syntax,
        SourceSpan {
            file,
            span: Span::new(11, 11),
        },
        "expected `}`",
    );
    assert_eq!(
        d.render(&sources),
        "e.mesh:1:12: error[E0001]: expected `}`\n   |\n 1 | service s {\n   |            ^\n"
    );
}

#[test]
fn renders_spanless_diagnostics_on_one_line() {
    let d = Diagnostic::without_span(Code::CannotRead, "cannot read `x.mesh`: not found");
    assert_eq!(
        d.render(&Sources::new()),
        "error[E0100]: cannot read `x.mesh`: not found\n"
    );
    assert_eq!(d.location(&Sources::new()), None);
}

#[test]
fn computes_line_and_character_column() {
    let (sources, file) = one_file("l.mesh", "ab\nçd\r\nef");
    let f = sources.get(file);
    assert_eq!(f.line_col(0), (1, 1));
    assert_eq!(f.line_col(3), (2, 1));
    assert_eq!(f.line_col(5), (2, 2)); // after the two-byte `ç`
    assert_eq!(f.line_col(4), (2, 1)); // inside `ç`: rounds down
    assert_eq!(f.line_col(8), (3, 1));
    assert_eq!(f.line_col(100), (3, 3));
    assert_eq!(
        sources.describe(SourceSpan {
            file,
            span: Span::new(8, 9)
        }),
        "l.mesh:3"
    );
}

#[test]
fn codes_are_stable() {
    let all = [
        (Code::Syntax, "E0001"),
        (Code::InvalidValue, "E0002"),
        (Code::CannotRead, "E0100"),
        (Code::UnknownService, "E0101"),
        (Code::UnknownSubset, "E0102"),
        (Code::Duplicate, "E0103"),
        (Code::WeightSum, "E0104"),
        (Code::NoPort, "E0105"),
        (Code::NoEndpoints, "E0106"),
        (Code::EmptySubset, "W0107"),
        (Code::IstioUnsupportedField, "W0200"),
        (Code::IstioUnsupportedKind, "W0201"),
        (Code::IstioSchema, "E0201"),
        (Code::YamlSyntax, "E0202"),
        (Code::IstioUnknownField, "W0202"),
        (Code::IstioNotExpressible, "W0203"),
        (Code::IstioIncomplete, "W0204"),
        (Code::IstioOutOfScope, "W0205"),
        (Code::IstioReplaced, "W0206"),
        (Code::Internal, "E0999"),
    ];
    for (code, text) in all {
        assert_eq!(code.to_string(), text);
        assert_eq!(code.severity() == Severity::Warning, text.starts_with('W'));
    }
}

#[test]
fn suggests_only_close_names() {
    assert_eq!(edit_distance("reviews", "reveiws"), 2);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(
        did_you_mean("reveiws", ["ratings", "reviews"]),
        Some("reviews")
    );
    assert_eq!(did_you_mean("details", ["ratings", "reviews"]), None);
    assert_eq!(did_you_mean("x", ["y"]), Some("y"));
}

#[test]
fn snapshot_analysis_codes_are_stable() {
    let all = [
        (Code::RetriesExceedTimeout, "W0160"),
        (Code::PerTryTimeoutNotBelowTimeout, "W0161"),
        (Code::RetriesNeverHappen, "W0162"),
        (Code::CanEjectEveryEndpoint, "W0163"),
        (Code::AllowPolicyDeniesAll, "W0164"),
        (Code::DenyPolicyDeniesAll, "E0165"),
        (Code::PrincipalWithoutMtls, "W0166"),
        (Code::HealthPathDenied, "W0167"),
        (Code::CallerWithoutIdentity, "E0168"),
        (Code::StrictWithoutIdentity, "W0169"),
    ];
    for (code, text) in all {
        assert_eq!(code.to_string(), text);
        assert_eq!(code.severity() == Severity::Warning, text.starts_with('W'));
    }
}

#[test]
fn istio_analyzer_codes_are_stable_warnings() {
    let all = [
        (Code::IstioDeprecated, "W0180"),
        (Code::IstioDestinationPortRequired, "W0181"),
        (Code::IstioServiceEntryAddressesRequired, "W0182"),
        (Code::IstioJwtClaimRouteWithoutAuthentication, "W0183"),
        (Code::IstioConflictingServiceEntryProtocol, "W0184"),
        (Code::MatchNeverDecides, "W0185"),
        (Code::IstioDeprecatedIgnored, "W0186"),
    ];
    for (code, text) in all {
        assert_eq!(code.to_string(), text);
        assert_eq!(code.severity(), Severity::Warning);
    }
}

fn location(file: &str, line: u32, column: u32) -> spec::SourceLocation {
    spec::SourceLocation {
        file: file.to_owned(),
        line,
        column,
    }
}

#[test]
fn maps_a_source_location_to_the_word_it_points_at() {
    let mut sources = Sources::new();
    sources.add("a.mesh", "service a {}\n");
    let b = sources.add("b.mesh", "x\n  rule «é» {\r\n}");
    let at = sources.span_at(&location("b.mesh", 2, 3)).unwrap();
    assert_eq!(at.file, b);
    assert_eq!(&sources.get(b).text()[at.span.start..at.span.end], "rule");
    assert_eq!(sources.describe(at), "b.mesh:2");
    // Columns count characters: column 8 is the `«` after `rule `.
    let at = sources.span_at(&location("b.mesh", 2, 8)).unwrap();
    assert_eq!(&sources.get(b).text()[at.span.start..at.span.end], "«é»");
    assert_eq!(sources.get(b).line_col(at.span.start), (2, 8));
    // A column past the end of the line is clamped to it (an empty span).
    let at = sources.span_at(&location("b.mesh", 2, 99)).unwrap();
    assert_eq!(sources.get(b).line_col(at.span.start), (2, 13));
    assert_eq!(at.span.start, at.span.end);
    // The last line, without a terminator.
    let at = sources.span_at(&location("b.mesh", 3, 1)).unwrap();
    assert_eq!(&sources.get(b).text()[at.span.start..at.span.end], "}");
}

#[test]
fn a_source_location_outside_the_sources_has_no_span() {
    let mut sources = Sources::new();
    sources.add("a.mesh", "service a {}\n");
    assert_eq!(sources.span_at(&location("other.mesh", 1, 1)), None);
    assert_eq!(sources.span_at(&location("a.mesh", 0, 1)), None);
    assert_eq!(sources.span_at(&location("a.mesh", 3, 1)), None);
    // Line 2 is the empty line after the last newline.
    assert!(sources.span_at(&location("a.mesh", 2, 1)).is_some());
}

#[test]
fn every_code_parses_back_from_its_text() {
    for &code in Code::ALL {
        assert_eq!(Code::parse(code.as_str()), Some(code));
        assert_eq!(Code::parse(&code.as_str().to_lowercase()), Some(code));
    }
    assert_eq!(Code::parse("W9999"), None);
    assert_eq!(Code::parse(""), None);
}

/// The codes in the first column of the table in `docs/diagnostics.md`.
fn documented_codes() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/diagnostics.md");
    let text = std::fs::read_to_string(path).expect("docs/diagnostics.md is readable");
    text.lines()
        .filter_map(|line| line.strip_prefix("| "))
        .filter_map(|rest| rest.split_once(" |"))
        .map(|(code, _)| code.to_owned())
        .filter(|code| code.len() == 5 && code[1..].bytes().all(|b| b.is_ascii_digit()))
        .collect()
}

#[test]
fn every_code_is_documented_once_and_every_documented_code_exists() {
    let mut ours: Vec<String> = Code::ALL.iter().map(|c| c.as_str().to_owned()).collect();
    ours.sort();
    let mut documented = documented_codes();
    documented.sort();
    assert_eq!(ours, documented);
}

#[test]
fn a_note_renders_as_one_line_and_its_help() {
    let (sources, file) = one_file("Cargo.toml", "[package]\nname = \"x\"\n");
    let at = SourceSpan {
        file,
        span: Span::new(0, 0),
    };
    let note =
        Diagnostic::new(Code::SkippedInput, at, "skipped: not mesh TOML").with_help("name it");
    assert_eq!(note.severity, Severity::Note);
    assert_eq!(
        note.render(&sources),
        "Cargo.toml:1:1: note[N0100]: skipped: not mesh TOML\n  = help: name it\n"
    );
    let spanless = Diagnostic::without_span(Code::SkippedInput, "skipped");
    assert_eq!(spanless.render(&sources), "note[N0100]: skipped\n");
}

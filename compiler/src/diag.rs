//! Diagnostics: stable codes, source spans, and their plain-text rendering.
//!
//! The first line of a rendered diagnostic is part of the CLI contract:
//! `file:line:col: error[CODE]: message`, followed by a rustc-like snippet.
//! Columns count characters, not bytes, so carets line up under non-ASCII text.

use std::fmt::Write as _;

/// Identifies one input file within [`Sources`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub(crate) usize);

/// A byte range `start..end` within one file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The byte range `start..end`.
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }
}

/// A span together with the file it lies in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceSpan {
    /// The file.
    pub file: FileId,
    /// The byte range within it.
    pub span: Span,
}

/// One input file: its path as given on the command line and its text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    path: String,
    text: String,
    /// Byte offset of the start of every line.
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// The path as given to the compiler.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// 1-based line and 1-based character column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset);
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let column = self.text[self.line_starts[line]..offset].chars().count() + 1;
        (line + 1, column)
    }

    /// The text of a 1-based line, without its line terminator.
    fn line_text(&self, line: usize) -> &str {
        let start = self.line_starts[line - 1];
        let end = self
            .line_starts
            .get(line)
            .copied()
            .unwrap_or(self.text.len());
        let text = &self.text[start..end];
        let text = text.strip_suffix('\n').unwrap_or(text);
        text.strip_suffix('\r').unwrap_or(text)
    }
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Every input file of one compilation.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

impl Sources {
    /// No files.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file and returns its id.
    pub fn add(&mut self, path: impl Into<String>, text: impl Into<String>) -> FileId {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        self.files.push(SourceFile {
            path: path.into(),
            text,
            line_starts,
        });
        FileId(self.files.len() - 1)
    }

    /// The file with this id.
    ///
    /// # Panics
    /// If the id comes from another `Sources`.
    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0]
    }

    /// Ids and files in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files.iter().enumerate().map(|(i, f)| (FileId(i), f))
    }

    /// The span a snapshot [`spec::SourceLocation`] points at: the file whose path equals
    /// `location.file`, at 1-based `line` and 1-based character `column`, covering the word
    /// (run of non-whitespace characters) starting there. `None` when no file has that path or
    /// the line is past its end; a column past the end of the line is clamped to it.
    pub fn span_at(&self, location: &spec::SourceLocation) -> Option<SourceSpan> {
        let (id, file) = self.iter().find(|(_, f)| f.path == location.file)?;
        let line = usize::try_from(location.line).ok()?.checked_sub(1)?;
        let line_start = *file.line_starts.get(line)?;
        let text = file.line_text(line + 1);
        let skip = usize::try_from(location.column).ok()?.saturating_sub(1);
        let start = text.char_indices().nth(skip).map_or(text.len(), |(i, _)| i);
        let word = text[start..]
            .find(char::is_whitespace)
            .map_or(text.len(), |len| start + len);
        Some(SourceSpan {
            file: id,
            span: Span::new(line_start + start, line_start + word),
        })
    }

    /// `file:line` of a span, as used in messages that point at another definition.
    pub fn describe(&self, at: SourceSpan) -> String {
        let file = self.get(at.file);
        let (line, _) = file.line_col(at.span.start);
        format!("{}:{line}", file.path)
    }
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Compilation fails.
    Error,
    /// Compilation succeeds; the user should still look.
    Warning,
    /// Information that changes nothing: what the compiler did and why (a skipped file).
    Note,
}

impl Severity {
    /// `error`, `warning` or `note`, as rendered and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Note => "note",
        }
    }
}

/// The stable diagnostic codes. Tests and users key on these, never on message text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    /// E0001: the text does not follow the grammar.
    Syntax,
    /// E0002: a value is out of range or malformed (address, port, weight, ...).
    InvalidValue,
    /// E0100: an input path cannot be read, or holds no `.mesh` file.
    CannotRead,
    /// N0100: the directory scan skipped a file that does not look like config.
    SkippedInput,
    /// E0101: a reference names a service that is not declared.
    UnknownService,
    /// E0102: a destination names a subset the service does not declare.
    UnknownSubset,
    /// E0103: the same thing is defined twice.
    Duplicate,
    /// E0104: a rule's destination weights do not sum to 100.
    WeightSum,
    /// E0105: a service declares no port.
    NoPort,
    /// E0106: a service declares no endpoint.
    NoEndpoints,
    /// W0107: a subset's selector matches no endpoint.
    EmptySubset,
    /// W0200: an Istio field the import cannot express yet (ignored, or its rule dropped).
    IstioUnsupportedField,
    /// W0201: an Istio kind that is not modeled yet (the resource is ignored).
    IstioUnsupportedKind,
    /// E0201: an Istio resource breaks the Istio schema.
    IstioSchema,
    /// E0202: a YAML file cannot be parsed, or a document is not a mapping.
    YamlSyntax,
    /// W0202: a field the Istio schema does not define (ignored).
    IstioUnknownField,
    /// W0203: an Istio value the snapshot cannot hold (DNS endpoint, undeclared host, ...).
    IstioNotExpressible,
    /// W0204: a service imported from Istio has no port or no endpoint the snapshot can hold.
    IstioIncomplete,
    /// W0205: a document outside the import's scope (Gateway, Kubernetes kinds, no kind).
    IstioOutOfScope,
    /// W0206: an Istio document replaces an earlier one of the same kind, namespace and name in
    /// the same file (as `kubectl apply` would).
    IstioReplaced,
    /// E0207: a DestinationRule asks for ISTIO_MUTUAL to a service none of whose servers
    /// presents an identity, so callers could only use plaintext.
    IstioMutualWithoutIdentity,
    /// E0999: the compiler produced a snapshot that breaks a spec invariant (a meshc bug).
    Internal,
    /// E0110: a rule can never be selected: earlier rules match every request it matches.
    RuleNeverMatches,
    /// W0111: an earlier rule takes some of the requests a rule matches (it stays reachable).
    RuleOverlap,
    /// W0112: E0110 for a rule imported from an Istio VirtualService (Istio accepts it).
    ImportedRuleNeverMatches,
    /// W0113: HTTP, HTTP/2 or gRPC declared on the well-known port of a non-HTTP protocol.
    HttpOnOpaquePort,
    // ---- traffic (E0120-E0139) ----
    /// E0120: settings that exclude each other (`to` and `redirect`, a hash key on a load
    /// balancer that does not hash, rewrite `prefix` and `regex`, ...).
    TrafficConflict,
    /// E0121: a regex does not compile.
    InvalidRegex,
    /// E0122: a header edit on a framing or hop-by-hop header that meshd owns.
    FramingHeader,
    /// E0123: a required setting is missing (retries without `attempts`, ring_hash without a
    /// key, an empty fault, rewrite or redirect block).
    MissingSetting,
    /// E0124: an unknown retry condition.
    UnknownRetryOn,
    // Workload, security and telemetry (0140-0159).
    /// E0140: a policy's `workloads` names a workload that is not declared.
    UnknownWorkload,
    /// W0141: a policy selects no workload, so it has no effect.
    PolicySelectsNothing,
    /// E0142: two peer authentications at the same level apply to one workload.
    PeerAuthenticationConflict,
    /// E0143: a peer authentication has port overrides but no workload target.
    PortModeWithoutWorkload,
    /// E0144: an authorization value is malformed (pattern, principal, method, path, values).
    InvalidAuthzValue,
    /// E0145: an authorization `when` key is not one of the supported attributes.
    UnknownConditionKey,
    /// E0146: a policy names a workload outside the policy's namespace.
    WorkloadOutsideNamespace,
    /// W0147: a peer authentication port override names a port the workload does not expose.
    UnusedPortMode,
    /// E0148: an access log format meshd cannot render (an unknown `%OPERATOR%`).
    InvalidAccessLogFormat,
    /// E0149: two services claim one virtual address on one port.
    AddressConflict,
    // Snapshot analyses (retries, ejection, authorization, identity): 0160-0179.
    /// W0160: a rule's tries (per-try timeout x tries) take longer than the rule timeout.
    RetriesExceedTimeout,
    /// W0161: a rule's per-try timeout is not below its rule timeout.
    PerTryTimeoutNotBelowTimeout,
    /// W0162: retries on a rule that only matches non-idempotent methods, without opting in.
    RetriesNeverHappen,
    /// W0163: outlier detection may eject every endpoint of a service or subset.
    CanEjectEveryEndpoint,
    /// W0164: an ALLOW policy without rules is a workload's only ALLOW policy.
    AllowPolicyDeniesAll,
    /// E0165: a DENY policy has a rule that matches every request.
    DenyPolicyDeniesAll,
    /// W0166: every ALLOW rule needs a peer identity but no inbound port accepts mTLS.
    PrincipalWithoutMtls,
    /// W0167: authorization denies a health or readiness probe path.
    HealthPathDenied,
    /// E0168: a caller without identity calls a service whose server requires mTLS.
    CallerWithoutIdentity,
    /// W0169: a workload requires mTLS on an inbound port but has no identity.
    StrictWithoutIdentity,
    // Istio analyzer checks (0180-0199).
    /// W0180: an imported Istio resource uses a deprecated field (Istio IST0002).
    IstioDeprecated,
    /// W0181: a destination or mirror of a service with several ports names no port (IST0112).
    IstioDestinationPortRequired,
    /// W0182: a ServiceEntry has a TCP or unset-protocol port but no `addresses` (IST0134).
    IstioServiceEntryAddressesRequired,
    /// W0183: a VirtualService routes on JWT claims that no RequestAuthentication provides
    /// (IST0149).
    IstioJwtClaimRouteWithoutAuthentication,
    /// W0184: two ServiceEntries declare one host and port with different protocols (IST0177).
    IstioConflictingServiceEntryProtocol,
    /// W0185: a match of a rule is contained in an earlier match of the same rule, so it never
    /// decides anything (IST0131 inside one rule).
    MatchNeverDecides,
    /// W0186: a deprecated Istio field that Istio's sidecars ignore, and so does meshd (IST0002);
    /// unlike W0180's fields it is not read, so it is listed as not enforced.
    IstioDeprecatedIgnored,
}

impl Code {
    /// Every code, in the order of [`Code`]'s variants.
    pub const ALL: &'static [Self] = &[
        Self::Syntax,
        Self::InvalidValue,
        Self::CannotRead,
        Self::SkippedInput,
        Self::UnknownService,
        Self::UnknownSubset,
        Self::Duplicate,
        Self::WeightSum,
        Self::NoPort,
        Self::NoEndpoints,
        Self::EmptySubset,
        Self::IstioUnsupportedField,
        Self::IstioUnsupportedKind,
        Self::IstioSchema,
        Self::YamlSyntax,
        Self::IstioUnknownField,
        Self::IstioNotExpressible,
        Self::IstioIncomplete,
        Self::IstioOutOfScope,
        Self::IstioReplaced,
        Self::IstioMutualWithoutIdentity,
        Self::Internal,
        Self::RuleNeverMatches,
        Self::RuleOverlap,
        Self::ImportedRuleNeverMatches,
        Self::HttpOnOpaquePort,
        Self::TrafficConflict,
        Self::InvalidRegex,
        Self::FramingHeader,
        Self::MissingSetting,
        Self::UnknownRetryOn,
        Self::UnknownWorkload,
        Self::PolicySelectsNothing,
        Self::PeerAuthenticationConflict,
        Self::PortModeWithoutWorkload,
        Self::InvalidAuthzValue,
        Self::UnknownConditionKey,
        Self::WorkloadOutsideNamespace,
        Self::UnusedPortMode,
        Self::InvalidAccessLogFormat,
        Self::AddressConflict,
        Self::RetriesExceedTimeout,
        Self::PerTryTimeoutNotBelowTimeout,
        Self::RetriesNeverHappen,
        Self::CanEjectEveryEndpoint,
        Self::AllowPolicyDeniesAll,
        Self::DenyPolicyDeniesAll,
        Self::PrincipalWithoutMtls,
        Self::HealthPathDenied,
        Self::CallerWithoutIdentity,
        Self::StrictWithoutIdentity,
        Self::IstioDeprecated,
        Self::IstioDestinationPortRequired,
        Self::IstioServiceEntryAddressesRequired,
        Self::IstioJwtClaimRouteWithoutAuthentication,
        Self::IstioConflictingServiceEntryProtocol,
        Self::MatchNeverDecides,
        Self::IstioDeprecatedIgnored,
    ];

    /// The code written as `text` (`W0107`; case-insensitive), if there is one.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|code| code.as_str().eq_ignore_ascii_case(text))
    }

    /// The stable code, e.g. `E0102`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Syntax => "E0001",
            Self::InvalidValue => "E0002",
            Self::CannotRead => "E0100",
            Self::SkippedInput => "N0100",
            Self::UnknownService => "E0101",
            Self::UnknownSubset => "E0102",
            Self::Duplicate => "E0103",
            Self::WeightSum => "E0104",
            Self::NoPort => "E0105",
            Self::NoEndpoints => "E0106",
            Self::EmptySubset => "W0107",
            Self::IstioUnsupportedField => "W0200",
            Self::IstioUnsupportedKind => "W0201",
            Self::IstioSchema => "E0201",
            Self::YamlSyntax => "E0202",
            Self::IstioUnknownField => "W0202",
            Self::IstioNotExpressible => "W0203",
            Self::IstioIncomplete => "W0204",
            Self::IstioOutOfScope => "W0205",
            Self::IstioReplaced => "W0206",
            Self::IstioMutualWithoutIdentity => "E0207",
            Self::Internal => "E0999",
            Self::RuleNeverMatches => "E0110",
            Self::RuleOverlap => "W0111",
            Self::ImportedRuleNeverMatches => "W0112",
            Self::HttpOnOpaquePort => "W0113",
            // ---- traffic (E0120-E0139) ----
            Self::TrafficConflict => "E0120",
            Self::InvalidRegex => "E0121",
            Self::FramingHeader => "E0122",
            Self::MissingSetting => "E0123",
            Self::UnknownRetryOn => "E0124",
            // Workload, security and telemetry.
            Self::UnknownWorkload => "E0140",
            Self::PolicySelectsNothing => "W0141",
            Self::PeerAuthenticationConflict => "E0142",
            Self::PortModeWithoutWorkload => "E0143",
            Self::InvalidAuthzValue => "E0144",
            Self::UnknownConditionKey => "E0145",
            Self::WorkloadOutsideNamespace => "E0146",
            Self::UnusedPortMode => "W0147",
            Self::InvalidAccessLogFormat => "E0148",
            Self::AddressConflict => "E0149",
            // Snapshot analyses.
            Self::RetriesExceedTimeout => "W0160",
            Self::PerTryTimeoutNotBelowTimeout => "W0161",
            Self::RetriesNeverHappen => "W0162",
            Self::CanEjectEveryEndpoint => "W0163",
            Self::AllowPolicyDeniesAll => "W0164",
            Self::DenyPolicyDeniesAll => "E0165",
            Self::PrincipalWithoutMtls => "W0166",
            Self::HealthPathDenied => "W0167",
            Self::CallerWithoutIdentity => "E0168",
            Self::StrictWithoutIdentity => "W0169",
            // Istio analyzer checks.
            Self::IstioDeprecated => "W0180",
            Self::IstioDestinationPortRequired => "W0181",
            Self::IstioServiceEntryAddressesRequired => "W0182",
            Self::IstioJwtClaimRouteWithoutAuthentication => "W0183",
            Self::IstioConflictingServiceEntryProtocol => "W0184",
            Self::MatchNeverDecides => "W0185",
            Self::IstioDeprecatedIgnored => "W0186",
        }
    }

    /// Whether the warning means config was accepted but is not served (ignored, skipped or
    /// approximated): such warnings travel in the snapshot so meshd lists them as not enforced.
    pub fn means_unserved(self) -> bool {
        matches!(
            self,
            Self::IstioUnsupportedField
                | Self::IstioUnsupportedKind
                | Self::IstioUnknownField
                | Self::IstioNotExpressible
                | Self::IstioIncomplete
                | Self::IstioOutOfScope
                | Self::IstioDeprecatedIgnored
        )
    }

    /// The severity every diagnostic with this code has.
    pub fn severity(self) -> Severity {
        match self {
            Self::SkippedInput => Severity::Note,
            Self::EmptySubset
            | Self::IstioUnsupportedField
            | Self::IstioUnsupportedKind
            | Self::IstioUnknownField
            | Self::IstioNotExpressible
            | Self::IstioIncomplete
            | Self::IstioOutOfScope
            | Self::IstioReplaced
            | Self::RuleOverlap
            | Self::ImportedRuleNeverMatches
            | Self::HttpOnOpaquePort
            | Self::PolicySelectsNothing
            | Self::UnusedPortMode => Severity::Warning,
            // Snapshot analyses.
            Self::RetriesExceedTimeout
            | Self::PerTryTimeoutNotBelowTimeout
            | Self::RetriesNeverHappen
            | Self::CanEjectEveryEndpoint
            | Self::AllowPolicyDeniesAll
            | Self::PrincipalWithoutMtls
            | Self::HealthPathDenied
            | Self::StrictWithoutIdentity => Severity::Warning,
            Self::DenyPolicyDeniesAll | Self::CallerWithoutIdentity => Severity::Error,
            // Istio analyzer checks.
            Self::IstioDeprecated
            | Self::IstioDestinationPortRequired
            | Self::IstioServiceEntryAddressesRequired
            | Self::IstioJwtClaimRouteWithoutAuthentication
            | Self::IstioConflictingServiceEntryProtocol
            | Self::MatchNeverDecides
            | Self::IstioDeprecatedIgnored => Severity::Warning,
            Self::Syntax
            | Self::InvalidValue
            | Self::CannotRead
            | Self::UnknownService
            | Self::UnknownSubset
            | Self::Duplicate
            | Self::WeightSum
            | Self::NoPort
            | Self::NoEndpoints
            | Self::IstioSchema
            | Self::YamlSyntax
            | Self::IstioMutualWithoutIdentity
            | Self::Internal
            | Self::RuleNeverMatches
            | Self::UnknownWorkload
            | Self::PeerAuthenticationConflict
            | Self::PortModeWithoutWorkload
            | Self::InvalidAuthzValue
            | Self::UnknownConditionKey
            | Self::WorkloadOutsideNamespace
            | Self::InvalidAccessLogFormat
            | Self::AddressConflict
            | Self::TrafficConflict
            | Self::InvalidRegex
            | Self::FramingHeader
            | Self::MissingSetting
            | Self::UnknownRetryOn => Severity::Error,
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding about the input, with where it is and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error, warning or note.
    pub severity: Severity,
    /// Stable code.
    pub code: Code,
    /// Lower-case message without a trailing period.
    pub message: String,
    /// Where in the input; `None` for problems with no position (unreadable input).
    pub span: Option<SourceSpan>,
    /// What to do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at a span, with the code's severity.
    pub fn new(code: Code, span: SourceSpan, message: impl Into<String>) -> Self {
        Self {
            severity: code.severity(),
            code,
            message: message.into(),
            span: Some(span),
            help: None,
        }
    }

    /// A diagnostic without a position.
    pub fn without_span(code: Code, message: impl Into<String>) -> Self {
        Self {
            severity: code.severity(),
            code,
            message: message.into(),
            span: None,
            help: None,
        }
    }

    /// Adds a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Whether this diagnostic fails the compilation.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:col` of the start of the span, if any.
    pub fn location(&self, sources: &Sources) -> Option<(String, usize, usize)> {
        let at = self.span?;
        let file = sources.get(at.file);
        let (line, col) = file.line_col(at.span.start);
        Some((file.path.clone(), line, col))
    }

    /// 1-based line and character column just past the end of the span (exclusive: an empty
    /// span ends where it starts), if any.
    pub fn end(&self, sources: &Sources) -> Option<(usize, usize)> {
        let at = self.span?;
        Some(
            sources
                .get(at.file)
                .line_col(at.span.end.max(at.span.start)),
        )
    }

    /// Renders the diagnostic as plain text, ending with a newline:
    ///
    /// ```text
    /// mesh/reviews.mesh:7:16: error[E0102]: unknown subset `v3` of service `reviews`
    ///    |
    ///  7 |     to reviews/v3 weight 10
    ///    |                ^^
    ///    = help: declared subsets: v1, v2
    /// ```
    pub fn render(&self, sources: &Sources) -> String {
        if self.severity == Severity::Note {
            return self.render_note(sources);
        }
        let kind = self.severity.as_str();
        let mut out = String::new();
        let Some(at) = self.span else {
            let _ = writeln!(out, "{kind}[{}]: {}", self.code, self.message);
            if let Some(help) = &self.help {
                let _ = writeln!(out, "  = help: {help}");
            }
            return out;
        };
        let file = sources.get(at.file);
        let start = floor_char_boundary(&file.text, at.span.start);
        let (line, col) = file.line_col(start);
        let _ = writeln!(
            out,
            "{}:{line}:{col}: {kind}[{}]: {}",
            file.path, self.code, self.message
        );
        let text = file.line_text(line);
        let gutter = " ".repeat(line.to_string().len() + 1);
        // The caret run starts under the span and covers it up to the end of its first line.
        let prefix: String = text
            .chars()
            .take(col - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let end = floor_char_boundary(&file.text, at.span.end.max(start));
        let line_end = file.line_starts[line - 1] + text.len();
        let covered = file.text[start..end.min(line_end).max(start)]
            .chars()
            .count();
        let carets = "^".repeat(covered.max(1));
        let _ = writeln!(out, "{gutter} |");
        if text.is_empty() {
            let _ = writeln!(out, " {line} |");
        } else {
            let _ = writeln!(out, " {line} | {text}");
        }
        let _ = writeln!(out, "{gutter} | {prefix}{carets}");
        if let Some(help) = &self.help {
            let _ = writeln!(out, "{gutter} = help: {help}");
        }
        out
    }

    /// A note is one line (and its help): its position, if any, is where it applies, with no
    /// source line worth showing.
    fn render_note(&self, sources: &Sources) -> String {
        let mut out = String::new();
        if let Some((file, line, col)) = self.location(sources) {
            let _ = write!(out, "{file}:{line}:{col}: ");
        }
        let _ = writeln!(out, "note[{}]: {}", self.code, self.message);
        if let Some(help) = &self.help {
            let _ = writeln!(out, "  = help: {help}");
        }
        out
    }
}

/// The closest candidate to `name` by edit distance, if it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|&(d, _)| d <= limit)
        .min()
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests;

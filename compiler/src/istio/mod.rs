//! Istio import: reads Istio YAML or JSON (multi-document files, `kind: List`) and lowers VirtualService,
//! DestinationRule, ServiceEntry, WorkloadEntry, AuthorizationPolicy, PeerAuthentication and
//! RequestAuthentication, and the Kubernetes Services, endpoints and workloads beside them,
//! into the same AST as `.mesh` files, so every existing validation applies. Nothing is dropped silently: every field, endpoint, rule or
//! resource the snapshot cannot express yet gets a warning with its position (see `docs/istio.md`).

mod kubernetes;
mod networking;
mod security;
mod sidecar;
mod telemetry;
mod yaml;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::Path;

use crate::ast;
use crate::diag::{Code, Diagnostic, FileId, SourceSpan, Span};
use yaml::Node;

/// Whether a path names a Kubernetes manifest (`.yaml`, `.yml` or `.json`), which the compiler
/// imports as Istio.
pub fn is_manifest_path(path: &str) -> bool {
    Path::new(path)
        .extension()
        .is_some_and(is_manifest_extension)
}

/// Whether a file extension (without the dot) is a manifest one: YAML, or JSON (which is YAML
/// flow syntax, so the same parser reads it).
pub fn is_manifest_extension(extension: &OsStr) -> bool {
    extension == "yaml" || extension == "yml" || extension == "json"
}

/// Whether `text` is Kubernetes manifests (YAML or JSON): one of its documents is a mapping with
/// both `apiVersion` and `kind`. Text that is not valid YAML is when a line starts with either
/// key (`kind:`, `"kind":`, also after a JSON `{`), so that its syntax error gets reported.
pub(crate) fn looks_like_manifest(text: &str) -> bool {
    match yaml::parse(text) {
        Ok(documents) => documents
            .iter()
            .any(|d| d.get("apiVersion").is_some() && d.get("kind").is_some()),
        Err(_) => text.lines().any(starts_with_manifest_key),
    }
}

/// Whether a line starts with the key `apiVersion` or `kind`, plain or quoted.
fn starts_with_manifest_key(line: &str) -> bool {
    let line = line.trim_start();
    let line = line.strip_prefix('{').unwrap_or(line).trim_start();
    ["apiVersion", "kind", "\"apiVersion\"", "\"kind\""]
        .iter()
        .any(|key| {
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
}

/// Imports the YAML files into ASTs (one per file that declares something), resolving hosts
/// against the imported ServiceEntries and the services of the `.mesh` files. Every finding,
/// from YAML syntax errors to unsupported fields, is appended to `diagnostics`.
///
/// Within one file a later document with the same group, kind, namespace and name replaces the
/// earlier one, as `kubectl apply -f` would (W0206); across files both are imported.
pub(crate) fn import(
    files: &[YamlFile<'_>],
    mesh: &[ast::File],
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<ast::File> {
    let mut out = Out {
        diagnostics,
        file: FileId(0),
    };
    let mut parsed = Vec::new();
    for yaml_file in files {
        out.file = yaml_file.id;
        match yaml::parse(yaml_file.text) {
            Ok(documents) => parsed.push((yaml_file, expand_lists(&mut out, documents))),
            Err(e) => out.push(
                Code::YamlSyntax,
                e.span,
                format!("invalid YAML: {}", e.message),
                "fix the YAML syntax; every document must be a mapping",
            ),
        }
    }
    let mut resources = Vec::new();
    let mut kube_resources = Vec::new();
    let mut security_items: Vec<(FileId, ast::Item)> = Vec::new();
    // Namespaces with a RequestAuthentication (W0183 looks for them).
    let mut authenticated = HashSet::new();
    for (yaml_file, documents) in &parsed {
        let file = yaml_file.id;
        out.file = file;
        let replaced = replaced_documents(&mut out, yaml_file, documents);
        for (document, replaced) in documents.iter().zip(replaced) {
            if replaced {
                continue;
            }
            if let Some(((_, "RequestAuthentication", namespace, _), _)) = resource_key(document) {
                authenticated.insert(namespace.to_owned());
            }
            match classify(&mut out, file, document, &mut security_items) {
                Some(Classified::Istio(resource)) => resources.push(resource),
                Some(Classified::Kubernetes(resource)) => kube_resources.push(resource),
                None => {}
            }
        }
    }
    let kube = kubernetes::lower(&mut out, &kube_resources);
    let mut files = networking::lower(&mut out, &resources, kube, mesh, &authenticated);
    for (id, item) in security_items {
        match files.iter_mut().find(|f| f.id == id) {
            Some(file) => file.items.push(item),
            None => files.push(ast::File {
                id,
                items: vec![item],
            }),
        }
    }
    files.sort_by_key(|f| f.id);
    files
}

/// Replaces every `kind: List` document (`apiVersion: v1`, what `kubectl get -o yaml` and
/// `-o json` print) by its `items`, so each item is imported as a document of its own, its
/// diagnostics at its own position.
fn expand_lists(out: &mut Out<'_>, documents: Vec<Node>) -> Vec<Node> {
    let mut expanded = Vec::with_capacity(documents.len());
    for document in documents {
        let is_list = document.get("kind").and_then(Node::as_str) == Some("List")
            && document.get("apiVersion").and_then(Node::as_str) == Some("v1");
        if is_list {
            let items = list_items(out, document);
            expanded.extend(expand_lists(out, items));
        } else {
            expanded.push(document);
        }
    }
    expanded
}

/// The `items` of a `kind: List` document (none when absent or null; E0201 when not a list).
fn list_items(out: &mut Out<'_>, list: Node) -> Vec<Node> {
    out.check_fields(&list, "", &["apiVersion", "kind", "metadata", "items"]);
    let yaml::Value::Map(entries) = list.value else {
        return Vec::new();
    };
    let items = entries
        .into_iter()
        .find(|(key, _)| key.as_str() == Some("items"))
        .map(|(_, items)| items);
    match items {
        Some(Node {
            value: yaml::Value::Seq(items),
            ..
        }) => items,
        Some(node) if !node.is_null() => {
            out.schema(
                node.span,
                format!("`items` of a `List` must be a list, found {}", node.kind()),
            );
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// One YAML input file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct YamlFile<'a> {
    /// Its id in the sources.
    pub(crate) id: FileId,
    /// Its path, as given to the compiler (named in W0206).
    pub(crate) path: &'a str,
    /// Its text.
    pub(crate) text: &'a str,
}

/// What identifies a Kubernetes resource: API group, kind, namespace and name (the version is
/// not part of it: `v1beta1` and `v1` of one kind are the same resource).
type ResourceKey<'n> = (&'n str, &'n str, &'n str, &'n str);

/// The identity of an in-scope Istio or Kubernetes document, with the `metadata.name` node;
/// `None` for anything else (out-of-scope kinds, malformed headers: `classify` reports those).
fn resource_key(document: &Node) -> Option<(ResourceKey<'_>, &Node)> {
    let kind = document.get("kind")?.as_str()?;
    let api_version = document.get("apiVersion")?.as_str()?;
    // The core group (`v1`) has no name before the version.
    let group = api_version.split_once('/').map_or("", |(group, _)| group);
    let in_scope = (group == "networking.istio.io" && NETWORKING.contains(&kind))
        || (group == "security.istio.io" && SECURITY.contains(&kind))
        || (group == TELEMETRY_GROUP && kind == "Telemetry")
        || kubernetes::kind_of(api_version, kind).is_some();
    if !in_scope {
        return None;
    }
    let metadata = document.get("metadata")?;
    let name_node = metadata.get("name")?;
    let name = name_node.as_str()?;
    let namespace = match metadata.get("namespace") {
        Some(node) => node.as_str()?,
        None => "default",
    };
    Some(((group, kind, namespace, name), name_node))
}

/// Marks the documents a later document of the same file replaces (same group, kind, namespace
/// and name: `kubectl apply` keeps the last one), with W0206 at the replacing document. A
/// replaced document is not imported, nor checked.
fn replaced_documents(out: &mut Out<'_>, file: &YamlFile<'_>, documents: &[Node]) -> Vec<bool> {
    let mut replaced = vec![false; documents.len()];
    let mut latest: HashMap<ResourceKey<'_>, (usize, Span)> = HashMap::new();
    for (i, document) in documents.iter().enumerate() {
        let Some((key, name_node)) = resource_key(document) else {
            continue;
        };
        if let Some((earlier, earlier_span)) = latest.insert(key, (i, name_node.span)) {
            replaced[earlier] = true;
            let line = line_of(file.text, earlier_span.start);
            let (_, kind, namespace, name) = key;
            out.push(
                Code::IstioReplaced,
                name_node.span,
                format!(
                    "{kind} `{namespace}/{name}` replaces the earlier resource of the same kind \
                     and name at {}:{line}, which is not imported",
                    file.path
                ),
                "as with `kubectl apply`, only the last document of a kind, namespace and name \
                 takes effect; rename one of them to keep both",
            );
        }
    }
    replaced
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Where diagnostics go, and the file being looked at.
struct Out<'d> {
    diagnostics: &'d mut Vec<Diagnostic>,
    file: FileId,
}

impl Out<'_> {
    fn push(&mut self, code: Code, span: Span, message: String, help: &str) {
        let at = SourceSpan {
            file: self.file,
            span,
        };
        let mut diagnostic = Diagnostic::new(code, at, message);
        if !help.is_empty() {
            diagnostic = diagnostic.with_help(help);
        }
        self.diagnostics.push(diagnostic);
    }

    /// E0201 at a node.
    fn schema(&mut self, span: Span, message: String) {
        self.push(
            Code::IstioSchema,
            span,
            message,
            "Istio rejects this resource; see the Istio API reference for the field",
        );
    }

    /// W0200: a field the import cannot express; `consequence` says what happens instead.
    fn unsupported(&mut self, path: &str, node: &Node, consequence: &str) {
        self.unsupported_at(path, node.span, consequence);
    }

    /// W0200 at a span (for a value already converted to the AST).
    fn unsupported_at(&mut self, path: &str, span: Span, consequence: &str) {
        self.push(
            Code::IstioUnsupportedField,
            span,
            format!("`{path}` is not supported yet, {consequence}"),
            "",
        );
    }

    /// How many errors have been reported so far (to tell whether a check found one).
    fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// W0200 for every key of `map` in `unsupported`, W0202 for every key in neither list.
    fn fields(
        &mut self,
        map: &Node,
        path: &str,
        supported: &[&str],
        unsupported: &[&str],
        consequence: &str,
    ) {
        let known: Vec<&str> = supported.iter().chain(unsupported).copied().collect();
        self.check_fields(map, path, &known);
        for (key, value) in map.entries().unwrap_or_default() {
            if key.as_str().is_some_and(|k| unsupported.contains(&k)) {
                self.unsupported(&format!("{path}.{}", plain(key)), value, consequence);
            }
        }
    }

    /// A protobuf duration string (`1.5s`, `300ms`), or E0201.
    fn duration(&mut self, node: &Node, path: &str) -> Option<ast::Duration> {
        let millis = node.as_str().and_then(security::duration_millis);
        if millis.is_none() {
            self.schema(
                node.span,
                format!(
                    "`{path}` {} must be a duration such as \"5s\" or \"250ms\"",
                    node.display()
                ),
            );
        }
        Some(ast::Duration {
            millis: millis?,
            span: node.span,
        })
    }

    /// A percentage written as a number from 0 to 100 (fractions allowed), or E0201.
    fn percent(&mut self, node: &Node, path: &str) -> Option<ast::Percent> {
        let value = match node.value {
            yaml::Value::Int(n) => Some(n as f64),
            yaml::Value::Float(f) => Some(f),
            _ => None,
        };
        match value {
            Some(v) if (0.0..=100.0).contains(&v) => Some(ast::Percent {
                per_million: (v * 10_000.0).round() as u64,
                span: node.span,
            }),
            _ => {
                self.schema(
                    node.span,
                    format!(
                        "`{path}` {} must be a percentage between 0 and 100",
                        node.display()
                    ),
                );
                None
            }
        }
    }

    /// A string as an AST string, or E0201.
    fn ast_str(&mut self, node: &Node, path: &str) -> Option<ast::Str> {
        Some(ast::Str {
            value: self.str(node, path)?.to_owned(),
            span: node.span,
        })
    }

    /// A list of strings (E0201 for items that are not strings; those are left out).
    fn strings(&mut self, node: &Node, path: &str) -> Vec<ast::Str> {
        let mut out = Vec::new();
        for (i, item) in self.seq(node, path).unwrap_or_default().iter().enumerate() {
            if let Some(s) = self.ast_str(item, &format!("{path}[{i}]")) {
                out.push(s);
            }
        }
        out
    }

    /// W0180: a deprecated field (Istio IST0002), with the field that replaces it.
    fn deprecated(&mut self, path: &str, span: Span, replacement: &str) {
        self.push(
            Code::IstioDeprecated,
            span,
            format!("`{path}` is deprecated in Istio; use {replacement} instead"),
            "the import still reads it, but Istio may drop it in a later release",
        );
    }

    /// W0203: a value the snapshot cannot hold.
    fn inexpressible(&mut self, span: Span, message: String, help: &str) {
        self.push(Code::IstioNotExpressible, span, message, help);
    }

    /// W0202 for every key of `map` not in `known`; returns the entries with string keys.
    fn check_fields(&mut self, map: &Node, path: &str, known: &[&str]) {
        for (key, _) in map.entries().unwrap_or_default() {
            match key.as_str() {
                Some(k) if known.contains(&k) => {}
                _ => self.push(
                    Code::IstioUnknownField,
                    key.span,
                    format!("unknown field `{path}.{}`, ignored", plain(key)),
                    &format!("known fields: {}", known.join(", ")),
                ),
            }
        }
    }

    /// The node as a mapping, or E0201 (`null` counts as an empty mapping).
    fn map<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [(Node, Node)]> {
        if node.is_null() {
            return Some(&[]);
        }
        let entries = node.entries();
        if entries.is_none() {
            self.schema(
                node.span,
                format!("`{path}` must be a mapping, found {}", node.kind()),
            );
        }
        entries
    }

    /// The node as a list, or E0201 (`null` counts as an empty list).
    fn seq<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        if node.is_null() {
            return Some(&[]);
        }
        let items = node.items();
        if items.is_none() {
            self.schema(
                node.span,
                format!("`{path}` must be a list, found {}", node.kind()),
            );
        }
        items
    }

    /// The node as a string, or E0201.
    fn str<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n str> {
        let text = node.as_str();
        if text.is_none() {
            self.schema(
                node.span,
                format!("`{path}` must be a string, found {}", node.display()),
            );
        }
        text
    }

    /// The node as a boolean, or E0201 (Istio's schema takes no `"true"` string).
    fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match node.value {
            yaml::Value::Bool(b) => Some(b),
            _ => {
                self.schema(
                    node.span,
                    format!("`{path}` must be a boolean, found {}", node.display()),
                );
                None
            }
        }
    }

    /// The node as an integer in `min..=max`, or E0201.
    fn int(&mut self, node: &Node, path: &str, min: i64, max: i64) -> Option<i64> {
        match node.as_int() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.schema(
                    node.span,
                    format!("`{path}` is {n}, must be between {min} and {max}"),
                );
                None
            }
            None => {
                self.schema(
                    node.span,
                    format!("`{path}` must be an integer, found {}", node.display()),
                );
                None
            }
        }
    }

    /// A `map<string, string>` such as labels; E0201 for non-string values.
    fn labels(&mut self, node: &Node, path: &str) -> Vec<ast::Label> {
        let mut labels = Vec::new();
        for (key, value) in self.map(node, path).unwrap_or_default() {
            let name = plain(key);
            let value_text = match &value.value {
                yaml::Value::Str(s) => s.clone(),
                // Kubernetes label values are strings; a bare number or boolean is a YAML slip
                // that Istio rejects.
                _ => {
                    self.schema(
                        value.span,
                        format!(
                            "`{path}.{name}` must be a string, found {}",
                            value.display()
                        ),
                    );
                    continue;
                }
            };
            labels.push(ast::Label {
                key: ast::Ident {
                    name,
                    span: key.span,
                },
                value: ast::Str {
                    value: value_text,
                    span: value.span,
                },
            });
        }
        labels
    }
}

/// Whether `labels` carry every pair of a non-empty label `selector`.
fn selects(selector: &[ast::Label], labels: &[ast::Label]) -> bool {
    !selector.is_empty()
        && selector.iter().all(|want| {
            labels
                .iter()
                .any(|l| l.key.name == want.key.name && l.value.value == want.value.value)
        })
}

/// `workload` serves `service` (once), which an Istio or Kubernetes selector gave it.
fn serves(workload: &mut ast::Workload, service: &str) {
    if !workload.serves.iter().any(|s| s.name == service) {
        workload.serves.push(ast::Ident {
            name: service.to_owned(),
            span: workload.name.span,
        });
    }
}

/// `workload` accepts `port` (once) and forwards it to the application on the machine's
/// loopback at the same port, as Istio's sidecar does beside a Pod's or a VM's application.
/// Diagnostics about it point at the workload's name.
fn inbound_on_loopback(workload: &mut ast::Workload, port: u64, protocol: spec::Protocol) {
    if workload.inbound.iter().any(|i| i.port.value == port) {
        return;
    }
    let at = workload.name.span;
    workload.inbound.push(ast::Inbound {
        port: ast::Number {
            value: port,
            span: at,
        },
        protocol: ast::Protocol {
            value: protocol,
            span: at,
        },
        target: ast::Address {
            text: format!("127.0.0.1:{port}"),
            span: at,
        },
        mtls: None,
    });
}

/// A key rendered for a field path: strings as they are, other scalars as written.
fn plain(key: &Node) -> String {
    match key.as_str() {
        Some(s) => s.to_owned(),
        None => key.display(),
    }
}

/// The kinds the import understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    VirtualService,
    DestinationRule,
    ServiceEntry,
    WorkloadEntry,
}

/// One Istio networking resource to import.
#[derive(Debug)]
struct Resource<'a> {
    file: FileId,
    kind: Kind,
    /// The `kind:` value, where resource-level diagnostics point.
    kind_span: Span,
    name: ast::Ident,
    /// `metadata.namespace`, or `default`.
    namespace: String,
    spec: &'a Node,
}

const NETWORKING: &[&str] = &[
    "VirtualService",
    "DestinationRule",
    "ServiceEntry",
    "WorkloadEntry",
    "Sidecar",
];
const SECURITY: &[&str] = &[
    "AuthorizationPolicy",
    "PeerAuthentication",
    "RequestAuthentication",
];
const VERSIONS: &[&str] = &["v1alpha3", "v1beta1", "v1"];
const TELEMETRY_GROUP: &str = "telemetry.istio.io";
const TELEMETRY_VERSIONS: &[&str] = &["v1alpha1", "v1"];

/// A document to import after the security resources.
enum Classified<'a> {
    Istio(Resource<'a>),
    Kubernetes(kubernetes::Resource<'a>),
}

/// Sorts one document into a networking or Kubernetes resource to import, a security resource
/// (lowered at once into `security_items`), or an out-of-scope document (W0205).
fn classify<'a>(
    out: &mut Out<'_>,
    file: FileId,
    document: &'a Node,
    security_items: &mut Vec<(FileId, ast::Item)>,
) -> Option<Classified<'a>> {
    if document.is_null() {
        return None;
    }
    if document.entries().is_none() {
        out.push(
            Code::YamlSyntax,
            document.span,
            format!(
                "a Kubernetes resource must be a YAML mapping, found {}",
                document.kind()
            ),
            "each `---`-separated document needs `apiVersion`, `kind`, `metadata` and `spec`",
        );
        return None;
    }
    let (kind, kind_node) = match document.get("kind") {
        Some(node) => match node.as_str() {
            Some(kind) => (kind, node),
            None => {
                out.schema(
                    node.span,
                    format!("`kind` must be a string, found {}", node.display()),
                );
                return None;
            }
        },
        None => {
            out.push(
                Code::IstioOutOfScope,
                Span::new(document.span.start, document.span.start),
                "document has no `kind`, ignored".to_owned(),
                "only Istio resources are imported",
            );
            return None;
        }
    };
    let api_version = document.get("apiVersion");
    let kube_kind = api_version
        .and_then(Node::as_str)
        .and_then(|v| kubernetes::kind_of(v, kind));
    if let Some(kube_kind) = kube_kind {
        out.check_fields(document, "", kubernetes::document_fields(kube_kind));
        let (name, namespace) = name_and_namespace(out, document, kind_node);
        return Some(Classified::Kubernetes(kubernetes::Resource {
            file,
            kind: kube_kind,
            kind_span: kind_node.span,
            name: name?,
            namespace,
            document,
        }));
    }
    let (group, version) = api_version
        .and_then(Node::as_str)
        .and_then(|v| v.split_once('/'))
        .unwrap_or(("", ""));
    let networking = group == "networking.istio.io" && NETWORKING.contains(&kind);
    let security = group == "security.istio.io" && SECURITY.contains(&kind);
    let telemetry = group == TELEMETRY_GROUP && kind == "Telemetry";
    if !networking && !security && !telemetry {
        let api = api_version.map_or_else(|| "no apiVersion".to_owned(), Node::display);
        out.push(
            Code::IstioOutOfScope,
            kind_node.span,
            format!("`{kind}` ({api}) is outside the Istio import's scope, ignored"),
            "the import reads VirtualService, DestinationRule, ServiceEntry, WorkloadEntry, \
             Sidecar, AuthorizationPolicy, PeerAuthentication, RequestAuthentication, Telemetry, \
             and \
             Kubernetes \
             Service, Endpoints, EndpointSlice, Pod, Deployment, StatefulSet, DaemonSet, \
             ReplicaSet, ServiceAccount and Namespace",
        );
        return None;
    }
    let versions = if telemetry {
        TELEMETRY_VERSIONS
    } else {
        VERSIONS
    };
    if !versions.contains(&version) {
        let span = api_version.map_or(kind_node.span, |n| n.span);
        out.schema(
            span,
            format!("unknown apiVersion `{group}/{version}` for `{kind}`"),
        );
        return None;
    }
    out.check_fields(
        document,
        "",
        &["apiVersion", "kind", "metadata", "spec", "status"],
    );
    let (name, namespace) = name_and_namespace(out, document, kind_node);
    let namespace_node = document.get("metadata").and_then(|m| m.get("namespace"));
    let spec = document.get("spec");
    if telemetry || kind == "Sidecar" {
        let header = security::Header {
            kind_span: kind_node.span,
            name: name?,
            namespace,
            namespace_span: namespace_node.map(|n| n.span),
        };
        let Some(spec) = spec else {
            out.schema(kind_node.span, "`spec`: required value".to_owned());
            return None;
        };
        let errors = out.error_count();
        let item = if telemetry {
            telemetry::lower(out, &header, spec)
        } else {
            sidecar::lower(out, &header, spec)
        };
        if let Some(item) = item.filter(|_| out.error_count() == errors) {
            security_items.push((file, item));
        }
        return None;
    }
    if security {
        let errors = out.error_count();
        security::validate(out, kind, spec);
        if out.error_count() > errors {
            // Istio rejects the resource; lowering it too would only repeat the errors.
            return None;
        }
        let header = security::Header {
            kind_span: kind_node.span,
            name: name?,
            namespace,
            namespace_span: namespace_node.map(|n| n.span),
        };
        let item = security::lower(out, kind, &header, spec);
        // A resource with schema errors found while lowering is left out too: never a
        // half-read policy (compilation fails anyway).
        if let Some(item) = item.filter(|_| out.error_count() == errors) {
            security_items.push((file, item));
        }
        return None;
    }
    let kind = match kind {
        "VirtualService" => Kind::VirtualService,
        "DestinationRule" => Kind::DestinationRule,
        "ServiceEntry" => Kind::ServiceEntry,
        _ => Kind::WorkloadEntry,
    };
    let Some(spec) = spec else {
        out.schema(kind_node.span, "`spec`: required value".to_owned());
        return None;
    };
    out.map(spec, "spec")?;
    Some(Classified::Istio(Resource {
        file,
        kind,
        kind_span: kind_node.span,
        name: name?,
        namespace,
        spec,
    }))
}

/// `metadata.name` (E0201 when missing) and `metadata.namespace` (default `default`).
fn name_and_namespace(
    out: &mut Out<'_>,
    document: &Node,
    kind_node: &Node,
) -> (Option<ast::Ident>, String) {
    let metadata = document.get("metadata");
    let name_node = metadata.and_then(|m| m.get("name"));
    let name = match name_node {
        Some(node) => out.str(node, "metadata.name").map(|n| ast::Ident {
            name: n.to_owned(),
            span: node.span,
        }),
        None => {
            out.schema(
                metadata.map_or(kind_node.span, |m| m.span),
                "`metadata.name`: required value".to_owned(),
            );
            None
        }
    };
    let namespace_node = metadata.and_then(|m| m.get("namespace"));
    let namespace = match namespace_node {
        Some(node) => out.str(node, "metadata.namespace").unwrap_or("default"),
        None => "default",
    }
    .to_owned();
    (name, namespace)
}

#[cfg(test)]
mod analyzer_tests;
#[cfg(test)]
mod input_tests;
#[cfg(test)]
mod tests;

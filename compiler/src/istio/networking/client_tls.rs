//! DestinationRule `trafficPolicy.tls`: how callers secure connections to a service.
//! `ISTIO_MUTUAL` and `DISABLE` are served; `SIMPLE` and `MUTUAL` (TLS origination with the
//! user's own certificates) are not modeled yet and say so.

use crate::ast;
use crate::istio::yaml::Node;
use crate::istio::Out;

const MODES: &[&str] = &["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"];

/// The served mode of a `tls` block, or `None` (with W0203 for SIMPLE/MUTUAL, E0201 for an
/// unknown mode).
pub(super) fn client_tls(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ast::UpstreamTls> {
    out.map(node, path)?;
    out.fields(
        node,
        path,
        &["mode"],
        &[
            "clientCertificate",
            "privateKey",
            "caCertificates",
            "credentialName",
            "subjectAltNames",
            "sni",
            "insecureSkipVerify",
            "caCrl",
        ],
        "ignored",
    );
    // Istio's ClientTLSSettings default: an empty `tls` block disables TLS.
    let (mode, span) = match node.get("mode") {
        None => ("DISABLE", node.span),
        Some(m) => (out.str(m, &format!("{path}.mode"))?, m.span),
    };
    match mode {
        "ISTIO_MUTUAL" => Some(ast::UpstreamTls { mutual: true, span }),
        "DISABLE" => Some(ast::UpstreamTls {
            mutual: false,
            span,
        }),
        "SIMPLE" | "MUTUAL" => {
            out.inexpressible(
                span,
                format!(
                    "`{path}.mode: {mode}` (TLS origination with your own certificates) is not \
                     supported yet: callers use the mesh's mutual TLS where the server has an \
                     identity, else plaintext"
                ),
                "terminate TLS at the service's own sidecar (ISTIO_MUTUAL), or call it in \
                 plaintext (DISABLE)",
            );
            None
        }
        other => {
            out.schema(
                span,
                format!(
                    "`{path}.mode`: unsupported value {other:?}, expected one of {}",
                    MODES.join(", ")
                ),
            );
            None
        }
    }
}

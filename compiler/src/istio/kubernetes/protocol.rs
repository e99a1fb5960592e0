//! The protocol of a Service port as Istio selects it: `appProtocol`, else the port name's
//! prefix before the first `-` (`http-web` is HTTP), else none (Istio sniffs it at run time).

use crate::diag::Span;
use crate::istio::yaml::Node;
use crate::istio::Out;

/// Protocols Istio knows that the snapshot does not model yet.
const NOT_MODELED: &[&str] = &[
    "grpc-web",
    "https",
    "tls",
    "mongo",
    "redis",
    "mysql",
    "udp",
    "http_proxy",
];

/// The mesh protocol of a Service (or EndpointSlice) port; W0203 when it is not modeled or not
/// declared (treated as tcp, as for a ServiceEntry port).
pub(super) fn of_port(out: &mut Out<'_>, port: &Node, path: &str) -> spec::Protocol {
    let app = port
        .get("appProtocol")
        .and_then(|n| Some((n.as_str()?, n.span)));
    let name = port.get("name").and_then(|n| Some((n.as_str()?, n.span)));
    let Some((written, span)) = app.or(name) else {
        return undeclared(out, port.span, path);
    };
    let lower = written.to_ascii_lowercase();
    if lower == "kubernetes.io/h2c" {
        return spec::Protocol::Http2;
    }
    // `grpc-web` contains the separator, so it is told apart before the prefix is taken.
    let prefix = if lower.starts_with("grpc-web") {
        "grpc-web"
    } else {
        lower.split('-').next().unwrap_or(&lower)
    };
    match prefix {
        "http" => spec::Protocol::Http,
        "http2" => spec::Protocol::Http2,
        "grpc" => spec::Protocol::Grpc,
        "tcp" => spec::Protocol::Tcp,
        other if NOT_MODELED.contains(&other) => {
            out.inexpressible(
                span,
                format!("protocol `{other}` of `{path}` is not modeled yet, treated as tcp"),
                "the snapshot models http, http2, grpc and tcp",
            );
            spec::Protocol::Tcp
        }
        _ if app.is_some() => {
            out.inexpressible(
                span,
                format!("`{path}.appProtocol` `{written}` is not a protocol Istio knows, treated as tcp"),
                "use http, http2, grpc or tcp",
            );
            spec::Protocol::Tcp
        }
        _ => undeclared(out, span, path),
    }
}

fn undeclared(out: &mut Out<'_>, span: Span, path: &str) -> spec::Protocol {
    out.inexpressible(
        span,
        format!(
            "`{path}` has no protocol: no `appProtocol` and no protocol prefix in its `name` \
             (Istio would detect it at run time), treated as tcp"
        ),
        "set `appProtocol: http` or name the port `http` or `http-<suffix>`",
    );
    spec::Protocol::Tcp
}

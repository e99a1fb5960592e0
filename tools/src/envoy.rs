//! Envoy static configurations for the tests and benchmarks that run a real Envoy as a peer:
//! an HTTP/1.1 listener routing everything to one cluster, optionally terminating mutual TLS,
//! and a one-endpoint cluster, optionally originating it. Certificates are the files `meshca
//! issue` writes (`cert.pem`, `key.pem`, `bundle.pem`); a peer is accepted by its URI SAN.

use std::net::SocketAddr;
use std::path::Path;

/// Mutual TLS with the certificate in `certs`, accepting only a peer whose URI SAN is `peer`:
/// TLS 1.3, ALPN http/1.1 (or h2).
#[derive(Debug, Clone, Copy)]
pub struct Mtls<'a> {
    /// The directory with `cert.pem`, `key.pem` and `bundle.pem`.
    pub certs: &'a Path,
    /// The SPIFFE ID the peer must present.
    pub peer: &'a str,
    /// HTTP/2 (ALPN `h2`) instead of HTTP/1.1; on a cluster, Envoy then speaks only HTTP/2.
    pub h2: bool,
}

impl Mtls<'_> {
    /// The `common_tls_context` block, its key indented by `indent` spaces.
    fn context(&self, indent: usize) -> String {
        let d = self.certs.display();
        let pad = " ".repeat(indent);
        [
            "common_tls_context:".to_owned(),
            "  tls_params: { tls_minimum_protocol_version: TLSv1_3, tls_maximum_protocol_version: TLSv1_3 }".to_owned(),
            format!("  alpn_protocols: [{}]", if self.h2 { "h2" } else { "http/1.1" }),
            "  tls_certificates:".to_owned(),
            format!("  - certificate_chain: {{ filename: {d}/cert.pem }}"),
            format!("    private_key: {{ filename: {d}/key.pem }}"),
            "  validation_context:".to_owned(),
            format!("    trusted_ca: {{ filename: {d}/bundle.pem }}"),
            "    match_typed_subject_alt_names:".to_owned(),
            format!("    - {{ san_type: URI, matcher: {{ exact: '{}' }} }}", self.peer),
        ]
        .iter()
        .map(|line| format!("{pad}{line}\n"))
        .collect()
    }
}

/// A listener on `listen` routing every request to `cluster`; with `tls`, it requires a client
/// certificate and tells the upstream the caller's URI in `x-forwarded-client-cert`.
pub fn listener(name: &str, listen: SocketAddr, cluster: &str, tls: Option<Mtls<'_>>) -> String {
    let (host, port) = (listen.ip(), listen.port());
    let transport = tls.map_or(String::new(), |tls| {
        format!(
            "    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
{}",
            tls.context(10)
        )
    });
    // The filters open the chain, or follow its transport socket.
    let filters = if transport.is_empty() {
        "    - filters:"
    } else {
        "      filters:"
    };
    format!(
        "  - name: {name}
    address: {{ socket_address: {{ address: {host}, port_value: {port} }} }}
    filter_chains:
{transport}{filters}
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          codec_type: HTTP1
          forward_client_cert_details: SANITIZE_SET
          set_current_client_cert_details: {{ uri: true }}
          route_config:
            virtual_hosts:
            - name: all
              domains: ['*']
              routes: [{{ match: {{ prefix: / }}, route: {{ cluster: {cluster} }} }}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              '@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"
    )
}

/// A static cluster with the one endpoint `addr`; with `tls`, connections to it are mutual TLS
/// (HTTP/2 if `tls.h2`).
pub fn cluster(name: &str, addr: SocketAddr, tls: Option<Mtls<'_>>) -> String {
    let (host, port) = (addr.ip(), addr.port());
    let protocol = if tls.is_some_and(|tls| tls.h2) {
        "    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        '@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
"
    } else {
        ""
    };
    let transport = tls.map_or(String::new(), |tls| {
        format!(
            "    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
{}",
            tls.context(8)
        )
    });
    format!(
        "  - name: {name}
    type: STATIC
    connect_timeout: 5s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: {host}, port_value: {port} }} }} }}
{protocol}{transport}"
    )
}

/// A whole bootstrap: `listeners` and `clusters` as [`listener`] and [`cluster`] write them.
pub fn bootstrap(listeners: &[String], clusters: &[String]) -> String {
    format!(
        "static_resources:\n  listeners:\n{}  clusters:\n{}",
        listeners.concat(),
        clusters.concat()
    )
}

use std::path::PathBuf;
use std::time::Duration;

use ca::{Authority, InitOptions, SpiffeId};
use rustls::{ClientConnection, ServerConnection};

use super::*;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("meshd-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA for `domain` in `dir/ca`.
fn authority(dir: &Path, domain: &str) -> Authority {
    let options = InitOptions {
        trust_domain: domain.into(),
        intermediate: true,
        root_ttl: ca::authority::DEFAULT_ROOT_TTL,
    };
    Authority::init(&dir.join("ca"), &options).unwrap()
}

/// Issues `id` from `ca` into `dir/name` and loads it.
fn identity(ca: &Authority, dir: &Path, name: &str, id: &str) -> Identity {
    let out = dir.join(name);
    let id = SpiffeId::parse(id).unwrap();
    ca.issue(&id, Duration::from_secs(3600))
        .unwrap()
        .write_to(&out)
        .unwrap();
    Identity::load(&out).unwrap()
}

const FRONTEND: &str = "spiffe://cluster.local/ns/default/sa/frontend";
const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";

/// Runs a handshake in memory until neither side has anything to send.
fn handshake(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
) -> Result<(), rustls::Error> {
    loop {
        let mut moved = false;
        let mut bytes = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut bytes).unwrap();
        }
        if !bytes.is_empty() {
            moved = true;
            server.read_tls(&mut &bytes[..]).unwrap();
            server.process_new_packets()?;
        }
        let mut bytes = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut bytes).unwrap();
        }
        if !bytes.is_empty() {
            moved = true;
            client.read_tls(&mut &bytes[..]).unwrap();
            client.process_new_packets()?;
        }
        if !moved {
            return Ok(());
        }
    }
}

fn connect(
    client: ClientConfig,
    server: ServerConfig,
) -> (
    ClientConnection,
    ServerConnection,
    Result<(), rustls::Error>,
) {
    let name = ServerName::try_from("reviews.default.svc").unwrap();
    let mut client = ClientConnection::new(Arc::new(client), name).unwrap();
    let mut server = ServerConnection::new(Arc::new(server)).unwrap();
    let result = handshake(&mut client, &mut server);
    (client, server, result)
}

#[test]
fn a_sidecar_pair_handshakes_and_each_side_learns_the_other_identity() {
    let dir = TempDir::new("pair");
    let ca = authority(&dir.0, "cluster.local");
    let frontend = identity(&ca, &dir.0, "frontend", FRONTEND);
    let reviews = identity(&ca, &dir.0, "reviews", REVIEWS);
    assert_eq!(frontend.spiffe_id, FRONTEND);
    assert_eq!(frontend.chain.len(), 2, "leaf and intermediate");
    let client = frontend.client_config(vec![REVIEWS.into()]).unwrap();
    let (client, server, result) = connect(client, reviews.server_config().unwrap());
    result.unwrap();
    assert!(!client.is_handshaking() && !server.is_handshaking());
    assert_eq!(
        client.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    // meshd's own client offers HTTP/1.1, by Istio's sidecar name first, and the server
    // takes that.
    assert_eq!(server.alpn_protocol(), Some(&b"istio-http/1.1"[..]));
    let caller = peer_spiffe_id(server.peer_certificates().unwrap());
    assert_eq!(caller.as_deref(), Some(FRONTEND));
    let callee = peer_spiffe_id(client.peer_certificates().unwrap());
    assert_eq!(callee.as_deref(), Some(REVIEWS));
}

#[test]
fn secure_naming_refuses_a_server_with_another_identity() {
    let dir = TempDir::new("naming");
    let ca = authority(&dir.0, "cluster.local");
    let frontend = identity(&ca, &dir.0, "frontend", FRONTEND);
    let impostor = identity(
        &ca,
        &dir.0,
        "impostor",
        "spiffe://cluster.local/ns/x/sa/evil",
    );
    let client = frontend.client_config(vec![REVIEWS.into()]).unwrap();
    let (_, _, result) = connect(client, impostor.server_config().unwrap());
    let error = result.unwrap_err();
    let error = NamingMismatch::in_tls_error(&error)
        .expect("a naming mismatch")
        .to_string();
    assert!(
        error.contains("secure naming: the server presented spiffe://cluster.local/ns/x/sa/evil"),
        "{error}"
    );
    assert!(error.contains(REVIEWS), "{error}");
}

#[test]
fn a_caller_without_a_certificate_or_from_another_ca_is_refused() {
    let dir = TempDir::new("strangers");
    let ca = authority(&dir.0, "cluster.local");
    let reviews = identity(&ca, &dir.0, "reviews", REVIEWS);
    // No client certificate at all.
    let anonymous = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SecureNaming {
            roots: reviews.roots.clone(),
            expected: vec![REVIEWS.into()],
            provider: provider(),
        }))
        .with_no_client_auth();
    let (_, _, result) = connect(anonymous, reviews.server_config().unwrap());
    assert!(
        result.is_err(),
        "a caller without a certificate got through"
    );
    // A certificate from another CA, with the very same SPIFFE ID.
    let other_dir = TempDir::new("other-ca");
    let other = authority(&other_dir.0, "cluster.local");
    let forged = identity(&other, &other_dir.0, "frontend", FRONTEND);
    let client = forged.client_config(vec![REVIEWS.into()]).unwrap();
    let (_, _, result) = connect(client, reviews.server_config().unwrap());
    assert!(result.is_err(), "a foreign CA's certificate got through");
}

#[test]
fn loading_refuses_missing_files_and_a_key_that_does_not_match() {
    let dir = TempDir::new("load");
    let ca = authority(&dir.0, "cluster.local");
    let missing = Identity::load(&dir.0.join("nowhere")).unwrap_err();
    assert!(matches!(missing, TlsError::Read { .. }), "{missing}");
    identity(&ca, &dir.0, "a", FRONTEND);
    identity(&ca, &dir.0, "b", REVIEWS);
    std::fs::copy(dir.0.join("b/key.pem"), dir.0.join("a/key.pem")).unwrap();
    let mismatched = Identity::load(&dir.0.join("a")).unwrap_err();
    assert!(matches!(mismatched, TlsError::Rustls(_)), "{mismatched}");
    // A bundle from another CA: the certificate does not chain to it.
    let other_dir = TempDir::new("load-other");
    let other = authority(&other_dir.0, "cluster.local");
    identity(&other, &other_dir.0, "c", REVIEWS);
    std::fs::copy(other_dir.0.join("c/bundle.pem"), dir.0.join("b/bundle.pem")).unwrap();
    let foreign = Identity::load(&dir.0.join("b")).unwrap_err();
    assert!(matches!(foreign, TlsError::Untrusted { .. }), "{foreign}");
    std::fs::write(dir.0.join("b/bundle.pem"), "").unwrap();
    let empty = Identity::load(&dir.0.join("b")).unwrap_err();
    assert!(empty.to_string().contains("no certificate"), "{empty}");
}

#[test]
fn client_configurations_are_shared_per_identity_list_and_dropped_when_unused() {
    let dir = TempDir::new("clients");
    let ca = authority(&dir.0, "cluster.local");
    let core = CoreTls::new(Arc::new(identity(&ca, &dir.0, "frontend", FRONTEND))).unwrap();
    let reviews = vec![REVIEWS.to_owned()];
    let ratings = vec!["spiffe://cluster.local/ns/default/sa/ratings".to_owned()];
    let first = core.client(&reviews).unwrap();
    assert!(Arc::ptr_eq(&first, &core.client(&reviews).unwrap()));
    core.client(&ratings).unwrap();
    assert_eq!(core.clients_built(), 2);
    // A route state that calls only `reviews`: the `ratings` configuration goes.
    core.keep_clients([reviews.as_slice()]);
    assert_eq!(core.clients_built(), 1);
    assert!(Arc::ptr_eq(&first, &core.client(&reviews).unwrap()));
    core.keep_clients([]);
    assert_eq!(core.clients_built(), 0);
}

/// The ClientHello a client with `config` offering `alpn` sends first.
fn client_hello(alpn: &[&[u8]]) -> Vec<u8> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from("app.example").unwrap();
    let offered = alpn.iter().map(|p| p.to_vec()).collect();
    let mut client = ClientConnection::new_with_alpn(Arc::new(config), name, offered).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    hello
}

#[test]
fn a_client_hello_is_the_meshs_by_its_alpn_whole_or_not_yet() {
    let mesh = client_hello(&[b"istio-http/1.1", b"http/1.1"]);
    assert_eq!(offers_mesh_alpn(&mesh), Some(true));
    assert_eq!(offers_mesh_alpn(&client_hello(TCP_OFFER)), Some(true));
    assert_eq!(
        offers_mesh_alpn(&client_hello(&[b"h2", b"http/1.1"])),
        Some(false)
    );
    assert_eq!(offers_mesh_alpn(&client_hello(&[])), Some(false));
    assert_eq!(
        offers_mesh_alpn(&mesh[..mesh.len() / 2]),
        None,
        "half a hello"
    );
    assert_eq!(offers_mesh_alpn(b"\x16\x03\x01\x00\x05hello"), Some(false));
}

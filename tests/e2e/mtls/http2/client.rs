//! An HTTP/2 client of the tests' own, the h2 crate over rustls with A's certificate (or in
//! h2c), for what curl cannot be told to do: reset a stream, keep a window shut, repeat a header, or
//! stay silent after the preface.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::SendStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// Longest any one step waits for the sidecar.
const STEP: Duration = Duration::from_secs(30);

/// One HTTP/2 connection, driven by a runtime thread of its own.
pub(super) struct H2Client {
    runtime: Runtime,
    requests: SendRequest<Bytes>,
    connection: JoinHandle<Result<(), h2::Error>>,
}

impl H2Client {
    /// Connects to `addr` with the certificate in `certs` (`cert.pem`, `key.pem`), giving the
    /// server `window` bytes of flow-control window per stream.
    pub(super) fn connect(addr: std::net::SocketAddr, certs: &Path, window: u32) -> Self {
        let certs = certs.to_owned();
        Self::start(async move {
            let tls = connect_tls(addr, &certs).await;
            h2::client::Builder::new()
                .initial_window_size(window)
                .handshake::<_, Bytes>(tls)
                .await
                .expect("an h2 handshake")
        })
    }

    /// A connection to `addr` in h2c with prior knowledge (plaintext), as an application
    /// calls its sidecar's outbound listener.
    pub(super) fn connect_h2c(addr: std::net::SocketAddr, window: u32) -> Self {
        Self::start(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            h2::client::Builder::new()
                .initial_window_size(window)
                .handshake::<_, Bytes>(tcp)
                .await
                .expect("an h2 handshake")
        })
    }

    /// The client of the connection `handshake` makes, on a runtime of its own.
    fn start<T, H>(handshake: H) -> Self
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        H: Future<Output = (SendRequest<Bytes>, h2::client::Connection<T, Bytes>)>,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let (requests, connection) = runtime.block_on(within(handshake));
        let connection = runtime.spawn(connection);
        Self {
            runtime,
            requests,
            connection,
        }
    }

    /// Opens a stream for `request`, ending it at once if `end`; `None` once the server
    /// refuses new streams (after its GOAWAY).
    pub(super) fn open(
        &mut self,
        request: http::Request<()>,
        end: bool,
    ) -> Option<(ResponseFuture, SendStream<Bytes>)> {
        let requests = self.requests.clone();
        let mut ready = self.runtime.block_on(within(requests.ready())).ok()?;
        ready.send_request(request, end).ok()
    }

    /// Runs `step` on the connection's runtime, failing the test if it takes over 30 s.
    pub(super) fn run<F: Future>(&self, step: F) -> F::Output {
        self.runtime.block_on(within(step))
    }

    /// Whether the connection has ended.
    pub(super) fn is_closed(&self) -> bool {
        self.connection.is_finished()
    }

    /// Waits for the connection to end; how it ended.
    pub(super) fn closed(self) -> Result<(), h2::Error> {
        let Self {
            runtime,
            requests,
            connection,
        } = self;
        drop(requests);
        runtime
            .block_on(within(connection))
            .expect("the connection task")
    }
}

/// A client that sends the HTTP/2 preface and an empty SETTINGS, then only reads: it never
/// acknowledges, answers a PING or closes. The types of the frames the server sent until it
/// closed the connection (failing the test if that takes over 30 s).
pub(super) fn silent_client_frames(addr: std::net::SocketAddr, certs: &Path) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(within(async move {
        let mut tls = connect_tls(addr, certs).await;
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("the preface");
        // SETTINGS: length 0, type 4, no flags, stream 0.
        tls.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
            .await
            .expect("SETTINGS");
        tls.flush().await.expect("a flush");
        let mut received = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n @ 1..) = tls.read(&mut buf).await {
            received.extend_from_slice(&buf[..n]);
        }
        let mut types = Vec::new();
        let mut at = 0;
        while let Some(header) = received.get(at..at + 9) {
            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            types.push(header[3]);
            at += 9 + len;
        }
        types
    }))
}

/// A TLS 1.3 connection to `addr` offering ALPN `h2` with the certificate in `certs`; the
/// server must pick `h2`.
async fn connect_tls(
    addr: std::net::SocketAddr,
    certs: &Path,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let config = Arc::new(client_config(certs));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("reviews").expect("a name");
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("a TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls
}

async fn within<F: Future>(step: F) -> F::Output {
    tokio::time::timeout(STEP, step)
        .await
        .expect("the sidecar did not answer within 30 s")
}

fn client_config(certs: &Path) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_file_iter(certs.join("cert.pem"))
        .expect("cert.pem")
        .collect::<Result<Vec<_>, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(certs.join("key.pem")).expect("key.pem");
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_client_auth_cert(chain, key)
        .expect("a client certificate");
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// Takes any server certificate: these tests are about HTTP/2, and secure naming has its own.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        verify_tls12_signature(message, cert, signature, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        verify_tls13_signature(message, cert, signature, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

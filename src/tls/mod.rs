//! TLS with rustls: server configurations for the HTTP API (`-http-*`) and the Raft port
//! (`-node-*`), client configurations for forwarding, node-to-node calls and the shell, and
//! the process-wide node transport ([`node`]) every node-to-node call goes through.
//!
//! Owns: reading PEM certificates, keys and CAs (an unreadable or malformed file is an error
//! naming it, so the node refuses to start), certificates and keys followed on disk and
//! reloaded when renewed ([`reload`]), mutual TLS (a server with `verify_client` accepts only
//! clients whose certificate chains to its CA, and with `verify_common_name` only those whose
//! subject carries that Common Name, [`common_name`]), and the client-side choices: trust the
//! given CA (else the bundled web PKI roots), present a certificate, skip verification
//! (`-node-no-verify`, `-i`), or verify a fixed host name (`-node-verify-server-name`).
//!
//! The node transport is set once at start-up, before any node-to-node call, and read
//! everywhere after: the Raft client, joins, loads pulling staged files, `/nodes` probes. A
//! process runs one node, so one value is right; processes that never set it (tests that run
//! a store in-process) get plain HTTP.

pub mod common_name;
pub mod reload;

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, bail, Context as _};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// A server's certificate, key, and client verification.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA that client certificates must chain to (required with `verify_client`).
    pub ca: Option<PathBuf>,
    pub verify_client: bool,
    /// The subject Common Name client certificates must carry (`-http-verify-common-name`,
    /// `-node-verify-common-name`); needs `verify_client`.
    pub verify_common_name: Option<String>,
}

/// What a client trusts and presents.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// The CA the server's certificate must chain to; `None`: the bundled web PKI roots.
    pub ca: Option<PathBuf>,
    /// Certificate and key to present (mutual TLS).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Accept any server certificate (`-node-no-verify`, the shell's `-i`).
    pub insecure: bool,
    /// Verify this name instead of the host in the URL (`-node-verify-server-name`).
    pub server_name: Option<String>,
}

fn read_certs(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("read the {what} {}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<_, _>>()
        .with_context(|| format!("the {what} {} is not valid PEM", path.display()))?;
    if certs.is_empty() {
        bail!("the {what} {} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

fn read_key(path: &Path, what: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("read the {what} {}", path.display()))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .with_context(|| format!("the {what} {} is not valid PEM", path.display()))?
        .ok_or_else(|| anyhow!("the {what} {} holds no PEM private key", path.display()))
}

fn read_roots(path: &Path, what: &str) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, what)? {
        roots
            .add(cert)
            .with_context(|| format!("the {what} {} is not a usable CA", path.display()))?;
    }
    Ok(Arc::new(roots))
}

/// A certificate chain and its key, checked to belong together.
fn certified_key(
    cert: &Path,
    key: &Path,
    what: &str,
) -> anyhow::Result<rustls::sign::CertifiedKey> {
    let certs = read_certs(cert, &format!("{what} certificate"))?;
    let private = read_key(key, &format!("{what} private key"))?;
    rustls::sign::CertifiedKey::from_der(certs, private, &provider()).with_context(|| {
        format!(
            "the {what} certificate {} and key {} do not form a usable pair",
            cert.display(),
            key.display()
        )
    })
}

/// A server configuration; `what` names the flag family in errors ("HTTPS", "node"). The
/// certificate and key are reloaded when their files change.
pub fn server_config(opts: &ServerTls, what: &str) -> anyhow::Result<ServerConfig> {
    let certified = reload::ReloadingCert::load(opts.cert.clone(), opts.key.clone(), what)?;
    let builder = ServerConfig::builder();
    let builder = if opts.verify_client {
        let Some(ca) = &opts.ca else {
            bail!("verifying {what} client certificates needs a CA certificate to verify them with (-{}-ca-cert)", flag_prefix(what));
        };
        let roots = read_roots(ca, &format!("{what} CA certificate"))?;
        let verifier = WebPkiClientVerifier::builder(roots)
            .build()
            .with_context(|| format!("the {what} CA certificate {}", ca.display()))?;
        match &opts.verify_common_name {
            Some(name) => {
                builder.with_client_cert_verifier(Arc::new(common_name::CommonNameVerifier {
                    inner: verifier,
                    common_name: name.clone(),
                }))
            }
            None => builder.with_client_cert_verifier(verifier),
        }
    } else {
        if opts.verify_common_name.is_some() {
            bail!(
                "-{}-verify-common-name needs -{}-verify-client",
                flag_prefix(what),
                flag_prefix(what)
            );
        }
        builder.with_no_client_auth()
    };
    let mut config = builder.with_cert_resolver(Arc::new(certified));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn flag_prefix(what: &str) -> &'static str {
    if what == "HTTPS" {
        "http"
    } else {
        "node"
    }
}

/// A client configuration; `what` names the flag family in errors.
pub fn client_config(opts: &ClientTls, what: &str) -> anyhow::Result<ClientConfig> {
    let roots = match &opts.ca {
        Some(ca) => read_roots(ca, &format!("{what} CA certificate"))?,
        None => Arc::new(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
    };
    let builder = if opts.insecure {
        ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider())))
    } else if let Some(name) = &opts.server_name {
        let name = ServerName::try_from(name.clone())
            .map_err(|e| anyhow!("invalid server name to verify {name:?}: {e}"))?;
        let inner = WebPkiServerVerifier::builder(roots).build()?;
        ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(FixedServerName { inner, name }))
    } else {
        ClientConfig::builder().with_root_certificates(roots)
    };
    let config = match &opts.identity {
        Some((cert, key)) => builder.with_client_cert_resolver(Arc::new(
            reload::ReloadingCert::load(cert.clone(), key.clone(), &format!("{what} client"))?,
        )),
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// `-node-no-verify`: any certificate is accepted, signatures are still checked.
#[derive(Debug)]
struct AcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `-node-verify-server-name`: the usual verification, against a fixed name.
#[derive(Debug)]
struct FixedServerName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for FixedServerName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// How this node talks to other nodes' Raft ports.
#[derive(Debug, Clone, Default)]
pub struct NodeTransport {
    /// `None`: plain HTTP.
    tls: Option<ClientConfig>,
    /// `Authorization` header every node-to-node request carries, from `-join-as`: how this
    /// node proves it is a member when the others run with `-auth`.
    authorization: Option<String>,
}

impl NodeTransport {
    pub fn new(tls: Option<ClientConfig>, authorization: Option<String>) -> NodeTransport {
        NodeTransport { tls, authorization }
    }

    /// A client builder with this transport's TLS settings and credentials.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder();
        if let Some(value) = self
            .authorization
            .as_deref()
            .and_then(|a| reqwest::header::HeaderValue::from_str(a).ok())
        {
            let mut value = value;
            value.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, value);
            builder = builder.default_headers(headers);
        }
        match &self.tls {
            Some(tls) => builder.use_preconfigured_tls(tls.clone()),
            None => builder,
        }
    }

    /// `scheme://addr/path` for a peer's Raft address.
    pub fn url(&self, raft_addr: &str, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{raft_addr}{path}")
    }

    /// The credentials cluster requests carry (`-join-as`), as a header value.
    pub fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref()
    }
}

static NODE_TRANSPORT: OnceLock<NodeTransport> = OnceLock::new();

/// Sets the node transport; only the first call counts (one node per process).
pub fn set_node_transport(transport: NodeTransport) {
    let _ = NODE_TRANSPORT.set(transport);
}

/// The node transport (plain HTTP when never set).
pub fn node() -> &'static NodeTransport {
    NODE_TRANSPORT.get_or_init(NodeTransport::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for 127.0.0.1, written as PEM files in `dir`.
    fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key_pair.serialize_pem()).unwrap();
        (c, k)
    }

    /// Runs a TLS handshake in memory; the error text when it fails.
    fn handshake(client: ClientConfig, server: ServerConfig) -> Result<(), String> {
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        for _ in 0..20 {
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets().map_err(|e| e.to_string())?;
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            c.read_tls(&mut &buf[..]).unwrap();
            c.process_new_packets().map_err(|e| e.to_string())?;
        }
        Err("handshake did not finish".into())
    }

    #[test]
    fn no_verify_accepts_an_unknown_issuer_and_verify_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path());
        let server = || {
            server_config(
                &ServerTls {
                    cert: cert.clone(),
                    key: key.clone(),
                    ca: None,
                    verify_client: false,
                    verify_common_name: None,
                },
                "node",
            )
            .unwrap()
        };
        let strict = client_config(&ClientTls::default(), "node").unwrap();
        let err = handshake(strict, server()).unwrap_err();
        assert!(err.contains("UnknownIssuer"), "{err}");
        let lax = client_config(
            &ClientTls {
                insecure: true,
                ..Default::default()
            },
            "node",
        )
        .unwrap();
        handshake(lax, server()).unwrap();
        // Trusting the certificate itself as the CA works too.
        let trusting = client_config(
            &ClientTls {
                ca: Some(cert.clone()),
                ..Default::default()
            },
            "node",
        )
        .unwrap();
        handshake(trusting, server()).unwrap();
    }

    #[test]
    fn mutual_tls_needs_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path());
        let err = server_config(
            &ServerTls {
                cert,
                key,
                ca: None,
                verify_client: true,
                verify_common_name: None,
            },
            "HTTPS",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("-http-ca-cert"), "{err}");
    }
}

//! Optional mutual TLS for the actor transport (rustls through ractor_cluster).
//!
//! Every node presents its certificate and checks the peer's against the cluster CA, in both
//! directions. Certificates must name the node's transport IP address (an IP SAN), because that
//! is the name a dialing node checks.

use std::{net::IpAddr, path::PathBuf, sync::Arc};

use tokio_rustls::{
    rustls::{
        self,
        pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
        server::WebPkiClientVerifier,
        ClientConfig, RootCertStore, ServerConfig,
    },
    TlsAcceptor, TlsConnector,
};

use crate::error::RuntimeError;

/// PEM files for the actor transport's mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate chain.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
    /// The CA that signs every node's certificate.
    pub ca: PathBuf,
}

pub(crate) struct Tls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) connector: TlsConnector,
}

fn bad(path: &std::path::Path, what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Config(format!("TLS {what} '{}': {e}", path.display()))
}

impl Tls {
    pub(crate) fn load(files: &TlsFiles) -> Result<Tls, RuntimeError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .map_err(|e| bad(&files.cert, "certificate", e))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(&files.cert, "certificate", e))?;
        if certs.is_empty() {
            return Err(bad(
                &files.cert,
                "certificate",
                "no certificate in the file",
            ));
        }
        let key =
            PrivateKeyDer::from_pem_file(&files.key).map_err(|e| bad(&files.key, "key", e))?;
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(&files.ca).map_err(|e| bad(&files.ca, "CA", e))? {
            let ca = ca.map_err(|e| bad(&files.ca, "CA", e))?;
            roots.add(ca).map_err(|e| bad(&files.ca, "CA", e))?;
        }
        if roots.is_empty() {
            return Err(bad(&files.ca, "CA", "no certificate in the file"));
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());

        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| bad(&files.ca, "CA", e))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| RuntimeError::Config(format!("TLS: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| bad(&files.key, "key", e))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| RuntimeError::Config(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| bad(&files.key, "key", e))?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }
}

/// The TLS name a dialing node checks: the peer's IP address.
pub(crate) fn server_name(ip: IpAddr) -> ServerName<'static> {
    ServerName::IpAddress(ip.into())
}

//! The rustls configuration a [`crate::Client`] connects with. Only the ring
//! provider is used.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::Error;

/// How the client checks the server's certificate.
#[derive(Clone, Debug, Default)]
pub(crate) enum Trust {
    /// The operating system's trust store.
    #[default]
    System,
    /// Only the certificates of a PEM bundle.
    CaBundle(CaBundle),
    /// No check at all: for a throwaway test stack only.
    Insecure,
    /// A configuration the caller built (its ALPN is set to HTTP/1.1).
    Custom(Arc<ClientConfig>),
}

/// The certificates of a CA file, and its path for error messages.
#[derive(Clone, Debug)]
pub(crate) struct CaBundle {
    path: Arc<Path>,
    certs: Vec<CertificateDer<'static>>,
}

/// What a client checks the server's certificate against, as a certificate
/// error names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TrustedBy {
    System,
    CaFile(Arc<Path>),
    /// A rustls configuration of the caller's own, or no check at all.
    Caller,
}

impl Trust {
    pub(crate) fn trusted_by(&self) -> TrustedBy {
        match self {
            Trust::System => TrustedBy::System,
            Trust::CaBundle(bundle) => TrustedBy::CaFile(bundle.path.clone()),
            Trust::Insecure | Trust::Custom(_) => TrustedBy::Caller,
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM bundle.
pub(crate) fn read_ca_bundle(path: &Path) -> Result<CaBundle, Error> {
    let pem = std::fs::read(path).map_err(|e| Error::Config(format!("reading CA file {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("CA file {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!("CA file {} holds no PEM certificate", path.display())));
    }
    Ok(CaBundle { path: Arc::from(path), certs })
}

/// Builds the rustls configuration for `trust`, speaking HTTP/1.1 over TLS 1.2+.
pub(crate) fn client_config(trust: &Trust) -> Result<ClientConfig, Error> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?;
    let mut config = match trust {
        Trust::Custom(config) => (**config).clone(),
        Trust::System => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)
                .map_err(|e| Error::Config(format!("TLS: loading the system trust store: {e}")))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
        }
        Trust::CaBundle(bundle) => {
            let mut roots = RootCertStore::empty();
            for cert in &bundle.certs {
                roots.add(cert.clone()).map_err(|e| Error::Config(format!("TLS: CA certificate: {e}")))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Insecure => {
            tracing::warn!("TLS certificate verification is disabled: the server's identity is not checked");
            let verifier = AcceptAnyCertificate { algorithms: provider.signature_verification_algorithms };
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
        }
    };
    // The HTTP client speaks HTTP/1.1 only (SSE needs nothing more).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts any certificate, but still checks that the handshake is signed
/// by the key in it (so the connection is encrypted to whoever answered).
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_without_certificates_is_refused() {
        let path = std::env::temp_dir().join(format!("berth-client-empty-ca-{}", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = read_ca_bundle(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(err.to_string().contains("holds no PEM certificate"), "{err}");
    }

    #[test]
    fn missing_ca_file_names_the_path() {
        let err = read_ca_bundle(Path::new("/nonexistent/ca.crt")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
    }

    #[test]
    fn every_trust_mode_builds_a_config() {
        for trust in [Trust::System, Trust::Insecure] {
            let config = client_config(&trust).unwrap();
            assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        }
    }
}

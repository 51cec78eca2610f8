//! TLS for the PostgreSQL listener (`[queryd].tls_cert`, `tls_key`).
//!
//! With a certificate, an `SSLRequest` is answered `S` and the connection
//! continues over TLS (`sslmode=require`, `verify-full`); a direct TLS
//! start (PostgreSQL 17's `sslnegotiation=direct`) is accepted with the
//! `postgresql` ALPN protocol, and a `GSSENCRequest` is declined (`N`).
//! Plaintext clients still connect unless TLS is required, in which case
//! their start-up gets a FATAL `28000` ([`crate::startup`]). Without a
//! certificate an `SSLRequest` is answered `N`, as before.
//!
//! The rustls crypto provider is the process default, installing *ring*'s
//! when none is installed yet ([`crypto_provider`]), so every TLS listener
//! of the process uses the same one.

use std::sync::Arc;

use pgwire::tokio::TlsAcceptor;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocol name PostgreSQL clients offer (libpq 17 and later).
const POSTGRESQL_ALPN: &[u8] = b"postgresql";

/// Why a certificate or key cannot be served; the variant says which file
/// is at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file holds no `CERTIFICATE` PEM section.
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) in it")]
    NoCertificate,
    /// The certificate file is not valid PEM.
    #[error("invalid PEM certificate: {0}")]
    Certificate(#[source] pem::Error),
    /// The key file holds no private-key PEM section.
    #[error("no PEM private key (PKCS#8, PKCS#1 or SEC1) in it")]
    NoKey,
    /// The key file is not valid PEM.
    #[error("invalid PEM private key: {0}")]
    Key(#[source] pem::Error),
    /// The key does not go with the certificate, or rustls cannot use it.
    #[error("the key and certificate cannot be served together: {0}")]
    Mismatch(#[source] rustls::Error),
}

/// The process-default rustls crypto provider, installing *ring*'s when
/// none is installed yet (never panics when another part of the process
/// installed one first: that one is used).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    if let Some(p) = CryptoProvider::get_default() {
        return p.clone();
    }
    // A concurrent install may win the race: either way one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// The certificate chain (leaf first) in a PEM file's contents.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::Certificate)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

/// The first private key in a PEM file's contents.
pub fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey,
        e => TlsError::Key(e),
    })
}

/// The PostgreSQL listener's TLS: the server certificate and whether a
/// plaintext start-up is refused.
#[derive(Clone)]
pub struct PgTls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) required: bool,
}

impl PgTls {
    /// Serves `cert_pem` (chain, leaf first) with `key_pem`; `required`
    /// refuses plaintext clients.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], required: bool) -> Result<Self, TlsError> {
        let certs = certificates(cert_pem)?;
        let key = private_key(key_pem)?;
        let mut config = ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Mismatch)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(TlsError::Mismatch)?;
        config.alpn_protocols = vec![POSTGRESQL_ALPN.to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            required,
        })
    }

    /// Whether a plaintext start-up is refused.
    pub fn required(&self) -> bool {
        self.required
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        (c.cert.pem(), c.key_pair.serialize_pem())
    }

    #[test]
    fn a_certificate_and_its_key_are_served() {
        let (cert, key) = self_signed();
        let tls = PgTls::from_pem(cert.as_bytes(), key.as_bytes(), true).unwrap();
        assert!(tls.required());
        // One file holding both works too.
        let both = format!("{key}{cert}");
        PgTls::from_pem(both.as_bytes(), both.as_bytes(), false).unwrap();
    }

    #[test]
    fn each_bad_file_is_named_by_its_variant() {
        let (cert, key) = self_signed();
        let (other_cert, _) = self_signed();
        let err = |c: &str, k: &str| PgTls::from_pem(c.as_bytes(), k.as_bytes(), false).err();
        assert!(matches!(err("", &key), Some(TlsError::NoCertificate)));
        assert!(matches!(err(&key, &key), Some(TlsError::NoCertificate)));
        assert!(matches!(err(&cert, &cert), Some(TlsError::NoKey)));
        assert!(matches!(err(&cert, "garbage"), Some(TlsError::NoKey)));
        let truncated = &cert[..cert.len() / 2];
        assert!(matches!(
            err(truncated, &key),
            Some(TlsError::Certificate(_))
        ));
        let bad_base64 = cert.replacen('M', "!", 3);
        assert!(matches!(
            err(&bad_base64, &key),
            Some(TlsError::Certificate(_))
        ));
        assert!(matches!(
            err(&other_cert, &key),
            Some(TlsError::Mismatch(_))
        ));
    }

    #[test]
    fn the_provider_is_installed_once_and_kept() {
        let a = crypto_provider();
        let b = crypto_provider();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(CryptoProvider::get_default().is_some());
    }
}

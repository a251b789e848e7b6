//! TLS for the gRPC listener (rustls with the ring provider, through
//! tonic), optionally mutual: with a client CA, a client must present a
//! certificate that CA signed or the handshake fails.
//!
//! The PEM inputs are parsed here, once, so that a bad file is reported by
//! name before the server binds, instead of as an opaque transport error.
//!
//! The private key's PEM is held in a [`Zeroizing`] buffer, wiped when the
//! last [`TlsConfig`] holding it is dropped. What this cannot wipe: tonic's
//! `Identity` copies the PEM into a plain buffer when the acceptor is built
//! (freed, not wiped, once the acceptor has parsed it), and rustls keeps the
//! parsed key for the server's lifetime, as it must to sign handshakes.

use merklog_sth::Zeroizing;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// A TLS handshake that has not finished within this long is dropped, so
/// that idle half-open connections cannot pile up.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The listener's certificate and key, and the CA that client certificates
/// must chain to when mutual TLS is on.
#[derive(Clone)]
pub struct TlsConfig {
    cert_chain_pem: Vec<u8>,
    key_pem: Zeroizing<Vec<u8>>,
    client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsConfig {
    // The private key stays out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("mutual", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// A PEM input that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {what} is not usable: {reason}")]
pub struct TlsInputError {
    /// Which input: "certificate chain", "private key" or "client CA bundle".
    pub what: &'static str,
    pub reason: String,
}

impl TlsConfig {
    /// Returns the configuration from PEM text: the listener's certificate
    /// chain (leaf first), its private key (PKCS#8, PKCS#1 or SEC1), and,
    /// for mutual TLS, the CA certificates client certificates must chain to.
    /// `key_pem` is moved in (a `String` or `Vec` gives up its buffer without
    /// a copy) and wiped when the configuration is dropped.
    ///
    /// # Errors
    /// [`TlsInputError`] naming the input that holds no certificate or key,
    /// or malformed PEM.
    pub fn from_pem(
        cert_chain_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
        client_ca_pem: Option<Vec<u8>>,
    ) -> Result<Self, TlsInputError> {
        let config = TlsConfig {
            cert_chain_pem: cert_chain_pem.into(),
            key_pem: Zeroizing::new(key_pem.into()),
            client_ca_pem,
        };
        certificates(&config.cert_chain_pem, "certificate chain")?;
        PrivateKeyDer::from_pem_slice(&config.key_pem).map_err(|e| TlsInputError {
            what: "private key",
            reason: format!("no PEM private key found ({e})"),
        })?;
        if let Some(ca) = &config.client_ca_pem {
            certificates(ca, "client CA bundle")?;
        }
        Ok(config)
    }

    /// Returns true when clients must present a certificate.
    pub fn is_mutual(&self) -> bool {
        self.client_ca_pem.is_some()
    }

    /// Returns tonic's acceptor settings. They hold a plain copy of the key
    /// PEM (tonic's `Identity` takes no other form): build the acceptor from
    /// them at once and drop them.
    pub(crate) fn to_tonic(&self) -> ServerTlsConfig {
        let mut tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                &self.cert_chain_pem,
                self.key_pem.as_slice(),
            ))
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some(ca) = &self.client_ca_pem {
            // Not optional: a client without a certificate signed by this CA
            // fails the handshake and never reaches a service.
            tls = tls
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(false);
        }
        tls
    }
}

/// Parses every certificate of a PEM bundle; at least one.
fn certificates(
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsInputError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsInputError {
            what,
            reason: format!("malformed PEM ({e})"),
        })?;
    if certs.is_empty() {
        return Err(TlsInputError {
            what,
            reason: "no `BEGIN CERTIFICATE` block found".into(),
        });
    }
    Ok(certs)
}

/// Returns the lowercase hex SHA-256 of a DER certificate, as `cert_sha256`
/// in the auth file expects it (and as `openssl x509 -fingerprint -sha256`
/// prints it, without the colons).
pub fn cert_fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Returns the fingerprint of the first (leaf) certificate of a PEM file.
///
/// # Errors
/// [`TlsInputError`] when the text holds no certificate.
pub fn leaf_fingerprint_from_pem(pem: &[u8]) -> Result<String, TlsInputError> {
    let certs = certificates(pem, "certificate")?;
    Ok(cert_fingerprint(&certs[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_without_pem_blocks_are_named() {
        let e = TlsConfig::from_pem("not pem", "not pem", None).unwrap_err();
        assert_eq!(e.what, "certificate chain");
        let e = leaf_fingerprint_from_pem(b"-----BEGIN PRIVATE KEY-----\n").unwrap_err();
        assert_eq!(e.what, "certificate");
    }

    #[test]
    fn generated_certificates_parse_and_fingerprint_their_leaf() {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let config = TlsConfig::from_pem(
            cert.pem(),
            signing_key.serialize_pem(),
            Some(cert.pem().into()),
        )
        .unwrap();
        assert!(config.is_mutual());
        assert!(!format!("{config:?}").contains("PRIVATE"));
        let e = TlsConfig::from_pem(cert.pem(), cert.pem(), None).unwrap_err();
        assert_eq!(e.what, "private key");
        // A chain's fingerprint is its leaf's.
        let chain = format!(
            "{}{}",
            cert.pem(),
            rcgen::generate_simple_self_signed(vec!["x".to_owned()])
                .unwrap()
                .cert
                .pem()
        );
        assert_eq!(
            leaf_fingerprint_from_pem(chain.as_bytes()).unwrap(),
            cert_fingerprint(cert.der())
        );
    }

    #[test]
    fn fingerprints_are_sha256_of_the_der() {
        // SHA-256 of the empty string, from FIPS 180-2 examples.
        assert_eq!(
            cert_fingerprint(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

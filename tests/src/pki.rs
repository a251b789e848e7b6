//! A certificate authority made at test time, issuing server certificates
//! for 127.0.0.1 and localhost and client certificates for mutual TLS.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// A certificate and its private key, in PEM, and the certificate's DER.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Issued {
    /// Returns the pair as a tonic identity.
    pub fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

/// A self-signed CA.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// Returns a new CA named `name`.
    ///
    /// # Panics
    /// When rcgen cannot make a key or certificate (a broken build).
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names to check");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("a CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("a CA certificate"),
        }
    }

    /// Returns the CA's certificate in PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Returns the CA's certificate as tonic takes it.
    pub fn certificate(&self) -> Certificate {
        Certificate::from_pem(self.cert_pem())
    }

    /// Issues a server certificate valid for 127.0.0.1 and localhost.
    pub fn server(&self) -> Issued {
        self.issue(
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            "merklog test server",
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// Issues a client certificate with common name `name`.
    pub fn client(&self, name: &str) -> Issued {
        self.issue(Vec::new(), name, ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// Returns client settings that trust this CA, presenting `identity`.
    pub fn client_tls(&self, identity: Option<&Issued>) -> ClientTlsConfig {
        let tls = ClientTlsConfig::new().ca_certificate(self.certificate());
        match identity {
            Some(id) => tls.identity(id.identity()),
            None => tls,
        }
    }

    fn issue(
        &self,
        names: Vec<String>,
        common_name: &str,
        usage: ExtendedKeyUsagePurpose,
    ) -> Issued {
        let mut params = CertificateParams::new(names).expect("valid test names");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

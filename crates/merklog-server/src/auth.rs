//! Who may append and read: bearer tokens, kept in the configuration only as
//! SHA-256 hashes, and client certificates (with mutual TLS), known by the
//! SHA-256 fingerprint of their DER encoding; each names a client and its
//! role.
//!
//! A certificate the rules know identifies the client; otherwise the bearer
//! token does, as without TLS. A certificate the rules do not know grants
//! nothing by itself: the handshake only proved that the client CA signed it.
//!
//! Every refusal and every granted append is logged under the target
//! `merklog::access` with the client's name (or the peer's address), the
//! method and the reason: access to the log is itself audited. Refusals are
//! logged once per address and minute, with the count left out since
//! ([`crate::refusals`]); the metrics count every one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;

use crate::refusals::{RefusalLog, Verdict};
use crate::status::ServiceError;

/// What a client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May call the read methods.
    Reader,
    /// May append, and read.
    Writer,
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Append,
}

/// The access rules: which token hashes and certificate fingerprints belong
/// to which client.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// By SHA-256 of the bearer token.
    clients: HashMap<[u8; 32], (String, Role)>,
    /// By SHA-256 of the client certificate's DER encoding.
    certificates: HashMap<[u8; 32], (String, Role)>,
    /// Reads need a reader (or writer) token too.
    pub require_read_token: bool,
    /// No tokens configured: anyone may append (development only).
    open: bool,
    /// Which refusals are logged; shared by the clones of one configuration.
    refusals: Arc<RefusalLog>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    require_read_token: bool,
    #[serde(default, rename = "client")]
    clients: Vec<ClientEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientEntry {
    name: String,
    role: Role,
    /// Hex SHA-256 of the bearer token.
    token_sha256: Option<String>,
    /// Hex SHA-256 of the client certificate (DER); colons allowed, as
    /// `openssl x509 -fingerprint -sha256` prints them.
    cert_sha256: Option<String>,
}

/// A refused credential: the error for the caller, and the client name and
/// metric reason for the access log.
struct Refusal {
    error: ServiceError,
    client: &'static str,
    reason: &'static str,
}

/// The client behind a credential, and how it was identified.
struct Identified<'a> {
    name: &'a str,
    role: Role,
    via: &'static str,
}

impl AuthConfig {
    /// Returns rules that let anyone append and read: for a first look at
    /// merklog on one's own machine, never for production.
    pub fn open() -> Self {
        AuthConfig {
            open: true,
            ..Self::default()
        }
    }

    /// Reads the TOML rules:
    ///
    /// ```toml
    /// require_read_token = false
    /// [[client]]
    /// name = "billing"
    /// role = "writer"          # or "reader"
    /// token_sha256 = "<64 hex digits>"
    /// [[client]]
    /// name = "ingest-box"
    /// role = "writer"
    /// cert_sha256 = "<64 hex digits>"  # see `merklog cert-fingerprint`
    /// ```
    ///
    /// An entry needs `token_sha256`, `cert_sha256` or both.
    ///
    /// # Errors
    /// A message naming the bad entry: malformed TOML, an unknown role, a
    /// hash that is not 64 hex digits, an entry with neither hash, or the
    /// same hash twice.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: AuthFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut clients = HashMap::new();
        let mut certificates = HashMap::new();
        for (i, c) in file.clients.into_iter().enumerate() {
            let name = &c.name;
            if c.token_sha256.is_none() && c.cert_sha256.is_none() {
                return Err(format!(
                    "client[{i}] ({name}): give token_sha256 (see `merklog token`) \
                     or cert_sha256 (see `merklog cert-fingerprint`)"
                ));
            }
            if let Some(hex) = &c.token_sha256 {
                let hash = parse_sha256(hex)
                    .map_err(|e| format!("client[{i}] ({name}): token_sha256 {e}"))?;
                if let Some((other, _)) = clients.insert(hash, (name.clone(), c.role)) {
                    return Err(format!(
                        "client[{i}] ({name}): the same token hash is already given to {other}"
                    ));
                }
            }
            if let Some(hex) = &c.cert_sha256 {
                let hash = parse_sha256(&hex.replace(':', ""))
                    .map_err(|e| format!("client[{i}] ({name}): cert_sha256 {e}"))?;
                if let Some((other, _)) = certificates.insert(hash, (name.clone(), c.role)) {
                    return Err(format!(
                        "client[{i}] ({name}): the same certificate is already given to {other}"
                    ));
                }
            }
        }
        Ok(AuthConfig {
            clients,
            certificates,
            require_read_token: file.require_read_token,
            open: false,
            refusals: Arc::default(),
        })
    }

    /// Returns true when anyone may append.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Returns true when some client is known by its certificate.
    pub fn has_certificate_clients(&self) -> bool {
        !self.certificates.is_empty()
    }

    /// Decides whether the request with `metadata`, from `peer`, which
    /// presented the DER certificate `peer_cert` (the leaf, with mutual
    /// TLS), may do `access` through `method`; returns the client's name
    /// when known.
    ///
    /// # Errors
    /// [`ServiceError::Unauthenticated`] for a missing, malformed or unknown
    /// token and no known certificate; [`ServiceError::PermissionDenied`]
    /// for a reader on an append.
    pub fn authorize(
        &self,
        metadata: &MetadataMap,
        peer: Option<SocketAddr>,
        peer_cert: Option<&[u8]>,
        method: &str,
        access: Access,
    ) -> Result<Option<String>, ServiceError> {
        let peer_ip = peer.map(|p| p.ip());
        let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        if self.open || (access == Access::Read && !self.require_read_token) {
            return Ok(None);
        }
        let cert_hash: Option<[u8; 32]> = peer_cert.map(|der| Sha256::digest(der).into());
        // Logged on refusals, so that an operator can grant the certificate.
        let cert_sha256 = cert_hash.map(hex::encode).unwrap_or_default();
        let deny = |error: ServiceError, client: &str, reason: &'static str| {
            crate::metrics::auth_failure(reason);
            let (verdict, expired) = self.refusals.record(peer_ip, Instant::now());
            for (address, suppressed) in expired {
                let address = address.map_or_else(|| "other".to_owned(), |a| a.to_string());
                tracing::warn!(
                    target: "merklog::access",
                    %address,
                    suppressed,
                    "further requests denied from this address, not logged one by one"
                );
            }
            if let Verdict::Log { suppressed } = verdict {
                tracing::warn!(
                    target: "merklog::access",
                    client,
                    %peer,
                    cert_sha256,
                    method,
                    reason = %error,
                    suppressed,
                    "request denied"
                );
            }
            Err(error)
        };
        let known_cert = cert_hash.and_then(|h| self.certificates.get(&h));
        let identified = match known_cert {
            Some((name, role)) => Identified {
                name,
                role: *role,
                via: "certificate",
            },
            None => match self.token_client(metadata, method) {
                Ok(client) => client,
                Err(refusal) => return deny(refusal.error, refusal.client, refusal.reason),
            },
        };
        if access == Access::Append && identified.role < Role::Writer {
            return deny(
                ServiceError::PermissionDenied(format!(
                    "client {} ({}) has the reader role; {method} needs a writer",
                    identified.name, identified.via
                )),
                identified.name,
                crate::metrics::AUTH_INSUFFICIENT_ROLE,
            );
        }
        Ok(Some(identified.name.to_owned()))
    }

    /// Finds the client of the bearer token in `metadata`.
    ///
    /// # Errors
    /// [`ServiceError::Unauthenticated`] when the token is missing,
    /// malformed or unknown.
    fn token_client(
        &self,
        metadata: &MetadataMap,
        method: &str,
    ) -> Result<Identified<'_>, Refusal> {
        let Some(value) = metadata.get("authorization") else {
            let needs = if self.certificates.is_empty() {
                "a bearer token in the authorization header"
            } else {
                "a client certificate this log knows, or a bearer token in the authorization header"
            };
            return Err(Refusal {
                error: ServiceError::Unauthenticated(format!("{method} needs {needs}")),
                client: "anonymous",
                reason: crate::metrics::AUTH_MISSING_TOKEN,
            });
        };
        // The scheme name is case-insensitive (RFC 9110, section 11.1).
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(Refusal {
                error: ServiceError::Unauthenticated(
                    "the authorization header must be `Bearer <token>`".into(),
                ),
                client: "anonymous",
                reason: crate::metrics::AUTH_MALFORMED_HEADER,
            });
        };
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let Some((name, role)) = self.clients.get(&hash) else {
            return Err(Refusal {
                error: ServiceError::Unauthenticated(
                    "the bearer token is not known to this log".into(),
                ),
                client: "unknown-token",
                reason: crate::metrics::AUTH_UNKNOWN_TOKEN,
            });
        };
        Ok(Identified {
            name,
            role: *role,
            via: "token",
        })
    }
}

/// Parses 64 hex digits (either case).
fn parse_sha256(text: &str) -> Result<[u8; 32], String> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut hash)
        .map_err(|e| format!("must be 64 hex digits: {e}"))?;
    Ok(hash)
}

/// Returns the hex SHA-256 of `token`, as `token_sha256` expects it.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> AuthConfig {
        AuthConfig::from_toml(&format!(
            "[[client]]\nname = \"w\"\nrole = \"writer\"\ntoken_sha256 = \"{}\"\n\
             [[client]]\nname = \"r\"\nrole = \"reader\"\ntoken_sha256 = \"{}\"\n",
            token_hash("write-secret"),
            token_hash("read-secret")
        ))
        .unwrap()
    }

    fn with_token(token: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", format!("Bearer {token}").parse().unwrap());
        m
    }

    #[test]
    fn writers_append_readers_read() {
        let r = rules();
        let w = r.authorize(
            &with_token("write-secret"),
            None,
            None,
            "Append",
            Access::Append,
        );
        assert_eq!(w.unwrap().as_deref(), Some("w"));
        let denied = r.authorize(
            &with_token("read-secret"),
            None,
            None,
            "Append",
            Access::Append,
        );
        assert!(matches!(denied, Err(ServiceError::PermissionDenied(_))));
        assert!(r
            .authorize(
                &MetadataMap::new(),
                None,
                None,
                "GetSignedTreeHead",
                Access::Read
            )
            .is_ok());
    }

    #[test]
    fn missing_or_unknown_tokens_are_unauthenticated() {
        let mut r = rules();
        for m in [MetadataMap::new(), with_token("guess"), with_token("")] {
            let e = r
                .authorize(&m, None, None, "Append", Access::Append)
                .unwrap_err();
            assert!(matches!(e, ServiceError::Unauthenticated(_)), "{e:?}");
        }
        r.require_read_token = true;
        let e = r
            .authorize(&MetadataMap::new(), None, None, "GetEntries", Access::Read)
            .unwrap_err();
        assert!(matches!(e, ServiceError::Unauthenticated(_)));
        assert!(r
            .authorize(
                &with_token("read-secret"),
                None,
                None,
                "GetEntries",
                Access::Read
            )
            .is_ok());
    }

    #[test]
    fn the_scheme_name_is_case_insensitive_and_required() {
        let r = rules();
        let header = |value: &str| {
            let mut m = MetadataMap::new();
            m.insert("authorization", value.parse().unwrap());
            m
        };
        for value in [
            "bearer write-secret",
            "BEARER write-secret",
            "Bearer  write-secret",
        ] {
            let who = r.authorize(&header(value), None, None, "Append", Access::Append);
            assert_eq!(who.unwrap().as_deref(), Some("w"), "{value}");
        }
        for value in ["write-secret", "Basic write-secret", "Bearerwrite-secret"] {
            let e = r
                .authorize(&header(value), None, None, "Append", Access::Append)
                .unwrap_err();
            assert!(
                e.to_string().contains("must be `Bearer <token>`"),
                "{value}: {e}"
            );
        }
    }

    #[test]
    fn known_certificates_identify_their_client() {
        let writer_cert = b"writer certificate DER";
        let reader_cert = b"reader certificate DER";
        let fingerprint = |der: &[u8]| hex::encode(Sha256::digest(der));
        // Colon-separated upper case, as openssl prints it, is accepted.
        let openssl_style = fingerprint(reader_cert)
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        let r = AuthConfig::from_toml(&format!(
            "[[client]]\nname = \"box-w\"\nrole = \"writer\"\ncert_sha256 = \"{}\"\n\
             [[client]]\nname = \"box-r\"\nrole = \"reader\"\ncert_sha256 = \"{openssl_style}\"\n\
             [[client]]\nname = \"w\"\nrole = \"writer\"\ntoken_sha256 = \"{}\"\n",
            fingerprint(writer_cert),
            token_hash("write-secret"),
        ))
        .unwrap();
        assert!(r.has_certificate_clients());
        let none = MetadataMap::new();
        let w = r.authorize(&none, None, Some(writer_cert), "Append", Access::Append);
        assert_eq!(w.unwrap().as_deref(), Some("box-w"));
        let denied = r
            .authorize(&none, None, Some(reader_cert), "Append", Access::Append)
            .unwrap_err();
        assert!(
            matches!(&denied, ServiceError::PermissionDenied(m) if m.contains("box-r (certificate)"))
        );
        // An unknown certificate grants nothing, but a token still works.
        let e = r
            .authorize(&none, None, Some(b"other"), "Append", Access::Append)
            .unwrap_err();
        assert!(matches!(&e, ServiceError::Unauthenticated(m) if m.contains("client certificate")));
        let t = r.authorize(
            &with_token("write-secret"),
            None,
            Some(b"other"),
            "Append",
            Access::Append,
        );
        assert_eq!(t.unwrap().as_deref(), Some("w"));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let e = AuthConfig::from_toml(
            "[[client]]\nname = \"x\"\nrole = \"admin\"\ntoken_sha256 = \"00\"\n",
        )
        .unwrap_err();
        assert!(e.contains("admin"), "{e}");
        let e = AuthConfig::from_toml(
            "[[client]]\nname = \"x\"\nrole = \"reader\"\ntoken_sha256 = \"00\"\n",
        )
        .unwrap_err();
        assert!(e.contains("client[0] (x)"), "{e}");
        let e = AuthConfig::from_toml("[[client]]\nname = \"x\"\nrole = \"reader\"\n").unwrap_err();
        assert!(e.contains("cert_sha256"), "{e}");
        assert!(AuthConfig::open()
            .authorize(&MetadataMap::new(), None, None, "Append", Access::Append)
            .is_ok());
    }
}

//! Who may append and read: bearer tokens, kept in the configuration only as
//! SHA-256 hashes, each naming a client and its role.
//!
//! Every refusal and every granted append is logged under the target
//! `merklog::access` with the client's name (or the peer's address), the
//! method and the reason: access to the log is itself audited.

use std::collections::HashMap;
use std::net::SocketAddr;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;

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

/// The access rules: which token hashes belong to which client.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    clients: HashMap<[u8; 32], (String, Role)>,
    /// Reads need a reader (or writer) token too.
    pub require_read_token: bool,
    /// No tokens configured: anyone may append (development only).
    open: bool,
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
    /// Lowercase hex SHA-256 of the bearer token.
    token_sha256: String,
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
    /// ```
    ///
    /// # Errors
    /// A message naming the bad entry: malformed TOML, an unknown role, a
    /// hash that is not 64 hex digits, or the same hash twice.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: AuthFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut clients = HashMap::new();
        for (i, c) in file.clients.into_iter().enumerate() {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(c.token_sha256.trim(), &mut hash).map_err(|e| {
                format!(
                    "client[{i}] ({}): token_sha256 must be 64 hex digits: {e}",
                    c.name
                )
            })?;
            if let Some((other, _)) = clients.insert(hash, (c.name.clone(), c.role)) {
                return Err(format!(
                    "client[{i}] ({}): the same token hash is already given to {other}",
                    c.name
                ));
            }
        }
        Ok(AuthConfig {
            clients,
            require_read_token: file.require_read_token,
            open: false,
        })
    }

    /// Returns true when anyone may append.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Decides whether the request with `metadata`, from `peer`, may do
    /// `access` through `method`; returns the client's name when known.
    ///
    /// # Errors
    /// [`ServiceError::Unauthenticated`] for a missing, malformed or unknown
    /// token; [`ServiceError::PermissionDenied`] for a reader token on an
    /// append.
    pub fn authorize(
        &self,
        metadata: &MetadataMap,
        peer: Option<SocketAddr>,
        method: &str,
        access: Access,
    ) -> Result<Option<String>, ServiceError> {
        let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        if self.open || (access == Access::Read && !self.require_read_token) {
            return Ok(None);
        }
        let deny = |error: ServiceError, client: &str, reason: &'static str| {
            crate::metrics::auth_failure(reason);
            tracing::warn!(
                target: "merklog::access",
                client,
                %peer,
                method,
                reason = %error,
                "request denied"
            );
            Err(error)
        };
        let Some(value) = metadata.get("authorization") else {
            return deny(
                ServiceError::Unauthenticated(format!(
                    "{method} needs a bearer token in the authorization header"
                )),
                "anonymous",
                "missing_token",
            );
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return deny(
                ServiceError::Unauthenticated(
                    "the authorization header must be `Bearer <token>`".into(),
                ),
                "anonymous",
                "malformed_header",
            );
        };
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let Some((name, role)) = self.clients.get(&hash) else {
            return deny(
                ServiceError::Unauthenticated("the bearer token is not known to this log".into()),
                "unknown-token",
                "unknown_token",
            );
        };
        if access == Access::Append && *role < Role::Writer {
            return deny(
                ServiceError::PermissionDenied(format!(
                    "client {name} has the reader role; {method} needs a writer"
                )),
                name,
                "insufficient_role",
            );
        }
        Ok(Some(name.clone()))
    }
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
        let w = r.authorize(&with_token("write-secret"), None, "Append", Access::Append);
        assert_eq!(w.unwrap().as_deref(), Some("w"));
        let denied = r.authorize(&with_token("read-secret"), None, "Append", Access::Append);
        assert!(matches!(denied, Err(ServiceError::PermissionDenied(_))));
        assert!(r
            .authorize(&MetadataMap::new(), None, "GetSignedTreeHead", Access::Read)
            .is_ok());
    }

    #[test]
    fn missing_or_unknown_tokens_are_unauthenticated() {
        let mut r = rules();
        for m in [MetadataMap::new(), with_token("guess"), with_token("")] {
            let e = r.authorize(&m, None, "Append", Access::Append).unwrap_err();
            assert!(matches!(e, ServiceError::Unauthenticated(_)), "{e:?}");
        }
        r.require_read_token = true;
        let e = r
            .authorize(&MetadataMap::new(), None, "GetEntries", Access::Read)
            .unwrap_err();
        assert!(matches!(e, ServiceError::Unauthenticated(_)));
        assert!(r
            .authorize(&with_token("read-secret"), None, "GetEntries", Access::Read)
            .is_ok());
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
        assert!(AuthConfig::open()
            .authorize(&MetadataMap::new(), None, "Append", Access::Append)
            .is_ok());
    }
}

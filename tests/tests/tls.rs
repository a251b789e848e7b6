//! TLS and mutual TLS over real connections, with a CA, server and client
//! certificates made at test time: who can connect, and what a client
//! certificate may do once the auth file names its fingerprint.

use std::sync::Arc;

use merklog_client::{Client, ClientError, ClientTls};
use merklog_proto::v1::{self, log_client::LogClient};
use merklog_server::{cert_fingerprint, token_hash, AuthConfig, ServerConfig, TlsConfig};
use merklog_sth::LogSigner;
use merklog_tests::pki::{Issued, TestCa};
use merklog_tests::{TestDb, TestServer};
use tonic::transport::{ClientTlsConfig, Endpoint};
use tonic::Code;

/// A running TLS server, its database, key and CA.
struct Fixture {
    server: TestServer,
    signer: LogSigner,
    ca: TestCa,
    _db: TestDb,
}

/// Starts a TLS server on SQLite; with `client_ca`, clients need a
/// certificate that CA signed, and `readiness` is the identity the harness
/// checks readiness with.
async fn start(
    client_ca: Option<&TestCa>,
    readiness: Option<&Issued>,
    auth: AuthConfig,
) -> Fixture {
    let ca = TestCa::new("merklog test server CA");
    let issued = ca.server();
    let tls = TlsConfig::from_pem(
        issued.cert_pem.clone(),
        issued.key_pem.clone(),
        client_ca.map(|c| c.cert_pem().into_bytes()),
    )
    .unwrap();
    let config = ServerConfig {
        tls: Some(tls),
        auth,
        ..ServerConfig::default()
    };
    let db = TestDb::sqlite();
    let store = Arc::new(db.open().await.unwrap());
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    let server = TestServer::start_tls(store, signer.clone(), config, ca.client_tls(readiness))
        .await
        .unwrap();
    Fixture {
        server,
        signer,
        ca,
        _db: db,
    }
}

/// Connects a raw client and asks for the head: the whole path a handshake
/// failure can surface on (with TLS 1.3 a refused client certificate is
/// only reported after the client's side of the handshake completed).
async fn head_over(url: String, tls: Option<ClientTlsConfig>) -> Result<u64, String> {
    let mut endpoint = Endpoint::from_shared(url).map_err(|e| e.to_string())?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
    }
    let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
    let head = LogClient::new(channel)
        .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
        .await
        .map_err(|s| format!("{s:?}"))?;
    Ok(head.into_inner().tree_size)
}

/// Tells a refusal by the TLS layer from any answer of the service (the
/// servers these tests refuse at are open, so the service would answer).
///
/// The message names the server's `alert` when the client reads it; with
/// TLS 1.3 the client may instead be writing its first request when the
/// server closes, and then it reports a broken pipe, a reset or a closed
/// connection, or that the connection was not ready when it closed before
/// the request went out.
fn refused_in_handshake(error: &str, alert: &str) -> bool {
    let error = error.to_lowercase();
    error.contains("transport error")
        && [
            alert.to_lowercase().as_str(),
            "broken pipe",
            "reset",
            "connection closed",
            "connection was not ready",
        ]
        .iter()
        .any(|cause| error.contains(cause))
}

fn client_tls(ca: &TestCa, identity: Option<&Issued>) -> ClientTls {
    ClientTls {
        ca_pem: ca.cert_pem().into_bytes(),
        identity: identity.map(|i| {
            (
                i.cert_pem.clone().into_bytes(),
                i.key_pem.clone().into_bytes(),
            )
        }),
    }
}

#[tokio::test]
async fn appends_and_proofs_verify_over_tls() {
    let f = start(None, None, AuthConfig::open()).await;
    assert!(f.server.url().starts_with("https://"));
    let tls = client_tls(&f.ca, None);
    let mut client =
        Client::connect_with_tls(&f.server.url(), f.signer.public_key().clone(), Some(&tls))
            .await
            .unwrap();
    let receipt = client
        .append(vec![b"over tls".to_vec(), b"second".to_vec()])
        .await
        .unwrap();
    assert_eq!(receipt.head.tree_size(), 2);
    let proven = client.inclusion_by_entry(b"over tls", None).await.unwrap();
    assert_eq!(proven.proof.leaf_index, 0);
    assert_eq!(proven.head.tree_size(), 2);
    f.server.stop().await.unwrap();
}

#[tokio::test]
async fn plaintext_and_untrusting_clients_cannot_talk_to_a_tls_server() {
    let f = start(None, None, AuthConfig::open()).await;
    let https = f.server.url();
    let http = https.replacen("https://", "http://", 1);
    assert!(head_over(http.clone(), None).await.is_err());
    // The verifying client says each cause once. (What it sees varies: a
    // TLS record read as an HTTP/2 frame gets a hint, a reset does not.)
    let mut plain = Client::connect(&http, f.signer.public_key().clone())
        .await
        .expect("TCP connects");
    let err = plain.latest_head().await.unwrap_err();
    let text = err.to_string();
    let parts: Vec<&str> = text.split(": ").collect();
    let mut distinct = parts.clone();
    distinct.dedup();
    assert_eq!(parts, distinct, "a cause repeated: {text}");

    // A client that trusts another CA refuses the server's certificate.
    let stranger = TestCa::new("some other CA");
    let refused = Client::connect_with_tls(
        &https,
        f.signer.public_key().clone(),
        Some(&client_tls(&stranger, None)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(refused, ClientError::Transport { .. }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("certificate"), "{refused}");

    // A TLS client at a plain-text server is told so.
    let db = TestDb::sqlite();
    let plain_server = TestServer::start(
        Arc::new(db.open().await.unwrap()),
        f.signer.clone(),
        ServerConfig::default(),
    )
    .await
    .unwrap();
    let err = Client::connect_with_tls(
        &plain_server.url().replacen("http://", "https://", 1),
        f.signer.public_key().clone(),
        Some(&client_tls(&f.ca, None)),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().ends_with(
            "(the server does not seem to speak TLS: use an http:// address, or check the port)"
        ),
        "{err}"
    );
    plain_server.stop().await.unwrap();

    // The library will not silently drop TLS, nor send it to plain http.
    let key = f.signer.public_key().clone();
    let no_ca = Client::connect_with_tls(&https, key.clone(), None)
        .await
        .unwrap_err();
    assert!(no_ca.to_string().contains("--tls-ca"), "{no_ca}");
    let plain = Client::connect_with_tls(
        &https.replacen("https://", "http://", 1),
        key,
        Some(&client_tls(&f.ca, None)),
    )
    .await
    .unwrap_err();
    assert!(matches!(plain, ClientError::Input { .. }), "{plain:?}");

    // Nothing above reached the log; a trusting client still does.
    assert_eq!(head_over(https, Some(f.ca.client_tls(None))).await, Ok(0));
    f.server.stop().await.unwrap();
}

#[tokio::test]
async fn mutual_tls_admits_only_certificates_of_the_client_ca() {
    let clients = TestCa::new("merklog client CA");
    let good = clients.client("ingest");
    let f = start(Some(&clients), Some(&good), AuthConfig::open()).await;
    let url = f.server.url();

    let none = head_over(url.clone(), Some(f.ca.client_tls(None))).await;
    assert!(
        none.as_ref()
            .is_err_and(|e| refused_in_handshake(e, "CertificateRequired")),
        "no client certificate: {none:?}"
    );

    let other_ca = TestCa::new("not the client CA");
    let forged = other_ca.client("ingest");
    let foreign = head_over(url.clone(), Some(f.ca.client_tls(Some(&forged)))).await;
    assert!(
        foreign
            .as_ref()
            .is_err_and(|e| refused_in_handshake(e, "UnknownCA")),
        "certificate of another CA: {foreign:?}"
    );

    // What a user of the client library (and the CLI) is told.
    let key = f.signer.public_key().clone();
    let without = match Client::connect_with_tls(&url, key, Some(&client_tls(&f.ca, None))).await {
        Ok(mut c) => c.latest_head().await.unwrap_err(),
        Err(e) => e,
    };
    assert!(
        refused_in_handshake(&without.to_string(), "CertificateRequired"),
        "{without}"
    );

    assert_eq!(
        head_over(url.clone(), Some(f.ca.client_tls(Some(&good)))).await,
        Ok(0)
    );
    let mut client = Client::connect_with_tls(
        &url,
        f.signer.public_key().clone(),
        Some(&client_tls(&f.ca, Some(&good))),
    )
    .await
    .unwrap();
    assert_eq!(
        client
            .append(vec![b"m".to_vec()])
            .await
            .unwrap()
            .head
            .tree_size(),
        1
    );
    f.server.stop().await.unwrap();
}

#[tokio::test]
async fn certificate_fingerprints_carry_roles() {
    let clients = TestCa::new("merklog client CA");
    let writer = clients.client("ingest-box");
    let reader = clients.client("audit-box");
    let unknown = clients.client("new-box");
    let auth = AuthConfig::from_toml(&format!(
        "require_read_token = true\n\
         [[client]]\nname = \"ingest-box\"\nrole = \"writer\"\ncert_sha256 = \"{}\"\n\
         [[client]]\nname = \"audit-box\"\nrole = \"reader\"\ncert_sha256 = \"{}\"\n\
         [[client]]\nname = \"script\"\nrole = \"writer\"\ntoken_sha256 = \"{}\"\n",
        cert_fingerprint(&writer.der),
        cert_fingerprint(&reader.der),
        token_hash("script-token"),
    ))
    .unwrap();
    let f = start(Some(&clients), Some(&reader), auth).await;
    let url = f.server.url();
    let key = f.signer.public_key().clone();
    let connect = |identity: &Issued| {
        let tls = client_tls(&f.ca, Some(identity));
        let url = url.clone();
        let key = key.clone();
        async move {
            Client::connect_with_tls(&url, key, Some(&tls))
                .await
                .unwrap()
        }
    };

    let mut w = connect(&writer).await;
    assert_eq!(
        w.append(vec![b"by cert".to_vec()])
            .await
            .unwrap()
            .head
            .tree_size(),
        1
    );

    let mut r = connect(&reader).await;
    assert_eq!(r.latest_head().await.unwrap().tree_size(), 1);
    match r.append(vec![b"not allowed".to_vec()]).await.unwrap_err() {
        ClientError::Status { code, message } => {
            assert_eq!(code, Code::PermissionDenied);
            assert!(message.contains("audit-box"), "{message}");
        }
        other => panic!("expected PERMISSION_DENIED, got {other:?}"),
    }

    // Signed by the client CA but not in the auth file: no role, unless a
    // token gives one.
    let mut u = connect(&unknown).await;
    match u.latest_head().await.unwrap_err() {
        ClientError::Status { code, message } => {
            assert_eq!(code, Code::Unauthenticated);
            assert!(message.contains("client certificate"), "{message}");
        }
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
    let mut u = connect(&unknown).await.with_token("script-token").unwrap();
    assert_eq!(
        u.append(vec![b"by token".to_vec()])
            .await
            .unwrap()
            .head
            .tree_size(),
        2
    );
    f.server.stop().await.unwrap();
}

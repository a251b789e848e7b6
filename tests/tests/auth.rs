//! Access control over real gRPC: writer tokens append, reader tokens read,
//! anything else is refused with the right status.

use std::sync::Arc;

use merklog_proto::v1;
use merklog_server::{token_hash, AuthConfig, ServerConfig};
use merklog_sth::LogSigner;
use merklog_tests::{TestDb, TestServer};
use tonic::Code;

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

fn append(entry: &[u8]) -> v1::AppendRequest {
    v1::AppendRequest {
        entries: vec![entry.to_vec()],
    }
}

async fn server(require_read_token: bool) -> (TestServer, TestDb) {
    let db = TestDb::sqlite();
    let text = format!(
        "require_read_token = {require_read_token}\n\
         [[client]]\nname = \"ingest\"\nrole = \"writer\"\ntoken_sha256 = \"{}\"\n\
         [[client]]\nname = \"auditor\"\nrole = \"reader\"\ntoken_sha256 = \"{}\"\n",
        token_hash("writer-token"),
        token_hash("reader-token"),
    );
    let config = ServerConfig {
        auth: AuthConfig::from_toml(&text).unwrap(),
        ..ServerConfig::default()
    };
    let store = Arc::new(db.open().await.unwrap());
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    (TestServer::start(store, signer, config).await.unwrap(), db)
}

#[tokio::test]
async fn appends_need_a_writer_token() {
    let (server, _db) = server(false).await;
    let mut c = server.client().await.unwrap();

    let missing = c.append(append(b"a")).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(missing.message().contains("bearer token"), "{missing:?}");

    let unknown = c
        .append(with_token(append(b"a"), "guess"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);

    let reader = c
        .append(with_token(append(b"a"), "reader-token"))
        .await
        .unwrap_err();
    assert_eq!(reader.code(), Code::PermissionDenied);
    assert!(reader.message().contains("auditor"), "{reader:?}");

    let ok = c
        .append(with_token(append(b"a"), "writer-token"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.entries[0].leaf_index, 0);

    // Reads stay public by default; the refused appends left nothing.
    let head = c
        .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(head.tree_size, 1);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn reads_can_require_a_token() {
    let (server, _db) = server(true).await;
    let mut c = server.client().await.unwrap();
    let anonymous = c
        .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    for token in ["reader-token", "writer-token"] {
        let head = c
            .get_signed_tree_head(with_token(v1::GetSignedTreeHeadRequest {}, token))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(head.tree_size, 0);
    }
    server.stop().await.unwrap();
}

//! Server reflection describes every service on the port, health included,
//! so that tools such as grpcurl can call `grpc.health.v1.Health/Check`.

use std::sync::Arc;

use merklog_server::ServerConfig;
use merklog_sth::LogSigner;
use merklog_tests::{TestDb, TestServer};
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

/// Asks the server's reflection service one question and returns its answer.
async fn ask(server: &TestServer, request: MessageRequest) -> MessageResponse {
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let question = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([question]))
        .await
        .unwrap()
        .into_inner();
    answers
        .message()
        .await
        .unwrap()
        .expect("one answer")
        .message_response
        .expect("an answer body")
}

#[tokio::test]
async fn reflection_lists_and_describes_health() {
    let db = TestDb::sqlite();
    let store = Arc::new(db.open().await.unwrap());
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    let server = TestServer::start(store, signer, ServerConfig::default())
        .await
        .unwrap();
    let MessageResponse::ListServicesResponse(list) =
        ask(&server, MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a list of services");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for wanted in ["merklog.v1.Log", "grpc.health.v1.Health"] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }
    let answer = ask(
        &server,
        MessageRequest::FileContainingSymbol("grpc.health.v1.Health".into()),
    )
    .await;
    let MessageResponse::FileDescriptorResponse(files) = answer else {
        panic!("grpc.health.v1.Health is not described: {answer:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    server.stop().await.unwrap();
}

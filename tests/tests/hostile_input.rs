//! Hostile input: arbitrary bytes decoded as each request message and handed
//! to the service must get an answer (usually an error status), never a
//! panic, and must leave the log verifiable. No answer may be INTERNAL (a
//! fault the input caused) or UNAVAILABLE (what callers get from a
//! sequencer task that died), and the sequencer must still run at the end
//! and stop without a panic.

use std::sync::Arc;

use merklog_merkle::{leaf_hash, merkle_tree_hash};
use merklog_proto::v1::{self, log_server::Log};
use merklog_server::{LogService, Sequencer, SequencerConfig, ServerConfig, SystemClock};
use merklog_sth::LogSigner;
use merklog_storage::{AnyStore, LogStore};
use merklog_tests::TestDb;
use proptest::prelude::*;
use prost::Message;
use tonic::{Code, Request};

struct Harness {
    service: LogService<AnyStore>,
    sequencer: tokio::task::JoinHandle<()>,
    store: Arc<AnyStore>,
    runtime: tokio::runtime::Runtime,
    _db: TestDb,
}

fn harness() -> Harness {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = TestDb::sqlite();
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    let (service, store, sequencer) = runtime.block_on(async {
        let store = Arc::new(db.open().await.unwrap());
        let (sequencer, task) = Sequencer::start(
            store.clone(),
            signer.clone(),
            Arc::new(SystemClock),
            SequencerConfig::default(),
            Arc::default(),
        )
        .await
        .unwrap();
        let config = ServerConfig::default();
        let service = LogService::new(
            store.clone(),
            sequencer,
            signer.public_key().clone(),
            config.limits,
        );
        // Something to point at.
        service
            .append(Request::new(v1::AppendRequest {
                entries: (0..20u8).map(|i| vec![i; 3]).collect(),
            }))
            .await
            .unwrap();
        (service, store, task)
    });
    Harness {
        service,
        sequencer,
        store,
        runtime,
        _db: db,
    }
}

/// Hands `bytes`, decoded as every request type, to the service, and
/// returns each answer's status (`Ok` for an answer that is not an error).
async fn feed(service: &LogService<AnyStore>, bytes: &[u8]) -> Vec<(&'static str, Code)> {
    fn code<T>(answer: Result<T, tonic::Status>) -> Code {
        answer.map_or_else(|s| s.code(), |_| Code::Ok)
    }
    let mut codes = Vec::new();
    if let Ok(req) = v1::AppendRequest::decode(bytes) {
        codes.push(("Append", code(service.append(Request::new(req)).await)));
    }
    if let Ok(req) = v1::GetInclusionProofRequest::decode(bytes) {
        let answer = service.get_inclusion_proof(Request::new(req)).await;
        codes.push(("GetInclusionProof", code(answer)));
    }
    if let Ok(req) = v1::GetInclusionProofsRequest::decode(bytes) {
        let answer = service.get_inclusion_proofs(Request::new(req)).await;
        codes.push(("GetInclusionProofs", code(answer)));
    }
    if let Ok(req) = v1::GetConsistencyProofRequest::decode(bytes) {
        let answer = service.get_consistency_proof(Request::new(req)).await;
        codes.push(("GetConsistencyProof", code(answer)));
    }
    if let Ok(req) = v1::GetEntriesRequest::decode(bytes) {
        codes.push((
            "GetEntries",
            code(service.get_entries(Request::new(req)).await),
        ));
    }
    if let Ok(req) = v1::GetEntryAndProofRequest::decode(bytes) {
        let answer = service.get_entry_and_proof(Request::new(req)).await;
        codes.push(("GetEntryAndProof", code(answer)));
    }
    codes
}

/// Arbitrary bytes, and well-formed messages with arbitrary field values
/// (which random bytes rarely produce).
fn inputs() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| v1::GetConsistencyProofRequest {
            first_size: a % 64,
            second_size: b % 64,
        }
        .encode_to_vec()),
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| v1::GetEntriesRequest {
            start: a % 64,
            end: b % 2048,
        }
        .encode_to_vec()),
        (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(i, n, big)| {
            let m = if big { u64::MAX } else { 64 };
            v1::GetInclusionProofRequest {
                leaf: Some(v1::get_inclusion_proof_request::Leaf::LeafIndex(i % m)),
                tree_size: n % m,
            }
            .encode_to_vec()
        }),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..5)
            .prop_map(|entries| v1::AppendRequest { entries }.encode_to_vec()),
        (
            proptest::collection::vec(
                (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..33)),
                0..6
            ),
            any::<u64>(),
        )
            .prop_map(|(leaves, n)| v1::GetInclusionProofsRequest {
                leaves: leaves
                    .into_iter()
                    .map(|(i, hash)| v1::LeafRef {
                        leaf: Some(if hash.len() % 3 == 0 {
                            v1::leaf_ref::Leaf::LeafIndex(i % 64)
                        } else {
                            v1::leaf_ref::Leaf::LeafHash(hash)
                        }),
                    })
                    .collect(),
                tree_size: n % 64,
            }
            .encode_to_vec()),
    ]
}

#[test]
fn arbitrary_requests_never_panic_or_corrupt() {
    let h = harness();
    proptest!(ProptestConfig::with_cases(400), |(bytes in inputs())| {
        for (call, code) in h.runtime.block_on(feed(&h.service, &bytes)) {
            prop_assert!(
                !matches!(code, Code::Internal | Code::Unavailable | Code::Unknown),
                "{call} answered {code:?} to {bytes:?}"
            );
        }
    });
    assert!(
        !h.sequencer.is_finished(),
        "the sequencer stopped while the service still held it"
    );
    // The log is still whole: every stored leaf hashes to its entry and the
    // stored tree recomputes to the latest signed root.
    h.runtime.block_on(async {
        let head = h.store.latest_tree_head().await.unwrap().unwrap();
        let n = head.head.tree_size;
        let entries = h.store.entries(0, n).await.unwrap();
        assert_eq!(entries.len() as u64, n);
        let leaves: Vec<_> = entries.iter().map(|e| leaf_hash(&e.entry)).collect();
        assert!(entries.iter().zip(&leaves).all(|(e, l)| e.leaf_hash == *l));
        assert_eq!(merkle_tree_hash(&leaves), head.head.root_hash);
    });
    // With the service (and its sender) gone, the sequencer drains and
    // ends; a panic in it is a failure of this test.
    let Harness {
        service,
        sequencer,
        runtime,
        ..
    } = h;
    drop(service);
    runtime
        .block_on(sequencer)
        .expect("the sequencer ends without a panic");
}

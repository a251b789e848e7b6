//! `merklog verify`: a saved proof and tree head are checked offline, with
//! the public key only. A good proof passes; each kind of tampering fails
//! with its own error and exit code 1.

mod client_common;

use std::path::PathBuf;

use client_common::{signer, text, Log, Scratch};
use merklog_cli::client::prove::{self, ConsistencyArgs, InclusionArgs, ProveCommand};
use merklog_cli::client::verify::{check, VerifyArgs};
use merklog_cli::client::{CommandError, OutputArgs};
use merklog_client::json::TreeHeadJson;
use merklog_client::offline::Verified;
use merklog_client::ClientError;
use merklog_sth::LogId;
use merklog_tests::TestDb;

fn verify_args(key: PathBuf, heads: Vec<PathBuf>, proof: Option<PathBuf>) -> VerifyArgs {
    VerifyArgs {
        public_key: key,
        heads,
        proof,
        entry: None,
        entry_file: None,
        out: text(),
    }
}

/// Asserts the check fails as a verification failure (exit code 1) and
/// returns the client error.
fn rejected(args: &VerifyArgs) -> ClientError {
    match check(args) {
        Err(e) => {
            assert_eq!(e.exit_code(), 1, "{e}");
            match e {
                CommandError::Client(e) => e,
                other => panic!("expected a client error, got {other}"),
            }
        }
        Ok(v) => panic!("a tampered document verified: {v:?}"),
    }
}

#[tokio::test]
async fn verify_accepts_a_good_inclusion_proof_and_rejects_each_tampering() {
    let log = Log::start(TestDb::sqlite(), signer()).await;
    log.append_batches(&[
        &["alpha", "beta", "gamma"],
        &["delta", "epsilon"],
        &["zeta", "eta"],
    ])
    .await;
    let scratch = Scratch::new();
    let key = scratch.key_file(&log.signer);
    let (proof_path, head_path) = (scratch.path("proof.json"), scratch.path("head.json"));

    // Save a proof the way a user would: `merklog prove inclusion --entry
    // delta --proof-out proof.json --head-out head.json`.
    let mut out = Vec::new();
    prove::run(
        ProveCommand::Inclusion(InclusionArgs {
            log: log.args(&scratch, None),
            index: None,
            leaf_hash: None,
            entry: Some("delta".into()),
            entry_file: None,
            tree_size: None,
            proof_out: Some(proof_path.clone()),
            head_out: Some(head_path.clone()),
            out: OutputArgs { json: true },
        }),
        &mut out,
    )
    .await
    .expect("prove inclusion");
    let printed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(printed["inclusion_proof"]["leaf_index"], 3);
    assert_eq!(printed["tree_head"]["tree_size"], 7);

    let good = verify_args(
        key.clone(),
        vec![head_path.clone()],
        Some(proof_path.clone()),
    );
    match check(&good).expect("the saved proof verifies") {
        Verified::Inclusion { head, leaf_index } => {
            assert_eq!(leaf_index, 3);
            assert_eq!(head.tree_size(), 7);
        }
        other => panic!("unexpected {other:?}"),
    }
    let mut printed = Vec::new();
    merklog_cli::client::verify::run(good.clone(), &mut printed).unwrap();
    assert!(String::from_utf8(printed)
        .unwrap()
        .starts_with("OK: leaf 3 is in the tree of size 7"));

    let proof = scratch.load(&proof_path);
    let head = scratch.load(&head_path);

    // A flipped bit in one proof hash.
    let mut flipped = proof.clone();
    let h = flipped["proof"][1].as_str().unwrap().to_owned();
    let first = u8::from_str_radix(&h[..2], 16).unwrap() ^ 0x01;
    flipped["proof"][1] = format!("{first:02x}{}", &h[2..]).into();
    let path = scratch.save("flipped.json", &flipped);
    let err = rejected(&verify_args(
        key.clone(),
        vec![head_path.clone()],
        Some(path),
    ));
    assert!(
        matches!(
            err,
            ClientError::InclusionProof {
                leaf_index: 3,
                tree_size: 7,
                ..
            }
        ),
        "{err}"
    );

    // A wrong index.
    let mut wrong_index = proof.clone();
    wrong_index["leaf_index"] = 2.into();
    let path = scratch.save("wrong-index.json", &wrong_index);
    let err = rejected(&verify_args(
        key.clone(),
        vec![head_path.clone()],
        Some(path),
    ));
    assert!(
        matches!(err, ClientError::InclusionProof { leaf_index: 2, .. }),
        "{err}"
    );

    // A wrong tree size, in the proof ...
    let mut wrong_size = proof.clone();
    wrong_size["tree_size"] = 6.into();
    let path = scratch.save("wrong-size.json", &wrong_size);
    let err = rejected(&verify_args(
        key.clone(),
        vec![head_path.clone()],
        Some(path),
    ));
    assert!(matches!(err, ClientError::HeadMismatch { .. }), "{err}");
    // ... or in the head, whose signature then fails.
    let mut head_size = head.clone();
    head_size["tree_size"] = 6.into();
    let path = scratch.save("head-size.json", &head_size);
    let err = rejected(&verify_args(
        key.clone(),
        vec![path],
        Some(proof_path.clone()),
    ));
    assert!(
        matches!(err, ClientError::BadSignature { tree_size: 6, .. }),
        "{err}"
    );

    // A head signed by another key, keeping the log ID of the real log ...
    let stranger = signer();
    let parsed: TreeHeadJson = serde_json::from_value(head.clone()).unwrap();
    let forged = stranger.sign(parsed.to_sth().head);
    let forged_same_id = TreeHeadJson::new(&forged, parsed.log_id);
    let path = scratch.save("forged.json", &forged_same_id);
    let err = rejected(&verify_args(
        key.clone(),
        vec![path],
        Some(proof_path.clone()),
    ));
    assert!(matches!(err, ClientError::BadSignature { .. }), "{err}");
    // ... or claiming the other key's log ID.
    let forged_other_id = TreeHeadJson::new(&forged, stranger.public_key().log_id());
    let path = scratch.save("forged-id.json", &forged_other_id);
    let err = rejected(&verify_args(
        key.clone(),
        vec![path.clone()],
        Some(proof_path.clone()),
    ));
    assert!(matches!(err, ClientError::WrongLog { .. }), "{err}");
    assert_ne!(forged_other_id.log_id, LogId(parsed.log_id.0));
    // The forged head does verify with the stranger's key: the pin matters.
    let stranger_key = scratch.key_file(&stranger);
    check(&verify_args(
        stranger_key,
        vec![path],
        Some(proof_path.clone()),
    ))
    .expect("the stranger's own head verifies with the stranger's key");

    // Unreadable input is a usage error (exit code 2), not a failed check.
    let garbage = scratch.path("garbage.json");
    std::fs::write(&garbage, "{\"leaf_index\": 1}").unwrap();
    let err = check(&verify_args(
        key.clone(),
        vec![head_path.clone()],
        Some(garbage),
    ))
    .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    let err = check(&verify_args(key, vec![scratch.path("missing.json")], None)).unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
}

#[tokio::test]
async fn verify_checks_saved_consistency_proofs() {
    let log = Log::start(TestDb::sqlite(), signer()).await;
    log.append_batches(&[&["a", "b", "c"], &["d", "e"], &["f"]])
        .await;
    let scratch = Scratch::new();
    let key = scratch.key_file(&log.signer);
    let (proof, second, first) = (
        scratch.path("consistency.json"),
        scratch.path("second.json"),
        scratch.path("first.json"),
    );
    let mut out = Vec::new();
    prove::run(
        ProveCommand::Consistency(ConsistencyArgs {
            log: log.args(&scratch, None),
            first: 3,
            second: None,
            proof_out: Some(proof.clone()),
            head_out: Some(second.clone()),
            first_head_out: Some(first.clone()),
            out: text(),
        }),
        &mut out,
    )
    .await
    .expect("prove consistency");
    let printed = String::from_utf8(out).unwrap();
    assert!(printed.contains("the tree of size 3"), "{printed}");

    let args = verify_args(
        key.clone(),
        vec![second.clone(), first.clone()],
        Some(proof.clone()),
    );
    match check(&args).expect("the saved consistency proof verifies") {
        Verified::Consistency {
            first_head: Some(f),
            second_head,
        } => {
            assert_eq!(f.tree_size(), 3);
            assert_eq!(second_head.tree_size(), 6);
        }
        other => panic!("unexpected {other:?}"),
    }

    let mut flipped = scratch.load(&proof);
    let h = flipped["proof"][0].as_str().unwrap().to_owned();
    flipped["proof"][0] = format!("{}{}", if &h[..1] == "0" { "1" } else { "0" }, &h[1..]).into();
    let path = scratch.save("flipped.json", &flipped);
    let err = rejected(&verify_args(key.clone(), vec![second.clone()], Some(path)));
    assert!(
        matches!(
            err,
            ClientError::ConsistencyProof {
                first_size: 3,
                second_size: 6,
                ..
            }
        ),
        "{err}"
    );

    // A first root that is not the signed one.
    let mut other_root = scratch.load(&proof);
    other_root["first_root"] = "00".repeat(32).into();
    let path = scratch.save("other-root.json", &other_root);
    let err = rejected(&verify_args(key, vec![second, first], Some(path)));
    assert!(matches!(err, ClientError::HeadMismatch { .. }), "{err}");
}

#[tokio::test]
async fn verify_checks_the_record_itself_against_the_proofs_leaf_hash() {
    let log = Log::start(TestDb::sqlite(), signer()).await;
    log.append_batches(&[&["alpha", "beta"], &["gamma"]]).await;
    let mut client = log.client().await;
    let event = client
        .append_events(vec![merklog_event::EventInput {
            event_id: None,
            occurred_at: "2026-12-03T14:00:00Z".into(),
            actor: merklog_event::ActorInput {
                id: "alice".into(),
                kind: "user".into(),
            },
            action: "door.open".into(),
            resource: None,
            outcome: "success".into(),
            origin: None,
            request_id: None,
            trace_id: None,
            attributes: None,
        }])
        .await
        .expect("the event is appended");
    let event_index = event.events[0].proof.leaf_index;
    let served = event.events[0].entry.clone();
    let scratch = Scratch::new();
    let key = scratch.key_file(&log.signer);

    // A proof saved for index `index`.
    let save_proof = |index: u64| {
        let (proof, head) = (
            scratch.path(&format!("proof-{index}.json")),
            scratch.path(&format!("head-{index}.json")),
        );
        let args = InclusionArgs {
            log: log.args(&scratch, None),
            index: Some(index),
            leaf_hash: None,
            entry: None,
            entry_file: None,
            tree_size: None,
            proof_out: Some(proof.clone()),
            head_out: Some(head.clone()),
            out: OutputArgs { json: true },
        };
        async move {
            prove::run(ProveCommand::Inclusion(args), &mut Vec::new())
                .await
                .expect("prove inclusion");
            (proof, head)
        }
    };
    let (proof, head) = save_proof(1).await;
    let with_record = |entry: Option<&str>, entry_file: Option<PathBuf>| VerifyArgs {
        entry: entry.map(str::to_owned),
        entry_file,
        ..verify_args(key.clone(), vec![head.clone()], Some(proof.clone()))
    };

    let mut out = Vec::new();
    merklog_cli::client::verify::run(with_record(Some("beta"), None), &mut out).unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert!(
        printed.starts_with("OK: the record, leaf 1 is in the tree of size 4"),
        "{printed}"
    );

    // Another record, or the right one with a trailing newline (echo).
    let err = check(&with_record(Some("alpha"), None)).unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("the record is not leaf 1: its 5 bytes have leaf hash "),
        "{text}"
    );
    assert!(text.contains("but the proof is for leaf hash "), "{text}");
    let file = scratch.path("beta.txt");
    std::fs::write(&file, "beta\n").unwrap();
    let err = check(&with_record(None, Some(file.clone()))).unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(
        err.to_string()
            .contains("without its final newline the record matches"),
        "{err}"
    );
    std::fs::write(&file, "beta").unwrap();
    check(&with_record(None, Some(file))).expect("the file holds the record");

    // An event is checked by its leaf bytes, as the log stores them.
    let (proof, head) = save_proof(event_index).await;
    let event_file = scratch.path("event.leaf");
    std::fs::write(&event_file, &served).unwrap();
    let args = |file: PathBuf| VerifyArgs {
        entry_file: Some(file),
        ..verify_args(key.clone(), vec![head.clone()], Some(proof.clone()))
    };
    check(&args(event_file.clone())).expect("the event's leaf bytes match");
    let mut changed = served.clone();
    let at = changed.len() - 3;
    changed[at] ^= 0x01;
    std::fs::write(&event_file, &changed).unwrap();
    let err = check(&args(event_file)).unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(
        err.to_string()
            .contains("the bytes start as an event leaf but are not one"),
        "{err}"
    );

    // A record needs an inclusion proof.
    let (first, second) = (scratch.path("c-head.json"), scratch.path("c-proof.json"));
    prove::run(
        ProveCommand::Consistency(ConsistencyArgs {
            log: log.args(&scratch, None),
            first: 2,
            second: None,
            proof_out: Some(second.clone()),
            head_out: Some(first.clone()),
            first_head_out: None,
            out: OutputArgs { json: true },
        }),
        &mut Vec::new(),
    )
    .await
    .expect("prove consistency");
    let err = check(&VerifyArgs {
        entry: Some("beta".into()),
        ..verify_args(key.clone(), vec![first], Some(second))
    })
    .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(err.to_string().contains("need an inclusion proof"), "{err}");
}

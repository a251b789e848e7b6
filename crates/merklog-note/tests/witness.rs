//! A witness's add-checkpoint decisions against a real tree: cosigns what
//! extends what it saw, and answers every other case with the status
//! c2sp.org/tlog-witness §add-checkpoint assigns.

use std::convert::Infallible;

use merklog_merkle::{
    consistency_proof, empty_root, leaf_hash, merkle_tree_hash, Hash, NodeId, NodeSource,
};
use merklog_note::witness::{AddCheckpoint, Refusal, WitnessedHead, MAX_PROOF_LINES};
use merklog_note::{Checkpoint, Ed25519NoteSigner, Note, NoteVerifier};

const ORIGIN: &str = "log.example/audit";

struct Leaves(Vec<Hash>);

impl NodeSource for Leaves {
    type Error = Infallible;
    fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Infallible> {
        Ok(ids
            .iter()
            .map(|id| merkle_tree_hash(&self.0[id.first_leaf() as usize..=id.last_leaf() as usize]))
            .collect())
    }
}

struct Log {
    leaves: Leaves,
    signer: Ed25519NoteSigner,
}

impl Log {
    fn new(seed: u8, salt: &str) -> Self {
        Log {
            leaves: Leaves(
                (0..200u32)
                    .map(|i| leaf_hash(format!("{salt}{i}").as_bytes()))
                    .collect(),
            ),
            signer: Ed25519NoteSigner::new(ORIGIN, &[seed; 32]).unwrap(),
        }
    }

    fn root(&self, n: u64) -> Hash {
        merkle_tree_hash(&self.leaves.0[..n as usize])
    }

    fn note(&self, n: u64) -> Note {
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            tree_size: n,
            root_hash: self.root(n),
            extensions: vec![],
        };
        let mut note = Note::new(cp.to_text().unwrap()).unwrap();
        note.sign(&self.signer);
        note
    }

    /// The request a log sends to move a witness from `old` to `n`.
    fn request(&self, old: u64, n: u64) -> AddCheckpoint {
        let proof = if old == 0 || old == n {
            vec![]
        } else {
            consistency_proof(&self.leaves, old, n).unwrap()
        };
        AddCheckpoint::parse(AddCheckpoint::body(old, &proof, &self.note(n)).as_bytes()).unwrap()
    }
}

fn head(log: &Log, n: u64) -> Option<WitnessedHead> {
    Some(WitnessedHead {
        tree_size: n,
        root_hash: log.root(n),
    })
}

#[test]
fn cosigns_a_log_that_only_grows() {
    let log = Log::new(1, "a");
    let key = log.signer.verifier_key();
    let keys: [&dyn NoteVerifier; 1] = [&key];
    let mut latest = None;
    for (old, n) in [(0, 5), (5, 5), (5, 17), (17, 128), (128, 200)] {
        latest = Some(log.request(old, n).check(Some(&keys), latest).unwrap());
        assert_eq!(latest, head(&log, n));
    }
}

#[test]
fn every_refusal_has_the_spec_status() {
    let log = Log::new(1, "a");
    let key = log.signer.verifier_key();
    let keys: [&dyn NoteVerifier; 1] = [&key];
    let seen = head(&log, 17);

    // 404: an origin the witness does not follow.
    let e = log.request(17, 40).check(None, seen).unwrap_err();
    assert_eq!(
        (e.status(), &e),
        (404, &Refusal::UnknownOrigin(ORIGIN.into()))
    );

    // 403: signed only by an unknown key; or a known key's signature fails.
    let stranger = Log::new(2, "a");
    let e = stranger
        .request(17, 40)
        .check(Some(&keys), seen)
        .unwrap_err();
    assert_eq!(e.status(), 403, "{e}");
    let mut forged = log.request(17, 40);
    forged.note.signatures[0].signature[0] ^= 1;
    assert_eq!(forged.check(Some(&keys), seen).unwrap_err().status(), 403);

    // 400: an old size above the checkpoint's (a rollback).
    let e = log.request(0, 10).check(Some(&keys), seen).unwrap_err();
    assert_eq!(e.status(), 409, "old 0 is not the size seen: {e}");
    let mut rollback = log.request(10, 10);
    rollback.old_size = 17;
    assert_eq!(rollback.check(Some(&keys), seen).unwrap_err().status(), 400);

    // 409 with the size the witness holds.
    let e = log.request(5, 40).check(Some(&keys), seen).unwrap_err();
    assert_eq!(e, Refusal::Conflict { latest: 17 });
    assert_eq!(e.status(), 409);

    // 422: a proof that does not link.
    let mut broken = log.request(17, 40);
    broken.proof[0].0[0] ^= 1;
    assert_eq!(broken.check(Some(&keys), seen).unwrap_err().status(), 422);
    // 422: a split view: another root at a size already cosigned, and a
    // larger tree that does not extend the one seen (same key, other leaves).
    let fork = Log {
        leaves: Log::new(1, "b").leaves,
        signer: Ed25519NoteSigner::new(ORIGIN, &[1; 32]).unwrap(),
    };
    assert_eq!(
        fork.request(17, 17)
            .check(Some(&keys), seen)
            .unwrap_err()
            .status(),
        422
    );
    assert_eq!(
        fork.request(17, 40)
            .check(Some(&keys), seen)
            .unwrap_err()
            .status(),
        422
    );
    // 422: size 0 with a root other than the empty tree's.
    let mut empty = Note::new(format!("{ORIGIN}\n0\n{}\n", "A".repeat(43) + "=")).unwrap();
    empty.sign(&log.signer);
    let req = AddCheckpoint::parse(AddCheckpoint::body(0, &[], &empty).as_bytes()).unwrap();
    assert_eq!(req.check(Some(&keys), None).unwrap_err().status(), 422);
    // …while the true empty root is cosigned.
    let cp = Checkpoint {
        origin: ORIGIN.into(),
        tree_size: 0,
        root_hash: empty_root(),
        extensions: vec![],
    };
    let mut empty = Note::new(cp.to_text().unwrap()).unwrap();
    empty.sign(&log.signer);
    let req = AddCheckpoint::parse(AddCheckpoint::body(0, &[], &empty).as_bytes()).unwrap();
    assert!(req.check(Some(&keys), None).is_ok());
    // 422: a proof sent with old size 0.
    let mut with_proof = log.request(0, 40);
    with_proof.proof.push(Hash([0; 32]));
    assert_eq!(
        with_proof.check(Some(&keys), None).unwrap_err().status(),
        422
    );
}

#[test]
fn malformed_bodies_are_bad_requests() {
    let log = Log::new(1, "a");
    let note = log.note(40).to_string();
    let h = "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=";
    let many = format!("{h}\n").repeat(MAX_PROOF_LINES + 1);
    for body in [
        note.clone(),
        format!("old 05\n\n{note}"),
        format!("old -1\n\n{note}"),
        format!("older 5\n\n{note}"),
        format!("old 5\nnot-base64\n\n{note}"),
        format!("old 5\nAAAA\n\n{note}"),
        format!("old 5\n{many}\n{note}"),
        "old 5\n\nnot a note".to_owned(),
        format!(
            "old 5\n\n{}",
            log.note(40).to_string().replace("\n40\n", "\n040\n")
        ),
    ] {
        let e = AddCheckpoint::parse(body.as_bytes()).unwrap_err();
        assert_eq!(e.status(), 400, "{body:?}: {e}");
    }
    // Exactly 63 proof lines parse.
    let most = format!("{h}\n").repeat(MAX_PROOF_LINES);
    assert_eq!(
        AddCheckpoint::parse(format!("old 5\n{most}\n{note}").as_bytes())
            .unwrap()
            .proof
            .len(),
        63
    );
}

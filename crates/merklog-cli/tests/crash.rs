//! Crash safety: the `merklog` server is killed with SIGKILL at random
//! moments during sustained concurrent appends, 20 times, and restarted each
//! time. Afterwards every acknowledged entry must be in the log at the index
//! it was given, every head ever seen must be consistent with the final one,
//! and the whole log must recompute to the final root.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::start;
use merklog_merkle::{leaf_hash, merkle_tree_hash, verify_consistency, verify_inclusion, Hash};
use merklog_proto::v1::{self, log_client::LogClient};
use merklog_proto::{hash_from_wire, hashes_from_wire, required_sth};
use merklog_sth::{LogSigner, PublicKey, SignedTreeHead};
use tonic::transport::Channel;

const KILLS: usize = 20;
const WRITERS: usize = 16;

#[derive(Default)]
struct Seen {
    acknowledged: Vec<(u64, Vec<u8>)>,
    heads: Vec<SignedTreeHead>,
}

/// Appends until the server dies, recording what was acknowledged.
async fn writer(url: String, key: PublicKey, cycle: usize, id: usize, seen: Arc<Mutex<Seen>>) {
    let Ok(mut client) = LogClient::connect(url).await else {
        return;
    };
    for seq in 0.. {
        let entry = format!("cycle {cycle} writer {id} seq {seq}").into_bytes();
        let Ok(resp) = client
            .append(v1::AppendRequest {
                entries: vec![entry.clone()],
            })
            .await
        else {
            return;
        };
        let resp = resp.into_inner();
        let sth = required_sth(resp.tree_head.as_ref(), "tree_head").unwrap();
        key.verify(&sth).expect("acknowledged head is signed");
        let e = &resp.entries[0];
        let proof = hashes_from_wire(&e.inclusion_proof, "proof").unwrap();
        verify_inclusion(
            e.leaf_index,
            sth.head.tree_size,
            &leaf_hash(&entry),
            &proof,
            &sth.head.root_hash,
        )
        .expect("acknowledged proof verifies");
        let mut seen = seen.lock().unwrap();
        seen.acknowledged.push((e.leaf_index, entry));
        seen.heads.push(sth);
    }
}

/// A small deterministic generator; the seed is printed so a failure can be
/// replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

async fn check_log(client: &mut LogClient<Channel>, key: &PublicKey, seen: &Seen) {
    let latest = client
        .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
        .await
        .unwrap()
        .into_inner();
    let latest = required_sth(Some(&latest), "tree_head").unwrap();
    key.verify(&latest).unwrap();
    let n = latest.head.tree_size;

    let mut leaves: Vec<Hash> = Vec::with_capacity(n as usize);
    let mut data: Vec<Vec<u8>> = Vec::with_capacity(n as usize);
    while (leaves.len() as u64) < n {
        let start = leaves.len() as u64;
        let page = client
            .get_entries(v1::GetEntriesRequest {
                start,
                end: (start + 1000).min(n),
            })
            .await
            .unwrap()
            .into_inner();
        for e in page.entries {
            assert_eq!(
                hash_from_wire(&e.leaf_hash, "leaf_hash").unwrap(),
                leaf_hash(&e.data)
            );
            leaves.push(leaf_hash(&e.data));
            data.push(e.data);
        }
    }
    assert_eq!(
        merkle_tree_hash(&leaves),
        latest.head.root_hash,
        "the log recomputes to its head"
    );

    for (index, entry) in &seen.acknowledged {
        assert!(
            *index < n,
            "acknowledged index {index} is beyond the final size {n}"
        );
        assert_eq!(
            &data[*index as usize], entry,
            "acknowledged entry moved or changed"
        );
    }
    for head in &seen.heads {
        assert!(
            head.head.tree_size <= n,
            "a head seen is larger than the final one"
        );
        let proof = client
            .get_consistency_proof(v1::GetConsistencyProofRequest {
                first_size: head.head.tree_size,
                second_size: n,
            })
            .await
            .unwrap()
            .into_inner();
        let proof = hashes_from_wire(&proof.proof, "proof").unwrap();
        verify_consistency(
            head.head.tree_size,
            n,
            &head.head.root_hash,
            &latest.head.root_hash,
            &proof,
        )
        .unwrap_or_else(|e| panic!("head of size {} forked: {e}", head.head.tree_size));
    }
}

async fn kill_and_restart_repeatedly(database_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("key.pem");
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    std::fs::write(&key_path, signer.to_pkcs8_pem()).unwrap();
    let key = signer.public_key().clone();
    let log = dir.path().join("server.log");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}, server log {}", log.display());
    let mut rng = XorShift(seed);
    let seen = Arc::new(Mutex::new(Seen::default()));

    for cycle in 0..KILLS {
        let mut server = start(database_url, &key_path, &log).await;
        let writers: Vec<_> = (0..WRITERS)
            .map(|id| {
                tokio::spawn(writer(
                    server.url.clone(),
                    key.clone(),
                    cycle,
                    id,
                    seen.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100 + rng.next() % 400)).await;
        server.child.start_kill().expect("SIGKILL");
        server.child.wait().await.unwrap();
        for w in writers {
            tokio::time::timeout(Duration::from_secs(30), w)
                .await
                .expect("writers notice the dead server")
                .unwrap();
        }
    }
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    assert!(
        seen.acknowledged.len() > KILLS,
        "appends were acknowledged between kills ({})",
        seen.acknowledged.len()
    );
    let server = start(database_url, &key_path, &log).await;
    let mut client = LogClient::connect(server.url.clone()).await.unwrap();
    check_log(&mut client, &key, &seen).await;
    eprintln!(
        "{} acknowledged entries and {} heads survived {KILLS} kills",
        seen.acknowledged.len(),
        seen.heads.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_appends_loses_nothing_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("log.db").display());
    kill_and_restart_repeatedly(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_appends_loses_nothing_postgres() {
    let (url, _guard) = merklog_storage::testing::TempPostgres::create().await;
    kill_and_restart_repeatedly(&url).await;
}

//! The trusted head, kept between runs in a small JSON file.

use std::path::Path;

use merklog_merkle::{CompactRange, Hash};
use merklog_sth::PublicKey;
use serde::{Deserialize, Serialize};

use crate::check::{verify_head_json, VerifiedHead};
use crate::json::{hex_hashes, TreeHeadJson};
use crate::private_file::{write_private, Existing};
use crate::{ClientError, Result};

/// What a long-running client remembers: the last tree head it verified and,
/// for a monitor that checks entries, the right edge of that tree
/// ([`CompactRange`] hashes), so it can check the next entries without
/// downloading the old ones again.
///
/// ```json
/// {"tree_head": {"tree_size": 8, …}, "right_edge": ["…64 hex…"]}
/// ```
///
/// The file is not trusted blindly: [`TrustState::load`] checks the head's
/// signature with the pinned key and the right edge against the head's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustState {
    pub tree_head: TreeHeadJson,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_hashes"
    )]
    pub right_edge: Option<Vec<Hash>>,
}

impl TrustState {
    /// Reads and checks the state at `path`; `None` when there is no file.
    ///
    /// A right edge that does not match the head's root is dropped (the
    /// monitor then catches up from the first entry) rather than trusted.
    ///
    /// # Errors
    /// [`ClientError::State`] when the file cannot be read or parsed;
    /// [`ClientError::BadState`], naming the file, when its head does not
    /// verify with `key`.
    pub fn load(
        path: &Path,
        key: &PublicKey,
    ) -> Result<Option<(VerifiedHead, Option<CompactRange>)>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(state_error(path, e)),
        };
        let state: TrustState = serde_json::from_str(&text).map_err(|e| state_error(path, e))?;
        // Said apart from a bad head served by the log: here the file (or
        // the key given) is what failed.
        let head = verify_head_json(key, &state.tree_head).map_err(|e| ClientError::BadState {
            path: path.to_owned(),
            reason: Box::new(e),
        })?;
        let edge = state
            .right_edge
            .and_then(|hashes| CompactRange::from_parts(head.tree_size(), hashes).ok())
            .filter(|range| range.root() == head.root_hash());
        Ok(Some((head, edge)))
    }

    /// Saves `head` as [`TrustState::save`] does unless the file now holds
    /// a larger head, which another process sharing the file verified and
    /// saved since this one loaded it: a state file never goes back. The
    /// read and the write happen under an exclusive lock on `<path>.lock`,
    /// so two processes cannot interleave them. Returns whether `head` was
    /// written.
    ///
    /// A larger head kept this way has not been checked against `head` here;
    /// the next check against the file proves the two one tree (a running
    /// monitor does at its next check, with the head it keeps in memory).
    ///
    /// # Errors
    /// [`ClientError::Fork`] when the file holds another root at `head`'s
    /// size; [`ClientError::State`] or [`ClientError::BadState`] when the
    /// file or its lock cannot be read or written.
    pub fn save_unless_ahead(
        path: &Path,
        key: &PublicKey,
        head: &VerifiedHead,
        edge: Option<&CompactRange>,
    ) -> Result<bool> {
        let mut lock_name = path.as_os_str().to_owned();
        lock_name.push(".lock");
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            // A link planted at the lock's name must not make this process
            // create or open a file elsewhere.
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        let lock = options
            .open(&lock_name)
            .map_err(|e| state_error(path, format!("cannot open its lock file: {e}")))?;
        lock.lock()
            .map_err(|e| state_error(path, format!("cannot lock it: {e}")))?;
        if let Some((saved, _)) = TrustState::load(path, key)? {
            if saved.tree_size() > head.tree_size() {
                return Ok(false);
            }
            if saved.tree_size() == head.tree_size() {
                crate::check::check_heads_consistent(&saved, head, &[])?;
            }
        }
        TrustState::save(path, head, edge)?;
        // The lock goes with the file handle.
        drop(lock);
        Ok(true)
    }

    /// Writes the state for `head` (and `edge`, when it is `head`'s tree) to
    /// `path` atomically and readable by its owner only, through a
    /// temporary file with a random name that no planted link can redirect
    /// ([`write_private`]): a reader or a crash sees the old file or the new
    /// one, never a mix.
    ///
    /// # Errors
    /// [`ClientError::State`] when the file cannot be written.
    pub fn save(path: &Path, head: &VerifiedHead, edge: Option<&CompactRange>) -> Result<()> {
        let state = TrustState {
            tree_head: head.to_json(),
            right_edge: edge
                .filter(|e| e.size() == head.tree_size())
                .map(|e| e.hashes().to_vec()),
        };
        let mut text = serde_json::to_string_pretty(&state).map_err(|e| state_error(path, e))?;
        text.push('\n');
        write_private(path, text.as_bytes(), Existing::Replace).map_err(|e| state_error(path, e))
    }
}

fn state_error(path: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::State {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

mod optional_hashes {
    use merklog_merkle::Hash;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<Hash>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(hashes) => super::hex_hashes::serialize(hashes, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Hash>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::hex_hashes")] Vec<Hash>);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use merklog_merkle::leaf_hash;
    use merklog_sth::{LogSigner, TreeHead};

    #[test]
    fn a_state_file_another_process_moved_ahead_is_not_moved_back() {
        let dir = std::env::temp_dir().join(format!("merklog-state-ahead-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let signer = LogSigner::generate(&mut rand_core::OsRng);
        let key = signer.public_key();
        let head = |n: u8, salt: u8| {
            let leaves: Vec<_> = (0..n).map(|i| leaf_hash(&[i, salt])).collect();
            let sth = signer.sign(TreeHead {
                tree_size: n.into(),
                timestamp_ms: n.into(),
                root_hash: merklog_merkle::merkle_tree_hash(&leaves),
            });
            crate::verify_head(key, &sth, key.log_id()).unwrap()
        };
        // Another process saved size 100 after this one loaded size 50.
        assert!(TrustState::save_unless_ahead(&path, key, &head(100, 0), None).unwrap());
        assert!(!TrustState::save_unless_ahead(&path, key, &head(80, 0), None).unwrap());
        assert_eq!(
            TrustState::load(&path, key).unwrap().unwrap().0,
            head(100, 0)
        );
        // The same size with another root is a fork, whoever saved it.
        let err = TrustState::save_unless_ahead(&path, key, &head(100, 1), None).unwrap_err();
        assert!(matches!(err, ClientError::Fork { .. }), "{err}");
        assert!(TrustState::save_unless_ahead(&path, key, &head(120, 0), None).unwrap());
        assert_eq!(
            TrustState::load(&path, key).unwrap().unwrap().0,
            head(120, 0)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Whether a process waits for the `flock` on the file with inode
    /// `ino` (a `->` line of /proc/locks names a blocked waiter).
    #[cfg(target_os = "linux")]
    fn lock_has_a_waiter(ino: u64) -> bool {
        let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
        locks.lines().any(|line| {
            line.contains("->")
                && line
                    .split_whitespace()
                    .any(|field| field.rsplit(':').next() == Some(&ino.to_string()))
        })
    }

    /// Two monitors share a state file: one that saves while the other
    /// holds the lock waits for it, then reads what the other saved, and
    /// does not move the file back.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_save_waits_for_the_lock_and_then_sees_the_other_save() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let signer = LogSigner::generate(&mut rand_core::OsRng);
        let key = signer.public_key().clone();
        let head = |n: u8| {
            let leaves: Vec<_> = (0..n).map(|i| leaf_hash(&[i])).collect();
            let sth = signer.sign(TreeHead {
                tree_size: n.into(),
                timestamp_ms: n.into(),
                root_hash: merklog_merkle::merkle_tree_hash(&leaves),
            });
            crate::verify_head(&key, &sth, key.log_id()).unwrap()
        };
        TrustState::save(&path, &head(50), None).unwrap();

        // The other monitor holds the lock, as it does while it saves.
        let lock_path = dir.path().join("state.json.lock");
        let held = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .unwrap();
        held.lock().unwrap();
        let ino = std::fs::metadata(&lock_path).unwrap().ino();

        let saver = {
            let (path, key, head) = (path.clone(), key.clone(), head(80));
            std::thread::spawn(move || TrustState::save_unless_ahead(&path, &key, &head, None))
        };
        // Polled, not slept on: the waiter shows in /proc/locks once it
        // blocks, and until the lock is released it cannot have saved.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !lock_has_a_waiter(ino) {
            assert!(!saver.is_finished(), "the save did not wait for the lock");
            assert!(
                std::time::Instant::now() < deadline,
                "no waiter on the lock"
            );
            std::thread::yield_now();
        }
        assert_eq!(TrustState::load(&path, &key).unwrap().unwrap().0, head(50));

        // The other monitor saves a larger head and lets go.
        TrustState::save(&path, &head(100), None).unwrap();
        held.unlock().unwrap();
        assert!(
            !saver.join().unwrap().unwrap(),
            "the older head was not saved"
        );
        assert_eq!(TrustState::load(&path, &key).unwrap().unwrap().0, head(100));
    }

    #[cfg(unix)]
    #[test]
    fn a_link_planted_at_the_temporary_name_is_not_followed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "victim").unwrap();
        // The name the state file's temporary copy used to have.
        let planted = dir
            .path()
            .join(format!(".state.json.tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();

        let signer = LogSigner::generate(&mut rand_core::OsRng);
        let key = signer.public_key();
        let sth = signer.sign(TreeHead {
            tree_size: 1,
            timestamp_ms: 1,
            root_hash: leaf_hash(b"a"),
        });
        let head = crate::verify_head(key, &sth, key.log_id()).unwrap();
        TrustState::save(&path, &head, None).unwrap();

        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file(), "the state file is a file of its own");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(TrustState::load(&path, key).unwrap().unwrap().0, head);
    }

    #[test]
    fn saves_atomically_and_loads_with_checks() {
        let dir = std::env::temp_dir().join(format!("merklog-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let signer = LogSigner::generate(&mut rand_core::OsRng);
        let key = signer.public_key();
        assert!(TrustState::load(&path, key).unwrap().is_none());

        let mut range = CompactRange::new();
        for i in 0..5u8 {
            range.append(leaf_hash(&[i]), |_, _| {});
        }
        let sth = signer.sign(TreeHead {
            tree_size: 5,
            timestamp_ms: 9,
            root_hash: range.root(),
        });
        let head = crate::verify_head(key, &sth, key.log_id()).unwrap();
        TrustState::save(&path, &head, Some(&range)).unwrap();
        let (loaded, edge) = TrustState::load(&path, key).unwrap().unwrap();
        assert_eq!(loaded, head);
        assert_eq!(edge.unwrap(), range);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );

        // Another key does not accept the saved head, and the error blames
        // the file, not the log.
        let other = LogSigner::generate(&mut rand_core::OsRng);
        let err = TrustState::load(&path, other.public_key()).unwrap_err();
        assert!(
            matches!(&err, ClientError::BadState { path: p, reason } if *p == path && matches!(**reason, ClientError::WrongLog { .. })),
            "{err:?}"
        );
        assert!(err.is_verification_failure());
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("saved state (not the log)"), "{text}");

        // An edited head (its root changed) fails its signature, and the
        // error says so about the file.
        let good = std::fs::read_to_string(&path).unwrap();
        let mut edited: serde_json::Value = serde_json::from_str(&good).unwrap();
        edited["tree_head"]["root_hash"] = "11".repeat(32).into();
        std::fs::write(&path, edited.to_string()).unwrap();
        let err = TrustState::load(&path, key).unwrap_err();
        assert!(
            matches!(&err, ClientError::BadState { reason, .. } if matches!(**reason, ClientError::BadSignature { tree_size: 5, .. })),
            "{err:?}"
        );
        assert_eq!(err.kind(), "bad_state");
        std::fs::write(&path, good).unwrap();

        // A right edge that does not match the root is dropped.
        let mut text: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        text["right_edge"][0] = "00".repeat(32).into();
        std::fs::write(&path, text.to_string()).unwrap();
        let (_, edge) = TrustState::load(&path, key).unwrap().unwrap();
        assert!(edge.is_none());

        std::fs::write(&path, "{").unwrap();
        assert!(matches!(
            TrustState::load(&path, key),
            Err(ClientError::State { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Shared set-up of the client, CLI and tamper tests: a log served in
//! process over real gRPC, its public key in a PEM file, and a scratch
//! directory for saved documents and state files.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use merklog_cli::client::{LogArgs, OutputArgs, SafetyArgs};
use merklog_client::Client;
use merklog_server::{SequencerConfig, ServerConfig};
use merklog_sth::LogSigner;
use merklog_storage::AnyStore;
use merklog_tests::{TestDb, TestServer};

/// A server configuration that closes each batch at once, so each append
/// call gets its own signed head.
pub fn config() -> ServerConfig {
    ServerConfig {
        sequencer: SequencerConfig {
            max_batch_delay: std::time::Duration::ZERO,
            ..SequencerConfig::default()
        },
        ..ServerConfig::default()
    }
}

/// A running log with its key on disk.
pub struct Log {
    pub server: TestServer,
    pub store: Arc<AnyStore>,
    pub signer: LogSigner,
    pub db: TestDb,
}

impl Log {
    /// Starts a server over `db` signing with `signer`.
    pub async fn start(db: TestDb, signer: LogSigner) -> Log {
        Self::start_with(db, signer, config()).await
    }

    /// Starts a server over `db` with `config`.
    pub async fn start_with(db: TestDb, signer: LogSigner, config: ServerConfig) -> Log {
        let store = Arc::new(db.open().await.expect("open the store"));
        let server = TestServer::start(store.clone(), signer.clone(), config)
            .await
            .expect("start the server");
        Log {
            server,
            store,
            signer,
            db,
        }
    }

    /// Connects a verifying client pinned to the log's key.
    pub async fn client(&self) -> Client {
        Client::connect(&self.server.url(), self.signer.public_key().clone())
            .await
            .expect("connect")
    }

    /// Appends each batch in its own call (so each gets a signed head).
    pub async fn append_batches(&self, batches: &[&[&str]]) {
        let mut client = self.client().await;
        for batch in batches {
            let entries = batch.iter().map(|e| e.as_bytes().to_vec()).collect();
            client.append(entries).await.expect("append verifies");
        }
    }

    /// Returns `LogArgs` for the CLI commands, pinned to the key file.
    pub fn args(&self, scratch: &Scratch, state: Option<PathBuf>) -> LogArgs {
        LogArgs {
            server: self.server.url(),
            public_key: scratch.key_file(&self.signer),
            state,
            token: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            safety: SafetyArgs::default(),
        }
    }
}

/// A scratch directory, removed on drop.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix("merklog-client-test-")
                .tempdir()
                .expect("temporary directory"),
        }
    }

    /// Returns a path in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `signer`'s public key as PEM and returns its path.
    pub fn key_file(&self, signer: &LogSigner) -> PathBuf {
        let path = self.path(&format!("{}.pem", signer.public_key().log_id()));
        std::fs::write(&path, signer.public_key().pem()).expect("write the key");
        path
    }

    /// Writes `value` as JSON and returns the path.
    pub fn save(&self, name: &str, value: &impl serde::Serialize) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
        path
    }

    /// Reads a JSON file as a value, to mutate it.
    pub fn load(&self, path: &Path) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }
}

/// `--json` off.
pub fn text() -> OutputArgs {
    OutputArgs { json: false }
}

/// A fresh random key.
pub fn signer() -> LogSigner {
    LogSigner::generate(&mut rand_core::OsRng)
}

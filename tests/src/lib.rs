//! Shared harness for the end-to-end tests: an in-process server on a real
//! TCP port, and a gRPC client connected to it; with [`pki`], certificates
//! for TLS made at test time; with [`liar`], a log that lies in chosen ways
//! in front of an honest one.

pub mod liar;
pub mod pki;

use std::net::SocketAddr;
use std::sync::Arc;

use merklog_proto::v1::log_client::LogClient;
use merklog_server::{Clock, ServerConfig, SystemClock};
use merklog_sth::LogSigner;
use merklog_storage::LogStore;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// A server running in this process until [`TestServer::stop`] or drop.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), merklog_server::ServeError>>>,
    /// How [`TestServer::client`] connects to a TLS server.
    tls: Option<ClientTlsConfig>,
}

impl TestServer {
    /// Starts a server over `store` on an ephemeral port and waits until
    /// the sequencer has passed its start-up checks.
    ///
    /// # Errors
    /// Whatever [`merklog_server::serve`] fails with before it serves.
    pub async fn start<S: LogStore + 'static>(
        store: Arc<S>,
        signer: LogSigner,
        config: ServerConfig,
    ) -> anyhow::Result<Self> {
        Self::start_with_client_tls(store, signer, config, None, Arc::new(SystemClock)).await
    }

    /// Starts a server as [`TestServer::start`] does, whose heads are dated
    /// by `clock` (one that runs ahead, say).
    ///
    /// # Errors
    /// Whatever [`merklog_server::serve`] fails with before it serves.
    pub async fn start_with_clock<S: LogStore + 'static>(
        store: Arc<S>,
        signer: LogSigner,
        config: ServerConfig,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        Self::start_with_client_tls(store, signer, config, None, clock).await
    }

    /// Starts a server as [`TestServer::start`] does, with `config.tls` set;
    /// [`TestServer::client`] (and the readiness check) connect with `tls`.
    ///
    /// # Errors
    /// Whatever [`merklog_server::serve`] fails with before it serves.
    pub async fn start_tls<S: LogStore + 'static>(
        store: Arc<S>,
        signer: LogSigner,
        config: ServerConfig,
        tls: ClientTlsConfig,
    ) -> anyhow::Result<Self> {
        Self::start_with_client_tls(store, signer, config, Some(tls), Arc::new(SystemClock)).await
    }

    async fn start_with_client_tls<S: LogStore + 'static>(
        store: Arc<S>,
        signer: LogSigner,
        config: ServerConfig,
        tls: Option<ClientTlsConfig>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(merklog_server::serve(
            listener,
            config,
            store,
            signer,
            clock,
            async move {
                let _ = stopped.await;
            },
        ));
        let server = TestServer {
            addr,
            stop: Some(stop),
            task: Some(task),
            tls,
        };
        server.wait_ready().await
    }

    async fn wait_ready(mut self) -> anyhow::Result<Self> {
        for _ in 0..500 {
            if self.task.as_ref().is_some_and(|t| t.is_finished()) {
                let task = self.task.take().expect("checked above");
                return match task.await? {
                    Err(e) => Err(e.into()),
                    Ok(()) => anyhow::bail!("server stopped during start-up"),
                };
            }
            if let Ok(mut client) = self.client().await {
                let req = merklog_proto::v1::GetSignedTreeHeadRequest {};
                // Any answer but UNAVAILABLE (an access refusal, say) means
                // the service is up.
                match client.get_signed_tree_head(req).await {
                    Ok(_) => return Ok(self),
                    Err(s) if s.code() != tonic::Code::Unavailable => return Ok(self),
                    Err(_) => {}
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        anyhow::bail!("server did not become ready within 10 s")
    }

    /// Returns the server's URL: `https://` when it was started with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Connects a new gRPC client (over TLS, as given to
    /// [`TestServer::start_tls`]).
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn client(&self) -> anyhow::Result<LogClient<Channel>> {
        let mut endpoint = Endpoint::from_shared(self.url())?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone())?;
        }
        Ok(LogClient::new(endpoint.connect().await?))
    }

    /// Stops the server gracefully and returns how `serve` ended.
    ///
    /// # Errors
    /// [`merklog_server::ServeError`] from the server, or a panic in it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown().await
    }

    /// Stops the server gracefully, as [`TestServer::stop`] does, where the
    /// server cannot be moved out (a field of a test fixture).
    ///
    /// # Errors
    /// As [`TestServer::stop`].
    pub async fn shutdown(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => Ok(task.await??),
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Starts a server as [`TestServer::start`] would, and returns the start-up
/// error it fails with, if it fails before serving.
///
/// # Errors
/// When the server starts instead.
pub async fn start_error<S: LogStore + 'static>(
    store: Arc<S>,
    signer: LogSigner,
) -> anyhow::Result<merklog_server::ServeError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        merklog_server::serve(
            listener,
            ServerConfig::default(),
            store,
            signer,
            Arc::new(SystemClock),
            async {},
        ),
    )
    .await?;
    match result {
        Err(e) => Ok(e),
        Ok(()) => anyhow::bail!("the server started although it should have refused"),
    }
}

/// A fresh database of either backend, removed when dropped.
pub enum TestDb {
    Sqlite(std::path::PathBuf, tempfile::TempDir),
    Postgres(String, merklog_storage::testing::TempPostgres),
}

impl TestDb {
    /// A new SQLite file in a temporary directory.
    pub fn sqlite() -> Self {
        let (path, dir) = merklog_storage::testing::temp_sqlite();
        TestDb::Sqlite(path, dir)
    }

    /// A new database on the PostgreSQL server of `DATABASE_URL`.
    pub async fn postgres() -> Self {
        let (url, guard) = merklog_storage::testing::TempPostgres::create().await;
        TestDb::Postgres(url, guard)
    }

    /// The URL `merklog serve --database-url` would take.
    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite(path, _) => format!("sqlite://{}", path.display()),
            TestDb::Postgres(url, _) => url.clone(),
        }
    }

    /// Opens (and migrates) the store.
    ///
    /// # Errors
    /// When the store cannot be opened.
    pub async fn open(&self) -> anyhow::Result<merklog_storage::AnyStore> {
        Ok(merklog_storage::AnyStore::open(&self.url()).await?)
    }
}

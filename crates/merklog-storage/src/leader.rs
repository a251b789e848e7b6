//! Which of several service instances on one PostgreSQL database sequences.
//!
//! The leader holds a session-level advisory lock on a connection of its own
//! (not one of the pool's), so the lock lives exactly as long as that
//! session: when the leader's process dies, PostgreSQL ends the session and
//! frees the lock, and another instance takes it. Each new holder records a
//! term in `leader_terms` with the address clients should use.
//!
//! The lock decides who *should* append; the schema decides who *can*. A
//! leader that lost its lock without noticing (a network partition) and
//! still commits a batch is refused by the primary key and the order trigger
//! as soon as the new leader has written at that index, and a head that
//! disagrees with a stored one at the same size is refused by ML003, so two
//! leaders cannot fork the log; one of them fails its batch.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};

use crate::{Result, StorageError};

/// The advisory lock key of the sequencer: "mlog" in ASCII. Advisory locks
/// are per database, so each log database has its own.
pub const LEADER_LOCK_KEY: i64 = 0x6d6c_6f67;

/// SQL that is true when some session holds the leader lock (key in `$1`)
/// and the further condition `$and` holds for its `pg_locks` row.
macro_rules! leader_lock_held {
    // Held by any session in the current database.
    (in_this_database) => {
        leader_lock_held!(
            "database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    };
    ($and:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND ((classid::bigint << 32) | objid::bigint) = $1 AND objsubid = 1 AND ",
            $and,
            ")"
        )
    };
}

/// How long a check of the lease may take before the lease counts as lost.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The most recent leader term, as recorded in `leader_terms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderTerm {
    pub term: i64,
    /// Where clients reach that leader.
    pub address: String,
    /// When the term started, in milliseconds since the Unix epoch.
    pub started_ms: i64,
    /// Whether some session holds the leader lock in this database now; on
    /// a streaming replica this is always false (locks are not replicated).
    pub lock_held: bool,
}

/// The leader lock, held for as long as this value lives and its session
/// stays up.
#[derive(Debug)]
pub struct LeaderLease {
    connection: PgConnection,
    term: i64,
}

impl LeaderLease {
    /// Tries to take the leader lock over a new session to the database
    /// `options` names, and records a term for `address` if it got it.
    /// `None` when another session holds the lock.
    ///
    /// The session asks the server to probe the connection every few seconds
    /// (TCP keepalives), so that a leader cut off by the network loses the
    /// lock within about 15 s instead of the kernel's default two hours.
    pub(crate) async fn try_acquire(
        options: &PgConnectOptions,
        address: &str,
    ) -> Result<Option<LeaderLease>> {
        let options = options.clone().application_name("merklog-leader").options([
            ("tcp_keepalives_idle", "5"),
            ("tcp_keepalives_interval", "2"),
            ("tcp_keepalives_count", "3"),
        ]);
        let mut connection = PgConnection::connect_with(&options).await?;
        let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK_KEY)
            .fetch_one(&mut connection)
            .await?;
        if !acquired {
            let _ = connection.close().await;
            return Ok(None);
        }
        let term: i64 =
            sqlx::query_scalar("INSERT INTO leader_terms (address) VALUES ($1) RETURNING term")
                .bind(address)
                .fetch_one(&mut connection)
                .await?;
        Ok(Some(LeaderLease { connection, term }))
    }

    /// The term recorded when the lock was taken.
    pub fn term(&self) -> i64 {
        self.term
    }

    /// Checks that the lock's session is still up, which means the lock is
    /// still held.
    ///
    /// # Errors
    /// [`StorageError::LeaseLost`] when the session is gone, does not answer
    /// within 2 s or no longer holds the lock.
    pub async fn check(&mut self) -> Result<()> {
        let ping = sqlx::query_scalar::<_, bool>(concat!(
            "SELECT ",
            leader_lock_held!("pid = pg_backend_pid()")
        ))
        .bind(LEADER_LOCK_KEY)
        .fetch_one(&mut self.connection);
        match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(StorageError::LeaseLost {
                reason: "its session no longer holds the lock".into(),
            }),
            Ok(Err(e)) => Err(StorageError::LeaseLost {
                reason: format!("its session failed: {e}"),
            }),
            Err(_) => Err(StorageError::LeaseLost {
                reason: format!("its session did not answer within {CHECK_TIMEOUT:?}"),
            }),
        }
    }

    /// Gives the lock up by ending its session.
    pub async fn release(self) {
        let _ = self.connection.close().await;
    }
}

/// Whether some session holds the leader lock in this database. A follower
/// asks this over its pool before it opens a session of its own to try for
/// the lock, so that waiting to lead costs a query per poll rather than a
/// new connection (a new server process) per poll.
pub(crate) async fn lock_held(pool: &sqlx::PgPool) -> Result<bool> {
    Ok(
        sqlx::query_scalar(concat!("SELECT ", leader_lock_held!(in_this_database)))
            .bind(LEADER_LOCK_KEY)
            .fetch_one(pool)
            .await?,
    )
}

/// Reads the latest term, if any instance ever led this database.
pub(crate) async fn latest_term(pool: &sqlx::PgPool) -> Result<Option<LeaderTerm>> {
    let row = sqlx::query(concat!(
        "SELECT term, address, (extract(epoch FROM started_at) * 1000)::bigint AS started_ms, ",
        leader_lock_held!(in_this_database),
        " AS lock_held FROM leader_terms ORDER BY term DESC LIMIT 1"
    ))
    .bind(LEADER_LOCK_KEY)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(LeaderTerm {
            term: r.try_get("term")?,
            address: r.try_get("address")?,
            started_ms: r.try_get("started_ms")?,
            lock_held: r.try_get("lock_held")?,
        })
    })
    .transpose()
}

//! Which of several service instances on one PostgreSQL database sequences,
//! and which one process sequences a SQLite file.
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
//!
//! Any login that may connect to the database can take the same advisory
//! lock. Only a session of a member of `merklog_writer` counts as a leader;
//! another holder is reported as [`StorageError::ForeignLeaderLock`] by
//! [`LogStore::try_lead`](crate::LogStore::try_lead) (no instance can lead
//! until an administrator ends that session), and revoking CONNECT on the
//! database from PUBLIC keeps other logins out (docs/STORAGE.md).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};

use crate::{Result, StorageError};

/// The advisory lock key of the sequencer: "mlog" in ASCII. Advisory locks
/// are per database, so each log database has its own.
pub const LEADER_LOCK_KEY: i64 = 0x6d6c_6f67;

/// The `FROM` and `WHERE` of the `pg_locks` rows of the leader lock (key in
/// `$1`) that are granted and satisfy the further condition `$and`.
macro_rules! leader_lock_rows {
    ($and:expr) => {
        concat!(
            "FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted \
             AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 AND l.objsubid = 1 AND ",
            $and
        )
    };
}

/// Condition on a `pg_locks` row `l`: the lock is in the current database.
macro_rules! in_this_database {
    () => {
        "l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    };
}

/// Expression on a `pg_locks` row `l`: its session's login is a member of
/// `merklog_writer` (a superuser is a member of every role), so it may be a
/// merklog instance. Any other login that can connect can take the same
/// advisory lock; it is not a leader, since it cannot append.
macro_rules! held_by_an_instance {
    () => {
        "EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.pid \
         AND pg_has_role(a.usesysid, 'merklog_writer', 'MEMBER'))"
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
    /// Whether an instance (a session of a member of `merklog_writer`)
    /// holds the leader lock in this database now; on a streaming replica
    /// this is always false (locks are not replicated).
    pub lock_held: bool,
}

/// The leader lock, held for as long as this value lives (and, on
/// PostgreSQL, its session stays up).
#[derive(Debug)]
pub struct LeaderLease {
    holder: Holder,
    term: i64,
}

/// What holds the lock.
#[derive(Debug)]
enum Holder {
    /// A PostgreSQL session holding the advisory lock.
    Session(PgConnection),
    /// An open lock file beside a SQLite database, locked exclusively.
    File(std::fs::File),
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
        Ok(Some(LeaderLease {
            holder: Holder::Session(connection),
            term,
        }))
    }

    /// Takes the exclusive lock on the lock file `lock_file` of the SQLite
    /// database `database`, creating the file (0600) if needed, and writes
    /// this process's id into it for the message a second process shows.
    ///
    /// # Errors
    /// [`StorageError::StoreLocked`] when another open file description
    /// (another process, or another store in this one) holds the lock;
    /// [`StorageError::Unavailable`] when the lock file cannot be opened.
    pub(crate) fn lock_file(database: &Path, lock_file: &Path) -> Result<LeaderLease> {
        let io = |e: std::io::Error| StorageError::Unavailable {
            source: sqlx::Error::Io(e),
        };
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(lock_file).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                // The holder writes its id just after locking: an empty or
                // half-written file only loses the pid from the message.
                let pid = std::fs::read_to_string(lock_file)
                    .ok()
                    .and_then(|text| text.trim().parse().ok());
                return Err(StorageError::StoreLocked {
                    database: database.to_owned(),
                    lock_file: lock_file.to_owned(),
                    pid,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // Only informative: the lock, not the text, keeps others out.
        file.set_len(0).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(LeaderLease {
            holder: Holder::File(file),
            term: 0,
        })
    }

    /// The term recorded when the lock was taken; 0 for the lock file of a
    /// SQLite store, which records no terms.
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
        let connection = match &mut self.holder {
            Holder::Session(connection) => connection,
            // A lock on an open file lasts as long as the file stays open.
            Holder::File(_) => return Ok(()),
        };
        let ping = sqlx::query_scalar::<_, bool>(concat!(
            "SELECT EXISTS (SELECT 1 ",
            leader_lock_rows!("l.pid = pg_backend_pid()"),
            ")"
        ))
        .bind(LEADER_LOCK_KEY)
        .fetch_one(connection);
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

    /// Gives the lock up by ending its session, or closing its lock file.
    pub async fn release(self) {
        match self.holder {
            Holder::Session(connection) => {
                let _ = connection.close().await;
            }
            // Closing the file frees the lock; the file itself stays, since
            // deleting it would let two processes lock two different files.
            Holder::File(file) => drop(file),
        }
    }
}

/// Who holds the leader lock in this database.
#[derive(Debug, PartialEq, Eq)]
enum LockHolder {
    Nobody,
    /// A session of a member of `merklog_writer`: a leader.
    Instance,
    /// A session of any other login (`pid` and `role` are unknown for a
    /// prepared transaction): it blocks every instance and leads none.
    Foreign {
        pid: Option<i32>,
        role: Option<String>,
    },
}

/// Reads who holds the leader lock, a foreign holder first if there are
/// several (shared advisory locks).
async fn lock_holder(pool: &sqlx::PgPool) -> Result<LockHolder> {
    let row: Option<(Option<i32>, Option<String>, bool)> = sqlx::query_as(concat!(
        "SELECT l.pid, (SELECT a.usename::text FROM pg_stat_activity a WHERE a.pid = l.pid), ",
        held_by_an_instance!(),
        " AS instance ",
        leader_lock_rows!(in_this_database!()),
        " ORDER BY instance, l.pid LIMIT 1"
    ))
    .bind(LEADER_LOCK_KEY)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        None => LockHolder::Nobody,
        Some((_, _, true)) => LockHolder::Instance,
        Some((pid, role, false)) => LockHolder::Foreign { pid, role },
    })
}

/// Takes the lead when nobody holds the leader lock. A follower first asks
/// over its pool who holds it, so that waiting to lead costs a query per
/// poll rather than a new connection (a new server process) per poll.
///
/// # Errors
/// [`StorageError::ForeignLeaderLock`] when a session that is not an
/// instance holds the lock: waiting would not end it.
pub(crate) async fn try_lead(pool: &sqlx::PgPool, address: &str) -> Result<Option<LeaderLease>> {
    match lock_holder(pool).await? {
        LockHolder::Instance => Ok(None),
        LockHolder::Foreign { pid, role } => Err(StorageError::ForeignLeaderLock { pid, role }),
        // Another instance may still win the race for it.
        LockHolder::Nobody => LeaderLease::try_acquire(&pool.connect_options(), address).await,
    }
}

/// Reads the latest term, if any instance ever led this database.
pub(crate) async fn latest_term(pool: &sqlx::PgPool) -> Result<Option<LeaderTerm>> {
    let row = sqlx::query(concat!(
        "SELECT term, address, (extract(epoch FROM started_at) * 1000)::bigint AS started_ms, \
         EXISTS (SELECT 1 ",
        leader_lock_rows!(concat!(
            in_this_database!(),
            " AND ",
            held_by_an_instance!()
        )),
        ") AS lock_held FROM leader_terms ORDER BY term DESC LIMIT 1"
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

//! The storage error, and the one place where database errors (PostgreSQL
//! SQLSTATEs, SQLite result codes and trigger messages) become domain errors.
//!
//! The append-only triggers in `migrations/` raise these codes:
//!
//! | code    | PostgreSQL                        | SQLite message prefix | meaning                                   |
//! |---------|-----------------------------------|-----------------------|-------------------------------------------|
//! | `ML001` | SQLSTATE `ML001`                  | `merklog ML001:`      | UPDATE, DELETE or TRUNCATE on a log table |
//! | `ML002` | SQLSTATE `ML002`                  | `merklog ML002:`      | a leaf not at the next index              |
//! | `ML003` | SQLSTATE `ML003`                  | `merklog ML003:`      | a tree head that regresses or lies        |
//! | `ML004` | SQLSTATE `ML004`                  | `merklog ML004:`      | a leaf or head out of time order          |

use merklog_merkle::NodeId;

/// Everything a store can fail with.
///
/// The service maps [`StorageError::Unavailable`] to gRPC `UNAVAILABLE` (retry
/// later); the trigger variants mean the caller tried something the log
/// forbids, which is a bug in the caller, never a transient condition.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The database could not be reached or did not answer in time: a
    /// connection, I/O or pool time-out error, or the server shutting down.
    /// Retrying later may succeed.
    #[error("storage unavailable: {source}")]
    Unavailable {
        #[source]
        source: sqlx::Error,
    },
    /// An UPDATE, DELETE or TRUNCATE on a log table was rejected (`ML001`).
    #[error("append-only violation: {message}")]
    AppendOnly { message: String },
    /// A leaf was inserted somewhere other than at the next index: a gap, a
    /// reordering or a second leaf at an index (`ML002`, or the primary key).
    #[error("leaf out of order: {message}")]
    OutOfOrder { message: String },
    /// A tree head was rejected: smaller than the latest, a different root at
    /// the same size, more leaves than are stored, or the same size and
    /// timestamp as a stored head (`ML003`, or the primary key).
    #[error("tree head rejected: {message}")]
    TreeHeadRejected { message: String },
    /// A leaf whose leaf hash is already stored at another index.
    #[error("duplicate leaf: {message}")]
    DuplicateLeaf { message: String },
    /// A batch is malformed; nothing was written.
    #[error("invalid batch: {reason}")]
    InvalidBatch { reason: String },
    /// A requested node is not stored (its subtree is not complete yet).
    #[error("node (level {}, index {}) is not stored", id.level, id.index)]
    NodeMissing { id: NodeId },
    /// A stored value does not have the shape the schema promises (a hash
    /// that is not 32 bytes, a value out of range, ...): the database was
    /// changed behind the log's back.
    #[error("corrupt store: {what}")]
    Corrupt { what: String },
    /// The database user lacks a privilege (SQLSTATE `42501`).
    #[error("permission denied: {message}")]
    PermissionDenied { message: String },
    /// Applying or checking the schema migrations failed.
    #[error("migration failed: {source}")]
    Migration {
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The URL, path or connection options are not usable.
    #[error("bad storage configuration: {reason}")]
    Config { reason: String },
    /// The leader lock is no longer held (or its holder cannot tell): this
    /// instance must stop sequencing.
    #[error("the leader lock was lost: {reason}")]
    LeaseLost { reason: String },
    /// A session that is not a merklog instance (its login, `role`, is not
    /// a member of `merklog_writer`) holds the leader lock: no instance can
    /// lead until an administrator ends it. Not transient.
    #[error(
        "the leader lock is held by a session that is not a merklog instance \
         (pid {}, role {}): no instance can lead until an administrator ends it \
         (pg_terminate_backend); revoke CONNECT on the database from PUBLIC so that \
         only the merklog roles can connect (docs/STORAGE.md)",
        pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
        role.as_deref().unwrap_or("unknown")
    )]
    ForeignLeaderLock {
        pid: Option<i32>,
        role: Option<String>,
    },
    /// Another process (or another store in this one) sequences this SQLite
    /// file: it holds the lock on `lock_file`. One process sequences a
    /// SQLite log; several instances need PostgreSQL. Not transient while
    /// that process runs.
    #[error(
        "another merklog process{} holds the SQLite store {} (lock file {}): \
         only one process may serve a SQLite log; stop the other one first, or \
         use PostgreSQL with --leader-election for several instances",
        pid.map_or_else(String::new, |p| format!(" (pid {p})")),
        database.display(),
        lock_file.display()
    )]
    StoreLocked {
        database: std::path::PathBuf,
        lock_file: std::path::PathBuf,
        pid: Option<u32>,
    },
    /// The backend cannot do this (several instances need PostgreSQL).
    #[error("not supported by this store: {what}")]
    Unsupported { what: String },
    /// A leaf or tree head would break the time order the signed heads
    /// vouch for (`ML004`): a leaf integrated before the leaf or head before
    /// it, a head dated before the latest head, outside the integration
    /// times of the leaves around its size, or over leaves of several
    /// integration times (migrations/postgres/20261203000010_time_order.sql).
    #[error("time order violated: {message}")]
    TimeOrder { message: String },
    /// Any other database error, kept whole for the logs.
    #[error("database error: {source}")]
    Database {
        #[source]
        source: sqlx::Error,
    },
    /// An event whose event id is already stored (at another leaf): the
    /// whole batch was refused, as for [`StorageError::DuplicateLeaf`].
    #[error("duplicate event: event_id {event_id:?} is already stored")]
    DuplicateEvent { event_id: String },
    /// A search ran past the store's time limit (PostgreSQL's
    /// `statement_timeout`, SQLSTATE `57014`) and was cancelled; a narrower
    /// time window or a more selective filter reads less.
    #[error("query cancelled after the store's time limit: {message}; narrow the time window or add a filter")]
    QueryTimeout { message: String },
}

/// The result of every storage call.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Custom SQLSTATEs raised by the PostgreSQL triggers and the message
/// prefixes raised by the SQLite triggers.
const APPEND_ONLY: &str = "ML001";
const OUT_OF_ORDER: &str = "ML002";
const TREE_HEAD: &str = "ML003";
const TIME_ORDER: &str = "ML004";

impl From<sqlx::Error> for StorageError {
    fn from(err: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match err {
            E::Database(db) => from_database(db),
            E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
                StorageError::Unavailable { source: err }
            }
            E::Configuration(reason) => StorageError::Config {
                reason: reason.to_string(),
            },
            E::ColumnDecode { .. } | E::Decode(_) => StorageError::Corrupt {
                what: err.to_string(),
            },
            E::Migrate(source) => StorageError::from(*source),
            other => StorageError::Database { source: other },
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StorageError {
    fn from(source: sqlx::migrate::MigrateError) -> Self {
        use sqlx::Error as E;
        match source {
            // A connection lost while migrating is still unavailability.
            sqlx::migrate::MigrateError::Execute(
                e @ (E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed),
            ) => StorageError::Unavailable { source: e },
            source => StorageError::Migration { source },
        }
    }
}

fn from_database(db: Box<dyn sqlx::error::DatabaseError>) -> StorageError {
    let message = db.message().to_owned();
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    let constraint = db.constraint().map(str::to_owned);
    let is_sqlite = db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some();

    // Our own triggers, on either backend.
    let ours = if is_sqlite {
        trigger_code(&message)
    } else {
        Some(code.as_str())
    };
    match ours {
        Some(APPEND_ONLY) => return StorageError::AppendOnly { message },
        Some(OUT_OF_ORDER) => return StorageError::OutOfOrder { message },
        Some(TREE_HEAD) => return StorageError::TreeHeadRejected { message },
        Some(TIME_ORDER) => return StorageError::TimeOrder { message },
        _ => {}
    }

    if is_sqlite {
        from_sqlite(code, message, db)
    } else {
        from_postgres(code, constraint, message, db)
    }
}

/// Returns the value of a one-column unique key from PostgreSQL's detail
/// `Key (column)=(value) already exists.`; the value is not escaped, so
/// it is what lies between the first `=(` and the last `) already exists.`.
fn duplicate_key_value(detail: &str) -> Option<&str> {
    let (_, rest) = detail.split_once(")=(")?;
    rest.strip_suffix(") already exists.")
}

/// Returns the `MLnnn` code of a SQLite trigger message
/// (`merklog MLnnn: ...`).
fn trigger_code(message: &str) -> Option<&str> {
    message
        .strip_prefix("merklog ")
        .and_then(|rest| rest.get(..5))
        .filter(|code| code.starts_with("ML"))
}

fn from_postgres(
    code: String,
    constraint: Option<String>,
    message: String,
    db: Box<dyn sqlx::error::DatabaseError>,
) -> StorageError {
    match (code.as_str(), constraint.as_deref()) {
        // unique_violation: which key tells what the caller got wrong.
        ("23505", Some("leaves_pkey")) => StorageError::OutOfOrder { message },
        // The exclusion constraint over the hash index on leaf hashes
        // (unique B-tree before migration 5).
        ("23P01", Some("leaves_leaf_hash_unique")) | ("23505", Some("leaves_leaf_hash_key")) => {
            StorageError::DuplicateLeaf { message }
        }
        ("23505", Some("tree_heads_pkey")) => StorageError::TreeHeadRejected { message },
        // A second events row for a leaf: only SQL written around the
        // store gets here (the leaf's own primary key answers first).
        ("23505", Some("events_pkey")) => StorageError::OutOfOrder { message },
        ("23505", Some("events_event_id_key")) => StorageError::DuplicateEvent {
            event_id: db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|e| e.detail())
                .and_then(duplicate_key_value)
                .unwrap_or_default()
                .to_owned(),
        },
        ("42501", _) => StorageError::PermissionDenied { message },
        // query_canceled: statement_timeout, or a cancel request, which
        // the store never sends.
        ("57014", _) => StorageError::QueryTimeout { message },
        // Class 08 connection exceptions, 53 insufficient resources, 57P0x
        // operator intervention (shutdown, cannot connect now), 40001/40P01
        // serialization failure and deadlock, 55000 "database is not
        // currently accepting connections" (ALLOW_CONNECTIONS false during
        // maintenance), 55P03 lock not available: all worth a retry.
        (c, _)
            if c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57P")
                || c == "40001"
                || c == "40P01"
                || c == "55000"
                || c == "55P03" =>
        {
            StorageError::Unavailable {
                source: sqlx::Error::Database(db),
            }
        }
        _ => StorageError::Database {
            source: sqlx::Error::Database(db),
        },
    }
}

fn from_sqlite(
    code: String,
    message: String,
    db: Box<dyn sqlx::error::DatabaseError>,
) -> StorageError {
    // Extended result codes: 1555 SQLITE_CONSTRAINT_PRIMARYKEY, 2067
    // SQLITE_CONSTRAINT_UNIQUE; 5 BUSY, 6 LOCKED and their extended forms
    // (low byte 5 or 6), 10 IOERR, 13 FULL, 14 CANTOPEN.
    let primary: u32 = code.parse::<u32>().map(|c| c & 0xff).unwrap_or(0);
    if code == "1555" || code == "2067" {
        return if message.contains("leaves.idx") {
            StorageError::OutOfOrder { message }
        } else if message.contains("leaves.leaf_hash") {
            StorageError::DuplicateLeaf { message }
        } else if message.contains("tree_heads.") {
            StorageError::TreeHeadRejected { message }
        } else if message.contains("events.event_id") {
            // SQLite does not say which value: the store looks it up
            // (SqliteStore::append_batch) while the batch is still open.
            StorageError::DuplicateEvent {
                event_id: String::new(),
            }
        } else if message.contains("events.idx") {
            StorageError::OutOfOrder { message }
        } else {
            StorageError::Database {
                source: sqlx::Error::Database(db),
            }
        };
    }
    match primary {
        5 | 6 | 10 | 13 | 14 => StorageError::Unavailable {
            source: sqlx::Error::Database(db),
        },
        _ => StorageError::Database {
            source: sqlx::Error::Database(db),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_trigger_messages_carry_their_code() {
        assert_eq!(trigger_code("merklog ML002: gap"), Some("ML002"));
        assert_eq!(trigger_code("merklog ML00"), None);
        assert_eq!(trigger_code("UNIQUE constraint failed"), None);
        assert_eq!(trigger_code("merklog XX001: no"), None);
    }

    #[test]
    fn duplicate_key_details_give_the_value() {
        assert_eq!(
            duplicate_key_value("Key (event_id)=(a)=(b) already exists."),
            Some("a)=(b")
        );
        assert_eq!(duplicate_key_value("Key (event_id)=(x)"), None);
    }

    #[test]
    fn transport_errors_are_unavailable() {
        assert!(matches!(
            StorageError::from(sqlx::Error::PoolTimedOut),
            StorageError::Unavailable { .. }
        ));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(matches!(
            StorageError::from(sqlx::Error::Io(io)),
            StorageError::Unavailable { .. }
        ));
    }
}

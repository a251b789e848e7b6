//! The attacks of a database login on PostgreSQL (issue 20), each made as a
//! login role that is never a superuser, on a schema migrated the normal
//! way: a temporary view or an operator planted in `public` must not run
//! with the rights of the function that writes leaf tiles, temporary tables
//! must not shadow the order checks, a login outside the merklog roles that
//! takes the leader lock is no leader, and the whole migration set runs as
//! a non-superuser owner.

use merklog_storage::testing::{assert_denied, TempPostgres, TempRole, TestLog};
use merklog_storage::{AnyStore, LogStore, StorageError, LEADER_LOCK_KEY};
use sqlx::{Connection, Executor, PgConnection, PgPool};

/// Opens the store over `url` as the administrative user (which runs the
/// migrations) and appends `leaves` leaves of a test log.
async fn log_with(url: &str, leaves: u64) -> (AnyStore, TestLog) {
    let store = AnyStore::open(url).await.unwrap();
    let mut log = TestLog::new();
    store
        .append_batch(&log.next_batch(leaves, 40))
        .await
        .unwrap();
    (store, log)
}

fn pool(store: &AnyStore) -> &PgPool {
    match store {
        AnyStore::Postgres(s) => s.pool(),
        _ => panic!("a PostgreSQL URL opens a PostgreSQL store"),
    }
}

/// Runs `sql` on the database of `url` as the user `url` names.
async fn run(url: &str, sql: &str) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    conn.execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.close().await.unwrap();
}

async fn is_superuser(pool: &PgPool, role: &TempRole) -> bool {
    sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = $1")
        .bind(role.name())
        .fetch_one(pool)
        .await
        .unwrap()
}

/// SQL that inserts leaves `first..=last` into `public.leaves` with made-up
/// hashes and entries, shaped as the table's CHECK wants: what a writer can
/// send straight in SQL.
fn insert_leaves(first: u64, last: u64) -> String {
    format!(
        "INSERT INTO public.leaves (idx, leaf_hash, entry, integrated_ms, nodes) \
         SELECT g, sha256(int8send(g) || 'made up'::bytea), int8send(g), \
                (SELECT greatest(coalesce(max(integrated_ms), 0), \
                                 (SELECT coalesce(max(timestamp_ms), 0) FROM public.tree_heads)) \
                 FROM public.leaves), \
                decode(repeat('00', 32 * round(log(2, ((g + 1) & -(g + 1))::numeric))::int), 'hex') \
         FROM generate_series({first}, {last}) AS g"
    )
}

/// The leaf hashes of tile `tile` as stored in `leaf_tiles`, and as the
/// leaves themselves give them.
async fn tile_and_leaves(pool: &PgPool, tile: i64) -> (Vec<u8>, Vec<u8>) {
    sqlx::query_as(
        "SELECT (SELECT hashes FROM leaf_tiles WHERE tile = $1), \
                (SELECT string_agg(leaf_hash, ''::bytea ORDER BY idx) FROM leaves \
                 WHERE idx >= $1 * 16 AND idx < $1 * 16 + 16)",
    )
    .bind(tile)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn sqlstate(err: &sqlx::Error) -> String {
    err.as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
        .unwrap_or_default()
}

/// Records each call in the session setting `merklog_test.callers` (any
/// role may set it, so a call is recorded whatever rights it runs with),
/// tries to make the attacker a superuser and returns true.
fn recording_function(attacker: &TempRole) -> String {
    format!(
        "CREATE FUNCTION pg_temp.evil() RETURNS boolean LANGUAGE plpgsql AS $$ \
         BEGIN \
             PERFORM set_config('merklog_test.callers', \
                 coalesce(current_setting('merklog_test.callers', true), '') || current_user || ' ', false); \
             BEGIN \
                 EXECUTE 'ALTER ROLE \"{0}\" SUPERUSER'; \
             EXCEPTION WHEN insufficient_privilege THEN NULL; \
             END; \
             RETURN true; \
         END $$",
        attacker.name()
    )
}

/// Issue 20, finding 1: a temporary view named `leaves` whose rows call a
/// `pg_temp` function made `merklog_add_leaf_tiles` (SECURITY DEFINER,
/// owned by the migration's superuser) run that function as the superuser,
/// and put the view's hashes into a tile.
#[tokio::test]
async fn a_temporary_view_neither_runs_as_the_tile_owner_nor_forges_a_tile() {
    let attacker = TempRole::create("merklog_attacker", "", &["merklog_writer"]).await;
    let (url, db) = TempPostgres::create().await;
    // Block 1 holds leaves 16-19, so the next tile reads four stored leaves.
    let (store, _) = log_with(&url, 20).await;

    // PUBLIC may no longer create temporary objects.
    let mut conn = PgConnection::connect(&attacker.url(&url)).await.unwrap();
    assert_denied(&mut conn, "CREATE TEMP TABLE t (x int)").await;
    conn.close().await.unwrap();

    // A writer given TEMPORARY all the same gets nowhere with it.
    run(
        &url,
        &format!(
            "GRANT TEMPORARY ON DATABASE \"{}\" TO \"{}\"",
            db.name(),
            attacker.name()
        ),
    )
    .await;
    let mut conn = PgConnection::connect(&attacker.url(&url)).await.unwrap();
    conn.execute(recording_function(&attacker).as_str())
        .await
        .unwrap();
    conn.execute(
        "CREATE TEMP VIEW leaves AS \
         SELECT idx, CASE WHEN pg_temp.evil() THEN sha256('forged'::bytea) END AS leaf_hash \
         FROM public.leaves",
    )
    .await
    .unwrap();
    // Leaves 20-31, at the right index, complete block 1.
    conn.execute(insert_leaves(20, 31).as_str()).await.unwrap();
    let callers: Option<String> =
        sqlx::query_scalar("SELECT current_setting('merklog_test.callers', true)")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    conn.close().await.unwrap();

    assert!(
        !is_superuser(pool(&store), &attacker).await,
        "the writer made itself a superuser"
    );
    assert_eq!(
        callers.unwrap_or_default().trim(),
        "",
        "no merklog function may read the attacker's view"
    );
    let (tile, leaves) = tile_and_leaves(pool(&store), 1).await;
    assert_eq!(tile, leaves, "tile 1 holds the stored leaves' hashes");
}

/// Issue 20, finding 1: where `public` is writable (PostgreSQL 14 and older,
/// and clusters upgraded from them), any login planted
/// `public.%(bigint, integer)`, and the next append ran it as the owner of
/// `merklog_add_leaf_tiles`.
#[tokio::test]
async fn an_operator_planted_in_public_is_not_used_by_the_tile_function() {
    let attacker = TempRole::create("merklog_attacker", "", &["merklog_writer"]).await;
    let service = TempRole::create("merklog_service", "", &["merklog_writer"]).await;
    let (url, _db) = TempPostgres::create().await;
    // The default of PostgreSQL 14 and older, before the migrations run.
    run(&url, "GRANT CREATE ON SCHEMA public TO PUBLIC").await;
    let (store, mut log) = log_with(&url, 20).await;

    // The migrations took that away ...
    let mut conn = PgConnection::connect(&attacker.url(&url)).await.unwrap();
    assert_denied(&mut conn, "CREATE TABLE public.planted (x int)").await;
    conn.close().await.unwrap();

    // ... and a role given CREATE there all the same plants in vain.
    run(
        &url,
        &format!("GRANT CREATE ON SCHEMA public TO \"{}\"", attacker.name()),
    )
    .await;
    run(
        &attacker.url(&url),
        &format!(
            "CREATE TABLE public.callers (who text); \
             GRANT INSERT ON public.callers TO PUBLIC; \
             CREATE FUNCTION public.planted_mod(bigint, integer) RETURNS bigint \
             LANGUAGE plpgsql AS $$ \
             BEGIN \
                 INSERT INTO public.callers VALUES (current_user); \
                 BEGIN \
                     EXECUTE 'ALTER ROLE \"{0}\" SUPERUSER'; \
                 EXCEPTION WHEN insufficient_privilege THEN NULL; \
                 END; \
                 RETURN mod($1, $2); \
             END $$; \
             CREATE OPERATOR public.% (LEFTARG = bigint, RIGHTARG = integer, \
                                       FUNCTION = public.planted_mod)",
            attacker.name()
        ),
    )
    .await;

    // The service appends through the store, completing block 1.
    let service_store = AnyStore::open(&service.url(&url)).await.unwrap();
    service_store
        .append_batch(&log.next_batch(12, 40))
        .await
        .unwrap();
    pool(&service_store).close().await;

    let callers: Vec<String> = sqlx::query_scalar("SELECT who FROM public.callers")
        .fetch_all(pool(&store))
        .await
        .unwrap();
    assert!(
        !is_superuser(pool(&store), &attacker).await,
        "the planter made itself a superuser"
    );
    assert_eq!(callers, Vec::<String>::new(), "the planted operator ran");
    let (tile, leaves) = tile_and_leaves(pool(&store), 1).await;
    assert_eq!(tile, leaves);
}

/// Issue 20, finding 3: temporary `leaves` and `tree_heads` tables shadowed
/// the real ones in the order checks, which ran with the writer's search
/// path: a leaf after a gap, a second root at one size, a smaller head and
/// a head beyond the stored leaves all went in.
#[tokio::test]
async fn temporary_tables_do_not_shadow_the_order_checks() {
    let attacker = TempRole::create("merklog_attacker", "", &["merklog_writer"]).await;
    let (url, db) = TempPostgres::create().await;
    let (store, _) = log_with(&url, 5).await;
    let head = store.latest_tree_head().await.unwrap().unwrap().head;
    let ts = head.timestamp_ms + 1;
    // Even a writer allowed temporary tables.
    run(
        &url,
        &format!(
            "GRANT TEMPORARY ON DATABASE \"{}\" TO \"{}\"",
            db.name(),
            attacker.name()
        ),
    )
    .await;

    let no_heads = "CREATE TEMP TABLE tree_heads \
                    (tree_size bigint, timestamp_ms bigint, root_hash bytea)";
    let insert_head = |size: u64| {
        format!(
            "INSERT INTO public.tree_heads (tree_size, timestamp_ms, root_hash, signature) \
             VALUES ({size}, {ts}, sha256('another root'::bytea), '\\x01')"
        )
    };
    let attacks = [
        (
            "a leaf after a gap",
            "CREATE TEMP TABLE leaves (idx bigint, leaf_hash bytea); \
             INSERT INTO leaves VALUES (9, NULL)"
                .to_owned(),
            insert_leaves(10, 10),
            "ML002",
        ),
        (
            "a second root at the latest size",
            no_heads.to_owned(),
            insert_head(5),
            "ML003",
        ),
        (
            "a smaller head",
            no_heads.to_owned(),
            insert_head(3),
            "ML003",
        ),
        (
            "a head beyond the stored leaves",
            "CREATE TEMP TABLE leaves (idx bigint); INSERT INTO leaves VALUES (99)".to_owned(),
            insert_head(100),
            "ML003",
        ),
    ];
    let mut conn = PgConnection::connect(&attacker.url(&url)).await.unwrap();
    let mut got_in = Vec::new();
    for (what, shadow, insert, code) in &attacks {
        let mut tx = conn.begin().await.unwrap();
        tx.execute(shadow.as_str()).await.unwrap();
        match tx.execute(insert.as_str()).await {
            Ok(_) => got_in.push(*what),
            Err(err) => {
                assert_eq!(sqlstate(&err), *code, "{what}: {err}");
                assert!(
                    matches!(
                        StorageError::from(err),
                        StorageError::OutOfOrder { .. } | StorageError::TreeHeadRejected { .. }
                    ),
                    "{what}"
                );
            }
        }
        tx.rollback().await.unwrap();
    }
    conn.close().await.unwrap();
    assert_eq!(got_in, Vec::<&str>::new(), "these got past the checks");

    // Nothing got in: the store still opens with its head.
    let reopened = AnyStore::open(&url).await.unwrap();
    assert_eq!(reopened.leaf_count().await.unwrap(), 5);
    assert_eq!(
        reopened.latest_tree_head().await.unwrap().unwrap().head,
        head
    );
}

/// Issue 20, finding 6: any login could take the leader advisory lock, and
/// every instance took its holder for a live leader.
#[tokio::test]
async fn a_login_outside_the_merklog_roles_holding_the_lock_is_no_leader() {
    let service = TempRole::create("merklog_service", "", &["merklog_writer"]).await;
    let squatter = TempRole::create("merklog_squatter", "", &[]).await;
    let (url, db) = TempPostgres::create().await;
    let _ = log_with(&url, 1).await;

    // Two instances as the service's login: one leads, the other sees it.
    let a = AnyStore::open(&service.url(&url)).await.unwrap();
    let b = AnyStore::open(&service.url(&url)).await.unwrap();
    let lease = a
        .try_lead("a.example:7300")
        .await
        .unwrap()
        .expect("a leads");
    let term = b.leader_term().await.unwrap().unwrap();
    assert!(term.lock_held, "b sees a, a member of merklog_writer");
    assert!(b.try_lead("b.example:7300").await.unwrap().is_none());
    lease.release().await;

    // A login that is no member takes the lock (CONNECT is still PUBLIC's
    // here).
    let mut squat = PgConnection::connect(&squatter.url(&url)).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LEADER_LOCK_KEY)
        .execute(&mut squat)
        .await
        .unwrap();
    let term = b.leader_term().await.unwrap().unwrap();
    assert!(!term.lock_held, "the squatter is not a leader");
    match b.try_lead("b.example:7300").await {
        Err(StorageError::ForeignLeaderLock { pid, role }) => {
            assert!(pid.is_some());
            assert_eq!(role.as_deref(), Some(squatter.name()));
        }
        other => panic!("expected ForeignLeaderLock, got {other:?}"),
    }
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LEADER_LOCK_KEY)
        .execute(&mut squat)
        .await
        .unwrap();
    squat.close().await.unwrap();
    let lease = b
        .try_lead("b.example:7300")
        .await
        .unwrap()
        .expect("b leads");
    lease.release().await;
    for store in [&a, &b] {
        pool(store).close().await;
    }

    // The set-up of docs/STORAGE.md keeps other logins out, and the
    // merklog roles in.
    run(
        &url,
        &format!("REVOKE CONNECT ON DATABASE \"{}\" FROM PUBLIC", db.name()),
    )
    .await;
    let err = PgConnection::connect(&squatter.url(&url))
        .await
        .expect_err("no CONNECT");
    assert_eq!(sqlstate(&err), "42501", "{err}");
    let store = AnyStore::open(&service.url(&url)).await.unwrap();
    assert_eq!(store.leaf_count().await.unwrap(), 1);
    pool(&store).close().await;
}

/// The migrations need no superuser: an owner with CREATEROLE that owns the
/// database runs them all through the store's normal open, appends, and a
/// writer appends after it; the tile function belongs to merklog_tiler.
#[tokio::test]
async fn a_non_superuser_owner_runs_every_migration() {
    let owner = TempRole::create("merklog_owner", "NOSUPERUSER CREATEROLE", &[]).await;
    let service = TempRole::create("merklog_service", "", &["merklog_writer"]).await;
    let (url, _db) = TempPostgres::create_owned_by(&owner).await;

    let store = AnyStore::open(&owner.url(&url)).await.unwrap();
    let mut log = TestLog::new();
    store.append_batch(&log.next_batch(20, 40)).await.unwrap();
    let writer = AnyStore::open(&service.url(&url)).await.unwrap();
    writer.append_batch(&log.next_batch(12, 40)).await.unwrap();
    assert_eq!(store.leaf_tiles(0, 10).await.unwrap().unwrap().len(), 2);
    pool(&writer).close().await;

    let admin = pool(&store);
    let functions: Vec<(String, String, Option<Vec<String>>, bool)> = sqlx::query_as(
        "SELECT p.proname::text, r.rolname::text, p.proconfig, r.rolsuper \
         FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner \
         WHERE p.proname LIKE 'merklog%' ORDER BY 1",
    )
    .fetch_all(admin)
    .await
    .unwrap();
    // The four of migration 7 and the two time-order checks of migration 10.
    assert_eq!(functions.len(), 6, "{functions:?}");
    for (name, owner_name, config, superuser) in &functions {
        let want_owner = if name == "merklog_add_leaf_tiles" {
            "merklog_tiler"
        } else {
            owner.name()
        };
        assert_eq!(owner_name, want_owner, "{name}");
        assert!(!superuser, "{name}");
        assert_eq!(
            config.as_deref(),
            Some(&["search_path=pg_catalog, public, pg_temp".to_owned()][..]),
            "{name}"
        );
    }
    let public_may: (bool, bool) = sqlx::query_as(
        "SELECT has_schema_privilege('public', 'public', 'CREATE'), \
                has_database_privilege('public', current_database(), 'TEMPORARY')",
    )
    .fetch_one(admin)
    .await
    .unwrap();
    assert_eq!(public_may, (false, false));
}

/// A migration run by a user who cannot take CREATE on `public` from PUBLIC
/// stops with a message saying what to do, rather than leave it open.
#[tokio::test]
async fn the_migration_stops_when_it_cannot_close_public() {
    let owner = TempRole::create("merklog_owner", "NOSUPERUSER CREATEROLE", &[]).await;
    let (url, _db) = TempPostgres::create_owned_by(&owner).await;
    // An upgraded cluster: `public` belongs to the administrator, and
    // PUBLIC may create in it.
    run(
        &url,
        "ALTER SCHEMA public OWNER TO CURRENT_USER; GRANT CREATE ON SCHEMA public TO PUBLIC",
    )
    .await;
    let err = AnyStore::open(&owner.url(&url))
        .await
        .expect_err("the migration must stop");
    assert!(matches!(err, StorageError::Migration { .. }), "{err}");
    assert!(err.to_string().contains("REVOKE CREATE ON SCHEMA"), "{err}");
}

/// Makes sure the cluster-wide roles exist, as any earlier migration by a
/// user with CREATEROLE leaves them (the administrative user migrates a
/// throwaway database).
async fn roles_exist() {
    let (url, _db) = TempPostgres::create().await;
    let store = AnyStore::open(&url).await.unwrap();
    pool(&store).close().await;
}

/// Once the roles exist, the database's owner needs no CREATEROLE: only
/// membership in merklog_tiler (to hand it the tile function). It runs
/// every migration, the log works, and a second open finds it current.
#[tokio::test]
async fn an_owner_without_createrole_migrates_once_the_roles_exist() {
    roles_exist().await;
    let owner = TempRole::create("merklog_owner", "NOSUPERUSER", &["merklog_tiler"]).await;
    let (url, _db) = TempPostgres::create_owned_by(&owner).await;

    let store = AnyStore::open(&owner.url(&url))
        .await
        .expect("no CREATEROLE needed when the roles exist");
    let mut log = TestLog::new();
    store.append_batch(&log.next_batch(20, 40)).await.unwrap();
    assert_eq!(store.leaf_tiles(0, 10).await.unwrap().unwrap().len(), 1);
    let (createrole, applied, tiler_owns): (bool, i64, bool) = sqlx::query_as(
        "SELECT (SELECT rolcreaterole FROM pg_roles WHERE rolname = current_user), \
                (SELECT count(*) FROM _sqlx_migrations WHERE success), \
                (SELECT r.rolname = 'merklog_tiler' FROM pg_proc p \
                 JOIN pg_roles r ON r.oid = p.proowner WHERE p.proname = 'merklog_add_leaf_tiles')",
    )
    .fetch_one(pool(&store))
    .await
    .unwrap();
    assert!(!createrole);
    assert_eq!(applied, 9, "every migration ran");
    assert!(tiler_owns);
    // Migration 3's grants were made all the same.
    let granted: bool = sqlx::query_scalar(
        "SELECT has_table_privilege('merklog_writer', 'leaves', 'INSERT') \
            AND has_table_privilege('merklog_reader', 'tree_heads', 'SELECT') \
            AND NOT has_table_privilege('merklog_reader', 'leaves', 'INSERT')",
    )
    .fetch_one(pool(&store))
    .await
    .unwrap();
    assert!(granted);
    pool(&store).close().await;
    let again = AnyStore::open(&owner.url(&url)).await.unwrap();
    assert_eq!(again.leaf_count().await.unwrap(), 20);
    pool(&again).close().await;
}

/// An owner without CREATEROLE that lacks what only CREATEROLE could give
/// it is told, before any migration runs, what an administrator grants.
#[tokio::test]
async fn an_owner_without_createrole_is_told_what_it_lacks() {
    roles_exist().await;
    let owner = TempRole::create("merklog_owner", "NOSUPERUSER", &[]).await;
    let (url, _db) = TempPostgres::create_owned_by(&owner).await;
    let err = AnyStore::open(&owner.url(&url))
        .await
        .expect_err("it cannot hand the tile function to merklog_tiler");
    let text = err.to_string();
    assert!(
        matches!(err, StorageError::PermissionDenied { .. }),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{} is not a member of merklog_tiler, and {} lacks CREATEROLE",
            owner.name(),
            owner.name()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("GRANT merklog_tiler TO \"{}\";", owner.name())),
        "{text}"
    );
    let migrated: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&PgPool::connect(&url).await.unwrap())
        .await
        .unwrap();
    assert!(!migrated, "nothing ran");
}

-- merklog: audit events, SQLite dialect (issue 21; docs/STORAGE.md,
-- "Events"; migrations/postgres has the same table).
--
-- A search index over the event leaves: one row per event leaf, written in
-- the same transaction as the leaf. `idx` names the leaf; searches join
-- `leaves` on it, so a row without a leaf is never returned (no foreign
-- key, as on PostgreSQL). Text compares byte-wise (BINARY), as the filters
-- are defined. `attributes` is the canonical JSON of the event's attributes.
CREATE TABLE events (
    idx            INTEGER PRIMARY KEY CHECK (idx >= 0),
    event_id       TEXT    NOT NULL UNIQUE,
    occurred_ns    INTEGER NOT NULL,
    integrated_ms  INTEGER NOT NULL CHECK (integrated_ms >= 0),
    actor_id       TEXT    NOT NULL,
    actor_kind     TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    resource_kind  TEXT,
    resource_id    TEXT,
    outcome        TEXT    NOT NULL
                   CHECK (outcome IN ('success', 'failure', 'denied', 'unknown')),
    origin_service TEXT,
    origin_host    TEXT,
    source_ip      TEXT,
    request_id     TEXT,
    trace_id       TEXT,
    attributes     TEXT    NOT NULL
                   CHECK (json_valid(attributes) AND json_type(attributes) = 'object')
) STRICT;

-- The same B-trees as PostgreSQL, each ending in the sort order of a
-- search (time DESC, idx DESC); an action prefix is read as a range of the
-- action index. Integration time has a B-tree here (SQLite has no BRIN).
CREATE INDEX events_occurred ON events (occurred_ns DESC, idx DESC);
CREATE INDEX events_integrated ON events (integrated_ms DESC, idx DESC);
CREATE INDEX events_actor ON events (actor_id, occurred_ns DESC, idx DESC);
CREATE INDEX events_action ON events (action, occurred_ns DESC, idx DESC);
CREATE INDEX events_resource ON events (resource_kind, resource_id, occurred_ns DESC, idx DESC)
    WHERE resource_kind IS NOT NULL;
CREATE INDEX events_trace ON events (trace_id, occurred_ns DESC, idx DESC)
    WHERE trace_id IS NOT NULL;

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'merklog ML001: UPDATE on events rejected: the log is append-only');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'merklog ML001: DELETE on events rejected: the log is append-only');
END;

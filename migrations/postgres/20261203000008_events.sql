-- merklog: audit events (issue 21; docs/STORAGE.md, "Events").
--
-- An event is a leaf like any other: its entry (ENTRY_PREFIX and the
-- canonical JSON of the event and its salt) is in `leaves`, and only that
-- entry is covered by the tree heads. `events` is a search index over those
-- entries: one row per event leaf, written by the service in the same
-- transaction as the leaf, holding the fields that searches filter on. It
-- is not evidence: a client re-checks every hit against the entry and its
-- inclusion proof, so a wrong row can hide an event from a search but never
-- make one up.
--
-- `idx` names the event's leaf. There is no foreign key to `leaves`: it
-- would run a per-row check (a look-up and a row lock, WAL-logged, on the
-- leaf) for every event appended, and would turn `TRUNCATE leaves` into a
-- foreign-key error instead of the ML001 refusal; searches read events
-- joined to their leaf on `idx`, so a row without a leaf is never returned
-- (docs/STORAGE.md explains, with the measured cost).
--
-- Text columns compare byte-wise (COLLATE "C"), as the filters are defined
-- (EventQuery::matches): equality is the same under any collation, and a
-- B-tree in C order serves an action prefix as a range.
CREATE TABLE events (
    idx            BIGINT PRIMARY KEY CHECK (idx >= 0),
    event_id       TEXT COLLATE "C" NOT NULL UNIQUE,
    occurred_ns    BIGINT NOT NULL,
    integrated_ms  BIGINT NOT NULL CHECK (integrated_ms >= 0),
    actor_id       TEXT COLLATE "C" NOT NULL,
    actor_kind     TEXT COLLATE "C" NOT NULL,
    action         TEXT COLLATE "C" NOT NULL,
    resource_kind  TEXT COLLATE "C",
    resource_id    TEXT COLLATE "C",
    outcome        TEXT COLLATE "C" NOT NULL
                   CHECK (outcome IN ('success', 'failure', 'denied', 'unknown')),
    origin_service TEXT COLLATE "C",
    origin_host    TEXT COLLATE "C",
    source_ip      TEXT COLLATE "C",
    request_id     TEXT COLLATE "C",
    trace_id       TEXT COLLATE "C",
    attributes     JSONB NOT NULL CHECK (jsonb_typeof(attributes) = 'object')
);

-- Searches return the newest hits first and page with a keyset cursor
-- (time, idx) < (cursor): each hot filter has a B-tree that ends in
-- (occurred_ns DESC, idx DESC), so an equality filter plus the time window
-- and the cursor is one index range read in result order, and LIMIT stops
-- it after a page.
CREATE INDEX events_occurred ON events (occurred_ns DESC, idx DESC);
CREATE INDEX events_actor ON events (actor_id, occurred_ns DESC, idx DESC);
CREATE INDEX events_action ON events (action, occurred_ns DESC, idx DESC);
CREATE INDEX events_resource ON events (resource_kind, resource_id, occurred_ns DESC, idx DESC)
    WHERE resource_kind IS NOT NULL;
CREATE INDEX events_trace ON events (trace_id, occurred_ns DESC, idx DESC)
    WHERE trace_id IS NOT NULL;
-- integrated_ms grows with idx (the sequencer's clock at each batch), so a
-- BRIN of a few pages narrows a window of integration time to its blocks.
CREATE INDEX events_integrated ON events USING brin (integrated_ms);
-- Containment (@>) only, which jsonb_path_ops serves with smaller entries
-- than the default operator class.
CREATE INDEX events_attributes ON events USING gin (attributes jsonb_path_ops);

-- Append-only like the log (ML001), with the function of migration 7
-- (search_path pinned, EXECUTE revoked from PUBLIC), named with its schema.
DO $migration$
DECLARE
    s text := pg_catalog.quote_ident(pg_catalog.current_schema());
BEGIN
    EXECUTE pg_catalog.replace($sql$
CREATE TRIGGER events_no_update BEFORE UPDATE ON {schema}.events
    FOR EACH ROW EXECUTE FUNCTION {schema}.merklog_reject_change('idx');
CREATE TRIGGER events_no_delete BEFORE DELETE ON {schema}.events
    FOR EACH ROW EXECUTE FUNCTION {schema}.merklog_reject_change('idx');
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON {schema}.events
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.merklog_reject_change();
REVOKE ALL ON {schema}.events FROM PUBLIC;
GRANT SELECT, INSERT ON {schema}.events TO merklog_writer;
GRANT SELECT ON {schema}.events TO merklog_reader
$sql$, '{schema}', s);
END;
$migration$;

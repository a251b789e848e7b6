-- merklog: several service instances on one database (docs/OPERATIONS.md,
-- "Several instances"). The instance that sequences holds a session-level
-- advisory lock; each time an instance takes the lock it records a term here,
-- so followers can name the leader and operators can see who sequenced when.
-- Like the log, the record only grows.
CREATE TABLE leader_terms (
    term       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Where clients reach the leader (its --advertise-address).
    address    text NOT NULL CHECK (length(address) BETWEEN 1 AND 512),
    started_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER leader_terms_no_update BEFORE UPDATE ON leader_terms
    FOR EACH ROW EXECUTE FUNCTION merklog_reject_change('term');
CREATE TRIGGER leader_terms_no_delete BEFORE DELETE ON leader_terms
    FOR EACH ROW EXECUTE FUNCTION merklog_reject_change('term');
CREATE TRIGGER leader_terms_no_truncate BEFORE TRUNCATE ON leader_terms
    FOR EACH STATEMENT EXECUTE FUNCTION merklog_reject_change();

REVOKE ALL ON leader_terms FROM PUBLIC;
GRANT SELECT, INSERT ON leader_terms TO merklog_writer;
GRANT SELECT ON leader_terms TO merklog_reader;

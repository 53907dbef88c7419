-- Ingest caches what authenticating a scanner key needs (key hash, revocation, scanner status, limits, bound
-- network). Every change to those columns, by any writer (admin API, dispatcher repairs, plain SQL), announces
-- the scanner on `mipo_scanner_auth` in the same transaction, so ingest drops its copy when the change commits.
-- Heartbeat flushes touch other columns and announce nothing (the WHEN clauses).
-- Named 05xx so it applies after every earlier file on fresh and deployed databases alike; idempotent (OR
-- REPLACE) because a pre-release build applied the same SQL under the name 0210.

CREATE OR REPLACE FUNCTION mipo_scanner_auth_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify('mipo_scanner_auth', '*');   -- TRUNCATE: forget everything
    ELSIF TG_TABLE_NAME = 'scanners' THEN
        PERFORM pg_notify('mipo_scanner_auth', (CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END)::text);
    ELSE
        PERFORM pg_notify('mipo_scanner_auth', OLD.scanner_id::text);
        IF TG_OP = 'UPDATE' AND NEW.scanner_id <> OLD.scanner_id THEN
            PERFORM pg_notify('mipo_scanner_auth', NEW.scanner_id::text);
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER scanners_auth_changed AFTER UPDATE ON scanners FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.name IS DISTINCT FROM NEW.name
          OR OLD.rate_limit IS DISTINCT FROM NEW.rate_limit OR OLD.concurrency IS DISTINCT FROM NEW.concurrency
          OR OLD.bound_network IS DISTINCT FROM NEW.bound_network)
    EXECUTE FUNCTION mipo_scanner_auth_notify();
CREATE OR REPLACE TRIGGER scanners_auth_deleted AFTER DELETE ON scanners FOR EACH ROW
    EXECUTE FUNCTION mipo_scanner_auth_notify();
CREATE OR REPLACE TRIGGER scanner_keys_auth_changed AFTER UPDATE ON scanner_keys FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.key_hash IS DISTINCT FROM NEW.key_hash
          OR OLD.key_id IS DISTINCT FROM NEW.key_id OR OLD.scanner_id IS DISTINCT FROM NEW.scanner_id)
    EXECUTE FUNCTION mipo_scanner_auth_notify();
CREATE OR REPLACE TRIGGER scanner_keys_auth_deleted AFTER DELETE ON scanner_keys FOR EACH ROW
    EXECUTE FUNCTION mipo_scanner_auth_notify();
CREATE OR REPLACE TRIGGER scanners_auth_truncated AFTER TRUNCATE ON scanners FOR EACH STATEMENT
    EXECUTE FUNCTION mipo_scanner_auth_notify();
CREATE OR REPLACE TRIGGER scanner_keys_auth_truncated AFTER TRUNCATE ON scanner_keys FOR EACH STATEMENT
    EXECUTE FUNCTION mipo_scanner_auth_notify();

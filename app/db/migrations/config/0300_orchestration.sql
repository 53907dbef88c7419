-- Orchestration: repair requests the manager records and the dispatcher executes, the built-in port lists.

-- The manager has no write access to the jobs database: an operator's repair (redispatch, reassign,
-- fail a job; drain a scanner) is recorded here and carried out by the dispatcher, like run_requests.
CREATE TABLE repair_requests (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action          text NOT NULL CHECK (action IN ('redispatch', 'reassign', 'fail', 'drain')),
    job_id          bigint,
    scanner_id      bigint,                         -- drain: the scanner; reassign: the target (NULL = any online)
    requested_by    text NOT NULL,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    done_at         timestamptz,
    outcome         text,
    CHECK ((action = 'drain') = (job_id IS NULL)),
    CHECK (action <> 'drain' OR scanner_id IS NOT NULL)
);
CREATE INDEX repair_requests_open_idx ON repair_requests (id) WHERE done_at IS NULL;
CREATE INDEX run_requests_open_idx ON run_requests (id) WHERE run_id IS NULL;
CREATE INDEX exclusions_template_idx ON exclusions (template_id);

INSERT INTO port_lists (name, spec, description, builtin) VALUES
    ('top-100', 'top-100', 'The 100 most frequently open TCP ports', true),
    ('top-1000', 'top-1000', 'The 1,000 most frequently open TCP ports', true),
    ('all', '1-65535', 'Every TCP port', true)
ON CONFLICT (name) DO NOTHING;

GRANT SELECT, INSERT, UPDATE, DELETE ON repair_requests TO mipo_manager;
GRANT SELECT ON repair_requests TO mipo_dispatcher, mipo_backup;
GRANT UPDATE (done_at, outcome) ON repair_requests TO mipo_dispatcher;

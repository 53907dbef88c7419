-- Orchestration: which scanner group a run used, and the reconciler's open stalls (one event each).

ALTER TABLE scan_runs ADD COLUMN scanner_group_id bigint;
ALTER TABLE scan_runs ADD COLUMN address_count numeric NOT NULL DEFAULT 0;
ALTER TABLE scan_runs ADD COLUMN port_count integer NOT NULL DEFAULT 0;

-- A job's currently open stall: the reconciler emits the stall event once when it sets this
-- and the recovery event once when it clears it.
ALTER TABLE jobs ADD COLUMN stall_class text;
ALTER TABLE jobs ADD COLUMN stall_since timestamptz;
ALTER TABLE jobs ADD COLUMN stall_token bigint;
CREATE INDEX jobs_stall_idx ON jobs (id) WHERE stall_class IS NOT NULL;
CREATE INDEX jobs_open_idx ON jobs (run_id) WHERE status IN ('pending', 'running');
CREATE INDEX scan_runs_running_idx ON scan_runs (id) WHERE status = 'running';

-- Scanners the reconciler considers silent (no heartbeat): one event when they fall silent, one when back.
CREATE TABLE scanner_stalls (
    scanner_id      bigint PRIMARY KEY,
    class           text NOT NULL,
    since           timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT ON scanner_stalls TO mipo_manager, mipo_ingest, mipo_backup;
GRANT SELECT, INSERT, UPDATE, DELETE ON scanner_stalls TO mipo_dispatcher;

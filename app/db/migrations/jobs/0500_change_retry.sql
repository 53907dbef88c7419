-- Change detection owed for finished runs. A row is written in the transaction that finishes the run and
-- deleted only after the run's detection committed in the results database, so a failure or a restart in
-- between leaves it here for the dispatcher's next pass (detection itself is idempotent).
CREATE TABLE change_detection_due (
    run_id          bigint PRIMARY KEY REFERENCES scan_runs (id) ON DELETE CASCADE,
    queued_at       timestamptz NOT NULL DEFAULT now(),  -- runs are detected in this order (then run id)
    due_at          timestamptz NOT NULL DEFAULT now(),  -- the next attempt, after a backoff
    attempts        integer NOT NULL DEFAULT 0,          -- failed attempts so far
    last_error      text
);
CREATE INDEX change_detection_due_order_idx ON change_detection_due (queued_at, run_id);

GRANT SELECT ON change_detection_due TO mipo_manager, mipo_backup;
GRANT SELECT, INSERT, UPDATE, DELETE ON change_detection_due TO mipo_dispatcher;

-- The attempt in progress lives on the job row; job_attempts holds attempts that ended, written when they end.
--
-- A claim is the scanners' hot path: inserting its attempt row (a second table, its index, the foreign-key
-- check) cost more than the lease itself. The claim now only stamps `attempt_started_at` on the job, and a
-- trigger writes the history row when a running attempt ends, whichever way it ends (finished, failed,
-- cancelled, lease expired, requeued, reassigned, superseded by a new lease): one place, so no path can
-- forget it. Rows that claims made before this migration are closed by the same trigger (ON CONFLICT).

ALTER TABLE jobs ADD COLUMN IF NOT EXISTS attempt_started_at timestamptz;

UPDATE jobs j SET attempt_started_at = a.started_at
  FROM job_attempts a
 WHERE a.job_id = j.id AND a.attempt = j.attempts AND j.status = 'running' AND j.attempt_started_at IS NULL;

CREATE OR REPLACE FUNCTION mipo_record_attempt_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_attempts (job_id, attempt, scanner_id, lease_token, started_at, ended_at, outcome)
    VALUES (OLD.id, OLD.attempts, OLD.scanner_id, OLD.lease_token,
            coalesce(OLD.attempt_started_at, OLD.started_at, now()), now(),
            CASE NEW.status
                WHEN 'running' THEN 'superseded'
                WHEN 'pending' THEN 'requeued' || coalesce(':' || NEW.stall_class, '')
                ELSE NEW.status || coalesce(':' || NEW.error_class, '')
            END)
    ON CONFLICT (job_id, attempt) DO UPDATE
        SET ended_at = excluded.ended_at, outcome = excluded.outcome
        WHERE job_attempts.ended_at IS NULL;
    RETURN NULL;
END;
$$;

-- The WHEN clause is evaluated without calling the function: claims (pending -> running) and progress
-- (running, same lease) pay nothing.
CREATE OR REPLACE TRIGGER jobs_attempt_end
    AFTER UPDATE OF status, lease_token ON jobs
    FOR EACH ROW
    WHEN (OLD.status = 'running' AND (NEW.status <> 'running' OR NEW.lease_token <> OLD.lease_token))
    EXECUTE FUNCTION mipo_record_attempt_end();

-- jobs database: transient orchestration state (runs, jobs, leases, attempts).

CREATE TABLE scan_runs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    template_id     bigint NOT NULL,
    template_name   text NOT NULL,
    schedule_id     bigint,
    due_at          timestamptz,                    -- the schedule's due time this run answers
    run_request_id  bigint UNIQUE,
    status          text NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'completed', 'partial', 'failed', 'cancelled')),
    mode            text NOT NULL CHECK (mode IN ('mirror', 'split')),
    total_cost      bigint NOT NULL DEFAULT 0,      -- addresses × ports over all jobs
    done_cost       bigint NOT NULL DEFAULT 0,
    requested_by    text NOT NULL DEFAULT 'schedule',
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    UNIQUE (schedule_id, due_at)                    -- a due time becomes a run exactly once
);
CREATE INDEX scan_runs_status_idx ON scan_runs (status, created_at DESC);

CREATE TABLE jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          bigint NOT NULL REFERENCES scan_runs (id) ON DELETE CASCADE,
    scanner_id      bigint,                         -- assigned scanner (mirror: fixed; split: movable)
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    targets         jsonb NOT NULL,                 -- compact ranges: [["198.18.0.0", "198.18.0.255"], …]
    ports           text NOT NULL,                  -- compact port spec: "1-1024,8080"
    options         jsonb NOT NULL DEFAULT '{}',    -- rate, timeout_ms, banner, tls
    cost            bigint NOT NULL,
    done_cost       bigint NOT NULL DEFAULT 0,
    lease_token     bigint NOT NULL DEFAULT 0,      -- fencing token; bumped on every (re)lease
    lease_expires_at timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL DEFAULT 3,
    estimate_seconds double precision NOT NULL DEFAULT 60,
    last_error      text,
    error_class     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);
-- Claims scan only pending rows of one scanner, oldest first: a tiny partial index keeps SKIP LOCKED cheap.
CREATE INDEX jobs_claim_idx ON jobs (scanner_id, id) WHERE status = 'pending';
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_run_idx ON jobs (run_id);

CREATE TABLE job_attempts (
    job_id          bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt         integer NOT NULL,
    scanner_id      bigint,
    lease_token     bigint NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz,
    outcome         text,
    PRIMARY KEY (job_id, attempt)
);

GRANT SELECT ON ALL TABLES IN SCHEMA public TO mipo_manager;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO mipo_ingest;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO mipo_dispatcher;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO mipo_backup;

-- results database: observations as a TimescaleDB hypertable, coverage, changes, batch ledger.

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE observations (
    time            timestamptz NOT NULL,
    run_id          bigint NOT NULL,
    job_id          bigint NOT NULL,
    scanner_id      bigint NOT NULL,
    ip              inet NOT NULL,
    port            integer NOT NULL CHECK (port BETWEEN 0 AND 65535),
    proto           text NOT NULL DEFAULT 'tcp',
    state           text NOT NULL DEFAULT 'open',
    service         text,
    banner          text,
    tls_subject     text,
    tls_issuer      text,
    tls_sans        text[],
    tls_not_after   timestamptz,
    tls_sha256      text,
    rtt_ms          real
);
SELECT create_hypertable('observations', by_range('time', INTERVAL '1 day'));
CREATE INDEX observations_ip_port_idx ON observations (ip, port, time DESC);
CREATE INDEX observations_run_idx ON observations (run_id, scanner_id, time DESC);

-- One row per acknowledged result batch: a batch sent twice is stored once.
CREATE TABLE ingested_batches (
    job_id          bigint NOT NULL,
    batch_seq       integer NOT NULL,
    lease_token     bigint NOT NULL,
    scanner_id      bigint NOT NULL,
    rows            integer NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, batch_seq)
);

-- What each finished job actually scanned: absence is "closed" only inside covered space.
CREATE TABLE run_coverage (
    run_id          bigint NOT NULL,
    job_id          bigint NOT NULL,
    scanner_id      bigint NOT NULL,
    targets         jsonb NOT NULL,
    ports           text NOT NULL,
    complete        boolean NOT NULL,
    finished_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, scanner_id, finished_at)
);
CREATE INDEX run_coverage_run_idx ON run_coverage (run_id, scanner_id);

CREATE TABLE port_changes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    detected_at     timestamptz NOT NULL DEFAULT now(),
    run_id          bigint NOT NULL,
    previous_run_id bigint,
    scanner_id      bigint NOT NULL,
    ip              inet NOT NULL,
    port            integer NOT NULL,
    proto           text NOT NULL DEFAULT 'tcp',
    change          text NOT NULL CHECK (change IN ('opened', 'closed', 'service_changed', 'certificate_changed')),
    before          jsonb,
    after           jsonb,
    UNIQUE (run_id, scanner_id, ip, port, proto, change)   -- re-running detection adds nothing
);
CREATE INDEX port_changes_time_idx ON port_changes (detected_at DESC);
CREATE INDEX port_changes_ip_idx ON port_changes (ip, port);

CREATE TABLE run_summaries (
    run_id          bigint NOT NULL,
    scanner_id      bigint NOT NULL,
    open_ports      integer NOT NULL,
    hosts_up        integer NOT NULL,
    changes         integer NOT NULL,
    computed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, scanner_id)
);

GRANT SELECT ON ALL TABLES IN SCHEMA public TO mipo_manager;
-- Ingest appends; it never rewrites history.
GRANT INSERT ON observations TO mipo_ingest;
GRANT SELECT, INSERT ON ingested_batches, run_coverage TO mipo_ingest;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO mipo_dispatcher;
GRANT INSERT ON port_changes, run_summaries TO mipo_dispatcher;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO mipo_backup;

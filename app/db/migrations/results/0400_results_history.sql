-- Results history: coverage as searchable rectangles, the last known state per (scanner, address, port),
-- and the grants change detection, exports and retention need.

-- Address ranges as a range type over inet, so "is this address inside a covered range" uses a GiST index.
CREATE TYPE inetrange AS RANGE (subtype = inet);

-- One finished job's coverage (targets × ports) as rectangles: [first, last] addresses × [lo, hi] ports.
-- Coverage targets are [first, last] address pairs (or CIDR strings); ports a compact numeric spec
-- ("1-1024,8080", optional /tcp suffixes). Items that are not numeric are ignored: unreadable coverage
-- can only make less space "covered", never turn an unknown port into a closed one.
CREATE FUNCTION coverage_rectangles(p_run_id bigint)
RETURNS TABLE (job_id bigint, scanner_id bigint, complete boolean, finished_at timestamptz,
               ips inetrange, ports int4range)
LANGUAGE sql STABLE AS $$
    SELECT c.job_id, c.scanner_id, c.complete, c.finished_at,
           CASE jsonb_typeof(t.elem)
               WHEN 'array' THEN inetrange(host((t.elem->>0)::inet)::inet, host((t.elem->>1)::inet)::inet, '[]')
               ELSE inetrange(host(network((t.elem#>>'{}')::inet))::inet,
                              host(broadcast((t.elem#>>'{}')::inet))::inet, '[]')
           END,
           int4range(split_part(p.item, '-', 1)::int,
                     coalesce(nullif(split_part(p.item, '-', 2), ''), split_part(p.item, '-', 1))::int, '[]')
    FROM run_coverage c
    CROSS JOIN LATERAL jsonb_array_elements(c.targets) AS t(elem)
    CROSS JOIN LATERAL (
        SELECT regexp_replace(btrim(x), '/tcp$', '') AS item FROM string_to_table(c.ports, ',') AS x
    ) p
    WHERE c.run_id = p_run_id AND p.item ~ '^[0-9]+(-[0-9]+)?$'
$$;

-- Complete coverage of runs whose changes were detected: "was this (address, port) ever scanned by V".
CREATE TABLE coverage_cells (
    run_id          bigint NOT NULL,
    job_id          bigint NOT NULL,
    scanner_id      bigint NOT NULL,
    finished_at     timestamptz NOT NULL,
    ips             inetrange NOT NULL,
    ports           int4range NOT NULL
);
CREATE INDEX coverage_cells_space_idx ON coverage_cells USING gist (ips, ports);
CREATE INDEX coverage_cells_run_idx ON coverage_cells (run_id, scanner_id);

-- The last known state of every (scanner, address, port) ever seen open: kept in step by change
-- detection, so a run is compared with its predecessor by one hash join instead of a history scan.
-- `open` false = closed inside a later complete coverage (the row remains so "opened" is recognised).
CREATE TABLE port_state (
    scanner_id      bigint NOT NULL,
    ip              inet NOT NULL,
    port            integer NOT NULL,
    proto           text NOT NULL DEFAULT 'tcp',
    open            boolean NOT NULL,
    service         text,
    banner          text,
    tls_subject     text,
    tls_not_after   timestamptz,
    tls_sha256      text,
    first_seen_run  bigint NOT NULL,
    first_seen_at   timestamptz NOT NULL,
    since_run       bigint NOT NULL,            -- the run that established the current state
    since_at        timestamptz NOT NULL,
    PRIMARY KEY (ip, port, proto, scanner_id)   -- address first: host history reads it by ip
);

-- port_changes needs no run index: its UNIQUE (run_id, scanner_id, …) key already leads with run_id.

GRANT SELECT ON coverage_cells, port_state TO mipo_manager, mipo_dispatcher, mipo_backup;
GRANT INSERT ON coverage_cells TO mipo_dispatcher;
GRANT INSERT, UPDATE ON port_state TO mipo_dispatcher;

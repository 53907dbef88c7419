-- config database: people, scanners and everything an operator configures.
-- Service roles (mipo_manager, mipo_ingest, mipo_dispatcher, mipo_backup) exist before migrate runs.

CREATE TABLE users (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username        text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    password_hash   text NOT NULL,
    role            text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    must_change_password boolean NOT NULL DEFAULT false,
    disabled        boolean NOT NULL DEFAULT false,
    failed_logins   integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    id_hash         bytea PRIMARY KEY,              -- SHA-256 of the cookie value; the value itself is never stored
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    client_address  inet,
    user_agent      text
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

CREATE TABLE login_attempts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    username        text NOT NULL,
    client_address  inet,
    success         boolean NOT NULL
);
CREATE INDEX login_attempts_user_idx ON login_attempts (username, at);
CREATE INDEX login_attempts_addr_idx ON login_attempts (client_address, at);

CREATE TABLE audit_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor           text NOT NULL,
    action          text NOT NULL,
    object_type     text NOT NULL,
    object_id       text,
    before          jsonb,
    after           jsonb,
    prev_hash       bytea NOT NULL,
    hash            bytea NOT NULL UNIQUE
);

CREATE TABLE scanners (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    description     text NOT NULL DEFAULT '',
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'active', 'draining', 'disabled')),
    host_id         text UNIQUE,                    -- hash of the host's machine id: re-install keeps identity
    version         text,
    last_heartbeat_at timestamptz,
    last_address    inet,
    load            real,
    running_jobs    integer NOT NULL DEFAULT 0,
    rate_limit      integer NOT NULL DEFAULT 20000 CHECK (rate_limit > 0),   -- probes per second
    concurrency     integer NOT NULL DEFAULT 2000 CHECK (concurrency > 0),
    bound_network   cidr,                           -- optional: its key is accepted only from here
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE scanner_keys (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scanner_id      bigint NOT NULL REFERENCES scanners (id) ON DELETE CASCADE,
    key_id          text NOT NULL UNIQUE,           -- public lookup part of the key
    key_hash        bytea NOT NULL,                 -- SHA-256 of the whole key
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX scanner_keys_scanner_idx ON scanner_keys (scanner_id);

CREATE TABLE enrolment_tokens (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash      bytea NOT NULL UNIQUE,
    scanner_id      bigint NOT NULL REFERENCES scanners (id) ON DELETE CASCADE,
    bind_network    cidr,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz,
    used_from       inet,
    revoked_at      timestamptz
);

CREATE TABLE scanner_groups (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    mode            text NOT NULL CHECK (mode IN ('mirror', 'split')),
    description     text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE scanner_group_members (
    group_id        bigint NOT NULL REFERENCES scanner_groups (id) ON DELETE CASCADE,
    scanner_id      bigint NOT NULL REFERENCES scanners (id) ON DELETE RESTRICT,
    PRIMARY KEY (group_id, scanner_id)
);

CREATE TABLE subnets (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    cidr            cidr NOT NULL,
    description     text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE subnet_groups (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    description     text NOT NULL DEFAULT ''
);
CREATE TABLE subnet_group_members (
    group_id        bigint NOT NULL REFERENCES subnet_groups (id) ON DELETE CASCADE,
    subnet_id       bigint NOT NULL REFERENCES subnets (id) ON DELETE RESTRICT,
    PRIMARY KEY (group_id, subnet_id)
);

CREATE TABLE port_lists (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    spec            text NOT NULL,                  -- e.g. "22,80,443,8000-8100" or "top-100"
    description     text NOT NULL DEFAULT '',
    builtin         boolean NOT NULL DEFAULT false
);

CREATE TABLE scan_templates (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    description     text NOT NULL DEFAULT '',
    port_list_id    bigint NOT NULL REFERENCES port_lists (id) ON DELETE RESTRICT,
    scanner_group_id bigint NOT NULL REFERENCES scanner_groups (id) ON DELETE RESTRICT,
    rate            integer NOT NULL DEFAULT 5000 CHECK (rate > 0),          -- probes per second per scanner
    timeout_ms      integer NOT NULL DEFAULT 1000 CHECK (timeout_ms BETWEEN 50 AND 60000),
    banner          boolean NOT NULL DEFAULT true,
    tls             boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE template_targets (
    template_id     bigint NOT NULL REFERENCES scan_templates (id) ON DELETE CASCADE,
    subnet_id       bigint REFERENCES subnets (id) ON DELETE RESTRICT,
    subnet_group_id bigint REFERENCES subnet_groups (id) ON DELETE RESTRICT,
    CHECK ((subnet_id IS NULL) <> (subnet_group_id IS NULL))
);
CREATE INDEX template_targets_template_idx ON template_targets (template_id);

CREATE TABLE exclusions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cidr            cidr NOT NULL,
    reason          text NOT NULL DEFAULT '',
    template_id     bigint REFERENCES scan_templates (id) ON DELETE CASCADE,   -- NULL: global
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE schedules (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    template_id     bigint NOT NULL REFERENCES scan_templates (id) ON DELETE RESTRICT,
    cron            text NOT NULL,
    timezone        text NOT NULL DEFAULT 'UTC',
    jitter_seconds  integer NOT NULL DEFAULT 0 CHECK (jitter_seconds >= 0),
    enabled         boolean NOT NULL DEFAULT true,
    next_run_at     timestamptz,
    last_run_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- "Run now" from the manager: the dispatcher turns each request into exactly one run.
CREATE TABLE run_requests (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    template_id     bigint NOT NULL REFERENCES scan_templates (id) ON DELETE CASCADE,
    requested_by    text NOT NULL,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    run_id          bigint                           -- set once the dispatcher created the run
);

CREATE TABLE events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    class           text NOT NULL,                  -- e.g. stuck_pending, no_heartbeat, port_opened
    severity        text NOT NULL DEFAULT 'info' CHECK (severity IN ('info', 'warning', 'critical')),
    message         text NOT NULL,
    run_id          bigint,
    job_id          bigint,
    scanner_id      bigint,
    action          text,                           -- repair taken: redispatch, reassign, drain, fail
    details         jsonb NOT NULL DEFAULT '{}',
    acknowledged_at timestamptz
);
CREATE INDEX events_at_idx ON events (at DESC);
CREATE INDEX events_class_idx ON events (class, at DESC);

CREATE TABLE settings (
    key             text PRIMARY KEY,
    value           jsonb NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO mipo_manager;
GRANT SELECT, UPDATE ON scanners TO mipo_ingest;
GRANT SELECT, INSERT, UPDATE ON scanner_keys, enrolment_tokens TO mipo_ingest;
GRANT SELECT ON settings, scanner_groups, scanner_group_members TO mipo_ingest;
GRANT INSERT ON events TO mipo_ingest;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO mipo_dispatcher;
GRANT INSERT ON events TO mipo_dispatcher;
GRANT UPDATE (next_run_at, last_run_at) ON schedules TO mipo_dispatcher;
GRANT UPDATE (run_id) ON run_requests TO mipo_dispatcher;
GRANT UPDATE (status) ON scanners TO mipo_dispatcher;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO mipo_backup;
GRANT INSERT ON events TO mipo_backup;
REVOKE ALL ON audit_log FROM mipo_ingest, mipo_dispatcher;
-- The audit log is append-only even for the manager.
REVOKE UPDATE, DELETE ON audit_log FROM mipo_manager;

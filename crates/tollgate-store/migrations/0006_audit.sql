-- The audit log: one row per change made through the API, the console or the operator's
-- commands, inserted in the same transaction as the change it records (see src/audit.rs).
-- No foreign keys: an entry outlives what it names (the deletion of an application is
-- itself recorded, and kept for the retention period).
CREATE TABLE audit_logs (
    id TEXT PRIMARY KEY,
    creation_date BIGINT NOT NULL,
    -- The organization whose log holds the entry (NULL: a sandbox application's, or none).
    org_id TEXT,
    -- The application the change was in (NULL: an organization-level change).
    application_id TEXT,
    primary_target_type TEXT,
    primary_target_id TEXT,
    primary_target_name TEXT,
    secondary_target_type TEXT,
    secondary_target_id TEXT,
    secondary_target_name TEXT,
    -- ApiToken, User or Operator; the token's or user's id; its name or email.
    actor_type TEXT NOT NULL,
    actor_id TEXT,
    actor_name TEXT,
    client_address TEXT,
    request_resource TEXT NOT NULL,
    request_action TEXT NOT NULL,
    -- JSON objects, never holding a secret.
    request_path_params TEXT NOT NULL,
    request_body TEXT NOT NULL,
    response_status BIGINT NOT NULL
);
CREATE INDEX audit_logs_org ON audit_logs (org_id, creation_date);
CREATE INDEX audit_logs_application ON audit_logs (application_id, creation_date);
CREATE INDEX audit_logs_time ON audit_logs (creation_date);

-- Per-token usage, counted in memory by each node and added here in batches (see
-- src/usage.rs): requests per token, action, UTC day and outcome (0: authorized; else the
-- status of the refusal, 401 or 403 or 404).
CREATE TABLE token_usage (
    token_id TEXT NOT NULL REFERENCES api_tokens(id) ON DELETE CASCADE,
    action TEXT NOT NULL,
    day BIGINT NOT NULL,
    outcome BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (token_id, action, day, outcome)
);
-- Each token's most recent requests (at most 100 are kept per token).
CREATE TABLE token_requests (
    id TEXT PRIMARY KEY,
    token_id TEXT NOT NULL REFERENCES api_tokens(id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    action TEXT NOT NULL,
    status BIGINT NOT NULL,
    client_address TEXT,
    user_agent TEXT
);
CREATE INDEX token_requests_token ON token_requests (token_id, at);

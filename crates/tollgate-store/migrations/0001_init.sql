-- One schema for both backends: only types whose meaning SQLite and PostgreSQL share
-- (TEXT, BIGINT, BYTEA, DOUBLE PRECISION). Times are milliseconds since the Unix epoch (UTC).
-- Ids are 24 lowercase hex characters.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    first_name TEXT NOT NULL DEFAULT '',
    last_name TEXT NOT NULL DEFAULT '',
    creation_date BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    password_last_updated BIGINT NOT NULL
);

-- Login sessions: only the SHA-256 digest of the session secret is kept.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    digest BYTEA NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    creation_date BIGINT NOT NULL,
    expiration_date BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    extra TEXT NOT NULL DEFAULT '{}',
    creation_date BIGINT NOT NULL,
    last_updated BIGINT NOT NULL
);

CREATE TABLE org_members (
    org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL,         -- 'admin' | 'edit' | 'collaborate' | 'view' | 'none'
    -- JSON array of {resourceId, role}: kept and returned, not interpreted (no dashboards yet).
    dashboard_roles TEXT NOT NULL DEFAULT '[]',
    join_date BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_members_user ON org_members(user_id);

CREATE TABLE applications (
    id TEXT PRIMARY KEY,
    owner_type TEXT NOT NULL,   -- 'user' | 'organization'
    owner_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    -- Other fields of the reference schema that the server keeps but does not interpret.
    extra TEXT NOT NULL DEFAULT '{}',
    creation_date BIGINT NOT NULL,
    last_updated BIGINT NOT NULL
);
CREATE INDEX applications_owner ON applications(owner_type, owner_id);

-- Per-application overrides of a member's organization role ('collaborate' | 'view' | 'none').
-- A table, not JSON, so that "which applications may this user see" is one query.
CREATE TABLE member_application_roles (
    org_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    application_id TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (org_id, user_id, application_id),
    FOREIGN KEY (org_id, user_id) REFERENCES org_members(org_id, user_id) ON DELETE CASCADE,
    FOREIGN KEY (application_id) REFERENCES applications(id) ON DELETE CASCADE
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    digest BYTEA NOT NULL UNIQUE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    scope TEXT NOT NULL,        -- JSON array of scope strings
    status TEXT NOT NULL,       -- 'active' | 'inactive'
    expiration_date BIGINT,     -- NULL: never expires
    creator_type TEXT NOT NULL, -- 'user' | 'apiToken' | 'flow'
    creator_id TEXT NOT NULL,
    creator_name TEXT NOT NULL,
    creation_date BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    last_used BIGINT            -- minute precision; written in batches, never per request
);
CREATE INDEX api_tokens_application ON api_tokens(application_id);

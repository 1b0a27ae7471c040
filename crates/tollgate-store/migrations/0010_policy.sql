-- Token policies and background work (issue 15, item 2).
--
-- A policy per application and a default per organization. Every field is optional: NULL
-- means "not set here" (an application's unset field takes the organization's, an
-- organization's unset field the built-in default). Durations are milliseconds (the API
-- speaks days, fractions allowed); warning_leads_ms is a JSON array of milliseconds.
CREATE TABLE application_token_policies (
    application_id TEXT PRIMARY KEY REFERENCES applications(id) ON DELETE CASCADE,
    max_lifetime_ms BIGINT,
    expiry_required BIGINT,          -- 0 | 1
    idle_deactivation_ms BIGINT,
    warning_leads_ms TEXT,
    last_updated BIGINT NOT NULL
);
CREATE TABLE org_token_policies (
    org_id TEXT PRIMARY KEY REFERENCES orgs(id) ON DELETE CASCADE,
    max_lifetime_ms BIGINT,
    expiry_required BIGINT,
    idle_deactivation_ms BIGINT,
    warning_leads_ms TEXT,
    last_updated BIGINT NOT NULL
);

-- What the background jobs have announced about a token, each set in the transaction that
-- writes the announcement's audit entry (so each is announced once, whichever node runs the
-- job and however often): the shortest warning lead time already announced, whether its
-- expiry and its retirement were. activated_at: when the token was last switched on again
-- (idleness is counted from the latest of creation, last use and reactivation).
ALTER TABLE api_tokens ADD COLUMN expiry_warned_ms BIGINT;
ALTER TABLE api_tokens ADD COLUMN expired_announced BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_tokens ADD COLUMN retired_announced BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_tokens ADD COLUMN activated_at BIGINT;
CREATE INDEX api_tokens_expiration ON api_tokens(expiration_date);

-- Leases on cluster-wide work: at most one node holds a name until expires_at (milliseconds);
-- taken and renewed by one conditional statement (`Store::take_lease`).
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- The nodes serving this database (several nodes on PostgreSQL; the table stays empty on
-- SQLite). A node registers before its cache may answer and renews its cache lease only
-- through a heartbeat that finds its row here (see tollgate-store's cluster module), so the
-- node that commits a revocation knows whom to wait for. Runtime state: never copied by
-- `tollgate db copy`.
CREATE TABLE cluster_nodes (
    id TEXT PRIMARY KEY,
    -- A fresh id per registration: a row deleted and registered again is another row.
    incarnation TEXT NOT NULL,
    -- How long this node answers from its caches after a heartbeat it sent (milliseconds).
    lease_ms BIGINT NOT NULL,
    -- Heartbeats that found this row (each one a committed UPDATE).
    beats BIGINT NOT NULL DEFAULT 0,
    registered BIGINT NOT NULL
);

-- What the console's sessions page shows: the browser or client that logged in, and when the
-- session was last used (minute precision, written in batches like tokens' last use).
ALTER TABLE sessions ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN last_used BIGINT;

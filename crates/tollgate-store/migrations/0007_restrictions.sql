-- Token restrictions (issue 14): fixed at creation like the scope.

-- The token's restrictions as a JSON object of their API fields (allowedAddresses, deviceIds,
-- deviceTags, rateLimit, usageLimit); NULL: none.
ALTER TABLE api_tokens ADD COLUMN restrictions TEXT;

-- Usage limits, counted exactly across nodes: `leased` uses have been handed out, to nodes
-- (in blocks, each lease one UPDATE) or to child tokens (carved out at their creation); a
-- lease never takes `leased` past `quota`. `last_grant` is what the latest lease got (what its
-- UPDATE returns).
CREATE TABLE token_quotas (
    token_id TEXT PRIMARY KEY REFERENCES api_tokens(id) ON DELETE CASCADE,
    quota BIGINT NOT NULL,
    leased BIGINT NOT NULL DEFAULT 0,
    last_grant BIGINT NOT NULL DEFAULT 0
);

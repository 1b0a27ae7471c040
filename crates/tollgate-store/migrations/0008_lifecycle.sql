-- Token lifecycle (issue 15).
-- retires_at: when a rolled token stops working (its expiration_date is set to no later than
--   this in the same write, so every check of expiry enforces the retirement);
-- rolled_from_id: the token this one was rolled from (no foreign key: the old token may be
--   deleted while its successor lives on);
-- deactivation_reason: why a token was switched off by something other than a plain PATCH
--   ("reported as leaked"); cleared when it is switched on again.
ALTER TABLE api_tokens ADD COLUMN retires_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN rolled_from_id TEXT;
ALTER TABLE api_tokens ADD COLUMN deactivation_reason TEXT;

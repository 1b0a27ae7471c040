-- Token lineage (issue 15, item 6): a token created by a token names it as its creator
-- (creator_type 'apiToken', creator_id); finding a token's children is a lookup by creator
-- within its application (the recursive descendant queries and the cascade's lock walk it).
CREATE INDEX api_tokens_creator ON api_tokens(application_id, creator_id);

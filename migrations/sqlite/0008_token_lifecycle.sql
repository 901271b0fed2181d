-- Read tokens record when they were last used (at most once a minute), for
-- `the-eye tokens list` and the admin's Tokens page.
ALTER TABLE api_tokens ADD COLUMN last_used_at INTEGER;
CREATE INDEX api_tokens_name ON api_tokens (name);

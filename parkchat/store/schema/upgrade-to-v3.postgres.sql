-- parkchat schema, PostgreSQL: version 2 -> 3 (see upgrade-to-v3.sql).
-- Token revocation: single login tokens revoked before they expire (logout),
-- and per-account cutoffs that revoke every token issued up to a time.
-- The direct-message history of two accounts: an index on (from, to, id).

-- Single tokens revoked before their expiry (logout), by JWT id. A row is
-- useless once expires_s has passed (the token is refused as expired then):
-- such rows are pruned.
CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY,
    -- the token's own expiry (its exp claim), seconds since the epoch
    expires_s BIGINT NOT NULL
);

-- pruning: rows whose token has expired
CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_s);

-- Per account: every token issued at or before before_ms is revoked ("log
-- out everywhere", password change). A cutoff never moves backwards.
CREATE TABLE token_cutoffs (
    user_id BIGINT PRIMARY KEY REFERENCES users (id),
    -- milliseconds since the epoch
    before_ms BIGINT NOT NULL
);

-- direct_history: the last N messages between two accounts, one search per
-- direction (from, to), and paging by id
CREATE INDEX direct_messages_pair ON direct_messages (from_user_id, to_user_id, id);

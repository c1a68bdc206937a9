-- parkchat schema, PostgreSQL: version 1 -> 2 (see upgrade-to-v2.sql).
-- Direct messages (seed 004's chat / get_offline), the ban list, and
-- server-wide settings such as the generated token-signing secret.

CREATE TABLE server_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE direct_messages (
    id BIGSERIAL PRIMARY KEY,
    from_user_id BIGINT NOT NULL REFERENCES users (id),
    to_user_id BIGINT NOT NULL REFERENCES users (id),
    content TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    -- 0 until the recipient has been handed the message
    delivered INTEGER NOT NULL DEFAULT 0
);

-- get_offline: a recipient's undelivered messages, oldest first
CREATE INDEX direct_messages_pending ON direct_messages (to_user_id, delivered, id);

CREATE TABLE bans (
    user_id BIGINT PRIMARY KEY REFERENCES users (id),
    reason TEXT NOT NULL DEFAULT '',
    created_ms BIGINT NOT NULL,
    -- NULL: until lifted
    expires_ms BIGINT
);

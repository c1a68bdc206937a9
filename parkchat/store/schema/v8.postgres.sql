-- parkchat schema, version 8, PostgreSQL: the complete schema for a new
-- database. Same tables, columns, names and meaning as v8.sql; only the types
-- differ: BIGSERIAL ids, BIGINT for ids and millisecond times (they pass
-- 2^31), TEXT for text.

CREATE TABLE schema_version (
    version INTEGER NOT NULL
);

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    nickname TEXT NOT NULL,
    -- casefolded nickname: "Alice" and "alice" are one account
    nickname_key TEXT NOT NULL UNIQUE,
    -- bcrypt hash (ASCII) of the SHA-256-prehashed password
    password_hash TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    password_changed_ms BIGINT NOT NULL,
    -- the confusable skeleton of the nickname (parkchat.model.name_skeleton):
    -- no two accounts look alike; NULL only for an account that looked like
    -- an older one before version 8 (both kept)
    name_skeleton TEXT
);

-- no two accounts whose names look alike (NULLs: accounts kept from before
-- version 5 that looked like an older one)
CREATE UNIQUE INDEX users_name_skeleton ON users (name_skeleton);

CREATE TABLE messages (
    id BIGSERIAL PRIMARY KEY,
    room TEXT NOT NULL,
    user_id BIGINT REFERENCES users (id),
    nickname TEXT NOT NULL,
    content TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    type TEXT NOT NULL DEFAULT 'chat',
    -- the message's position in its room: 1, 2, 3, ... (room_sequences)
    seq BIGINT NOT NULL
);


-- one message per position in a room: history (the newest N, paging),
-- gap fills and resumes read ranges of it
CREATE UNIQUE INDEX messages_room_seq ON messages (room, seq);

-- per room, the seq of its last message stored: a batch bumps it by its
-- message count in the transaction that stores them, and the row lock it
-- takes there, held until commit, makes the room's next batch wait, so a
-- room's seqs become visible in order while other rooms commit in parallel
CREATE TABLE room_sequences (
    room TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);


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
    delivered INTEGER NOT NULL DEFAULT 0,
    -- the message's position in the conversation of the two accounts (either
    -- direction): 1, 2, 3, ... (conversation_sequences)
    seq BIGINT NOT NULL
);

-- get_offline: a recipient's undelivered messages, oldest first
CREATE INDEX direct_messages_pending ON direct_messages (to_user_id, delivered, id);

-- direct_history: the last N messages between two accounts, one search per
-- direction (from, to), and paging by id
CREATE INDEX direct_messages_pair ON direct_messages (from_user_id, to_user_id, id);

-- a conversation by seq: one search per direction, as by id
CREATE INDEX direct_messages_seq ON direct_messages (from_user_id, to_user_id, seq);

-- per conversation (the pair of accounts, lower id first; equal for notes to
-- self), the seq of its last message
CREATE TABLE conversation_sequences (
    low_user_id BIGINT NOT NULL REFERENCES users (id),
    high_user_id BIGINT NOT NULL REFERENCES users (id),
    last_seq BIGINT NOT NULL,
    PRIMARY KEY (low_user_id, high_user_id)
);

CREATE TABLE bans (
    user_id BIGINT PRIMARY KEY REFERENCES users (id),
    reason TEXT NOT NULL DEFAULT '',
    created_ms BIGINT NOT NULL,
    -- NULL: until lifted
    expires_ms BIGINT
);


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

-- Per account: the number of the last session (login) counted, so that the
-- newest of several logins on several instances can be told.
CREATE TABLE session_counters (
    user_id BIGINT PRIMARY KEY REFERENCES users (id),
    last_session BIGINT NOT NULL
);

ALTER TABLE messages ADD COLUMN edited_ms BIGINT;

CREATE TABLE message_edits (
    id BIGSERIAL PRIMARY KEY,
    -- no foreign key: the record stays when the message is deleted
    message_id BIGINT NOT NULL,
    room TEXT NOT NULL,
    seq BIGINT NOT NULL,
    -- the text this edit replaced
    old_content TEXT NOT NULL,
    -- who edited: the author or a moderator (editor_id NULL: a guest)
    editor_id BIGINT,
    editor TEXT NOT NULL,
    edited_ms BIGINT NOT NULL
);

-- a message's edits, oldest first
CREATE INDEX message_edits_message ON message_edits (message_id, id);

ALTER TABLE messages ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED;

CREATE INDEX messages_search ON messages USING GIN (search_vector);

ALTER TABLE direct_messages ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED;

CREATE INDEX direct_messages_search ON direct_messages USING GIN (search_vector);

-- A room's topic (no row: none), set by a member (or a moderator).
CREATE TABLE room_topics (
    room TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_ms BIGINT NOT NULL
);

-- Account state (issue 16): what follows an account from device to device.

-- The rooms an account has joined (on /ws), until it leaves them; per room
-- its read marker (the last seq it has read) and whether it is muted.
CREATE TABLE account_rooms (
    user_id BIGINT NOT NULL REFERENCES users (id),
    room TEXT NOT NULL,
    joined_ms BIGINT NOT NULL,
    read_seq BIGINT NOT NULL DEFAULT 0,
    muted BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, room)
);

-- Per account and conversation (the other account): its read marker, and
-- whether it is in the account's list of conversations: opened (even
-- without messages), or closed at closed_seq (hidden until a message after
-- that seq).
CREATE TABLE account_directs (
    user_id BIGINT NOT NULL REFERENCES users (id),
    other_id BIGINT NOT NULL REFERENCES users (id),
    read_seq BIGINT NOT NULL DEFAULT 0,
    opened BIGINT NOT NULL DEFAULT 0,
    closed_seq BIGINT,
    PRIMARY KEY (user_id, other_id)
);

-- an account's conversations where it has the higher id (the primary key
-- finds those where it has the lower)
CREATE INDEX conversation_sequences_high ON conversation_sequences (high_user_id);

-- Mentions in room messages, parsed when posted: one row per message and
-- name mentioned. user_id is the account mentioned; NULL for "@room",
-- "@here" (name says which) and for a guest mentioned by name.
CREATE TABLE mentions (
    room TEXT NOT NULL,
    seq BIGINT NOT NULL,
    user_id BIGINT REFERENCES users (id),
    name TEXT NOT NULL,
    PRIMARY KEY (room, seq, name)
);

-- an account's mentions in a room after its read marker
CREATE INDEX mentions_user ON mentions (user_id, room, seq);

-- Long-lived logins: refresh tokens, only their SHA-256 stored. Each use
-- spends one and issues the next of its family; a spent one presented
-- again revokes the whole family (it was copied).
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    family TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    -- when it was exchanged for the next one (NULL: not yet)
    spent_ms BIGINT,
    revoked BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_ms);

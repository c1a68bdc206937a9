-- parkchat schema: version 6 -> 7.
-- Account state (issue 16): joined rooms, read markers and mutes per
-- account, its list of conversations, mentions, refresh tokens. New tables
-- only: nothing existing changes. Existing accounts start with no rooms
-- recorded (they are recorded as they join again).

-- Account state (issue 16): what follows an account from device to device.

-- The rooms an account has joined (on /ws), until it leaves them; per room
-- its read marker (the last seq it has read) and whether it is muted.
CREATE TABLE account_rooms (
    user_id INTEGER NOT NULL REFERENCES users (id),
    room TEXT NOT NULL,
    joined_ms INTEGER NOT NULL,
    read_seq INTEGER NOT NULL DEFAULT 0,
    muted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, room)
);

-- Per account and conversation (the other account): its read marker, and
-- whether it is in the account's list of conversations: opened (even
-- without messages), or closed at closed_seq (hidden until a message after
-- that seq).
CREATE TABLE account_directs (
    user_id INTEGER NOT NULL REFERENCES users (id),
    other_id INTEGER NOT NULL REFERENCES users (id),
    read_seq INTEGER NOT NULL DEFAULT 0,
    opened INTEGER NOT NULL DEFAULT 0,
    closed_seq INTEGER,
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
    seq INTEGER NOT NULL,
    user_id INTEGER REFERENCES users (id),
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
    user_id INTEGER NOT NULL REFERENCES users (id),
    family TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    -- when it was exchanged for the next one (NULL: not yet)
    spent_ms INTEGER,
    revoked INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_ms);

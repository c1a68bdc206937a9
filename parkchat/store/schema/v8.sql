-- parkchat schema, version 8: the complete schema for a new database.
-- Later versions add vN.sql (complete) and upgrade-to-vN.sql (from N-1).

CREATE TABLE schema_version (
    version INTEGER NOT NULL
);

-- name_skeleton: the confusable skeleton of the nickname
-- (parkchat.model.name_skeleton): no two accounts look alike; NULL only for
-- an account that looked like an older one before version 8 (both kept).
-- Written as SQLite records the table after upgrade-to-v8.sql's ALTER TABLE.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    nickname TEXT NOT NULL,
    -- casefolded nickname: "Alice" and "alice" are one account
    nickname_key TEXT NOT NULL UNIQUE,
    -- bcrypt hash (ASCII) of the SHA-256-prehashed password
    password_hash TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    password_changed_ms INTEGER NOT NULL
, name_skeleton TEXT);

-- no two accounts whose names look alike (NULLs: accounts kept from before
-- version 8 that looked like an older one)
CREATE UNIQUE INDEX users_name_skeleton ON users (name_skeleton);

CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL,
    user_id INTEGER REFERENCES users (id),
    nickname TEXT NOT NULL,
    content TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    type TEXT NOT NULL DEFAULT 'chat',
    -- the message's position in its room: 1, 2, 3, ... (room_sequences)
    seq INTEGER NOT NULL
);


-- one message per position in a room: history (the newest N, paging),
-- gap fills and resumes read ranges of it
CREATE UNIQUE INDEX messages_room_seq ON messages (room, seq);

-- per room, the seq of its last message stored: a batch bumps it by its
-- message count in the transaction that stores them
CREATE TABLE room_sequences (
    room TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
);


CREATE TABLE server_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE direct_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    from_user_id INTEGER NOT NULL REFERENCES users (id),
    to_user_id INTEGER NOT NULL REFERENCES users (id),
    content TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    -- 0 until the recipient has been handed the message
    delivered INTEGER NOT NULL DEFAULT 0,
    -- the message's position in the conversation of the two accounts (either
    -- direction): 1, 2, 3, ... (conversation_sequences)
    seq INTEGER NOT NULL
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
    low_user_id INTEGER NOT NULL REFERENCES users (id),
    high_user_id INTEGER NOT NULL REFERENCES users (id),
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (low_user_id, high_user_id)
);

CREATE TABLE bans (
    user_id INTEGER PRIMARY KEY REFERENCES users (id),
    reason TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL,
    -- NULL: until lifted
    expires_ms INTEGER
);


-- Single tokens revoked before their expiry (logout), by JWT id. A row is
-- useless once expires_s has passed (the token is refused as expired then):
-- such rows are pruned.
CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY,
    -- the token's own expiry (its exp claim), seconds since the epoch
    expires_s INTEGER NOT NULL
);

-- pruning: rows whose token has expired
CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_s);

-- Per account: every token issued at or before before_ms is revoked ("log
-- out everywhere", password change). A cutoff never moves backwards.
CREATE TABLE token_cutoffs (
    user_id INTEGER PRIMARY KEY REFERENCES users (id),
    -- milliseconds since the epoch
    before_ms INTEGER NOT NULL
);

-- Per account: the number of the last session (login) counted, so that the
-- newest of several logins on several instances can be told.
CREATE TABLE session_counters (
    user_id INTEGER PRIMARY KEY REFERENCES users (id),
    last_session INTEGER NOT NULL
);

ALTER TABLE messages ADD COLUMN edited_ms INTEGER;

CREATE TABLE message_edits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- no foreign key: the record stays when the message is deleted
    message_id INTEGER NOT NULL,
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    -- the text this edit replaced
    old_content TEXT NOT NULL,
    -- who edited: the author or a moderator (editor_id NULL: a guest)
    editor_id INTEGER,
    editor TEXT NOT NULL,
    edited_ms INTEGER NOT NULL
);

-- a message's edits, oldest first
CREATE INDEX message_edits_message ON message_edits (message_id, id);

-- Full-text search (FTS5), external content: the index holds only the
-- words, the text stays in messages / direct_messages. Triggers keep it in
-- step with every insert, edit and delete, whoever writes.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    content, content='messages', content_rowid='id',
    tokenize='unicode61 remove_diacritics 2'
);

INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
    INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
END;

CREATE VIRTUAL TABLE direct_messages_fts USING fts5(
    content, content='direct_messages', content_rowid='id',
    tokenize='unicode61 remove_diacritics 2'
);

INSERT INTO direct_messages_fts (direct_messages_fts) VALUES ('rebuild');

CREATE TRIGGER direct_messages_fts_insert AFTER INSERT ON direct_messages BEGIN
    INSERT INTO direct_messages_fts (rowid, content) VALUES (new.id, new.content);
END;

CREATE TRIGGER direct_messages_fts_delete AFTER DELETE ON direct_messages BEGIN
    INSERT INTO direct_messages_fts (direct_messages_fts, rowid, content)
    VALUES ('delete', old.id, old.content);
END;

CREATE TRIGGER direct_messages_fts_update AFTER UPDATE OF content ON direct_messages BEGIN
    INSERT INTO direct_messages_fts (direct_messages_fts, rowid, content)
    VALUES ('delete', old.id, old.content);
    INSERT INTO direct_messages_fts (rowid, content) VALUES (new.id, new.content);
END;

-- A room's topic (no row: none), set by a member (or a moderator).
CREATE TABLE room_topics (
    room TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_ms INTEGER NOT NULL
);

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

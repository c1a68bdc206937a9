-- parkchat schema, version 1: the complete schema for a new database.
-- Later versions add vN.sql (complete) and upgrade-to-vN.sql (from N-1).

CREATE TABLE schema_version (
    version INTEGER NOT NULL
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    nickname TEXT NOT NULL,
    -- casefolded nickname: "Alice" and "alice" are one account
    nickname_key TEXT NOT NULL UNIQUE,
    -- bcrypt hash (ASCII) of the SHA-256-prehashed password
    password_hash TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    password_changed_ms INTEGER NOT NULL
);

CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL,
    user_id INTEGER REFERENCES users (id),
    nickname TEXT NOT NULL,
    content TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    type TEXT NOT NULL DEFAULT 'chat'
);

-- history: the last N messages of a room, and paging by id
CREATE INDEX messages_room_id ON messages (room, id);

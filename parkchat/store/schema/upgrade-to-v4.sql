-- parkchat schema: version 3 -> 4.
-- Positions: every room message gets seq, its place in its room (1, 2, 3, ...
-- in the order stored), counted in room_sequences; every direct message its
-- place in the conversation of its two accounts, counted in
-- conversation_sequences. Existing messages are numbered in id order.
-- session_counters numbers each account's logins.
--
-- SQLite adds no NOT NULL column without a default, so messages and
-- direct_messages are rebuilt: the old table is renamed aside, the new one
-- created as in v4.sql and filled (ids kept, seq from ROW_NUMBER), the old
-- one dropped. AUTOINCREMENT's high-water mark moves along (sqlite_sequence),
-- so the id of a deleted message is still never given again.

ALTER TABLE messages RENAME TO messages_v3;

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

INSERT INTO messages (id, room, user_id, nickname, content, created_ms, type, seq)
SELECT id, room, user_id, nickname, content, created_ms, type,
       ROW_NUMBER() OVER (PARTITION BY room ORDER BY id)
FROM messages_v3 ORDER BY id;

DELETE FROM sqlite_sequence WHERE name = 'messages';
UPDATE sqlite_sequence SET name = 'messages' WHERE name = 'messages_v3';

-- also drops messages_room_id, which moved to messages_v3 with the rename
DROP TABLE messages_v3;

-- history: the last N messages of a room, and paging by id
CREATE INDEX messages_room_id ON messages (room, id);

-- one message per position in a room; gap fills and resumes read ranges of it
CREATE UNIQUE INDEX messages_room_seq ON messages (room, seq);

-- per room, the seq of its last message stored: a batch bumps it by its
-- message count in the transaction that stores them
CREATE TABLE room_sequences (
    room TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
);

INSERT INTO room_sequences (room, last_seq)
SELECT room, max(seq) FROM messages GROUP BY room;

ALTER TABLE direct_messages RENAME TO direct_messages_v3;

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

-- min/max of two arguments: the pair of accounts, lower id first
INSERT INTO direct_messages (id, from_user_id, to_user_id, content, created_ms, delivered, seq)
SELECT id, from_user_id, to_user_id, content, created_ms, delivered,
       ROW_NUMBER() OVER (
           PARTITION BY min(from_user_id, to_user_id), max(from_user_id, to_user_id)
           ORDER BY id
       )
FROM direct_messages_v3 ORDER BY id;

DELETE FROM sqlite_sequence WHERE name = 'direct_messages';
UPDATE sqlite_sequence SET name = 'direct_messages' WHERE name = 'direct_messages_v3';

DROP TABLE direct_messages_v3;

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

INSERT INTO conversation_sequences (low_user_id, high_user_id, last_seq)
SELECT min(from_user_id, to_user_id), max(from_user_id, to_user_id), max(seq)
FROM direct_messages
GROUP BY min(from_user_id, to_user_id), max(from_user_id, to_user_id);

-- Per account: the number of the last session (login) counted, so that the
-- newest of several logins on several instances can be told.
CREATE TABLE session_counters (
    user_id INTEGER PRIMARY KEY REFERENCES users (id),
    last_session INTEGER NOT NULL
);

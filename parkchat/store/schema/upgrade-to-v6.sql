-- parkchat schema: version 5 -> 6 (issue #16, messages): edits, full-text
-- search, room topics. (Issue #16's account state comes in a step of its
-- own; whichever is merged second is renumbered.)
--
-- messages.edited_ms: when the text was last edited (NULL: never); the old
-- texts are kept in message_edits, for moderators.

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

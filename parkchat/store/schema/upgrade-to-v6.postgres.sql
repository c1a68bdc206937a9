-- parkchat schema, PostgreSQL: version 5 -> 6 (see upgrade-to-v6.sql).
-- Full-text search: a generated tsvector column per message table (the
-- 'simple' configuration: no stemming or stop words, chats mix languages)
-- with a GIN index; PostgreSQL keeps it in step with every insert, edit and
-- delete. Adding a stored generated column rewrites messages and
-- direct_messages once, in the upgrade's one transaction.

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

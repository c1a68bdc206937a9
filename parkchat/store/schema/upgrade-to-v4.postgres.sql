-- parkchat schema, PostgreSQL: version 3 -> 4 (see upgrade-to-v4.sql).
-- Positions: every room message gets seq, its place in its room (1, 2, 3, ...
-- in the order stored), counted in room_sequences; every direct message its
-- place in the conversation of its two accounts, counted in
-- conversation_sequences. Existing messages are numbered in id order.
-- session_counters numbers each account's logins.
--
-- Numbering rewrites every row of messages and direct_messages once (an
-- UPDATE), in the upgrade's one transaction.

ALTER TABLE messages ADD COLUMN seq BIGINT;

UPDATE messages m SET seq = numbered.seq
FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY room ORDER BY id) AS seq FROM messages) numbered
WHERE m.id = numbered.id;

ALTER TABLE messages ALTER COLUMN seq SET NOT NULL;

-- one message per position in a room; gap fills and resumes read ranges of it
CREATE UNIQUE INDEX messages_room_seq ON messages (room, seq);

-- per room, the seq of its last message stored: a batch bumps it by its
-- message count in the transaction that stores them, and the row lock it
-- takes there, held until commit, makes the room's next batch wait, so a
-- room's seqs become visible in order while other rooms commit in parallel
CREATE TABLE room_sequences (
    room TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);

INSERT INTO room_sequences (room, last_seq)
SELECT room, max(seq) FROM messages GROUP BY room;

ALTER TABLE direct_messages ADD COLUMN seq BIGINT;

UPDATE direct_messages d SET seq = numbered.seq
FROM (
    SELECT id, ROW_NUMBER() OVER (
        PARTITION BY LEAST(from_user_id, to_user_id), GREATEST(from_user_id, to_user_id)
        ORDER BY id
    ) AS seq
    FROM direct_messages
) numbered
WHERE d.id = numbered.id;

ALTER TABLE direct_messages ALTER COLUMN seq SET NOT NULL;

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

INSERT INTO conversation_sequences (low_user_id, high_user_id, last_seq)
SELECT LEAST(from_user_id, to_user_id), GREATEST(from_user_id, to_user_id), max(seq)
FROM direct_messages
GROUP BY LEAST(from_user_id, to_user_id), GREATEST(from_user_id, to_user_id);

-- Per account: the number of the last session (login) counted, so that the
-- newest of several logins on several instances can be told.
CREATE TABLE session_counters (
    user_id BIGINT PRIMARY KEY REFERENCES users (id),
    last_session BIGINT NOT NULL
);

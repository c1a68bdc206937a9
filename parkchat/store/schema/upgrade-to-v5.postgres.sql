-- parkchat schema: version 4 -> 5.
-- History reads a room by its positions (room, seq), which follow id order
-- within a room (a room's batches commit one after the other, each drawing
-- ids after the one before it committed), so the (room, id) index is no
-- longer read; it cost every stored message a second index insert.
DROP INDEX messages_room_id;

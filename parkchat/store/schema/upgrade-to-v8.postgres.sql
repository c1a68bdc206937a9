-- parkchat schema, PostgreSQL: version 7 -> 8 (the same as upgrade-to-v8.sql).
-- Look-alike names: every account gets the confusable skeleton of its
-- nickname (parkchat.model.name_skeleton, UTS #39), unique, so that no
-- account can be registered whose name looks like another's (alice and
-- аlice with a Cyrillic а).
--
-- The skeleton is computed in Python (from Unicode's confusables data), not
-- in SQL: the column starts NULL here, and the store fills it at start-up
-- right after the upgrade (parkchat.store.sql.accounts.backfill_name_skeletons,
-- oldest account first). Two existing accounts whose names look alike are
-- both kept: the older gets the skeleton, the younger keeps NULL (logged),
-- and no new account can take a name like either of them.
--
-- Kept as its own upgrade script, apart from other changes of the same
-- release, so that it can be renumbered when merged.

ALTER TABLE users ADD COLUMN name_skeleton TEXT;

CREATE UNIQUE INDEX users_name_skeleton ON users (name_skeleton);

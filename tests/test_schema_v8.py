"""The shipped version-8 schema (the accounts' name skeletons, issue 15) on
SQLite: the full script and the upgrades build the same database. The
backfill of existing accounts is in ``test_names``; the PostgreSQL side in
``test_postgres``. (Kept apart from other changes of the same release so that
it can be renumbered when merged.)"""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import TestCase

from parkchat.store.schema import SCHEMA_DIR, latest_version
from tests.test_schema_v2 import run_scripts, schema_objects


class SchemaV5Tests(TestCase):
    def db_path(self) -> str:
        directory = Path(self.mktemp())
        directory.mkdir()
        return str(directory / "chat.db")

    def test_shipped(self) -> None:
        self.assertGreaterEqual(latest_version(), 8)
        self.assertTrue((SCHEMA_DIR / "v8.sql").exists())
        self.assertTrue((SCHEMA_DIR / "v8.postgres.sql").exists())
        self.assertTrue((SCHEMA_DIR / "upgrade-to-v8.sql").exists())

    def test_full_script_matches_upgrade(self) -> None:
        """v8.sql creates exactly the objects (type, name, table and SQL)
        that v7.sql followed by upgrade-to-v8.sql create, and v1.sql followed
        by every upgrade; among them the unique index on name_skeleton."""
        fresh, from_v7, from_v1 = self.db_path(), self.db_path(), self.db_path()
        run_scripts(fresh, "v8")
        run_scripts(from_v7, "v7", "upgrade-to-v8")
        run_scripts(
            from_v1,
            "v1",
            "upgrade-to-v2",
            "upgrade-to-v3",
            "upgrade-to-v4",
            "upgrade-to-v5",
            "upgrade-to-v6",
            "upgrade-to-v7",
            "upgrade-to-v8",
        )
        objects = schema_objects(fresh)
        self.assertEqual(objects, schema_objects(from_v7))
        self.assertEqual(objects, schema_objects(from_v1))
        [index] = [o for o in objects if o[1] == "users_name_skeleton"]
        self.assertIn("UNIQUE", index[3])

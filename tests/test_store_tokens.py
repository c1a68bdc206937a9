"""The ``ITokenStore`` contract (revoked tokens and per-account cutoffs):
one behaviour suite for the in-memory store, SQLite on a real file and
PostgreSQL (when ``PARKCHAT_TEST_POSTGRES`` is set; see
``tests/store_support.py``)."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.store_support import S0, T0, OnMemory, OnPostgreSQL, OnSQLite, StoreSuite


class TokenStoreTestsMixin(StoreSuite):
    """The ITokenStore contract; mixed into a TestCase per implementation."""

    # -- revoked tokens --------------------------------------------------------

    async def test_revoke_token_idempotent(self) -> None:
        """Revoking a token again is no error and leaves one entry."""
        store = self.make_store()
        self.assertIsNone(await store.revoke_token("jti-a", S0 + 60))
        self.assertIsNone(await store.revoke_token("jti-a", S0 + 60))
        self.assertEqual(await store.list_revoked_tokens(S0), [("jti-a", S0 + 60)])

    async def test_list_revoked_tokens_only_unexpired(self) -> None:
        """``list_revoked_tokens`` gives ``(jti, expires_s)`` of the tokens
        expiring after ``now_s``; one expiring at ``now_s`` is left out."""
        store = self.make_store()
        self.assertEqual(await store.list_revoked_tokens(S0), [])
        await store.revoke_token("past", S0 - 1)
        await store.revoke_token("now", S0)
        await store.revoke_token("soon", S0 + 1)
        await store.revoke_token("later", S0 + 3600)
        self.assertEqual(
            sorted(await store.list_revoked_tokens(S0)), [("later", S0 + 3600), ("soon", S0 + 1)]
        )
        self.assertEqual(await store.list_revoked_tokens(S0 + 1), [("later", S0 + 3600)])
        self.assertEqual(len(await store.list_revoked_tokens(0)), 4)
        self.assertEqual(await store.list_revoked_tokens(S0 + 3600), [])

    async def test_prune_revoked_tokens(self) -> None:
        """``prune_revoked_tokens`` deletes the tokens expired by ``now_s``
        (``expires_s <= now_s``), only those, and fires with their count."""
        store = self.make_store()
        self.assertEqual(await store.prune_revoked_tokens(S0), 0)
        await store.revoke_token("past", S0 - 10)
        await store.revoke_token("now", S0)
        await store.revoke_token("later", S0 + 10)
        self.assertEqual(await store.prune_revoked_tokens(S0), 2)
        self.assertEqual(await store.list_revoked_tokens(0), [("later", S0 + 10)])
        self.assertEqual(await store.prune_revoked_tokens(S0), 0)
        self.assertEqual(await store.prune_revoked_tokens(S0 + 10), 1)
        self.assertEqual(await store.list_revoked_tokens(0), [])

    async def test_revoked_token_values_round_trip(self) -> None:
        """Token ids come back exactly; expiries past 2^31 (BIGINT) too."""
        store = self.make_store()
        jti = "Zm9v-YmFy_" + "x" * 40
        await store.revoke_token(jti, 2**40)
        self.assertEqual(await store.list_revoked_tokens(S0), [(jti, 2**40)])

    # -- token cutoffs ---------------------------------------------------------

    async def test_set_token_cutoff_keeps_larger(self) -> None:
        """A cutoff is stored per account; setting it again moves it forward
        but never backwards."""
        store = self.make_store()
        [bob] = await self.users(store, "bob")
        self.assertEqual(await store.list_token_cutoffs(), [])
        self.assertIsNone(await store.set_token_cutoff(bob.id, T0))
        self.assertEqual(await store.list_token_cutoffs(), [(bob.id, T0)])
        await store.set_token_cutoff(bob.id, T0 + 500)
        self.assertEqual(await store.list_token_cutoffs(), [(bob.id, T0 + 500)])
        await store.set_token_cutoff(bob.id, T0 + 100)
        self.assertEqual(await store.list_token_cutoffs(), [(bob.id, T0 + 500)])
        await store.set_token_cutoff(bob.id, T0 + 500)
        self.assertEqual(await store.list_token_cutoffs(), [(bob.id, T0 + 500)])

    async def test_list_token_cutoffs_by_user_id(self) -> None:
        """``list_token_cutoffs`` gives every account with a cutoff, ordered
        by user id whatever order they were set in; others are not listed."""
        store = self.make_store()
        alice, _bob, carol, dave = await self.users(store, "alice", "bob", "carol", "dave")
        await store.set_token_cutoff(dave.id, T0 + 3)
        await store.set_token_cutoff(alice.id, T0 + 1)
        await store.set_token_cutoff(carol.id, T0 + 2)
        self.assertEqual(
            await store.list_token_cutoffs(),
            [(alice.id, T0 + 1), (carol.id, T0 + 2), (dave.id, T0 + 3)],
        )

    async def test_revocation_tables_independent(self) -> None:
        """Cutoffs and revoked tokens do not affect each other."""
        store = self.make_store()
        [alice] = await self.users(store, "alice")
        await store.revoke_token("t1", S0 + 60)
        await store.set_token_cutoff(alice.id, T0)
        self.assertEqual(await store.prune_revoked_tokens(S0 + 60), 1)
        self.assertEqual(await store.list_token_cutoffs(), [(alice.id, T0)])
        self.assertEqual(await store.list_revoked_tokens(0), [])


class MemoryTokenTests(OnMemory, TokenStoreTestsMixin, TestCase):
    """The token contract, for the in-memory store."""


class SQLiteTokenTests(OnSQLite, TokenStoreTestsMixin, TestCase):
    """The token contract, for SQLite on a real file."""


class PostgreSQLTokenTests(OnPostgreSQL, TokenStoreTestsMixin, TestCase):
    """The token contract, for PostgreSQL on a new database per test."""

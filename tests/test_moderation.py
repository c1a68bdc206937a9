"""ChatService beyond rooms: direct messages, presence, kick, bans, the
single-session policy, the failed-login throttle, ephemeral notices and the
connection id carried by messages.

Everything runs over the in-memory store with a ``Clock``; the memory store
answers at once, so the coroutines of the service finish within the call and
``successResultOf``/``failureResultOf`` can look at their Deferreds.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from parkchat.auth import IChatUser, PeerUsernamePassword
from parkchat.errors import (
    AuthenticationFailed,
    Banned,
    ContentTooLong,
    InvalidContent,
    InvalidRequest,
    NotInRoom,
    RateLimited,
    TooManyAttempts,
    TooManyConnections,
    UnknownRecipient,
)
from parkchat.interfaces import IEncoder
from parkchat.limits import Limits
from parkchat.model import CHAT, LEFT, SYSTEM, DirectMessage, DisconnectReason, Message, User
from parkchat.service import ChatService
from parkchat.store.memory import MemoryStore
from tests.helpers import FakeParticipant, RecordingEncoder, make_service

T = TypeVar("T")

#: 2025-09-08T15:30:00Z.
START = 1_757_345_400.0
PASSWORD = "s3cret"


def run(coroutine: Coroutine[Any, Any, T]) -> Deferred[T]:
    return Deferred.fromCoroutine(coroutine)


class ModerationCase(TestCase):
    """A started service with three accounts: alice (1), bob (2), carol (3)."""

    limits: Limits | None = Limits(rate_limit=0)
    single_session = False

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = MemoryStore()
        self.service = self.make_service(self.store)
        self.encoder = RecordingEncoder()
        self.alice = self.successResultOf(self.service.register("alice", PASSWORD))
        self.bob = self.successResultOf(self.service.register("bob", PASSWORD))
        self.carol = self.successResultOf(self.service.register("carol", PASSWORD))

    def make_service(self, store: MemoryStore) -> ChatService:
        service, _, _ = make_service(
            store, self.clock, self.limits, single_session=self.single_session
        )
        self.addCleanup(service.stopService)
        return service

    def connect(
        self, user: User | None, nickname: str | None = None, **kwargs: Any
    ) -> FakeParticipant:
        """A registered connection for ``user`` (or a guest called ``nickname``)."""
        participant = FakeParticipant(
            nickname if nickname is not None else user.nickname if user else "guest",
            kwargs.pop("encoder", self.encoder),
            user_id=user.id if user is not None else None,
            **kwargs,
        )
        self.service.connect(participant)
        return participant

    def joined(self, user: User | None, *rooms: str, **kwargs: Any) -> FakeParticipant:
        participant = self.connect(user, **kwargs)
        for room in rooms or ("lobby",):
            self.service.join(participant, room)
        return participant

    def dm(self, sender: FakeParticipant, to: object, content: object) -> DirectMessage:
        return self.successResultOf(run(self.service.send_direct(sender, to, content)))

    def dm_fails(self, sender: FakeParticipant, to: object, content: object, error: type) -> Any:
        return self.failureResultOf(run(self.service.send_direct(sender, to, content)), error)

    def offline(self, participant: FakeParticipant) -> list[DirectMessage]:
        return self.successResultOf(run(self.service.offline_messages(participant)))

    def left_events(self, participant: FakeParticipant, room: str = "lobby") -> list[str]:
        """Nicknames ``participant`` was told had left ``room``."""
        return [
            m.nickname
            for m in participant.received
            if m.type == SYSTEM and m.event == LEFT and m.room == room
        ]


class DirectMessageTests(ModerationCase):
    """``send_direct`` and ``offline_messages`` (seed 004's chat / get_offline)."""

    def test_to_user_id(self) -> None:
        """A DM addressed by user id reaches the recipient's connection with
        both ends named, and is stored as delivered."""
        alice, bob = self.connect(self.alice), self.connect(self.bob)
        message = self.dm(alice, self.bob.id, "hi bob")
        self.assertEqual(
            (message.from_user_id, message.from_nickname, message.to_user_id, message.to_nickname),
            (self.alice.id, "alice", self.bob.id, "bob"),
        )
        self.assertEqual(message.content, "hi bob")
        self.assertEqual(message.timestamp_ms, int(START * 1000))
        self.assertEqual(bob.directs, [message])
        self.assertEqual(alice.directs, [])
        self.assertEqual(self.offline(bob), [])

    def test_to_nickname(self) -> None:
        """A DM addressed by nickname (any case) reaches the account of that name."""
        alice, bob = self.connect(self.alice), self.connect(self.bob)
        message = self.dm(alice, "BOB", "hi")
        self.assertEqual(message.to_user_id, self.bob.id)
        self.assertEqual(bob.directs, [message])

    def test_every_connection_of_recipient(self) -> None:
        """Every connection of the recipient that takes DMs gets it; others'
        connections do not."""
        alice = self.connect(self.alice)
        phone, laptop = self.connect(self.bob), self.connect(self.bob)
        carol = self.connect(self.carol)
        message = self.dm(alice, self.bob.id, "both")
        self.assertEqual(phone.directs, [message])
        self.assertEqual(laptop.directs, [message])
        self.assertEqual(carol.directs, [])

    def test_unknown_recipient(self) -> None:
        """An id or nickname without an account is UnknownRecipient, and
        nothing is stored."""
        alice = self.connect(self.alice)
        self.dm_fails(alice, 999, "hello?", UnknownRecipient)
        self.dm_fails(alice, "nobody", "hello?", UnknownRecipient)
        self.assertEqual(self.successResultOf(self.store.pending_direct(999, 10)), [])

    def test_bad_recipient_types(self) -> None:
        """A recipient that is neither an id nor a nickname is InvalidRequest."""
        alice = self.connect(self.alice)
        for bad in (None, True, "", 1.5, [2], {"id": 2}):
            self.dm_fails(alice, bad, "hi", InvalidRequest)

    def test_guest_cannot_send(self) -> None:
        """A connection without an account (user_id None) cannot send DMs or
        ask for offline messages."""
        guest = self.connect(None, "visitor")
        bob = self.connect(self.bob)
        self.dm_fails(guest, self.bob.id, "hi", InvalidRequest)
        self.assertEqual(bob.directs, [])
        self.failureResultOf(run(self.service.offline_messages(guest)), InvalidRequest)

    def test_rate_limited(self) -> None:
        """DMs spend the sender's message tokens, shared with room posts."""
        service, _, clock = make_service(limits=Limits(rate_limit=1, rate_burst=2))
        self.addCleanup(service.stopService)
        self.successResultOf(service.register("alice", PASSWORD))
        self.successResultOf(service.register("bob", PASSWORD))
        alice = FakeParticipant("alice", user_id=1)
        service.connect(alice)
        service.join(alice, "lobby")
        service.post(alice, "lobby", "room message")
        self.successResultOf(run(service.send_direct(alice, 2, "one")))
        self.failureResultOf(run(service.send_direct(alice, 2, "two")), RateLimited)
        clock.advance(1)
        self.successResultOf(run(service.send_direct(alice, 2, "two")))

    def test_offline_oldest_first_once(self) -> None:
        """DMs to a recipient with no connection wait; on ``offline_messages``
        they come oldest first, exactly once."""
        alice = self.connect(self.alice)
        first = self.dm(alice, self.bob.id, "first")
        self.clock.advance(1)
        second = self.dm(alice, "bob", "second")
        carols = self.dm(alice, self.carol.id, "for carol")
        bob = self.connect(self.bob)
        self.assertEqual(bob.directs, [])
        self.assertEqual(self.offline(bob), [first, second])
        self.assertEqual(self.offline(bob), [])
        self.assertEqual(self.offline(self.connect(self.carol)), [carols])

    def test_offline_when_no_connection_takes_dms(self) -> None:
        """A recipient connected only through surfaces that cannot show DMs
        (``direct`` returns False) gets them from ``offline_messages``."""
        alice = self.connect(self.alice)
        line_client = FakeParticipant("bob", self.encoder, user_id=self.bob.id)
        line_client.takes_direct = False
        self.service.connect(line_client)
        message = self.dm(alice, self.bob.id, "later")
        self.assertEqual(line_client.directs, [])
        self.assertEqual(self.offline(line_client), [message])

    def test_delivered_once_if_any_connection_takes_it(self) -> None:
        """One connection that takes DMs is enough for the DM to count as
        delivered: it is not handed out again as offline."""
        alice = self.connect(self.alice)
        line_client = self.connect(self.bob)
        line_client.takes_direct = False
        app = self.connect(self.bob)
        message = self.dm(alice, self.bob.id, "now")
        self.assertEqual(app.directs, [message])
        self.assertEqual(self.offline(app), [])

    def test_failing_connection_does_not_stop_delivery(self) -> None:
        """A connection whose ``direct`` raises does not stop delivery to the
        recipient's other connections, nor fail the sender."""
        alice = self.connect(self.alice)
        broken = self.connect(self.bob)

        def explode(message: Any) -> bool:
            raise ConnectionError("gone")

        broken.direct = explode  # type: ignore[method-assign]
        working = self.connect(self.bob)
        message = self.dm(alice, self.bob.id, "hi")
        self.assertEqual(working.directs, [message])
        self.flushLoggedErrors(ConnectionError)

    def test_not_delivered_to_namesake_without_the_account(self) -> None:
        """A connection that only shares the recipient's nickname (a guest or
        an external-token user called "bob", user_id None) is not the
        account: it never sees bob's DMs, which wait for bob instead."""
        alice = self.connect(self.alice)
        namesake = self.connect(None, "Bob")
        message = self.dm(alice, self.bob.id, "private")
        self.assertEqual(namesake.directs, [])
        self.assertEqual(self.offline(self.connect(self.bob)), [message])


class DirectMessageContentTests(ModerationCase):
    """What a direct message may contain."""

    limits = Limits(rate_limit=0, max_content_length=10)

    def test_content_validated(self) -> None:
        """Empty, blank, non-string, control-character and oversize content is refused."""
        alice, bob = self.connect(self.alice), self.connect(self.bob)
        for bad in ("", "   ", 42, None, "bell\x07"):
            self.dm_fails(alice, self.bob.id, bad, InvalidContent)
        self.dm_fails(alice, self.bob.id, "x" * 11, ContentTooLong)
        self.dm(alice, self.bob.id, "x" * 10)
        self.assertEqual(len(bob.directs), 1)


class OnlineUsersTests(ModerationCase):
    """``online_users``: accounts with at least one open connection."""

    def test_online_users(self) -> None:
        """Each connected account appears once, ordered by id; guests do not
        appear; an account drops out with its last connection."""
        self.assertEqual(self.service.online_users(), [])
        bob1, bob2 = self.connect(self.bob), self.connect(self.bob)
        alice = self.connect(self.alice)
        self.connect(None, "visitor")
        self.assertEqual(self.service.online_users(), [self.alice, self.bob])
        self.service.disconnect(bob1)
        self.assertEqual(self.service.online_users(), [self.alice, self.bob])
        self.service.disconnect(bob2)
        self.service.disconnect(alice)
        self.assertEqual(self.service.online_users(), [])
        self.assertTrue(self.service.is_online("VISITOR"))
        self.assertFalse(self.service.is_online("bob"))


class KickTests(ModerationCase):
    """``kick``: take an account's connections out of one room."""

    def test_kick(self) -> None:
        """Every connection of the account in the room is removed and told
        why; the others are told the user left; its other rooms are untouched."""
        alice = self.joined(self.alice, "lobby", "other")
        bob1 = self.joined(self.bob, "lobby", "other")
        bob2 = self.joined(self.bob, "lobby")
        self.assertEqual(self.service.kick("BOB", "lobby", "spam"), 2)
        self.assertEqual(bob1.removals, [("lobby", "spam")])
        self.assertEqual(bob2.removals, [("lobby", "spam")])
        self.assertEqual(self.service.members("lobby"), ["alice"])
        self.assertEqual(self.service.rooms_of(bob1), frozenset({"other"}))
        self.assertEqual(self.service.rooms_of(bob2), frozenset())
        self.assertEqual(sorted(self.service.members("other")), ["alice", "bob"])
        self.assertEqual(self.left_events(alice, "lobby"), ["bob", "bob"])
        self.assertEqual(self.left_events(alice, "other"), [])
        self.assertEqual(bob1.disconnected, [])
        self.assertEqual(self.service.connection_count, 3)

    def test_default_reason(self) -> None:
        """Without a reason the kicked connection hears it was a moderator."""
        self.joined(self.alice)
        bob = self.joined(self.bob)
        self.service.kick("bob", "lobby")
        self.assertEqual(bob.removals, [("lobby", "kicked by a moderator")])

    def test_kick_not_in_room(self) -> None:
        """Kicking someone not in the room (or offline) removes nobody."""
        bob = self.joined(self.bob, "other")
        self.assertEqual(self.service.kick("bob", "lobby"), 0)
        self.assertEqual(self.service.kick("carol", "other"), 0)
        self.assertEqual(bob.removals, [])
        self.assertEqual(self.service.rooms_of(bob), frozenset({"other"}))

    def test_kicked_user_may_rejoin(self) -> None:
        """A kick is not a ban: the connection can join again and post."""
        self.joined(self.alice)
        bob = self.joined(self.bob)
        self.service.kick("bob", "lobby")
        self.assertRaises(NotInRoom, self.service.post, bob, "lobby", "hi")
        self.service.join(bob, "lobby")
        self.assertIn("bob", self.service.members("lobby"))


class BanTests(ModerationCase):
    """``ban``/``unban``/``bans``: a persisted ban list by account."""

    def ban(self, nickname: str, reason: str = "", duration: float | None = None) -> Any:
        return self.successResultOf(run(self.service.ban(nickname, reason, duration)))

    def test_ban_disconnects_live_sessions(self) -> None:
        """Every live connection of the account is closed with "banned" and
        forgotten at once: out of its rooms, others told it left."""
        alice = self.joined(self.alice)
        bob1, bob2 = self.joined(self.bob), self.connect(self.bob)
        ban = self.ban("Bob", "spam")
        self.assertEqual((ban.user_id, ban.nickname, ban.reason), (self.bob.id, "bob", "spam"))
        self.assertIsNone(ban.expires_ms)
        self.assertEqual(bob1.disconnected, [DisconnectReason.BANNED])
        self.assertEqual(bob2.disconnected, [DisconnectReason.BANNED])
        self.assertEqual(self.service.connection_count, 1)
        self.assertIsNone(self.service.connection_id(bob1))
        self.assertEqual(self.service.members("lobby"), ["alice"])
        self.assertEqual(self.left_events(alice), ["bob"])
        self.assertEqual(alice.disconnected, [])
        self.assertFalse(self.service.is_online("bob"))

    def test_banned_cannot_connect(self) -> None:
        """A new connection of a banned account is refused with Banned; the
        message says why."""
        self.ban("bob", "flooding")
        with self.assertRaises(Banned) as raised:
            self.connect(self.bob)
        self.assertIn("flooding", raised.exception.message)
        self.assertEqual(self.service.connection_count, 0)

    def test_banned_cannot_authenticate_or_login(self) -> None:
        """The right password of a banned account gives Banned, not a user."""
        self.ban("bob")
        self.failureResultOf(self.service.authenticate("bob", PASSWORD), Banned)
        self.failureResultOf(run(self.service.login("bob", PASSWORD, "10.0.0.1")), Banned)
        self.successResultOf(self.service.authenticate("alice", PASSWORD))

    def test_ban_expires(self) -> None:
        """A ban with a duration ends by the clock: connections and logins
        work again and it leaves the list."""
        ban = self.ban("bob", duration=60)
        self.assertEqual(ban.expires_ms, int((START + 60) * 1000))
        self.clock.advance(59)
        self.assertRaises(Banned, self.connect, self.bob)
        self.assertEqual([b.user_id for b in self.service.bans()], [self.bob.id])
        self.clock.advance(2)
        self.connect(self.bob)
        self.successResultOf(run(self.service.login("bob", PASSWORD)))
        self.assertEqual(self.service.bans(), [])

    def test_unban(self) -> None:
        """Unbanning lifts the ban at once; a second unban reports nothing removed."""
        self.ban("bob")
        self.assertTrue(self.successResultOf(run(self.service.unban("BOB"))))
        self.connect(self.bob)
        self.assertEqual(self.service.bans(), [])
        self.assertEqual(self.successResultOf(self.store.list_bans()), [])
        self.assertFalse(self.successResultOf(run(self.service.unban("bob"))))

    def test_unknown_account(self) -> None:
        """Banning or unbanning a nickname without an account is UnknownRecipient."""
        self.failureResultOf(run(self.service.ban("nobody")), UnknownRecipient)
        self.failureResultOf(run(self.service.unban("nobody")), UnknownRecipient)

    def test_bans_lists_active_only(self) -> None:
        """``bans`` lists the active bans by user id; expired ones are left out."""
        self.ban("carol", "c")
        self.ban("alice", "a", duration=10)
        self.ban("bob", "b", duration=100)
        self.assertEqual([b.nickname for b in self.service.bans()], ["alice", "bob", "carol"])
        self.clock.advance(50)
        self.assertEqual([b.nickname for b in self.service.bans()], ["bob", "carol"])

    def test_reban_replaces(self) -> None:
        """Banning again replaces the earlier ban (reason and expiry)."""
        self.ban("bob", "first", duration=10)
        self.ban("bob", "second")
        [ban] = self.service.bans()
        self.assertEqual((ban.reason, ban.expires_ms), ("second", None))
        self.clock.advance(20)
        self.assertRaises(Banned, self.connect, self.bob)

    def test_bans_survive_restart(self) -> None:
        """A new service over the same store loads the bans when it starts."""
        self.ban("bob", "persisted")
        self.ban("carol", duration=10)
        self.successResultOf(self.service.stopService())
        restarted = self.make_service(self.store)
        self.assertEqual(
            [(b.nickname, b.reason) for b in restarted.bans()],
            [("bob", "persisted"), ("carol", "")],
        )
        self.assertRaises(Banned, restarted.connect, FakeParticipant("bob", user_id=self.bob.id))
        self.failureResultOf(restarted.authenticate("bob", PASSWORD), Banned)
        self.clock.advance(11)
        restarted.connect(FakeParticipant("carol", user_id=self.carol.id))

    def test_check_not_banned_by_account_id(self) -> None:
        """``check_not_banned`` refuses the banned account's id only."""
        self.ban("bob")
        self.assertRaises(Banned, self.service.check_not_banned, self.bob.id)
        self.service.check_not_banned(self.alice.id)


class SingleSessionTests(ModerationCase):
    """``single_session=True``: a new login replaces the account's older one."""

    single_session = True

    def test_new_connection_replaces_older(self) -> None:
        """The older connection is closed with DisconnectReason.REPLACED and forgotten;
        the new one is registered."""
        alice = self.joined(self.alice)
        old = self.joined(self.bob)
        new = self.connect(self.bob)
        self.assertEqual(old.disconnected, [DisconnectReason.REPLACED])
        self.assertEqual(new.disconnected, [])
        self.assertIsNone(self.service.connection_id(old))
        self.assertIsNotNone(self.service.connection_id(new))
        self.assertEqual(self.service.members("lobby"), ["alice"])
        self.assertEqual(self.left_events(alice), ["bob"])
        self.assertEqual(alice.disconnected, [])
        self.assertEqual(self.service.connection_count, 2)

    def test_not_for_guests(self) -> None:
        """Guests have no account: two guest connections both stay."""
        first = self.connect(None, "visitor")
        second = self.connect(None, "visitor", peer_host="10.0.0.2")
        self.assertEqual(first.disconnected, [])
        self.assertEqual(second.disconnected, [])
        self.assertEqual(self.service.connection_count, 2)

    def test_reconnect_same_participant(self) -> None:
        """Registering the same connection again returns its id and closes nothing."""
        bob = FakeParticipant("bob", user_id=self.bob.id)
        first = self.service.connect(bob)
        self.assertEqual(self.service.connect(bob), first)
        self.assertEqual(bob.disconnected, [])

    def test_replaces_instead_of_hitting_per_user_limit(self) -> None:
        """With one connection per user allowed, the new session replaces the
        old one rather than being refused."""
        self.limits = Limits(rate_limit=0, max_connections_per_user=1)
        self.service = self.make_service(self.store)
        old = self.connect(self.bob)
        new = self.connect(self.bob)
        self.assertEqual(old.disconnected, [DisconnectReason.REPLACED])
        self.assertIsNotNone(self.service.connection_id(new))


class MultipleSessionTests(ModerationCase):
    """Without the single-session policy (the default)."""

    def test_sessions_coexist(self) -> None:
        """An account's connections all stay open."""
        first, second = self.connect(self.bob), self.connect(self.bob)
        self.assertEqual(first.disconnected, [])
        self.assertEqual(second.disconnected, [])
        self.assertEqual(self.service.connection_count, 2)

    def test_per_user_limit_still_applies(self) -> None:
        """Past the per-user limit a new connection is refused, not swapped in."""
        self.limits = Limits(rate_limit=0, max_connections_per_user=1)
        self.service = self.make_service(self.store)
        first = self.connect(self.bob)
        self.assertRaises(TooManyConnections, self.connect, self.bob)
        self.assertEqual(first.disconnected, [])


class LoginThrottleTests(ModerationCase):
    """``login``: failed attempts per (account, address) and per address,
    with exponential back-off; never per account alone (issue 15, item 4)."""

    limits = Limits(
        rate_limit=0, login_failures=3, login_failures_per_address=5, login_backoff=10,
        login_backoff_max=60, login_window=60,
    )  # fmt: skip

    def login(self, nickname: str, password: str, host: str = "10.0.0.1") -> Deferred[User]:
        return run(self.service.login(nickname, password, host))

    def test_success(self) -> None:
        """The right password gives the account."""
        self.assertEqual(self.successResultOf(self.login("Alice", PASSWORD)), self.alice)

    def test_strangers_cannot_lock_an_account(self) -> None:
        """Any number of failures for an account from other addresses (any
        case of its name) leave the right password from a fresh address
        working: the lockout of issue 15, item 4, is gone."""
        for i in range(30):
            for name in ["alice", "ALICE", "Alice"]:
                self.failureResultOf(
                    self.login(name, "wrong", f"10.1.{i}.1"),
                    AuthenticationFailed,
                    TooManyAttempts,
                )
        self.assertEqual(
            self.successResultOf(self.login("alice", PASSWORD, "10.9.9.9")), self.alice
        )

    def test_backoff_per_account_and_address(self) -> None:
        """After the allowed failures one address gets 429 for that account,
        with the wait doubling each further failure; the refusal names the
        seconds and does not check the password."""
        for _ in range(3):
            self.failureResultOf(self.login("alice", "wrong"), AuthenticationFailed)
        failure = self.failureResultOf(self.login("alice", PASSWORD), TooManyAttempts)
        self.assertIn("try again in 10 seconds", failure.value.message)
        self.clock.advance(10)
        self.failureResultOf(self.login("alice", "wrong"), AuthenticationFailed)
        failure = self.failureResultOf(self.login("alice", PASSWORD), TooManyAttempts)
        self.assertIn("try again in 20 seconds", failure.value.message)
        # The same address may still log in to another account.
        self.assertEqual(self.successResultOf(self.login("bob", PASSWORD)), self.bob)
        self.clock.advance(20)
        self.assertEqual(self.successResultOf(self.login("alice", PASSWORD)), self.alice)

    def test_address_backs_off_across_accounts(self) -> None:
        """Failures from one address add up across accounts (known or not);
        other addresses are not affected."""
        for name in ("alice", "bob", "nobody", "carol", "dave"):
            self.failureResultOf(self.login(name, "wrong"), AuthenticationFailed)
        self.failureResultOf(self.login("carol", PASSWORD), TooManyAttempts)
        self.assertEqual(
            self.successResultOf(self.login("carol", PASSWORD, "10.0.0.2")), self.carol
        )

    def test_success_clears_the_account_and_address(self) -> None:
        """A successful login forgets that address's failures for the account
        (four failures in all here: the address's own allowance is five)."""
        for _ in range(2):
            for _ in range(2):
                self.failureResultOf(self.login("alice", "wrong"), AuthenticationFailed)
            self.successResultOf(self.login("alice", PASSWORD))

    def test_success_does_not_clear_address_counter(self) -> None:
        """A success does not wipe the address's failures: one good account
        does not license guessing others from the same address."""
        for name in ("bob", "carol", "bob", "carol"):
            self.failureResultOf(self.login(name, "wrong"), AuthenticationFailed)
        self.successResultOf(self.login("alice", PASSWORD))
        self.failureResultOf(self.login("dave", "wrong"), AuthenticationFailed)
        self.failureResultOf(self.login("bob", PASSWORD), TooManyAttempts)

    def test_refused_attempts_do_not_extend_backoff(self) -> None:
        """Attempts refused by the throttle are not counted as failures."""
        for _ in range(3):
            self.failureResultOf(self.login("alice", "wrong"), AuthenticationFailed)
        for _ in range(5):
            self.failureResultOf(self.login("alice", "wrong"), TooManyAttempts)
        self.clock.advance(10)
        self.successResultOf(self.login("alice", PASSWORD))

    def test_forgotten_after_the_window(self) -> None:
        """Failures are forgotten ``login_window`` seconds after the back-off."""
        for _ in range(3):
            self.failureResultOf(self.login("alice", "wrong"), AuthenticationFailed)
        self.clock.advance(10 + 61)
        for _ in range(2):
            self.failureResultOf(self.login("alice", "wrong"), AuthenticationFailed)
        self.successResultOf(self.login("alice", PASSWORD))

    def test_portal_goes_through_throttle(self) -> None:
        """Surfaces using the twisted.cred portal (HTTP Basic) are throttled
        the same way, and the refusal is TooManyAttempts, not a 401; another
        address is not refused."""
        for _ in range(3):
            credentials = PeerUsernamePassword(b"alice", b"wrong", "10.0.0.7")
            self.failureResultOf(
                self.service.portal.login(credentials, None, IChatUser), UnauthorizedLogin
            )
        credentials = PeerUsernamePassword(b"alice", PASSWORD.encode(), "10.0.0.7")
        self.failureResultOf(
            self.service.portal.login(credentials, None, IChatUser), TooManyAttempts
        )
        credentials = PeerUsernamePassword(b"alice", PASSWORD.encode(), "10.0.0.8")
        self.successResultOf(self.service.portal.login(credentials, None, IChatUser))


@implementer(IEncoder)
class PlainEncoder(RecordingEncoder):
    """A surface that shows chat and system events but not typing notices."""

    def encode(self, message: Message) -> Message | None:  # type: ignore[override]
        self.calls += 1
        return None if message.type not in (CHAT, SYSTEM) else message


class NotifyTests(ModerationCase):
    """``notify``: ephemeral room events such as typing."""

    def test_typing_reaches_encoders_that_show_it(self) -> None:
        """Members whose encoder shows typing get the event (with the
        sender's connection id as origin); members whose encoder returns
        None get nothing; nothing is stored."""
        plain = PlainEncoder()
        alice = self.joined(self.alice)
        carol = self.joined(self.carol)
        bob = self.joined(self.bob, encoder=plain)
        for member in (alice, bob, carol):
            member.received.clear()
        plain.calls = 0
        self.service.notify(alice, "lobby", "typing")
        [event] = carol.received
        self.assertEqual((event.type, event.room, event.nickname), ("typing", "lobby", "alice"))
        self.assertEqual(event.content, "")
        self.assertEqual(event.origin, self.service.connection_id(alice))
        self.assertEqual(alice.received, [event])
        self.assertEqual(bob.received, [])
        self.assertEqual(plain.calls, 1)
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(self.store.recent_messages("lobby", 10)), [])

    def test_not_in_room(self) -> None:
        """Notifying a room the connection has not joined is NotInRoom."""
        alice = self.joined(self.alice, "other")
        self.assertRaises(NotInRoom, self.service.notify, alice, "lobby", "typing")
        self.assertRaises(NotInRoom, self.service.notify, alice, "nowhere", "typing")


class ConnectionIdTests(ModerationCase):
    """Connection ids and ``Message.origin``."""

    def test_ids_distinct_and_stable(self) -> None:
        """Each connection gets its own id; asking again gives the same one."""
        first = FakeParticipant("alice", user_id=self.alice.id)
        second = FakeParticipant("alice", user_id=self.alice.id)
        a, b = self.service.connect(first), self.service.connect(second)
        self.assertNotEqual(a, b)
        self.assertEqual(self.service.connect(first), a)
        self.assertEqual(self.service.connection_id(first), a)
        self.service.disconnect(first)
        self.assertIsNone(self.service.connection_id(first))

    def test_message_origin(self) -> None:
        """A posted message carries the poster's connection id, as stored
        result and as delivered to members."""
        alice = self.joined(self.alice)
        bob = self.joined(self.bob)
        d = self.service.post(alice, "lobby", "hello")
        self.clock.advance(0)
        message = self.successResultOf(d)
        self.assertEqual(message.origin, self.service.connection_id(alice))
        [delivered] = [m for m in bob.received if m.type == CHAT]
        self.assertEqual(delivered.origin, self.service.connection_id(alice))
        self.assertNotEqual(delivered.origin, self.service.connection_id(bob))


class AdmitTokenTests(ModerationCase):
    """``admit_token``: what a token-authenticated connection must pass."""

    def test_own_token_of_banned_account_refused(self) -> None:
        """A parkchat token does not get a banned account back in."""
        self.successResultOf(Deferred.fromCoroutine(self.service.ban("bob", "spam")))
        d = Deferred.fromCoroutine(self.service.admit_token("bob", self.bob.id))
        self.failureResultOf(d, Banned)

    def test_external_name_of_registered_account_refused(self) -> None:
        """An external token naming a registered account (any case) cannot
        speak as that account or slip past its ban."""
        d = Deferred.fromCoroutine(self.service.admit_token("Alice", None))
        failure = self.failureResultOf(d, AuthenticationFailed)
        self.assertIn("registered account", failure.value.message)

    def test_external_free_name_admitted(self) -> None:
        """An external token with a name nobody registered is admitted."""
        d = Deferred.fromCoroutine(self.service.admit_token("zoe", None))
        self.assertIsNone(self.successResultOf(d))

"""Tests for parkchat.handlers.connections.ConnectionHandler."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from parkchat.errors import TooManyConnections
from parkchat.handlers.connections import ConnectionHandler
from parkchat.limits import Limits
from parkchat.model import User
from parkchat.proxies import TrustedProxies
from tests.helpers import FakeParticipant, RecordingBus, RecordingEncoder


class ConnectionHandlerTests(TestCase):
    limits = Limits(max_connections_per_user=2, max_connections_per_ip=3)

    def setUp(self) -> None:
        self.bus = RecordingBus()
        self.connections = ConnectionHandler(self.bus, self.limits, instance_id="i1")

    def register(self, nickname: str, **kwargs: object) -> FakeParticipant:
        participant = FakeParticipant(nickname, **kwargs)  # type: ignore[arg-type]
        self.connections.register(participant)
        return participant

    def test_ids(self) -> None:
        """Ids carry the instance and are never reused; registering again
        returns the same id and takes no second slot."""
        alice, bob = FakeParticipant("alice"), FakeParticipant("bob")
        self.assertEqual(self.connections.register(alice), "i1.c1")
        self.assertEqual(self.connections.register(bob), "i1.c2")
        self.assertEqual(self.connections.register(alice), "i1.c1")
        self.assertEqual(dict(self.connections.ids), {alice: "i1.c1", bob: "i1.c2"})
        self.connections.unregister(alice)
        self.assertEqual(self.connections.register(FakeParticipant("carol")), "i1.c3")
        self.assertIsNone(self.connections.connection_id(alice))
        self.assertEqual(self.connections.count, 2)

    def test_without_instance(self) -> None:
        connections = ConnectionHandler(self.bus, self.limits)
        self.assertEqual(connections.register(FakeParticipant("a")), "c1")

    def test_presence_changes(self) -> None:
        """Registering and unregistering are presence changes; unregistering
        a stranger is not."""
        alice = self.register("alice")
        self.assertTrue(self.connections.unregister(alice))
        self.assertFalse(self.connections.unregister(alice))
        self.assertEqual(self.bus.presence_changes, 2)

    def test_per_account_limit(self) -> None:
        """An account's connections count under its folded name."""
        self.register("alice", peer_host="10.0.0.1")
        self.register("ALICE", peer_host="10.0.0.2")
        self.assertRaises(TooManyConnections, self.register, "Alice", peer_host="10.0.0.3")
        self.assertRaises(TooManyConnections, self.connections.check, "alice", "10.0.0.9")
        self.assertEqual(self.connections.count, 2)

    def test_per_address_limit(self) -> None:
        for name in "abc":
            self.register(name, peer_host="10.0.0.1")
        self.assertRaises(TooManyConnections, self.register, "d", peer_host="10.0.0.1")
        self.assertEqual(self.connections.connections_from("10.0.0.1"), 3)
        self.register("d", peer_host="10.0.0.2")

    def test_trusted_proxy_is_not_counted(self) -> None:
        limits = Limits(max_connections_per_ip=1, trusted_proxies=TrustedProxies(["10.9.9.9"]))
        connections = ConnectionHandler(self.bus, limits)
        for name in "ab":
            connections.register(FakeParticipant(name, peer_host="10.9.9.9"))
        self.assertEqual(connections.connections_from("10.9.9.9"), 0)

    def test_unregister_frees_slots(self) -> None:
        first = self.register("alice", peer_host="10.0.0.1")
        self.register("alice", peer_host="10.0.0.1")
        self.connections.unregister(first)
        self.connections.unregister(first)  # once only
        self.register("alice", peer_host="10.0.0.1")
        self.assertRaises(TooManyConnections, self.register, "alice")

    def test_account_limit_spans_instances(self) -> None:
        """Connections announced by other instances count too; with single
        sessions they do not (a new login replaces the others)."""
        self.bus.remote["connections"] = {"alice": 1}
        self.register("alice")
        self.assertRaises(TooManyConnections, self.register, "alice")
        single = ConnectionHandler(self.bus, self.limits, single_session=True)
        single.register(FakeParticipant("alice"))
        single.register(FakeParticipant("alice"))

    def test_excess_after_a_burst_over_instances(self) -> None:
        """Issue 15, item 12: a burst of simultaneous connections on several
        instances passed the check on each. Once every instance knows the
        others' counts, the limit is shared out by instance id, so exactly
        the connections past it close -- the newest, on the instances late
        in the order -- and N x limit never stays."""
        limits = Limits(max_connections_per_user=3)
        handlers = {}
        for instance in ("i1", "i2", "i3"):
            bus = RecordingBus()
            handler = ConnectionHandler(bus, limits, instance_id=instance)
            handlers[instance] = (handler, bus, [])
            for _ in range(3):  # each let 3 in before it heard of the others
                participant = FakeParticipant("alice", user_id=1)
                handler.register(participant)
                handlers[instance][2].append(participant)
        for instance, (_, bus, _) in handlers.items():
            bus.remote["connections_by_instance"] = {
                "alice": {other: 3 for other in handlers if other != instance}
            }
        closing = {instance: handler.excess() for instance, (handler, _, _) in handlers.items()}
        self.assertEqual(closing["i1"], [])
        self.assertEqual(closing["i2"], handlers["i2"][2][::-1][:3][::-1])
        self.assertEqual(closing["i3"], handlers["i3"][2])
        self.assertEqual(sum(3 - len(found) for found in closing.values()), 3)

    def test_excess_partial(self) -> None:
        """Only what passes the limit closes, newest first."""
        limits = Limits(max_connections_per_user=4)
        handler = ConnectionHandler(self.bus, limits, instance_id="i2")
        mine = [FakeParticipant("alice", user_id=1) for _ in range(3)]
        for participant in mine:
            handler.register(participant)
        self.bus.remote["connections_by_instance"] = {"alice": {"i1": 2}}
        self.assertEqual(handler.excess(), mine[-1:])
        self.bus.remote["connections_by_instance"] = {"alice": {"i3": 2}}
        self.assertEqual(handler.excess(), [])  # i3 comes after i2

    def test_no_excess_without_limit_or_with_single_session(self) -> None:
        self.bus.remote["connections_by_instance"] = {"alice": {"i0": 50}}
        for handler in (
            ConnectionHandler(self.bus, Limits(max_connections_per_user=0), instance_id="i1"),
            ConnectionHandler(self.bus, self.limits, instance_id="i1", single_session=True),
        ):
            handler.register(FakeParticipant("alice", user_id=1))
            self.assertEqual(handler.excess(), [])

    def test_of_account(self) -> None:
        """An account's connections by folded name, in order of arrival, as a
        copy that may be changed while walking it."""
        first = self.register("alice")
        guest = self.register("ALICE")
        self.register("bob")
        found = self.connections.of_account("alice")
        self.assertEqual(found, [first, guest])
        for participant in found:
            self.connections.unregister(participant)
        self.assertEqual(self.connections.of_account("alice"), [])
        self.assertEqual([p.nickname for p in self.connections.participants()], ["bob"])

    def test_by_surface(self) -> None:
        ws = RecordingEncoder()
        ws.surface = "room_ws"  # type: ignore[attr-defined]
        self.connections.register(FakeParticipant("a", ws))
        self.connections.register(FakeParticipant("b", ws, peer_host="10.0.0.2"))
        self.register("c")
        self.assertEqual(self.connections.by_surface(), {"room_ws": 2, "other": 1})

    def test_online(self) -> None:
        """Accounts online here or elsewhere, by id; guests are not accounts."""
        self.register("bob", user_id=2)
        self.register("Bob", user_id=2, peer_host="10.0.0.2")
        self.register("guest")
        self.bus.remote["users"] = {"zed": [9, "zed"], "bob": [2, "bob"]}
        self.assertEqual(self.connections.online_users(), [User(2, "bob"), User(9, "zed")])
        self.assertTrue(self.connections.is_online("ZED"))
        self.assertTrue(self.connections.is_online("guest"))
        self.assertFalse(self.connections.is_online("nobody"))

    def test_account_presence(self) -> None:
        self.register("bob", user_id=2)
        self.register("bob", user_id=2, peer_host="10.0.0.2")
        self.register("guest")
        self.assertEqual(self.connections.account_presence(), ({"bob": [2, "bob"]}, {"bob": 2}))

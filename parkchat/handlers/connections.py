"""Connections of this instance: ids, the per-account index and the limits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from parkchat.errors import TooManyConnections
from parkchat.interfaces import IBus, IParticipant
from parkchat.limits import ConnectionCounter, Limits
from parkchat.model import User, nickname_key


class ConnectionHandler:
    """Registers connections, gives them ids unique across instances, counts
    them per account and per address against the limits (guests, which have
    no account, also per address on their own: ``max_guests_per_ip``), and
    finds an account's connections (for direct messages, bans, logouts).

    Registering only records; what a connection may do (bans, single
    session) and what leaving means (its rooms) belong to the handlers
    above this one.
    """

    def __init__(
        self,
        bus: IBus,
        limits: Limits,
        *,
        instance_id: str = "",
        single_session: bool = False,
    ) -> None:
        self._bus = bus
        self._limits = limits
        self._single_session = single_session
        self._instance_id = instance_id
        self._prefix = f"{instance_id}." if instance_id else ""
        self._next_id = 0
        self._ids: dict[IParticipant, str] = {}
        self._by_user: dict[str, dict[IParticipant, None]] = {}
        # Guest connections and the address each was counted under.
        self._guests: dict[IParticipant, str | None] = {}
        self._per_user = ConnectionCounter(limits.max_connections_per_user, "account")
        self._per_ip = ConnectionCounter(limits.max_connections_per_ip, "address")
        self._guests_per_ip = ConnectionCounter(
            limits.max_guests_per_ip,
            "address",
            refusal="too many guest connections from this address: log in to an account",
        )

    @property
    def ids(self) -> Mapping[IParticipant, str]:
        """Registered connections and their ids, read-only: the posting path
        looks the sender's id up here without a call per message."""
        return self._ids

    def check(self, nickname: str, peer_host: str) -> None:
        """Raise TooManyConnections if a new connection would pass a limit."""
        self._check_account(nickname_key(nickname))
        self._per_ip.check(self._limits.address_key(peer_host))

    def register(self, participant: IParticipant) -> str:
        """Record a connection and return its id (the same one if it is
        registered already); TooManyConnections past a limit."""
        existing = self._ids.get(participant)
        if existing is not None:
            return existing
        key = nickname_key(participant.nickname)
        address = self._limits.address_key(participant.peer_host)
        guest = participant.user_id is None
        self._check_account(key)
        self._per_ip.check(address)
        if guest:
            self._guests_per_ip.check(address)
            self._guests_per_ip.acquire(address)
            self._guests[participant] = address
        self._per_user.acquire(key)
        self._per_ip.acquire(address)
        self._next_id += 1
        connection_id = self._ids[participant] = f"{self._prefix}c{self._next_id}"
        self._by_user.setdefault(key, {})[participant] = None
        self._bus.presence_changed()
        return connection_id

    def _check_account(self, key: str) -> None:
        """The per-account connection limit over every instance: this one's
        connections plus those the others last announced (presence, shared
        within ~50 ms of a change, so a burst spread over instances may pass
        it by a few). With single sessions the limit is moot: a new login
        closes the older ones, wherever they are."""
        self._per_user.check(key)
        limit = self._limits.max_connections_per_user
        if not limit or self._single_session:
            return
        elsewhere = self._bus.remote_presence().get("connections", {}).get(key, 0)
        if elsewhere and self._per_user.count(key) + elsewhere >= limit:
            raise TooManyConnections(
                f"too many connections for this account (limit {limit}, on all servers)"
            )

    def excess(self) -> list[IParticipant]:
        """This instance's connections beyond the per-account limit over
        all instances, newest first, to be closed.

        The check at connect time compares with the others' last announced
        counts, so a burst of connections spread over instances at the same
        moment can pass it on each of them. Once their presence arrives,
        every instance sees the same counts and gives the limit out in the
        same order -- instances by id, each keeping at most what is left
        after those before it -- so the excess closes on exactly the
        instances past the limit, and the deployment keeps ``limit``
        connections, not ``instances x limit``."""
        limit = self._limits.max_connections_per_user
        if not limit or self._single_session:
            return []
        remote: dict[str, dict[str, int]] = self._bus.remote_presence().get(
            "connections_by_instance", {}
        )
        found: list[IParticipant] = []
        for key, mine in self._by_user.items():
            others = remote.get(key)
            if not others:
                continue  # this instance alone: register() keeps the limit
            # Counted as presence_snapshot announces them (every connection
            # under the name); only the account's own are closed.
            accounts = [p for p in mine if p.user_id is not None]
            counts = {**others, self._instance_id: len(mine)}
            left = limit
            for instance in sorted(counts):
                keep = min(counts[instance], left)
                if instance == self._instance_id:
                    over = min(counts[instance] - keep, len(accounts))
                    if over > 0:
                        found.extend(accounts[-over:])
                    break
                left -= keep
        return found

    def unregister(self, participant: IParticipant) -> bool:
        """Forget a connection and free its slots; False if it was not registered."""
        if self._ids.pop(participant, None) is None:
            return False
        key = nickname_key(participant.nickname)
        mine = self._by_user.get(key)
        if mine is not None:
            mine.pop(participant, None)
            if not mine:
                del self._by_user[key]
        self._per_user.release(key)
        self._per_ip.release(self._limits.address_key(participant.peer_host))
        if participant in self._guests:
            self._guests_per_ip.release(self._guests.pop(participant))
        self._bus.presence_changed()
        return True

    def connection_id(self, participant: IParticipant) -> str | None:
        return self._ids.get(participant)

    def of_account(self, key: str) -> list[IParticipant]:
        """This instance's connections under the folded nickname ``key``
        (guests and external-token users sharing a name included: callers
        compare ``user_id``), in order of arrival; a copy, safe to close
        them while walking it."""
        return list(self._by_user.get(key, ()))

    def participants(self) -> list[IParticipant]:
        """Every registered connection (a copy)."""
        return list(self._ids)

    def connections_from(self, peer_host: str) -> int:
        """Registered connections from one address."""
        return self._per_ip.count(self._limits.address_key(peer_host))

    @property
    def count(self) -> int:
        return len(self._ids)

    def by_surface(self) -> dict[str, int]:
        """Registered connections per surface (``room_ws``, ``app_ws``,
        ``mychat``, ``tcp``), from their encoders; for metrics, at scrape time."""
        return dict(Counter(getattr(p.encoder, "surface", "other") for p in self._ids))

    def online_users(self) -> list[User]:
        """Accounts with at least one open connection on any instance, by id."""
        seen: dict[int, User] = {
            int(user_id): User(int(user_id), nickname)
            for user_id, nickname in self._bus.remote_presence()["users"].values()
        }
        for participants in self._by_user.values():
            for p in participants:
                if p.user_id is not None:
                    seen[p.user_id] = User(p.user_id, p.nickname)
                    break
        return [seen[k] for k in sorted(seen)]

    def is_online(self, nickname: str) -> bool:
        """Whether ``nickname`` has a connection on any instance."""
        key = nickname_key(nickname)
        return key in self._by_user or key in self._bus.remote_presence()["users"]

    def account_presence(self) -> tuple[dict[str, list[Any]], dict[str, int]]:
        """This instance's accounts, as the presence snapshot shares them:
        ``{user_key: [user_id, nickname]}`` and ``{user_key: connections}``."""
        users: dict[str, list[Any]] = {}
        connections: dict[str, int] = {}
        for key, participants in self._by_user.items():
            for p in participants:
                if p.user_id is not None:
                    users[key] = [p.user_id, p.nickname]
                    # Lets the others apply the per-account connection limit
                    # to the whole deployment (a key of its own: instances of
                    # an older version read "users" as [id, nickname] pairs).
                    connections[key] = len(participants)
                    break
        return users, connections

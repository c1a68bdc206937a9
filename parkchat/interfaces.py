"""The seams of parkchat: what rooms know of connections, what the service
knows of storage and of cross-process fan-out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from parkchat.model import (
    Ban,
    DirectMessage,
    DirectState,
    Message,
    MessageEdit,
    RoomState,
    RoomTopic,
    SearchHit,
    StoredUser,
    User,
)


class IEncoder(Interface):
    """Renders an event into the payload one kind of connection sends.

    Every connection of the same kind shares one encoder, so a room encodes a
    message once per encoder, not once per member (see ``Room.broadcast``).
    """

    def encode(message: Any) -> Any:
        """Return the payload for ``message`` (a :class:`parkchat.model.Message`)."""


class IParticipant(Interface):
    """One connection taking part in rooms: all a room knows of a client."""

    nickname = Attribute("The name shown to others (str).")
    user_id = Attribute("The account id, or None for a guest.")
    peer_host = Attribute("The remote address, for per-address limits (str).")
    encoder = Attribute("The IEncoder shared by this connection's kind.")

    def send(payload: Any) -> None:
        """Write a payload produced by ``encoder``; must not block or raise."""

    def disconnect(reason: Any) -> None:
        """Close the connection, telling the client why: ``reason`` is a
        ``parkchat.model.DisconnectReason`` that each surface maps to its own
        close code or goodbye line."""

    def removed(room: str, reason: str) -> None:
        """The service took this connection out of ``room`` (a kick); a
        connection that lives in one room only closes."""

    def direct(message: Any) -> bool:
        """Hand over a ``DirectMessage`` addressed to this account; return
        False if this kind of connection cannot show direct messages."""


class IAccountStateReceiver(Interface):
    """A connection that shows its account's state (rooms, conversations,
    read markers): /ws. Others (TCP, IRC, the seed dialects) do not provide it."""

    def account_state(state: Any) -> None:
        """A change of the account's state in one room (``RoomState``) or
        conversation (``DirectState``), from any of its connections on any
        instance; must not block or raise."""


class IChatService(Interface):
    """The domain verbs every surface (protocol adapters, REST resources, the
    admin API) uses, and nothing else: adapters depend on this interface,
    never on the handlers behind it or on their state.

    Verbs take plain values (a participant is an ``IParticipant``), raise
    ``parkchat.errors`` exceptions at once for bad input, and return
    Deferreds only where storage or bcrypt is involved.
    """

    # -- connections ---------------------------------------------------------

    def check_connection(nickname: str, peer_host: str) -> None:
        """Raise TooManyConnections if a new connection of ``nickname`` from
        ``peer_host`` would pass a limit (before a surface upgrades)."""

    def connect(participant: IParticipant) -> str:
        """Register a connection (bans, limits, single session) and return
        its id, unique across instances."""

    def disconnect(participant: IParticipant, reason: str = "Connection closed") -> None:
        """Forget a closed connection; it leaves all its rooms, and the
        others are told it quit with ``reason`` (``model.QUIT_REASONS``)."""

    def connection_id(participant: IParticipant) -> str | None:
        """The id ``connect`` gave, or None if not registered."""

    def connections_from(peer_host: str) -> int:
        """Registered connections from one address."""

    # -- rooms and presence ----------------------------------------------------

    def join(participant: IParticipant, room: str, since: int | None = None) -> Deferred[Any]:
        """Put the participant in ``room`` and tell every member; fires with
        a ``parkchat.model.JoinResult``: the room's seq at the join and,
        with ``since`` (the last seq the client saw), the messages it
        missed, to be written before anything else (nothing live overlaps
        them or is missing between them and the live events). Without
        ``since`` the participant is in the room when this returns."""

    def leave(participant: IParticipant, room: str, reason: str = "") -> None:
        """Take the participant out of ``room`` and tell the others (with
        the member's ``reason``, if its surface has one: IRC's PART)."""

    def rooms_of(participant: IParticipant) -> frozenset[str]:
        """The rooms the participant is in."""

    def members(room: str) -> list[str]:
        """Nicknames in ``room`` on every instance."""

    def member_count(room: str) -> int:
        """Distinct people in ``room`` on every instance."""

    def name_in_room(room: str, nickname: str) -> bool:
        """Whether someone of that name (folded) is in ``room`` here."""

    def room_sizes() -> dict[str, int]:
        """Connections per room on this instance."""

    def active_rooms(participant: IParticipant, limit: int = 100) -> list[tuple[str, int]]:
        """The room directory: rooms with people on any instance, busiest first."""

    def online_users() -> list[Any]:
        """Accounts (``User``) with an open connection on any instance."""

    def is_online(nickname: str) -> bool:
        """Whether ``nickname`` has a connection on any instance."""

    # -- room messages -------------------------------------------------------

    def post(participant: IParticipant, room: str, content: object) -> Deferred[Any]:
        """Store a chat message, then deliver it; fires with the stored
        ``Message``."""

    def post_quietly(participant: IParticipant, room: str, content: object, failed: Any) -> None:
        """``post`` without a result: ``failed(failure)`` hears of a failure."""

    def notify(participant: IParticipant, room: str, kind: str) -> None:
        """Publish an ephemeral room event (typing) from a member."""

    def history(
        room: str,
        limit: int | None = None,
        before: int | None = None,
        after: int | None = None,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
    ) -> Deferred[list[Any]]:
        """Stored messages of ``room``, oldest first, paged by id or by seq."""

    def history_version(room: str) -> int | None:
        """A number that changes with a room's cached newest messages."""

    def delete_message(message_id: object) -> Any:
        """Remove a stored message (moderation); its room or None."""

    def edit_message(participant: IParticipant, room: object, seq: object, body: object) -> Any:
        """Give the participant's own message of ``room`` at ``seq`` a new
        text (anyone's, for a moderator): a coroutine firing with the
        message as stored; every member is sent an ``edited`` event."""

    def delete_own_message(participant: IParticipant, room: object, seq: object) -> Any:
        """Delete the participant's own message of ``room`` at ``seq``
        (anyone's, for a moderator): a coroutine firing with the message."""

    def message_edits(message_id: object, participant: IParticipant | None = None) -> Any:
        """The recorded edits (``MessageEdit``) of a message, oldest first (a
        Deferred): for the admin API, or a moderator's ``participant``
        (Forbidden for others)."""

    def search(
        user_id: int | None,
        nickname: str,
        query: object,
        *,
        room: object = None,
        with_nickname: object = None,
        before: object = None,
        limit: object = None,
    ) -> Any:
        """A page of the messages an account may read that match ``query``
        (a coroutine firing with a ``SearchPage``)."""

    # -- room topics -----------------------------------------------------------

    def set_topic(participant: IParticipant, room: object, text: object) -> Any:
        """Set or clear (empty text) a room's topic (a coroutine firing with
        the ``RoomTopic`` or None); every member is sent a ``topic`` event."""

    def room_topic(room: object) -> Any:
        """A room's ``RoomTopic`` or None (a coroutine)."""

    # -- direct messages -----------------------------------------------------

    def send_direct(participant: IParticipant, to: object, content: object) -> Any:
        """Store and hand over a direct message (a coroutine)."""

    def direct_history(
        participant: IParticipant,
        other: object,
        limit: int | None = None,
        before: object = None,
        *,
        after_seq: object = None,
        before_seq: object = None,
    ) -> Any:
        """The other account and the messages between the two, paged by id
        or by the conversation's seq (a coroutine)."""

    def offline_messages(participant: IParticipant, limit: int = 500) -> Any:
        """Direct messages that waited for the account (a coroutine)."""

    # -- moderation ----------------------------------------------------------

    def check_not_banned(user_id: int) -> None:
        """Raise Banned if the account is banned."""

    def admit_token(nickname: str, user_id: int | None) -> Any:
        """Checks for a token login (a coroutine)."""

    def ban(nickname: str, reason: str = "", duration: float | None = None) -> Any:
        """Ban an account everywhere (a coroutine firing with the ``Ban``)."""

    def unban(nickname: str) -> Any:
        """Lift a ban (a coroutine firing with whether there was one)."""

    def bans() -> list[Any]:
        """The active bans."""

    def kick(nickname: str, room: str, reason: str = "") -> int:
        """Take a name out of a room on every instance; return how many of
        its connections were removed on this one (the others, told over the
        bus, remove theirs without answering)."""

    def multi_instance() -> bool:
        """Whether other instances share this one's rooms (the Redis bus)."""

    # -- accounts and sessions ---------------------------------------------------

    def register(nickname: object, password: object, peer_host: str | None = None) -> Deferred[Any]:
        """Create an account; fires with its ``User``. ``peer_host``: the
        client's address (registrations are throttled per address and in
        all); None for an administrator's (not throttled)."""

    def account_exists(nickname: str) -> Deferred[bool]:
        """Whether ``nickname`` belongs to an account."""

    def authenticate(nickname: str, password: str) -> Deferred[Any]:
        """Check a password (no throttle); fires with the ``User``."""

    def login(nickname: str, password: str, peer_host: str = "") -> Any:
        """``authenticate`` behind the failed-login throttle (a coroutine)."""

    def change_password(nickname: str, password: object) -> Deferred[None]:
        """Set a new password; earlier tokens stop working (and, with
        ``--revoke-on-password-change``, open connections close)."""

    def list_accounts(limit: int, after_id: int = 0) -> Deferred[list[Any]]:
        """Accounts (``User``) by id, for the admin API."""

    def logout(claims: Any, everywhere: bool = False) -> Any:
        """Revoke a token, or all of an account's, refresh tokens included
        (a coroutine)."""

    def issue_refresh_token(user: Any) -> Any:
        """A refresh token for a long-lived login of ``user`` and its
        lifetime in seconds (a coroutine)."""

    def refresh_login(refresh_token: object) -> Any:
        """Spend a refresh token: ``(User, next refresh token, its
        lifetime)``; a token spent before revokes its login (a coroutine)."""

    def revoke_refresh_token(refresh_token: object) -> Any:
        """Revoke the login a refresh token belongs to (a coroutine firing
        with whether it was known)."""

    # -- account state (/ws) -----------------------------------------------------

    def account_state(participant: IParticipant) -> Any:
        """The account's rooms (``RoomState``) and conversations
        (``DirectState``) with exact counts (a coroutine); Forbidden for a guest."""

    def record_join(participant: IParticipant, room: str) -> Any:
        """Record a room the account joined, for all its devices (a coroutine)."""

    def record_leave(participant: IParticipant, room: str) -> Any:
        """Forget a room the account left (a coroutine)."""

    def mark_read(participant: IParticipant, room: object, other: object, seq: object) -> Any:
        """Move the read marker of ``room`` or of the conversation with
        ``other`` forward to ``seq`` (a coroutine)."""

    def mute(participant: IParticipant, room: object, muted: object) -> Any:
        """Mute or unmute one of the account's rooms (a coroutine)."""

    def open_direct(participant: IParticipant, other: object) -> Any:
        """Put a conversation in the account's list (a coroutine)."""

    def close_direct(participant: IParticipant, other: object) -> Any:
        """Take a conversation out of the list until its next message (a coroutine)."""

    # -- health --------------------------------------------------------------

    def readiness(timeout: float = 5.0) -> Any:
        """Whether this instance can serve (a coroutine with a report dict)."""


# -- storage ------------------------------------------------------------------
#
# One interface per area, as Synapse splits its DataStore into per-area
# stores: a handler depends on the area it uses (the direct-message handler
# on IDirectMessageStore, not on every table). IMessageStore is all of them
# together: what a store provides and what ``tap`` builds.


class IRoomMessageStore(Interface):
    """The stored chat messages of rooms. Every method returns a Deferred.

    Each stored message has a global ``id`` (the seed API pages by it) and a
    ``seq``, its position in its room: a room's messages are numbered 1, 2,
    3, ... in the order they are stored, with no gaps at the time of storing
    (a deleted message leaves a hole: read ranges, never expect contiguity).
    A room's seqs become visible in order: once a reader sees seq N, every
    seq below N that will ever exist is visible too, whichever instance
    stored it. Rooms are stored independently of each other (no lock common
    to all rooms). Within a room, id order is seq order. Every message read
    carries both.
    """

    def insert_messages(messages: Sequence[Message]) -> Deferred[list[tuple[int, int]]]:
        """Store a batch of chat messages in one transaction; fire with
        ``(id, seq)`` of each, in batch order, only after the transaction has
        committed. The batch's messages of one room take that room's next
        seqs in batch order.

        A message with ``mentions`` has them stored (one row per name, see
        parkchat.mentions) in the same transaction, candidates resolved
        against the accounts; the store leaves the resolved names in the
        message's ``mentions`` before firing (the writer's messages are not
        yet published, so nobody else sees them change). Reads give each
        message its stored mentions."""

    def recent_messages(
        room: str, limit: int, before: int | None = None, after: int | None = None
    ) -> Deferred[list[Message]]:
        """Up to ``limit`` messages of ``room``, oldest first, paged by id.

        With ``after``, the first ``limit`` messages with a greater id; otherwise
        the last ``limit`` messages (with an id below ``before``, if given).
        """

    def room_messages_after(room: str, after_seq: int, limit: int) -> Deferred[list[Message]]:
        """The first ``limit`` messages of ``room`` with a seq above
        ``after_seq``, by seq (a gap fill or a resume reads its range in such
        pages); none for ``limit`` <= 0."""

    def room_messages_before(
        room: str, before_seq: int | None, limit: int
    ) -> Deferred[list[Message]]:
        """The last ``limit`` messages of ``room`` with a seq below
        ``before_seq`` (the newest ones if None), oldest first; none for
        ``limit`` <= 0."""

    def current_seq(room: str) -> Deferred[int]:
        """The seq of the last message stored in ``room`` (deleted or not),
        0 for a room never written to."""

    def room_positions(rooms: Sequence[str]) -> Deferred[dict[str, int]]:
        """``{room: current seq}`` for the given rooms, read at one moment
        per few hundred rooms; rooms never written to are absent."""

    def delete_message(message_id: int) -> Deferred[tuple[str, int] | None]:
        """Remove a stored chat message (moderation); fire with its room and
        its seq, or None if there was no such message."""


class IMessageEditStore(Interface):
    """Edits of stored room messages and their record (``message_edits``).
    Every method returns a Deferred. Deleting is ``IRoomMessageStore``'s."""

    def room_message(room: str, seq: int) -> Deferred[Message | None]:
        """The stored message of ``room`` at ``seq`` (current text,
        ``edited_ms``), or None."""

    def edit_message(
        message_id: int, content: str, editor_id: int | None, editor: str, edited_ms: int
    ) -> Deferred[Message | None]:
        """Replace a stored message's text and record the old one (with
        the editor and the time) in one transaction; fire with the message
        as stored now, or None if there is no such message. The stored
        ``edited_ms`` only grows: an edit at or before the previous one's
        time is stored 1 ms after it, so that the latest edit always has the
        greatest ``edited_ms`` (clients keep the text with the greatest)."""

    def message_edits(message_id: int) -> Deferred[list[MessageEdit]]:
        """The recorded edits of a message, oldest first (kept after the
        message is deleted)."""


class ISearchStore(Interface):
    """Full-text search over room and direct messages (SQLite FTS5,
    PostgreSQL tsvector + GIN). Every method returns a Deferred."""

    def search_messages(
        terms: Sequence[str],
        user_id: int,
        *,
        rooms: Sequence[str] | None,
        room: str | None,
        with_user_id: int | None,
        include_rooms: bool,
        include_direct: bool,
        before: tuple[int, int, int] | None,
        limit: int,
    ) -> Deferred[list[SearchHit]]:
        """Messages holding every one of ``terms`` (each matches a word it
        begins: ``edit`` finds "edited"), newest first by ``(timestamp_ms,
        kind, id)`` where kind is 1 for a room message and 0 for a direct
        one; at most ``limit``, all below the key ``before`` if given.

        Room messages (``include_rooms``) of ``room`` if given, else of
        ``rooms`` (None: every room); direct messages (``include_direct``)
        sent or received by ``user_id``, only with ``with_user_id`` if
        given. Terms are words of letters and digits, lower case (the
        caller makes them so). Hits carry no highlights (the caller adds
        them)."""


class IRoomTopicStore(Interface):
    """Room topics. Every method returns a Deferred."""

    def room_topic(room: str) -> Deferred[RoomTopic | None]:
        """The room's topic, or None."""

    def set_room_topic(room: str, topic: RoomTopic) -> Deferred[None]:
        """Set the room's topic; an empty ``text`` clears it."""


class IAccountStore(Interface):
    """Registered accounts. Every method returns a Deferred."""

    def create_user(nickname: str, password_hash: bytes, created_ms: int) -> Deferred[StoredUser]:
        """Create an account; fail with AccountExists if the nickname is taken
        (case-insensitively) or an account's name looks like it (the same
        ``model.name_skeleton``). Fires with the new account."""

    def get_user(nickname: str) -> Deferred[StoredUser | None]:
        """The account for ``nickname`` (case-insensitive), or None."""

    def get_user_like(nickname: str) -> Deferred[StoredUser | None]:
        """The (oldest) account whose name looks like ``nickname``: the same
        ``model.name_skeleton`` (or the same name, case-insensitively), or
        None."""

    def get_user_by_id(user_id: int) -> Deferred[StoredUser | None]:
        """The account with this id, or None."""

    def list_users(limit: int, after_id: int = 0) -> Deferred[list[User]]:
        """Up to ``limit`` accounts with ids above ``after_id``, by id (public
        fields only: never the hash)."""

    def set_password_hash(user_id: int, password_hash: bytes) -> Deferred[None]:
        """Replace an account's password hash."""


class ISessionStore(Interface):
    """Numbers for an account's sessions, ordered across instances. Every
    method returns a Deferred."""

    def next_session(user_id: int) -> Deferred[int]:
        """Count one more session (login) of the account and fire with its
        number: 1 for the first, each one greater than every number given
        before for that account, on any connection of any instance (an
        atomic increment, committed before it fires). Fails for an account
        that does not exist."""


class IDirectMessageStore(Interface):
    """One-to-one messages between accounts. Every method returns a Deferred.

    A conversation is the unordered pair of accounts (an account's notes to
    itself are a conversation of one); its messages, either direction, are
    numbered by ``seq`` 1, 2, 3, ... in the order they are stored, and
    become visible in that order, as a room's messages are."""

    def insert_direct(
        from_user_id: int, to_user_id: int, content: str, created_ms: int, delivered: bool
    ) -> Deferred[tuple[int, int]]:
        """Store a direct message; fire with ``(id, seq)`` once committed."""

    def pending_direct(to_user_id: int, limit: int) -> Deferred[list[DirectMessage]]:
        """Undelivered direct messages for an account, oldest first."""

    def direct_history(
        user_id: int, other_id: int, limit: int, before: int | None = None
    ) -> Deferred[list[DirectMessage]]:
        """The direct messages between two accounts, in both directions,
        delivered or not (with ``user_id == other_id``, the account's notes
        to itself): the last ``limit`` of them (with an id below ``before``,
        if given), oldest first. Other pairs' messages are never included."""

    def direct_messages_after(
        user_id: int, other_id: int, after_seq: int, limit: int
    ) -> Deferred[list[DirectMessage]]:
        """The first ``limit`` messages of the conversation of the two
        accounts with a seq above ``after_seq``, by seq; none for ``limit``
        <= 0."""

    def direct_messages_before(
        user_id: int, other_id: int, before_seq: int | None, limit: int
    ) -> Deferred[list[DirectMessage]]:
        """The last ``limit`` messages of the conversation with a seq below
        ``before_seq`` (the newest if None), oldest first; none for
        ``limit`` <= 0."""

    def conversation_seq(user_id: int, other_id: int) -> Deferred[int]:
        """The seq of the conversation's last stored message, 0 if none."""

    def mark_delivered(ids: Sequence[int]) -> Deferred[None]:
        """Mark direct messages as handed to their recipient."""


class IModerationStore(Interface):
    """Account bans. Every method returns a Deferred."""

    def set_ban(
        user_id: int, reason: str, created_ms: int, expires_ms: int | None
    ) -> Deferred[None]:
        """Ban an account (replacing an earlier ban)."""

    def remove_ban(user_id: int) -> Deferred[bool]:
        """Lift a ban; fire with whether there was one."""

    def get_ban(user_id: int) -> Deferred[Ban | None]:
        """The account's ban (active or expired), or None."""

    def list_bans() -> Deferred[list[Ban]]:
        """Every recorded ban (expired ones too), by account id."""


class ITokenStore(Interface):
    """Revoked login tokens (logout) and per-account cutoffs (logout
    everywhere). Every method returns a Deferred."""

    def revoke_token(jti: str, expires_s: int) -> Deferred[None]:
        """Revoke one login token (logout) by its JWT id until ``expires_s``,
        its own expiry in seconds since the epoch. Revoking a token again
        changes nothing and is no error."""

    def list_revoked_tokens(now_s: int) -> Deferred[list[tuple[str, int]]]:
        """``(jti, expires_s)`` of every revoked token not yet expired
        (``expires_s > now_s``), in no particular order."""

    def prune_revoked_tokens(now_s: int) -> Deferred[int]:
        """Forget revoked tokens that have expired (``expires_s <= now_s``);
        fire with how many were deleted."""

    def set_token_cutoff(user_id: int, before_ms: int) -> Deferred[None]:
        """Revoke every token of the account issued at or before
        ``before_ms`` (ms since the epoch): log out everywhere. An existing
        cutoff is never moved backwards: the later of the two is kept."""

    def list_token_cutoffs() -> Deferred[list[tuple[int, int]]]:
        """``(user_id, before_ms)`` of every account with a cutoff, by user id."""


class IAccountStateStore(Interface):
    """What follows an account from device to device: the rooms it has
    joined, its conversations, read markers and mutes, with unread and
    mention counts (at most ``COUNT_CAP``) computed from the messages and
    the stored mentions. Every method returns a Deferred."""

    def add_account_room(user_id: int, room: str, joined_ms: int) -> Deferred[RoomState | None]:
        """Record that the account joined ``room``; its read marker starts
        at the room's current seq. Fires with the new state, or None if the
        room was recorded already (nothing changes then)."""

    def remove_account_room(user_id: int, room: str) -> Deferred[bool]:
        """Forget the room (the account left it); fire with whether it was recorded."""

    def account_rooms(user_id: int) -> Deferred[list[RoomState]]:
        """The account's rooms with their counts, by name."""

    def account_room_names(user_id: int) -> Deferred[list[str]]:
        """The names of the account's rooms, without counting anything
        (what search needs to know)."""

    def mark_room_read(user_id: int, room: str, seq: int) -> Deferred[RoomState | None]:
        """Move the read marker forward to ``seq`` (never back; clamped to
        the room's current seq). Fires with the state if the marker moved,
        None if it did not (or the room is not the account's)."""

    def set_room_muted(user_id: int, room: str, muted: bool) -> Deferred[RoomState | None]:
        """Mute or unmute; the state, or None if the room is not the account's."""

    def account_directs(user_id: int) -> Deferred[list[DirectState]]:
        """The account's conversations in its list: those with messages
        (unless closed and nothing came since) and those opened; by the
        other's nickname (folded)."""

    def direct_state(user_id: int, other_id: int) -> Deferred[DirectState | None]:
        """The account's state in its conversation with ``other_id`` (None:
        no such account)."""

    def mark_direct_read(user_id: int, other_id: int, seq: int) -> Deferred[DirectState | None]:
        """Move the conversation's read marker forward (as
        ``mark_room_read``); the state if it moved, else None."""

    def set_direct_open(user_id: int, other_id: int, opened: bool) -> Deferred[DirectState | None]:
        """Put the conversation in the account's list, or take it out until
        its next message; the state (None: no such account)."""


class IRefreshTokenStore(Interface):
    """Refresh tokens of long-lived logins, by the SHA-256 of the token
    (hex); the token itself is never stored. Every method returns a Deferred."""

    def add_refresh_token(
        token_hash: str, user_id: int, family: str, created_ms: int, expires_ms: int
    ) -> Deferred[None]:
        """Record a new refresh token of ``family`` (the tokens rotated from one login)."""

    def spend_refresh_token(token_hash: str, now_ms: int) -> Deferred[tuple[str, int, str]]:
        """Spend a token (once: atomically, also between instances); fire
        with ``("ok", user_id, family)``. A token already spent revokes its
        whole family and fires ``("reused", user_id, family)``; an unknown,
        revoked or expired one fires ``("invalid", 0, "")``."""

    def revoke_refresh_token(token_hash: str) -> Deferred[int | None]:
        """Revoke the family of a token (logout); fire with its account's id
        (None: unknown token)."""

    def revoke_refresh_tokens(user_id: int) -> Deferred[int]:
        """Revoke every refresh token of an account (logout everywhere, a
        new password); fire with how many were live."""

    def prune_refresh_tokens(now_ms: int) -> Deferred[int]:
        """Forget tokens that have expired; fire with how many."""


class IStoreLifecycle(Interface):
    """The database itself: is it there, and letting it go."""

    def ping() -> Deferred[None]:
        """Run a trivial query (``SELECT 1``): fires when the database
        answers, fails when it cannot (readiness checks)."""

    def check_writable() -> Deferred[None]:
        """Fires when a write transaction could start now; fails when it
        cannot (the file is locked by another process, the server is read
        only): readiness is about storing, not only about answering."""

    def close() -> Deferred[None]:
        """Release connections; pending operations finish first."""


class IMessageStore(
    IRoomMessageStore,
    IMessageEditStore,
    ISearchStore,
    IRoomTopicStore,
    IAccountStore,
    ISessionStore,
    IDirectMessageStore,
    IModerationStore,
    ITokenStore,
    IAccountStateStore,
    IRefreshTokenStore,
    IStoreLifecycle,
):
    """A whole store: every area. Implementations declare this one, and so
    provide each area interface; code that needs one area asks for that
    one."""


class IBusHandler(Interface):
    """What a bus hands events to: the ChatService of this instance."""

    def deliver(room: str, message: Any) -> None:
        """A room event (``Message``) for the local members of ``room``."""

    def control(event: Any) -> None:
        """An instance-wide event (direct message, ban, kick, session): a
        ``parkchat.events.ControlEvent``."""

    def bus_recovered() -> None:
        """The bus works again after a time when events published here
        could not cross to other instances (or theirs to here)."""

    def presence_snapshot() -> dict[str, Any]:
        """This instance's presence, for the bus to share:
        ``{"users": {user_key: [user_id, nickname]}, "rooms": {room: [nick, ...]},
        "connections": {user_key: count}}``."""

    def presence_updated() -> None:
        """Another instance's presence arrived (an announcement or a scan):
        the per-account connection limit over all instances is checked
        again (``ConnectionHandler.excess``)."""


class IBus(Interface):
    """Fan-out between the instances serving the same rooms and accounts.

    The local implementation hands events straight back to this process; the
    Redis one publishes them to every instance (itself included, so that all
    instances see a room's events in the same order). Rooms never know which
    one is installed.
    """

    def attach(handler: IBusHandler) -> None:
        """Set the receiver of events (the service)."""

    def subscribe(room: str) -> None:
        """Start receiving events of ``room`` (its first local member joined)."""

    def unsubscribe(room: str) -> None:
        """Stop receiving events of ``room`` (its last local member left)."""

    def publish(room: str, message: Any) -> None:
        """Send a room event to every instance with members in ``room``."""

    def publish_control(event: Any) -> None:
        """Send an instance-wide event (a ``parkchat.events.ControlEvent``)
        to every instance, this one included. A bus that crosses processes
        encodes it with ``parkchat.events`` only; the local bus hands the
        object itself over."""

    def presence_changed() -> None:
        """This instance's presence changed: share it soon (may coalesce)."""

    def remote_presence() -> dict[str, Any]:
        """Other live instances' presence, merged: ``{"users": {key: [id,
        nick]}, "rooms": {room: [nick, ...]}, "connections": {key: total},
        "connections_by_instance": {key: {instance: count}}}`` (nicknames may
        repeat)."""

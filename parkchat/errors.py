"""Domain exceptions.

Every error a client can cause is a :class:`ChatError` with a stable
machine-readable ``code`` and an HTTP status, so that each surface (REST,
WebSocket, TCP) can translate it in one place without knowing the others.
"""

from __future__ import annotations


class ChatError(Exception):
    """Base of all errors that are the client's to see.

    ``code`` is stable and documented; ``message`` is for people.
    """

    code = "error"
    http_status = 400

    def __init__(self, message: str | None = None) -> None:
        self.message = message if message is not None else self.default_message()
        super().__init__(self.message)

    def default_message(self) -> str:
        return "request failed"


class InvalidRequest(ChatError):
    """Malformed input: bad JSON, wrong types, missing fields."""

    code = "invalid_request"


class InvalidName(ChatError):
    """A nickname that breaks the naming rules."""

    code = "invalid_nickname"


class InvalidRoom(ChatError):
    """A room name that breaks the naming rules."""

    code = "invalid_room"


class InvalidContent(ChatError):
    """Empty or otherwise unusable message content."""

    code = "invalid_content"


class ContentTooLong(ChatError):
    """Message content over the configured limit."""

    code = "content_too_long"
    http_status = 413


class InvalidPassword(ChatError):
    """A password that cannot be accepted (empty or too long)."""

    code = "invalid_password"


class AccountExists(ChatError):
    """Registration of a nickname that is taken (case-insensitively)."""

    code = "nickname_taken"
    http_status = 409

    def default_message(self) -> str:
        return "nickname already registered"


class NameRegistered(ChatError):
    """Told to a guest (or an external-token user) whose name an account
    was just registered under, or under a name that looks like it, as its
    connection is closed: the name is the account's from now on."""

    code = "name_registered"
    http_status = 409

    def default_message(self) -> str:
        return (
            "this name is now a registered account's: reconnect under another name, "
            "or log in with the account's password"
        )


class AuthenticationFailed(ChatError):
    """Unknown account or wrong password: deliberately not told apart."""

    code = "unauthorized"
    http_status = 401

    def default_message(self) -> str:
        return "invalid nickname or password"


class NotInRoom(ChatError):
    """Posting to a room the connection has not joined."""

    code = "not_in_room"
    http_status = 409


class RateLimited(ChatError):
    """More messages than the per-user token bucket allows."""

    code = "rate_limited"
    http_status = 429

    def default_message(self) -> str:
        return "too many messages: slow down"


class TooManyConnections(ChatError):
    """A per-user or per-address connection limit is reached."""

    code = "too_many_connections"
    http_status = 429


class ServiceBusy(ChatError):
    """A bounded queue (password checks, pending writes) is full."""

    code = "busy"
    http_status = 503

    def default_message(self) -> str:
        return "server busy, try again"


class StorageFailed(ChatError):
    """The database refused a write; the message was not stored."""

    code = "storage_failed"
    http_status = 503

    def default_message(self) -> str:
        return "message could not be stored"


class UnknownRecipient(ChatError):
    """A direct message or moderation action names an account that does not exist."""

    code = "unknown_recipient"
    http_status = 404


class Banned(ChatError):
    """The account is banned."""

    code = "banned"
    http_status = 403


class TooManyAttempts(ChatError):
    """Too many failed logins for an account or from an address."""

    code = "too_many_attempts"
    http_status = 429

    def default_message(self) -> str:
        return "too many failed logins: try again later"


class UnknownType(ChatError):
    """A /ws frame whose ``type`` the server does not know."""

    code = "unknown_type"


class NotAuthenticated(ChatError):
    """A /ws frame other than ``auth`` or ``ping`` before authenticating."""

    code = "not_authenticated"
    http_status = 401


class OriginForbidden(ChatError):
    """A browser page from a foreign origin tried to open a WebSocket."""

    code = "origin_forbidden"
    http_status = 403

    def default_message(self) -> str:
        return "this origin may not open a WebSocket here"


class NoSuchMessage(ChatError):
    """A message that does not exist (or no longer does)."""

    code = "not_found"
    http_status = 404

    def default_message(self) -> str:
        return "no such message"


class Forbidden(ChatError):
    """An action on something that is not the client's to act on (another
    member's message, a moderators-only topic)."""

    code = "forbidden"
    http_status = 403

    def default_message(self) -> str:
        return "not allowed"


class EditWindowPassed(ChatError):
    """An edit or delete of one's own message after ``--edit-window``."""

    code = "edit_window_passed"
    http_status = 403

    def default_message(self) -> str:
        return "this message can no longer be changed"

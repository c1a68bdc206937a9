"""Real instances, clients on every surface, faults, and an exact account of
what each client received against what the store holds.

The guarantee under test (issue 13): every stored room message reaches every
member exactly once and in order, across Redis outages, a killed instance and
dropped database connections; a client that reconnects and resumes misses
nothing and gets nothing twice. ``tests/test_chaos.py`` runs this in CI at a
small rate; ``bench/delivery.py`` at 100 messages/s per instance, for the
figures in docs/performance.md.

Pieces:

* ``Cluster``: N ``twistd -n parkchat`` (``ParkchatProcess``) on one
  PostgreSQL database and one Redis of the run's own (``PrivateRedis``), with
  the line protocol on.
* Clients, each an asyncio task that reconnects by itself, one per surface:
  ``AppClient`` (``/ws``: ``join`` with ``last_seq`` after a reconnect, paged
  ``history`` frames, ``ack`` with ``seq``), ``SeedClient`` (``/ws/{room}``,
  ``?since=SEQ`` when resuming; or plain, with the seed objects and no seq),
  ``LineClient`` (plain TCP) and ``MychatClient`` (``/mychat``). The last
  three without ``since`` have no seq: their lines are matched to the store
  by content (every message's content is unique).
* ``Ledger``: the store's truth, read with psycopg2 (room, seq, content).
* ``Chaos.run()``: steady traffic, the faults in order, a convergence wait
  after each ("every connected client has every stored message up to the
  position when the fault ended"), then the final check.

What a client is *entitled to* in a room: from its join (``joined.seq`` on
``/ws``, ``since`` on ``/ws/{room}``; for surfaces without a seq, the room's
position read once the client saw its own join notice, or the first message
it received if that came earlier) to the end, through every resume; a
session lost without a resume (TCP, ``/mychat``, plain ``/ws/{room}``) ends
its span at the last message it received. Everything in the span must arrive
once, in seq order; contents must match the stored ones.

Every wait has a deadline (no sleeping in the hope that something happened);
the only sleeps pace the senders and space out polls.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import secrets
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.e2e_support import ParkchatProcess

#: The three rooms every scenario uses.
ROOMS = ("north", "east", "west")


def basic(nickname: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{nickname}:{password}".encode()).decode("ascii")


def ranges(values: Iterable[int]) -> str:
    """``1-3, 7, 9-10``: a readable list of seqs."""
    out: list[str] = []
    ordered = sorted(set(values))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ", ".join(out) if out else "none"


# -- configuration ------------------------------------------------------------------


@dataclass
class Config:
    """One run: its load, its faults, its bounds."""

    instances: int = 3
    rooms: tuple[str, ...] = ROOMS
    #: Messages per second sent by the clients whose home is each instance.
    rate_per_instance: float = 10.0
    #: Characters of padding added to every message (bigger frames).
    padding: int = 0
    #: Seconds of steady traffic before the first fault and after each.
    steady: float = 3.0
    #: The faults in order: ``redis`` (SIGKILL, down ``redis_down`` s,
    #: restart), ``postgres`` (``pg_terminate_backend`` on every backend of
    #: the run's database), ``instance`` (SIGKILL instance ``victim``, its
    #: clients reconnect elsewhere or wait for it, restart after
    #: ``instance_down`` s).
    faults: tuple[str, ...] = ("redis", "postgres", "instance", "redis")
    redis_down: float = 3.0
    instance_down: float = 2.0
    #: The killed instance also stays down until every room has this many
    #: new messages, so that its clients that wait for it resume a replay
    #: that needs several frames under their ``max_frame``.
    instance_missed: int = 30
    victim: int = 1
    #: How long a fault may take to converge (every connected client has
    #: everything stored up to the fault's end).
    converge_timeout: float = 15.0
    #: The whole run, faults and final check included.
    deadline: float = 170.0
    #: Further ``parkchat`` options for every instance.
    server_args: tuple[str, ...] = ()
    #: ``--presence-ttl`` of the instances (a killed instance's users go).
    presence_ttl: float = 3.0
    #: ``max_frame`` that small-frame ``/ws`` clients announce on ``join``.
    small_frame: int = 1024
    #: Print progress to stderr.
    verbose: bool = False


# -- the store's truth ----------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    room: str
    seq: int
    id: int
    content: str
    created_ms: int


class Ledger:
    """The messages of the run's rooms as the database holds them, read
    incrementally (every row once) over one psycopg2 connection."""

    def __init__(self, dsn: str, rooms: Sequence[str]) -> None:
        import psycopg2

        self._psycopg2 = psycopg2
        self.dsn = dsn
        self.rooms = tuple(rooms)
        self._conn: Any = None
        self._lock = threading.Lock()
        self.by_room: dict[str, dict[int, Stored]] = {room: {} for room in rooms}
        self.by_content: dict[str, Stored] = {}
        self.known: dict[str, int] = dict.fromkeys(rooms, 0)

    def _cursor(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = self._psycopg2.connect(self.dsn, connect_timeout=5)
            self._conn.autocommit = True
        return self._conn.cursor()

    def _query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            for attempt in range(3):
                try:
                    with self._cursor() as cursor:
                        cursor.execute(sql, params)
                        return list(cursor.fetchall()) if cursor.description else []
                except (self._psycopg2.OperationalError, self._psycopg2.InterfaceError):
                    # Our own connection may be one the run terminated.
                    if self._conn is not None:
                        self._conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

    def refresh(self) -> dict[str, int]:
        """Read the rows stored since the last call; the rooms' positions."""
        for room in self.rooms:
            rows = self._query(
                "SELECT seq, id, content, created_ms FROM messages "
                "WHERE room = %s AND seq > %s AND type = 'chat' ORDER BY seq",
                (room, self.known[room]),
            )
            for seq, id_, content, created_ms in rows:
                stored = Stored(room, int(seq), int(id_), content, int(created_ms))
                self.by_room[room][stored.seq] = stored
                self.by_content[content] = stored
                self.known[room] = max(self.known[room], stored.seq)
        return dict(self.known)

    def positions(self) -> dict[str, int]:
        """Each room's last seq in ``room_sequences`` (committed)."""
        rows = self._query(
            "SELECT room, last_seq FROM room_sequences WHERE room = ANY(%s)", (list(self.rooms),)
        )
        found = {room: int(seq) for room, seq in rows}
        return {room: found.get(room, 0) for room in self.rooms}

    def terminate_backends(self) -> int:
        """``pg_terminate_backend`` on every other backend of this database
        (the instances'); only this run's database is touched."""
        rows = self._query(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(rows[0][0])

    def seqs(self, room: str, low: int, high: int) -> list[int]:
        """Stored seqs of ``room`` in ``low..high`` (inclusive), ascending."""
        return sorted(s for s in self.by_room[room] if low <= s <= high)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# -- what clients saw --------------------------------------------------------------------


@dataclass
class Session:
    """One connection's life in one room."""

    client: str
    surface: str
    room: str
    number: int
    server: int
    #: The seq the client resumed after (``last_seq``/``since``), or None.
    resumed_from: int | None
    #: The room's committed position read just before connecting.
    before: int
    #: The first seq the client is entitled to is ``after + 1``: exact
    #: (``joined.seq``, ``since``) or read once the join was seen.
    after: int | None = None
    exact: bool = False
    #: (seq or None, content) in arrival order; resume replays included.
    stream: list[tuple[int | None, str]] = field(default_factory=list)
    acks: list[tuple[int, str]] = field(default_factory=list)
    #: Contents sent on this session; those never acknowledged (``/ws``);
    #: those answered with an error frame.
    sent: list[str] = field(default_factory=list)
    unacked: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    #: The connection was lost before the end of the run.
    lost: bool = False
    #: ``joined.resume`` and the messages that came in resume frames.
    resume: dict[str, Any] | None = None
    resume_messages: int = 0
    resume_frames: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    protocol_errors: list[str] = field(default_factory=list)


class Chain:
    """A client's sessions in a room that continue each other: the first,
    then every one that resumed after it. ``have`` holds the seqs received
    (stream and acks); ``watermark`` the seq up to which the stored
    messages of its span are all in ``have`` (kept up to date cheaply)."""

    def __init__(self, first: Session) -> None:
        self.sessions = [first]
        self.have: set[int] = set()
        self.unmapped: list[str] = []
        self.watermark: int | None = None

    @property
    def head(self) -> Session:
        return self.sessions[0]

    @property
    def last(self) -> Session:
        return self.sessions[-1]

    def absorb(self, ledger: Ledger) -> None:
        """Map received contents (surfaces without a seq) to stored seqs."""
        if not self.unmapped:
            return
        room = self.head.room
        left = []
        for content in self.unmapped:
            stored = ledger.by_content.get(content)
            if stored is None or stored.room != room:
                left.append(content)
            else:
                self.have.add(stored.seq)
        self.unmapped = left

    def low(self) -> int | None:
        """The first seq of the span, once the join is known."""
        head = self.head
        if head.after is None:
            return None
        early = [s for s in self.have if s <= head.after]
        if early and not head.exact:
            return min(early)
        return head.after + 1

    def lacking(self, ledger: Ledger, position: int) -> list[int]:
        """Stored seqs up to ``position`` in the span not received yet."""
        self.absorb(ledger)
        low = self.low()
        if low is None:
            return [-1]
        mark = max(self.watermark or 0, low - 1)
        stored = ledger.by_room[self.head.room]
        skip = self.allowed()
        seq = mark + 1
        while seq <= position and (seq not in stored or seq in self.have or seq in skip):
            if seq in stored:
                mark = seq
            seq += 1
        self.watermark = mark
        return [
            s
            for s in range(seq, position + 1)
            if s in stored and s not in self.have and s not in skip
        ]

    def allowed(self) -> set[int]:
        """The gaps a resume declared (``recovered: false``: more were
        missed than the server replays; ``first_seq`` is where it began)."""
        gaps: set[int] = set()
        for session in self.sessions[1:]:
            resume = session.resume or {}
            first = resume.get("first_seq")
            if resume.get("recovered") is False and isinstance(first, int):
                gaps.update(range((session.resumed_from or 0) + 1, first))
        return gaps


class Client:
    """One simulated user: a connection at a time, reconnecting after a loss
    (to the next live instance, or waiting for its own with ``reconnect =
    'same'``), resuming where its surface can."""

    surface = "?"
    resumes = False

    def __init__(
        self, chaos: Chaos, name: str, home: int, rooms: Sequence[str], reconnect: str
    ) -> None:
        self.chaos = chaos
        self.name = name
        self.home = home
        self.server = home
        self.rooms = list(rooms)
        self.reconnect = reconnect
        self.password = f"{name}-pw-{secrets.token_hex(4)}"
        self.chains: dict[str, list[Chain]] = {room: [] for room in rooms}
        #: The sessions of the current connection, by room.
        self.current: dict[str, Session] = {}
        self.connected = asyncio.Event()
        self.counter = 0
        self.next_room = 0
        self.task: asyncio.Task[None] | None = None

    @property
    def sessions(self) -> list[Session]:
        return [s for chains in self.chains.values() for c in chains for s in c.sessions]

    # -- content and rooms ------------------------------------------------------

    def content(self) -> str:
        self.counter += 1
        text = f"{self.name}.{self.counter}"
        if self.chaos.config.padding:
            text += "." + "x" * self.chaos.config.padding
        return text

    def pick_room(self) -> str:
        room = self.rooms[self.next_room % len(self.rooms)]
        self.next_room += 1
        return room

    def chain(self, room: str) -> Chain | None:
        chains = self.chains[room]
        return chains[-1] if chains else None

    def resume_point(self, room: str) -> int | None:
        """What to resume after in ``room``: the highest seq received in
        order (the stream, not acks: an ack can overtake the events before
        it), else where the last join began; None for a first join."""
        chain = self.chain(room)
        if chain is None:
            return None
        for session in reversed(chain.sessions):
            seqs = [s for s, _ in session.stream if s is not None]
            if seqs:
                return max(seqs)
            if session.resumed_from is not None:
                return session.resumed_from
            if session.exact and session.after is not None:
                return session.after
        return None

    async def new_session(self, room: str, resumed_from: int | None) -> Session:
        """Start a session (reading the room's position first) and file it in
        its chain: a resumed session continues the last one."""
        before = (await self.chaos.db(self.chaos.ledger.positions))[room]
        chains = self.chains[room]
        session = Session(
            client=self.name,
            surface=self.surface,
            room=room,
            number=len([s for c in chains for s in c.sessions]) + 1,
            server=self.server,
            resumed_from=resumed_from,
            before=before,
        )
        if resumed_from is not None and chains:
            chains[-1].sessions.append(session)
        else:
            chains.append(Chain(session))
        self.current[room] = session
        return session

    def end_sessions(self) -> None:
        for session in self.current.values():
            if not self.chaos.stopping:
                session.lost = True
        self.current = {}
        self.connected.clear()

    # -- the connection loop ------------------------------------------------------

    async def run(self) -> None:
        chaos = self.chaos
        first = True
        while not chaos.stopping:
            if not first:
                self.server = await chaos.reconnect_target(self)
            first = False
            try:
                await self.session()
            except asyncio.CancelledError:
                raise
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as e:
                if not chaos.stopping:
                    chaos.note(f"{self.name}: connection to {self.server} lost ({e!r:.100})")
            except Exception as e:  # a harness bug must show, not hang the run
                chaos.note(f"{self.name}: {e!r}")
                chaos.stray.append(f"{self.name}: client failed: {e!r}")
            finally:
                self.end_sessions()
            if not chaos.stopping:
                await asyncio.sleep(0.1)  # a reconnecting client's pause

    async def session(self) -> None:
        raise NotImplementedError

    async def send(self) -> None:
        """Post one message (if connected)."""
        raise NotImplementedError

    def confirm(self, session: Session) -> None:
        """The client saw its own join (a surface without a seq): the span
        begins after the room's position read from now on."""
        if session.after is not None:
            return

        async def read() -> None:
            session.after = (await self.chaos.db(self.chaos.ledger.positions))[session.room]
            self.connected.set()

        self.chaos.spawn(read())

    def got(self, session: Session | None, seq: int | None, content: str) -> None:
        if session is None:
            self.chaos.stray.append(f"{self.name}: message outside a session: {content!r}")
            return
        session.stream.append((seq, content))
        chain = self.chain(session.room)
        assert chain is not None
        if seq is None:
            chain.unmapped.append(content)
        else:
            chain.have.add(seq)

    def acked(self, session: Session, seq: int, content: str) -> None:
        session.acks.append((seq, content))
        chain = self.chain(session.room)
        if chain is not None and session in chain.sessions:
            chain.have.add(seq)


class AppClient(Client):
    """``/ws``: Basic auth on the upgrade, ``join`` each room (with
    ``last_seq`` after a reconnect, and ``max_frame`` if small), ``message``
    with an ``id``, ``ack`` with ``seq``."""

    surface = "ws"
    resumes = True

    def __init__(self, *args: Any, max_frame: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_frame = max_frame
        self.ws: ClientConnection | None = None
        self.pending: dict[str, tuple[Session, str]] = {}
        self.joined: dict[str, asyncio.Future[None]] = {}

    async def session(self) -> None:
        url = self.chaos.cluster.servers[self.server].ws_url("/ws")
        async with connect(
            url,
            additional_headers={"Authorization": basic(self.name, self.password)},
            open_timeout=5,
            close_timeout=2,
            max_size=None,
        ) as ws:
            self.ws = ws
            reader = asyncio.ensure_future(self.read(ws))
            try:
                for room in self.rooms:
                    await self.join(ws, reader, room)
                self.connected.set()
                await reader
            finally:
                reader.cancel()
                self.ws = None
                for session, content in self.pending.values():
                    session.unacked.add(content)
                self.pending = {}

    async def join(self, ws: ClientConnection, reader: asyncio.Future[None], room: str) -> None:
        since = self.resume_point(room)
        await self.new_session(room, since)
        frame: dict[str, Any] = {"type": "join", "room": room, "id": f"j:{room}"}
        if since is not None:
            frame["last_seq"] = since
        if self.max_frame:
            frame["max_frame"] = self.max_frame
        joined = self.joined[room] = asyncio.get_running_loop().create_future()
        await ws.send(json.dumps(frame))
        done, _ = await asyncio.wait([reader, joined], timeout=10, return_when="FIRST_COMPLETED")
        if reader in done:
            reader.result()
            raise ConnectionError(f"closed while joining {room}")
        if not done:
            raise TimeoutError(f"no joined for {room} in 10 s")

    async def read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            size = len(raw.encode() if isinstance(raw, str) else raw)
            if self.max_frame and size > self.max_frame and frame.get("type") == "history":
                session = self.current.get(frame.get("room"))
                if session is not None:
                    session.protocol_errors.append(
                        f"a {size}-byte history frame, over max_frame {self.max_frame}"
                    )
            self.frame(frame)

    def frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        room = frame.get("room")
        session = self.current.get(room) if isinstance(room, str) else None
        if kind == "message":
            seq = frame.get("seq")
            if not isinstance(seq, int):
                seq = None
                if session is not None:
                    session.protocol_errors.append(f"message without seq: {frame}")
            self.got(session, seq, frame.get("body", ""))
        elif kind == "ack":
            pending = self.pending.pop(str(frame.get("id")), None)
            if pending is None:
                self.chaos.stray.append(f"{self.name}: ack for nothing sent: {frame}")
                return
            sent_on, content = pending
            seq = frame.get("seq")
            if not isinstance(seq, int):
                sent_on.protocol_errors.append(f"ack without seq: {frame}")
                return
            self.acked(sent_on, seq, content)
        elif kind == "joined":
            if session is None:
                return
            seq = frame.get("seq")
            if not isinstance(seq, int):
                session.protocol_errors.append(f"joined without seq: {frame}")
                seq = 0
            session.after, session.exact = seq, True
            if session.resumed_from is not None:
                resume = frame.get("resume")
                if not isinstance(resume, dict):
                    session.protocol_errors.append(f"joined without resume: {frame}")
                else:
                    session.resume = resume
            future = self.joined.get(str(room))
            if future is not None and not future.done():
                future.set_result(None)
        elif kind == "history":
            if session is None:
                return
            if not frame.get("resume"):
                session.protocol_errors.append(f"history frame not marked resume: {frame}")
            session.resume_frames += 1
            for message in frame.get("messages", []):
                seq = message.get("seq")
                session.resume_messages += 1
                self.got(session, seq if isinstance(seq, int) else None, message.get("body", ""))
        elif kind == "error":
            pending = self.pending.pop(str(frame.get("id")), None)
            if pending is not None:
                pending[0].errors[str(frame.get("code"))] += 1
                pending[0].refused.add(pending[1])
            elif session is not None:
                session.errors[str(frame.get("code"))] += 1
            else:
                self.chaos.errors[str(frame.get("code"))] += 1

    async def send(self) -> None:
        ws = self.ws
        if ws is None or not self.connected.is_set():
            return
        room = self.pick_room()
        session = self.current.get(room)
        if session is None:
            return
        content = self.content()
        marker = f"m{self.counter}"
        self.pending[marker] = (session, content)
        session.sent.append(content)
        frame = {"type": "message", "room": room, "body": content, "id": marker}
        try:
            await ws.send(json.dumps(frame))
        except ConnectionClosed:
            pass


class SeedClient(Client):
    """``/ws/{room}`` with Basic auth: the sender gets its own message back.
    With ``resume``: ``?since=SEQ`` from the first connection on (the first
    time the room's position then), so the objects carry ``seq``; plain:
    exact seed objects (no ``seq``), matched to the store by content."""

    surface = "seed"

    def __init__(self, *args: Any, resume: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resumes = resume
        if not resume:
            self.surface = "seed-plain"
        self.ws: ClientConnection | None = None

    async def session(self) -> None:
        chaos = self.chaos
        [room] = self.rooms
        path = f"/ws/{room}"
        if self.resumes:
            since = self.resume_point(room)
            session = await self.new_session(room, since)
            if since is None:
                since = session.before
            session.after, session.exact = since, True
            path += f"?since={since}"
        else:
            session = await self.new_session(room, None)
        url = chaos.cluster.servers[self.server].ws_url(path)
        async with connect(
            url,
            additional_headers={"Authorization": basic(self.name, self.password)},
            open_timeout=5,
            close_timeout=2,
            max_size=None,
        ) as ws:
            self.ws = ws
            try:
                async for raw in ws:
                    self.frame(session, json.loads(raw))
            finally:
                self.ws = None

    def frame(self, session: Session, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "chat":
            seq = frame.get("seq")
            if self.resumes and not isinstance(seq, int):
                session.protocol_errors.append(f"since= connection got no seq: {frame}")
            if not self.resumes and "seq" in frame:
                session.protocol_errors.append(f"plain seed connection got a seq: {frame}")
            self.got(session, seq if self.resumes else None, frame.get("content", ""))
        elif kind == "system":
            if frame.get("nickname") == self.name and "joined" in frame.get("content", ""):
                if self.resumes:
                    self.connected.set()
                else:
                    self.confirm(session)
        elif kind == "error":
            session.errors[str(frame.get("code"))] += 1

    async def send(self) -> None:
        ws = self.ws
        session = self.current.get(self.rooms[0])
        if ws is None or session is None or not self.connected.is_set():
            return
        content = self.content()
        session.sent.append(content)
        try:
            await ws.send(json.dumps({"content": content}))
        except ConnectionClosed:
            pass


class StreamClient(Client):
    """A line-protocol guest (``name:text`` lines, notices on). A new guest
    name per connection: a killed instance's presence outlives it."""

    def nickname(self) -> str:
        return f"{self.name}_{len(self.sessions) + 1}"

    def handshake(self, nickname: str) -> str:
        return json.dumps({"name": nickname, "room": self.rooms[0], "notices": True})

    def line(self, session: Session, nickname: str, text: str) -> None:
        if text.startswith("*** "):
            # A guest's join: its name marked "~" (docs/line-protocol.md).
            if text == f"*** ~{nickname} has joined the room":
                self.confirm(session)
            elif text.startswith("*** error ("):
                session.errors[text[len("*** error (") :].split(")", 1)[0]] += 1
            return
        _, sep, content = text.partition(":")
        if sep:
            self.got(session, None, content)


class LineClient(StreamClient):
    """The plain-TCP line protocol."""

    surface = "tcp"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writer: asyncio.StreamWriter | None = None

    async def session(self) -> None:
        host, port = self.chaos.cluster.servers[self.server].tcp_address
        nickname = self.nickname()
        session = await self.new_session(self.rooms[0], None)
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        try:
            writer.write(self.handshake(nickname).encode() + b"\n")
            self.writer = writer
            while True:
                raw = await reader.readline()
                if not raw.endswith(b"\n"):
                    raise ConnectionError("closed by the server")
                self.line(session, nickname, raw[:-1].decode("utf-8"))
        finally:
            self.writer = None
            writer.close()

    async def send(self) -> None:
        writer = self.writer
        session = self.current.get(self.rooms[0])
        if writer is None or session is None or not self.connected.is_set():
            return
        content = self.content()
        session.sent.append(content)
        writer.write(content.encode() + b"\n")


class MychatClient(StreamClient):
    """The line protocol inside WebSocket text messages (``/mychat``)."""

    surface = "mychat"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ws: ClientConnection | None = None

    async def session(self) -> None:
        url = self.chaos.cluster.servers[self.server].ws_url("/mychat")
        nickname = self.nickname()
        session = await self.new_session(self.rooms[0], None)
        async with connect(url, open_timeout=5, close_timeout=2, max_size=None) as ws:
            await ws.send(self.handshake(nickname))
            self.ws = ws
            try:
                async for raw in ws:
                    text = raw if isinstance(raw, str) else raw.decode()
                    for line in text.rstrip("\n").split("\n"):
                        self.line(session, nickname, line)
            finally:
                self.ws = None

    async def send(self) -> None:
        ws = self.ws
        session = self.current.get(self.rooms[0])
        if ws is None or session is None or not self.connected.is_set():
            return
        content = self.content()
        session.sent.append(content)
        try:
            await ws.send(content)
        except ConnectionClosed:
            pass


# -- the cluster --------------------------------------------------------------------------


class Cluster:
    """N instances on one database and one Redis; started in parallel."""

    def __init__(
        self,
        workdirs: Sequence[str | Path],
        db: str,
        redis_url: str,
        args: Sequence[str] = (),
        presence_ttl: float = 3.0,
    ) -> None:
        prefix = f"chaos{secrets.token_hex(4)}"
        common = [
            "--redis",
            f"{redis_url}?prefix={prefix}",
            "--presence-ttl",
            str(presence_ttl),
            "--rate-limit",
            "0",
            "--max-connections-per-ip",
            "0",
            # Every guest of the harness comes from 127.0.0.1.
            "--max-guests-per-ip",
            "0",
            "--guest-rate-per-ip",
            "0",
            *args,
        ]
        self.servers = [
            ParkchatProcess(workdir, tcp=True, db=db, args=common) for workdir in workdirs
        ]

    def start(self) -> None:
        # The first creates the schema; the others start together.
        self.servers[0].start()
        errors: list[BaseException] = []

        def run(server: ParkchatProcess) -> None:
            try:
                server.start()
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(s,)) for s in self.servers[1:]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def counters(self, names: Sequence[str]) -> list[dict[str, float]]:
        """Each running instance's value of the given ``/metrics`` counters."""
        found = []
        for server in self.servers:
            values: dict[str, float] = {}
            if server.running:
                status, body = server.request("/metrics")
                for line in body.decode().splitlines() if status == 200 else []:
                    name, _, value = line.partition(" ")
                    if name in names:
                        values[name] = float(value)
            found.append(values)
        return found

    def register(self, nickname: str, password: str) -> None:
        server = self.servers[0]
        body = json.dumps({"nickname": nickname, "password": password}).encode()
        request = urllib.request.Request(
            server.url("/register"),
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 201:
                raise AssertionError(f"register {nickname}: {response.status}")


# -- the run ------------------------------------------------------------------------------


@dataclass
class FaultResult:
    name: str
    #: Seconds from the fault's end (Redis accepting connections again, the
    #: killed instance healthy again, the backends terminated) until every
    #: connected client had every message stored up to that moment.
    converged_s: float | None
    #: The rooms' positions at the fault's end.
    positions: dict[str, int]
    #: Messages stored between the fault's start and its end.
    stored_during: int
    started_ms: int
    ended_ms: int
    detail: str = ""


@dataclass
class Problem:
    client: str
    surface: str
    room: str
    kind: str
    seqs: list[int]
    text: str


@dataclass
class Report:
    config: Config
    faults: list[FaultResult]
    problems: list[Problem]
    stored: dict[str, int]
    sent: int
    delivered: int
    expected: int
    resumes: int
    #: Messages replayed to resuming clients, and the frames they came in.
    replayed: int
    pages: int
    #: The most frames one resume took (paging under ``max_frame``).
    most_pages: int
    errors: Counter[str]
    notes: list[str]
    clients: int
    duration_s: float
    #: Per instance, at the end: messages delivered from the store because
    #: the bus did not bring them in order, and duplicates dropped.
    server_counters: list[dict[str, float]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[Problem]:
        """The problems that break the guarantee. A message its sender was
        told had failed (``storage_failed``) that the database committed all
        the same is reported but not counted: when a backend is terminated
        between its commit and the reply, no client of any database can
        tell (at-most-once on the sender's side, ``tests/test_chaos.py``)."""
        return [p for p in self.problems if p.kind not in WARNINGS]

    def count(self, kind: str) -> int:
        return sum(len(p.seqs) for p in self.problems if p.kind == kind)

    def lost(self) -> int:
        return self.count("missing")

    def duplicated(self) -> int:
        return self.count("duplicate")

    def summary(self) -> str:
        lines = [
            f"{self.clients} clients; {self.sent} messages sent, "
            f"{sum(self.stored.values())} stored {self.stored}; {self.expected} deliveries "
            f"owed, {self.delivered} received; {self.resumes} resumes ({self.replayed} messages "
            f"replayed in {self.pages} frames, at most {self.most_pages} for one resume); "
            f"lost {self.lost()}, "
            f"duplicated {self.duplicated()}, {len(self.failures)} problem(s), "
            f"{len(self.problems) - len(self.failures)} warning(s); "
            f"{self.duration_s:.1f} s",
        ]
        if self.server_counters:
            lines.append(f"  instances' counters at the end: {self.server_counters}")
        for fault in self.faults:
            took = f"{fault.converged_s:.2f} s" if fault.converged_s is not None else "NEVER"
            lines.append(
                f"  {fault.name}: {fault.stored_during} stored during it, every client "
                f"had everything {took} after it ended {fault.detail}".rstrip()
            )
        if self.errors:
            lines.append(f"  error frames/lines received: {dict(self.errors)}")
        return "\n".join(lines)

    def explain(self, limit: int = 40) -> str:
        lines = [self.summary()]
        for problem in self.problems[:limit]:
            lines.append(
                f"- {problem.client} ({problem.surface}) in {problem.room}: {problem.kind}: "
                f"{problem.text}"
            )
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more")
        lines.append("harness log:")
        lines += ["  " + note for note in self.notes[-60:]]
        return "\n".join(lines)


#: The instances' counters the report shows (``/metrics``).
COUNTERS = ("parkchat_messages_filled_total", "parkchat_duplicates_dropped_total")

#: Problem kinds reported but not failing a run (see ``Report.failures``).
WARNINGS = ("refused-but-stored",)


class ConvergenceTimeout(AssertionError):
    def __init__(self, what: str, timeout: float, lagging: list[str]) -> None:
        shown = "; ".join(lagging[:12]) + (f"; +{len(lagging) - 12}" if len(lagging) > 12 else "")
        super().__init__(f"{what}: not converged after {timeout} s: {shown}")
        self.lagging = lagging


class Chaos:
    """One run: clients, traffic, faults, check. ``run()`` inside an asyncio
    loop; blocking work (processes, the database) runs in threads."""

    def __init__(self, config: Config, cluster: Cluster, redis: Any, ledger: Ledger) -> None:
        self.config = config
        self.cluster = cluster
        self.redis = redis
        self.ledger = ledger
        self.clients: list[Client] = []
        self.stopping = False
        self.sending = False
        self.down: set[int] = set()
        self.back: dict[int, asyncio.Event] = {}
        self.notes: list[str] = []
        self.stray: list[str] = []
        self.errors: Counter[str] = Counter()
        self.faults: list[FaultResult] = []
        self.tasks: set[asyncio.Future[Any]] = set()
        self.t0 = time.monotonic()
        self.sent = 0

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self.t0:7.2f} {text}"
        self.notes.append(line)
        if self.config.verbose:
            print(line, file=sys.stderr, flush=True)

    async def db(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(call, *args)

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- layout ---------------------------------------------------------------------

    def build_clients(self) -> None:
        """Per instance: two /ws clients (one in every room, one in a room
        with a small ``max_frame``), a /ws/{room} client with ``since=`` and a
        plain one, a TCP and a /mychat client. Rooms rotate with the
        instance, so every room has members of several surfaces on every
        instance; half reconnect elsewhere after a loss, half wait for their
        own instance."""
        rooms = self.config.rooms
        n = len(rooms)
        small = self.config.small_frame
        for i in range(self.config.instances):
            r = [rooms[(i + k) % n] for k in range(n)]
            self.clients += [
                AppClient(self, f"wsall{i}", i, rooms, "other"),
                AppClient(self, f"wssmall{i}", i, [r[0]], "same", max_frame=small),
                SeedClient(self, f"seedres{i}", i, [r[1]], "other", resume=True),
                SeedClient(self, f"seedplain{i}", i, [r[2]], "same", resume=False),
                LineClient(self, f"tcp{i}", i, [r[0]], "other"),
                MychatClient(self, f"mychat{i}", i, [r[1]], "same"),
            ]

    async def reconnect_target(self, client: Client) -> int:
        """Where a client whose connection was lost goes: the next live
        instance (``other``), or its own once it is back (``same``)."""
        if client.server not in self.down:
            return client.server
        if client.reconnect == "same":
            await asyncio.wait_for(self.back[client.server].wait(), 60)
            return client.server
        count = self.config.instances
        for step in range(1, count):
            candidate = (client.server + step) % count
            if candidate not in self.down:
                return candidate
        raise AssertionError("no instance up to reconnect to")

    # -- traffic ---------------------------------------------------------------------

    async def sender(self, instance: int) -> None:
        """``rate_per_instance`` messages/s from the clients whose home is
        ``instance``, round robin, on a fixed schedule (a client that is
        reconnecting skips its turn)."""
        mine = [c for c in self.clients if c.home == instance]
        interval = 1.0 / self.config.rate_per_instance
        start = time.monotonic() + instance * interval / self.config.instances
        k = 0
        while self.sending:
            k += 1
            delay = start + k * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing
            client = mine[k % len(mine)]
            if client.connected.is_set():
                await client.send()
                self.sent += 1

    # -- convergence ------------------------------------------------------------------

    def behind(self, positions: dict[str, int]) -> list[str]:
        """The clients that lack a stored message up to ``positions`` in
        their current span, or are not (re)connected; empty: converged."""
        lagging = []
        for client in self.clients:
            if not client.connected.is_set():
                lagging.append(f"{client.name}: not connected")
                continue
            for room in client.rooms:
                chain = client.chain(room)
                if chain is None:
                    lagging.append(f"{client.name}/{room}: no session")
                    continue
                missing = chain.lacking(self.ledger, positions[room])
                if missing == [-1]:
                    lagging.append(f"{client.name}/{room}: join not seen")
                elif missing:
                    lagging.append(f"{client.name}/{room}: lacks {ranges(missing)}")
        return lagging

    async def converge(self, positions: dict[str, int], timeout: float, what: str) -> float:
        """Wait until every client is connected and has everything stored
        up to ``positions``; the seconds it took. Polls every 50 ms."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            await self.db(self.ledger.refresh)
            lagging = self.behind(positions)
            if not lagging:
                return time.monotonic() - start
            if time.monotonic() > deadline:
                raise ConvergenceTimeout(what, timeout, lagging)
            await asyncio.sleep(0.05)  # poll interval

    async def all_connected(self, timeout: float) -> None:
        waits = [c.connected.wait() for c in self.clients]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout)
        except TimeoutError:
            missing = [c.name for c in self.clients if not c.connected.is_set()]
            raise AssertionError(f"not connected after {timeout} s: {missing}") from None

    # -- faults -----------------------------------------------------------------------

    async def fault(self, name: str, index: int) -> FaultResult:
        cfg = self.config
        before = await self.db(self.ledger.positions)
        started_ms = int(time.time() * 1000)
        detail = ""
        label = f"{name}#{index}"
        self.note(f"{label}: begins at {before}")
        if name == "redis":
            await asyncio.to_thread(self.redis.kill)
            await asyncio.sleep(cfg.redis_down)  # the outage's length
            await asyncio.to_thread(self.redis.start)
            detail = f"(down {cfg.redis_down:g} s)"
        elif name == "postgres":
            killed = await self.db(self.ledger.terminate_backends)
            detail = f"({killed} backends terminated)"
        elif name == "instance":
            victim = cfg.victim
            self.back[victim] = asyncio.Event()
            self.down.add(victim)
            await asyncio.to_thread(self.cluster.servers[victim].kill)
            killed_at = time.monotonic()
            await asyncio.sleep(cfg.instance_down)  # the outage's length
            await self.until_stored(before, cfg.instance_missed, cfg.converge_timeout)
            await asyncio.to_thread(self.cluster.servers[victim].start)
            self.down.discard(victim)
            self.back[victim].set()
            down = time.monotonic() - killed_at
            detail = f"(instance {victim} SIGKILLed, healthy again after {down:.1f} s)"
        else:
            raise ValueError(f"unknown fault {name}")
        ended_ms = int(time.time() * 1000)
        positions = await self.db(self.ledger.positions)
        self.note(f"{label}: over at {positions}")
        try:
            took: float | None = await self.converge(positions, cfg.converge_timeout, label)
        except ConvergenceTimeout as e:
            self.note(str(e))
            took = None
        self.note(f"{label}: converged after {took}")
        stored_during = sum(positions[r] - before[r] for r in positions)
        result = FaultResult(label, took, positions, stored_during, started_ms, ended_ms, detail)
        self.faults.append(result)
        return result

    async def until_stored(self, since: dict[str, int], count: int, timeout: float) -> None:
        """Return once every room has ``count`` messages more than ``since``."""
        deadline = time.monotonic() + timeout
        while True:
            now = await self.db(self.ledger.positions)
            if all(now[room] - since[room] >= count for room in since):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"rooms at {now}, not {count} past {since}, in {timeout} s")
            await asyncio.sleep(0.05)  # poll interval

    # -- the whole run ----------------------------------------------------------------

    async def run(self) -> Report:
        cfg = self.config
        self.build_clients()
        for client in self.clients:
            if not isinstance(client, StreamClient):
                await asyncio.to_thread(self.cluster.register, client.name, client.password)
        for client in self.clients:
            client.task = asyncio.ensure_future(client.run())
        senders: list[asyncio.Future[None]] = []
        try:
            await self.all_connected(30)
            self.note(f"{len(self.clients)} clients connected")
            self.sending = True
            senders = [asyncio.ensure_future(self.sender(i)) for i in range(cfg.instances)]
            await asyncio.sleep(cfg.steady)  # steady traffic
            for index, name in enumerate(cfg.faults, 1):
                await self.fault(name, index)
                await asyncio.sleep(cfg.steady)  # steady traffic
            self.sending = False
            await asyncio.gather(*senders)
            final = await self.settled_positions()
            self.note(f"senders stopped; final positions {final}")
            try:
                await self.converge(final, cfg.converge_timeout, "final")
            except ConvergenceTimeout as e:
                self.note(str(e))
            # A late duplicate would arrive within a delivery's time.
            await asyncio.sleep(0.5)
        finally:
            self.sending = False
            self.stopping = True
            pending = [*senders, *self.tasks]
            pending += [c.task for c in self.clients if c.task is not None]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.db(self.ledger.refresh)
        return self.check()

    async def settled_positions(self) -> dict[str, int]:
        """The rooms' positions once two reads 0.3 s apart agree (the
        writers have flushed what they accepted), bounded."""
        deadline = time.monotonic() + 15
        last = await self.db(self.ledger.positions)
        while True:
            await asyncio.sleep(0.3)  # poll interval
            now = await self.db(self.ledger.positions)
            if now == last or time.monotonic() > deadline:
                return dict(now)
            last = now

    # -- the check --------------------------------------------------------------------

    def check(self) -> Report:
        final = dict(self.ledger.known)
        problems: list[Problem] = []
        delivered = owed = resumes = replayed = pages = most_pages = 0
        for client in self.clients:
            for room in client.rooms:
                for chain in client.chains[room]:
                    got, due, found = self.check_chain(client, chain, final[room])
                    delivered += got
                    owed += due
                    resumes += len(chain.sessions) - 1
                    for session in chain.sessions[1:]:
                        replayed += session.resume_messages
                        pages += session.resume_frames
                        most_pages = max(most_pages, session.resume_frames)
                    problems += found
        for text in self.stray:
            problems.append(Problem("?", "?", "?", "stray", [], text))
        errors: Counter[str] = Counter(self.errors)
        for client in self.clients:
            for session in client.sessions:
                errors.update(session.errors)
        return Report(
            config=self.config,
            faults=self.faults,
            problems=problems,
            stored={room: len(rows) for room, rows in self.ledger.by_room.items()},
            sent=self.sent,
            delivered=delivered,
            expected=owed,
            resumes=resumes,
            replayed=replayed,
            pages=pages,
            most_pages=most_pages,
            errors=errors,
            notes=self.notes,
            clients=len(self.clients),
            duration_s=time.monotonic() - self.t0,
        )

    def check_chain(
        self, client: Client, chain: Chain, final: int
    ) -> tuple[int, int, list[Problem]]:
        """(received, owed, problems) for one span of one client in one room."""
        ledger = self.ledger
        head, last = chain.head, chain.last
        room = head.room
        stored = ledger.by_room[room]
        problems: list[Problem] = []
        label = f"session {head.number}" + (f"-{last.number}" if len(chain.sessions) > 1 else "")
        label += f" (instance {', '.join(str(s.server) for s in chain.sessions)})"

        def problem(kind: str, seqs: Iterable[int], text: str) -> None:
            problems.append(
                Problem(
                    client.name, client.surface, room, kind, sorted(set(seqs)), f"{label}: {text}"
                )
            )

        for session in chain.sessions:
            for text in session.protocol_errors[:3]:
                problem("protocol", [], f"session {session.number}: {text:.300}")
        # The stream, in arrival order, matched to the store.
        stream: list[int] = []
        for session in chain.sessions:
            for seq, content in session.stream:
                row = ledger.by_content.get(content)
                if seq is None:
                    if row is None or row.room != room:
                        problem("unknown", [], f"received {content!r:.80}, which is not stored")
                        continue
                    seq = row.seq
                elif seq not in stored:
                    problem("unknown", [seq], f"received seq {seq} ({content!r:.80}), not stored")
                    continue
                elif stored[seq].content != content:
                    problem(
                        "mismatch",
                        [seq],
                        f"seq {seq} carried {content!r:.60}, stored {stored[seq].content!r:.60}",
                    )
                stream.append(seq)
        acks: set[int] = set()
        for session in chain.sessions:
            for seq, content in session.acks:
                row = ledger.by_content.get(content)
                if row is None or row.room != room or row.seq != seq:
                    where = (row.room, row.seq) if row else "nothing"
                    problem("ack", [seq], f"ack seq {seq} for {content!r:.60}, stored as {where}")
                if seq in acks:
                    problem("duplicate", [seq], f"seq {seq} acknowledged twice")
                acks.add(seq)
        counts = Counter(stream)
        dups = [s for s, n in counts.items() if n > 1]
        if dups:
            problem(
                "duplicate",
                dups,
                f"received more than once: {ranges(dups)} {self.when(dups, room)}",
            )
        disorder = [b for a, b in itertools.pairwise(stream) if b < a]
        if disorder:
            problem("order", disorder, f"arrived after a higher seq: {ranges(disorder)}")
        if head.after is None:
            if stream:
                problem("protocol", [], "messages, but the join was never seen")
            return len(stream) + len(acks), 0, problems
        # The span it is owed: from its join (or the first message it got
        # before the join was seen, on surfaces without a seq)...
        low = head.after + 1
        early = [s for s in stream if s <= head.after]
        if early and head.exact:
            problem(
                "unexpected", early, f"at or before the join's seq {head.after}: {ranges(early)}"
            )
        elif early:
            before = [s for s in early if s <= head.before]
            if before:
                problem("unexpected", before, f"stored before it connected ({head.before})")
            after_connect = [s for s in early if s > head.before]
            if after_connect:
                low = min(after_connect)
        # ... to the end, or to the last it received if the chain was cut.
        high = final if not last.lost else max([*stream, *acks, head.after])
        allowed = chain.allowed()
        for session in chain.sessions[1:]:
            resume = session.resume
            if resume is None:
                continue
            if resume.get("count") != session.resume_messages:
                problem(
                    "resume",
                    [],
                    f"session {session.number}: resume count {resume.get('count')}, "
                    f"{session.resume_messages} messages in {session.resume_frames} frames",
                )
        # Own messages whose connection was lost before the ack: the client
        # cannot know their fate; not a delivery failure.
        unsure = {
            ledger.by_content[c].seq
            for session in chain.sessions
            if session.lost
            for c in session.unacked
            if c in ledger.by_content
        }
        refused = {
            ledger.by_content[c].seq
            for session in chain.sessions
            for c in session.refused
            if c in ledger.by_content
        }
        owed = [s for s in ledger.seqs(room, low, high) if s not in allowed]
        have = set(stream) | acks
        missing = [s for s in owed if s not in have and s not in unsure]
        # Its own message, stored, never acknowledged on a connection that
        # stayed open: an ack lost (reported once, as that).
        stale = {
            ledger.by_content[c].seq
            for session in chain.sessions
            if not session.lost and session.surface == "ws"
            for c in session.unacked
            if c in ledger.by_content
        }
        if stale:
            problem(
                "ack", stale, f"stored, never acknowledged on an open connection: {ranges(stale)}"
            )
            missing = [s for s in missing if s not in stale]
        if refused & set(missing):
            seqs = sorted(refused & set(missing))
            problem(
                "refused-but-stored", seqs, f"answered with an error, yet stored: {ranges(seqs)}"
            )
            missing = [s for s in missing if s not in refused]
        if missing:
            problem(
                "missing", missing, f"never received {ranges(missing)} {self.when(missing, room)}"
            )
        return len(stream) + len(acks), len(owed), problems

    def when(self, seqs: list[int], room: str) -> str:
        """In which phase of the run the given messages were stored."""
        stored = self.ledger.by_room[room]
        phases: Counter[str] = Counter()
        for seq in seqs:
            if seq in stored:
                phases[self.phase(stored[seq].created_ms)] += 1
        return "(stored " + ", ".join(f"{n} {p}" for p, n in phases.items()) + ")"

    def phase(self, created_ms: int) -> str:
        label = "before the first fault"
        for fault in self.faults:
            if created_ms < fault.started_ms:
                break
            label = (
                f"during {fault.name}" if created_ms <= fault.ended_ms else f"after {fault.name}"
            )
        return label


def run_chaos(
    config: Config,
    workdir: Path,
    db: str,
    redis: Any,
    add_cleanup: Callable[..., Any],
) -> Report:
    """Start the cluster, run the scenario, and return its report; the
    cluster stops at cleanup. ``redis`` is a started ``PrivateRedis`` (the
    run kills and restarts it); ``db`` a fresh PostgreSQL database URL."""
    cluster = Cluster(
        [workdir / f"instance{i}" for i in range(config.instances)],
        db,
        redis.url,
        config.server_args,
        config.presence_ttl,
    )
    add_cleanup(cluster.stop)
    cluster.start()
    ledger = Ledger(db, config.rooms)
    add_cleanup(ledger.close)
    chaos = Chaos(config, cluster, redis, ledger)

    async def bounded() -> Report:
        return await asyncio.wait_for(chaos.run(), config.deadline)

    try:
        report = asyncio.run(bounded())
        report.server_counters = cluster.counters(COUNTERS)
        return report
    except TimeoutError:
        # Report what happened so far: the clients were stopped by the
        # cancellation; what they received is checked as it stands.
        chaos.note(f"the run did not end within {config.deadline} s")
        chaos.ledger.refresh()
        report = chaos.check()
        report.problems.insert(
            0, Problem("-", "-", "-", "deadline", [], f"run cut at {config.deadline} s")
        )
        return report

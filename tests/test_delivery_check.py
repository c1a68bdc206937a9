"""The chaos test's judge, without servers: given what the store holds and
what a client received, it finds every gap, duplicate, reordering, bad
resume and unacknowledged message, and accepts a clean history. (The chaos
test passing means something only if its check can fail.)"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import TestCase

from tests.delivery_support import (
    AppClient,
    Chain,
    Chaos,
    Config,
    LineClient,
    Problem,
    Session,
    Stored,
)


class FakeLedger:
    """The store's truth, given: ``rows`` per room, contents ``<room>.<seq>``."""

    def __init__(self, rows: dict[str, int]) -> None:
        self.rooms = tuple(rows)
        self.by_room = {
            room: {seq: Stored(room, seq, seq, f"{room}.{seq}", seq) for seq in range(1, n + 1)}
            for room, n in rows.items()
        }
        self.by_content = {s.content: s for rows in self.by_room.values() for s in rows.values()}
        self.known = dict(rows)

    def seqs(self, room: str, low: int, high: int) -> list[int]:
        return sorted(s for s in self.by_room[room] if low <= s <= high)


def content(seq: int, room: str = "north") -> str:
    return f"{room}.{seq}"


class CheckTests(TestCase):
    def setUp(self) -> None:
        self.ledger = FakeLedger({"north": 6})
        self.chaos = Chaos(Config(rooms=("north",)), cluster=None, redis=None, ledger=self.ledger)  # type: ignore[arg-type]

    def app(self, *sessions: Session) -> AppClient:
        client = AppClient(self.chaos, "ws0", 0, ["north"], "other")
        self.file(client, sessions)
        return client

    def file(self, client: Any, sessions: tuple[Session, ...]) -> None:
        for session in sessions:
            chains = client.chains[session.room]
            if session.resumed_from is not None and chains:
                chains[-1].sessions.append(session)
            else:
                chains.append(Chain(session))
        self.chaos.clients.append(client)

    def session(self, number: int = 1, **fields: Any) -> Session:
        values: dict[str, Any] = {
            "client": "ws0",
            "surface": "ws",
            "room": "north",
            "number": number,
            "server": 0,
            "resumed_from": None,
            "before": 0,
            "after": 0,
            "exact": True,
        }
        values.update(fields)
        return Session(**values)

    def problems(self) -> list[Problem]:
        return self.chaos.check().problems

    def kinds(self) -> list[tuple[str, list[int]]]:
        return [(p.kind, p.seqs) for p in self.problems()]

    def test_clean(self) -> None:
        """Everything from the join on, once, in order, partly as acks of
        the client's own messages: no problem."""
        s = self.session(after=1, stream=[(2, content(2)), (4, content(4)), (5, content(5))])
        s.acks = [(3, content(3)), (6, content(6))]
        self.app(s)
        self.assertEqual(self.problems(), [])

    def test_gap_duplicate_order_mismatch(self) -> None:
        s = self.session(
            stream=[
                (1, content(1)),
                (3, content(3)),
                (2, content(2)),
                (3, content(3)),
                (5, "something else"),
            ]
        )
        self.app(s)
        self.assertEqual(
            sorted(self.kinds()),
            [("duplicate", [3]), ("mismatch", [5]), ("missing", [4, 6]), ("order", [2])],
        )

    def test_resume_continues_the_span(self) -> None:
        """A lost session resumed with last_seq: the two together must cover
        the span; the resume's count must match what was replayed."""
        first = self.session(stream=[(1, content(1)), (2, content(2))], lost=True)
        second = self.session(
            2,
            resumed_from=2,
            after=4,
            stream=[(3, content(3)), (4, content(4)), (5, content(5)), (6, content(6))],
            resume={"count": 2, "recovered": True, "first_seq": 3},
            resume_messages=2,
        )
        self.app(first, second)
        self.assertEqual(self.problems(), [])

    def test_resume_that_skips(self) -> None:
        """A resume that replays less than it announces, leaving a gap."""
        first = self.session(stream=[(1, content(1))], lost=True)
        second = self.session(
            2,
            resumed_from=1,
            after=3,
            stream=[(3, content(3)), (4, content(4)), (5, content(5)), (6, content(6))],
            resume={"count": 2, "recovered": True, "first_seq": 2},
            resume_messages=1,
        )
        self.app(first, second)
        self.assertEqual(sorted(self.kinds()), [("missing", [2]), ("resume", [])])

    def test_unrecovered_resume_may_leave_its_gap(self) -> None:
        """``recovered: false`` says where the replay begins: the gap before
        it is the server's declared limit, not a loss."""
        first = self.session(stream=[(1, content(1))], lost=True)
        second = self.session(
            2,
            resumed_from=1,
            after=6,
            stream=[(4, content(4)), (5, content(5)), (6, content(6))],
            resume={"count": 3, "recovered": False, "first_seq": 4},
            resume_messages=3,
        )
        self.app(first, second)
        self.assertEqual(self.problems(), [])

    def test_live_event_at_or_before_the_join(self) -> None:
        """On /ws the join's seq is exact: an older message after it is wrong."""
        self.app(
            self.session(after=3, stream=[(3, content(3))] + [(s, content(s)) for s in (4, 5, 6)])
        )
        self.assertEqual(self.kinds(), [("unexpected", [3])])

    def test_acks(self) -> None:
        """A stored message never acknowledged on a connection that stayed
        open is a problem; on one that was lost it is the client's unknown."""
        open_session = self.session(stream=[(s, content(s)) for s in (1, 2, 4, 5, 6)])
        open_session.unacked = {content(3)}
        self.app(open_session)
        self.assertEqual(self.kinds(), [("ack", [3])])

    def test_unacked_on_a_lost_connection(self) -> None:
        lost = self.session(stream=[(1, content(1)), (2, content(2))], lost=True)
        lost.unacked = {content(3)}
        resumed = self.session(
            2,
            resumed_from=2,
            after=6,
            stream=[(4, content(4)), (5, content(5)), (6, content(6))],
            resume={"count": 3, "recovered": True, "first_seq": 4},
            resume_messages=3,
        )
        self.app(lost, resumed)
        self.assertEqual(self.problems(), [])

    def test_refused_but_stored(self) -> None:
        s = self.session(stream=[(s, content(s)) for s in (1, 2, 4, 5, 6)])
        s.refused = {content(3)}
        self.app(s)
        self.assertEqual(self.kinds(), [("refused-but-stored", [3])])

    def test_surface_without_seq(self) -> None:
        """TCP: matched by content; the span begins where the join was seen
        (or at an earlier message it got), and a cut session ends at the
        last message it received."""
        client = LineClient(self.chaos, "tcp0", 0, ["north"], "other")
        cut = self.session(
            surface="tcp",
            exact=False,
            before=0,
            after=2,
            stream=[(None, content(s)) for s in (2, 3, 5)],
            lost=True,
        )
        fresh = self.session(
            2, surface="tcp", exact=False, before=5, after=5, stream=[(None, content(6))]
        )
        self.file(client, (cut, fresh))
        self.assertEqual(self.kinds(), [("missing", [4])])
        self.assertIn("tcp0 ", f"{self.problems()[0].client} ")

    def test_message_stored_before_connecting(self) -> None:
        client = LineClient(self.chaos, "tcp0", 0, ["north"], "other")
        late = self.session(
            surface="tcp",
            exact=False,
            before=3,
            after=4,
            stream=[(None, content(s)) for s in (2, 5, 6)],
        )
        self.file(client, (late,))
        self.assertEqual(self.kinds(), [("unexpected", [2])])

    def test_convergence_poll(self) -> None:
        """``Chain.lacking`` (what the convergence wait polls) agrees with the
        final check: a gap is lacking until it arrives; a declared one is not."""
        first = self.session(stream=[(1, content(1))], lost=True)
        second = self.session(
            2,
            resumed_from=1,
            after=6,
            stream=[(4, content(4)), (5, content(5))],
            resume={"count": 2, "recovered": False, "first_seq": 4},
            resume_messages=2,
        )
        client = self.app(first, second)
        chain = client.chains["north"][0]
        for session in chain.sessions:
            chain.have.update(seq for seq, _ in session.stream if seq is not None)
        self.assertEqual(chain.lacking(self.ledger, 6), [6])  # type: ignore[arg-type]
        chain.have.add(6)
        self.assertEqual(chain.lacking(self.ledger, 6), [])  # type: ignore[arg-type]

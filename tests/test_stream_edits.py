"""Edits, deletions and topics on the MaChat stream protocol (TCP and
/mychat): notice lines, ``/topic``, and the topic shown on joining; run for
both carriers as tests/test_stream.py runs its behaviour."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from parkchat.model import Message
from tests.helpers import FakeParticipant
from tests.test_stream import LineCarrier, MyChatCarrier, StreamCase, StreamHelpers, handshake


class EditNoticeBehaviour(StreamHelpers):
    """What a terminal sees of edits, deletions and topics."""

    service: Any
    register: Any
    successResultOf: Any
    passwords: dict[str, str]

    def other_device(self, nickname: str, user_id: int, room: str = "dev") -> FakeParticipant:
        """Another connection of the same account (what /ws would be)."""
        device = FakeParticipant(nickname, user_id=user_id)
        self.service.connect(device)
        self.service.join(device, room)
        return device

    def test_edit_and_delete_notices(self) -> None:
        """Every member sees ``*** mina edited #N: text`` (further lines
        indented) and ``*** message #N deleted``, notices on or off."""
        user_id = self.register("mina")
        mina = self.join("mina", password=self.passwords["mina"])
        watcher = self.join("watcher")
        mina.send_line("helo")
        self.settle()
        self.assertEqual(watcher.take(), ["mina:helo"])
        device = self.other_device("mina", user_id)
        edited: Message = self.successResultOf(
            Deferred.fromCoroutine(self.service.edit_message(device, "dev", 1, "hello\nworld"))
        )
        self.settle()
        expected = ["*** mina edited #1: hello", "***   world"]
        self.assertEqual(watcher.take(), expected)
        self.assertEqual(mina.take()[-2:], expected)
        self.successResultOf(
            Deferred.fromCoroutine(self.service.delete_own_message(device, "dev", edited.seq))
        )
        self.settle()
        self.assertEqual(watcher.take(), ["*** message #1 deleted"])

    def test_topic_command(self) -> None:
        """``/topic`` shows the topic, ``/topic text`` sets it (every member
        is told), ``/topic -`` clears it; joining shows a topic that is set."""
        mina = self.join("mina")
        mina.send_line("/topic")
        self.settle()
        self.assertEqual(mina.take(), ["*** no topic in dev"])
        mina.send_line("/topic  Ship it on Friday ")
        self.settle()
        self.assertEqual(mina.take(), ["*** mina set the topic: Ship it on Friday"])
        late = self.connect_client()
        late.send_line(handshake("late"))
        self.settle()
        [line] = late.take()
        self.assertTrue(line.startswith("*** topic of dev: Ship it on Friday (set by mina, "), line)
        late.send_line("/topic -")
        self.settle()
        self.assertEqual(late.take(), ["*** late cleared the topic"])
        self.assertEqual(mina.take(), ["*** late cleared the topic"])
        mina.send_line("/topic a\tb")
        self.settle()
        [error] = mina.take()
        self.assertTrue(error.startswith("*** error (invalid_content): "), error)


class LineEditTests(EditNoticeBehaviour, LineCarrier, StreamCase):
    """Over TCP."""


class MyChatEditTests(EditNoticeBehaviour, MyChatCarrier, StreamCase):
    """Over /mychat."""

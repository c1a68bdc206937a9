"""Topics, edits and deletions on IRC: TOPIC with 332/333/331 and RPL_TOPIC
on JOIN; a NOTICE to the channel for an edit or a deletion (IRC has no
command for either). Kept apart from tests/test_irc.py, over its IrcCase."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from parkchat.model import RoomTopic
from tests.helpers import FakeParticipant
from tests.test_irc import START, IrcCase, commands


class TopicTests(IrcCase):
    def test_set_and_query(self) -> None:
        """``TOPIC #dev :text`` sets the topic: every member, the setter
        too, gets the TOPIC line; ``TOPIC #dev`` then answers 332 and 333
        (who and when, in seconds); an empty text clears it (331)."""
        mina = self.joined("mina")
        other = self.joined("other")
        mina.take()  # other's JOIN
        [line] = self.send(mina, "TOPIC #dev :Release on Friday")
        self.assertEqual(
            (line.prefix, line.command, line.params),
            ("mina!mina@irc.parkchat", "TOPIC", ["#dev", "Release on Friday"]),
        )
        self.assertEqual(commands(other.take()), ["TOPIC"])
        topic, who = self.send(other, "TOPIC #dev")
        self.assertEqual((topic.command, topic.params[1:]), ("332", ["#dev", "Release on Friday"]))
        self.assertEqual((who.command, who.params[1:]), ("333", ["#dev", "mina", str(int(START))]))
        self.assertEqual(commands(self.send(mina, "TOPIC #dev :")), ["TOPIC"])
        self.assertEqual(commands(self.send(mina, "TOPIC #dev")), ["331"])

    def test_topic_on_join(self) -> None:
        """JOIN answers RPL_TOPIC and RPL_TOPICWHOTIME before the names
        when the channel has a topic, nothing about it when not."""
        self.successResultOf(
            self.store.set_room_topic("dev", RoomTopic("stored topic", "carol", 5_000))
        )
        client = self.register("mina")
        received = self.send(client, "JOIN #dev")
        self.assertEqual(commands(received), ["JOIN", "332", "333", "353", "366"])
        self.assertEqual(received[1].text, "stored topic")
        again = self.register("again")
        self.assertEqual(
            commands(self.send(again, "JOIN #dev")), ["JOIN", "332", "333", "353", "366"]
        )
        self.assertEqual(commands(self.send(again, "JOIN #empty")), ["JOIN", "353", "366"])

    def test_refusals(self) -> None:
        """Not on the channel: 442; a topic with control characters: FAIL."""
        mina = self.register("mina")
        self.assertEqual(commands(self.send(mina, "TOPIC #dev :hello")), ["442"])
        self.send(mina, "JOIN #dev")
        [error] = self.send(mina, "TOPIC #dev :bad \x07 bell")
        self.assertEqual(error.command, "FAIL")
        self.assertEqual(error.params[:3], ["TOPIC", "INVALID_CONTENT", "#dev"])


class EditNoticeTests(IrcCase):
    def test_edit_and_delete(self) -> None:
        """An edit is a NOTICE from the server to the channel, ``mina
        edited #1: text``; a deletion ``message #1 deleted``."""
        user_id, _ = self.account("mina")
        watcher = self.joined("watcher")
        device = FakeParticipant("mina", user_id=user_id)
        self.service.connect(device)
        self.service.join(device, "dev")
        d = self.service.post(device, "dev", "helo")
        self.settle()
        posted = self.successResultOf(d)
        watcher.take()
        self.successResultOf(
            Deferred.fromCoroutine(self.service.edit_message(device, "dev", posted.seq, "hello"))
        )
        self.settle()
        [notice] = watcher.take()
        self.assertEqual(
            (notice.prefix, notice.command, notice.params),
            ("irc.parkchat", "NOTICE", ["#dev", "mina edited #1: hello"]),
        )
        self.successResultOf(
            Deferred.fromCoroutine(self.service.delete_own_message(device, "dev", posted.seq))
        )
        self.settle()
        [notice] = watcher.take()
        self.assertEqual(notice.params, ["#dev", "message #1 deleted"])

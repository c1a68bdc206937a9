"""``parkchat-client``: a terminal client for parkchat rooms.

It speaks the plain-TCP line protocol (MaChat, MISSION section B) or the room
WebSocket ``/ws/{room}`` with HTTP Basic auth (section A). The pieces are kept
apart so that each can be tested without a terminal or a network:

* ``options``  -- command line (with the MaChat seed's single-dash flags);
* ``render``   -- pure functions turning server data into safe terminal text;
* ``catchup``  -- what to show after a (re)connect without repeating anything;
* ``session``  -- the client state machine and both transport protocols;
* ``main``     -- wiring to the reactor, stdio and ``ClientService``.
"""

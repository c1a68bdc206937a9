"""twistd plugin: ``twistd parkchat``. The tap module is named by string so that
plugin discovery does not import parkchat (and its reactor-touching imports)."""

from twisted.application.service import ServiceMaker

parkchat = ServiceMaker(
    "parkchat",
    "parkchat.tap",
    "Real-time chat server: WebSocket, plain TCP and REST sharing rooms and history.",
    "parkchat",
)

`parkchat-client -address ws://HOST:PORT/mychat` speaks the line protocol inside WebSocket messages, as MaChat's WebSocket client does (it used to fail with `bad port`).

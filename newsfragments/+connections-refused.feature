`/metrics`: `parkchat_connections_refused_total` counts sockets closed at accept by `--max-connections-per-ip`.

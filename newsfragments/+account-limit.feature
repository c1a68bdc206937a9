Multi-instance: `--max-connections-per-user` now holds for the whole deployment (instances share a connection count per account with their presence), instead of N times the limit with N instances.

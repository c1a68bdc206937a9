Direct messages on `/ws` carry their position in the conversation (`seq`, in `chat` frames, their `ack` and `direct_history`), and `get_direct_history` pages by `after_seq`/`before_seq`.

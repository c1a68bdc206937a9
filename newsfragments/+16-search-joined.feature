Search covers the rooms the account has joined (its account state) or is in now on any surface, and its own direct messages; before, every room.

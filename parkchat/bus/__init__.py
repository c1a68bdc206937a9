"""Fan-out between instances: ``local`` (one process) and, later, ``redis``."""

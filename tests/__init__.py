"""parkchat's tests: run with ``python -m twisted.trial tests`` (or pytest)."""

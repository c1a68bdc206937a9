"""Storage: every line of SQL parkchat runs lives in this package."""

#: ``--db`` values starting with one of these name a PostgreSQL database
#: (``store/postgres.py``, which needs psycopg2); anything else but
#: ``:memory:`` is a SQLite file.
POSTGRES_URL_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(db: str) -> bool:
    """Whether ``--db`` names a PostgreSQL database rather than a SQLite file."""
    return db.startswith(POSTGRES_URL_SCHEMES)

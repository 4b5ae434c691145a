"""Alembic migrations of an index's PostgreSQL schema: applied when an index opens, so an upgrade never needs a rebuild."""

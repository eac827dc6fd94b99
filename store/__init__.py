"""Persistence: SQLAlchemy 2 models, Alembic migrations and the jobs that write answers."""

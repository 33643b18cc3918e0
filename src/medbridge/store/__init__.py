"""Persistence: SQLAlchemy 2 tables, Alembic migrations, engine set-up, repositories.
The same migrations run on SQLite (embedded default) and PostgreSQL (scale-out)."""

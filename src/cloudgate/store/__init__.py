"""The store: SQLAlchemy models, Alembic migrations and repositories (SQLite or PostgreSQL)."""

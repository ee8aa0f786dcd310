"""Alembic migrations for intake (installed as the `intake_migrations` package)."""

"""Persistence: SQLAlchemy tables, the async engine, migrations and repositories."""

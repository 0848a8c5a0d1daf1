"""Alembic migrations, shipped in the wheel so `bothub migrate` works wherever it is installed."""

"""Alembic migrations, shipped inside the wheel so `bothub migrate` works wherever it is installed."""

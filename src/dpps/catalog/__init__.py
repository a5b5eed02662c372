"""Catalog: the SQLAlchemy schema, its Alembic migrations and the functions that read and write it.

Functions here take the session they are given and never commit: only the outermost layer
(a CLI command, a REST handler, a daemon's ``run_once``) owns the transaction.
"""

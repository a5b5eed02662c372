"""Helpers for tests and benchmarks that need real servers (PostgreSQL) or sample data."""

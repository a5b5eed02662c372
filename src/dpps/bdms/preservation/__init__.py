"""Keeping bytes safe over time: fixity audits, the reaper and deletion, health, the sub-API."""

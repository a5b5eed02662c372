"""The REST API (FastAPI): ``create_app(archive_or_config)``; see ``app.py``."""

from dpps.oms.api.app import app_from_env, create_app

__all__ = ["app_from_env", "create_app"]

"""HTTP conventions the API server (``dpps.oms``) and its client (``dpps.client``) share.

Kept below both, free of server imports: the client (and with it the remote CLI) must start
fast and never load FastAPI or the catalog. The error classes a problem type may name are
``dpps.core.errors.ERROR_CLASSES``.
"""

from __future__ import annotations

PROBLEM_TYPE_PREFIX = "urn:dpps:problem:"
PLACEHOLDER = "<upload>"
SIDECAR_HEADER = "Dpps-Sidecar"
UPLOAD_PATH = "/api/v1/ingest"
CONTENT_PATH = "/api/v1/content/"

"""A model already built by a handler, sent as JSON without FastAPI validating it again.

FastAPI treats a returned model like any value: it dumps it, validates the dump against the
``response_model`` and encodes it again with the standard ``json`` module. For a model the
handler has just built and validated, that is three times the work; pydantic's own
``model_dump_json`` (Rust) writes the same document in one pass. The hot read paths (locate,
query) answer this way; ``response_model`` stays on the route for the OpenAPI document.
"""

from __future__ import annotations

from fastapi.responses import Response
from pydantic import BaseModel


def model_response(model: BaseModel, status_code: int = 200) -> Response:
    return Response(
        model.model_dump_json(), status_code=status_code, media_type="application/json"
    )

"""The web dashboard served by the API app (``/ui``)."""

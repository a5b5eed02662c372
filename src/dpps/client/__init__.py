"""The REST client: remote twins of the library's facades, speaking to ``dpps serve`` over HTTP."""

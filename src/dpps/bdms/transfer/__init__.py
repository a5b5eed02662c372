"""The transfer daemon: claim queued transfers, copy them with verification, record outcomes."""

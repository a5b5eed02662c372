"""Scenarios on a running testbed (``dpps testbed scenario NAME``): per-site processes placed
as a deployment places them, files through them, and a report of what crossed which link."""

"""The multi-site testbed: one network namespace per data center, a WAN with bandwidth caps and
round-trip latency, real storage servers per site (see docs/deployment.md)."""

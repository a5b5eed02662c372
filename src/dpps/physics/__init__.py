"""Models of the physics the cameras see (air showers, muons, Cherenkov light), shared by the
ACADA simulator and SimPipe; pure functions, no I/O (see README.md)."""

"""The instrument model: cameras, sites and telescopes, event types, time conventions,
pointing geometry and the DL0 format, shared by the ACADA simulator and the pipelines
(see README.md)."""

"""Scenarios: whole stories played on one archive through the public APIs (``dpps night``).

A scenario drives the site simulator, the archive's daemons and the WMS in one process, the
way an operator and the sites would; it may use pipelines' definitions, never the reverse.
"""

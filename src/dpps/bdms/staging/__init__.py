"""Tape staging: the stager daemon and the client half that waits for (or performs) a stage."""

"""The ACADA simulator: realistic DL0 data as a CTAO telescope site writes it (see README.md)."""

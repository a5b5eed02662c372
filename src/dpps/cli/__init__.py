"""The ``dpps`` command line: parses, calls :class:`dpps.Archive`, formats. Nothing else."""

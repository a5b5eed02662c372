"""The dpps version, in the bottom layer so that every layer may stamp it on what it writes.

It lived in ``dpps/__init__.py``, which lazily imports ``dpps.bdms.archive``: the archive's
export taking the version from the package root was the one import arrow running up the
layers. ``dpps.__version__`` re-exports this value; keep it equal to ``pyproject.toml``'s.
"""

from __future__ import annotations

__version__ = "0.1.0"

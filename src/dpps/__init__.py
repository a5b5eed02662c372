"""dpps: Data Processing and Preservation System.

The public entry point for Python users is :class:`dpps.Archive`; the CLI and the REST API are
thin layers over it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dpps.core.version import __version__

__all__ = ["Archive", "__version__"]

if TYPE_CHECKING:
    from dpps.bdms.archive import Archive


def __getattr__(name: str) -> Any:
    # Imported lazily so that `import dpps` (e.g. for the version) stays cheap and the CLI's
    # --help does not pay for SQLAlchemy and astropy.
    if name == "Archive":
        from dpps.bdms.archive import Archive

        return Archive
    raise AttributeError(name)

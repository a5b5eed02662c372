"""The version lives in ``dpps.core.version``; the package root and the packaging agree."""

from __future__ import annotations

import tomllib
from pathlib import Path

import dpps
from dpps.core.version import __version__


def test_package_root_re_exports_the_core_version() -> None:
    assert dpps.__version__ is __version__


def test_version_equals_the_one_in_pyproject() -> None:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    assert tomllib.loads(pyproject.read_text())["project"]["version"] == __version__

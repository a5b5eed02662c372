"""The pipeline tool lifecycle: typed configuration, setup -> start -> finish, provenance.

Modelled on ctapipe's ``Tool``: resources are closed through an ExitStack even on error, exit
codes are documented, and every run writes a provenance record (inputs with checksums, outputs,
effective configuration, software versions, host, times) next to its outputs. Preservation
depends on that record: a DL3 file is only as trustworthy as the chain that made it. Run as a
WMS job, the tool's ``provenance.json`` is archived with every output, inside the WMS's own
record under ``activity`` (``dpps.wms.outputs.provenance``).

Algorithms stay pure functions in their own modules; a Tool only parses its configuration,
opens files, calls them and writes results.
"""

from __future__ import annotations

import datetime as dt
import getpass
import importlib.metadata
import json
import os
import platform
import socket
import sys
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from dpps.core.errors import ConfigError, DppsError
from dpps.core.version import __version__
from dpps.storage.checksums import checksum_file

#: Documented exit codes of ``dpps pipeline run`` and of WMS pipeline jobs.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130

PROVENANCE_NAME = "provenance.json"
_PACKAGES = (
    "dpps",
    "numpy",
    "astropy",
    "scipy",
    "h5py",
    "ctapipe",
    "pyirf",
    "gammapy",
    "scikit-learn",
    "protozfits",
)


class ToolConfig(BaseModel):
    """Base of every tool configuration: typed, documented, misspelled keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class OutputProduct:
    """A file a tool produced, with what the archive needs to register it."""

    path: Path
    data_level: str
    product_type: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class ToolResult:
    exit_code: int
    outputs: list[OutputProduct]
    provenance: dict[str, Any]
    error: str | None = None


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


class Tool[C: ToolConfig](ABC):
    """One pipeline step. Subclasses set ``name``, ``config_class`` and implement ``start``."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    config_class: ClassVar[type[ToolConfig]]

    def __init__(self, config: C, inputs: Mapping[str, Sequence[Path]], output_dir: Path):
        self.config = config
        self.inputs = {k: [Path(p) for p in v] for k, v in inputs.items()}
        self.output_dir = Path(output_dir)
        self.outputs: list[OutputProduct] = []
        self.stack = ExitStack()

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], inputs: Mapping[str, Sequence[Path]], output_dir: Path
    ) -> Tool[C]:
        try:
            config = cls.config_class.model_validate(dict(data))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"{cls.name}: invalid configuration: {problems}") from None
        return cls(config, inputs, output_dir)  # type: ignore[arg-type]

    # -- lifecycle ---------------------------------------------------------------------------
    def setup(self) -> None:
        """Check inputs and open resources (register them on ``self.stack``)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)

    @abstractmethod
    def start(self) -> None:
        """Do the work; append every file written to ``self.outputs``."""

    def finish(self) -> None:  # noqa: B027 - optional hook, most tools need none
        """Flush and summarise; resources are closed by the ExitStack afterwards."""

    def add_output(self, path: Path, data_level: str, product_type: str, **metadata: Any) -> Path:
        self.outputs.append(OutputProduct(Path(path), data_level, product_type, dict(metadata)))
        return Path(path)

    def input(self, name: str) -> list[Path]:
        try:
            return self.inputs[name]
        except KeyError:
            raise ConfigError(f"{self.name}: missing input {name!r}") from None

    def run(self) -> ToolResult:
        """setup -> start -> finish; always writes provenance, never raises for tool errors."""
        started = time.time()
        code, error = EXIT_OK, None
        try:
            with self.stack:
                self.setup()
                self.start()
                self.finish()
        except KeyboardInterrupt:
            code, error = EXIT_INTERRUPTED, "interrupted"
        except ConfigError as exc:
            code, error = EXIT_CONFIG, str(exc)
        except DppsError as exc:
            code, error = EXIT_FAILURE, str(exc)
        except Exception as exc:  # the record of a failed run matters as much as a good one
            code, error = EXIT_FAILURE, f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        provenance = self.provenance(started, time.time(), code, error)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / PROVENANCE_NAME).write_text(
            json.dumps(provenance, indent=2, default=str), encoding="utf-8"
        )
        return ToolResult(code, self.outputs if code == EXIT_OK else [], provenance, error)

    def provenance(
        self, started: float, ended: float, code: int, error: str | None
    ) -> dict[str, Any]:
        def describe(path: Path) -> dict[str, Any]:
            entry: dict[str, Any] = {"path": str(path)}
            if path.is_file():
                size, sums = checksum_file(path, ("adler32",))
                entry.update(bytes=size, adler32=sums["adler32"])
            return entry

        return {
            "tool": self.name,
            "tool_version": __version__,
            "exit_code": code,
            "error": error,
            "config": self.config.model_dump(mode="json"),
            "inputs": {k: [describe(p) for p in v] for k, v in self.inputs.items()},
            "outputs": [
                describe(o.path) | {"data_level": o.data_level, "product_type": o.product_type}
                for o in self.outputs
            ],
            "software": software_versions(),
            "host": socket.gethostname(),
            "user": getpass.getuser(),
            "pid": os.getpid(),
            "python": sys.executable,
            "started": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
            "ended": dt.datetime.fromtimestamp(ended, dt.UTC).isoformat(),
            "duration_s": round(ended - started, 3),
        }


#: name -> Tool class; pipeline modules register themselves with :func:`register_tool`.
TOOLS: dict[str, type[Tool[Any]]] = {}


def register_tool[T: type[Tool[Any]]](cls: T) -> T:
    if cls.name in TOOLS and TOOLS[cls.name] is not cls:
        raise ValueError(f"two pipeline tools named {cls.name!r}")
    TOOLS[cls.name] = cls
    return cls


def load_tools() -> dict[str, type[Tool[Any]]]:
    """Import the pipeline packages so their tools register; returns the registry."""
    for module in ("simpipe", "calibpipe", "datapipe", "qualpipe"):
        try:
            importlib.import_module(f"dpps.pipelines.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"dpps.pipelines.{module}":
                raise
    return TOOLS


def get_tool(name: str) -> type[Tool[Any]]:
    # "simpipe-simulate" lives in dpps.pipelines.simpipe: importing only that package saves a
    # job seconds of imports (scikit-learn, matplotlib) it would never use.
    package = name.partition("-")[0]
    if name not in TOOLS and package in ("simpipe", "calibpipe", "datapipe", "qualpipe"):
        importlib.import_module(f"dpps.pipelines.{package}")
    tools = TOOLS if name in TOOLS else load_tools()
    try:
        return tools[name]
    except KeyError:
        known = ", ".join(sorted(tools)) or "none"
        raise ConfigError(f"unknown pipeline tool {name!r} (known: {known})") from None


def run_tool(
    name: str,
    config: Mapping[str, Any] | Path | None,
    inputs: Mapping[str, Sequence[Path]],
    output_dir: Path,
) -> ToolResult:
    """Run a registered tool by name; ``config`` is a mapping or a YAML file."""
    if isinstance(config, Path):
        try:
            data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read tool configuration {config}: {exc}") from None
    else:
        data = dict(config or {})
    return get_tool(name).from_mapping(data, inputs, output_dir).run()


def wms_entry(*, inputs: Mapping[str, Any], parameters: Mapping[str, Any], outdir: Path) -> int:
    """Entry point for WMS Python tools (``dpps.pipelines.tool:wms_entry``).

    ``parameters`` holds ``tool`` (the name) and ``config`` (a mapping); File inputs arrive as
    paths or lists of paths. Outputs and provenance land in ``outdir``; the WMS registers them.
    """
    params = dict(parameters)
    name = str(params.pop("tool"))
    config = params.pop("config", {}) or {}
    if params:
        raise ConfigError(f"unknown WMS parameters for pipeline tool: {sorted(params)}")
    files = {k: (v if isinstance(v, list) else [v]) for k, v in inputs.items()}
    result = run_tool(
        name, config, {k: [Path(p) for p in v] for k, v in files.items()}, Path(outdir)
    )
    manifest = [
        {
            "path": str(o.path),
            "data_level": o.data_level,
            "product_type": o.product_type,
            "metadata": o.metadata,
        }
        for o in result.outputs
    ]
    (Path(outdir) / "outputs.json").write_text(
        json.dumps(manifest, indent=2, default=str), encoding="utf-8"
    )
    if result.error:
        print(f"{name}: {result.error}", file=sys.stderr)
    return result.exit_code

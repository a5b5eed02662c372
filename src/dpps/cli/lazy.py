"""The root command group that imports a command's module only when that command runs.

Why: the command modules import the library (SQLAlchemy, astropy, pydantic models, the
daemons' registry); importing all of them to print ``dpps --version`` or ``dpps --help`` took
1.5 s. The root group knows each top-level name, the modules whose ``register(app)`` builds
it and its one-line summary (a ``LazyCommand`` in the table of ``dpps.cli.main``), and
imports the modules of the one command being run. The top level's help and completion show
the table's summaries without importing anything; a test holds the table to what the modules
register.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

#: The package holding the command modules named in the table.
PACKAGE = "dpps.cli"


@dataclass(frozen=True)
class LazyCommand:
    """A top-level command or group: the modules whose ``register`` builds it (in the order
    they run: a later one may add to a group an earlier one made) and the summary shown in
    ``dpps --help`` (the first paragraph of its help text)."""

    modules: tuple[str, ...]
    summary: str


def summary_of(command: Any) -> str:
    """What the parent's ``--help`` shows for a command: the first paragraph of its help, on
    one line (the help panel wraps it)."""
    text = command.short_help or command.help or ""
    return " ".join(inspect.cleandoc(text).split("\n\n")[0].split())


def build(modules: Sequence[str]) -> TyperGroup:
    """The group made by running ``register`` of each module on a fresh application: what the
    root would hold if it imported these modules eagerly."""
    app = typer.Typer()
    for name in modules:
        importlib.import_module(f"{PACKAGE}.{name}").register(app)
    return typer.main.get_group(app)


class _Commands(MutableMapping[str, Any]):
    """The root's ``commands``: every name of the table, each built on first access (so
    Click's lookup, listing and "did you mean" suggestions work unchanged)."""

    def __init__(self, table: Mapping[str, LazyCommand]) -> None:
        self.table = table
        self.loaded: dict[str, Any] = {}
        self.built: dict[tuple[str, ...], TyperGroup] = {}

    def __getitem__(self, name: str) -> Any:
        if name in self.loaded:
            return self.loaded[name]
        entry = self.table[name]
        group = self.built.get(entry.modules)
        if group is None:
            group = self.built[entry.modules] = build(entry.modules)
        command = self.loaded[name] = group.commands[name]
        return command

    def __setitem__(self, name: str, command: Any) -> None:
        self.loaded[name] = command

    def __delitem__(self, name: str) -> None:
        raise TypeError("commands of the dpps root cannot be removed")

    def __iter__(self) -> Iterator[str]:
        yield from self.table
        yield from (n for n in self.loaded if n not in self.table)

    def __len__(self) -> int:
        return len(set(self.table) | set(self.loaded))

    def __contains__(self, name: object) -> bool:
        return name in self.table or name in self.loaded


class LazyGroup(TyperGroup):
    """A ``TyperGroup`` whose top-level commands come from ``table``, built on first use."""

    #: Set by ``dpps.cli.main`` before the group is built: name -> modules and summary.
    table: Mapping[str, LazyCommand] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands(self.table)
        self._summaries_only = False

    def list_commands(self, ctx: Any) -> list[str]:
        """The names, in the table's order, without building any command."""
        return list(self.commands)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """The real command (its modules imported now) or, while the top level's help or
        completion lists the names, a stand-in carrying the summary only."""
        entry = self.table.get(cmd_name)
        if self._summaries_only and entry is not None:
            return TyperCommand(name=cmd_name, help=entry.summary)
        return self.commands.get(cmd_name)

    @contextmanager
    def _listing(self) -> Iterator[None]:
        previous, self._summaries_only = self._summaries_only, True
        try:
            yield
        finally:
            self._summaries_only = previous

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with self._listing():
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx: Any, incomplete: str) -> Any:
        with self._listing():
            return super().shell_complete(ctx, incomplete)

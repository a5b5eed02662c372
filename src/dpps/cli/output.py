"""Terminal output: rich tables and progress bars for people, JSON for programs.

Progress bars appear only on an interactive terminal and never with ``--json``, so piping a
command into another program yields clean output.

User data (file names, metadata values, error messages) is never read as Rich markup: both
consoles print text as it is (``markup=False``), so ``note=[/]`` or a file named ``[bold].fits``
prints literally instead of crashing or vanishing. Styling is opt-in through ``styled``, whose
template is markup and whose values are escaped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from dpps.bdms.types import to_jsonable

console = Console(highlight=False, soft_wrap=False, markup=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


def styled(template: str, *values: Any) -> Text:
    """``styled("[red]failed:[/red] {}", error)``: the template's markup styles the line, the
    values print exactly as they are (escaped), whatever brackets they hold."""
    return Text.from_markup(template.format(*(escape(str(v)) for v in values)))


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")


def human_bytes(n: int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if value < 1000 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


@contextmanager
def progress_bar(
    total: int, description: str, *, enabled: bool
) -> Iterator[Callable[[int], None]]:
    """Yield an ``advance(n)`` callable; draws a bar only when enabled and on a terminal."""
    if not enabled or not err_console.is_terminal or total <= 1:
        yield lambda _n: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)

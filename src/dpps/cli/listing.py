"""Every listing command's output: a table for people, JSON, CSV or plain identifiers for pipes.

Why one module: operators complained (issue 14) that at 80 columns tables broke DIDs, states
and timestamps inside words (a DID over five lines, ``REPLICATIN`` / ``G``), that nothing
fed ``xargs`` or a spreadsheet, and that ``ls --json`` silently stopped at 100 rows. Each
listing now describes its rows once (a ``Listing``) and this module renders them in the
format asked with ``--output/-o`` (``--json`` stays as its alias):

- ``table``: a column marked ``whole`` (identifiers, states, times, numbers) is never wrapped
  or cut; free-text columns wrap between words. When the whole columns do not fit the
  terminal, each record is printed as a block of ``name: value`` lines instead, so a
  long DID stays on one line at any width. A page that is not everything says
  "showing N of TOTAL".
- ``json``: the REST API's page, ``{"items", "total", "limit", "offset"}``, so a script
  sees how many match in all and asks for the next page with ``--offset``.
- ``csv``: the ``csv`` module's quoting, a header row, raw values (bytes as numbers).
- ``plain``: the identifier column alone, one per line (Rucio's ``--short``), for ``xargs``.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dpps.cli.output import console, emit_json, err_console
from dpps.core.errors import InvalidInput

#: Free-text columns keep at least this many characters before the table gives way to blocks.
MIN_TEXT_WIDTH = 12


class OutputFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    PLAIN = "plain"


OutputOpt = Annotated[
    OutputFormat | None,
    typer.Option(
        "--output",
        "-o",
        case_sensitive=False,
        help="table (people), json (page with total), csv (header row), plain (one "
        "identifier per line, for xargs). --json is -o json.",
    ),
]


def output_format(output: OutputFormat | None, json_: bool) -> OutputFormat:
    """The format a listing command prints: ``--output``, or ``json`` for ``--json``; the
    two together must agree (``--json -o csv`` is refused rather than guessed)."""
    if json_ and output not in (None, OutputFormat.JSON):
        raise InvalidInput(f"--json and --output {output} disagree: give one of them")
    if json_:
        return OutputFormat.JSON
    return output or OutputFormat.TABLE


@dataclass(frozen=True, slots=True)
class Column:
    """A column: its header, whether its values must stay whole (identifiers, states, times,
    numbers: ``whole``) or may wrap between words (free text), and how the table shows a
    value (``show``, e.g. human-readable bytes; CSV keeps the raw value)."""

    name: str
    whole: bool = True
    show: Callable[[Any], str] | None = None


@dataclass(frozen=True, slots=True)
class Listing:
    """One page of a listing, ready for any format.

    ``rows`` hold raw values in ``columns`` order; ``items`` are the records JSON prints
    (the same the library and REST API return); ``key`` is the column ``plain`` prints.
    ``total`` is how many match in all (``None``: the page ends the list, or, with ``more``,
    there are more rows than their source can count); ``offset`` and ``limit`` are the page
    asked for (``limit`` ``None``: no limit)."""

    columns: Sequence[Column]
    rows: Sequence[Sequence[Any]]
    items: Sequence[Any]
    total: int | None = None
    offset: int = 0
    limit: int | None = None
    key: int = 0
    title: str | None = None
    more: bool = False
    #: Whether the command takes ``--offset`` (else the notice says to raise ``--limit``).
    paged: bool = True

    @property
    def matches(self) -> int | None:
        """All matches: ``total``, or the rows up to this page's end (``None``: unknown)."""
        if self.total is not None:
            return self.total
        return None if self.more else self.offset + len(self.rows)

    def truncated(self) -> bool:
        matches = self.matches
        return self.offset > 0 or matches is None or self.offset + len(self.rows) < matches


def probe[T](items: list[T], limit: int) -> tuple[list[T], bool]:
    """For sources that cannot count: ask for ``limit + 1`` items, then this gives the page
    and whether there are more."""
    return items[:limit], len(items) > limit


def cell(value: Any) -> str:
    """A value as text: empty for None, ISO 8601 for times (to the second), else ``str``."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def emit(listing: Listing, fmt: OutputFormat, *, width: int | None = None) -> None:
    """Print ``listing`` in ``fmt`` on stdout (the paging notice of a truncated page goes to
    stderr for csv and plain, so a pipe receives data only)."""
    if fmt is OutputFormat.JSON:
        emit_json(
            {
                "items": list(listing.items),
                "total": listing.matches,
                "limit": listing.limit,
                "offset": listing.offset,
            }
        )
        return
    if fmt is OutputFormat.CSV:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([c.name for c in listing.columns])
        writer.writerows([_csv(v) for v in row] for row in listing.rows)
    elif fmt is OutputFormat.PLAIN:
        sys.stdout.write("".join(cell(row[listing.key]) + "\n" for row in listing.rows))
    else:
        render_table(listing, width or terminal_width())
    if listing.truncated():
        notice = showing(listing)
        if fmt is OutputFormat.TABLE:
            console.print(notice, soft_wrap=True)
        else:
            err_console.print(notice)


def terminal_width() -> int:
    """The width to fit: ``$COLUMNS`` as it is now (Rich reads it once, when the console is
    made), else what Rich found (the terminal's, or 80 for a pipe)."""
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else console.width


def _csv(value: Any) -> Any:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else cell(value)


def showing(listing: Listing) -> str:
    """``showing 100 of 2345 (1-100); next: --offset 100``: what a truncated page holds."""
    shown, first, matches = len(listing.rows), listing.offset + 1, listing.matches
    text = f"showing {shown} of {'more' if matches is None else matches}"
    if shown:
        text += f" ({first}-{listing.offset + shown})"
    if matches is None or listing.offset + shown < matches:
        text += (
            f"; next: --offset {listing.offset + shown}" if listing.paged else "; raise --limit"
        )
    return text


def _texts(listing: Listing) -> list[list[str]]:
    shows = [c.show or cell for c in listing.columns]
    return [[show(v) for show, v in zip(shows, row, strict=True)] for row in listing.rows]


def _needs(columns: Sequence[Column], texts: Sequence[Sequence[str]]) -> list[tuple[int, int]]:
    """Each column's (narrowest, widest) width: a whole column its longest value either way;
    free text its longest value at most, and at least ``MIN_TEXT_WIDTH`` or its longest
    word (a word, such as a path in an error, is never cut either)."""
    needs = []
    for i, col in enumerate(columns):
        cells = [row[i] for row in texts]
        longest = max([len(col.name), *map(len, cells)])
        if col.whole:
            needs.append((longest, longest))
            continue
        word = max([len(col.name), *(len(w) for c in cells for w in c.split())])
        needs.append((min(longest, max(MIN_TEXT_WIDTH, word)), longest))
    return needs


def table_width(columns: Sequence[Column], texts: Sequence[Sequence[str]]) -> int:
    """The narrowest table that breaks no value inside a word: each column at its narrowest
    (``_needs``) and two spaces between columns (no box: ``kubectl get``'s layout, the most
    columns in a width)."""
    return 2 * (len(columns) - 1) + sum(low for low, _ in _needs(columns, texts))


def render_table(listing: Listing, width: int) -> None:
    """A table if it fits ``width`` without breaking a word, else one block of lines a
    record. The widths are set here, not by Rich: Rich would narrow any column to fit."""
    texts = _texts(listing)
    if listing.title:
        console.print(Text(listing.title, style="bold"), soft_wrap=True)
    needs = _needs(listing.columns, texts)
    spare = width - table_width(listing.columns, texts)
    if spare < 0:
        _blocks(listing.columns, texts)
        return
    t = Table(box=None, header_style="bold", pad_edge=False)
    for col, (low, high) in zip(listing.columns, needs, strict=True):
        grow = min(spare, high - low)  # free text widens, left to right, while space is left
        spare -= grow
        t.add_column(col.name, no_wrap=col.whole, width=low + grow, overflow="fold")
    for row in texts:
        t.add_row(*(Text(v) for v in row))
    # Rich never draws wider than its console: a console of the width asked (the same
    # stdout, colours as the terminal allows) draws the table that fits it.
    Console(width=width, highlight=False, markup=False).print(t)


def show_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A report's table (``show``, ``locate``, ``rule show``, ``wms status``...) drawn as the
    listings' are: no value broken inside a word at any width (every column may wrap between
    words; a DID, a checksum or a time is one word), blocks when even that does not fit."""
    listing = Listing([Column(c, whole=False) for c in columns], rows, items=[], title=title)
    render_table(listing, terminal_width())


def _blocks(columns: Sequence[Column], texts: Sequence[Sequence[str]]) -> None:
    """Narrow terminals: the key line, then each other non-empty field indented, a blank
    line between records; lines are never wrapped by us (the terminal may fold a long
    one visually, but copying it gives the identifier whole)."""
    names = max(len(c.name) for c in columns)
    for n, row in enumerate(texts):
        if n:
            console.print("", soft_wrap=True)
        for i, (col, value) in enumerate(zip(columns, row, strict=True)):
            if i and not value:
                continue
            # The key unindented, the other fields under it; every value in one column.
            label = f"{col.name:<{names + 2}}" if i == 0 else f"  {col.name:<{names}}"
            console.print(Text(f"{label}  {value}"), soft_wrap=True)

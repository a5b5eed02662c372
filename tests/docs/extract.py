"""The runnable examples of a Markdown page: its bash, console and python fenced blocks.

A ```output block right after a runnable block is what that block prints, checked loosely.
A block preceded by ``<!-- slow: reason -->`` runs only in the full docs run
(``DPPS_DOCS_SLOW=1``), so the test suite stays within its time; a block preceded by
``<!-- no-run: reason -->`` (blank lines between are allowed) is kept with
its reason, so the test can count and print every skip; a skip without a reason is an error,
because a reader must be able to tell why an example was not proven.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

#: Fence languages whose blocks the docs test runs.
RUNNABLE = frozenset({"bash", "sh", "console", "python"})

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_NO_RUN = re.compile(r"^\s*<!--\s*(?P<kind>no-run|slow):(?P<reason>.*?)-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, its text and why it is not run."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    no_run: str | None = None
    slow: str | None = None  # why it runs only in the full docs run (DPPS_DOCS_SLOW=1)
    shown: str | None = None  # the ```output block right after it: what it prints

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


class DocError(ValueError):
    """A page's markup the docs test cannot read (an unclosed fence, a skip without reason)."""


def blocks(path: Path) -> list[Block]:
    """Every runnable block of *path*, in page order, each with its no-run reason if any."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    pending: tuple[int, str, str] | None = None  # a comment (line, kind, reason) for a block
    i = 0
    while i < len(lines):
        skip = _NO_RUN.match(lines[i])
        if skip:
            kind, reason = skip.group("kind"), skip.group("reason").strip()
            if not reason:
                raise DocError(f"{path.name}:{i + 1}: a {kind} comment needs a reason")
            pending = (i + 1, kind, reason)
            i += 1
            continue
        fence = _FENCE.match(lines[i])
        if not fence:
            if lines[i].strip() and pending is not None:
                where = f"{path.name}:{pending[0]}"
                raise DocError(f"{where}: a {pending[1]} comment not right before a block")
            i += 1
            continue
        start, marker = i, fence.group("fence")
        lang = fence.group("info").strip().split(" ")[0].lower()
        indent = len(fence.group("indent"))
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marker):
            body.append(lines[i][indent:] if indent else lines[i])
            i += 1
        if i == len(lines):
            raise DocError(f"{path.name}:{start + 1}: the fence is never closed")
        i += 1
        if lang == "output":
            if not found or found[-1].shown is not None or found[-1].lang == "console":
                raise DocError(f"{path.name}:{start + 1}: an output block follows no example")
            found[-1] = replace(found[-1], shown="\n".join(body) + "\n")
        elif lang in RUNNABLE:
            no_run = pending[2] if pending and pending[1] == "no-run" else None
            slow = pending[2] if pending and pending[1] == "slow" else None
            text = "\n".join(body) + "\n"
            found.append(Block(path, start + 1, lang, text, no_run=no_run, slow=slow))
        elif pending is not None:
            where, kind = f"{path.name}:{pending[0]}", lang or "plain"
            raise DocError(f"{where}: a {pending[1]} comment before a {kind} block")
        pending = None
    return found

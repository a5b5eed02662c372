"""Run one page's examples in order in one ``bash -e`` shell, in a fresh workspace.

One shell per page keeps what a reader keeps between blocks (the directory they ``cd``'d to,
the variables they exported, the server they started) and costs one process for the shell
instead of one per line. Python blocks are written to files and run by the shell's ``python``,
so a block that starts worker processes (``if __name__ == "__main__":``) works as for a reader.

Conventions of the pages (what the harness rewrites, so the text stays what a reader types):

- ``/tmp/`` in a page is the test's own temporary directory, so pages run in parallel with
  other test runs without sharing files;
- a port a page's server listens on (``--port 8000``, ``127.0.0.1:8000``) is replaced by a free
  port, the same one everywhere in that page;
- the workspace holds ``.venv``, a link to the interpreter's environment, for the README's
  ``source .venv/bin/activate``.

At its end the shell stops its background jobs (SIGTERM) and waits for them, so their CPU
counts as the page's; then every process left in the shell's session (the shell runs in a
session of its own) is stopped by PID, even when the page failed or timed out.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tests.docs.extract import Block

#: Ports the pages' servers use; each becomes a free port of this machine.
_PORT = re.compile(r"(?<=--port )(8\d{3})\b|(?<=127\.0\.0\.1:)(8\d{3})\b")
#: Characters of a table's frame, ignored when comparing shown output.
_FRAME = re.compile(r"[│┃|─━┏┓┗┛┡┩└┘├┤┬┴┼╇╈═║╔╗╚╝╭╮╰╯┌┐┳┻╋+]+")


@dataclass
class Expected:
    """What a console block shows after one ``$ command``: compared loosely with the output."""

    block: Block
    line: int  # page line of the command
    command: str
    shown: list[str] = field(default_factory=list)


@dataclass
class Script:
    """The page as one shell script, with where each script line came from."""

    text: str
    origin: dict[int, tuple[Block, int]]  # script line -> (block, page line)
    expected: list[Expected]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ports(blocks: list[Block]) -> dict[str, str]:
    found = {m.group(0) for b in blocks for m in _PORT.finditer(b.text)}
    return {port: str(free_port()) for port in sorted(found)}


def _localise(text: str, tmp: Path, ports: dict[str, str]) -> str:
    text = text.replace("/tmp/", f"{tmp}/")
    return _PORT.sub(lambda m: ports[m.group(0)], text)


def _console(block: Block) -> list[Expected]:
    """The commands of a console block (``$ cmd``, continuation lines) and what each shows."""
    found: list[Expected] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            cmd, start = line[2:], block.line + 1 + i
            while (cmd.endswith("\\") or not _complete(cmd)) and i + 1 < len(lines):
                i += 1
                cmd += "\n" + lines[i]
            found.append(Expected(block, start, cmd))
        elif found and line.strip():
            found[-1].shown.append(line)
        i += 1
    return found


def _complete(command: str) -> bool:
    """Whether a console command is whole (its quotes closed), or goes on on the next line."""
    try:
        shlex.split(command, comments=True)
    except ValueError:
        return False
    return True


def build(blocks: list[Block], tmp: Path, out: Path, *, slow: bool = False) -> Script:
    """One script for the page's runnable blocks (the slow ones too if *slow*); console
    outputs go to ``out``/N.out."""
    ports = _ports(blocks)
    lines = [
        "set -e",
        # Background jobs stop, and are waited for, so that their CPU counts as the page's.
        "__docs_stop() { for p in $(jobs -p); do kill $p 2>/dev/null || true; done; wait; }",
        "trap __docs_stop EXIT",
        "exec 9>&2",  # the shell's own stderr, even while a block's output goes to a file
        "trap 'echo \"DOCS-FAILED at script line $LINENO: $BASH_COMMAND\" >&9' ERR",
    ]
    origin: dict[int, tuple[Block, int]] = {}
    expected: list[Expected] = []

    def emit(text: str, block: Block, page_line: int) -> None:
        for k, line in enumerate(text.splitlines()):
            lines.append(line)
            origin[len(lines)] = (block, page_line + k)

    for n, block in enumerate(blocks):
        if block.no_run or (block.slow and not slow):
            continue
        text = _localise(block.text, tmp, ports)
        if block.lang == "python":
            source = out / f"block_{n:03d}.py"
            source.write_text(text, encoding="utf-8")
            if block.shown is None:
                emit(f"python {source}", block, block.line + 1)
            else:
                capture = out / f"{len(expected):03d}.out"
                emit(
                    f"python {source} > {capture} 2>&1 || {{ cat {capture}; false; }}",
                    block,
                    block.line + 1,
                )
                expected.append(
                    Expected(block, block.line, "the python block", block.shown.splitlines())
                )
        elif block.lang == "console":
            commands = _console(Block(block.path, block.line, block.lang, text))
            for k, ex in enumerate(commands):
                capture = out / f"{len(expected):03d}.out"
                cmd = ex.command
                if cmd.strip() == "echo $?":
                    cmd = "echo $__docs_rc"
                run_it = f"set +e; {{ {cmd}\n}} > {capture} 2>&1; __docs_rc=$?; set -e"
                emit(run_it, block, ex.line)
                shows_status = k + 1 < len(commands) and commands[k + 1].command == "echo $?"
                if not shows_status:
                    check = f'[ "$__docs_rc" = 0 ] || {{ cat {capture} >&2; false; }}'
                    emit(check, block, ex.line)
                expected.append(ex)
        elif block.shown is None:
            emit(text, block, block.line + 1)
        else:
            # Not { ... } > file || ...: set -e does not apply inside a list's left side.
            capture = out / f"{len(expected):03d}.out"
            lines.append(f"exec 3>&1 4>&2 > {capture} 2>&1")
            emit(text, block, block.line + 1)
            lines.append("exec 1>&3 2>&4 3>&- 4>&-")
            expected.append(
                Expected(block, block.line, "the bash block", block.shown.splitlines())
            )
    return Script("\n".join(lines) + "\n", origin, expected)


def environment(home: Path) -> dict[str, str]:
    """A reader's fresh shell: a new HOME, the environment's bin first, no dpps settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DPPS_", "PYTEST_", "COV_"))}
    venv_bin = Path(sys.executable).parent
    src = Path(__file__).resolve().parents[2] / "src"
    env.update(
        HOME=str(home),
        PATH=f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        PYTHONPATH=str(src),
        COLUMNS="200",
        TERM="dumb",
        TMPDIR=str(home),
    )
    env.pop("VIRTUAL_ENV", None)
    return env


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run(script: Script, cwd: Path, env: dict[str, str], out: Path, timeout_s: float) -> Result:
    """Run the script; stop every process it left behind, by PID, whatever happened."""
    start = time.monotonic()
    # Files, not pipes: a process the page left running keeps its copy of the shell's output
    # open, and reading a pipe to its end would wait for it.
    stdout_path, stderr_path = out / "shell.stdout", out / "shell.stderr"
    with stdout_path.open("w") as stdout_file, stderr_path.open("w") as stderr_file:
        proc = subprocess.Popen(
            ["bash", "-c", script.text],
            cwd=cwd,
            env=env,
            stdout=stdout_file,
            stderr=stderr_file,
            start_new_session=True,
        )
    timed_out = False
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        # The shell runs in a session of its own: whatever the page started and left behind
        # (a server's worker processes, a hung command's children) is in it, even reparented.
        _stop(p for p in _session(proc.pid) if p != proc.pid)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stdout = stdout_path.read_text(errors="replace")
    stderr = stderr_path.read_text(errors="replace")
    if timed_out:
        stderr += f"\nDOCS-TIMEOUT after {timeout_s:.0f} s"
    return Result(proc.returncode, stdout, stderr, time.monotonic() - start)


def _session(sid: int) -> list[int]:
    """Every live process of session *sid*, newest first."""
    found: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return sorted(found, reverse=True)


def _stop(pids: Iterable[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(50):
            if not alive(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Whether *pid* still runs (a zombie waiting for its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def failure_place(script: Script, stderr: str) -> str:
    """The page, line and command where the script stopped, from its ERR trap."""
    # The last report: a console command may fail on purpose before (its status is shown).
    found = list(re.finditer(r"DOCS-FAILED at script line (\d+): (.*)", stderr))
    m = found[-1] if found else None
    if not m:
        return "(no failing line reported)"
    line = int(m.group(1))
    while line > 0 and line not in script.origin:
        line -= 1
    if not line:
        return f"script line {m.group(1)}: {m.group(2)}"
    block, page_line = script.origin[line]
    return f"{block.path.name}:{page_line} (block at line {block.line}): {m.group(2)}"


def tokens(line: str) -> list[str]:
    """The words of a shown output line that matter: identifiers, counts, states."""
    words = _FRAME.sub(" ", line).split()
    return [w for w in words if re.search(r"\w", w) and "..." not in w and "…" not in w]


def mismatches(expected: list[Expected], out: Path) -> list[str]:
    """Each shown word missing from its command's output, with the page line."""
    problems: list[str] = []
    for n, ex in enumerate(expected):
        capture = out / f"{n:03d}.out"
        if not ex.shown:
            continue
        if not capture.exists():
            problems.append(f"{ex.block.path.name}:{ex.line}: `{ex.command}` never ran")
            continue
        actual = capture.read_text(encoding="utf-8", errors="replace")
        for shown in ex.shown:
            missing = [t for t in tokens(shown) if t not in actual]
            if missing:
                problems.append(
                    f"{ex.block.path.name}:{ex.line}: `{ex.command}` shows {shown.strip()!r}, "
                    f"output lacks {missing}:\n{actual}"
                )
    return problems

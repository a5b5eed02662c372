"""Every shell and Python example of README.md and docs/ runs as written (issue 14, item 9).

Each page runs in one shell, in order, in a fresh workspace (see tests/docs/runner.py for the
conventions); a ```console block's shown output is compared with what its command printed, on
the words that matter (identifiers, counts, states), not on a table's frame. A block that
cannot run here is marked ``<!-- no-run: reason -->`` in the page; the skips are counted and
printed, and their number is capped so a new one is a decision, not a drift. A block marked
``<!-- slow: reason -->`` (minutes of pipeline CPU) runs only with ``DPPS_DOCS_SLOW=1``: the
whole suite has a time budget, and the default run skips those blocks (and the test says so).
Pages share nothing (each its own directory, HOME and ports), so xdist may spread them over
its workers.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import pytest

from tests.docs import runner
from tests.docs.extract import Block, DocError, blocks

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: The most no-run blocks allowed; raise it only with a reason in the page for each new skip.
MAX_SKIPS = 15  # 15: the testbed night in docs/deployment.md (root, minutes)
#: The most blocks run only in the full docs run.
MAX_SLOW = 5
#: Seconds a page may take at most before it counts as hung (a loaded 2-core machine).
PAGE_TIMEOUT_S = 900.0
#: Run the blocks marked slow too (the full docs run).
SLOW = os.environ.get("DPPS_DOCS_SLOW") == "1"


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _runnable(page: Path) -> list[Block]:
    return [b for b in blocks(page) if not b.no_run and (SLOW or not b.slow)]


@pytest.mark.parametrize(
    "page", [p for p in PAGES if _runnable(p)], ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    home, out, tmp = tmp_path / "home", tmp_path / "out", tmp_path / "tmp"
    for d in (home, out, tmp):
        d.mkdir()
    (home / ".venv").symlink_to(Path(runner.sys.executable).parent.parent)
    page_blocks = blocks(page)
    script = runner.build(page_blocks, tmp, out, slow=SLOW)
    started, cpu = time.monotonic(), _children_cpu_s()
    result = runner.run(script, home, runner.environment(home), out, PAGE_TIMEOUT_S)
    print(
        f"{page.name}: {len(_runnable(page))} blocks in {time.monotonic() - started:.1f} s, "
        f"{_children_cpu_s() - cpu:.1f} s of CPU"
    )
    captured = sorted(out.glob("*.out"))
    last = captured[-1].read_text(errors="replace")[-3000:] if captured else ""
    assert result.returncode == 0, (
        f"{runner.failure_place(script, result.stderr)}\n"
        f"--- stdout (end)\n{result.stdout[-3000:]}\n--- stderr (end)\n{result.stderr[-3000:]}"
        f"\n--- the last output checked (end)\n{last}"
    )
    problems = runner.mismatches(script.expected, out)
    assert not problems, "\n".join(problems)


def test_every_skip_has_a_reason_and_they_stay_few() -> None:
    skipped = [b for page in PAGES for b in blocks(page) if b.no_run]
    for b in skipped:
        print(f"no-run {b.where}: {b.no_run}")
    slow = [b for page in PAGES for b in blocks(page) if b.slow]
    for b in slow:
        print(
            f"slow {b.where}: {b.slow}" + ("" if SLOW else " (not run: DPPS_DOCS_SLOW=1 runs it)")
        )
    print(f"{len(skipped)} blocks never run, {len(slow)} only with DPPS_DOCS_SLOW=1")
    assert len(skipped) <= MAX_SKIPS
    assert len(slow) <= MAX_SLOW


def _run_page(page: Path, text: str, timeout_s: float = 30) -> tuple[runner.Script, runner.Result]:
    """A small page of *text* run by the harness in the page's directory (output in ./out)."""
    page.write_text(text)
    out = page.parent / "out"
    out.mkdir()
    script = runner.build(blocks(page), page.parent, out)
    return script, runner.run(script, page.parent, runner.environment(page.parent), out, timeout_s)


def test_a_skip_without_reason_or_an_unclosed_fence_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("<!-- no-run: -->\n```bash\ntrue\n```\n")
    with pytest.raises(DocError, match=r"p\.md:1: a no-run comment needs a reason"):
        blocks(page)
    page.write_text("<!-- no-run: needs root -->\n\nsome prose\n```bash\ntrue\n```\n")
    with pytest.raises(DocError, match="not right before a block"):
        blocks(page)
    page.write_text("text\n```bash\ntrue\n")
    with pytest.raises(DocError, match=r"p\.md:2: the fence is never closed"):
        blocks(page)


def test_harness_names_the_failing_line_and_a_wrong_shown_output(tmp_path: Path) -> None:
    script, result = _run_page(
        tmp_path / "p.md",
        "```bash\nexport A=1\n```\n\n"
        "```console\n$ echo ctao:/x 3 files\n│ ctao:/x │ 3 files │\n$ echo $A\n2\n```\n\n"
        "```bash\ntrue\nfalse   # the failing example\ntrue\n```\n",
    )
    assert result.returncode != 0
    assert runner.failure_place(script, result.stderr).startswith("p.md:14 (block at line 12)")
    [problem] = runner.mismatches(script.expected, tmp_path / "out")
    assert problem.startswith("p.md:8: `echo $A` shows '2', output lacks ['2']")


def test_harness_stops_a_server_the_page_left_running(tmp_path: Path) -> None:
    # A server with a worker process: the worker outlives its parent's SIGTERM here.
    server = "bash -c 'sleep 300 & echo $! > worker.pid; wait' &\necho $! > server.pid\n"
    _, result = _run_page(tmp_path / "p.md", f"```bash\n{server}sleep 0.5\n```\n")
    assert result.returncode == 0, result.stderr
    assert "DOCS-TIMEOUT" not in result.stderr  # the worker holds no pipe the harness reads
    for name in ("server.pid", "worker.pid"):
        assert not runner.alive(int((tmp_path / name).read_text())), name


def test_harness_stops_a_hung_command_and_its_children(tmp_path: Path) -> None:
    page = "```bash\nbash -c 'echo $$ > inner.pid; exec sleep 300'\n```\n"
    _, result = _run_page(tmp_path / "p.md", page, timeout_s=3)
    assert result.returncode != 0
    assert "DOCS-TIMEOUT after 3 s" in result.stderr
    assert not runner.alive(int((tmp_path / "inner.pid").read_text()))


def test_an_output_block_is_checked_against_what_its_example_printed(tmp_path: Path) -> None:
    script, result = _run_page(
        tmp_path / "p.md",
        "```python\nprint('ctao:/a', 2)\n```\n\n```output\nctao:/a 2\n```\n\n"
        "```bash\necho 'rule 1: OK'\n```\n```output\nrule 1: STUCK\n```\n",
    )
    assert result.returncode == 0, result.stderr
    [problem] = runner.mismatches(script.expected, tmp_path / "out")
    assert problem.startswith(
        "p.md:9: `the bash block` shows 'rule 1: STUCK', output lacks ['STUCK']"
    )
    (tmp_path / "q.md").write_text("text\n```output\n1\n```\n")
    with pytest.raises(DocError, match="an output block follows no example"):
        blocks(tmp_path / "q.md")


def test_a_slow_block_runs_only_in_the_full_docs_run(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text(
        "<!-- slow: minutes of CPU -->\n```bash\necho long\n```\n```bash\necho short\n```\n"
    )
    [slow, quick] = blocks(page)
    assert (slow.slow, quick.slow) == ("minutes of CPU", None)
    assert "echo long" not in runner.build([slow, quick], tmp_path, tmp_path).text
    assert "echo long" in runner.build([slow, quick], tmp_path, tmp_path, slow=True).text

"""PDF of a release report, printed from its HTML by headless Chromium.

A review signs a PDF more readily than a web page. Debian's Chromium (the one the dashboard's
browser tests already use; ``apt-get install chromium``) prints the self-contained HTML page
as it renders it, so the PDF cannot differ from the HTML in content; nothing is downloaded at
run time. Chromium is found as ``$DPPS_CHROMIUM``, else ``chromium`` on the PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from dpps.core.errors import DppsError, Unavailable

#: Seconds Chromium may take to print; a report of a few hundred rows takes about three.
PRINT_TIMEOUT_S = 120.0


def find_chromium() -> str | None:
    """The Chromium executable to print with, or None if there is none."""
    configured = os.environ.get("DPPS_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def html_to_pdf(html_file: Path, pdf_file: Path, chromium: str | None = None) -> None:
    """Print ``html_file`` to ``pdf_file``.

    Raises :class:`Unavailable` when no Chromium is installed, :class:`DppsError` when it
    fails or writes something that is not a PDF. A throwaway profile directory keeps the
    print independent of any browser state on the machine (and of other prints running).
    """
    executable = chromium or find_chromium()
    if executable is None:
        raise Unavailable("no Chromium to print the PDF with (apt-get install chromium)")
    pdf_file.parent.mkdir(parents=True, exist_ok=True)
    pdf_file.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="dpps-pdf-") as profile:
        command = [
            executable,
            "--headless",
            "--no-sandbox",  # Chromium refuses to run as root with its sandbox (CI runs as root)
            "--disable-gpu",
            "--no-pdf-header-footer",
            f"--user-data-dir={profile}",
            f"--print-to-pdf={pdf_file.resolve()}",
            html_file.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=PRINT_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise DppsError(
                f"Chromium did not print {html_file} within {PRINT_TIMEOUT_S} s"
            ) from exc
    if done.returncode != 0 or not pdf_file.is_file():
        tail = " ".join(done.stderr.split()[-30:])
        raise DppsError(f"Chromium failed to print {html_file} (exit {done.returncode}): {tail}")
    with pdf_file.open("rb") as head:
        if head.read(5) != b"%PDF-":
            raise DppsError(f"Chromium wrote {pdf_file}, but it is not a PDF")

"""Fixtures of the operations tests: a seeded archive, one account and token per role, the
app in-process (TestClient), a live server on 127.0.0.1 (uvicorn in a thread) and a headless
Chromium for the dashboard's browser tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dpps.bdms.archive import Archive
from dpps.core.authz import Role
from dpps.oms.accounts import AccountService
from dpps.oms.api import create_app
from dpps.oms.server import BackgroundServer
from tests.bdms.helpers import make_fits, make_hdf5

DL0 = "/ctao/dl0/obs_42"
DL1_FILE = "/ctao/dl1/obs_42/tel_001.h5"
CHROMIUM = os.environ.get("DPPS_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The browser tests keep a screenshot of every page here (a CI artefact).
SHOTS = Path(__file__).resolve().parents[2] / "reports" / "screenshots"


@dataclass
class Seeded:
    """An archive with DL0 files (a dataset), one DL1 file and an account per role."""

    archive: Archive
    tokens: dict[str, str] = field(default_factory=dict)
    dl0_files: list[str] = field(default_factory=list)

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def account_for(role: str) -> str:
    return f"acct-{role}"


def seed(archive: Archive, tmp: Path) -> Seeded:
    src = tmp / "src"
    for tel in (1, 2, 3):
        make_fits(src, f"tel_{tel:03d}.fits", obs_id=42, tel_id=tel, seed=tel)
    report = archive.ingest([src], "CTAO-N", lfn_prefix=DL0, recursive=True, dataset=DL0)
    assert not report.failed, report.failed
    h5 = make_hdf5(tmp / "h5", "tel_001.h5", obs_id=42, tel_id=1)
    report = archive.ingest([h5], "CTAO-S", lfn=DL1_FILE, meta={"data_level": "DL1"})
    assert not report.failed, report.failed
    service = AccountService(archive.sessions)
    seeded = Seeded(archive, dl0_files=[f"ctao:{DL0}/tel_{t:03d}.fits" for t in (1, 2, 3)])
    for role in Role:
        service.add_account(account_for(role), [role.value], ["ctao"])
        seeded.tokens[role.value] = service.create_token(account_for(role)).token
    return seeded


@pytest.fixture
def seeded(archive: Archive, tmp_path: Path) -> Seeded:
    return seed(archive, tmp_path)


@pytest.fixture
def client(seeded: Seeded) -> Iterator[TestClient]:
    with TestClient(create_app(seeded.archive)) as test_client:
        yield test_client


@pytest.fixture
def live(seeded: Seeded) -> Iterator[BackgroundServer]:
    with BackgroundServer(seeded.archive) as server:
        yield server


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (nothing downloaded); skipped where it is not
    installed unless DPPS_REQUIRE_CHROMIUM is set (CI)."""
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        if os.environ.get("DPPS_REQUIRE_CHROMIUM"):
            pytest.fail(f"{CHROMIUM} not found but DPPS_REQUIRE_CHROMIUM is set")
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Dash:
    """A browser tab on the live dashboard: it reaches the test server only (anything else is
    recorded in ``blocked`` and aborted), JavaScript errors land in ``errors``."""

    page: Any
    url: str
    backend: str
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def shot(self, name: str) -> None:
        """Keep a screenshot of the whole page as ``reports/screenshots/NAME-BACKEND.png``."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}-{self.backend}.png"
        self.page.screenshot(path=str(path), full_page=True)


@pytest.fixture
def dash(live: BackgroundServer, browser: Any, request: pytest.FixtureRequest) -> Dash:
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    page.set_default_timeout(60_000)
    tab = Dash(page, live.url, request.node.callspec.params.get("catalog_url", "db"))
    page.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith(live.url)
            else (tab.blocked.append(route.request.url), route.abort())
        ),
    )
    page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    return tab


@pytest.fixture
def signed_in(seeded: Seeded) -> Iterator[TestClient]:
    """The app in-process with a reader's dashboard session cookie (pages without a browser)."""
    with TestClient(create_app(seeded.archive)) as test_client:
        signed = test_client.post(
            "/ui/login", data={"token": seeded.tokens["reader"]}, follow_redirects=False
        )
        assert signed.status_code == 303, signed.text  # the cookie holds a session of its own
        yield test_client

"""A site's worker uses its own workspace (``DPPS_WORKER_WORKSPACE``), not the manager's path,
which need not exist at the site."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpps.bdms.archive import Archive
from dpps.core.errors import DppsError
from dpps.wms import runner, worker_context
from dpps.wms.executors.base import Task


@pytest.mark.verifies_usecase("UC-180-2.3")
def test_a_worker_with_its_own_workspace_ignores_the_managers_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Archive.init(tmp_path / "site").close()
    task = Task(1, "manager/1/1", 1, str(tmp_path / "not-at-this-site"), "PIC", "dask")
    with pytest.raises(DppsError):  # the manager's workspace does not exist here
        runner.run_tasks([task])
    monkeypatch.setenv(worker_context.WORKER_WORKSPACE_ENV, str(tmp_path / "site"))
    # the site's catalog has no such job: the task is reported lost, not run anywhere
    assert runner.run_tasks([task]) == [{"job_id": 1, "status": "lost", "workflow_id": None}]
    # its own catalog was opened, not another
    worker_context._CONTEXTS.pop(str(tmp_path / "site")).engine.dispose()

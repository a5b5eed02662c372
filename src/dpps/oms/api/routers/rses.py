"""Storage elements (RSEs) with their site, kind and usage."""

from __future__ import annotations

from fastapi import APIRouter

from dpps.core.errors import NotFound
from dpps.oms.api.deps import ArchiveView, Reader
from dpps.oms.api.problems import PROBLEM_RESPONSES
from dpps.oms.api.schemas import Page, RSEOut

router = APIRouter(prefix="/api/v1/rses", tags=["rses"], responses=PROBLEM_RESPONSES)


@router.get("", response_model=Page[RSEOut], summary="All storage elements (one page)")
def list_rses(archive: ArchiveView, _who: Reader) -> Page[RSEOut]:
    items = [RSEOut.model_validate(i) for i in archive.rses()]
    return Page[RSEOut](items=items, total=len(items), limit=len(items), offset=0)


@router.get("/{name}", response_model=RSEOut, summary="One storage element")
def get_rse(name: str, archive: ArchiveView, _who: Reader) -> RSEOut:
    for info in archive.rses():
        if info.name == name:
            return RSEOut.model_validate(info)
    raise NotFound(f"unknown RSE {name!r}")

"""Options and helpers shared by the command modules.

This module is imported by every command, so it imports no library layer at module level
(the archive, SQLAlchemy, the REST client load inside the functions that need them): a
command pays only for what it uses (issue 14, a CLI that starts fast).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from dpps.cli.output import err_console, styled
from dpps.core.errors import DppsError, Unavailable

if TYPE_CHECKING:
    from dpps.bdms.api_types import ArchiveAPI
    from dpps.bdms.archive import Archive
    from dpps.client.archive import RemoteArchive
    from dpps.client.wms import RemoteWMS
    from dpps.wms.api import WMS
    from dpps.wms.api_types import WMSAPI

P = ParamSpec("P")
R = TypeVar("R")

ENV_URL = "DPPS_URL"

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def is_remote() -> bool:
    """Whether commands talk to the server at $DPPS_URL instead of a local workspace."""
    return bool(os.environ.get(ENV_URL))


def remote_archive(ctx: typer.Context | None) -> RemoteArchive | None:
    """The server at $DPPS_URL (with $DPPS_TOKEN), closed when the command ends, or None when
    $DPPS_URL is unset: the one place that decides whether a command runs here or there."""
    if not is_remote():
        return None
    from dpps.client.archive import RemoteArchive  # httpx only when talking to a server

    remote = RemoteArchive.from_env()
    if ctx is not None:
        ctx.call_on_close(remote.close)
    return remote


def open_archive(ctx: typer.Context) -> ArchiveAPI:
    """The archive of the command's workspace, or the server at $DPPS_URL: either way an
    ``ArchiveAPI``, so a command means the same in both places (mypy holds the twins to it)."""
    remote = remote_archive(ctx)
    if remote is not None:
        return remote
    return open_local_archive(ctx)


def open_wms(ctx: typer.Context) -> WMSAPI:
    """The WMS of the command's workspace, or the server's at $DPPS_URL (a ``WMSAPI``)."""
    remote = remote_archive(ctx)
    if remote is not None:
        from dpps.client.wms import RemoteWMS

        return RemoteWMS(remote)
    from dpps.wms.api import WMS

    return WMS(open_local_archive(ctx))


def refuse_remote(what: str) -> None:
    """Stop (exit 3, "not available over REST") when $DPPS_URL is set: ``what`` acts on
    this machine's workspace, storage or processes, and the user meant the server."""
    if is_remote():
        from dpps.client.views import unsupported

        unsupported(what)


def local_only[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    """Mark a command that only runs here (``init``, the daemons, ``serve``, ``night``, the
    testbed): with $DPPS_URL set it refuses before anything runs, since whoever set it meant
    the server and would otherwise change a local catalog (issue 14: a reader's ``dpps
    night`` wrote 61 files into the live server's catalog)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if is_remote():
            refuse_remote(_command_path())
        return fn(*args, **kwargs)

    return wrapper


def _command_path() -> str:
    """``dpps daemon evaluator``: the running command's path, from Click's current context
    (Typer vendors Click as ``typer._click``; older versions use ``click`` itself)."""
    for name in ("typer._click.globals", "click.globals"):
        current = getattr(sys.modules.get(name), "get_current_context", None)
        ctx = current(silent=True) if current is not None else None
        if ctx is not None:
            return str(ctx.command_path)
    return "this command"


def open_local_archive(ctx: typer.Context) -> Archive:
    """The archive of the command's workspace (never remote: daemons, serve, init); refused
    when $DPPS_URL is set, a safety net behind ``local_only``."""
    refuse_remote(_command_path())
    from dpps.bdms.archive import Archive

    workspace = (ctx.obj or {}).get("workspace") if ctx is not None else None
    archive = Archive.open(workspace)
    if ctx is not None:
        ctx.call_on_close(archive.close)
    return archive


def _twins(
    archive: Archive, remote: RemoteArchive, wms: WMS, remote_wms: RemoteWMS
) -> tuple[ArchiveAPI, ArchiveAPI, WMSAPI, WMSAPI]:
    """Never called: mypy proves here that each local facade and its REST twin satisfy the
    one Protocol (a signature that drifts on either side fails the type check)."""
    return archive, remote, wms, remote_wms


def parse_pairs(pairs: list[str]) -> dict[str, str]:
    """``key=value`` arguments to a dict; a pair without '=' is a usage error."""
    from dpps.core.errors import InvalidInput

    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"expected key=value, got {pair!r}")
        out[key.strip()] = value
    return out


def handle_errors[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    """Turn dpps errors into one clear line on stderr and the documented exit code.

    This is the one place that maps the exception hierarchy to exit codes; a traceback is
    shown only for bugs, and only with DPPS_DEBUG=1.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except DppsError as exc:
            err_console.print(styled("[red]error:[/red] {}", exc), highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except Exception as exc:
            if _catalog_unavailable(exc):  # server down or unreachable, catalog locked: exit 9
                error = Unavailable(f"catalog database unavailable: {getattr(exc, 'orig', exc)}")
                err_console.print(styled("[red]error:[/red] {}", error), highlight=False)
                raise typer.Exit(error.exit_code) from None
            if os.environ.get("DPPS_DEBUG"):
                raise
            err_console.print(
                styled(
                    "[red]internal error:[/red] {} (a bug: rerun with DPPS_DEBUG=1 for the "
                    "traceback and please report it)",
                    f"{type(exc).__name__}: {exc}",
                ),
                highlight=False,
            )
            raise typer.Exit(1) from None

    return wrapper


def _catalog_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLAlchemy's OperationalError (checked without importing
    SQLAlchemy: a command that never loaded it cannot have raised it)."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    return sa_exc is not None and isinstance(exc, sa_exc.OperationalError)


def command(
    app: typer.Typer, fn: Callable[..., Any], name: str | None = None, *, local: bool = False
) -> None:
    """Register ``fn`` as a command of ``app`` with the shared error handling; ``local``
    marks a command that only runs here (``local_only``)."""
    app.command(name)(handle_errors(local_only(fn) if local else fn))

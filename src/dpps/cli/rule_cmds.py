"""Replication rules and transfers: ``dpps rule add|list|show|update|delete`` and
``dpps transfer list|retry``."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import typer

from dpps.bdms.types import RuleInfo
from dpps.cli.common import JsonOpt, command, open_archive
from dpps.cli.listing import Column, Listing, OutputOpt, emit, output_format, show_table
from dpps.cli.output import console, emit_json
from dpps.core import priority as scale
from dpps.core.errors import InvalidInput

if TYPE_CHECKING:
    from dpps.bdms.api_types import ArchiveAPI


def _locks(info: RuleInfo) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(info.locks.items())) or "-"


LIFETIME_HELP = "seconds, or with a unit: 30d, 12h, 90m, 2w"


def _duration(text: str) -> dt.timedelta:
    """``--lifetime`` as a duration; a bad one is a usage error (exit 2), as for every other
    out-of-range option."""
    from dpps.core.durations import parse_duration

    try:
        return parse_duration(text, what="duration")
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc)) from None


def rule_add(
    ctx: typer.Context,
    dids: Annotated[
        list[str],
        typer.Argument(
            metavar="DID", help="Files, datasets or containers (scope:/lfn): one rule each."
        ),
    ],
    copies: Annotated[
        int, typer.Option(min=1, help="Replicas to keep on RSEs matching --rses.")
    ] = 1,
    rses: Annotated[
        str | None,
        typer.Option(help="RSE expression for the copies, e.g. 'offsite&type=tape'."),
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="RSE expression transfers may read from (default: any).")
    ] = None,
    lifetime: Annotated[
        dt.timedelta | None,
        typer.Option(
            parser=_duration,
            metavar="DURATION",
            help=f"Until the rule expires, {LIFETIME_HELP} (default: never).",
        ),
    ] = None,
    priority: Annotated[
        int, typer.Option(min=scale.LOWEST, max=scale.HIGHEST, help=scale.HELP)
    ] = scale.DEFAULT,
    activity: Annotated[str, typer.Option(help="Transfer activity (accounting).")] = "default",
    comment: Annotated[str | None, typer.Option(help="Why the rule exists.")] = None,
    policy: Annotated[
        str | None,
        typer.Option(help="Instead of --copies/--rses: the rules of a configured policy."),
    ] = None,
    locked: Annotated[
        bool,
        typer.Option(
            "--locked", help="Lock the rule: no deletion, no expiry until 'rule update --unlock'."
        ),
    ] = False,
    skip_duplicate: Annotated[
        bool,
        typer.Option(
            "--skip-duplicate",
            help="A DID that already has this rule (same account, RSEs, copies) keeps it "
            "instead of failing (exit 6).",
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Ask for COPIES replicas of each DID on the RSEs an expression selects.

    A rule on a dataset or container also covers files attached to it later. Several DIDs get
    one rule each, all or none. The rule evaluator daemon creates the transfers; 'dpps rule
    show ID' follows its progress.
    """
    archive = open_archive(ctx)
    if policy is not None:
        if rses is not None or source is not None:
            raise InvalidInput("--policy replaces --rses and --source: give one or the other")
        if locked or lifetime is not None:
            raise InvalidInput("a policy sets its own lifetimes: drop --lifetime and --locked")
        ids = [i for did in dids for i in archive.apply_policy(did, policy)]
    else:
        if rses is None:
            raise InvalidInput("give --rses EXPRESSION (or --policy NAME)")
        existing = _rules_of(archive, dids) if skip_duplicate else set()
        ids = archive.add_rules(
            dids,
            copies=copies,
            rses=rses,
            source=source,
            lifetime=lifetime,
            priority=priority,
            activity=activity,
            comment=comment,
            locked=locked,
            skip_duplicate=skip_duplicate,
        )
        kept = [i for i in ids if i in existing]
        if kept:  # a skipped duplicate is reported as kept, never as added
            added = [i for i in ids if i not in existing]
            if json_:
                emit_json({"rule_ids": ids, "added": added, "kept": kept})
            else:
                if added:
                    console.print(f"rule{'s' if len(added) > 1 else ''} {_ids(added)} added")
                console.print(
                    f"rule{'s' if len(kept) > 1 else ''} {_ids(kept)} kept "
                    f"(the same rule existed: --skip-duplicate)"
                )
            return
    if json_:
        emit_json({"rule_ids": ids, "added": ids, "kept": []})
    else:
        console.print(f"rule{'s' if len(ids) > 1 else ''} {_ids(ids)} added")


def _ids(ids: list[int]) -> str:
    return ", ".join(map(str, ids))


def _rules_of(archive: ArchiveAPI, dids: list[str]) -> set[int]:
    """The ids of the rules the DIDs have now: those --skip-duplicate may hand back."""
    found: set[int] = set()
    for did in dids:
        offset = 0
        while True:
            page = archive.replication.rule_listing(did=did, limit=1000, offset=offset)
            found.update(i.id for i in page.items)
            offset += len(page.items)
            if not page.items or offset >= page.total:
                break
    return found


def rule_list(
    ctx: typer.Context,
    state: Annotated[
        str | None, typer.Option(help="Only rules in this state (OK, REPLICATING, STUCK, ...).")
    ] = None,
    did: Annotated[str | None, typer.Option(help="Only the rules of this DID.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many rules.")] = 1000,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many rules (paging).")] = 0,
    output: OutputOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List replication rules with their state and lock counts (oldest first)."""
    fmt = output_format(output, json_)
    page = open_archive(ctx).replication.rule_listing(
        state=state, did=did, limit=limit, offset=offset
    )
    columns = [
        Column("id"),
        Column("DID"),
        Column("copies"),
        Column("RSEs"),
        Column("source"),
        Column("state"),
        Column("locks"),
        Column("error", whole=False),
    ]
    rows = [
        [i.id, i.did, i.copies, i.rses, i.source, i.state, _locks(i), i.error] for i in page.items
    ]
    emit(Listing(columns, rows, page.items, page.total, offset, limit), fmt)


def rule_show(
    ctx: typer.Context,
    rule_id: Annotated[int, typer.Argument(metavar="ID", help="Rule id.")],
    json_: JsonOpt = False,
) -> None:
    """Show a rule: expression, selected RSEs, state and reason, locks per RSE, transfers,
    errors."""
    details = open_archive(ctx).replication.get_rule(rule_id)
    if json_:
        emit_json(details)
        return
    r = details.rule
    rows: list[list[object]] = [
        ["id", r.id],
        ["DID", f"{r.did} ({r.did_type}, {details.files} files)"],
        ["copies", r.copies],
        ["RSE expression", f"{r.rses} -> {', '.join(details.rse_names) or 'nothing'}"],
        ["source", r.source or "any"],
        ["state", r.state],
        ["error", r.error],
        ["priority / activity", f"{r.priority} / {r.activity}"],
        ["policy", r.policy],
        ["account", r.account],
        ["created", r.created_at],
        ["expires", r.expires_at],
        ["locked", "yes: no deletion, no expiry" if r.locked else "no"],
        ["next evaluation", r.next_evaluation_at],
        ["locks", _locks(r)],
        ["transfers", ", ".join(f"{n} {s}" for s, n in sorted(details.transfers.items()))],
    ]
    show_table(None, ["field", "value"], rows)
    if details.placement:
        states = sorted({s for counts in details.placement.values() for s in counts})
        show_table(
            "locks per RSE (files)",
            ["RSE", *states],
            [
                [rse, *(counts.get(s, 0) for s in states)]
                for rse, counts in details.placement.items()
            ],
        )
    if details.problems:
        show_table(
            "transfers with errors",
            ["id", "DID", "to", "state", "attempts", "error"],
            [
                [t.id, t.did, t.dest, t.state, f"{t.attempts}/{t.max_attempts}", t.error]
                for t in details.problems
            ],
        )


def rule_delete(
    ctx: typer.Context,
    rule_id: Annotated[int, typer.Argument(metavar="ID", help="Rule id.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the event log).")],
    json_: JsonOpt = False,
) -> None:
    """Delete a rule: its locks go, so the replicas it held may be deleted by the reaper."""
    info = open_archive(ctx).replication.delete_rule(rule_id, reason=reason)
    if json_:
        emit_json(info)
    else:
        console.print(f"rule {info.id} on {info.did} deleted")


def rule_update(
    ctx: typer.Context,
    rule_id: Annotated[int, typer.Argument(metavar="ID", help="Rule id.")],
    priority: Annotated[
        int | None,
        typer.Option(min=scale.LOWEST, max=scale.HIGHEST, help=scale.HELP),
    ] = None,
    lifetime: Annotated[
        dt.timedelta | None,
        typer.Option(
            parser=_duration,
            metavar="DURATION",
            help=f"Expire this long from now: {LIFETIME_HELP}.",
        ),
    ] = None,
    no_lifetime: Annotated[
        bool, typer.Option("--no-lifetime", help="Never expire (clear the lifetime).")
    ] = False,
    suspend: Annotated[
        bool | None,
        typer.Option("--suspend/--resume", help="Stop evaluating the rule, or evaluate it again."),
    ] = None,
    comment: Annotated[str | None, typer.Option(help="Why the rule exists.")] = None,
    lock: Annotated[
        bool | None,
        typer.Option(
            "--lock/--unlock", help="Lock the rule against deletion and expiry, or unlock it."
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Change a rule in place: priority, lifetime, comment, lock; suspend or resume it.

    Resuming makes the evaluator look at the rule at once. The change is in the event log.
    """
    from dpps.bdms.records import RuleChange

    change = RuleChange(
        priority=priority,
        lifetime=lifetime,
        clear_lifetime=no_lifetime,
        suspended=suspend,
        comment=comment,
        locked=lock,
    )
    info = open_archive(ctx).replication.update_rule(rule_id, change)
    if json_:
        emit_json(info)
        return
    console.print(
        f"rule {info.id} on {info.did}: {info.state}, priority {info.priority}, "
        f"expires {info.expires_at or 'never'}"
    )


def transfer_list(
    ctx: typer.Context,
    state: Annotated[
        str | None,
        typer.Option(help="Only QUEUED, ACTIVE, DONE or FAILED transfers."),
    ] = None,
    rse: Annotated[str | None, typer.Option(help="Only transfers to this RSE.")] = None,
    rule: Annotated[int | None, typer.Option(help="Only the transfers of this rule.")] = None,
    errors: Annotated[bool, typer.Option("--errors", help="Only those with an error.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many (paging).")] = 0,
    output: OutputOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List transfers, newest change first (what the transfer daemon did and is doing)."""
    fmt = output_format(output, json_)
    page = open_archive(ctx).replication.transfer_listing(
        rule_id=rule, state=state, rse=rse, errors_only=errors, limit=limit, offset=offset
    )
    columns = [
        Column("id"),
        Column("DID"),
        Column("from"),
        Column("to"),
        Column("state"),
        Column("attempts"),
        Column("next attempt"),
        Column("error", whole=False),
    ]
    rows = [
        [
            t.id,
            t.did,
            t.source,
            t.dest,
            t.state,
            f"{t.attempts}/{t.max_attempts}",
            t.next_attempt_at if t.state == "QUEUED" else None,
            t.error,
        ]
        for t in page.items
    ]
    emit(Listing(columns, rows, page.items, page.total, offset, limit), fmt)


def transfer_retry(
    ctx: typer.Context,
    transfer_id: Annotated[int, typer.Argument(metavar="ID", help="A FAILED transfer's id.")],
    json_: JsonOpt = False,
) -> None:
    """Queue a FAILED transfer again with fresh attempts (e.g. once its RSE is back); the
    rules waiting on it go from STUCK back to REPLICATING."""
    info = open_archive(ctx).replication.retry_transfer(transfer_id)
    if json_:
        emit_json(info)
    else:
        console.print(f"transfer {info.id} of {info.did} to {info.dest}: {info.state}")


def register(app: typer.Typer) -> None:
    rule_app = typer.Typer(help="Replication rules.", no_args_is_help=True)
    command(rule_app, rule_add, "add")
    command(rule_app, rule_list, "list")
    command(rule_app, rule_show, "show")
    command(rule_app, rule_update, "update")
    command(rule_app, rule_delete, "delete")
    app.add_typer(rule_app, name="rule")
    transfer_app = typer.Typer(help="Transfers between RSEs.", no_args_is_help=True)
    command(transfer_app, transfer_list, "list")
    command(transfer_app, transfer_retry, "retry")
    app.add_typer(transfer_app, name="transfer")

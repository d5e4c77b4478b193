"""What every ``medic`` command shares: who acts, how a result is printed, how a command gets
a ``Medic`` to work on, and reading every page of a list.

Nothing here imports SQLAlchemy at module level: ``--help``, ``ping`` and ``config`` must stay
quick and work without a database, so what needs the store is imported inside the function.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from medic_core.errors import MedicError
from medic_core.settings import Settings

if TYPE_CHECKING:
    from medic_core.audit import Actor

#: The subparsers of ``medic`` (or of a command) that a command module adds itself to.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

#: Lists are read 500 rows a page (the API's largest page) until the last one.
_PAGE = 500


def actor() -> Actor:
    """The audit log's actor for a command: ``cli:<login name>`` (the uid if there is none)."""
    # Imported here: it pulls in SQLAlchemy, which `--help`, `ping` and `config` do not need.
    from medic_core.audit import Actor

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return Actor(f"cli:{user}")


def _print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def emit(args: argparse.Namespace, data: Any, columns: Sequence[str] | None = None) -> None:
    """Print ``data`` as a table of ``columns``, or as JSON with ``--json`` or no columns."""
    if getattr(args, "json", False) or columns is None:
        print(json.dumps(data, indent=2, default=str))
    else:
        _print_table(data if isinstance(data, list) else [data], columns)


def emit_view(
    args: argparse.Namespace,
    data: Any,
    columns: Sequence[str],
    view: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """``emit`` with table rows made by ``view`` (JSON output stays the API form)."""
    if getattr(args, "json", False):
        emit(args, data)
    elif isinstance(data, list):
        emit(args, [view(item) for item in data], columns)
    else:
        emit(args, view(data), columns)


def json_option(value: str, option: str) -> Any:
    """``value`` (given as ``option``) parsed as JSON; a clear error when it is not JSON."""
    try:
        return json.loads(value)
    except ValueError as exc:
        raise MedicError(f"{option} is not valid JSON: {exc}") from None


async def all_pages(
    list_page: Callable[..., Awaitable[Any]], **filters: Any
) -> list[dict[str, Any]]:
    """Every item of a registry's paged ``list`` (its ``cursor`` followed to the end)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await list_page(**filters, cursor=cursor, limit=_PAGE)
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items


async def slug_command(
    args: argparse.Namespace,
    command: str,
    resource: Any,
    noun: str,
    data: dict[str, Any],
    *,
    columns: Sequence[str],
    view: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """``add``/``update``/``list``/``show``/``remove`` of a registry whose items are named by
    ``args.slug`` (``data``: the fields the options gave, for ``add`` and ``update``)."""
    if command == "add":
        emit_view(
            args, await resource.create({"slug": args.slug, **data}, actor=actor()), columns, view
        )
    elif command == "update":
        emit_view(args, await resource.update(args.slug, data, actor=actor()), columns, view)
    elif command == "list":
        emit_view(args, await all_pages(resource.list), columns, view)
    elif command == "show":
        print(json.dumps(await resource.get(args.slug), indent=2))
    else:
        await resource.delete(args.slug, actor=actor())
        print(f"removed {noun} {args.slug}")


async def with_medic(settings: Settings, work: Callable[[Any], Awaitable[None]]) -> None:
    """Run ``work`` on a ``Medic`` built from ``settings`` (not started: no server, no loops),
    migrating first when ``MEDIC_AUTO_MIGRATE`` is on."""
    from medic_core.app import Medic
    from medic_core.store.migrate import upgrade

    medic = Medic(settings)
    try:
        if settings.auto_migrate:
            await upgrade(medic.db)
        await work(medic)
    finally:
        await medic.stop()  # not started: closes the notifiers' connections and the database

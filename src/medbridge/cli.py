"""The ``medbridge`` command."""

from __future__ import annotations

import os
import socket
import tomllib
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, cast, get_args

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import track
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from medbridge.app import MedBridge
from medbridge.bus.port import DeadLetterFilter
from medbridge.canonical.codes import CodeError, NdcShape, ndc_readings
from medbridge.canonical.erp import ErpPort
from medbridge.canonical.masterdata import AccountRole, CodeSystem, ItemCode
from medbridge.canonical.tasks import Action, Decision, WorkQueue
from medbridge.commands import analytics as analytics_commands
from medbridge.commands import contracts
from medbridge.commands import masterdata as masterdata_commands
from medbridge.commands import periods as periods_commands
from medbridge.commands import recall as recall_commands
from medbridge.connectors.flatfile import FlatFileError
from medbridge.demo.wiring import demo_settings, running_demo_erp
from medbridge.domain.erp_compare import ComparisonKind, ErpComparison
from medbridge.domain.reconciliation import Reconciliation
from medbridge.flows import erp_cutover
from medbridge.flows.erp_compare import CompareError, ErpCompare
from medbridge.flows.erp_posting import requeue
from medbridge.flows.erp_sync import (
    MasterDataUnavailable,
    pull_from_erp,
    push_to_erp,
    require_master_data,
)
from medbridge.flows.inbound import ExceptionNotOpen, NotFillable
from medbridge.flows.reconciliation import reconcile_period
from medbridge.flows.retention import EVERY_CONNECTOR
from medbridge.flows.work_queue import TaskError
from medbridge.governance.clients import Role
from medbridge.masterdata.repository import CrossReferences, MasterDataError
from medbridge.observability.logging import configure_logging
from medbridge.runtime.policies import erp_destinations
from medbridge.runtime.processes import Role as Process
from medbridge.runtime.processes import message_retention, serve_background, serve_http
from medbridge.runtime.tuning import tune_interpreter
from medbridge.settings import Settings
from medbridge.store import audit as audit_store
from medbridge.store import erp_postings as erp_store
from medbridge.store import exceptions as exception_store
from medbridge.store import gl_summaries
from medbridge.store import ledger as ledger_store
from medbridge.store.audit import cli_actor
from medbridge.store.db import read_only

app = typer.Typer(help="MedBridge: healthcare ERP middleware.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: list and replay.", no_args_is_help=True)
ledger_app = typer.Typer(help="The stock ledger and the journal.", no_args_is_help=True)
seed_app = typer.Typer(help="Seed master data.", no_args_is_help=True)
clients_app = typer.Typer(help="API clients and their keys.", no_args_is_help=True)
schemas_app = typer.Typer(help="The canonical JSON Schema registry.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(dlq_app, name="dlq")
app.add_typer(ledger_app, name="ledger")
app.add_typer(seed_app, name="seed")
app.add_typer(clients_app, name="clients")
app.add_typer(schemas_app, name="schemas")
exceptions_app = typer.Typer(help="The inbound exception queue.", no_args_is_help=True)
xref_app = typer.Typer(help="Cross-references from source systems' codes.", no_args_is_help=True)
app.add_typer(exceptions_app, name="exceptions")
erp_app = typer.Typer(help="The ERP: posting queue and reconciliation.", no_args_is_help=True)
app.add_typer(erp_app, name="erp")
app.add_typer(xref_app, name="xref")
tasks_app = typer.Typer(help="Exception work queues: human tasks.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
app.add_typer(analytics_commands.app, name="analytics")
snapshot_app = typer.Typer(help="Nightly inventory snapshots (flat files).", no_args_is_help=True)
app.add_typer(snapshot_app, name="snapshot")
audit_app = typer.Typer(help="The hash-chained audit log of changes.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
messages_app = typer.Typer(help="The message store: retention of raw bodies.", no_args_is_help=True)
app.add_typer(messages_app, name="messages")
app.add_typer(masterdata_commands.app, name="import")
app.add_typer(contracts.app, name="contracts")

console = Console()
errors = Console(stderr=True, soft_wrap=True)
app.command("recall")(recall_commands.command(lambda: _build()))


REPLAY_PROGRESS_FROM = 10
"""From this many parked messages on, ``exceptions replay`` shows a progress bar (on stderr)."""


class UsageError(Exception):
    """A user's mistake (a setting, an argument, a file), told in one line: no traceback."""


def main() -> None:
    """The ``medbridge`` command: a user's mistake (a bad setting value, a missing file, a
    wrong argument, an unreachable database) ends in one line naming it and exit 2; a
    traceback is left for what is MedBridge's own fault."""
    try:
        app()  # typer's own: a wrong argument or option is its one-line usage error, exit 2
    except (UsageError, ValidationError, OperationalError, OSError, MasterDataError) as error:
        if isinstance(error, OSError) and not _users_file_or_peer(error):
            raise  # not a user's mistake: its traceback is wanted
        errors.print(f"[red]medbridge: {_one_line(error)}[/red]", highlight=False)
        raise SystemExit(2) from None


def _users_file_or_peer(error: OSError) -> bool:
    """A file the user named (missing, unreadable) or a server the settings name refusing."""
    return error.filename is not None or isinstance(error, ConnectionError)


def _one_line(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(_setting_problem(problem) for problem in error.errors())
    if isinstance(error, OperationalError):
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        if "no such table" in reason or "does not exist" in reason:
            reason += " (migrate it first: medbridge db upgrade)"
        return f"cannot use the database (MEDBRIDGE_DATABASE_URL={_redacted_url()}): {reason}"
    if isinstance(error, MasterDataError):
        return f"{error.field}: {error}"
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    return str(error)


def _setting_problem(problem: Any) -> str:
    """A settings error as the variable a user sets: ``MEDBRIDGE_HTTP_PORT='abc': ...``."""
    where = [str(part) for part in problem.get("loc", ())]
    name = "MEDBRIDGE_" + where[0].upper() if where else "settings"
    inner = "".join(f"[{part}]" for part in where[1:])
    given = problem.get("input")
    shown = f"={given!r}" if isinstance(given, str | int | float) else ""
    return f"{name}{inner}{shown}: {problem.get('msg', 'invalid')}"


def _redacted_url() -> str:
    url = os.environ.get("MEDBRIDGE_DATABASE_URL", Settings.model_fields["database_url"].default)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unreadable)"


def _build(*, demo: bool = False) -> MedBridge:
    """MedBridge on the settings of the environment (``demo``, or ``MEDBRIDGE_DEMO``: with
    the demo's timing where they leave it unset, ``demo_settings``)."""
    try:
        settings = Settings()
        if demo or settings.demo:
            settings = demo_settings(settings)
    except ValueError as error:  # pydantic's ValidationError is one; a TOML file's too
        if isinstance(error, ValidationError):
            raise
        if isinstance(error, tomllib.TOMLDecodeError):
            where = os.environ.get("MEDBRIDGE_CONFIG_FILE")
            raise UsageError(f"MEDBRIDGE_CONFIG_FILE={where}: {error}") from None
        raise UsageError(str(error)) from None
    configure_logging(settings.log_level, settings.log_json)
    return MedBridge.build(settings)


app.command("close")(periods_commands.make_close(_build))


def _ports_free(settings: Settings, *, http: bool, mllp: bool) -> None:
    """Stop before anything is printed or started if a port this process serves is taken
    (the servers themselves would fail later, with a traceback, after the announcement)."""
    wanted = []
    if http:
        wanted.append(("MEDBRIDGE_HTTP_PORT", settings.http_host, settings.http_port))
    if mllp and settings.mllp_enabled and settings.mllp_port:
        wanted.append(("MEDBRIDGE_MLLP_PORT", settings.mllp_host, settings.mllp_port))
    for name, host, port in wanted:
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.create_server((host, port), family=family):
                pass
        except OSError as error:
            raise UsageError(
                f"{name}: cannot listen on {host}:{port} ({error.strerror or error}); stop what"
                f" uses it or choose another port"
            ) from None


@app.command()
def run(
    demo: Annotated[bool, typer.Option(help="Seed the demo network and generate traffic.")] = False,
    workers: Annotated[bool, typer.Option(help="Run the consumers in this process.")] = True,
) -> None:
    """Start the API, the listeners and the workers in one process (migrating the database
    first)."""
    tune_interpreter()
    mb = _build(demo=demo)
    _ports_free(mb.settings, http=True, mllp=True)
    mb.upgrade_database()
    key, generated = mb.ensure_admin_key()
    demo = demo or mb.settings.demo
    if demo:
        mb.seed_demo()
    _announce(mb, key if generated or demo else None)
    serve_http(mb, with_workers=workers, demo=demo)


@app.command()
def api() -> None:
    """Serve the HTTP API only: no consumers, no listeners (scale-out; the database must be
    migrated: ``medbridge db upgrade``)."""
    tune_interpreter()
    mb = _build()
    _ports_free(mb.settings, http=True, mllp=False)
    key, generated = mb.ensure_admin_key()
    _announce(mb, key if generated else None)
    serve_http(mb, with_workers=False)


@app.command()
def listen() -> None:
    """Run the MLLP listener, the watched folders and the pollers: no HTTP API, no
    consumers (scale-out). Stops cleanly on SIGTERM/SIGINT."""
    tune_interpreter()
    mb = _build()
    _ports_free(mb.settings, http=False, mllp=True)
    serve_background(mb, Process.LISTEN)


@app.command()
def worker() -> None:
    """Run the bus consumers, the ERP posting outbox, the durable workflows and (with
    MEDBRIDGE_PLANNER_ENABLED, on one worker only) the replenishment planner: no HTTP, no
    MLLP (scale-out). Stops cleanly on SIGTERM/SIGINT."""
    tune_interpreter()
    serve_background(_build(), Process.WORKER)


def _announce(mb: MedBridge, key: str | None) -> None:
    scheme = "http" if mb.settings.http_tls_cert is None else "https"
    where = f"{scheme}://{mb.settings.http_host}:{mb.settings.http_port}"
    console.print(
        f"[bold]MedBridge[/bold] on {where}  (database {mb.settings.database_url})",
        soft_wrap=True,
    )
    if key is not None:  # one line, however narrow the terminal: it is copied from there
        console.print(
            f"admin API key: [bold]{key}[/bold]  (also in {mb.settings.var_dir}/admin_api_key)",
            soft_wrap=True,
        )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration (SQLite or PostgreSQL, per MEDBRIDGE_DATABASE_URL)."""
    mb = _build()
    mb.upgrade_database()
    console.print("database at the latest revision")


@seed_app.command("demo")
def seed_demo() -> None:
    """Seed the two-hospital demo network (idempotent)."""
    mb = _build()
    mb.upgrade_database()
    mb.seed_demo(actor=cli_actor())
    console.print("demo network seeded: 2 facilities, 5 stores, 7 items")


@dlq_app.command("list")
def dlq_list(
    group: Annotated[str | None, typer.Option(help="Consumer group.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include replayed ones.")] = False,
) -> None:
    """List dead letters with their errors."""
    mb = _build()
    letters = mb.bus.dead_letters(DeadLetterFilter(group=group, status=None if all_ else "dead"))
    table = Table("id", "group", "status", "type", "subject", "attempts", "error")
    for d in letters:
        table.add_row(
            str(d.id),
            d.group,
            d.status,
            d.event_type,
            d.subject,
            str(d.attempts),
            f"{d.error_type}: {d.error}",
        )
    console.print(table)
    console.print(f"{len(letters)} dead letter(s)")


@dlq_app.command("replay")
def dlq_replay(
    ids: Annotated[
        list[int] | None, typer.Argument(help="Dead-letter ids (default: filter).")
    ] = None,
    group: Annotated[str, typer.Option(help="Consumer group.")] = "ledger",
    event_type: Annotated[str | None, typer.Option(help="Only this event type.")] = None,
    subject: Annotated[str | None, typer.Option(help="Only this subject (item@location).")] = None,
    error_type: Annotated[str | None, typer.Option(help="Only this error type.")] = None,
) -> None:
    """Redeliver dead letters to their consumer once each (by id, or all matching a filter)."""
    mb = _build()
    consumer = mb.consumers.get(group)
    if consumer is None:
        console.print(
            f"[red]unknown consumer group {group!r}[/red] (known: {', '.join(mb.consumers)})"
        )
        raise typer.Exit(2)
    with errors.status(f"replaying dead letters of {group}"):
        report = consumer.replay(
            DeadLetterFilter(
                ids=tuple(ids) if ids else None,
                event_type=event_type,
                subject=subject,
                error_type=error_type,
            ),
            actor=cli_actor(),
        )
    console.print(f"replayed: {len(report.applied)} applied, {len(report.failed)} failed")
    for dead_id, error in report.failed.items():
        console.print(f"  [red]{dead_id}[/red]: {error}")
    if report.failed:
        raise typer.Exit(1)


@ledger_app.command("show")
def ledger_show(
    item: Annotated[str | None, typer.Option(help="Item code.")] = None,
    location: Annotated[str | None, typer.Option(help="Location code.")] = None,
    journal: Annotated[int, typer.Option(help="How many recent journal entries to show.")] = 5,
) -> None:
    """On-hand stock, the latest journal entries, and the ledger-vs-GL check per facility."""
    mb = _build()
    with mb.engine.connect() as conn:
        rows = ledger_store.stock(conn, item=item, location=location)
        count = ledger_store.counts(conn)
        total = count["journal_entries"]
        latest = ledger_store.journal(
            conn, location=location, item=item, newest_first=True, limit=journal
        )
        entries = list(reversed(latest))  # the latest ``journal``, in the order they were made
        accounts = mb.masterdata.account_map(conn)
        checks = ledger_store.facility_checks(
            conn, {f: a for (f, role), a in accounts.items() if role is AccountRole.INVENTORY}
        )
    stock = Table("item", "location", "lot", "expiry", "on hand", title="On hand")
    for r in rows:
        stock.add_row(
            r.item, r.location, r.lot or "-", str(r.expiry or "-"), f"{r.quantity.normalize():f}"
        )
    console.print(stock)
    title = "Recent journal" + "".join(f" {f}" for f in (item, location) if f)
    recent = Table("entry", "date", "description", "account", "debit", "credit", title=title)
    for e in entries:
        for line in e.lines:
            recent.add_row(
                e.entry_id[:15],
                str(e.posting_date),
                e.description,
                line.account,
                str(line.debit or ""),
                str(line.credit or ""),
            )
    console.print(recent)
    check = Table("facility", "ledger value", "GL inventory", "difference", title="Ledger vs GL")
    for c in checks:
        check.add_row(c.facility, str(c.ledger_value), str(c.gl_inventory), str(c.difference))
    console.print(check)
    console.print(f"{count['movements']} movements applied, {total} journal entries")


@clients_app.command("add")
def clients_add(
    name: str,
    role: Annotated[
        list[Role] | None,
        typer.Option(help="A role (repeat for several); see the README's roles table."),
    ] = None,
    facility: Annotated[
        list[str] | None,
        typer.Option(help="Bind the client to a facility (repeat); none: every facility."),
    ] = None,
) -> None:
    """Create (or re-key) an API client; prints its key once (also its OAuth2 secret)."""
    mb = _build()
    mb.upgrade_database()
    console.print(
        mb.clients.register(
            name, role or [Role.INTEGRATION], facilities=facility, actor=cli_actor()
        )
    )


@clients_app.command("list")
def clients_list() -> None:
    """The API clients: roles, facilities, created and revoked."""
    for c in _build().clients.list():
        where = " ".join(sorted(c.facilities)) if c.facilities is not None else "every facility"
        state = f"revoked {c.revoked_at:%Y-%m-%d}" if c.revoked_at else "active"
        console.print(f"{c.name}\t{' '.join(c.roles)}\t{where}\t{state}")


@clients_app.command("revoke")
def clients_revoke(name: str) -> None:
    """Revoke a client's key."""
    if not _build().clients.revoke(name, actor=cli_actor()):
        console.print(f"[red]no active client {name!r}[/red]")
        raise typer.Exit(1)


@schemas_app.command("publish")
def schemas_publish() -> None:
    """Write the canonical schemas to the registry (refuses an incompatible change)."""
    from medbridge.governance.schema_registry import publish

    written = publish()
    console.print(f"{len(written)} schema file(s) written" if written else "registry up to date")


@exceptions_app.command("list")
def exceptions_list(
    status: Annotated[str, typer.Option(help="open, applied or discarded.")] = "open",
) -> None:
    """Inbound messages parked because a code did not resolve."""
    mb = _build()
    with mb.engine.connect() as conn:
        found = exception_store.listing(conn, status=status)
    table = Table("id", "source", "key", "status", "problems")
    for e in found:
        problems = "; ".join(f"{p['field']}={p['value']}: {p['reason']}" for p in e.problems)
        table.add_row(str(e.id), e.source, e.idempotency_key, e.status, problems)
    console.print(table)
    console.print(f"{len(found)} exception(s)")


@exceptions_app.command("replay")
def exceptions_replay(exception_ids: list[int]) -> None:
    """Resolve parked messages again and apply each once if every code now resolves."""
    mb = _build()
    failed = False
    for exception_id in track(
        exception_ids,
        description="replaying",
        console=errors,
        transient=True,
        disable=len(exception_ids) < REPLAY_PROGRESS_FROM,
    ):
        try:
            result = mb.inbound.replay(exception_id, actor=cli_actor())
        except ExceptionNotOpen as error:
            console.print(f"[red]{error}[/red]")
            failed = True
            continue
        console.print(f"{exception_id}: {result.outcome.value}")
        for p in result.problems:
            console.print(f"  still unresolved: {p.field}={p.value}: {p.reason}")
            failed = True
    if failed:
        raise typer.Exit(1)


@exceptions_app.command("fill")
def exceptions_fill(
    exception_id: int,
    location: Annotated[
        str, typer.Option(help="Where the stock came from, in the sender's own code.")
    ],
    index: Annotated[int, typer.Option(help="Which movement of the message (0: first).")] = 0,
) -> None:
    """Fill in what a parked message leaves out (a FHIR SupplyDelivery without a supplier),
    then replay it; the sender's code is resolved through its cross-references."""
    try:
        result = _build().inbound.fill(exception_id, index, "location", location, actor=cli_actor())
    except (ExceptionNotOpen, NotFillable) as error:
        errors.print(str(error), markup=False)
        raise typer.Exit(1) from error
    console.print(f"{exception_id}: {result.outcome.value}", markup=False)
    for p in result.problems:
        console.print(f"  still unresolved: {p.field}={p.value}: {p.reason}", markup=False)
    if result.problems:
        raise typer.Exit(1)


@exceptions_app.command("discard")
def exceptions_discard(exception_id: int, reason: str) -> None:
    """Close a parked message without applying it."""
    try:
        _build().inbound.discard(exception_id, f"cli: {reason}", actor=cli_actor())
    except ExceptionNotOpen as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error


@xref_app.command("item")
def xref_item(
    item: str,
    system: Annotated[CodeSystem, typer.Option(help="ndc, gtin, local, supplier_sku, erp.")],
    code: Annotated[str, typer.Option(help="The external code.")],
    issuer: Annotated[str | None, typer.Option(help="The source system (local codes).")] = None,
    ndc_shape: Annotated[
        str | None,
        typer.Option(help="An undashed 10-digit NDC's shape: 4-4-2, 5-3-2 or 5-4-1."),
    ] = None,
    replace: Annotated[
        bool, typer.Option(help="Move the code from the item it maps to now (a wrong mapping).")
    ] = False,
) -> None:
    """Map an external item code (NDC, GTIN, a source's local code) to an item."""
    mb = _build()
    with mb.engine.begin() as conn:
        item_code = _item_code(mb, conn, item, system, code, issuer, ndc_shape)
        mb.masterdata.link_code(conn, item, item_code, actor=cli_actor(), replace=replace)
    console.print(f"{system.value} {item_code.code} -> {item}")


@xref_app.command("remove")
def xref_remove(
    system: Annotated[CodeSystem, typer.Option(help="ndc, gtin, local, supplier_sku, erp.")],
    code: Annotated[str, typer.Option(help="The external code.")],
    issuer: Annotated[str | None, typer.Option(help="The source system (local codes).")] = None,
) -> None:
    """Remove an item code's cross-reference (a wrong one): messages carrying it are parked
    for review again until it is mapped."""
    mb = _build()
    with mb.engine.begin() as conn:
        item_code = _item_code(mb, conn, None, system, code, issuer, None)
        was = mb.masterdata.unlink_code(conn, item_code, actor=cli_actor())
    if was is None:
        raise UsageError(f"--code: {system.value} {item_code.code} maps to no item")
    console.print(f"{system.value} {item_code.code} no longer maps to {was}")


def _item_code(
    mb: MedBridge,
    conn: Any,
    item: str | None,
    system: CodeSystem,
    code: str,
    issuer: str | None,
    ndc_shape: str | None,
) -> ItemCode:
    """The code as given, an NDC read in its shape (``--ndc-shape``, or the item's labeler)."""
    if ndc_shape is not None and ndc_shape not in get_args(NdcShape):
        raise UsageError(f"--ndc-shape {ndc_shape!r}: one of 4-4-2, 5-3-2, 5-4-1")
    try:
        if system is CodeSystem.NDC:
            if item is None:
                readings = ndc_readings(code)
                if len(readings) > 1:
                    raise UsageError(f"--code {code!r}: give the NDC dashed (its shape is lost)")
                code = next(iter(readings.values()))
            else:
                code = mb.masterdata.item_ndc(conn, item, code, cast(Any, ndc_shape))
        return ItemCode(system=system, code=code, issuer=issuer)
    except CodeError as error:
        raise UsageError(f"--code: {error}") from None
    except ValidationError as error:
        problem = error.errors()[0]
        where = problem["loc"][0] if problem["loc"] else "code"
        raise UsageError(f"--{where}: {problem['msg']}") from None


@xref_app.command("location")
def xref_location(source_system: str, code: str, location: str) -> None:
    """Map a source system's location code to a MedBridge store or bin."""
    mb = _build()
    with mb.engine.begin() as conn:
        CrossReferences.map_location(conn, source_system, code, location, actor=cli_actor())


@xref_app.command("cost-center")
def xref_cost_center(source_system: str, code: str, cost_center: str) -> None:
    """Map a source system's patient location to a cost center."""
    mb = _build()
    with mb.engine.begin() as conn:
        CrossReferences.map_cost_center(conn, source_system, code, cost_center, actor=cli_actor())


@xref_app.command("unit")
def xref_unit(source_system: str, code: str, unit: str) -> None:
    """Map a source system's unit code to a MedBridge unit."""
    mb = _build()
    with mb.engine.begin() as conn:
        CrossReferences.map_unit(conn, source_system, code, unit, actor=cli_actor())


def _erp(mb: MedBridge, destination: str | None = None) -> ErpPort:
    """The configured ERP (the primary one, or ``destination``), else the one a demo running
    beside this ``var/`` started."""
    if destination is not None and destination not in mb.erp_slots:
        known = ", ".join(sorted(mb.erp_slots))
        raise UsageError(f"no ERP destination {destination!r} (known: {known})")
    slot = mb.erp_slot if destination is None else mb.erp_slots[destination]
    if slot.config is None and slot is mb.erp_slot:
        demo = running_demo_erp(mb.settings)
        if demo is not None:
            slot.attach(demo)
    erp = mb.erp(slot.name)
    if erp is None:
        raise UsageError(
            f"no ERP {slot.name!r}: set MEDBRIDGE_ERP_URL (with _DATABASE, _USER, _PASSWORD) or"
            f" url in the erps.{slot.name} table, or run this beside a running demo"
            f" (medbridge run --demo, var {mb.settings.var_dir})"
        )
    return erp


@erp_app.command("postings")
def erp_postings() -> None:
    """How many journal entries are pending, posted, failed and summarising (with the
    failures' reasons, refused summaries included)."""
    mb = _build()
    with mb.engine.connect() as conn:
        counts = erp_store.counts(conn)
        failed = erp_store.postings(conn, status=erp_store.PostingStatus.FAILED)
        refused = [
            s for s in gl_summaries.summaries(conn) if s.status is gl_summaries.SummaryStatus.FAILED
        ]
    console.print(", ".join(f"{status.value}: {n}" for status, n in counts.items()))
    for posting in failed:
        console.print(f"  [red]{posting.entry_id}[/red]: {posting.last_error}")
    for summary in refused:  # summarised posting: its entries wait with it
        console.print(f"  [red]{summary.summary_id}[/red] (summary): {summary.last_error}")


@erp_app.command("sync")
def erp_sync(
    erp_name: Annotated[
        str | None,
        typer.Option("--erp", help="The ERP destination (default: the primary one)."),
    ] = None,
    push: Annotated[
        bool, typer.Option("--push", help="MedBridge's items, suppliers, GL accounts to it.")
    ] = False,
    pull: Annotated[
        bool, typer.Option("--pull", help="Its products and suppliers into MedBridge (default).")
    ] = False,
) -> None:
    """Sync master data with an ERP destination that offers master_data: pull (default) its
    products and suppliers into MedBridge, or push MedBridge's to it."""
    if push and pull:
        raise UsageError("--push or --pull, not both")
    mb = _build()
    name = erp_name or mb.erp_slot.name
    destinations = erp_destinations(mb.settings)
    if name not in destinations:
        raise UsageError(f"no ERP destination {name!r} (known: {', '.join(sorted(destinations))})")
    offers = destinations[name].capabilities
    try:
        require_master_data(name, offers)
    except MasterDataUnavailable as error:
        raise UsageError(str(error)) from None
    erp = _erp(mb, name)
    if push:
        pushed = push_to_erp(
            mb.engine, mb.masterdata, erp, destination=name, offers=offers, actor=cli_actor()
        )
        for what, outcome in (
            ("created", pushed.created),
            ("updated", pushed.updated),
            ("unchanged", pushed.unchanged),
        ):
            kinds = ", ".join(f"{len(codes)} {kind}(s)" for kind, codes in sorted(outcome.items()))
            console.print(f"{name}: {what}: {kinds or 'none'}")
        for kind, code, reason in pushed.rejected:
            console.print(f"  [red]rejected {kind} {code}[/red]: {reason}")
        if pushed.rejected:
            raise typer.Exit(1)
        return
    database = mb.erp_slots[name].config
    issuer = f"{name}:{database.database if database else name}"
    report = pull_from_erp(
        mb.engine,
        mb.masterdata,
        erp,
        destination=name,
        offers=offers,
        issuer=issuer,
        actor=cli_actor(),
    )
    console.print(
        f"{len(report.linked)} product(s) linked to items, {len(report.suppliers_added)} "
        f"supplier(s) added, {len(report.unmatched)} product(s) matching no item"
    )
    for code in report.unmatched:
        console.print(f"  unmatched: {code}")


@erp_app.command("requeue")
def erp_requeue(entry_ids: list[str]) -> None:
    """Put failed postings back in the queue (after fixing the cause in the ERP)."""
    mb = _build()
    actor = cli_actor()
    missing = [entry for entry in entry_ids if not requeue(mb.engine, entry, actor=actor)]
    for entry in missing:
        console.print(f"[red]{entry} is not a failed posting[/red]")
    if missing:
        raise typer.Exit(1)


@erp_app.command("summary")
def erp_summary(summary_id: str) -> None:
    """A summary of summarised GL posting, drilled down: each line with its entries."""
    mb = _build()
    with mb.engine.connect() as conn:
        found = gl_summaries.get(conn, summary_id)
        rows = gl_summaries.drill_down(conn, summary_id) if found else []
    if found is None:
        raise UsageError(f"no summary {summary_id}")
    move = f", ERP move {found.erp_id}" if found.erp_id else ""
    error = f" ({found.last_error})" if found.last_error else ""
    console.print(f"{found.summary_id}: {found.status.value}{move}{error}")
    table = Table("account", "cost center", "net", "entry", "debit", "credit", "event slice")
    for line in gl_summaries.summary_lines(rows):
        table.add_row(line.account, line.cost_center or "", str(line.net), "", "", "", "")
        for r in line.behind:
            table.add_row(
                "", "", "", r.entry_id, str(r.debit), str(r.credit), f"{r.event_slice:%Y-%m-%dT%H}"
            )
    console.print(table)
    console.print(f"{len({r.entry_id for r in rows})} entries")


@erp_app.command("reconcile")
def erp_reconcile(
    period: Annotated[str, typer.Argument(help="YYYY-MM")],
    through: Annotated[
        str | None, typer.Option(help="YYYY-MM: reconcile every period up to this one")
    ] = None,
    erp: Annotated[
        str | None, typer.Option("--erp", help="The ERP destination (default: every one)")
    ] = None,
) -> None:
    """Compare MedBridge's journal and documents with each ERP's ledger (what MedBridge
    routed to it: every document of the period; inventory, GRNI and AP per supplier balances
    to its end), one report per destination; exit 1 on a difference."""
    mb = _build()
    names = list(mb.erp_slots)
    if erp is not None and erp not in names:
        raise UsageError(f"--erp: no ERP destination {erp!r} (known: {', '.join(names)})")
    balanced = True
    for name in [erp] if erp is not None else names:
        adapter = _erp(mb) if len(names) == 1 else _destination(mb, name)
        try:
            span = f"{period} to {through}" if through else period
            with errors.status(f"reconciling {span} with the ERP {name}"):
                report = reconcile_period(mb.engine, adapter, period, through, destination=name)
        except ValueError as error:
            raise UsageError(f"period: {error}") from None
        if len(names) > 1:
            console.print(f"[bold]ERP {name}[/bold]")
        _print_reconciliation(report)
        balanced &= report.balanced
    if not balanced:
        raise typer.Exit(1)


def _destination(mb: MedBridge, name: str) -> ErpPort:
    adapter = mb.erp(name)
    if adapter is None:
        raise UsageError(
            f"--erp: ERP {name} has no connection (set erps.{name}.url, database, password)"
        )
    return adapter


def _print_reconciliation(report: Reconciliation) -> None:
    table = Table(
        "kind", "reference", "ERP move", "account", "cost center", "party", "MedBridge", "ERP"
    )
    for d in report.differences:
        table.add_row(
            d.kind.value,
            d.reference,
            d.move_id or "",
            d.account or "",
            d.cost_center or "",
            d.party or "",
            str(d.medbridge_amount or ""),
            str(d.erp_amount or ""),
        )
    console.print(table)
    balances = Table("facility", "account", "role", "party", "MedBridge", "ERP", "documents")
    for b in report.balances:
        balances.add_row(
            b.facility,
            b.account,
            b.role,
            b.party or "",
            str(b.medbridge),
            str(b.erp),
            ", ".join(b.documents),
        )
    console.print(balances)
    found = len(report.differences)
    console.print(f"{report.entries} entries, {report.moves} ERP moves, {found} difference(s)")


@erp_app.command("compare")
def erp_compare(
    period: Annotated[str, typer.Option(help="YYYY-MM")],
    left: Annotated[
        str | None, typer.Option(help="An ERP destination (default: each system of record)")
    ] = None,
    right: Annotated[
        str | None, typer.Option(help="Another (default: each shadow of the left one)")
    ] = None,
) -> None:
    """The shadow run's comparison: what two ERP destinations hold for the period, per
    domain and facility (documents on one side only, amounts that differ, totals); exit 1
    on any difference."""
    mb = _build()
    comparer = ErpCompare(mb.engine, mb.erp_router(), mb.erp)
    try:
        with errors.status(f"comparing the ERPs' ledgers of {period}"):
            reports = comparer.compare(period, left, right)
    except CompareError as error:
        raise UsageError(f"--{error}") from None
    if not reports:
        raise UsageError("--left: no destination has a shadow: name --left and --right")
    for report in reports:
        _print_comparison(report)
    if any(not r.identical for r in reports):
        raise typer.Exit(1)


def _print_comparison(report: ErpComparison) -> None:
    left, right = report.left, report.right
    totals = Table(
        "domain", "facility", f"documents {left}", f"documents {right}",
        f"only {left}", f"only {right}", "amounts differ",
        f"debit {left}", f"debit {right}", "difference",
        title=f"{left} vs {right}",
    )  # fmt: skip
    for g in report.groups:
        totals.add_row(
            g.domain or "(none)",
            g.facility or "",
            str(g.left_documents),
            str(g.right_documents),
            str(g.count(ComparisonKind.ONLY_LEFT)),
            str(g.count(ComparisonKind.ONLY_RIGHT)),
            str(g.count(ComparisonKind.AMOUNT_DIFFERS)),
            str(g.left_debit),
            str(g.right_debit),
            str(g.debit_difference),
        )
    console.print(totals)
    if report.differences:
        table = Table(
            "domain", "facility", "kind", "reference", "account",
            f"{left} debit", f"{left} credit", f"{right} debit", f"{right} credit",
        )  # fmt: skip
        for d in report.differences:
            table.add_row(
                d.domain or "(none)",
                d.facility or "",
                d.kind.value,
                d.reference,
                d.account or "",
                str(d.left.debit),
                str(d.left.credit),
                str(d.right.debit),
                str(d.right.credit),
            )
        console.print(table)
    console.print(f"{left} vs {right}: {len(report.differences)} difference(s)")


def _moment(option: str, value: str | None) -> datetime | None:
    """An ISO 8601 moment with its time zone (``Z`` or an offset), or None."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option}: {value!r} is not an ISO 8601 moment") from None
    if moment.tzinfo is None:
        raise UsageError(f"{option}: {value!r} has no time zone (add Z or an offset)")
    return moment


@erp_app.command("cutover")
def erp_cutover_command(
    domain: Annotated[
        str, typer.Option(help="gl, purchase_orders, receipts, invoices, masterdata.")
    ],
    facility: Annotated[str, typer.Option(help="A facility code, or '*' for every facility.")],
    to: Annotated[str, typer.Option(help="The destination that becomes the system of record.")],
    at: Annotated[
        str | None, typer.Option(help="ISO 8601 moment it takes effect (default: now).")
    ] = None,
    shadow: Annotated[
        bool, typer.Option("--shadow/--no-shadow", help="Keep the old one as a shadow.")
    ] = True,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit log).")] = None,
) -> None:
    """Make ``--to`` the system of record of a domain's documents of a facility from a
    moment on (audited); the documents queued before it stay where they were. A rollback is
    the same command back."""
    mb = _build()
    try:
        made = erp_cutover.cut_over(
            mb.engine,
            mb.erp_router(),
            domain,
            facility,
            to,
            _moment("--at", at),
            actor=cli_actor(),
            keep_shadow=shadow,
            reason=reason,
        )
    except erp_cutover.CutoverError as error:
        raise UsageError(f"--{error.field}: {error.reason}") from None
    c = made.cutover
    console.print(
        f"cutover {made.id}: {c.domain.value} of {c.facility} from {made.before.record} to"
        f" {c.route.record} at {c.effective_at.isoformat()}"
        f" (shadow: {', '.join(c.route.shadows) or 'none'})"
    )


@erp_app.command("routes")
def erp_routes_command() -> None:
    """The ERP routes in effect now per domain and facility, and the cutover history."""
    mb = _build()
    with mb.engine.connect() as conn:
        now = erp_cutover.routes_now(conn, mb.erp_router())
        past = erp_cutover.history(conn)
    table = Table("domain", "facility", "system of record", "shadows", "since")
    for r in now:
        since = r.since.isoformat() if r.since else "(settings)"
        table.add_row(r.domain.value, r.facility, r.route.record, ", ".join(r.route.shadows), since)
    console.print(table)
    cutovers = Table("id", "effective at", "domain", "facility", "to", "shadows", "actor", "reason")
    for row in past:
        c = row.cutover
        cutovers.add_row(
            str(row.id),
            c.effective_at.isoformat(),
            c.domain.value,
            c.facility,
            c.route.record,
            ", ".join(c.route.shadows),
            row.actor,
            row.reason or "",
        )
    console.print(cutovers)
    console.print(f"{len(past)} cutover(s)")


@tasks_app.command("list")
def tasks_list(
    queue: Annotated[WorkQueue | None, typer.Option(help="pharmacy, procurement or ap.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Decided ones too.")] = False,
) -> None:
    """Open tasks (oldest first), with what each allows."""
    found = _build().work_queues().listing(queue, open_only=not all_)
    table = Table("id", "queue", "kind", "subject", "reason", "actions", "status")
    for item in found:
        table.add_row(
            str(item.id),
            item.queue.value,
            item.kind,
            item.subject,
            item.reason,
            ", ".join(a.value for a in item.actions),
            item.status.value
            + (f" ({item.decision.action.value} by {item.decided_by})" if item.decision else ""),
        )
    console.print(table)
    console.print(f"{len(found)} task(s)")


@tasks_app.command("decide")
def tasks_decide(
    item_id: int,
    action: Action,
    by: Annotated[str, typer.Option(help="Who decides (recorded).")],
    quantity: Annotated[Decimal | None, typer.Option(help="For adjust_quantity.")] = None,
    unit_price: Annotated[Decimal | None, typer.Option(help="For adjust_price.")] = None,
    note: Annotated[str | None, typer.Option(help="Why.")] = None,
) -> None:
    """Decide an open task with one of its actions; the waiting process resumes."""
    try:
        decision = Decision(action=action, quantity=quantity, unit_price=unit_price, note=note)
        item = (
            _build()
            .work_queues()
            .decide(item_id, decision, decided_by=f"cli:{by}", actor=cli_actor())
        )
    except (TaskError, ValueError) as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    console.print(f"{item.id}: {item.decision.action.value if item.decision else ''} by {by}")


@snapshot_app.command("reconcile")
def snapshot_reconcile(
    file: Annotated[Path, typer.Argument(help="The CSV snapshot (with its #EOF trailer).")],
    source: Annotated[str, typer.Option(help="The configured source (flatfile_sources).")],
) -> None:
    """Reconcile one snapshot file against the ledger; exit 1 if it has variances, 2 if it
    is refused (nothing applied)."""
    mb = _build()
    if source not in mb.settings.flatfile_sources:
        known = ", ".join(sorted(mb.settings.flatfile_sources)) or "none"
        console.print(f"[red]no snapshot source {source!r} configured (known: {known})[/red]")
        raise typer.Exit(2)
    try:
        report = mb.snapshot_reconciler(source).reconcile(file)
    except FlatFileError as refused:
        console.print(f"[red]refused, nothing applied: {refused}[/red]")
        raise typer.Exit(2) from refused
    table = Table("item", "location", "lot", "unit", "ledger", "counted", "difference", "line")
    for v in report.variances:
        table.add_row(
            v.item,
            v.location,
            v.lot or "",
            v.unit,
            str(v.expected),
            str(v.counted),
            str(v.difference),
            str(v.line or ""),
        )
    console.print(table)
    console.print(
        f"{report.rows} rows, {len(report.variances)} variance(s), "
        f"{report.adjustments_emitted} adjustment(s) emitted"
    )
    if report.variances:
        raise typer.Exit(1)


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the audit log's hash chain; exit 1 naming the first broken link (a row
    changed or removed), 0 with how many rows were verified."""
    mb = _build()
    result = audit_store.verify(mb.engine)
    if not result.intact:
        console.print(f"[red]audit chain broken at row {result.broken_at}: {result.reason}[/red]")
        console.print(f"{result.verified} row(s) verified before it")
        raise typer.Exit(1)
    console.print(f"audit chain intact: {result.verified} row(s) verified")


@audit_app.command("list")
def audit_list(
    actor: Annotated[str | None, typer.Option(help="Only this actor.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    last: Annotated[int, typer.Option(help="How many of the latest rows.")] = 20,
) -> None:
    """The latest audit rows, newest first."""
    mb = _build()
    with read_only(mb.engine).connect() as conn:
        found = audit_store.entries(conn, actor=actor, action=action, order="desc", limit=last)
    table = Table("seq", "at", "actor", "action", "target", "hash")
    for e in found:
        target = f"{e.target_type} {e.target_id}"
        table.add_row(str(e.seq), e.at.isoformat(), e.actor, e.action, target, e.hash[:12])
    console.print(table)


@messages_app.command("prune")
def messages_prune(
    older_than_days: Annotated[
        float | None,
        typer.Option(help="Prune bodies older than this, every connector (default: settings)."),
    ] = None,
    connector: Annotated[
        str | None, typer.Option(help="Only this connector (with --older-than-days).")
    ] = None,
    archive: Annotated[
        Path | None, typer.Option(help="Archive bodies here first (default: settings).")
    ] = None,
) -> None:
    """Prune raw message bodies past their retention (archived first if configured), in
    bounded rounds until none is left; rows, events, ledger and journals are kept."""
    mb = _build()
    retention = message_retention(mb)
    if older_than_days is not None:
        if older_than_days <= 0:
            console.print("[red]--older-than-days must be > 0[/red]")
            raise typer.Exit(2)
        retention.ages = {connector or EVERY_CONNECTOR: timedelta(days=older_than_days)}
    elif connector is not None:
        console.print("[red]--connector needs --older-than-days[/red]")
        raise typer.Exit(2)
    if archive is not None:
        retention.archive_dir = archive
    if not retention.ages:
        console.print("no retention configured (MEDBRIDGE_MESSAGE_RETENTION_DAYS): nothing pruned")
        return
    pruned: dict[str, int] = {}
    files = 0
    while True:
        report = retention.prune_once()
        for name, count in report.pruned.items():
            pruned[name] = pruned.get(name, 0) + count
        files += len(report.archived)
        if report.complete:
            break
    total = sum(pruned.values())
    detail = ", ".join(f"{name} {count}" for name, count in sorted(pruned.items()))
    console.print(
        f"{total} body(ies) pruned{f' ({detail})' if detail else ''}; {files} archive file(s)"
    )


if __name__ == "__main__":
    main()

"""All configuration, from ``MEDBRIDGE_*`` environment variables and an optional TOML file
(``MEDBRIDGE_CONFIG_FILE``). Environment wins over the file.

Connectors read no environment: each takes its typed config, and the ones configured apart
from ``Settings`` (their own ``MEDBRIDGE_<NAME>_*`` variables and ``[name]`` table) are read
here, e.g. ``fhir_config()``."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path, PurePath
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from limits import parse_many
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretBytes,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from medbridge.canonical.partners import OwnIdentity, TradingPartner
from medbridge.canonical.tasks import WorkQueue
from medbridge.connectors.fhir.config import NAME as FHIR
from medbridge.connectors.fhir.config import FhirConfig
from medbridge.domain.alerts import Metric, Rule
from medbridge.domain.erp_routing import Capability, ErpDomain

DEFAULT_VAR_DIR = Path("var")


def config_sources(
    settings_cls: type[BaseSettings],
    init_settings: PydanticBaseSettingsSource,
    env_settings: PydanticBaseSettingsSource,
    table: str | None = None,
) -> tuple[PydanticBaseSettingsSource, ...]:
    """Where every MedBridge settings class reads from, first wins: arguments, environment,
    then the TOML file named by ``MEDBRIDGE_CONFIG_FILE`` (its ``[table]`` when given)."""
    sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
    config_file = os.environ.get("MEDBRIDGE_CONFIG_FILE")
    if config_file:
        if not Path(config_file).is_file():  # a typo must not start a process on defaults
            raise ValueError(f"MEDBRIDGE_CONFIG_FILE={config_file}: no such file")
        header = (table,) if table else None
        sources += (
            TomlConfigSettingsSource(
                settings_cls, toml_file=Path(config_file), toml_table_header=header
            ),
        )
    return sources


class FlatFileSource(BaseModel):
    """A legacy system's nightly snapshot (see ``connectors/flatfile``): its columns by header
    name, and how variances are treated."""

    model_config = ConfigDict(extra="forbid")

    item_column: str = "item"
    location_column: str = "location"
    lot_column: str = "lot"
    quantity_column: str = "quantity"
    unit_column: str | None = None
    expiry_column: str | None = None
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8"
    tolerance: Decimal = Field(default=Decimal(0), ge=0)
    emit_adjustments: bool = False
    locations: list[str] = []
    incomplete_grace_seconds: float = Field(default=300.0, ge=0)


class AlertRuleSettings(BaseModel):
    """One alert rule (``domain.alerts.Rule``): ``metric`` above ``above``; ``hours`` or
    ``minutes`` is the window of ``acks_overdue`` and ``error_rate``; ``partner`` (default: the
    most silent configured partner) or ``sender`` (an inbound source such as
    ``hl7v2/PYXIS@H1``) scopes ``partner_silent_hours``; ``connector``
    scopes ``error_rate`` (``hl7v2``, ``fhir``, ``x12``, ``cxml``, or one source of it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    metric: Metric
    above: Decimal = Field(default=Decimal(0), ge=0)
    hours: Decimal | None = Field(default=None, gt=0)
    minutes: Decimal | None = Field(default=None, gt=0)
    partner: str | None = Field(default=None, min_length=1, max_length=64)
    sender: str | None = Field(default=None, pattern=r"^[^/\s]+/\S+$", max_length=200)
    connector: str | None = Field(default=None, min_length=1, max_length=200)

    def rule(self) -> Rule:
        """The domain rule; ValueError naming what does not fit the metric."""
        if self.hours is not None and self.minutes is not None:
            raise ValueError(f"alert rule {self.name}: give hours or minutes, not both")
        scopes = [k for k in ("partner", "sender", "connector") if getattr(self, k) is not None]
        if len(scopes) > 1:
            raise ValueError(f"alert rule {self.name}: give one of {', '.join(scopes)}")
        silent = self.partner is not None or self.sender is not None
        if silent and self.metric is not Metric.PARTNER_SILENT_HOURS:
            raise ValueError(
                f"alert rule {self.name}: only partner_silent_hours takes a partner or sender"
            )
        if self.connector is not None and self.metric is not Metric.ERROR_RATE:
            raise ValueError(f"alert rule {self.name}: only error_rate takes a connector")
        if self.metric is Metric.ERROR_RATE and self.above > 1:
            raise ValueError(f"alert rule {self.name}: an error rate is a fraction (0 to 1)")
        window = (
            timedelta(hours=float(self.hours))
            if self.hours is not None
            else timedelta(minutes=float(self.minutes))
            if self.minutes is not None
            else None
        )
        scope = self.partner or self.sender or self.connector
        return Rule(self.name, self.metric, self.above, window, scope)

    @model_validator(mode="after")
    def _fits_its_metric(self) -> AlertRuleSettings:
        self.rule()
        return self


class ErpDestinationSettings(BaseModel):
    """One named ERP (a TOML ``[erps.NAME]`` table): its connection, what it offers, and how
    MedBridge calls it (rate limit, circuit breaker, hold windows, GL posting mode)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    """The trytond JSON-RPC base URL; unset: attached later (the demo's own ERP)."""
    database: str | None = None
    user: str = "admin"
    password: SecretStr | None = None
    series: Literal["7.0", "8.0"] = "7.0"
    capabilities: list[Capability] = list(Capability)
    """What this ERP offers: general_ledger, procurement, payables, master_data."""
    rate_limit: float = Field(default=10.0, gt=0)
    """Calls per second to this ERP, at most (every kind of call; one posts a batch)."""
    burst: int = Field(default=1, ge=1)
    batch_size: int = Field(default=50, ge=1, le=1000)
    hold_windows: list[str] = []
    hold_timezone: str = "UTC"
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cool_down: float = Field(default=30.0, gt=0)
    auth_cool_down: float = Field(default=300.0, gt=0)
    retry_initial_backoff: float = Field(default=1.0, ge=0)
    retry_max_backoff: float = Field(default=300.0, ge=0)
    lease: float = Field(default=300.0, gt=0)
    poll_interval: float = Field(default=0.5, gt=0)
    gl_posting: Literal["per_event", "summarised"] = "summarised"
    """Consumption entries summarised per slice by default; ``per_event``: one move each."""
    summary_period: Literal["minute", "hour", "day"] = "hour"
    summary_grace: float = Field(default=300.0, ge=0)
    summary_interval: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _connection(self) -> ErpDestinationSettings:
        if self.url and (not self.database or self.password is None):
            raise ValueError("an ERP destination with a url needs its database and password")
        return self


class FacilityRoute(BaseModel):
    model_config = ConfigDict(extra="forbid")

    record: str
    shadow: list[str] = []


class ErpRouteSettings(BaseModel):
    """The base route of one domain (a TOML ``[erp_routes.DOMAIN]`` table): its system of
    record and shadows, and per facility where it differs (``facilities.H1``)."""

    model_config = ConfigDict(extra="forbid")

    record: str
    shadow: list[str] = []
    facilities: dict[str, FacilityRoute] = {}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEDBRIDGE_", extra="ignore")

    var_dir: Path = DEFAULT_VAR_DIR
    database_url: str = f"sqlite:///{DEFAULT_VAR_DIR}/medbridge.db"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    admin_api_key: SecretStr | None = None

    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    """FULL: an acknowledged append survives power loss, not only a process crash."""

    bus_partitions: int = Field(default=8, ge=1, le=1024)
    bus_url: str | None = None
    """NATS JetStream as the event backbone (``nats://127.0.0.1:4222``); unset: the embedded
    SQL log in the database. Dead letters stay in the database either way."""
    bus_stream: str = Field(default="MEDBRIDGE_EVENTS", pattern=r"^[A-Za-z0-9_-]+$")
    bus_subject_prefix: str = Field(default="medbridge.events", pattern=r"^[A-Za-z0-9_.-]+$")
    bus_duplicate_window: float = Field(default=120.0, gt=0)
    """JetStream: seconds a re-sent idempotency key is recognised by the stream; later resends
    are skipped by the consumers' own dedup records."""
    bus_ack_wait: float = Field(default=30.0, gt=0)
    """JetStream: seconds before a dead worker's uncommitted messages go to another worker."""
    consumer_batch_size: int = Field(default=500, ge=1, le=10_000)
    consumer_poll_interval: float = Field(default=0.05, gt=0)
    retry_max_attempts: int = Field(default=5, ge=1)
    retry_initial_backoff: float = Field(default=0.2, ge=0)
    retry_max_backoff: float = Field(default=10.0, ge=0)

    mllp_enabled: bool = True
    mllp_host: str = "127.0.0.1"
    mllp_port: int = Field(default=2575, ge=0, le=65535)
    hl7_unmapped_ack: Literal["AA", "AE"] = "AA"
    hl7_strict_validation: bool = False
    """How a message parked for review (unmapped codes) is acknowledged."""
    pseudonym_secret: SecretStr | None = None
    """HMAC key of encounter pseudonyms; if unset, generated once into ``var/pseudonym_secret``."""

    # --- transport security: TLS for HTTP and MLLP, the MLLP source allowlist -------------
    # Off by default. A CA file asks for client certificates and verifies them against it;
    # ``*_require_client_cert`` (default true) refuses a client that presents none.
    http_tls_cert: Path | None = None
    """PEM certificate (chain) of the API and console: set, they are served over HTTPS only."""
    http_tls_key: Path | None = None
    """Its private key (unset: in ``http_tls_cert``)."""
    http_tls_ca: Path | None = None
    """CA bundle that HTTP clients' certificates must chain to (unset: none asked for)."""
    http_tls_require_client_cert: bool = True
    mllp_tls_cert: Path | None = None
    """PEM certificate (chain) of the MLLP listener: set, it speaks TLS only."""
    mllp_tls_key: Path | None = None
    mllp_tls_ca: Path | None = None
    """CA bundle that MLLP senders' certificates must chain to (unset: none asked for)."""
    mllp_tls_require_client_cert: bool = True
    mllp_tls_handshake_timeout: float = Field(default=10.0, gt=0)
    mllp_allowed_sources: list[IPvAnyNetwork] = []
    """Networks MLLP senders may connect from, e.g. ``["10.20.0.0/16"]`` (empty: any)."""
    mllp_source_clients: dict[IPvAnyNetwork, str] = {}
    """MLLP senders bound to API clients by the network they connect from, e.g.
    ``{"10.20.1.0/24": "cabinets-h1"}`` (the most specific network wins): what they send is
    held to that client's facilities (``AE`` for another facility's stock), on top of any
    binding of their MSH sender (``sender_clients``)."""

    @model_validator(mode="after")
    def _tls_needs_a_certificate(self) -> Settings:
        for side in ("http", "mllp"):
            if getattr(self, f"{side}_tls_cert") is None:
                for part in ("key", "ca"):
                    if getattr(self, f"{side}_tls_{part}") is not None:
                        raise ValueError(f"{side}_tls_{part} needs {side}_tls_cert")
        return self

    # --- end of transport security --------------------------------------------------------

    gnuhealth_url: str | None = None
    """A GNU Health (trytond) server to poll for pharmacy dispenses; unset: no poller."""
    gnuhealth_database: str | None = None
    gnuhealth_user: str = "admin"
    gnuhealth_password: SecretStr | None = None
    gnuhealth_poll_interval: float = Field(default=5.0, gt=0)
    gnuhealth_item_code_kind: Literal["local", "ndc", "gtin"] = "local"

    erp_url: str | None = None
    """The Tryton ERP (trytond JSON-RPC base URL); unset: no ERP posting."""
    erp_database: str | None = None
    erp_user: str = "admin"
    erp_password: SecretStr | None = None
    erp_series: Literal["7.0", "8.0"] = "7.0"
    """The ERP's Tryton series: 8.0 serves JSON-RPC at ``<url>/<db>/rpc/`` (7.0 at
    ``<url>/<db>/``) and names a few buttons differently (``TrytonSeries``)."""
    erp_rate_limit: float = Field(default=10.0, gt=0)
    """Calls per second to the ERP, at most (port calls: one posts a batch of entries)."""
    erp_burst: int = Field(default=1, ge=1)
    erp_batch_size: int = Field(default=50, ge=1, le=1000)
    """Journal entries posted per ERP call (claimed per round of the posting worker)."""
    erp_hold_windows: list[str] = []
    """Daily windows with no posting, e.g. ``["23:30-00:30"]`` for a nightly close."""
    erp_hold_timezone: str = "UTC"
    erp_breaker_failures: int = Field(default=5, ge=1)
    erp_breaker_cool_down: float = Field(default=30.0, gt=0)
    erp_auth_cool_down: float = Field(default=300.0, gt=0)
    erp_retry_initial_backoff: float = Field(default=1.0, ge=0)
    erp_retry_max_backoff: float = Field(default=300.0, ge=0)
    erp_lease: float = Field(default=300.0, gt=0)
    """Seconds a claimed ERP posting is reserved for the worker that claimed it: after a
    crash, what it held is posted again once its lease runs out (the ERP finds a move it
    already created). Shorter: faster recovery; longer than the slowest ERP call, always."""
    erp_poll_interval: float = Field(default=0.5, gt=0)
    erp_gl_posting: Literal["per_event", "summarised"] = "summarised"
    """``summarised`` (the default, as for every named destination): consumption entries
    (dispenses, clinical consumption) reach the ERP as one move per slice
    (``erp_summary_period``, facility), lines per account and cost center; every other entry
    per event. ``per_event``: one move per entry."""
    erp_summary_period: Literal["minute", "hour", "day"] = "hour"
    erp_summary_grace: float = Field(default=300.0, ge=0)
    """Seconds after a slice's end before it is closed (later entries go to the next slice)."""
    erp_summary_interval: float = Field(default=30.0, gt=0)
    erps: dict[str, ErpDestinationSettings] = {}
    """Named ERP destinations (``[erps.legacy]``, ``[erps.cloud]``); unset: one, named
    ``tryton``, from the ``erp_*`` settings above."""
    erp_routes: dict[ErpDomain, ErpRouteSettings] = {}
    """Per domain (gl, purchase_orders, receipts, invoices, masterdata): the system of record
    and shadows, from the start (``medbridge erp cutover`` changes them later); needed with
    several ``erps``."""

    own_identity: OwnIdentity = OwnIdentity()
    """How MedBridge identifies itself to trading partners (ISA sender, cXML From)."""
    partners: dict[str, TradingPartner] = {}
    """Trading partners by supplier code (a TOML ``[partners.CODE]`` table each)."""
    partner_folder_poll_interval: float = Field(default=2.0, gt=0)
    x12_max_bytes: int = Field(default=5_000_000, ge=1_000)
    cxml_max_bytes: int = Field(default=2_000_000, ge=1_000)

    flatfile_root: Path | None = None
    """Watched folder root: ``<root>/<source>/incoming/`` per source below; unset: none."""
    flatfile_sources: dict[str, FlatFileSource] = {}
    flatfile_poll_interval: float = Field(default=30.0, gt=0)

    workflows_enabled: bool = True
    """Durable workflows (DBOS): replenishment planning, procure-to-pay, invoice matching."""
    workflow_database_url: str | None = None
    """DBOS's system database; unset: PostgreSQL's own database (schema ``workflow_schema``),
    or a file beside the SQLite database."""
    workflow_schema: str = "dbos"
    workflow_poll_interval: float = Field(default=0.1, gt=0)
    """How often a waiting workflow looks for messages (DBOS on SQLite polls)."""
    planner_enabled: bool = True
    """Run the replenishment planner in this worker (with ``workflows_enabled``). Scale-out:
    true on ONE worker only. Two planners at once could both propose a shortfall (each
    proposal is keyed by its trigger, but two rounds can name different triggers for one
    position) and both release the same open lines into purchase orders."""
    replenishment_interval: float = Field(default=30.0, gt=0)
    """Seconds between replenishment planner rounds."""
    consolidation_window: float = Field(default=1800.0, ge=0)
    """Seconds routine order lines wait to be consolidated per supplier and facility."""
    ack_timeout: float = Field(default=4 * 3600.0, gt=0)
    shipment_timeout: float = Field(default=14 * 86400.0, gt=0)
    receipt_grace: float = Field(default=2 * 86400.0, ge=0)
    """How long an invoice waits for the goods it bills before it is matched anyway."""
    task_poll_interval: float = Field(default=30.0, gt=0)
    queue_owners: dict[WorkQueue, list[str]] = {}
    """Who may decide each work queue's tasks (client names, or names given to the CLI's
    ``--by``), e.g. ``{"ap": ["ap-clerk"]}``; a queue not listed: any operator."""
    auto_receive: bool = False
    """Receive goods as their ship notice announces them (no dock count)."""
    match_price_percent: Decimal = Field(default=Decimal(2), ge=0)
    match_price_absolute: Decimal = Field(default=Decimal("0.05"), ge=0)
    match_quantity_percent: Decimal = Field(default=Decimal(0), ge=0)
    match_total_absolute: Decimal = Field(default=Decimal("0.05"), ge=0)
    contract_price_tolerance: Decimal = Field(default=Decimal(5), ge=0, le=1000)
    """A partner's 832 catalog price within this many percent of the contract price applies
    directly; beyond it, a procurement task decides."""
    contract_catalog_tier: str | None = Field(default=None, min_length=1, max_length=35)
    """Our price tier in partners' 832 contract pricing (a buying group tier such as
    ``C01``); None: the list price, or the only price a unit has."""

    demo: bool = False
    demo_dispenses_per_second: float = Field(default=2.0, gt=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True

    otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://")
    """Export traces by OTLP/HTTP (protobuf) to this URL, e.g.
    ``http://127.0.0.1:4318/v1/traces``; unset: no tracing at all (nothing is recorded)."""
    otlp_service_name: str = Field(default="medbridge", min_length=1)
    """The ``service.name`` of the traces (one per deployment; processes share it)."""

    # --- access: OAuth2 tokens, rate limits, body sizes (governance, api.auth) -------------
    console_session_key: SecretStr | None = None
    """The key signing the console's session cookies; if unset, generated once into
    ``var/console_session_key``. Every process serving the console must share it."""
    console_session_hours: int = Field(default=8, ge=1, le=24 * 7)
    """How long a console sign-in lasts (the cookie's ``Max-Age``)."""
    oauth_issuer: str = Field(default="medbridge", min_length=1)
    """The ``iss`` of the tokens MedBridge issues at ``POST /oauth/token``."""
    oauth_audience: str = Field(default="medbridge-api", min_length=1)
    oauth_token_lifetime: int = Field(default=300, ge=30, le=3600)
    """Seconds a token MedBridge issues is valid."""
    oauth_signing_key: SecretStr | None = None
    """HS256 key of MedBridge's tokens (32+ characters); if unset, generated once into
    ``var/oauth_signing_key``. Every process of a deployment must share it."""
    oauth_external_issuer: str | None = None
    """An identity provider whose tokens are trusted too (its ``iss``), with its JWKS URL
    and the audience its tokens carry for MedBridge."""
    oauth_external_jwks_url: str | None = None
    oauth_external_audience: str | None = None
    oauth_external_client_claim: str = "azp"
    oauth_external_facilities_claim: str = "facilities"
    client_rate_limits: dict[str, str] = {"default": "1000/second;50000000/day"}
    """Per client name (``default``: every other client), ``limits`` notation, several
    separated by ``;``: a rate and a quota. Over any: 429 with ``Retry-After``."""
    rate_limit_storage: str = "memory://"
    """Where the counts live: per process (``memory://``) or shared (``redis://host:6379``)."""
    sender_clients: dict[str, str] = {}
    """Inbound senders bound to API clients, by the source connectors name them (e.g.
    ``{"hl7v2/PYXIS@H1": "cabinets-h1"}``): a bound sender posts only for its client's
    facilities (HL7 ``AE``, FHIR 403 otherwise). A FHIR sender is its API client."""
    client_data_policies: dict[str, dict[str, list[str]]] = {}
    """Per client name: per route (or ``*``), the fields it never receives in answers, e.g.
    ``{"bi-warehouse": {"*": ["correlation_id"]}}`` (governance.minimisation). Encounter
    pseudonyms need ``encounters:read`` whatever this says."""
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)

    # --- alerts (flows.alerts) ---------------------------------------------------------------
    alert_rules: list[AlertRuleSettings] = []
    """E.g. ``[{"name": "dead-letters", "metric": "dead_letters", "above": 0}]``; metrics:
    dead_letters, backlog, erp_failed, erp_pending, work_items_open, consumer_lag_seconds,
    erp_circuit_open_minutes, acks_overdue (with ``hours``), partner_silent_hours (optional
    ``partner`` or ``sender``), error_rate (``connector`` and ``minutes``; the embedded SQL
    log only). README "Alerts" has the syntax."""
    alert_interval: float = Field(default=30.0, gt=0)
    alert_webhook_url: str | None = None
    alert_smtp_host: str | None = None
    alert_smtp_port: int = Field(default=25, ge=1, le=65535)
    alert_smtp_sender: str = "medbridge@localhost"
    alert_smtp_recipients: list[str] = []
    """The largest request body any route takes (413 beyond)."""

    # --- the message store's retention (flows.retention) -----------------------------------
    message_retention_days: dict[str, float] = {}
    """Days a raw message body is kept, per connector (``hl7v2``, ``fhir``, ``x12`` ...);
    ``"*"`` for every connector not named. Unset: bodies are kept. The message's row, its
    events, the ledger and the journals are always kept."""
    message_archive_dir: Path | None = None
    """Where bodies are archived before they are pruned (gzip JSON lines, one file per
    batch, under ``<dir>/<connector>/``); unset: pruned without an archive."""
    message_prune_interval: float = Field(default=3600.0, gt=0)
    message_prune_batch: int = Field(default=1000, ge=1, le=50_000)
    """Bodies per pruning transaction (short: ingest never waits long for the lock)."""
    message_prune_max_batches: int = Field(default=100, ge=1)
    """Batches per pruning round, at most (a round is bounded; the next one continues)."""

    @field_validator("message_retention_days")
    @classmethod
    def _retention_positive(cls, value: dict[str, float]) -> dict[str, float]:
        for connector, days in value.items():
            if days <= 0:
                raise ValueError(f"message_retention_days[{connector!r}] must be > 0")
        return value

    @field_validator("client_rate_limits")
    @classmethod
    def _rate_limits(cls, value: dict[str, str]) -> dict[str, str]:
        for spec in value.values():
            if spec.strip():
                parse_many(spec)  # ValueError naming what it cannot read
        return value

    @model_validator(mode="after")
    def _external_issuer(self) -> Settings:
        external = (
            self.oauth_external_issuer,
            self.oauth_external_jwks_url,
            self.oauth_external_audience,
        )
        if any(external) and not all(external):
            raise ValueError(
                "oauth_external_issuer, oauth_external_jwks_url and oauth_external_audience"
                " go together"
            )
        return self

    @model_validator(mode="after")
    def _erp_destinations(self) -> Settings:
        for name in self.erps:
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,63}", name):
                raise ValueError(f"erps.{name}: a destination name is [a-z][a-z0-9_-]*")
        if self.erps and self.erp_url:
            raise ValueError("erp_url and erps: name every ERP in erps (erp_url is for one)")
        if len(self.erps) > 1 and not self.erp_routes:
            raise ValueError("several erps need erp_routes (which is the system of record)")
        return self

    @model_validator(mode="after")
    def _alert_rules_fit(self) -> Settings:
        for r in self.alert_rules:
            if r.partner is not None and r.partner not in self.partners:
                raise ValueError(f"alert rule {r.name}: {r.partner} is not a configured partner")
            if (r.metric is Metric.ERROR_RATE or r.sender is not None) and self.bus_url:
                raise ValueError(
                    f"alert rule {r.name}: {r.metric.value} reads what was received in the"
                    " embedded SQL log; on JetStream (bus_url) nothing durable counts it yet"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return config_sources(settings_cls, init_settings, env_settings)


class _FhirSettings(BaseSettings, FhirConfig):
    """``FhirConfig`` as read from ``MEDBRIDGE_FHIR_*`` and the ``[fhir]`` table."""

    model_config = SettingsConfigDict(env_prefix="MEDBRIDGE_FHIR_", extra="ignore", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return config_sources(settings_cls, init_settings, env_settings, table=FHIR)


def fhir_config() -> FhirConfig:
    """The FHIR connector's config from ``MEDBRIDGE_FHIR_*`` and the config file's ``[fhir]``
    table (environment first)."""
    read = _FhirSettings()
    return FhirConfig.model_validate(
        {name: getattr(read, name) for name in FhirConfig.model_fields}
    )


# --- the effective settings, secrets redacted (the audit log's record of a start) -----------

REDACTED = "<redacted>"
SECRET_NAME = re.compile(r"secret|password|passwd|token|api_key|private_key|credential", re.I)
"""A setting (or a table key, or a URL query parameter) so named is a secret whatever its
type: a field added later as a plain ``str`` is redacted too."""


def _redacted_url(url: str) -> str:
    """The URL with its password and any secret-named query parameter replaced (a URL with
    neither is returned as it was: ``sqlite:////abs/path`` keeps its four slashes)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL after all (a bracket in a path ...): keep it whole
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if password is None and not any(SECRET_NAME.search(k) for k, _ in pairs):
        return url
    netloc = parts.netloc
    if password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}:{REDACTED}@{host}"
    query = urlencode([(k, REDACTED if SECRET_NAME.search(k) else v) for k, v in pairs], safe="<>")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redacted(value: Any, name: str = "") -> Any:
    """``value`` as plain JSON with every secret replaced by ``REDACTED``: secret types
    (``SecretStr``), secret-named fields and keys (``SECRET_NAME``), passwords in URLs."""
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if isinstance(value, BaseModel):
        return {k: redacted(getattr(value, k), k) for k in type(value).model_fields}
    if isinstance(value, dict):
        return {str(k): redacted(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redacted(v, name) for v in value]
    if value is not None and SECRET_NAME.search(name):
        return REDACTED
    if isinstance(value, str):
        return _redacted_url(value) if "://" in value else value
    if isinstance(value, PurePath | Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value


def effective_settings(settings: BaseSettings) -> dict[str, Any]:
    """Every setting as in effect, secrets redacted (what a process records at its start)."""
    found: dict[str, Any] = redacted(settings)
    return found

"""Every setting Medic reads, in one place.

Settings come from ``MEDIC_*`` environment variables, or from a TOML file named by
``MEDIC_CONFIG_FILE`` whose keys are the variable names without the prefix, in lower case
(``database_url = "..."``); the environment wins over the file. Only the composition root
(``medic_core.app``) and the CLI call ``Settings.load``. ``docs/configuration.md`` is generated
from the table below (``medic config --markdown``), so the docs cannot drift from the code.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "medic")


#: Secret settings are marked once, here, in their field's metadata (``secret=``); wherever
#: settings are printed or logged (``medic config``, ``medic doctor``, the logs) a
#: ``HIDE_VALUE`` setting shows as ``MASK``, and a ``HIDE_URL_CREDENTIALS`` one shows its URL
#: with the password of the user part (and credential-like query values) as ``MASK``.
HIDE_VALUE = "value"
HIDE_URL_CREDENTIALS = "url"
#: A comma-separated list of secrets (``MEDIC_SECRET_KEY``): shown as ``MASK``, and each item
#: is scrubbed on its own too (a log line may quote one key of the list).
HIDE_LIST = "list"
MASK = "********"
#: Query parameters of a URL that carry credentials (``?password=...``, ``?token=...``).
_CREDENTIAL_QUERY = re.compile(r"pass|secret|token|key|auth|cred", re.IGNORECASE)


def _setting(default: Any, help: str, *, secret: str | None = None) -> Any:
    """A setting; ``secret`` (``HIDE_VALUE``, ``HIDE_LIST``, ``HIDE_URL_CREDENTIALS``): what
    is never shown."""
    metadata: dict[str, Any] = {"help": help}
    if secret is not None:
        metadata["secret"] = secret
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    data_dir: str = field(
        default_factory=_default_data_dir,
        metadata={
            "help": "Directory for the embedded SQLite database (default ~/.local/share/medic)."
        },
    )
    database_url: str = _setting(
        "",
        "Database URL. Empty: SQLite at <data_dir>/medic.db. PostgreSQL: postgresql://user:pass@host:5432/medic",
        secret=HIDE_URL_CREDENTIALS,
    )
    host: str = _setting("127.0.0.1", "Address the HTTP server listens on (0.0.0.0 for all).")
    port: int = _setting(8080, "HTTP port.")
    public_url: str = _setting(
        "", "URL people use to reach Medic (printed at start, used in links)."
    )
    admin_key: str = _setting(
        "",
        "Admin API key to create on first start (empty database) instead of generating one.",
        secret=HIDE_VALUE,
    )
    auto_migrate: bool = _setting(True, "Apply database migrations when the server starts.")
    log_level: str = _setting("INFO", "DEBUG, INFO, WARNING or ERROR.")
    log_format: str = _setting("json", "json (one object per line) or text.")
    notifiers: str = _setting(
        "log", "Comma-separated notifier plugins every unsuppressed alert goes to."
    )
    disabled_plugins: str = _setting(
        "", "Comma-separated entry-point names of plugins not to load."
    )
    max_body_bytes: int = _setting(1_048_576, "Largest request body accepted (413 above it).")
    rate_limit: float = _setting(1000.0, "Requests per second allowed per API key (0 disables).")
    rate_burst: int = _setting(2000, "Requests a key may send at once before the rate applies.")
    trusted_proxies: str = _setting(
        "",
        "Comma-separated CIDRs of the load balancers/proxies in front of Medic. A request from "
        "one of them is attributed to the rightmost X-Forwarded-For address that is not itself "
        "a trusted proxy; from anywhere else X-Forwarded-For is ignored. Empty: none trusted.",
    )
    auth_failure_rate: float = _setting(
        1.0,
        "Failed authentications per second a client address regains (no, malformed, unknown, "
        "revoked or expired key, on HTTP and gRPC). An address that has used up "
        "MEDIC_AUTH_FAILURE_BURST is refused (HTTP 429, gRPC RESOURCE_EXHAUSTED) before its key "
        "is looked up, unless its key is already verified in this process's cache. 0 disables.",
    )
    auth_failure_burst: int = _setting(
        20, "Failed authentications a client address may make at once before it is refused."
    )
    auth_failure_delay: float = _setting(
        3.0,
        "Seconds (on average; spread by +-50%) Medic holds the answer to a request it refuses "
        "because its address used up MEDIC_AUTH_FAILURE_BURST: a client that ignores "
        "Retry-After then sends at most one request per connection this often. 0: answer at once.",
    )
    auth_failure_sources: int = _setting(
        100_000,
        "Most client addresses whose failed authentications are remembered (least recently "
        "failed forgotten first: a forgotten address starts with a full budget).",
    )
    key_negative_cache_ttl: float = _setting(
        10.0,
        "Seconds an unknown API key id is remembered as unknown (no database lookup until then; "
        "a key created on another replica is accepted here within this time). 0 disables.",
    )
    key_negative_cache_size: int = _setting(
        10_000, "Most unknown API key ids remembered (the oldest forgotten first)."
    )
    http_header_timeout: float = _setting(
        10.0,
        "Seconds a client has to send a complete request head (request line and headers), "
        "counted from the connection's accept and, on a kept-alive connection, from the first "
        "byte of the next request. The connection is closed after it (408 if a head began).",
    )
    http_idle_timeout: float = _setting(
        75.0,
        "Seconds a kept-alive connection may stay idle between requests. Keep it above the "
        "idle timeout of a load balancer in front (ALB: 60 s).",
    )
    http_body_timeout: float = _setting(
        30.0,
        "Seconds a request body may take to arrive once its request is taken up (408 after it).",
    )
    http_max_connections: int = _setting(
        10_000,
        "Most open HTTP connections; further ones are closed at once. Keep it below the "
        "process's file descriptor limit (ulimit -n) minus the database pool and agent streams.",
    )
    http_max_connections_per_source: int = _setting(
        256,
        "Most open HTTP connections from one client address (an IPv6 /64 counts as one); "
        "further ones are closed at once. MEDIC_TRUSTED_PROXIES are exempt.",
    )
    http_max_url_bytes: int = _setting(
        8190, "Longest request target (path and query) accepted (414 above it)."
    )
    http_max_header_bytes: int = _setting(
        16_384,
        "Largest request head: request line plus every header line (431 above it). Must be "
        "larger than MEDIC_HTTP_MAX_URL_BYTES.",
    )
    http_max_headers: int = _setting(64, "Most header lines in one request (431 above it).")
    writer_queue: int = _setting(10_000, "Heartbeats that may wait for the writer before 503s.")
    writer_batch: int = _setting(500, "Most heartbeats committed in one transaction.")
    background: bool = _setting(
        True,
        "Run the background services here (monitor, notification delivery, agent-offline "
        "watch). false: this replica only serves HTTP and gRPC; at least one replica must run "
        "them (any number may: they coordinate through the database).",
    )
    monitor_batch: int = _setting(500, "Most overdue items the monitor claims per transaction.")
    monitor_max_sleep: float = _setting(
        10.0, "Longest the monitor sleeps without looking (seconds)."
    )
    db_pool_size: int = _setting(10, "PostgreSQL connection pool size.")
    db_connect_timeout: float = _setting(3.0, "Seconds to wait for a database connection.")
    db_request_timeout: float = _setting(
        2.0,
        "Longest a request waits on the database (a heartbeat for its commit, an API-key "
        "lookup) before it is answered 503 'database too slow'; keep it well under clients' "
        "timeouts.",
    )
    db_probe_timeout: float = _setting(
        1.0, "Longest the database check of /health/ready waits for the database (seconds)."
    )
    db_breaker_failures: int = _setting(
        1,
        "Consecutive database failures or timeouts after which requests are refused at once "
        "(503 + Retry-After) for 0.25 s doubling to 2 s, one probe at a time testing recovery.",
    )
    db_outage_log_every: float = _setting(
        10.0,
        "While the database fails, seconds between the summary lines logged (the first "
        "failure and the recovery get one line each).",
    )
    db_start_wait: float = _setting(
        300.0,
        "Seconds medic serve waits for an unreachable database at start, retrying with "
        "back-off (0: forever); then it exits.",
    )
    sqlite_synchronous: str = _setting(
        "FULL", "SQLite synchronous mode; FULL makes every commit durable."
    )
    key_cache_ttl: float = _setting(5.0, "Seconds a verified API key is cached.")
    api_key: str = _setting(
        "", "API key the CLI's client commands (medic ping) send.", secret=HIDE_VALUE
    )
    otlp_endpoint: str = _setting(
        "", "OTLP/HTTP endpoint for traces (needs the otel extra).", secret=HIDE_URL_CREDENTIALS
    )
    redis_url: str = _setting(
        "",
        "Redis URL (redis:// or rediss:// for TLS); when set, /health/ready checks it (needs "
        "the redis extra).",
        secret=HIDE_URL_CREDENTIALS,
    )
    notify_timeout: float = _setting(10.0, "Seconds one notification delivery may take.")
    delivery_max_attempts: int = _setting(
        12, "Attempts per notification before it is marked failed (re-drivable)."
    )
    delivery_backoff: float = _setting(
        5.0, "First retry delay in seconds; doubles per attempt, with full jitter."
    )
    delivery_backoff_max: float = _setting(900.0, "Longest delay between two attempts (s).")
    delivery_concurrency: int = _setting(16, "Notifications sent at once by one process.")
    breaker_failures: int = _setting(
        5, "Consecutive failures of a target that open its circuit breaker."
    )
    breaker_cooldown: float = _setting(
        60.0, "Seconds an open breaker holds a target's deliveries before one probe."
    )
    outbound_allow_hosts: str = _setting(
        "",
        "Comma-separated host names webhook targets may call (empty: any public host). "
        "Entries may start with '*.' to allow subdomains.",
    )
    outbound_allow_networks: str = _setting(
        "",
        "Comma-separated CIDRs webhook targets may reach although they are private, loopback or "
        "link-local (e.g. 10.20.0.0/16 for an internal receiver). Empty: none.",
    )
    slack_bot_token: str = _setting(
        "", "Slack bot token (xoxb-...) the Slack notifier uses.", secret=HIDE_VALUE
    )
    slack_signing_secret: str = _setting(
        "", "Slack signing secret; verifies Acknowledge/Resolve button clicks.", secret=HIDE_VALUE
    )
    slack_api_url: str = _setting(
        "https://slack.com/api", "Base URL of the Slack Web API.", secret=HIDE_URL_CREDENTIALS
    )
    pagerduty_events_url: str = _setting(
        "https://events.pagerduty.com/v2/enqueue",
        "PagerDuty Events API v2 endpoint.",
        secret=HIDE_URL_CREDENTIALS,
    )
    smtp_host: str = _setting("", "SMTP server for the email notifier (empty: email disabled).")
    smtp_port: int = _setting(587, "SMTP port.")
    smtp_starttls: bool = _setting(True, "Upgrade the SMTP connection with STARTTLS (required).")
    smtp_username: str = _setting("", "SMTP user name (empty: no authentication).")
    smtp_password: str = _setting("", "SMTP password.", secret=HIDE_VALUE)
    smtp_ca_file: str = _setting(
        "", "PEM file of CAs trusted for the SMTP server's certificate (empty: the system's)."
    )
    smtp_from: str = _setting("", "Sender address of alert emails, e.g. Medic <medic@example.org>.")
    grpc_port: int = _setting(
        0, "Port of the agent gRPC endpoint, on MEDIC_HOST (0: agents cannot connect here)."
    )
    grpc_tls_cert: str = _setting(
        "", "PEM certificate chain of the gRPC endpoint (with MEDIC_GRPC_TLS_KEY: TLS on)."
    )
    grpc_tls_key: str = _setting("", "PEM private key of the gRPC endpoint.")
    grpc_tls_client_ca: str = _setting(
        "", "PEM CA bundle: when set, agents must present a client certificate it signed (mTLS)."
    )
    agent_heartbeat_interval: int = _setting(
        30, "Seconds between an agent's heartbeats (sent to agents in Welcome)."
    )
    agent_missed_heartbeats: int = _setting(
        3, "Heartbeat intervals of silence after which a connected agent counts as offline."
    )
    agent_offline_alert_after: int = _setting(
        120, "Seconds an agent may stay offline before its agent_offline alert opens."
    )
    agent_dispatch_interval: float = _setting(
        1.0,
        "Seconds between two looks, on every replica with the gRPC endpoint, for executions "
        "and cancels requested on another replica for the agents connected here.",
    )
    agent_busy_retries: int = _setting(
        10,
        "Times an execution an agent refused too_many_running (its limit of concurrent "
        "executions reached) is sent again, 1 s doubling to 60 s apart, before it ends "
        "rejected (0 to 100).",
    )
    agent_hello_queue: int = _setting(
        10_000,
        "Agent Hellos that may wait to be stored; past it a Hello is refused (UNAVAILABLE) "
        "and its agent reconnects with back-off.",
    )
    agent_hello_batch: int = _setting(500, "Most agent Hellos stored in one transaction.")
    agent_max_output_bytes: int = _setting(
        1_048_576,
        "Most bytes of output stored per execution (16384 to 268435456); an agent's output "
        "past it is dropped and the execution's output flagged truncated. The default is the "
        "agent's own default cap.",
    )
    playbook_max_bytes: int = _setting(
        262_144,
        "Largest playbook definition accepted, in bytes of its YAML or JSON text (1024 to "
        "16777216; 413 above it). A definition sent over HTTP is also held to "
        "MEDIC_MAX_BODY_BYTES.",
    )
    playbook_max_steps: int = _setting(100, "Most steps in one playbook (1 to 1000; 422 above it).")
    playbook_step_output_bytes: int = _setting(
        65_536,
        "Most bytes of a playbook step's output kept (its JSON; 1024 to 16777216). A larger "
        "output is stored truncated, as a string, with truncated: true.",
    )
    playbook_max_step_runs: int = _setting(
        1000,
        "Most step runs one playbook execution may make (retries and goto loops count; 1 to "
        "100000): past it the execution fails with reason too_many_step_runs.",
    )
    playbook_lease: float = _setting(
        30.0,
        "Seconds a replica holds a playbook execution it works on (renewed while a step runs; "
        "5 to 3600). A replica that dies leaves it to another once the lease lapses.",
    )
    playbook_claim_batch: int = _setting(
        50, "Most playbook executions one engine pass claims (1 to 1000)."
    )
    playbook_max_active_drives: int = _setting(
        100,
        "Most playbook executions one Medic process advances at once (1 to 10000). Each runs "
        "as its own task, so a slow step (a webhook waiting for its answer) holds one slot, "
        "not the others; when every slot is taken, the engine claims nothing more until one "
        "frees. Gauge: medic_playbook_drives_active.",
    )
    playbook_runs_per_service_hour: int = _setting(
        10,
        "Most playbook executions alert triggers start for one service in any hour (1 to "
        "10000): past it a trigger is skipped (reason skipped_rate), counted in "
        "medic_playbook_triggers and recorded.",
    )
    playbook_webhook_window: float = _setting(
        300.0,
        "Seconds an inbound playbook webhook's X-Medic-Timestamp may differ from the server's "
        "clock (10 to 3600): older or newer is refused 401; a signature is accepted once "
        "within it (replays refused 401).",
    )
    playbook_webhook_max_bytes: int = _setting(
        65_536,
        "Largest inbound playbook webhook body, in bytes (256 to 1048576; 413 above it).",
    )
    secret_key: str = _setting(
        "",
        "Comma-separated Fernet keys that encrypt playbook secrets (docs/secrets.md): the first "
        "encrypts, every one decrypts (rotation). Make one with `medic secret keygen`. Empty: "
        "secrets cannot be set or used; the rest of Medic works.",
        secret=HIDE_LIST,
    )
    secret_max_bytes: int = _setting(
        8192, "Largest secret value accepted, in UTF-8 bytes (16 to 1048576; 413 above it)."
    )
    secrets_max: int = _setting(1000, "Most secrets stored (1 to 1000000; 409 above it).")

    def __repr__(self) -> str:
        # Settings end up in tracebacks and debug output: never with their secrets.
        shown = ", ".join(f"{name}={value!r}" for name, value in self.masked().items())
        return f"Settings({shown})"

    def masked(self) -> dict[str, Any]:
        """Every setting by name, each secret masked (what ``medic config`` prints)."""
        return {f.name: _mask(f, getattr(self, f.name)) for f in fields(self)}

    def secret_values(self) -> list[str]:
        """The secret strings set here (whole values, URL passwords), longest first."""
        found: set[str] = set()
        for f in fields(self):
            value = getattr(self, f.name)
            kind = f.metadata.get("secret")
            if kind in (HIDE_VALUE, HIDE_LIST) and value:
                found.add(value)
            if kind == HIDE_LIST and value:
                found.update(item.strip() for item in value.split(",") if item.strip())
            elif kind == HIDE_URL_CREDENTIALS and value:
                found.update(_url_credentials(value))
        return sorted(found, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """``text`` with every secret value set here replaced by ``MASK``."""
        for secret in self.secret_values():
            text = text.replace(secret, MASK)
        return text

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir).expanduser() / 'medic.db'}"

    @property
    def resolved_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def notifier_names(self) -> list[str]:
        return [n.strip() for n in self.notifiers.split(",") if n.strip()]

    @property
    def disabled_plugin_names(self) -> list[str]:
        return [n.strip() for n in self.disabled_plugins.split(",") if n.strip()]

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config_file = env.get("MEDIC_CONFIG_FILE")
        if config_file:
            try:
                with open(config_file, "rb") as fh:
                    values.update(tomllib.load(fh))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ValueError(f"cannot read MEDIC_CONFIG_FILE {config_file!r}: {exc}") from None
        for f in fields(cls):
            key = f"MEDIC_{f.name.upper()}"
            if key in env:
                values[f.name] = env[key]
        values.update(overrides)
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(
            **{name: _coerce(name, known[name].type, value) for name, value in values.items()}
        )


def _mask(setting: Field[Any], value: Any) -> Any:
    kind = setting.metadata.get("secret")
    if kind in (HIDE_VALUE, HIDE_LIST):
        return MASK if value else value
    if kind == HIDE_URL_CREDENTIALS and value:
        return mask_url(value)
    return value


def _url_parts(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return None
    return parts


def _url_credentials(url: str) -> list[str]:
    parts = _url_parts(url)
    if parts is None:
        return [url]  # unreadable: treat all of it as the secret
    found = [parts.password] if parts.password else []
    found += [v for k, v in parse_qsl(parts.query) if _CREDENTIAL_QUERY.search(k) and v]
    return found


def mask_url(url: str) -> str:
    """``url`` with its password and credential-like query values replaced by ``MASK``."""
    parts = _url_parts(url)
    if parts is None:
        return MASK
    netloc = parts.netloc
    if parts.password:
        user, _, host = netloc.rpartition("@")
        name = user.partition(":")[0]
        netloc = f"{name}:{MASK}@{host}"
    query = "&".join(
        f"{k}={MASK if _CREDENTIAL_QUERY.search(k) and v else v}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _coerce(name: str, kind: Any, value: Any) -> Any:
    kind = kind if isinstance(kind, str) else kind.__name__
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"setting MEDIC_{name.upper()}={value!r} is not a valid {kind}") from None


def settings_markdown() -> str:
    lines = [
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for f in fields(Settings):
        default = "(per user)" if f.name == "data_dir" else repr(f.default)
        shown = {
            HIDE_VALUE: " Secret: shown masked.",
            HIDE_LIST: " Secret: shown masked (each item too).",
            HIDE_URL_CREDENTIALS: " Shown with its password masked.",
        }.get(f.metadata.get("secret", ""), "")
        lines.append(f"| `MEDIC_{f.name.upper()}` | `{default}` | {f.metadata['help']}{shown} |")
    return "\n".join(lines) + "\n"

"""One typed settings schema for the whole service.

Settings come from a TOML file (``--config PATH`` or ``ASSISTANT_CONFIG``) and from
environment variables (``ASSISTANT_<SECTION>__<KEY>``, e.g. ``ASSISTANT_DATABASE__URL``),
the environment winning. They are validated once, at start-up, and every problem is
reported at once with its key. Secrets are given by reference (an environment
variable, a file, or a command) and are never printed.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

CONFIG_ENV = "ASSISTANT_CONFIG"


class ConfigError(Exception):
    """The configuration is invalid. ``problems`` lists ``(key, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "") -> None:
        self.problems = problems
        head = f"invalid configuration{f' in {source}' if source else ''}"
        if len(problems) == 1:  # one problem, one line
            key, msg = problems[0]
            super().__init__(f"{head}: {key}: {msg}")
            return
        lines = [f"  {key}: {msg}" for key, msg in problems]
        super().__init__("\n".join([head + ":", *lines]))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecretRef(_Section):
    """A secret given by reference: exactly one of ``env``, ``file`` or ``command``.

    Account settings may also hold ``encrypted``: a secret the service obtained itself (an
    OAuth refresh token, a password typed into the web form), encrypted with a key derived
    from the app's secret (see ``config.sealed``). It never appears in the settings file.
    """

    env: str | None = None
    file: Path | None = None
    command: str | None = None
    encrypted: str | None = None

    @field_validator("command")
    @classmethod
    def _non_empty(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be empty")
        return v

    def model_post_init(self, __context: Any) -> None:
        given = [n for n in ("env", "file", "command", "encrypted") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError("give exactly one of env, file or command")

    def describe(self) -> str:
        """Where the secret comes from, safe to print."""
        if self.env:
            return f"env:{self.env}"
        if self.file:
            return f"file:{self.file}"
        if self.encrypted:
            return "encrypted"
        return "command"

    def resolve(self) -> SecretStr:
        """Read the secret now. Raises ConfigError naming the reference, never the value."""
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError([("secret", f"environment variable {self.env} is not set")])
            return SecretStr(value)
        if self.file:
            try:
                return SecretStr(self.file.expanduser().read_text().strip())
            except OSError as exc:
                raise ConfigError(
                    [("secret", f"cannot read {self.file}: {exc.strerror}")]
                ) from None
        if self.encrypted:
            from config.sealed import UnreadableSecret, open_sealed

            try:
                return SecretStr(open_sealed(self.encrypted))
            except UnreadableSecret as exc:
                raise ConfigError([("secret", str(exc))]) from None
        assert self.command
        try:
            out = subprocess.run(
                shlex.split(self.command), capture_output=True, text=True, timeout=30, check=True
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise ConfigError(
                [("secret", f"secret command failed: {type(exc).__name__}")]
            ) from None
        return SecretStr(out.stdout.strip())


class DatabaseSettings(_Section):
    url: str = Field("", description="SQLAlchemy URL; empty means SQLite under data_dir")
    echo: bool = False


class QueueSettings(_Section):
    backend: Literal["sqlite", "redis", "memory"] = "sqlite"
    url: str = Field("", description="redis://host:port/db when backend is redis")
    workers: int = Field(2, ge=1, le=64)
    scheduler: bool = Field(True, description="run periodic tasks in this consumer (only one!)")
    name: str = "exec-assistant"


class SyncSettings(_Section):
    poll_interval_seconds: float = Field(30.0, gt=0)
    repoll_seconds: float = Field(
        5.0, ge=0, le=60,
        description="a polled calendar whose changes wait for quiet is polled again this often"
        " until they go out (0: only the regular polls)",
    )
    window_past_days: int = Field(7, ge=0)
    window_future_days: int = Field(120, ge=1)
    horizon_days: int = Field(14, ge=1, description="changes further ahead are not reported")
    http_timeout_seconds: float = Field(30.0, gt=0)
    unhealthy_after_minutes: float = Field(
        15.0, gt=0, description="an account failing this long is reported to the people"
    )
    refused_tries: int = Field(
        5, ge=1, le=20, description="tries with refused credentials before an account is parked"
    )
    backoff_max_minutes: float = Field(
        30.0, gt=0, description="the longest wait between tries of a failing account"
    )


class SmtpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    username: str = ""
    password: SecretRef | None = None
    starttls: bool = False
    ssl: bool = False
    from_address: str = "assistant-service@localhost"
    timeout_seconds: float = Field(30.0, gt=0)


class WebSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    public_url: str = Field("", description="https URL the service is reachable at, if any")
    secret_key: SecretRef | None = None
    session_hours: float = Field(12.0, gt=0, le=24 * 90, description="a login lasts this long")
    session_idle_minutes: float = Field(
        120.0, gt=0, description="a login unused this long ends before its time"
    )
    login_link_minutes: float = Field(15.0, gt=0, le=1440, description="email login links expire")
    previous_secret_keys: list[SecretRef] = Field(
        default_factory=list,
        description="retired secret keys: secrets encrypted with them can still be read",
    )
    # Limits on what a request may send (issue 12: hostile bodies).
    max_body_bytes: int = Field(
        1_000_000,
        ge=1024,
        le=100_000_000,
        description="a request body (JSON, form, webhook) larger than this is refused: 413",
    )
    max_json_depth: int = Field(
        32, ge=2, le=200, description="JSON nested deeper than this is refused: 400"
    )


class GoogleOAuthSettings(_Section):
    """The OAuth client (type "Web application") the web app connects Google accounts with."""

    client_id: str = ""
    client_secret: SecretRef | None = None
    authorize_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105  # a URL
    calendar_api_root: str = "https://www.googleapis.com/"
    gmail_api_root: str = "https://gmail.googleapis.com/"


class MicrosoftOAuthSettings(_Section):
    """The Entra ID app registration the web app connects Microsoft 365 accounts with.

    The account's tenant is learnt at sign-in (the ID token's ``tid``); ``authorize_url``
    and ``token_url`` name the tenant to sign in against (``common``: any)."""

    client_id: str = ""
    client_secret: SecretRef | None = Field(None, description="empty: a public client (PKCE)")
    authorize_url: str = "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
    token_url: str = "https://login.microsoftonline.com/common/oauth2/v2.0/token"  # noqa: S105
    graph_url: str = "https://graph.microsoft.com/v1.0"


class OAuthSettings(_Section):
    google: GoogleOAuthSettings = GoogleOAuthSettings()
    microsoft: MicrosoftOAuthSettings = MicrosoftOAuthSettings()
    state_minutes: float = Field(
        15.0, gt=0, le=120, description="a sign-in must come back within this long"
    )


class OutboxSettings(_Section):
    max_attempts: int = Field(8, ge=1)
    backoff_seconds: float = Field(30.0, gt=0)
    backoff_max_seconds: float = Field(3600.0, gt=0)
    claim_timeout_seconds: float = Field(
        60.0, gt=0, description="a worker that died mid-send frees its entry after this; keep it"
        " above smtp.timeout_seconds"
    )


class DelegationSettings(_Section):
    red_line_fraction: float = Field(0.5, gt=0, lt=1)
    red_line_minutes: int = Field(30, ge=5, le=480)
    dead_line_minutes: int = Field(45, ge=5, le=480)
    search_days: int = Field(3, ge=1, le=60, description="how far from a line to look for a slot")
    invite_delegate: bool = False


class LatencySettings(_Section):
    nudge_share: float = Field(
        0.8, gt=0, lt=1, description="remind the manager when this share of the SLA has passed"
    )
    lookback_days: int = Field(14, ge=1, le=365, description="open messages older are ignored")


class WebhookSettings(_Section):
    url: str = Field("", description="http(s) URL to POST signed JSON notifications to; empty: off")
    secret: SecretRef | None = None
    timeout_seconds: float = Field(10.0, gt=0)


class ChatSettings(_Section):
    # apprise URLs hold tokens, so each one is given by reference
    urls: list[SecretRef] = Field(
        default_factory=list, description="apprise URLs (tgram://, slack://, ...)"
    )


class NotifySettings(_Section):
    coalesce_seconds: float = Field(
        20.0, ge=0, le=600,
        description="changes go out once none has come for this long (a quiet period)",
    )
    coalesce_max_seconds: float = Field(
        120.0, ge=0, le=3600,
        description="a burst that keeps changing goes out at the latest this long after its first",
    )
    travel_buffer_minutes: int = Field(
        30, ge=0, le=480, description="minimum time between meetings at different places"
    )
    assistant_changes: Literal["mark", "suppress"] = Field(
        "mark", description="changes the assistant made: marked 'made by you' or not sent"
    )


class InboxSettings(_Section):
    """The service's own mailbox: new tasks from managers and replies to prompts arrive here."""

    provider: Literal["imap", "maildir", ""] = Field("", description="empty: no inbox is read")
    address: str = Field("", description="the service address managers write to")
    host: str = ""
    port: int | None = Field(None, ge=1, le=65535, description="default: 993 (ssl) or 143")
    security: Literal["ssl", "starttls", "none"] = "ssl"
    username: str = ""
    password: SecretRef | None = None
    folder: str = "INBOX"
    path: Path | None = Field(None, description="the Maildir, when provider is maildir")
    max_age_days: int = Field(
        7, ge=1, le=365, description="older messages are never acted on (first run, restores)"
    )
    timeout_seconds: float = Field(30.0, gt=0)
    trusted_authserv_ids: list[str] = Field(
        default_factory=list,
        description=(
            "the receiving mail server's Authentication-Results name (e.g. mx.google.com); "
            "when set, only mail it found authentic (DMARC, or aligned DKIM/SPF) is acted "
            'on; "" stands for Microsoft 365, whose header names no server'
        ),
    )
    trust_unauthenticated: bool = Field(
        False,
        description=(
            "act on mail whose sender no trusted server authenticated, trusting its From as "
            "it stands (anyone can forge it; only for an inbox no outsider can reach). "
            "Without it and without trusted_authserv_ids, no inbound mail is acted on; "
            "with trusted_authserv_ids set, it is not used"
        ),
    )


class NetworkSettings(_Section):
    """Where accounts added from the web app may connect (the CLI's accounts go anywhere)."""

    allow_http: bool = Field(
        False,
        description=(
            "let accounts added from the web use http:// endpoints and IMAP without TLS "
            "(https:// and TLS otherwise)"
        ),
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "private hosts and networks accounts added from the web may reach, e.g. "
            '["dav.internal", "10.0.0.0/8", "127.0.0.1"]; everything else must be public'
        ),
    )
    max_response_bytes: int = Field(
        50_000_000,
        ge=1_000,
        description="the most a feed, file or server reply read for an account may hold, in bytes",
    )
    max_read_seconds: float = Field(
        120.0,
        gt=0,
        description="the longest reading one reply for an account may take (a slow server)",
    )


class LimitsSettings(_Section):
    """Bounds on what is read from calendars and mail, enforced while reading; what goes
    beyond one is reported on the account (never a hang, a crash or a traceback)."""

    property_bytes: int = Field(
        64 * 1024, ge=256, description="a longer calendar text (DESCRIPTION …) is cut, marked"
    )
    events_per_calendar: int = Field(
        10_000, ge=1, description="VEVENTs read from one calendar; the rest are left out"
    )
    properties_per_event: int = Field(
        2_000, ge=10, description="lines in one VEVENT; an event with more is left out"
    )
    occurrences_per_series: int = Field(
        1_000,
        ge=1,
        description=(
            "occurrences of one series in the sync window; a series with more (or repeating "
            "every minute or second) is kept as one item flagged 'too frequent to expand'"
        ),
    )
    series_scan_steps: int = Field(
        50_000, ge=1_000, description="repetitions of a rule walked before the window ends"
    )
    component_depth: int = Field(
        8, ge=3, le=100, description="calendar components nested deeper refuse the calendar"
    )
    parse_seconds: float = Field(
        20.0, gt=0, description="reading one calendar longer than this fails that sync"
    )
    mime_headers: int = Field(
        1_000, ge=50, description="header lines of one message; a message with more is refused"
    )
    mime_depth: int = Field(
        20, ge=2, le=500, description="multiparts in one message; a message with more is refused"
    )


class Settings(BaseSettings):
    """The service's settings. See ``config/example.toml`` for every key."""

    model_config = SettingsConfigDict(
        env_prefix="ASSISTANT_", env_nested_delimiter="__", extra="forbid"
    )

    data_dir: Path = Field(Path("data"), description="where SQLite files and state live")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    default_timezone: str = "UTC"
    database: DatabaseSettings = DatabaseSettings()
    queue: QueueSettings = QueueSettings()
    sync: SyncSettings = SyncSettings()
    smtp: SmtpSettings = SmtpSettings()
    web: WebSettings = WebSettings()
    outbox: OutboxSettings = OutboxSettings()
    delegation: DelegationSettings = DelegationSettings()
    notify: NotifySettings = NotifySettings()
    latency: LatencySettings = LatencySettings()
    webhook: WebhookSettings = WebhookSettings()
    chat: ChatSettings = ChatSettings()
    inbox: InboxSettings = InboxSettings()
    oauth: OAuthSettings = OAuthSettings()
    network: NetworkSettings = NetworkSettings()
    limits: LimitsSettings = LimitsSettings()

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init (the TOML file's content, passed by load()) < environment
        return (env_settings, init_settings)

    # ---------------------------------------------------------------- derived values

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_dir / 'assistant.db').resolve()}"

    @property
    def queue_path(self) -> Path:
        return (self.data_dir / "queue.db").resolve()


def _flatten_errors(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        problems.append((key, msg))
    return problems


def load(path: Path | str | None = None, **overrides: object) -> Settings:
    """Read and validate the settings; raise ConfigError listing every problem.

    ``path`` defaults to ``$ASSISTANT_CONFIG``; with neither, only defaults and the
    environment apply. ``overrides`` (dotted keys as nested dicts) win over the file.
    """
    if path is None:
        path = os.environ.get(CONFIG_ENV) or None
    data: dict[str, Any] = {}
    source = ""
    if path is not None:
        p = Path(path).expanduser()
        source = str(p)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([("config", f"file not found: {p}")]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([("config", f"not valid TOML: {exc}")], source) from None
        base = p.parent
        if "data_dir" in data and not Path(str(data["data_dir"])).expanduser().is_absolute():
            data["data_dir"] = str(base / str(data["data_dir"]))
    _merge(data, overrides)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_flatten_errors(exc), source) from None
    problems = _cross_checks(settings)
    if problems:
        raise ConfigError(problems, source)
    return settings


def _merge(into: dict[str, Any], extra: Mapping[str, object]) -> None:
    for key, value in extra.items():
        current = into.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            _merge(current, value)
        else:
            into[key] = value


def _cross_checks(s: Settings) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if s.queue.backend == "redis" and not s.queue.url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        problems.append(("queue.url", "a redis:// URL is required when queue.backend is redis"))
    url = s.database.url
    if url and not url.startswith(("sqlite", "postgresql")):
        problems.append(
            ("database.url", "only sqlite:// and postgresql+psycopg:// URLs are supported")
        )
    if s.webhook.url and s.webhook.secret is None:
        problems.append(("webhook.secret", "required when webhook.url is set"))
    if s.smtp.ssl and s.smtp.starttls:
        problems.append(("smtp.ssl", "choose ssl or starttls, not both"))
    problems.extend(_inbox_checks(s.inbox))
    return problems


def _inbox_checks(inbox: InboxSettings) -> list[tuple[str, str]]:
    if not inbox.provider:
        return []
    problems: list[tuple[str, str]] = []
    if "@" not in inbox.address:
        problems.append(("inbox.address", "the service address is required when inbox is on"))
    if inbox.provider == "imap":
        for key in ("host", "username"):
            if not getattr(inbox, key):
                problems.append((f"inbox.{key}", "required when inbox.provider is imap"))
        if inbox.password is None:
            problems.append(("inbox.password", "required when inbox.provider is imap"))
    elif inbox.path is None:
        problems.append(("inbox.path", "required when inbox.provider is maildir"))
    return problems

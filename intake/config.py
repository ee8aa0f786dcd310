"""Settings from the environment, read once and validated, with errors a person can act on.

Twelve-factor: everything that differs between a laptop and production comes from environment
variables (see ../shared/DESIGN.md). The operator's taxonomy, routing, templates and knowledge
base live in one TOML file named by ``INTAKE_CONFIG``; the built-in defaults live in
``intake/defaults.toml`` and are merged under it table by table.
"""

from __future__ import annotations

import functools
import logging
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from intake.classify.settings import ClassifierSettings
    from intake.outbound.settings import OutboundSettings
    from intake.outbox.settings import OutboxSettings
    from intake.slack.settings import SlackSettings

log = logging.getLogger(__name__)


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to fix it."""


DEFAULT_DATABASE_URL = "sqlite:///intake.db"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_MAX_MESSAGE_BYTES = 30 * 1024 * 1024


def normalize_database_url(url: str) -> str:
    """Heroku and friends hand out ``postgres://``; SQLAlchemy wants ``postgresql+psycopg://``."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def _split_list(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_defaults() -> dict[str, Any]:
    text = (Path(__file__).parent / "defaults.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


@functools.cache
def _builtin_defaults() -> Mapping[str, Any]:
    """The defaults file, read once, for :class:`Table` (never handed out to be changed)."""
    return load_defaults()


class Table:
    """One INTAKE_CONFIG table over its built-in defaults (``intake/defaults.toml``, the one place
    defaults live), read with typed accessors. Every wrong value raises :class:`ConfigError`
    with a sentence that names ``[table] key``; keys intake does not read are logged, not
    refused, so a file with a retired key still starts."""

    def __init__(self, name: str, given: Any) -> None:
        if not isinstance(given, Mapping):
            raise ConfigError(f"[{name}] in INTAKE_CONFIG must be a table")
        defaults = _builtin_defaults().get(name, {})
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            log.warning("INTAKE_CONFIG [%s] has key(s) intake does not read: %s", name, ", ".join(unknown))
        self.name = name
        self.values: dict[str, Any] = {**defaults, **given}

    def _wrong(self, key: str, what: str) -> ConfigError:
        return ConfigError(f"[{self.name}] {key} must be {what}, got {self.values.get(key)!r}")

    def number(self, key: str, *, minimum: float = 0.0) -> float:
        value = self.values.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise self._wrong(key, f"a number of {minimum:g} or more")
        return float(value)

    def whole(self, key: str, *, minimum: int = 0) -> int:
        value = self.values.get(key)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._wrong(key, f"a whole number of {minimum} or more")
        return value

    def flag(self, key: str) -> bool:
        value = self.values.get(key)
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false")
        return value

    def text(self, key: str) -> str:
        value = self.values.get(key)
        if not isinstance(value, str):
            raise self._wrong(key, "a string")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.values.get(key)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise self._wrong(key, 'a list of strings, like ["a", "b"]')
        return tuple(value)

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self.values.get(key)
        if not isinstance(value, Mapping):
            raise self._wrong(key, "a table")
        return value

    def tables(self, key: str) -> list[Mapping[str, Any]]:
        value = self.values.get(key)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, Mapping) for v in value):
            raise self._wrong(key, "a list of tables")
        return list(value)


def load_toml(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The built-in defaults, overlaid with the operator's file when one is named."""
    defaults = load_defaults()
    if not path:
        return defaults
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"INTAKE_CONFIG points at {str(p)!r}, which is not a readable file")
    try:
        operator = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"INTAKE_CONFIG file {str(p)!r} is not valid TOML: {exc}") from None
    merged = _deep_merge(defaults, operator)
    # A taxonomy given by the operator replaces the default one rather than merging into it,
    # so a removed category really goes away.
    if "categories" in operator:
        merged["categories"] = operator["categories"]
    return merged


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    config_path: str | None = None
    toml: Mapping[str, Any] = field(default_factory=load_defaults)

    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_triage_channel: str | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL

    inbound_basic_auth: tuple[str, ...] = ()
    mailgun_signing_keys: tuple[str, ...] = ()
    inbound_hmac_secrets: tuple[str, ...] = ()
    sendgrid_public_keys: tuple[str, ...] = ()
    sns_topic_arns: tuple[str, ...] = ()

    smtp_url: str | None = None
    from_address: str | None = None

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_attachment_bytes: int = 5 * 1024 * 1024
    queue_path: str | None = None
    queue_name: str = "intake"  # several deployments (or test runs) may share one Redis
    # Keys of intake's keyed hashes (reply tokens), newest first; unset: one generated and kept
    # in the database (intake.keys).
    secret_keys: tuple[str, ...] = ()
    # authserv-ids (RFC 8601) of the receiving hosts whose Authentication-Results headers are
    # trusted: the host that stamps them on arrival (an MTA or IMAP server in front of intake).
    authserv_ids: tuple[str, ...] = ()

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_bot_token)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def categories(self) -> list[dict[str, Any]]:
        """The taxonomy: a list of ``{"name", "description"}`` tables, in display order."""
        return list(self.toml.get("categories", []))

    @property
    def category_names(self) -> list[str]:
        return [c["name"] for c in self.categories]

    # Typed sections: each table parsed and checked once per Settings (the modules that own them
    # are imported on first use, so `intake list` does not load the classifier's libraries).
    @functools.cached_property
    def outbox(self) -> "OutboxSettings":
        """The ``[outbox]`` table, typed and checked (retry timing of deliveries)."""
        from intake.outbox.settings import OutboxSettings

        return OutboxSettings.from_table(self.toml.get("outbox", {}))

    @functools.cached_property
    def slack(self) -> "SlackSettings":
        """The ``[slack]`` table: routing, pacing, who may act, the Web API client."""
        from intake.slack.settings import SlackSettings

        return SlackSettings.from_table(self.toml.get("slack", {}))

    @functools.cached_property
    def outbound(self) -> "OutboundSettings":
        """``[outbound]``, ``[acknowledgments]``, ``[auto_answer]`` and ``[knowledge]``."""
        from intake.outbound.settings import OutboundSettings

        return OutboundSettings.from_tables(self.toml)

    @functools.cached_property
    def classifier(self) -> "ClassifierSettings":
        """The ``[classifier]`` table: thresholds, languages, operator rules (checked against the
        taxonomy)."""
        from intake.classify.settings import ClassifierSettings

        return ClassifierSettings.from_table(self.toml.get("classifier", {}), self.category_names)

    def check(self) -> "Settings":
        """Parse every typed table now. Long-running processes (web, worker, Socket Mode) call it
        as they start, so a mistake in INTAKE_CONFIG stops them at once with a sentence that says
        what to fix, instead of failing the first delivery hours later."""
        _ = (self.outbox, self.slack, self.outbound, self.classifier)
        return self

    def section(self, name: str) -> Mapping[str, Any]:
        """One top-level TOML table (``classifier``, ``slack``, ``acknowledgments``...)."""
        value = self.toml.get(name, {})
        return value if isinstance(value, Mapping) else {}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        env = os.environ if env is None else env
        config_path = env.get("INTAKE_CONFIG") or None
        values: dict[str, Any] = dict(
            database_url=normalize_database_url(env.get("DATABASE_URL") or DEFAULT_DATABASE_URL),
            redis_url=env.get("REDIS_URL") or None,
            config_path=config_path,
            toml=load_toml(config_path),
            slack_bot_token=env.get("SLACK_BOT_TOKEN") or None,
            slack_signing_secret=env.get("SLACK_SIGNING_SECRET") or None,
            slack_app_token=env.get("SLACK_APP_TOKEN") or None,
            slack_triage_channel=env.get("SLACK_TRIAGE_CHANNEL") or None,
            slack_api_url=env.get("SLACK_API_URL") or DEFAULT_SLACK_API_URL,
            inbound_basic_auth=_split_list(env.get("INBOUND_BASIC_AUTH")),
            mailgun_signing_keys=_split_list(env.get("MAILGUN_SIGNING_KEY")),
            inbound_hmac_secrets=_split_list(env.get("INBOUND_HMAC_SECRET")),
            sendgrid_public_keys=_split_list(env.get("SENDGRID_WEBHOOK_PUBLIC_KEY")),
            sns_topic_arns=_split_list(env.get("SES_SNS_TOPIC_ARNS")),
            smtp_url=env.get("SMTP_URL") or None,
            from_address=env.get("INTAKE_FROM_ADDRESS") or None,
            max_message_bytes=_int_env(env, "INTAKE_MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES),
            max_attachment_bytes=_int_env(env, "INTAKE_MAX_ATTACHMENT_BYTES", 5 * 1024 * 1024),
            queue_path=env.get("INTAKE_QUEUE_PATH") or None,
            queue_name=env.get("INTAKE_QUEUE_NAME") or "intake",
            secret_keys=_split_list(env.get("INTAKE_SECRET_KEY")),
            authserv_ids=tuple(a.lower() for a in _split_list(env.get("INTAKE_AUTHSERV_ID"))),
        )
        if not values["slack_api_url"].endswith("/"):
            # slack_sdk joins method names onto the base URL; without the slash it drops "api".
            values["slack_api_url"] += "/"
        for pair in values["inbound_basic_auth"]:
            if ":" not in pair:
                raise ConfigError(
                    "INBOUND_BASIC_AUTH takes comma-separated user:password pairs; "
                    f"one entry has no colon ({pair.split(':')[0][:3]}...)"
                )
        values.update(overrides)
        return cls(**values)

"""Configuration read once from the environment into frozen values.

``Settings.from_env`` is the only reader: it takes a mapping (the caller passes ``os.environ``), so
tests build settings from plain dicts. A variable that is unset or empty takes its default. A
malformed value raises `SettingsError`, whose message is one line naming the variable.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

import attrs
import limits

from colima_ref.domain.masking import hide_userinfo_passwords
from colima_ref.ports.services import SERVICE_NAMES, Backend

DEFAULT_APP_NAME = "Colima Services Reference API"
DEFAULT_CORS_ORIGINS = ("http://localhost:3000", "http://localhost:8000", "http://localhost:8080")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
RATE_LIMIT_STRATEGIES = ("moving-window", "fixed-window", "sliding-window-counter")
_RATE_LIMIT_SCHEMES = ("memory", "redis", "rediss", "redis+cluster")

_PORT = re.compile(r"[0-9]{1,5}")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_GOT_LIMIT = 80

T = TypeVar("T")


class SettingsError(ValueError):
    """A variable holds a value of the wrong form.

    ``got=None`` means the value is secret and is never shown, not even in ``args``.
    """

    def __init__(self, variable: str, expected: str, got: str | None) -> None:
        self.variable = variable
        self.expected = expected
        # A URL or host refused for its form may still carry a working login: its password
        # is kept out of the message and ``args`` alike.
        self.got = None if got is None else hide_userinfo_passwords(got)
        super().__init__(variable, expected, self.got)

    def __str__(self) -> str:
        if self.got is None:
            return f"{self.variable} must be {self.expected}, got a hidden value (secret)"
        got = self.got if len(self.got) <= _GOT_LIMIT else self.got[:_GOT_LIMIT] + "..."
        return f"{self.variable} must be {self.expected}, got {got!r}"


@attrs.frozen
class EnvVar:
    """One documented environment variable, for ``--help`` and the README."""

    name: str
    default: str
    description: str


ENVIRONMENT: tuple[EnvVar, ...] = (
    EnvVar("COLIMA_BACKEND", "live if VAULT_ADDR is set, else memory", "memory or live"),
    EnvVar("APP_NAME", DEFAULT_APP_NAME, "name reported by GET /"),
    EnvVar("DEBUG", "false", "true/false/1/0/yes/no; stack traces in 500 bodies, any CORS origin"),
    EnvVar("LOG_LEVEL", "INFO", "/".join(LOG_LEVELS)),
    EnvVar("CORS_ORIGINS", ",".join(DEFAULT_CORS_ORIGINS), "comma-separated allowed origins"),
    EnvVar("VAULT_ADDR", "http://127.0.0.1:8200", "Vault (or OpenBao) URL"),
    EnvVar("VAULT_TOKEN", "(none)", "Vault token; never logged or shown"),
    EnvVar("VAULT_ROLE_ID", "(none)", "AppRole role_id, with VAULT_SECRET_ID instead of a token"),
    EnvVar("VAULT_SECRET_ID", "(none)", "AppRole secret_id; never logged or shown"),
    EnvVar("VAULT_MOUNT", "secret", "KV v2 mount the service secrets live in"),
    EnvVar("VAULT_PATH_PREFIX", "(empty)", "folder in that mount before each service's path"),
    EnvVar("VAULT_TIMEOUT", "2", "seconds per Vault request"),
    EnvVar("CREDENTIAL_TTL", "300", "seconds a credential read from Vault is reused"),
    EnvVar("CONNECT_TIMEOUT", "2", "seconds to connect to a database, Redis or RabbitMQ"),
    EnvVar("OPERATION_TIMEOUT", "5", "seconds for one backend call before it answers 504/503"),
    EnvVar("DB_POOL_MIN", "1", "connections each SQL pool keeps open"),
    EnvVar("DB_POOL_MAX", "10", "connections each pool (SQL, MongoDB) may open"),
    EnvVar("REDIS_POOL_MAX", "64", "Redis commands in flight (more wait); connections per node"),
    EnvVar("POSTGRES_HOST", "127.0.0.1", "PostgreSQL host"),
    EnvVar("POSTGRES_PORT", "5432", "PostgreSQL port"),
    EnvVar("MYSQL_HOST", "127.0.0.1", "MySQL/MariaDB host"),
    EnvVar("MYSQL_PORT", "3306", "MySQL/MariaDB port"),
    EnvVar("MONGODB_HOST", "127.0.0.1", "MongoDB host"),
    EnvVar("MONGODB_PORT", "27017", "MongoDB port"),
    EnvVar("REDIS_HOST", "127.0.0.1", "Redis host (used when REDIS_NODES is empty)"),
    EnvVar("REDIS_PORT", "6379", "Redis port (used when REDIS_NODES is empty)"),
    EnvVar("REDIS_NODES", "(empty)", "Redis Cluster seeds host:port[,host:port...]"),
    EnvVar("RABBITMQ_HOST", "127.0.0.1", "RabbitMQ host"),
    EnvVar("RABBITMQ_PORT", "5672", "RabbitMQ port"),
    EnvVar("RABBITMQ_VHOST", "dev_vhost", "vhost used when the rabbitmq secret names none"),
    EnvVar("RATE_LIMIT_ENABLED", "true", "true/false; per client IP and route"),
    EnvVar("RATE_LIMIT_DEFAULT", "100/minute", "limit of every route without its own"),
    EnvVar("RATE_LIMIT_HEALTH", "200/minute", "limit of each /health route"),
    EnvVar("RATE_LIMIT_METRICS", "1000/minute", "limit of /metrics"),
    EnvVar("RATE_LIMIT_STORAGE_URL", "memory://", "memory://, redis://... or redis+cluster://..."),
    EnvVar("RATE_LIMIT_STRATEGY", "moving-window", "/".join(RATE_LIMIT_STRATEGIES)),
    EnvVar("RATE_LIMIT_KEY_PREFIX", "colima_ref", "prefix of the limiter's keys in its storage"),
    EnvVar("TRUSTED_PROXIES", "(empty)", "CIDRs whose X-Forwarded-For is believed"),
    EnvVar(
        "RESPONSE_CACHE_ENABLED",
        "true",
        "true/false; caches secret bodies, and /health/all for 1 s in each process",
    ),
    EnvVar(
        "RESPONSE_CACHE_NEAR_TTL",
        "1",
        "seconds a process serves a cached body without Redis; 0 off",
    ),
    EnvVar("METRICS_ENABLED", "true", "true/false; HTTP request metrics (off for the bench)"),
    EnvVar("LOG_REQUESTS", "true", "true/false; one log line per request (off for the bench)"),
    EnvVar("CIRCUIT_BREAKER_FAIL_MAX", "5", "consecutive outages that open a service's breaker"),
    EnvVar("CIRCUIT_BREAKER_RESET_TIMEOUT", "60", "seconds an open breaker waits before a trial"),
    EnvVar("READINESS_SERVICES", "(empty)", "services /health/ready requires healthy (vault,...)"),
)


@attrs.frozen
class Endpoint:
    """Where a TCP service listens."""

    host: str
    port: int


def _shown_without_password(url: str) -> str:
    return repr(hide_userinfo_passwords(url))


@attrs.frozen
class VaultSettings:
    """Where Vault is and how to log in: a token, or an AppRole role_id + secret_id."""

    addr: str = attrs.field(repr=_shown_without_password)
    token: str | None = attrs.field(default=None, repr=False)
    role_id: str | None = attrs.field(default=None, repr=False)
    secret_id: str | None = attrs.field(default=None, repr=False)
    mount: str = "secret"
    path_prefix: str = ""
    timeout: float = 2.0


@attrs.frozen
class BackendSettings:
    """What every live adapter shares: timeouts in seconds, pool sizes, credential reuse."""

    connect_timeout: float = 2.0
    operation_timeout: float = 5.0
    pool_min: int = 1
    pool_max: int = 10
    credential_ttl: float = 300.0
    redis_pool_max: int = 64


@attrs.frozen
class RedisSettings:
    host: str
    port: int
    nodes: tuple[tuple[str, int], ...] = ()

    @property
    def seeds(self) -> tuple[tuple[str, int], ...]:
        """The cluster seed nodes, or the single REDIS_HOST:REDIS_PORT when REDIS_NODES is empty."""
        return self.nodes or ((self.host, self.port),)


@attrs.frozen
class RateLimitSettings:
    """Limits as ``limits`` strings (``100/minute``), checked by `Settings.from_env`."""

    enabled: bool = True
    default: str = "100/minute"
    health: str = "200/minute"
    metrics: str = "1000/minute"
    storage_url: str = attrs.field(default="memory://", repr=False)
    strategy: str = "moving-window"
    key_prefix: str = "colima_ref"


@attrs.frozen
class BreakerSettings:
    """Every service's circuit breaker: ``fail_max`` outages open it for ``reset_timeout`` s."""

    fail_max: int = 5
    reset_timeout: float = 60.0


@attrs.frozen
class Settings:
    """Everything the process is configured with. Built by `from_env`; never read from globals."""

    app_name: str = DEFAULT_APP_NAME
    debug: bool = False
    backend: Backend = "memory"
    backend_source: str = "default"
    cors_origins: tuple[str, ...] = DEFAULT_CORS_ORIGINS
    log_level: str = "INFO"
    vault: VaultSettings = VaultSettings("http://127.0.0.1:8200")
    postgres: Endpoint = Endpoint("127.0.0.1", 5432)
    mysql: Endpoint = Endpoint("127.0.0.1", 3306)
    mongodb: Endpoint = Endpoint("127.0.0.1", 27017)
    redis: RedisSettings = RedisSettings("127.0.0.1", 6379)
    rabbitmq: Endpoint = Endpoint("127.0.0.1", 5672)
    rabbitmq_vhost: str = "dev_vhost"
    backends: BackendSettings = BackendSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    response_cache_enabled: bool = True
    response_cache_near_ttl: float = 1.0
    metrics_enabled: bool = True
    log_requests: bool = True
    circuit_breaker: BreakerSettings = BreakerSettings()
    readiness_services: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read every variable of `ENVIRONMENT` from ``env``.

        Raises:
            SettingsError: a value is malformed; the message names the variable and the form.
        """
        read = _Reader(env)
        backend, backend_source = _select_backend(read)
        return cls(
            app_name=read("APP_NAME", str, DEFAULT_APP_NAME),
            debug=read("DEBUG", _parse_bool, False),
            backend=backend,
            backend_source=backend_source,
            cors_origins=read("CORS_ORIGINS", _parse_origins, DEFAULT_CORS_ORIGINS),
            log_level=read("LOG_LEVEL", _parse_log_level, "INFO"),
            vault=VaultSettings(
                addr=read("VAULT_ADDR", _parse_url, "http://127.0.0.1:8200"),
                token=read.secret("VAULT_TOKEN", _parse_token),
                role_id=read.secret("VAULT_ROLE_ID", _parse_token),
                secret_id=read.secret("VAULT_SECRET_ID", _parse_token),
                mount=read("VAULT_MOUNT", _parse_vault_path, "secret"),
                path_prefix=read("VAULT_PATH_PREFIX", _parse_vault_path, ""),
                timeout=read("VAULT_TIMEOUT", _parse_seconds, 2.0),
            ),
            postgres=read.endpoint("POSTGRES", 5432),
            mysql=read.endpoint("MYSQL", 3306),
            mongodb=read.endpoint("MONGODB", 27017),
            redis=RedisSettings(
                host=read("REDIS_HOST", _parse_host, "127.0.0.1"),
                port=read("REDIS_PORT", _parse_port, 6379),
                nodes=read("REDIS_NODES", _parse_nodes, ()),
            ),
            rabbitmq=read.endpoint("RABBITMQ", 5672),
            rabbitmq_vhost=read("RABBITMQ_VHOST", _parse_vhost, "dev_vhost"),
            backends=_read_backends(read),
            rate_limit=RateLimitSettings(
                enabled=read("RATE_LIMIT_ENABLED", _parse_bool, True),
                default=read("RATE_LIMIT_DEFAULT", _parse_limit, "100/minute"),
                health=read("RATE_LIMIT_HEALTH", _parse_limit, "200/minute"),
                metrics=read("RATE_LIMIT_METRICS", _parse_limit, "1000/minute"),
                # The URL may carry a Redis password, so a malformed one is never echoed.
                storage_url=read.secret("RATE_LIMIT_STORAGE_URL", _parse_storage_url)
                or "memory://",
                strategy=read("RATE_LIMIT_STRATEGY", _parse_strategy, "moving-window"),
                key_prefix=read("RATE_LIMIT_KEY_PREFIX", _parse_key_prefix, "colima_ref"),
            ),
            trusted_proxies=read("TRUSTED_PROXIES", _parse_networks, ()),
            response_cache_enabled=read("RESPONSE_CACHE_ENABLED", _parse_bool, True),
            response_cache_near_ttl=read("RESPONSE_CACHE_NEAR_TTL", _parse_near_ttl, 1.0),
            metrics_enabled=read("METRICS_ENABLED", _parse_bool, True),
            log_requests=read("LOG_REQUESTS", _parse_bool, True),
            circuit_breaker=BreakerSettings(
                fail_max=read("CIRCUIT_BREAKER_FAIL_MAX", _parse_count, 5),
                reset_timeout=read("CIRCUIT_BREAKER_RESET_TIMEOUT", _parse_seconds, 60.0),
            ),
            readiness_services=read("READINESS_SERVICES", _parse_services, ()),
        )


class _MalformedError(ValueError):
    """Raised by a parser; `_Reader` turns it into a SettingsError naming the variable."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


@attrs.frozen
class _Reader:
    env: Mapping[str, str]

    def raw(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def __call__(self, name: str, parse: Callable[[str], T], default: T) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except _MalformedError as exc:
            raise SettingsError(name, exc.expected, value) from None

    def secret(self, name: str, parse: Callable[[str], str]) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        try:
            return parse(value)
        except _MalformedError as exc:
            raise SettingsError(name, exc.expected, None) from None

    def endpoint(self, prefix: str, port: int) -> Endpoint:
        return Endpoint(
            host=self(f"{prefix}_HOST", _parse_host, "127.0.0.1"),
            port=self(f"{prefix}_PORT", _parse_port, port),
        )


def _select_backend(read: _Reader) -> tuple[Backend, str]:
    chosen = read("COLIMA_BACKEND", _parse_backend, None)
    if chosen is not None:
        return chosen, "COLIMA_BACKEND"
    if read.raw("VAULT_ADDR") is not None:
        return "live", "VAULT_ADDR set"
    return "memory", "default"


def _read_backends(read: _Reader) -> BackendSettings:
    pool_min = read("DB_POOL_MIN", _parse_count, 1)
    pool_max = read("DB_POOL_MAX", _parse_count, 10)
    if pool_max < pool_min:
        raise SettingsError("DB_POOL_MAX", f"at least DB_POOL_MIN ({pool_min})", str(pool_max))
    return BackendSettings(
        connect_timeout=read("CONNECT_TIMEOUT", _parse_seconds, 2.0),
        operation_timeout=read("OPERATION_TIMEOUT", _parse_seconds, 5.0),
        pool_min=pool_min,
        pool_max=pool_max,
        redis_pool_max=read("REDIS_POOL_MAX", _parse_count, 64),
        credential_ttl=read("CREDENTIAL_TTL", _parse_seconds, 300.0),
    )


def _parse_backend(value: str) -> Backend:
    lowered = value.lower()
    if lowered == "memory":
        return "memory"
    if lowered == "live":
        return "live"
    raise _MalformedError("memory or live")


def _parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _MalformedError("one of true/false/1/0/yes/no")


def _parse_log_level(value: str) -> str:
    upper = value.upper()
    if upper not in LOG_LEVELS:
        raise _MalformedError("one of " + "/".join(LOG_LEVELS))
    return upper


def _parse_port(value: str) -> int:
    # int() alone would accept "+80", "8_0" and non-ASCII digits.
    if _PORT.fullmatch(value) and 1 <= int(value) <= 65535:
        return int(value)
    raise _MalformedError("a port number 1-65535")


def _parse_count(value: str) -> int:
    if value.isascii() and value.isdigit() and 1 <= int(value) <= 1000:
        return int(value)
    raise _MalformedError("a whole number 1-1000")


def _parse_vault_path(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", value.strip("/")):
        raise _MalformedError("a Vault path of letters, digits, _ . - separated by /")
    return value.strip("/")


def _parse_vhost(value: str) -> str:
    if any(c.isspace() or not c.isprintable() for c in value):
        raise _MalformedError("a vhost name without spaces or control characters")
    return value


def _parse_host(value: str) -> str:
    if any(c.isspace() or c in "/@" for c in value):
        raise _MalformedError("a host name or IP address")
    return value


def _parse_token(value: str) -> str:
    if any(c.isspace() or not c.isprintable() for c in value):
        raise _MalformedError("a token without spaces or control characters")
    return value


def _parse_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in value:
        raise _MalformedError("an http(s) URL such as http://127.0.0.1:8200")
    return value


def _parse_origins(value: str) -> tuple[str, ...]:
    origins = tuple(item.strip() for item in value.split(","))
    for origin in origins:
        parts = urlsplit(origin)
        # Browsers send Origin as scheme://host[:port] exactly; anything else would never match.
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path
            or parts.query
            or parts.fragment
            or parts.username is not None
        ):
            raise _MalformedError("a comma-separated list of origins like http://host[:port]")
    return origins


def _parse_nodes(value: str) -> tuple[tuple[str, int], ...]:
    return tuple(_parse_node(item.strip()) for item in value.split(","))


def _parse_node(item: str) -> tuple[str, int]:
    expected = "host:port[,host:port...]"
    host, sep, port = item.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise _MalformedError(expected + " (IPv6 hosts in [brackets])")
    if not sep or not host:
        raise _MalformedError(expected)
    try:
        return _parse_host(host), _parse_port(port)
    except _MalformedError:
        raise _MalformedError(expected) from None


def _parse_limit(value: str) -> str:
    expected = "a rate limit such as 100/minute or 10 per second"
    try:
        item = limits.parse(value)
    except ValueError:
        raise _MalformedError(expected) from None
    if item.amount < 1:
        raise _MalformedError(expected)
    return value


def _parse_storage_url(value: str) -> str:
    scheme, sep, _ = value.partition("://")
    if not sep or scheme.lower() not in _RATE_LIMIT_SCHEMES:
        raise _MalformedError("memory://, redis://host:port/db or redis+cluster://host:port,...")
    return value


def _parse_strategy(value: str) -> str:
    lowered = value.lower()
    if lowered not in RATE_LIMIT_STRATEGIES:
        raise _MalformedError("one of " + "/".join(RATE_LIMIT_STRATEGIES))
    return lowered


def _parse_key_prefix(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", value):
        raise _MalformedError("1-64 characters of letters, digits, _ . : -")
    return value


def _parse_networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in value.split(","))
    except ValueError:
        raise _MalformedError("a comma-separated list of CIDRs such as 10.0.0.0/8,::1") from None


def _seconds(value: str, expected: str, *, accept: Callable[[float], bool]) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise _MalformedError(expected) from None
    if not math.isfinite(seconds) or not accept(seconds):
        raise _MalformedError(expected)
    return seconds


def _parse_seconds(value: str) -> float:
    return _seconds(value, "a number of seconds such as 60 or 0.5", accept=lambda s: 0 < s <= 86400)


def _parse_near_ttl(value: str) -> float:
    # Longer would let a process serve an answer invalidated elsewhere for minutes.
    return _seconds(
        value, "a number of seconds from 0 to 60, such as 1 or 0.5", accept=lambda s: 0 <= s <= 60
    )


def _parse_services(value: str) -> tuple[str, ...]:
    names = tuple(item.strip().lower() for item in value.split(",") if item.strip())
    if not set(names) <= set(SERVICE_NAMES):
        raise _MalformedError("a comma-separated list of " + ",".join(SERVICE_NAMES))
    return tuple(dict.fromkeys(names))

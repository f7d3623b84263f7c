"""Configuration read once from the environment into frozen values.

Each environment variable is declared once, on the attrs field it fills: `_env` gives the field
its default and keeps the variable's name, parser and meaning in the field's metadata.
`Settings.from_env` reads the variables from there, and `ENVIRONMENT` lists them for
``colima-ref serve --help`` and the README's table. ``from_env`` takes a mapping (the caller
passes ``os.environ``), so tests build settings from plain dicts. A variable that is unset or
empty takes its default. A malformed value raises `SettingsError`, whose message is one line
naming the variable.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import attrs
import limits
from attrs import AttrsInstance

from colima_ref.domain.masking import hide_userinfo_passwords
from colima_ref.ports.services import SERVICE_NAMES, Backend

DEFAULT_APP_NAME = "Colima Services Reference API"
LOCALHOST = "127.0.0.1"
DEFAULT_VHOST = "dev_vhost"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
RATE_LIMIT_STRATEGIES = ("sliding-window-counter", "moving-window", "fixed-window")
_RATE_LIMIT_SCHEMES = ("memory", "redis", "rediss", "redis+cluster")

_PORT = re.compile(r"[0-9]{1,5}")
_GOT_LIMIT = 80
_VARIABLES = "colima_ref.settings.variables"

T = TypeVar("T")
A = TypeVar("A", bound=AttrsInstance)


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


@attrs.define
class MalformedError(ValueError):
    """Raised by a parser, which knows the form but not the variable; `Variable.read` names it."""

    expected: str


def _lookup(table: Mapping[str, T], expected: str) -> Callable[[str], T]:
    """A parser giving the value ``table`` holds for the text in lower case."""

    def parse(value: str) -> T:
        try:
            return table[value.lower()]
        except KeyError:
            raise MalformedError(expected) from None

    return parse


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    return _lookup({choice.lower(): choice for choice in choices}, "one of " + "/".join(choices))


_bool = _lookup(
    dict.fromkeys(("true", "1", "yes"), True) | dict.fromkeys(("false", "0", "no"), False),
    "one of true/false/1/0/yes/no",
)
_backend = _lookup({"memory": "memory", "live": "live"}, "memory or live")


def parse_port(value: str) -> int:
    # int() alone would accept "+80", "8_0" and non-ASCII digits.
    if _PORT.fullmatch(value) and 1 <= int(value) <= 65535:
        return int(value)
    raise MalformedError("a port number 1-65535")


def parse_count(value: str) -> int:
    if value.isascii() and value.isdigit() and 1 <= int(value) <= 1000:
        return int(value)
    raise MalformedError("a whole number 1-1000")


def _number_of_seconds(expected: str, accept: Callable[[float], bool]) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            seconds = float(value)
        except ValueError:
            raise MalformedError(expected) from None
        if not accept(seconds):  # nan and inf fail every bound
            raise MalformedError(expected)
        return seconds

    return parse


_seconds = _number_of_seconds("a number of seconds such as 60 or 0.5", lambda s: 0 < s <= 86400)


def _without_spaces(what: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if any(c.isspace() or not c.isprintable() for c in value):
            raise MalformedError(f"{what} without spaces or control characters")
        return value

    return parse


_token = _without_spaces("a token")
_vhost = _without_spaces("a vhost name")


def _vault_path(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", value.strip("/")):
        raise MalformedError("a Vault path of letters, digits, _ . - separated by /")
    return value.strip("/")


def _file(value: str) -> str:
    if any(not c.isprintable() for c in value):
        raise MalformedError("a file path without control characters")
    return value


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: str) -> int:
    """Whole seconds from a duration as Vault writes them (30s, 15m, 24h, 7d) or bare seconds."""
    expected = "a duration of 30s to 3650d such as 30s, 15m or 24h"
    found = re.fullmatch(r"([0-9]{1,9})([smhd]?)", value.lower())
    if not found:
        raise MalformedError(expected)
    seconds = int(found[1]) * _DURATION_UNITS[found[2]]
    # Vault backdates a certificate 30 s by default, so a shorter one would be born half expired.
    if not 30 <= seconds <= 3650 * 86400:
        raise MalformedError(expected)
    return seconds


def _host(value: str) -> str:
    if any(c.isspace() or c in "/@" for c in value):
        raise MalformedError("a host name or IP address")
    return value


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in value:
        raise MalformedError("an http(s) URL such as http://127.0.0.1:8200")
    return value


def _hosts(value: str) -> tuple[str, ...]:
    try:
        return tuple(_host(item.strip()) for item in value.split(",") if item.strip())
    except MalformedError:
        raise MalformedError("comma-separated host names or IP addresses") from None


def _origins(value: str) -> tuple[str, ...]:
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
            raise MalformedError("a comma-separated list of origins like http://host[:port]")
    return origins


def _nodes(value: str) -> tuple[tuple[str, int], ...]:
    return tuple(_node(item.strip()) for item in value.split(","))


def _node(item: str) -> tuple[str, int]:
    expected = "host:port[,host:port...]"
    host, sep, port = item.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise MalformedError(expected + " (IPv6 hosts in [brackets])")
    if not sep or not host:
        raise MalformedError(expected)
    try:
        return _host(host), parse_port(port)
    except MalformedError:
        raise MalformedError(expected) from None


def _limit(value: str) -> str:
    expected = "a rate limit such as 100/minute or 10 per second"
    try:
        item = limits.parse(value)
    except ValueError:
        raise MalformedError(expected) from None
    if item.amount < 1:
        raise MalformedError(expected)
    return value


def _storage_url(value: str) -> str:
    scheme, sep, _ = value.partition("://")
    if not sep or scheme.lower() not in _RATE_LIMIT_SCHEMES:
        raise MalformedError("memory://, redis://host:port/db or redis+cluster://host:port,...")
    return value


def _key_prefix(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", value):
        raise MalformedError("1-64 characters of letters, digits, _ . : -")
    return value


def _networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in value.split(","))
    except ValueError:
        raise MalformedError("a comma-separated list of CIDRs such as 10.0.0.0/8,::1") from None


def _services(value: str) -> tuple[str, ...]:
    names = tuple(item.strip().lower() for item in value.split(",") if item.strip())
    if not set(names) <= set(SERVICE_NAMES):
        raise MalformedError("a comma-separated list of " + ",".join(SERVICE_NAMES))
    return tuple(dict.fromkeys(names))


@attrs.frozen
class Variable:
    """One environment variable: how its text is parsed, its default and what it is for.

    ``secret`` keeps its value out of every repr and error. ``flag`` is the ``colima-ref serve``
    option that overrides it; a flagged variable's parser returns text, which the CLI passes on
    as the variable's value. ``shown_default`` replaces the default in ``--help`` when the
    default depends on another variable.
    """

    name: str
    parse: Callable[[str], Any]
    default: Any
    description: str
    secret: bool = False
    flag: str | None = None
    shown_default: str | None = None

    def read(self, env: Mapping[str, str]) -> Any:
        """The parsed value ``env`` gives this variable, or its default when unset or empty.

        Raises:
            SettingsError: the value is malformed.
        """
        text = _given(env, self.name)
        if not text:
            return self.default
        try:
            return self.parse(text)
        except MalformedError as exc:
            raise SettingsError(self.name, exc.expected, None if self.secret else text) from None

    @property
    def default_text(self) -> str:
        """The default as ``--help`` and the README show it."""
        if self.shown_default is not None:
            return self.shown_default
        match self.default:
            case None:
                return "(none)"
            case "" | ():
                return "(empty)"
            case bool():
                return str(self.default).lower()
            case float() if self.default.is_integer():
                return str(int(self.default))
            case tuple():
                return ",".join(self.default)
        return str(self.default)


def _env(
    name: str,
    parse: Callable[[str], Any],
    default: Any,
    description: str,
    *,
    secret: bool = False,
    flag: str | None = None,
    shown_default: str | None = None,
) -> Any:
    """An attrs field filled from the environment variable ``name``."""
    variable = Variable(name, parse, default, description, secret, flag, shown_default)
    return attrs.field(
        default=default,
        repr=False if secret else _repr_without_password,
        metadata={_VARIABLES: (variable,)},
    )


def _endpoint(host: str, port: str, service: str, default_port: int) -> Any:
    """An `Endpoint` field, its host and its port each from their own variable."""
    variables = (
        Variable(host, _host, LOCALHOST, f"{service} host"),
        Variable(port, parse_port, default_port, f"{service} port"),
    )
    return attrs.field(default=Endpoint(LOCALHOST, default_port), metadata={_VARIABLES: variables})


def _given(env: Mapping[str, str], name: str) -> str:
    return env.get(name, "").strip()


def _repr_without_password(value: object) -> str:
    return repr(hide_userinfo_passwords(value) if isinstance(value, str) else value)


@attrs.frozen
class Endpoint:
    """Where a TCP service listens."""

    host: str
    port: int


@attrs.frozen
class VaultSettings:
    """Where Vault is and how to log in: a token, or an AppRole role_id + secret_id."""

    addr: str = _env("VAULT_ADDR", _url, "http://127.0.0.1:8200", "Vault (or OpenBao) URL")
    token: str | None = _env(
        "VAULT_TOKEN", _token, None, "Vault token; never logged or shown", secret=True
    )
    role_id: str | None = _env(
        "VAULT_ROLE_ID",
        _token,
        None,
        "AppRole role_id, with VAULT_SECRET_ID instead of a token",
        secret=True,
    )
    secret_id: str | None = _env(
        "VAULT_SECRET_ID", _token, None, "AppRole secret_id; never logged or shown", secret=True
    )
    mount: str = _env(
        "VAULT_MOUNT", _vault_path, "secret", "KV v2 mount the service secrets live in"
    )
    path_prefix: str = _env(
        "VAULT_PATH_PREFIX", _vault_path, "", "folder in that mount before each service's path"
    )
    timeout: float = _env("VAULT_TIMEOUT", _seconds, 2.0, "seconds per Vault request")


@attrs.frozen
class TlsSettings:
    """The certificate of the HTTPS listener (``colima-ref serve --https-port``): PEM files, or
    one Vault's PKI secrets engine issues at start-up and again at two thirds of its life."""

    certfile: str | None = _env(
        "SSL_CERTFILE",
        _file,
        None,
        "PEM certificate (chain) the HTTPS listener serves",
        flag="--ssl-certfile",
    )
    keyfile: str | None = _env(
        "SSL_KEYFILE",
        _file,
        None,
        "PEM private key of SSL_CERTFILE, unless that file holds it",
        flag="--ssl-keyfile",
    )
    pki_role: str | None = _env(
        "VAULT_PKI_ROLE",
        _vault_path,
        None,
        "PKI role that issues the HTTPS certificate; instead of SSL_CERTFILE",
    )
    pki_mount: str = _env("VAULT_PKI_MOUNT", _vault_path, "pki", "mount of that PKI engine")
    common_name: str = _env(
        "TLS_COMMON_NAME", _host, "localhost", "common name of the issued certificate"
    )
    alt_names: tuple[str, ...] = _env(
        "TLS_ALT_NAMES", _hosts, (), "more DNS names and IP addresses it is valid for"
    )
    ttl: int = _env(
        "TLS_TTL",
        _duration,
        86400,
        "lifetime of each issued certificate (30s, 15m, 24h)",
        shown_default="24h",
    )

    def __attrs_post_init__(self) -> None:
        if self.certfile and self.pki_role:
            raise SettingsError(
                "SSL_CERTFILE",
                "unset while VAULT_PKI_ROLE is set (one certificate source)",
                self.certfile,
            )
        if self.keyfile and not self.certfile:
            raise SettingsError("SSL_KEYFILE", "given with SSL_CERTFILE", self.keyfile)


@attrs.frozen
class BackendSettings:
    """What every live adapter shares: timeouts in seconds, pool sizes, credential reuse."""

    connect_timeout: float = _env(
        "CONNECT_TIMEOUT", _seconds, 2.0, "seconds to connect to a database, Redis or RabbitMQ"
    )
    operation_timeout: float = _env(
        "OPERATION_TIMEOUT", _seconds, 5.0, "seconds for one backend call before it answers 504/503"
    )
    pool_min: int = _env("DB_POOL_MIN", parse_count, 1, "connections each SQL pool keeps open")
    pool_max: int = _env(
        "DB_POOL_MAX", parse_count, 10, "connections each pool (SQL, MongoDB) may open"
    )
    credential_ttl: float = _env(
        "CREDENTIAL_TTL", _seconds, 300.0, "seconds a credential read from Vault is reused"
    )
    redis_pool_max: int = _env(
        "REDIS_POOL_MAX",
        parse_count,
        64,
        "Redis commands in flight (more wait); connections per node",
    )

    def __attrs_post_init__(self) -> None:
        if self.pool_max < self.pool_min:
            raise SettingsError(
                "DB_POOL_MAX", f"at least DB_POOL_MIN ({self.pool_min})", str(self.pool_max)
            )


@attrs.frozen
class RedisSettings:
    host: str = _env("REDIS_HOST", _host, LOCALHOST, "Redis host (used when REDIS_NODES is empty)")
    port: int = _env("REDIS_PORT", parse_port, 6379, "Redis port (used when REDIS_NODES is empty)")
    nodes: tuple[tuple[str, int], ...] = _env(
        "REDIS_NODES", _nodes, (), "Redis Cluster seeds host:port[,host:port...]"
    )

    @property
    def seeds(self) -> tuple[tuple[str, int], ...]:
        """The cluster seed nodes, or the single REDIS_HOST:REDIS_PORT when REDIS_NODES is empty."""
        return self.nodes or ((self.host, self.port),)


@attrs.frozen
class RateLimitSettings:
    """Limits as ``limits`` strings (``100/minute``), checked by `Settings.from_env`."""

    enabled: bool = _env("RATE_LIMIT_ENABLED", _bool, True, "true/false; per client IP and route")
    default: str = _env(
        "RATE_LIMIT_DEFAULT", _limit, "100/minute", "limit of every route without its own"
    )
    health: str = _env("RATE_LIMIT_HEALTH", _limit, "200/minute", "limit of each /health route")
    metrics: str = _env("RATE_LIMIT_METRICS", _limit, "1000/minute", "limit of /metrics")
    storage_url: str = _env(  # secret: the URL may carry a Redis password
        "RATE_LIMIT_STORAGE_URL",
        _storage_url,
        "memory://",
        "memory://, redis://... or redis+cluster://...",
        secret=True,
    )
    strategy: str = _env(
        "RATE_LIMIT_STRATEGY",
        _one_of(RATE_LIMIT_STRATEGIES),
        "sliding-window-counter",
        "/".join(RATE_LIMIT_STRATEGIES),
    )
    key_prefix: str = _env(
        "RATE_LIMIT_KEY_PREFIX",
        _key_prefix,
        "colima_ref",
        "prefix of the limiter's keys in its storage",
    )


@attrs.frozen
class BreakerSettings:
    """Every service's circuit breaker: ``fail_max`` outages open it for ``reset_timeout`` s."""

    fail_max: int = _env(
        "CIRCUIT_BREAKER_FAIL_MAX",
        parse_count,
        5,
        "consecutive outages that open a service's breaker",
    )
    reset_timeout: float = _env(
        "CIRCUIT_BREAKER_RESET_TIMEOUT",
        _seconds,
        60.0,
        "seconds an open breaker waits before a trial",
    )


@attrs.frozen
class HttpSettings:
    """What the HTTP edge reads, and nothing else: no Vault login, no backend address.

    `create_app` takes this rather than `Settings`, so the app's state and its routes hold no
    credential they do not use. ``rate_limit.storage_url`` may carry a Redis password the
    limiter needs: it stays out of the repr as in `RateLimitSettings`. Built by `Settings.http`;
    each field has the meaning of the `Settings` field of the same name.
    """

    app_name: str
    debug: bool
    cors_origins: tuple[str, ...]
    rate_limit: RateLimitSettings
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    response_cache_enabled: bool
    metrics_enabled: bool
    log_requests: bool
    circuit_breaker: BreakerSettings
    readiness_services: tuple[str, ...]


@attrs.frozen
class Settings:
    """Everything the process is configured with. Built by `from_env`; never read from globals."""

    backend: Backend = _env(
        "COLIMA_BACKEND",
        _backend,
        "memory",
        "memory (demo adapters, no infrastructure) or live (the real services)",
        flag="--backend",
        shown_default="live if VAULT_ADDR is set, else memory",
    )
    # What chose `backend`, for the start-up log line.
    backend_source: str = "default"
    app_name: str = _env("APP_NAME", str, DEFAULT_APP_NAME, "name reported by GET /")
    debug: bool = _env(
        "DEBUG",
        _bool,
        False,
        "true/false/1/0/yes/no; stack traces in 500 bodies, any CORS origin, DEBUG log lines",
    )
    log_level: str = _env(
        "LOG_LEVEL",
        _one_of(LOG_LEVELS),
        "INFO",
        "minimum level of the JSON log lines on stdout: " + "/".join(LOG_LEVELS),
        flag="--log-level",
        shown_default="DEBUG if DEBUG is true, else INFO",
    )
    cors_origins: tuple[str, ...] = _env(
        "CORS_ORIGINS",
        _origins,
        ("http://localhost:3000", "http://localhost:8000", "http://localhost:8080"),
        "comma-separated allowed origins",
    )
    vault: VaultSettings = VaultSettings()
    tls: TlsSettings = TlsSettings()
    backends: BackendSettings = BackendSettings()
    postgres: Endpoint = _endpoint("POSTGRES_HOST", "POSTGRES_PORT", "PostgreSQL", 5432)
    mysql: Endpoint = _endpoint("MYSQL_HOST", "MYSQL_PORT", "MySQL/MariaDB", 3306)
    mongodb: Endpoint = _endpoint("MONGODB_HOST", "MONGODB_PORT", "MongoDB", 27017)
    redis: RedisSettings = RedisSettings()
    rabbitmq: Endpoint = _endpoint("RABBITMQ_HOST", "RABBITMQ_PORT", "RabbitMQ", 5672)
    rabbitmq_vhost: str = _env(
        "RABBITMQ_VHOST", _vhost, DEFAULT_VHOST, "vhost used when the rabbitmq secret names none"
    )
    rate_limit: RateLimitSettings = RateLimitSettings()
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = _env(
        "TRUSTED_PROXIES", _networks, (), "CIDRs whose X-Forwarded-For is believed"
    )
    response_cache_enabled: bool = _env(
        "RESPONSE_CACHE_ENABLED",
        _bool,
        True,
        "true/false; caches secret bodies, and /health/all for 1 s in each process",
    )
    metrics_enabled: bool = _env(
        "METRICS_ENABLED", _bool, True, "true/false; HTTP request metrics (off for the bench)"
    )
    log_requests: bool = _env(
        "LOG_REQUESTS", _bool, True, "true/false; one log line per request (off for the bench)"
    )
    circuit_breaker: BreakerSettings = BreakerSettings()
    readiness_services: tuple[str, ...] = _env(
        "READINESS_SERVICES", _services, (), "services /health/ready requires healthy (vault,...)"
    )

    @property
    def http(self) -> HttpSettings:
        """The part of these settings `create_app` takes."""
        # Copied by name: HttpSettings says which fields the edge reads, Settings holds them.
        return HttpSettings(**{f.name: getattr(self, f.name) for f in attrs.fields(HttpSettings)})

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read every variable of `ENVIRONMENT` from ``env``.

        Raises:
            SettingsError: a value is malformed; the message names the variable and the form.
        """
        settings = _load(cls, env)
        if settings.debug and not _given(env, "LOG_LEVEL"):
            # The specification's DEBUG "enables detailed logging"; a LOG_LEVEL given still wins.
            settings = attrs.evolve(settings, log_level="DEBUG")
        if _given(env, "COLIMA_BACKEND"):
            return attrs.evolve(settings, backend_source="COLIMA_BACKEND")
        if _given(env, "VAULT_ADDR"):
            return attrs.evolve(settings, backend="live", backend_source="VAULT_ADDR set")
        return settings


def _load(cls: type[A], env: Mapping[str, str]) -> A:
    """``cls`` with each field read from the variables it declares, and each field that holds
    settings of its own (`VaultSettings`, ...) loaded the same way."""
    values: dict[str, Any] = {}
    for field in attrs.fields(cls):
        variables = field.metadata.get(_VARIABLES, ())
        if len(variables) == 1:
            values[field.name] = variables[0].read(env)
        elif variables:
            values[field.name] = type(field.default)(*(v.read(env) for v in variables))
        elif attrs.has(type(field.default)):
            values[field.name] = _load(type(field.default), env)
    return cls(**values)


def _declared(cls: type[AttrsInstance]) -> Iterator[Variable]:
    for field in attrs.fields(cls):
        if _VARIABLES in field.metadata:
            yield from field.metadata[_VARIABLES]
        elif attrs.has(type(field.default)):
            yield from _declared(type(field.default))


ENVIRONMENT: tuple[Variable, ...] = tuple(_declared(Settings))

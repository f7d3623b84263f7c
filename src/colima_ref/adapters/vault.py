"""VaultSecretStore: KV v2 secrets from Vault or OpenBao through hvac.

hvac is synchronous (requests), so every request runs in a worker thread on one long-lived
client whose requests.Session keeps its connections. The token is only ever assigned on the
event-loop thread, and assigning an attribute is atomic, so worker threads never see half a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime
import functools
import ipaddress
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

import attrs
import hvac
import hvac.exceptions
import requests
import structlog

from colima_ref.adapters.breaker import ServiceBreaker, through
from colima_ref.domain.certificates import CertificateFacts, IssuedCertificate
from colima_ref.domain.errors import (
    ConfigurationError,
    ResourceNotFoundError,
    VaultUnavailableError,
)
from colima_ref.domain.models import Secret, ServiceHealth
from colima_ref.domain.shared_runs import SharedRuns
from colima_ref.settings import Settings

T = TypeVar("T")

log = structlog.get_logger(__name__)

PERMISSION_DENIED: Final = "permission denied"
# Renew when two thirds of a lease are gone: a renewal that fails once still has time to be retried.
RENEW_AT: Final = 2 / 3


@attrs.frozen
class TokenAuth:
    """Authenticate with one fixed token (VAULT_TOKEN). A refused token is never replaced."""

    token: str = attrs.field(repr=False)


@attrs.frozen
class AppRoleAuth:
    """Log in with AppRole, and log in again whenever the token expires or is refused."""

    role_id: str = attrs.field(repr=False)
    secret_id: str = attrs.field(repr=False)
    mount: str = "approle"


VaultAuth = TokenAuth | AppRoleAuth


def auth_from(
    *,
    token: str | None = None,
    role_id: str | None = None,
    secret_id: str | None = None,
    approle_mount: str = "approle",
) -> VaultAuth:
    """The one auth method the arguments name; empty strings count as absent.

    Raises ConfigurationError unless exactly one of a token or a role_id + secret_id pair is given:
    choosing between them is the operator's decision, never a silent fallback.
    """
    approle_given = bool(role_id) or bool(secret_id)
    if token and approle_given:
        raise ConfigurationError(
            "Give Vault either a token or an AppRole role_id and secret_id, not both",
            {"service": "vault"},
        )
    if token:
        return TokenAuth(token)
    if role_id and secret_id:
        return AppRoleAuth(role_id, secret_id, approle_mount)
    if approle_given:
        raise ConfigurationError(
            "Vault AppRole needs both a role_id and a secret_id", {"service": "vault"}
        )
    raise ConfigurationError(
        "Vault needs a token or an AppRole role_id and secret_id", {"service": "vault"}
    )


@attrs.frozen
class _Lease:
    ttl: int
    renewable: bool
    increment: int
    generation: int
    # A renewal that granted less than it asked for hit the token's max TTL: renewing is over.
    final: bool = False


def _hvac_client(addr: str, token: str, timeout: float) -> hvac.Client:
    """An hvac client whose requests session reads the environment once instead of per request.

    With ``trust_env`` on, requests looks up proxies (HTTP(S)_PROXY, NO_PROXY), a netrc file and
    a CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) on every request, walking os.environ each
    time, though the environment does not change while we run. Read here, once: the proxies
    for ``addr``, and the CA bundle unless VAULT_CACERT or VAULT_CAPATH (which hvac reads itself)
    name one. A netrc login is of no use against Vault's token header.
    """
    verify = None
    if not (os.environ.get("VAULT_CACERT") or os.environ.get("VAULT_CAPATH")):
        verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None
    client = hvac.Client(url=addr, token=token, timeout=timeout, verify=verify)
    session = client.session
    session.proxies = requests.utils.get_environ_proxies(addr)
    session.trust_env = False
    return client


@attrs.define
class VaultSecretStore:
    """A SecretStore and HealthProbe over a KV v2 mount.

    ``read`` raises ResourceNotFoundError for a missing or deleted path, or one our token's
    policy denies, and VaultUnavailableError when Vault is down, sealed, times out or refuses our
    token or login (``details["reason"]`` says which; a refusal is an answer, not an outage, so
    no breaker counts it). With AppRole, a refused call logs in again (one login for all
    concurrent callers) and is retried once. Build it with ``open``, which also keeps the token
    renewed in the background.

    With a ``breaker``, ``read`` (its login included) passes through it and raises
    CircuitBreakerError while it is open. ``check`` always reaches Vault, so recovery shows, and
    token renewal keeps its own retry loop: an open circuit must not end it.
    """

    _client: hvac.Client = attrs.field(alias="client", repr=False)
    _auth: VaultAuth = attrs.field(alias="auth")
    mount: str = "secret"
    prefix: str = ""
    retry_interval: float = 5.0
    _operation_timeout: float = attrs.field(default=5.0, alias="operation_timeout")
    _breaker: ServiceBreaker | None = attrs.field(default=None, alias="breaker", repr=False)
    max_threads: int = 8
    # Its own threads: requests a silent Vault holds must not starve the loop's default executor
    # (which also resolves host names), and their number stays bounded.
    _threads: ThreadPoolExecutor = attrs.field(init=False, repr=False)
    # Bumped by each AppRole login: a refusal seen under an older token is that token's.
    _generation: int = attrs.field(default=0, init=False)
    _logins: SharedRuns[int, None] = attrs.field(factory=SharedRuns, init=False, repr=False)
    _renewal: asyncio.Task[None] | None = attrs.field(default=None, init=False, repr=False)
    _health: SharedRuns[str, ServiceHealth] = attrs.field(
        factory=SharedRuns, init=False, repr=False
    )
    _secret_values: frozenset[str] = attrs.field(factory=frozenset, init=False, repr=False)

    # The last private key issued, swapped out of `_secret_values` when the next one comes.
    _issued_key: str = attrs.field(default="", init=False, repr=False)

    def secret_values(self) -> frozenset[str]:
        """What it logs in to Vault with, every token a login gave it and the private key it
        issued last, to hide from logs."""
        return self._secret_values

    @_threads.default
    def _own_threads(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.max_threads, thread_name_prefix="vault")

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        *,
        addr: str,
        token: str | None = None,
        role_id: str | None = None,
        secret_id: str | None = None,
        mount: str = "secret",
        prefix: str = "",
        request_timeout: float = 2.0,
        operation_timeout: float = 5.0,
        max_threads: int = 8,
        approle_mount: str = "approle",
        retry_interval: float = 5.0,
        breaker: ServiceBreaker | None = None,
    ) -> AsyncIterator[VaultSecretStore]:
        """A store on one hvac client, renewing its token until the block exits.

        ``request_timeout`` bounds every request (connect and each read), in seconds, and
        ``operation_timeout`` a whole ``read`` or ``check``, logins and retries included.
        At most ``max_threads`` requests run at once, each in a thread; more wait for one.

        Makes no request before yielding, so it succeeds while Vault is down. Raises
        ConfigurationError when the auth arguments do not name exactly one method.
        """
        auth = auth_from(
            token=token, role_id=role_id, secret_id=secret_id, approle_mount=approle_mount
        )
        # An explicit "" stops hvac from reading VAULT_TOKEN behind an AppRole configuration.
        client_token = auth.token if isinstance(auth, TokenAuth) else ""
        client = _hvac_client(addr, client_token, request_timeout)
        store = cls(
            client,
            auth,
            mount=mount,
            prefix=prefix,
            retry_interval=retry_interval,
            operation_timeout=operation_timeout,
            max_threads=max_threads,
            breaker=breaker,
        )
        # A traceback or a driver message must not show what logs in to Vault.
        store._secret_values = frozenset(value for value in (token, role_id, secret_id) if value)
        store._renewal = asyncio.create_task(store._keep_token_alive(), name="vault-token")
        async with contextlib.aclosing(store):
            yield store

    @classmethod
    def from_settings(
        cls, settings: Settings, breaker: ServiceBreaker | None = None
    ) -> contextlib.AbstractAsyncContextManager[VaultSecretStore]:
        """`open` with ``settings.vault`` and the operation timeout of ``backends``."""
        vault = settings.vault
        return cls.open(
            addr=vault.addr,
            token=vault.token,
            role_id=vault.role_id,
            secret_id=vault.secret_id,
            mount=vault.mount,
            prefix=vault.path_prefix,
            request_timeout=vault.timeout,
            operation_timeout=settings.backends.operation_timeout,
            breaker=breaker,
        )

    async def aclose(self) -> None:
        """Stop renewing the token, wait for the requests still running, and close the HTTP
        session."""
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
            self._renewal = None
        # Requests given up on at the operation timeout may still hold a thread and a
        # connection: they end within request_timeout, then the connections are closed.
        await asyncio.to_thread(functools.partial(self._threads.shutdown, cancel_futures=True))
        self._client.adapter.close()

    async def read(self, path: str) -> Secret:
        """The latest version of the secret at ``path`` (under the prefix), every value as text
        (nested ones under their dotted paths: `text_fields`)."""
        return await through(self._breaker, self._read, path, operation="read")

    async def _read(self, path: str) -> Secret:
        full_path = f"{self.prefix.strip('/')}/{path}" if self.prefix.strip("/") else path
        response = await self._bounded(
            self._authenticated(
                lambda: self._client.secrets.kv.v2.read_secret_version(
                    path=full_path, mount_point=self.mount, raise_on_deleted_version=True
                ),
                path=path,
            )
        )
        return Secret(path=path, data=dict(text_fields(response["data"]["data"])))

    async def check(self) -> ServiceHealth:
        """Vault's /sys/health; sealed or uninitialised is unhealthy.

        Concurrent checks share one request: each hvac request holds a thread and the GIL for
        a while, so under load one request per check would queue behind the others.

        Raises VaultUnavailableError when Vault cannot be reached in time.
        """
        return await self._health.call("health", self._read_health)

    async def _read_health(self) -> ServiceHealth:
        status = await self._bounded(
            self._call(
                lambda: self._client.sys.read_health_status(
                    method="GET", sealed_code=200, standby_code=200, uninit_code=200
                )
            )
        )
        details = {key: bool(status[key]) for key in ("initialized", "sealed", "standby")}
        error = None
        if not details["initialized"]:
            error = "Vault is not initialised"
        elif details["sealed"]:
            error = "Vault is sealed"
        return ServiceHealth(
            healthy=error is None,
            info={"details": details, "version": status.get("version")},
            error=error,
        )

    async def issue_certificate(
        self,
        *,
        role: str,
        common_name: str,
        alt_names: tuple[str, ...] = (),
        ttl: int = 86400,
        mount: str = "pki",
    ) -> IssuedCertificate:
        """A new certificate and private key from the PKI engine at ``mount`` (its
        ``issue/<role>``), valid ``ttl`` seconds for ``common_name`` and ``alt_names`` (host
        names and IP addresses alike). The certificate comes with the chain that issued it.

        Raises VaultUnavailableError as ``read`` does; a role or mount that does not exist is
        reason ``invalid request`` or ``not found``. No breaker: nothing the clients call waits
        on it.
        """
        ips = [name for name in alt_names if _is_ip(name)]
        params = {
            "ttl": f"{ttl}s",
            "alt_names": ",".join(name for name in alt_names if name not in ips),
            "ip_sans": ",".join(ips),
        }
        response = await self._bounded(
            self._authenticated(
                lambda: self._client.secrets.pki.generate_certificate(
                    name=role, common_name=common_name, extra_params=params, mount_point=mount
                )
            )
        )
        data = response["data"]
        key = data["private_key"]
        self._secret_values = (self._secret_values - {self._issued_key}) | {key}
        self._issued_key = key
        chain = data.get("ca_chain") or [data["issuing_ca"]]
        expires_at = datetime.datetime.fromtimestamp(int(data["expiration"]), datetime.UTC)
        return IssuedCertificate(
            certificate="\n".join([data["certificate"], *chain]) + "\n",
            private_key=data["private_key"] + "\n",
            facts=CertificateFacts(serial=data["serial_number"], expires_at=expires_at),
        )

    async def _authenticated(self, request: Callable[[], T], *, path: str | None = None) -> T:
        generation = self._generation
        if isinstance(self._auth, AppRoleAuth) and generation == 0:
            await self._login(self._auth, generation)
            generation = self._generation
        try:
            return await self._call(request, path=path)
        except VaultUnavailableError as exc:
            if exc.details.get("reason") != PERMISSION_DENIED:
                raise
            refusal = exc
        # Vault answers 403 both to a token it no longer takes and to a path the token's
        # policy denies. A path read by a client must not cost an AppRole login, nor be
        # reported as Vault refusing us: a token Vault still takes means the path is denied.
        # Unless a concurrent login replaced the token since this request went out, before or
        # during the lookup: the 403 was the old token's, and the login path below retries.
        if (
            path is not None
            and self._generation == generation
            and await self._token_accepted()
            and self._generation == generation
        ):
            raise ResourceNotFoundError(
                f"No secret at path {path!r} that our Vault token may read",
                {"secret_path": path, "reason": PERMISSION_DENIED},
            ) from refusal
        if isinstance(self._auth, TokenAuth):
            raise refusal
        await self._login(self._auth, generation)
        return await self._call(request, path=path)

    async def _token_accepted(self) -> bool:
        try:
            await self._call(lambda: self._client.auth.token.lookup_self())
        except VaultUnavailableError as exc:
            if exc.details.get("reason") == PERMISSION_DENIED:
                return False
            raise
        return True

    async def _login(self, auth: AppRoleAuth, seen_generation: int) -> None:
        """Log in unless a login since ``seen_generation`` already replaced the token; callers
        that saw the same token share one login."""
        if self._generation == seen_generation:
            await self._logins.call(seen_generation, self._approle_login, auth)

    async def _approle_login(self, auth: AppRoleAuth) -> None:
        response = await self._call(
            lambda: self._client.auth.approle.login(
                role_id=auth.role_id,
                secret_id=auth.secret_id,
                use_token=False,
                mount_point=auth.mount,
            )
        )
        self._client.token = response["auth"]["client_token"]
        self._secret_values |= {self._client.token}
        self._generation += 1
        log.info("vault.approle.login", generation=self._generation)

    async def _bounded(self, call: Coroutine[Any, Any, T]) -> T:
        """``call`` within the operation timeout. hvac cannot be interrupted: a request past it
        goes on in its thread, until request_timeout, while the caller is answered at once."""
        try:
            async with asyncio.timeout(self._operation_timeout):
                return await call
        except TimeoutError as exc:
            raise _unavailable("timeout", exc) from exc

    async def _call(self, request: Callable[[], T], *, path: str | None = None) -> T:
        """The one place a request reaches Vault (a circuit breaker can wrap it)."""
        # As asyncio.to_thread, on our own threads: the request sees the caller's context.
        in_context = functools.partial(contextvars.copy_context().run, request)
        with _translated(path):
            return await asyncio.get_running_loop().run_in_executor(self._threads, in_context)

    async def _keep_token_alive(self) -> None:
        lease: _Lease | None = None
        while True:
            try:
                lease = await self._extend(lease)
            except VaultUnavailableError as exc:
                reason = exc.details.get("reason")
                if reason == PERMISSION_DENIED and isinstance(self._auth, TokenAuth):
                    log.error("vault.token.refused", action="renewal stopped")
                    return
                log.warning("vault.token.refresh_failed", reason=reason)
                lease = None
                await asyncio.sleep(self.retry_interval)
                continue
            if lease is None:
                return
            await asyncio.sleep(lease.ttl * RENEW_AT)

    async def _extend(self, lease: _Lease | None) -> _Lease | None:
        """The lease after one step of its life: looked up, renewed, or replaced by a login."""
        if lease is None:
            return await self._look_up_lease()
        if lease.renewable and not lease.final and lease.generation == self._generation:
            response = await self._authenticated(
                lambda: self._client.auth.token.renew_self(increment=lease.increment)
            )
            ttl = int(response["auth"]["lease_duration"])
            return attrs.evolve(
                lease,
                ttl=ttl,
                renewable=bool(response["auth"]["renewable"]),
                final=ttl < lease.increment,
            )
        if isinstance(self._auth, AppRoleAuth):
            await self._login(self._auth, lease.generation)
            return await self._look_up_lease()
        log.warning("vault.token.expiring", seconds_left=round(lease.ttl * (1 - RENEW_AT)))
        return None

    async def _look_up_lease(self) -> _Lease | None:
        response: dict[str, Any] = await self._authenticated(
            lambda: self._client.auth.token.lookup_self()
        )
        data = response["data"]
        if data.get("expire_time") is None:
            return None  # root and periodic-less service tokens that never expire
        if not data["ttl"]:
            # Its last second: a renewal that failed just before found it at its end.
            log.warning("vault.token.expiring", seconds_left=0)
            return None
        return _Lease(
            ttl=int(data["ttl"]),
            renewable=bool(data["renewable"]),
            increment=int(data.get("creation_ttl") or data["ttl"]),
            generation=self._generation,
        )


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@attrs.frozen
class VaultCertificateIssuer:
    """A CertificateIssuer over Vault's PKI engine: every ``issue`` is a new certificate and key
    from one role, through a `VaultSecretStore` (its login, its token kept alive)."""

    store: VaultSecretStore
    role: str
    mount: str = "pki"
    common_name: str = "localhost"
    alt_names: tuple[str, ...] = ()
    ttl: int = 86400

    @classmethod
    @contextlib.asynccontextmanager
    async def from_settings(cls, settings: Settings) -> AsyncIterator[VaultCertificateIssuer]:
        """An issuer on a store of its own, logged in as ``settings.vault`` says, for the role
        ``settings.tls`` names.

        Raises ConfigurationError when no PKI role is set or Vault has no single login method.
        """
        tls = settings.tls
        if not tls.pki_role:
            raise ConfigurationError("No PKI role to issue certificates with", {"service": "vault"})
        # No breaker: a renewal that fails is retried by its own schedule, not refused.
        async with VaultSecretStore.from_settings(settings) as store:
            yield cls(
                store,
                tls.pki_role,
                mount=tls.pki_mount,
                common_name=tls.common_name,
                alt_names=tls.alt_names,
                ttl=tls.ttl,
            )

    async def issue(self) -> IssuedCertificate:
        """See `VaultSecretStore.issue_certificate`."""
        return await self.store.issue_certificate(
            role=self.role,
            common_name=self.common_name,
            alt_names=self.alt_names,
            ttl=self.ttl,
            mount=self.mount,
        )


def text_fields(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Each value of a KV secret as text under its key. A nested object or list gives one field
    per value under its dotted path (``database.password``, ``hosts.0``), so that masking judges
    each by its own name: the text of a whole object under a harmless key (``database``) would
    show every value in it, its password too."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from text_fields(value, f"{name}.")
        elif isinstance(value, list):
            yield from text_fields({str(i): item for i, item in enumerate(value)}, f"{name}.")
        else:
            yield name, str(value)


def _unavailable(reason: str, exc: BaseException) -> VaultUnavailableError:
    # Our own words only: hvac's messages repeat Vault's error text, which we do not control.
    return VaultUnavailableError(
        f"Vault is unavailable: {reason}",
        {"reason": reason, "cause": type(exc).__name__},
        service="vault",
    )


def _refused(reason: str, exc: BaseException) -> VaultUnavailableError:
    # Vault is up and answered: our token or login is refused. No breaker counts it.
    return VaultUnavailableError(
        f"Vault refused our request: {reason}",
        {"reason": reason, "cause": type(exc).__name__},
        service="vault",
        outage=False,
    )


@contextlib.contextmanager
def _translated(path: str | None) -> Iterator[None]:
    try:
        yield
    except hvac.exceptions.InvalidPath as exc:
        if path is None:
            raise _unavailable("not found", exc) from exc
        raise ResourceNotFoundError(f"No secret at path {path!r}", {"secret_path": path}) from exc
    except hvac.exceptions.Forbidden as exc:
        raise _refused(PERMISSION_DENIED, exc) from exc
    except hvac.exceptions.InvalidRequest as exc:
        # What an AppRole login with a wrong role_id or secret_id gets (400).
        raise _refused("invalid request", exc) from exc
    except hvac.exceptions.VaultDown as exc:
        raise _unavailable("sealed", exc) from exc
    # Before ConnectionError: requests' ConnectTimeout is both.
    except requests.Timeout as exc:
        raise _unavailable("timeout", exc) from exc
    except requests.ConnectionError as exc:
        raise _unavailable("unreachable", exc) from exc
    except (hvac.exceptions.VaultError, requests.RequestException) as exc:
        raise _unavailable("error", exc) from exc

"""CredentialSource: the secrets adapters log in with, fetched once and kept for a while."""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs

from colima_ref.domain.masking import is_sensitive
from colima_ref.domain.models import Secret
from colima_ref.domain.shared_runs import SharedRuns
from colima_ref.ports.secrets import SecretStore


@attrs.frozen
class _Entry:
    secret: Secret
    expires_at: float


@attrs.define
class CredentialSource:
    """Secrets from a SecretStore, cached per path for ``ttl`` seconds.

    Concurrent misses for one path share a single read. ``get`` raises whatever the store raises
    (ResourceNotFoundError, VaultUnavailableError...); a failed read is not cached.
    Adapters call ``invalidate`` when a login is refused, so the next ``get`` sees a new password.
    ``on_rotated(path)`` is called when a read of ``path`` differs from the one before it.
    """

    _store: SecretStore = attrs.field(alias="store")
    ttl: float = 300.0
    _clock: Callable[[], float] = attrs.field(default=time.monotonic, alias="clock", repr=False)
    _on_rotated: Callable[[str], None] | None = attrs.field(
        default=None, alias="on_rotated", repr=False
    )
    _cache: dict[str, _Entry] = attrs.field(factory=dict, init=False, repr=False)
    # A hash per path, not the secret: what is compared outlives the cache entry it came from.
    _fingerprints: dict[str, int] = attrs.field(factory=dict, init=False, repr=False)
    # Bumped by invalidate: a read that began before is handed out but never cached.
    _generations: dict[str, int] = attrs.field(factory=dict, init=False, repr=False)
    _reads: SharedRuns[tuple[str, int], Secret] = attrs.field(
        factory=SharedRuns, init=False, repr=False
    )
    _secret_values: frozenset[str] = attrs.field(factory=frozenset, init=False, repr=False)

    async def get(self, path: str) -> Secret:
        """The secret at ``path``, from the cache while it is fresh."""
        entry = self._cache.get(path)
        if entry is not None and self._clock() < entry.expires_at:
            return entry.secret
        generation = self._generations.get(path, 0)
        return await self._reads.call((path, generation), self._read, path, generation)

    def invalidate(self, path: str) -> None:
        """Forget ``path``, including a read in flight, so the next ``get`` asks the store again."""
        self._cache.pop(path, None)
        self._generations[path] = self._generations.get(path, 0) + 1

    def secret_values(self) -> frozenset[str]:
        """Every sensitive value any read returned, rotated ones included, to hide from logs."""
        return self._secret_values

    async def _read(self, path: str, generation: int) -> Secret:
        secret = await self._store.read(path)
        # Whoever awaits it logs in with it, so logs hide it from now on.
        loaded = {v for k, v in secret.data.items() if v and is_sensitive(k)}
        if not loaded <= self._secret_values:
            self._secret_values |= loaded
        if self._generations.get(path, 0) == generation:
            self._cache[path] = _Entry(secret, self._clock() + self.ttl)
            self._compare(path, secret)
        return secret

    def _compare(self, path: str, secret: Secret) -> None:
        fingerprint = hash(frozenset(secret.data.items()))
        before = self._fingerprints.get(path)
        self._fingerprints[path] = fingerprint
        if before is not None and before != fingerprint and self._on_rotated is not None:
            self._on_rotated(path)

"""Keeps credentials out of log lines, whoever wrote the line and however carelessly.

The `redact_secrets` structlog processor applies three rules to every field, nested ones too:

- a key that looks like a credential (``password``, ``api_key``, ``Authorization``...) has its
  value replaced by MASK. Masking's deny-by-default would hide every ordinary field (``path``,
  ``method``), so logs use a denylist of credential-looking names, among keys masking hides;
- a value equal to a secret held by an object handed to `hiding_secrets_of` is replaced by
  MASK, and a value that contains one has that part replaced, wherever it sits (a DSN, a
  traceback, a stdlib message);
- the password of any ``user:password@`` login in a text is replaced by MASK, known or not
  (a library's error quoting the URL it was given, a DSN logged by mistake).

The objects that load secrets (the Vault login, the credential cache) say which values they
hold; the composition root hands them to `hiding_secrets_of` for as long as they are open, and
each line asks them afresh.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, Protocol

import attrs

from colima_ref.domain.masking import MASK, hide_userinfo_passwords, is_sensitive

# A shorter value ("1", "true") would be found inside ordinary text, so it is redacted only where
# a whole field equals it.
MIN_CONTAINED_LENGTH = 6

_CREDENTIAL_KEY = re.compile(
    r"pass(?:word|wd|phrase)?|pwd|secret|token|api[-_]?key|access[-_]?key|private[-_]?key"
    r"|auth|credential|cookie|signature",
    re.IGNORECASE,
)
# The shortest text that can hold a login with a password: ``u:p@h``.
_SHORTEST_LOGIN = 5
# Between the text fields searched at once; a hit across it only costs a search per field.
_JOIN = "\x00"
# Values that cannot hold a credential (a datetime is the log line's timestamp).
_PLAIN = (int, float, bool, type(None), datetime.date, datetime.time)


class SecretHolder(Protocol):
    """An object that loaded secrets and can say which."""

    def secret_values(self) -> frozenset[str]:
        """Every secret value it holds or held; the same object while nothing was added, so
        that a log line costs no comparison."""
        ...


@attrs.frozen
class _Secrets:
    """The values to hide, prepared for searching, and the sets they were made of."""

    sources: tuple[frozenset[str], ...]
    exact: frozenset[str] = attrs.field(repr=False)
    # The values long enough to be searched for inside a text, longest first, so a secret that
    # contains another one is hidden whole.
    contained: tuple[str, ...] = attrs.field(repr=False)
    pattern: re.Pattern[str] | None = attrs.field(repr=False)

    @classmethod
    def of(cls, sources: tuple[frozenset[str], ...]) -> _Secrets:
        exact = frozenset(value for values in sources for value in values if value)
        contained = tuple(
            sorted((v for v in exact if len(v) >= MIN_CONTAINED_LENGTH), key=len, reverse=True)
        )
        pattern = "|".join(re.escape(value) for value in contained)
        return cls(sources, exact, contained, re.compile(pattern) if pattern else None)

    def found_in(self, text: str) -> bool:
        """Whether ``text`` contains a secret at least MIN_CONTAINED_LENGTH long."""
        # A substring test per secret, not `pattern`, whose alternation is tried at every
        # position; a loop, not any(), which builds a generator per call.
        for secret in self.contained:  # noqa: SIM110
            if secret in text:
                return True
        return False

    def scrub(self, text: str) -> str:
        if text in self.exact:
            return MASK
        if self.pattern is not None and self.found_in(text):
            text = self.pattern.sub(MASK, text)
        return hide_userinfo_passwords(text)


_holders: tuple[SecretHolder, ...] = ()
_secrets = _Secrets.of(())


@contextmanager
def hiding_secrets_of(*holders: SecretHolder) -> Iterator[None]:
    """Hide every value ``holders`` hold from every line logged while the block runs, in any
    thread: logging is process-wide, so the holders are too. Each line asks them afresh."""
    global _holders
    _holders = (*_holders, *holders)
    try:
        yield
    finally:
        _holders = tuple(kept for kept in _holders if all(kept is not h for h in holders))


def _current() -> _Secrets:
    global _secrets
    secrets = _secrets
    sources = tuple([holder.secret_values() for holder in _holders])
    if sources != secrets.sources:
        secrets = _secrets = _Secrets.of(sources)
    return secrets


# Field names come from code, so a few dozen are ever seen; the bound is for names made of data.
_KNOWN_KEYS_MAX = 4096
_known_keys: dict[str, bool] = {}


def looks_like_credential(key: str) -> bool:
    """Whether a log field named ``key`` holds a credential (``db_password``, ``X-Api-Key``)."""
    known = _known_keys.get(key)
    if known is None:
        known = is_sensitive(key) and _CREDENTIAL_KEY.search(key) is not None
        if len(_known_keys) < _KNOWN_KEYS_MAX:
            _known_keys[key] = known
    return known


def redact_secrets(
    _logger: object, _method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Structlog processor: hide credential-keyed fields, held secret values and the
    passwords of logins.

    Put it after ``format_exc_info`` so that tracebacks are text it can search.
    """
    secrets = _current()
    exact = secrets.exact
    # Keys of the text fields long enough to hold a secret or a login, searched together below.
    searched: list[str] = []
    for key, value in event_dict.items():
        # The cache looked up here, not through a call: this runs for every field of every line.
        credential = _known_keys.get(key)
        if credential is None:
            credential = looks_like_credential(key)
        if credential:
            if value is not None:
                event_dict[key] = MASK
        elif type(value) is str:
            if value in exact:
                event_dict[key] = MASK
            elif len(value) >= _SHORTEST_LOGIN:
                searched.append(key)
        elif not isinstance(value, _PLAIN):
            event_dict[key] = _scrub(value, secrets)
    if searched:
        # A field that holds a secret or a login makes the joined text hold it, so one search
        # clears a line that holds none; a hit scrubs each field on its own.
        joined = _JOIN.join([event_dict[key] for key in searched])
        if "@" in joined or secrets.found_in(joined):
            for key in searched:
                event_dict[key] = secrets.scrub(event_dict[key])
    return event_dict


def redact_text(text: str) -> str:
    """``text`` with every held secret value and every login's password replaced by ``***``
    (a traceback, a message)."""
    return _current().scrub(text)


def _scrub(value: object, secrets: _Secrets) -> object:
    if isinstance(value, str):
        return secrets.scrub(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        return {
            key: MASK
            if isinstance(key, str) and looks_like_credential(key)
            else _scrub(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(item, secrets) for item in value]
    # The renderer would write repr(value); a repr may hold a password (a DSN object...).
    text = repr(value)
    scrubbed = secrets.scrub(text)
    return value if scrubbed is text else scrubbed

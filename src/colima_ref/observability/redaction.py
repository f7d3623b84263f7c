"""Keeps credentials out of log lines, whoever wrote the line and however carelessly.

Two rules, applied by the `redact_secrets` structlog processor to every field, nested ones too:

- a key that looks like a credential (``password``, ``api_key``, ``Authorization``...) has its
  value replaced by MASK. Masking's deny-by-default would hide every ordinary field (``path``,
  ``method``), so logs use a denylist of credential-looking names, among keys masking hides;
- a value equal to a secret now loaded in this process is replaced by MASK, and a value that
  contains one has that part replaced, wherever it sits (a DSN, a traceback, a stdlib message);
- the password of any ``user:password@`` login in a text is replaced by MASK, registered or not
  (a library's error quoting the URL it was given, a DSN logged by mistake).

Secrets are process-wide because logging is: the live CredentialSource registers what it loads
through `register_secret`. Values stay registered after a rotation; hiding an old password does
no harm.
"""

from __future__ import annotations

import datetime
import re
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from colima_ref.domain.masking import MASK, hide_userinfo_passwords, is_sensitive

# A shorter value ("1", "true") would be found inside ordinary text, so it is redacted only where
# a whole field equals it.
MIN_CONTAINED_LENGTH = 6
# The shortest text that can hold a login with a password: ``u:p@h``.
_SHORTEST_LOGIN = 5

_CREDENTIAL_KEY = re.compile(
    r"pass(?:word|wd|phrase)?|pwd|secret|token|api[-_]?key|access[-_]?key|private[-_]?key"
    r"|auth|credential|cookie|signature",
    re.IGNORECASE,
)
# Between the text fields searched at once; a hit across it only costs a search per field.
_JOIN = "\x00"
# Values that cannot hold a credential (a datetime is the log line's timestamp).
_PLAIN = (int, float, bool, type(None), datetime.date, datetime.time)


class SecretValues:
    """The secret values to hide from logs. Adding is thread-safe; reading takes no lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exact: frozenset[str] = frozenset()
        # The values long enough to be searched for inside a text, longest first.
        self.contained: tuple[str, ...] = ()
        self.pattern: re.Pattern[str] | None = None

    def add(self, values: Iterable[str]) -> None:
        """Hide each of ``values`` (empty strings are ignored)."""
        with self._lock:
            self._replace(self.exact | {value for value in values if value})

    def discard(self, values: Iterable[str]) -> None:
        """Stop hiding ``values`` (how a test removes the canary it planted)."""
        with self._lock:
            self._replace(self.exact - set(values))

    def found_in(self, text: str) -> bool:
        """Whether ``text`` contains a secret at least MIN_CONTAINED_LENGTH long."""
        # A substring test per secret: half the cost of searching with `pattern`, whose
        # alternation the regex engine tries at every position (measured with 5 to 40 secrets).
        # A loop, not any(): the generator costs as much as the regex for five secrets.
        for secret in self.contained:  # noqa: SIM110
            if secret in text:
                return True
        return False

    def _replace(self, exact: frozenset[str]) -> None:
        # Longest first, so a secret that contains another one is hidden whole.
        contained = tuple(
            sorted((v for v in exact if len(v) >= MIN_CONTAINED_LENGTH), key=len, reverse=True)
        )
        pattern = "|".join(re.escape(value) for value in contained)
        # Published before `exact`: a reader that sees the new `exact` also sees these.
        self.pattern = re.compile(pattern) if pattern else None
        self.contained = contained
        self.exact = exact


SECRETS = SecretValues()
"""The process-wide secrets the logging configuration's processor hides."""


def register_secret(*values: str) -> None:
    """Hide ``values`` from every log line this process writes from now on."""
    SECRETS.add(values)


# Field names come from code, so a few dozen are ever seen; the bound is for names made of data.
_KNOWN_KEYS_MAX = 4096
_known_keys: dict[str, bool] = {}


def looks_like_credential(key: str) -> bool:
    """Whether a log field named ``key`` holds a credential (``db_password``, ``X-Api-Key``)."""
    # A plain dict, not lru_cache: it is asked once per field of every line, and a dict lookup
    # costs a third of an lru_cache call.
    known = _known_keys.get(key)
    if known is None:
        known = is_sensitive(key) and _CREDENTIAL_KEY.search(key) is not None
        if len(_known_keys) < _KNOWN_KEYS_MAX:
            _known_keys[key] = known
    return known


def redact_secrets(
    _logger: object, _method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Structlog processor: hide credential-keyed fields and registered secret values.

    Put it after ``format_exc_info`` so that tracebacks are text it can search.
    """
    secrets = SECRETS
    exact = secrets.exact
    known_keys = _known_keys
    # Keys of the text fields long enough to hold a secret or a login, searched together below.
    searched: list[str] = []
    for key, value in event_dict.items():
        # The dict lookup inline: a call per field was most of this function's cost.
        credential = known_keys.get(key)
        if credential is None:
            credential = looks_like_credential(key)
        if credential:
            if value is not None:
                event_dict[key] = MASK
        elif type(value) is str:
            # Most fields are short strings and most processes hold few secrets: stay cheap.
            if exact and value in exact:
                event_dict[key] = MASK
            elif len(value) >= _SHORTEST_LOGIN:
                searched.append(key)
        elif not isinstance(value, _PLAIN):
            event_dict[key] = _scrub(value, secrets)
    if searched:
        # One search over the fields joined: a field that contains a secret makes the joined
        # text contain it, so a miss clears every field for a third of a search per field.
        # A hit (perhaps across a separator) scrubs each field on its own.
        joined = (
            event_dict[searched[0]]
            if len(searched) == 1
            else _JOIN.join([event_dict[key] for key in searched])
        )
        if "@" in joined or secrets.found_in(joined):
            for key in searched:
                event_dict[key] = _scrub_text(event_dict[key], secrets)
    return event_dict


def redact_text(text: str) -> str:
    """``text`` with every registered secret value and every login's password replaced by
    ``***`` (a traceback, a message)."""
    return _scrub_text(text, SECRETS)


def _scrub(value: object, secrets: SecretValues) -> object:
    if isinstance(value, str):
        return _scrub_text(value, secrets)
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
    scrubbed = _scrub_text(text, secrets)
    return value if scrubbed is text else scrubbed


def _scrub_text(text: str, secrets: SecretValues) -> str:
    if text in secrets.exact:
        return MASK
    # Read before `found_in`: None when no secret is long enough to be searched for.
    pattern = secrets.pattern
    if pattern is not None and secrets.found_in(text):
        text = pattern.sub(MASK, text)
    return hide_userinfo_passwords(text)

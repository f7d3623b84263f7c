"""The input rules of the HTTP contract, as validators that return the clean value.

Each raises ValidationError naming the field in ``details["field"]``. Messages state the rule,
never the rejected value: input can be huge, and a client may have pasted a secret by mistake.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import orjson

from colima_ref.domain.errors import ValidationError

MAX_SERVICE_NAME_LENGTH = 50
MAX_SECRET_KEY_LENGTH = 100
MAX_CACHE_KEY_LENGTH = 200
MAX_CACHE_VALUE_LENGTH = 10_000
MIN_TTL = 1
MAX_TTL = 86_400
MAX_QUEUE_NAME_LENGTH = 100
RESERVED_QUEUE_PREFIX = "amq."
MAX_NODE_NAME_LENGTH = 255
MAX_MESSAGE_BYTES = 1_048_576

# Explicit ASCII classes: \w would also accept letters and digits from any script.
_NAME = re.compile(r"[a-zA-Z0-9_-]+")
_CACHE_KEY = re.compile(r"[a-zA-Z0-9_:.-]+")
_QUEUE_NAME = re.compile(r"[a-zA-Z0-9_.-]+")
# A node's name (redis-1) or its host:port as the cluster reports it.
_NODE_NAME = re.compile(r"[a-zA-Z0-9_.:-]+")
# Leading zeros are split off so the length check below can bound the digits before int() sees
# them (Python refuses to convert more than 4300 digits).
_INTEGER = re.compile(r"([+-]?)0*([0-9]+)")
# orjson reads an integer past 64 bits as a float; a body with one is parsed again by json,
# which keeps it exact. Every integer orjson cannot hold exactly has at least 19 digits.
_LONG_DIGIT_RUN = re.compile(rb"[0-9]{19}")


def _name(field: str, value: str, pattern: re.Pattern[str], max_length: int, allowed: str) -> str:
    if not value:
        raise ValidationError.for_field(field, f"{field} must not be empty")
    if len(value) > max_length:
        raise ValidationError.for_field(
            field, f"{field} must be at most {max_length} characters, got {len(value)}"
        )
    if pattern.fullmatch(value) is None:
        raise ValidationError.for_field(field, f"{field} may contain only {allowed}")
    return value


def single(field: str, values: Sequence[str]) -> str | None:
    """The value of a parameter given at most once; None when it is absent.

    A parameter given twice is ambiguous, so neither value is picked. Raises ValidationError.
    """
    if len(values) > 1:
        raise ValidationError.for_field(field, f"{field} must be given at most once")
    return values[0] if values else None


def service_name(value: str) -> str:
    """A Vault service name: 1-50 of ``[a-zA-Z0-9_-]``. Raises ValidationError."""
    return _name(
        "service_name",
        value,
        _NAME,
        MAX_SERVICE_NAME_LENGTH,
        "letters, digits, '_' and '-'",
    )


def secret_key(value: str) -> str:
    """A key inside a secret: 1-100 of ``[a-zA-Z0-9_-]``. Raises ValidationError."""
    return _name("key", value, _NAME, MAX_SECRET_KEY_LENGTH, "letters, digits, '_' and '-'")


def cache_key(value: str) -> str:
    """A cache key: 1-200 of ``[a-zA-Z0-9_:.-]``, used as given. Raises ValidationError."""
    return _name(
        "key",
        value,
        _CACHE_KEY,
        MAX_CACHE_KEY_LENGTH,
        "letters, digits, '_', ':', '.' and '-'",
    )


def cache_value(value: str | None) -> str:
    """A value to cache: required (the empty string is a value), at most 10,000 characters.

    Raises ValidationError.
    """
    if value is None:
        raise ValidationError.for_field("value", "value is required")
    if len(value) > MAX_CACHE_VALUE_LENGTH:
        raise ValidationError.for_field(
            "value",
            f"value must be at most {MAX_CACHE_VALUE_LENGTH} characters, got {len(value)}",
        )
    return value


def ttl(value: str | None) -> int | None:
    """A time to live in whole seconds, 1-86400; None when absent (no expiry).

    Raises ValidationError for anything else, including an empty string or a fraction.
    """
    if value is None:
        return None
    match = _INTEGER.fullmatch(value)
    if match is None:
        raise ValidationError.for_field("ttl", "ttl must be a whole number of seconds")
    sign, digits = match.groups()
    if sign == "-" or len(digits) > len(str(MAX_TTL)) or not MIN_TTL <= int(digits) <= MAX_TTL:
        raise ValidationError.for_field(
            "ttl", f"ttl must be between {MIN_TTL} and {MAX_TTL} seconds"
        )
    return int(digits)


def queue_name(value: str | None) -> str:
    """A queue name: required, 1-100 of ``[a-zA-Z0-9_.-]``, not starting with ``amq.``.

    RabbitMQ reserves the ``amq.`` prefix (case-sensitive) for its own queues and refuses to
    declare one, so such a name is refused here rather than by the broker. Raises
    ValidationError.
    """
    if value is None:
        raise ValidationError.for_field("queue_name", "queue_name is required")
    name = _name(
        "queue_name",
        value,
        _QUEUE_NAME,
        MAX_QUEUE_NAME_LENGTH,
        "letters, digits, '_', '.' and '-'",
    )
    if name.startswith(RESERVED_QUEUE_PREFIX):
        raise ValidationError.for_field(
            "queue_name",
            f"queue_name must not start with {RESERVED_QUEUE_PREFIX!r}: RabbitMQ reserves it",
        )
    return name


def node_name(value: str) -> str:
    """A Redis node: ``redis-N`` or ``host:port``, 1-255 of ``[a-zA-Z0-9_.:-]``, a port
    without a leading zero (``:07001`` would name port 7001). Raises ValidationError.
    """
    name = _name(
        "node_name",
        value,
        _NODE_NAME,
        MAX_NODE_NAME_LENGTH,
        "letters, digits, '_', '.', ':' and '-'",
    )
    _, colon, port = name.rpartition(":")
    if colon and port.startswith("0"):
        raise ValidationError.for_field(
            "node_name", "node_name must write its port without a leading zero"
        )
    return name


def message(body: bytes) -> dict[str, object]:
    """A message to publish: a non-empty JSON object in at most 1 MiB of UTF-8.

    Strict JSON: no NaN or Infinity, no number past a double's range (``1e400``), no string
    with an unpaired surrogate escape (``"\\ud800"``). Integers keep every digit.
    The size is checked before parsing, so an oversized body costs nothing to refuse.
    Raises ValidationError.
    """
    if len(body) > MAX_MESSAGE_BYTES:
        raise ValidationError.for_field(
            "message", f"message must be at most {MAX_MESSAGE_BYTES} bytes, got {len(body)}"
        )
    if not body.strip():
        raise ValidationError.for_field("message", "message is required")
    try:
        # orjson is strict JSON: it refuses NaN and Infinity, numbers past a double and unpaired
        # surrogate escapes, none of which another consumer could read back or we could echo.
        parsed: Any = orjson.loads(body)
        if _LONG_DIGIT_RUN.search(body) is not None:
            parsed = json.loads(body)
    # ValueError covers bad UTF-8 and bad JSON (orjson's JSONDecodeError is one), and json's
    # refusal of an integer of over 4300 digits; RecursionError a body nested too deeply.
    except (ValueError, RecursionError):
        raise ValidationError.for_field("message", "message must be valid UTF-8 JSON") from None
    if not isinstance(parsed, dict):
        raise ValidationError.for_field("message", "message must be a JSON object")
    if not parsed:
        raise ValidationError.for_field("message", "message must not be empty")
    return parsed

"""The contract's input rules: boundaries, the failing field, and no reflection of the input."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from colima_ref.domain import validation
from colima_ref.domain.errors import ValidationError

T = TypeVar("T")


def rejected(validator: Callable[[T], object], value: T) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        validator(value)
    return caught.value


NAME_RULES = [
    pytest.param(validation.service_name, "service_name", 50, "-_", id="service_name"),
    pytest.param(validation.secret_key, "key", 100, "-_", id="secret_key"),
    pytest.param(validation.cache_key, "key", 200, "-_:.", id="cache_key"),
    pytest.param(validation.queue_name, "queue_name", 100, "-_.", id="queue_name"),
    pytest.param(validation.node_name, "node_name", 255, "-_.:", id="node_name"),
]
NameValidator = Callable[[str], str]


@pytest.mark.parametrize(("validator", "field", "max_length", "punctuation"), NAME_RULES)
def test_a_name_of_exactly_the_maximum_length_is_accepted(
    validator: NameValidator, field: str, max_length: int, punctuation: str
) -> None:
    value = ("Az09" + punctuation) * max_length

    assert validator(value[:max_length]) == value[:max_length]


@pytest.mark.parametrize(("validator", "field", "max_length", "punctuation"), NAME_RULES)
def test_a_name_one_character_too_long_is_rejected_for_its_field(
    validator: NameValidator, field: str, max_length: int, punctuation: str
) -> None:
    error = rejected(validator, "a" * (max_length + 1))

    assert error.details == {"field": field}
    assert str(max_length) in error.message


@pytest.mark.parametrize(("validator", "field", "max_length", "punctuation"), NAME_RULES)
def test_an_empty_name_is_rejected_for_its_field(
    validator: NameValidator, field: str, max_length: int, punctuation: str
) -> None:
    assert rejected(validator, "").details == {"field": field}


@pytest.mark.parametrize(("validator", "field", "max_length", "punctuation"), NAME_RULES)
@pytest.mark.parametrize(
    "bad", ["a b", "a/b", "a\nb", "a\x00b", "caf\u00e9", "\u0661\u0662", "a*", "a%2F", "{x}"]
)
def test_a_name_with_a_character_outside_its_pattern_is_rejected(
    validator: NameValidator, field: str, max_length: int, punctuation: str, bad: str
) -> None:
    assert rejected(validator, bad).details == {"field": field}


@pytest.mark.parametrize(
    "validator",
    [
        validation.service_name,
        validation.secret_key,
        validation.cache_key,
        validation.queue_name,
        validation.node_name,
    ],
)
@pytest.mark.parametrize("bad", ["abc\n", "\nabc", " abc", "abc ", "abc\x0c", "\tabc"])
def test_surrounding_whitespace_is_part_of_a_name_that_is_not_stripped(
    validator: NameValidator, bad: str
) -> None:
    """A pattern ending in ``$`` would let "abc\\n" through; the whole value must match."""
    rejected(validator, bad)


@pytest.mark.parametrize(
    ("validator", "char"),
    [
        (validation.service_name, "."),
        (validation.service_name, ":"),
        (validation.secret_key, "."),
        (validation.queue_name, ":"),
    ],
)
def test_punctuation_allowed_elsewhere_is_refused_where_the_pattern_omits_it(
    validator: NameValidator, char: str
) -> None:
    rejected(validator, f"a{char}b")


@pytest.mark.parametrize("blank", ["   ", "\t\n"])
def test_a_cache_key_of_only_whitespace_is_refused_not_emptied(blank: str) -> None:
    assert "may contain only" in rejected(validation.cache_key, blank).message


def test_a_cache_key_with_inner_whitespace_is_rejected() -> None:
    rejected(validation.cache_key, " user 123 ")


@pytest.mark.parametrize("name", ["redis-1", "127.0.0.1:7001", "::1:7001", "cache.internal:6379"])
def test_a_node_name_or_address_is_used_as_given(name: str) -> None:
    assert validation.node_name(name) == name


@pytest.mark.parametrize("name", ["127.0.0.1:07001", "redis-1:0", "::1:0007001"])
def test_a_node_port_with_a_leading_zero_is_refused_not_read_as_another_port(name: str) -> None:
    assert rejected(validation.node_name, name).details == {"field": "node_name"}


def test_a_parameter_given_once_or_not_at_all_is_its_value_or_none() -> None:
    assert validation.single("value", ["x "]) == "x "
    assert validation.single("value", []) is None


def test_a_parameter_given_twice_is_refused_rather_than_one_value_picked() -> None:
    error = rejected(lambda values: validation.single("value", values), ["a", "b"])

    assert error.details == {"field": "value"}


def test_a_cache_value_is_required_but_may_be_empty() -> None:
    error = rejected(validation.cache_value, None)

    assert error.details == {"field": "value"}
    assert validation.cache_value("") == ""


def test_a_cache_value_of_exactly_10000_characters_is_accepted() -> None:
    value = "\u00e9" * 10_000

    assert validation.cache_value(value) == value


def test_a_cache_value_of_10001_characters_is_rejected() -> None:
    error = rejected(validation.cache_value, "x" * 10_001)

    assert error.details == {"field": "value"}
    assert "10000" in error.message


def test_an_absent_ttl_means_no_expiry() -> None:
    assert validation.ttl(None) is None


@pytest.mark.parametrize(
    ("raw", "seconds"), [("1", 1), ("60", 60), ("86400", 86400), ("0060", 60), ("+5", 5)]
)
def test_a_ttl_in_range_is_returned_as_seconds(raw: str, seconds: int) -> None:
    assert validation.ttl(raw) == seconds


@pytest.mark.parametrize(
    "raw",
    ["0", "86401", "-1", "-0", "100000", "9" * 5000, "0" * 5000, "0" * 100 + "86401"],
)
def test_a_ttl_out_of_range_is_rejected(raw: str) -> None:
    error = rejected(validation.ttl, raw)

    assert error.details == {"field": "ttl"}
    assert "between 1 and 86400" in error.message


@pytest.mark.parametrize(
    "raw", ["abc", "1.5", "", " ", " 60", "60 ", "1e3", "1_000", "0x10", "\u0663", "60\n"]
)
def test_a_ttl_that_is_not_a_whole_number_is_rejected(raw: str) -> None:
    error = rejected(validation.ttl, raw)

    assert error.details == {"field": "ttl"}
    assert "whole number" in error.message


@given(seconds=st.integers(1, 86_400))
def test_every_ttl_in_range_round_trips(seconds: int) -> None:
    assert validation.ttl(str(seconds)) == seconds


def test_a_queue_name_is_required() -> None:
    error = rejected(validation.queue_name, None)

    assert error.details == {"field": "queue_name"}


def rejected_message(body: bytes) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        validation.message(body)
    assert caught.value.details == {"field": "message"}
    return caught.value


def test_a_json_object_is_accepted_as_a_message() -> None:
    body = json.dumps({"type": "email", "to": "user@example.com", "n": [1, 2.5, None]})

    assert validation.message(body.encode()) == json.loads(body)


def padded_object(size: int) -> bytes:
    """A JSON object whose UTF-8 encoding is exactly ``size`` bytes."""
    skeleton = b'{"pad": ""}'
    return b'{"pad": "' + b"x" * (size - len(skeleton)) + b'"}'


def test_a_message_of_exactly_one_mebibyte_is_accepted() -> None:
    body = padded_object(1_048_576)

    assert len(body) == 1_048_576
    assert validation.message(body) == {"pad": "x" * (1_048_576 - 11)}


def test_a_message_one_byte_over_a_mebibyte_is_rejected() -> None:
    assert "1048576" in rejected_message(padded_object(1_048_577)).message


def test_an_oversized_message_is_rejected_for_its_size_before_it_is_parsed() -> None:
    assert "at most" in rejected_message(b"[" * 1_048_577).message


_json_values = st.recursive(
    st.none()
    | st.booleans()
    # Integers of any size: past 64 bits they take the exact second parse.
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=8), _json_values, min_size=1, max_size=4))
def test_a_json_object_is_read_back_exactly_as_json_reads_it(value: dict[str, object]) -> None:
    # st.text() never yields a surrogate, so every value here is valid strict JSON.
    for body in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        assert validation.message(body.encode()) == value


@pytest.mark.parametrize("body", [b"{}", b" { } "])
def test_an_empty_json_object_is_rejected(body: bytes) -> None:
    assert "empty" in rejected_message(body).message


@pytest.mark.parametrize("body", [b"", b"  \n"])
def test_a_missing_message_body_is_required(body: bytes) -> None:
    assert "required" in rejected_message(body).message


@pytest.mark.parametrize("body", [b"[]", b'[{"a": 1}]', b'"text"', b"42", b"null", b"true"])
def test_a_json_value_that_is_not_an_object_is_rejected(body: bytes) -> None:
    assert "JSON object" in rejected_message(body).message


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"{'a': 1}",
        b'{"a": 1} trailing',
        b'{"a": NaN}',
        b'{"a": -Infinity}',
        b'{"a": 1e400}',
        b'{"a": "\\ud800"}',
        b'{"a": "x\\udc00y"}',
        b'{"a": "\xff"}',
        '{"a": 1}'.encode("utf-16"),
        b'{"a": ' + b"1" * 5000 + b"}",
        b"[" * 500_000 + b"]" * 500_000,
    ],
    ids=[
        "truncated",
        "single-quotes",
        "trailing",
        "nan",
        "infinity",
        "past-a-double",
        "unpaired-high-surrogate",
        "unpaired-low-surrogate",
        "bad-utf8",
        "utf16",
        "huge-int",
        "deep-nesting",
    ],
)
def test_a_body_that_is_not_valid_utf8_json_is_rejected(body: bytes) -> None:
    assert "valid UTF-8 JSON" in rejected_message(body).message


# "\u00a7" is outside every pattern, so these values are always refused; it never occurs in a
# rule's wording and survives repr(), so finding it in an error means the input was echoed.
_MARK = "\u00a7"
_echo_probe = st.text(min_size=50).map(lambda text: text + _MARK)


def assert_not_echoed(error: ValidationError, mark: str = _MARK) -> None:
    assert mark not in error.message
    assert mark not in repr(error.details)
    assert len(error.message) <= 100


@pytest.mark.parametrize(("validator", "field", "max_length", "punctuation"), NAME_RULES)
@given(value=_echo_probe)
def test_a_rejected_name_is_never_echoed_in_the_error(
    validator: NameValidator, field: str, max_length: int, punctuation: str, value: str
) -> None:
    assert_not_echoed(rejected(validator, value))


@given(value=_echo_probe)
def test_a_rejected_ttl_is_never_echoed_in_the_error(value: str) -> None:
    assert_not_echoed(rejected(validation.ttl, value))


@given(padding=_echo_probe)
def test_a_rejected_cache_value_is_never_echoed_in_the_error(padding: str) -> None:
    assert_not_echoed(rejected(validation.cache_value, _MARK * 10_001 + padding))


@pytest.mark.parametrize(
    "body",
    [b'{"a": "ECHO', b'["ECHO"]', b"ECHO" * 300_000],
    ids=["bad-json", "array", "oversized"],
)
def test_a_rejected_message_is_never_echoed_in_the_error(body: bytes) -> None:
    assert_not_echoed(rejected_message(body), mark="ECHO")

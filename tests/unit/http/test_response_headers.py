"""Headers added by inner layers reach the response, collected by an outer layer or not."""

from __future__ import annotations

from starlette.types import Message

from colima_ref.http.response_headers import add_response_headers, collect_response_headers

START: Message = {"type": "http.response.start", "status": 200, "headers": [(b"a", b"1")]}


async def test_without_a_collector_the_returned_send_appends_the_headers() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    wrapped = add_response_headers({}, send, [(b"x-one", b"1")])
    await wrapped(dict(START))
    await wrapped({"type": "http.response.body", "body": b"ok"})

    assert sent[0]["headers"] == [(b"a", b"1"), (b"x-one", b"1")]
    assert sent[1] == {"type": "http.response.body", "body": b"ok"}


async def test_with_a_collector_the_headers_join_it_and_send_is_left_alone() -> None:
    async def send(message: Message) -> None:
        raise AssertionError("not called here")

    scope: dict[str, object] = {}
    collected = collect_response_headers(scope)

    returned = add_response_headers(scope, send, [(b"x-one", b"1")])
    add_response_headers(scope, send, [(b"x-two", b"2")])

    assert returned is send
    assert collected == [(b"x-one", b"1"), (b"x-two", b"2")]

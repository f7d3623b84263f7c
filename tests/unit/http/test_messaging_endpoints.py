from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from colima_ref.domain.validation import MAX_MESSAGE_BYTES
from colima_ref.ports.services import Services

ErrorBody = Callable[[httpx2.Response, int, str], dict[str, Any]]

MESSAGE = {"type": "email", "to": "user@example.com"}


def test_publishing_queues_the_json_object_and_echoes_it(
    client: TestClient, services: Services
) -> None:
    response = client.post(
        "/examples/messaging/publish", params={"queue_name": "notifications"}, json=MESSAGE
    )

    assert response.status_code == 200
    assert response.json() == {"queue": "notifications", "message": MESSAGE, "action": "published"}
    queued = services.broker.messages("notifications")  # type: ignore[attr-defined]
    assert [json.loads(body) for body in queued] == [MESSAGE]


def test_queue_info_counts_the_published_messages(client: TestClient) -> None:
    for _ in range(2):
        client.post("/examples/messaging/publish", params={"queue_name": "jobs"}, json=MESSAGE)

    response = client.get("/examples/messaging/queue/jobs/info")

    assert response.status_code == 200
    assert response.json() == {
        "queue": "jobs",
        "exists": True,
        "message_count": 2,
        "consumer_count": 0,
    }


def test_info_of_an_unknown_queue_says_it_does_not_exist_and_does_not_create_it(
    client: TestClient,
) -> None:
    first = client.get("/examples/messaging/queue/ghost/info")
    second = client.get("/examples/messaging/queue/ghost/info")

    unknown = {"queue": "ghost", "exists": False, "message_count": 0, "consumer_count": 0}
    assert first.status_code == 200
    assert first.json() == unknown
    assert second.json() == unknown


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{}",
        b"[1, 2]",
        b'"text"',
        b"{not json",
        b"\xff\xfe",
        b'{"n": NaN}',
        # Parsed by json, it was queued and then failed to render: a 500 for a queued message.
        b'{"n": "\\ud800"}',
    ],
    ids=[
        "empty",
        "empty-object",
        "array",
        "string",
        "malformed",
        "not-utf8",
        "nan",
        "unpaired-surrogate",
    ],
)
def test_a_message_that_is_not_a_non_empty_json_object_is_422_and_nothing_is_queued(
    client: TestClient, services: Services, error_body: ErrorBody, body: bytes
) -> None:
    response = client.post(
        "/examples/messaging/publish",
        params={"queue_name": "q1"},
        content=body,
        headers={"Content-Type": "application/json"},
    )

    assert error_body(response, 422, "ValidationError")["details"]["field"] == "message"
    assert services.broker.messages("q1") == []  # type: ignore[attr-defined]


def test_a_message_over_1_mib_is_422_and_nothing_is_queued(
    client: TestClient, services: Services, error_body: ErrorBody
) -> None:
    padding = "x" * MAX_MESSAGE_BYTES
    response = client.post(
        "/examples/messaging/publish", params={"queue_name": "q1"}, json={"data": padding}
    )

    assert error_body(response, 422, "ValidationError")["details"]["field"] == "message"
    assert services.broker.messages("q1") == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "params",
    [{}, {"queue_name": ""}, {"queue_name": "bad/name"}, {"queue_name": "q" * 101}],
    ids=["missing", "empty", "slash", "101-chars"],
)
def test_a_queue_name_breaking_the_rule_is_422_on_publish(
    client: TestClient, services: Services, error_body: ErrorBody, params: dict[str, str]
) -> None:
    response = client.post("/examples/messaging/publish", params=params, json=MESSAGE)

    assert error_body(response, 422, "ValidationError")["details"]["field"] == "queue_name"


@pytest.mark.parametrize("queue", ["bad:name", "q" * 101], ids=["colon", "101-chars"])
def test_a_queue_name_breaking_the_rule_is_422_on_queue_info(
    client: TestClient, error_body: ErrorBody, queue: str
) -> None:
    response = client.get(f"/examples/messaging/queue/{queue}/info")

    assert error_body(response, 422, "ValidationError")["details"]["field"] == "queue_name"


def test_a_queue_name_of_100_chars_is_valid(client: TestClient) -> None:
    assert client.get(f"/examples/messaging/queue/{'q' * 100}/info").status_code == 200


def test_the_broker_down_is_503_on_publish_and_info(
    client: TestClient, services: Services, error_body: ErrorBody
) -> None:
    services.broker.failing = True  # type: ignore[attr-defined]

    publish = client.post("/examples/messaging/publish", params={"queue_name": "q1"}, json=MESSAGE)
    info = client.get("/examples/messaging/queue/q1/info")

    error_body(publish, 503, "MessageQueueError")
    error_body(info, 503, "MessageQueueError")

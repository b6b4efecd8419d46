"""The events dead-letter queue (data access: SQS): its depth, and reading and deleting its messages.

In AWS the queue is the template's ``EventsDeadLetterQueue`` (``EVENTS_DLQ_URL``); under ``make dev`` the
local event bus answers the same call for its own dead letters (``SQS_ENDPOINT_URL``); in tests, moto.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from such_market.config import SettingsPart, setting
from such_market.container import per_container

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

CONNECT_TIMEOUT_SECONDS: Final = 1.0
READ_TIMEOUT_SECONDS: Final = 2.0


class DeadLetterSettings(SettingsPart):
    """Where the events dead-letter queue is (unset: its depth is reported as unknown)."""

    events_dlq_url: str | None = setting(None, pattern=r"^https?://\S+$")
    sqs_endpoint_url: str | None = setting(None, pattern=r"^https?://\S+$")


@per_container(close=lambda client: client.close())
def _sqs(endpoint: str | None) -> SQSClient:
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS, retries={"max_attempts": 2}
    )
    return boto3.client("sqs", endpoint_url=endpoint, config=config)


def dead_letter_depth(settings: DeadLetterSettings) -> int | None:
    """Messages waiting in the dead-letter queue (visible and in flight), or ``None`` when not configured."""
    if settings.events_dlq_url is None:
        return None
    attributes = (
        _sqs(settings.sqs_endpoint_url)
        .get_queue_attributes(
            QueueUrl=settings.events_dlq_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        .get("Attributes", {})
    )
    return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
        attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
    )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message of the dead-letter queue: its receipt (to delete it) and its body."""

    receipt_handle: str
    body: str


def receive(settings: DeadLetterSettings, *, max_messages: int, visibility_timeout_seconds: int) -> list[DeadLetter]:
    """Up to ``max_messages`` (≤ 10) messages, hidden from other readers for ``visibility_timeout_seconds``."""
    if settings.events_dlq_url is None:
        return []
    answer = _sqs(settings.sqs_endpoint_url).receive_message(
        QueueUrl=settings.events_dlq_url,
        MaxNumberOfMessages=max(1, min(10, max_messages)),
        VisibilityTimeout=visibility_timeout_seconds,
        WaitTimeSeconds=0,
    )
    return [
        DeadLetter(message["ReceiptHandle"], message.get("Body", ""))
        for message in answer.get("Messages", [])
        if "ReceiptHandle" in message
    ]


def delete(settings: DeadLetterSettings, receipt_handle: str) -> None:
    """Delete one message (after it was redriven)."""
    if settings.events_dlq_url is not None:
        _sqs(settings.sqs_endpoint_url).delete_message(QueueUrl=settings.events_dlq_url, ReceiptHandle=receipt_handle)

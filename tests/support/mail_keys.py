"""What the tests of mail text keys share (copies count once, quoted replies pair): the pair
they store mail for, the texts they send, and the stored messages and latency records they
read back through the service (``import_mail``, ``latency_of_pair``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from assistant.bootstrap import Service
from assistant.domain.model import MessageData
from assistant.services.mail import latency_of_pair, to_message
from assistant.services.pairs import add_pair
from assistant.store.db import UnitOfWork
from assistant.store.tables import Message
from config.settings import Settings

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TUESDAY = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # 10:00 in Berlin: working hours
MANAGER, ASSISTANT = "alex@example.com", "sam@example.com"

CONTRACT = (
    "Please sign the contract for the new office lease before noon today so that legal "
    "can file it with the landlord."
)
CAR = "The car to the airport picks you up at five from the front entrance of the hotel."
# CONTRACT as a reply quotes it: rewrapped, each line led by "> ".
QUOTED_CONTRACT = "\n".join("> " + line for line in (
    "Please sign the contract for the new office",
    "lease before noon today so that legal can file it with the", "landlord.",
))  # fmt: skip


def pair_service(uow: UnitOfWork, data_dir: Path) -> Service:
    """A service on ``uow`` at ``NOW`` with the pair "alex" (MANAGER and ASSISTANT, Berlin)."""
    service = Service(settings=Settings(data_dir=data_dir), engine=uow.engine, uow=uow,
                      clock=lambda: NOW)  # fmt: skip
    add_pair(service, name="alex", manager_email=MANAGER, assistant_email=ASSISTANT,
             timezone="Europe/Berlin")  # fmt: skip
    return service


def stored_messages(svc: Service) -> dict[str, MessageData]:
    """Every stored message, as the latency code reads it, by Message-ID."""
    with svc.uow.read() as s:
        return {m.message_id: to_message(m) for m in s.scalars(select(Message))}


def latency_records(svc: Service) -> dict[str, dict[str, Any]]:
    """The pair's latency records (``latency_of_pair``) by Message-ID."""
    result = latency_of_pair(svc, "alex", None).to_dict()
    return {m["id"].strip("<>"): m for m in result["messages"]}

"""A private event's title, place and attendees stay out of each output, one test per output.

``test_privacy.py`` runs every output end to end once; here each output is produced on its
own from the same private event (the change mail, the digest with its JSON payload, the
web's JSON API), and the same output for someone who may see private details shows the
markers, so the search for them cannot pass on an output that renders nothing.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import select

from assistant.domain.changes import Change, ChangeKind
from assistant.domain.digest import DigestChange, DigestContent, render_digest, structured
from assistant.domain.model import Attendee, EventData
from assistant.domain.notify import Audience, Note, render_changes
from assistant.store.snapshots import to_json, to_row
from assistant.store.tables import Account, ChangeBatch, ScheduleChange
from tests.support.web import NOW, World, login, world_fixture  # noqa: F401

MARKERS = {
    "title": "Prvt-title-k3",
    "place": "Prvt-place-k3 Clinic",
    "attendee name": "Prvt-attendee-name-k3",
    "attendee": "prvt-attendee-k3@clinic.example",
}
START = NOW + timedelta(hours=5)  # today, 15:00 in Berlin
PRIVATE = EventData(
    uid="private-k3",
    start=START,
    end=START + timedelta(hours=1),
    summary=MARKERS["title"],
    location=MARKERS["place"],
    timezone="Europe/Berlin",
    attendees=(Attendee(MARKERS["attendee"], MARKERS["attendee name"]),),
    private=True,
)
MOVED = Change(
    kinds=frozenset({ChangeKind.MOVED}),
    before=PRIVATE,
    after=replace(PRIVATE, start=START + timedelta(hours=1), end=START + timedelta(hours=2)),
)
ZONE = "Europe/Berlin"


def leaks(*outputs: str) -> list[str]:
    low = "\n".join(outputs).lower()
    return [name for name, marker in MARKERS.items() if marker.lower() in low]


def audience(sees_private: bool) -> Audience:
    return Audience(
        manager_zone=ZONE,
        manager_name="Alex",
        manager_emails=frozenset({"alex@example.com"}),
        share_private_details=sees_private,
    )


def test_the_change_mail_shows_a_private_event_as_busy_time() -> None:
    # moved, to the marked place, and the marked attendee joins: each has its mail row
    kim = Attendee("kim@example.com")
    change = Change(
        kinds=frozenset({ChangeKind.MOVED, ChangeKind.RELOCATED, ChangeKind.ATTENDEES_CHANGED}),
        before=replace(PRIVATE, location="", attendees=(kim,)),
        after=replace(MOVED.event, attendees=(kim, *PRIVATE.attendees)),
    )
    mail = render_changes([change], audience(False), {PRIVATE.key: Note()})
    assert leaks(mail.subject, mail.text, mail.html) == []
    assert "Busy (private)" in mail.text and "Busy (private)" in mail.html
    shared = render_changes([change], audience(True), {PRIVATE.key: Note()})
    assert set(leaks(shared.subject, shared.text, shared.html)) >= {"title", "place", "attendee"}


def test_the_digest_and_its_payload_show_a_private_event_as_busy_time() -> None:
    content = DigestContent(
        today=NOW.date(),
        events=[MOVED.event],
        changes=[DigestChange(MOVED, Note(), held=True)],
        since=NOW - timedelta(days=1),
    )
    hidden = render_digest(content, audience(False))
    payload = json.dumps(structured(content, audience(False)), default=str)
    assert leaks(hidden.subject, hidden.text, hidden.html, payload) == []
    assert "Busy (private)" in hidden.text and "Busy (private)" in hidden.html
    assert PRIVATE.uid in payload, "the private event is in the payload"
    shared = render_digest(content, audience(True))
    for output in (shared.text, shared.html, json.dumps(structured(content, audience(True)))):
        assert "title" in leaks(output)


def test_the_web_json_shows_a_private_event_as_busy_time(world: World) -> None:
    pair = world.alpha
    with world.svc.uow.begin() as s:
        account_id = s.scalars(select(Account.id).where(Account.pair_id == pair.id)).one()
        s.add(to_row(account_id, MOVED.event, NOW))
        batch = ChangeBatch(pair_id=pair.id, account_id=account_id, detected_at=NOW)
        s.add(batch)
        s.flush()
        s.add(
            ScheduleChange(
                batch_id=batch.id, pair_id=pair.id, kind="moved", uid=PRIVATE.uid,
                summary=PRIVATE.summary,
                starts_at=MOVED.event.start, detected_at=NOW - timedelta(minutes=5),
                before=to_json(PRIVATE) | {"kinds": ["moved"]},
                after=to_json(MOVED.event) | {"kinds": ["moved"]}, state="sent",
            )
        )  # fmt: skip
    paths = [f"/api/pairs/{pair.id}/agenda?days=7", f"/api/pairs/{pair.id}/changes"]
    seen: dict[str, list[str]] = {}
    for who in ("sam@alpha.example", "alex@alpha.example"):  # the assistant, the manager
        client = world.client()
        login(client, who)
        for path in paths:
            r = client.get(path)
            assert r.status_code == 200, r.text
            seen[f"{who} {path}"] = leaks(r.text)
            if who.startswith("sam"):
                shown = [i for d in r.json().get("days", []) for i in d["events"]]
                shown += r.json().get("changes", [])
                busy = [i for i in shown if i["summary"] == "Busy (private)"]
                assert busy, "the private event is in the output, as busy time"
    assert seen[f"sam@alpha.example {paths[0]}"] == []
    assert seen[f"sam@alpha.example {paths[1]}"] == []
    # the manager sees their own private events in full
    assert set(seen[f"alex@alpha.example {paths[0]}"]) == {"title", "place", "attendee"}
    assert "title" in seen[f"alex@alpha.example {paths[1]}"]

"""The week calendar pages over the app: access, privacy, dates, several managers."""

from __future__ import annotations

import re

from assistant.services.users import add_membership, add_user
from tests.support.web import NOW, PASSWORD_HASH, World, login, world_fixture  # noqa: F401


def uids(html: str) -> list[str]:
    return re.findall(r'data-uid="([^"]+)"', html)


def test_the_week_of_a_pair_places_its_events_and_masks_private_ones(world: World) -> None:
    a = world.alpha
    client = world.client()
    login(client, "sam@alpha.example")
    page = client.get(f"/pairs/{a.id}/week?date=2026-11-26")  # a Thursday: its week
    assert page.status_code == 200
    assert 'data-date="2026-11-23"' in page.text and 'data-date="2026-11-29"' in page.text
    assert {"alpha-board", "alpha-clash", "alpha-doctor", "alpha-rl", "alpha-merger",
            "alpha-merger~was"} <= set(uids(page.text))  # fmt: skip
    assert a.secrets[1] not in page.text and a.secrets[2] not in page.text
    assert "Busy (private)" in page.text
    assert not any(s in page.text for s in world.bravo.secrets)
    board = re.search(
        r'<article class="([^"]+)" data-uid="alpha-board"[^>]*style="([^"]+)"', page.text
    )
    assert board, page.text
    assert "conflict" in board.group(1)
    assert "grid-row: 25 / span 12" in board.group(2)  # 10:00 from 08:00: row 25, an hour


def test_the_manager_sees_the_details_of_their_private_events(world: World) -> None:
    a = world.alpha
    client = world.client()
    login(client, "alex@alpha.example")
    page = client.get(f"/pairs/{a.id}/week?view=day&date=2026-11-24")
    assert page.status_code == 200
    assert a.secrets[1] in page.text and a.secrets[2] in page.text
    assert page.text.count('<section class="col') == 1


def test_bad_dates_and_other_pairs_are_refused(world: World) -> None:
    a, b = world.alpha, world.bravo
    client = world.client()
    login(client, "bob@bravo.example")
    assert client.get(f"/pairs/{a.id}/week").status_code == 404
    for bad in ("tomorrow", "0001-01-01", "9999-12-31", "2026-13-01"):
        r = client.get(f"/pairs/{b.id}/week?date={bad}")
        assert r.status_code == 400, bad
        assert bad not in r.text
    everything = client.get("/week?view=day&date=2026-11-24")
    assert everything.status_code == 200
    assert "bravo-board" in uids(everything.text)
    assert not any(s in everything.text for s in a.secrets)


def test_an_assistant_of_two_pairs_sees_both_and_a_newcomer_sees_none(world: World) -> None:
    a, b = world.alpha, world.bravo
    add_membership(world.svc, user="sam@alpha.example", pair=b.id, role="assistant")
    client = world.client()
    login(client, "sam@alpha.example")
    day = client.get("/week?view=day&date=2026-11-24").text
    assert day.count('class="col today o') == 2  # a column per manager
    assert "Alpha Manager" in day and "Bravo Manager" in day
    assert {"alpha-board", "bravo-board"} <= set(uids(day))
    assert a.secrets[1] not in day and b.secrets[1] not in day
    week = client.get("/week?date=2026-11-24").text
    assert week.count('<section class="col') == 7  # the week: managers share a day, by colour
    assert re.search(r'class="ev event o1[^"]*" data-uid="bravo-board"', week)
    assert re.search(r'class="ev event o0[^"]*" data-uid="alpha-board"', week)

    add_user(world.svc, email="new@x.example", role="assistant", password_hash=PASSWORD_HASH)  # fmt: skip
    other = world.client()
    login(other, "new@x.example")
    empty = other.get("/week")
    assert empty.status_code == 200 and uids(empty.text) == []
    assert 'id="no-pairs"' in empty.text


def test_agenda_days_are_headed_with_their_weekday_in_the_readers_language(
    world: World,
) -> None:
    a = world.alpha
    client = world.client()
    token = login(client, "sam@alpha.example")
    page = client.get(f"/pairs/{a.id}/agenda?view=week&date=2026-11-24").text
    assert '<h2 data-date="2026-11-23">Mon 23 Nov</h2>' in page
    assert '<h2 data-date="2026-11-29">Sun 29 Nov</h2>' in page
    r = client.post("/me/locale", data={"csrf_token": token, "locale": "ru", "next": "/"})
    assert r.status_code == 303
    page = client.get(f"/pairs/{a.id}/agenda?date=2026-11-24").text
    assert '<h2 data-date="2026-11-24">вт 24 ноября</h2>' in page

"""Every page in Russian says everything in Russian (issue 15, points 11-12).

Each page the web app serves (the routes enumerated from the app itself, so a page added
later is read too) is fetched in ``ru`` as the assistant and as the manager of a seeded
pair. A text node of the page that is exactly one of the app's English words (a UI string,
a stored state, kind or level as the English pages name it, a change kind) means something
was left untranslated; a raw ISO time (``2026-11-26T10:00``) means a time was shown as the
store keeps it. Statically, every ``t("key")`` a template uses exists in both languages.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from assistant.domain.notify import LABELS as CHANGE_LABELS
from assistant.entrypoints.web import i18n
from assistant.entrypoints.web.labels import VALUES, labeler, time_writer
from tests.security.web_routes import fill, routes
from tests.support.web import World, login, world_fixture  # noqa: F401

TEMPLATES = Path(i18n.__file__).parent / "templates"
# Words that are the same in any language here: the product's name, language names.
SAME_IN_ANY_LANGUAGE = {"exec-assistant", "English", "Русский", "—"}
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def english_words() -> set[str]:
    words = {v for k, v in i18n.EN.items() if i18n.RU.get(k) != v}
    for group, values in VALUES["en"].items():
        words |= {v for code, v in values.items() if VALUES["ru"][group].get(code) != v}
    words |= {str(v) for k, v in CHANGE_LABELS["en"].items() if CHANGE_LABELS["ru"][k] != v}
    # a state or kind code shown as it is stored is English too
    words |= {code for values in VALUES["en"].values() for code in values}
    return {w for w in words if re.search(r"[A-Za-z]{3}", w)} - SAME_IN_ANY_LANGUAGE


def text_nodes(page: str) -> list[str]:
    page = re.sub(r"(?is)<(script|style|svg)\b.*?</\1>", " ", page)
    nodes = (html.unescape(part).strip() for part in re.split(r"<[^>]+>", page))
    return [n for n in nodes if n]


def test_every_template_key_exists_in_both_languages() -> None:
    used = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z0-9_]+)["']\s*\)""", template.read_text()))
    assert used, "templates use t(...)"
    assert sorted(used - i18n.EN.keys()) == []
    assert sorted(used - i18n.RU.keys()) == []
    assert sorted(i18n.EN.keys() - i18n.RU.keys()) == [], "every English string has a Russian one"
    checkpoint_states = ("planned", "written", "to_remove", "removed", "pinned", "user_deleted")
    assert sorted(f"cp_{s}" for s in checkpoint_states if f"cp_{s}" not in i18n.RU) == []


def test_labels_and_times_in_russian() -> None:
    label = labeler("ru")
    assert label("task_state", "in_progress") == "в работе"
    assert label("change_kind", "moved") == "Перенесена"
    assert label("level", "high") == "высокий"
    assert label("outbox_state", "something-new") == "something-new", "unknown: as it is"
    # the states a change is stored in (store.tables.ScheduleChange.state)
    for state in ("pending", "sent", "digest", "undone", "suppressed"):
        assert label("change_state", state) != state
    assert label("weekday", "tue") == "вт" and labeler("en")("weekday", "tue") == "Tue"
    when = time_writer("ru", "Europe/Berlin")
    assert when("2026-12-08T13:00:00+00:00") == "вт 8 декабря 14:00"
    assert time_writer("en", "Europe/Berlin")("2026-12-08T13:00:00+00:00") == "Tue 8 Dec 14:00"
    assert when(None) == "—"


@pytest.mark.parametrize("who", ["sam@alpha.example", "alex@alpha.example"])
def test_every_page_in_russian_has_no_english_word_and_no_raw_time(world: World, who: str) -> None:
    a = world.alpha
    client = world.client()
    token = login(client, who)
    r = client.post("/me/locale", data={"csrf_token": token, "locale": "ru", "next": "/"})
    assert r.status_code in (200, 303)
    ids = {"pair_id": a.id, "task_id": a.task_id}
    english = english_words()
    found: dict[str, list[str]] = {}
    pages = 0
    for method, template in routes(world.app()):
        if method != "GET" or template.startswith(("/api", "/push", "/feedback", "/ics")):
            continue
        try:
            path = fill(template, ids)
        except KeyError:  # a route for an id the seeded world has none of
            continue
        page = client.get(path, follow_redirects=True)
        if "text/html" not in page.headers.get("content-type", ""):
            continue
        pages += 1
        for node in text_nodes(page.text):
            bare = node.rstrip(":").strip()
            if bare in english or ISO_TIME.search(node):
                found.setdefault(template, []).append(node)
    assert pages >= 8, pages
    assert found == {}

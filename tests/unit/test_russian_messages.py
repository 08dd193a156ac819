"""The messages in Russian are Russian (issue 15, point 12): every ``*.ru.*`` template
holds no English word of its own, and every word table the messages are filled from has a
Russian entry for each English one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from assistant.domain import digest, notify, priorities, timefmt
from assistant.entrypoints.web import feedback, labels

TEMPLATES = Path(notify.__file__).parent / "templates"
BRAND = {"exec-assistant"}
ENTITIES = {"rarr", "larr", "laquo", "raquo", "middot", "nbsp", "mdash", "ndash", "hellip"}


def own_words(template: Path) -> set[str]:
    text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", "", template.read_text(), flags=re.S)
    text = re.sub(r"<[^>]+>", "", text)
    return set(re.findall(r"[A-Za-z][A-Za-z'\-]{2,}", text)) - BRAND - ENTITIES


RU_TEMPLATES = sorted(TEMPLATES.rglob("*.ru.*"))


def test_every_english_template_has_a_russian_twin() -> None:
    english = sorted(TEMPLATES.rglob("*.en.*"))
    assert english
    for template in english:
        assert template.with_name(template.name.replace(".en.", ".ru.")).exists(), template.name


@pytest.mark.parametrize("template", RU_TEMPLATES, ids=lambda p: p.name)
def test_a_russian_template_has_no_english_words(template: Path) -> None:
    assert own_words(template) == set()


@pytest.mark.parametrize(
    "table",
    [notify.LABELS, notify._RESPONSE_WORDS, digest.WORDS, priorities._WORDS,
     timefmt._WEEKDAYS, timefmt._MONTHS, feedback.TEXT,
     labels.VALUES],
    ids=["change kinds", "responses", "digest", "priorities", "weekdays", "months",
         "feedback page", "web labels"],
)
def test_every_word_table_is_complete_in_russian(table: dict[str, object]) -> None:
    en, ru = table["en"], table["ru"]
    if isinstance(en, dict):
        assert isinstance(ru, dict)
        assert en.keys() == ru.keys()
        for key, value in en.items():
            if isinstance(value, dict):
                assert value.keys() == ru[key].keys(), key
    else:
        assert isinstance(en, list) and isinstance(ru, list) and len(en) == len(ru)

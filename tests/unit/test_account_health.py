"""The rules of an account's health (``assistant.domain.account_health``): doubling gaps
from the poll interval up to a cap, parking for refused credentials only, a rate limit's
Retry-After honoured, one alert after ``unhealthy_after``; the messages in both
languages name the account, what broke and the fix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from assistant.domain.account_health import (
    HEALTHY,
    AccountTrouble,
    Failure,
    HealthRules,
    after_failure,
    render_health_message,
)

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
RULES = HealthRules.of(30, 30, 5, 15)


def _tries(failure: Failure, n: int, retry_after: float | None = None) -> list[timedelta]:
    health, now, gaps = HEALTHY, T0, []
    for _ in range(n):
        health = after_failure(health, failure, now, RULES, retry_after)
        if health.next_try_at is None:
            break
        gaps.append(health.next_try_at - now)
        now = health.next_try_at
    return gaps


def test_refused_credentials_double_the_gap_then_park() -> None:
    gaps = _tries(Failure.CREDENTIALS, 10)
    assert [g.total_seconds() for g in gaps] == [30, 60, 120, 240]
    health = HEALTHY
    for n in range(5):
        health = after_failure(health, Failure.CREDENTIALS, T0 + timedelta(minutes=n), RULES)
    assert health.parked == "credentials" and health.next_try_at is None
    assert health.failing_since == T0 and health.failures == 5
    assert not health.may_try(T0 + timedelta(days=30))


def test_only_refusals_in_a_row_park_a_passing_401_among_other_faults_does_not() -> None:
    health, now = HEALTHY, T0
    kinds = [Failure.CREDENTIALS] * 4 + [Failure.UNREACHABLE] + [Failure.CREDENTIALS] * 4
    for kind in kinds:
        health = after_failure(health, kind, now, RULES)
        now += timedelta(minutes=30)
    assert not health.parked and health.failures == 9 and health.refused == 4
    health = after_failure(health, Failure.CREDENTIALS, now, RULES)
    assert health.parked == "credentials"


@pytest.mark.parametrize("failure", [f for f in Failure if f is not Failure.CREDENTIALS])
def test_other_failures_back_off_to_the_cap_and_are_never_parked(failure: Failure) -> None:
    gaps = _tries(failure, 40)
    assert len(gaps) == 40, "still tried"
    assert [g.total_seconds() for g in gaps[:6]] == [30, 60, 120, 240, 480, 960]
    assert set(gaps[6:]) == {timedelta(minutes=30)}


def test_a_rate_limit_waits_at_least_what_the_provider_asked() -> None:
    assert _tries(Failure.RATE_LIMITED, 2, retry_after=600) == [timedelta(seconds=600)] * 2


def test_the_alert_is_due_once_after_the_threshold() -> None:
    health = after_failure(HEALTHY, Failure.UNREACHABLE, T0, RULES)
    assert not health.alert_due(T0 + timedelta(minutes=14, seconds=59), RULES)
    assert health.alert_due(T0 + timedelta(minutes=15), RULES)
    assert not health.unhealthy(T0 + timedelta(minutes=14), RULES)
    told = after_failure(health, Failure.UNREACHABLE, T0 + timedelta(minutes=16), RULES)
    from dataclasses import replace

    told = replace(told, alerted_at=T0 + timedelta(minutes=16))
    assert not told.alert_due(T0 + timedelta(hours=5), RULES)
    assert told.failing_since == T0, "one failure episode: the start stays"


TROUBLE = AccountTrouble(
    account="Work calendar", provider="caldav", kind="calendar", failure=Failure.CREDENTIALS,
    error="CalDAV PROPFIND /alex/work/: credentials refused", since="Tue 24 Nov 10:00",
    tries=5, parked=True,
)  # fmt: skip


def test_the_messages_name_the_account_what_broke_and_the_fix_in_both_languages() -> None:
    en = render_health_message(TROUBLE, stage="alert", audience="manager", lang="en")
    assert en.subject == "Not synced since Tue 24 Nov 10:00: Work calendar"
    assert '"Work calendar" (caldav)' in en.text and "refuses its password" in en.text
    assert "Reconnect" in en.text and "stopped trying until the credentials change" in en.text
    ru = render_health_message(TROUBLE, stage="alert", audience="assistant", lang="ru")
    assert ru.subject == "Нет синхронизации с Tue 24 Nov 10:00: Work calendar"
    assert "«Work calendar»" in ru.text and "не принимает пароль" in ru.text
    assert "Как исправить:" in ru.text and "Переподключить" in ru.text
    for lang in ("en", "ru"):
        back = render_health_message(TROUBLE, stage="recovered", audience="assistant", lang=lang)
        assert "Work calendar" in back.subject and "Work calendar" in back.text
        assert "{{" not in back.text and "{%" not in back.text
    assert "Снова работает" in render_health_message(
        TROUBLE, stage="recovered", audience="manager", lang="ru"
    ).subject

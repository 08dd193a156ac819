"""An account's health: when a failing account is tried again, when it is parked, when
the people are told.

Pure rules (``now`` is passed in); ``assistant.services.account_health`` keeps the
values on the account row and sends the messages.

- Every failure in a row doubles the gap before the next try, from the poll interval up
  to a cap (``HealthRules``); a rate limit waits at least what the provider asked.
- Refused credentials (a 401, ``invalid_grant``) ``refused_tries`` times in a row (a
  refusal among other failures, a provider's passing hiccup, starts the count again), and
  the account is *parked*: nothing tries it again until its credentials
  change, so a provider never locks the account for our retries. Other failures (5xx,
  timeouts, a missing calendar) keep being tried at the capped gap: they mend by
  themselves.
- An account failing for ``unhealthy_after`` is reported once (``alert_due``); when it
  works again, those told are told so (the service sends it when ``alerted_at`` is set).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from assistant.domain.notify import RenderedMessage, template_env
from assistant.domain.text import one_line


class Failure(StrEnum):
    """What broke, as far as it decides what happens next and what the people read."""

    CREDENTIALS = "credentials"  # refused: only new credentials help; parked after tries
    RATE_LIMITED = "rate_limited"
    UNREACHABLE = "unreachable"  # network, timeout, 5xx
    NOT_FOUND = "not_found"
    INVALID = "invalid"  # the provider's answer could not be read
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class HealthRules:
    first_gap: timedelta  # the gap after the first failure (the poll interval)
    max_gap: timedelta
    refused_tries: int  # tries with refused credentials before parking
    unhealthy_after: timedelta  # failing this long: the people are told

    @classmethod
    def of(
        cls,
        poll_interval_seconds: float,
        backoff_max_minutes: float,
        refused_tries: int,
        unhealthy_after_minutes: float,
    ) -> HealthRules:
        return cls(
            first_gap=timedelta(seconds=poll_interval_seconds),
            max_gap=timedelta(minutes=backoff_max_minutes),
            refused_tries=refused_tries,
            unhealthy_after=timedelta(minutes=unhealthy_after_minutes),
        )


@dataclass(frozen=True, slots=True)
class Health:
    """An account's health as stored; the default is a healthy account."""

    failing_since: datetime | None = None
    failures: int = 0  # failed tries in a row
    refused: int = 0  # of them, the last ones that were refused credentials
    next_try_at: datetime | None = None  # polling leaves it alone until then
    parked: str = ""  # a Failure value: not tried again until the credentials change
    alerted_at: datetime | None = None  # when the people were told it fails

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    def may_try(self, now: datetime) -> bool:
        """Whether polling may try the account ``now``."""
        return not self.parked and (self.next_try_at is None or self.next_try_at <= now)

    def alert_due(self, now: datetime, rules: HealthRules) -> bool:
        """Failing for ``unhealthy_after`` and nobody told yet."""
        return (
            self.failing_since is not None
            and self.alerted_at is None
            and now - self.failing_since >= rules.unhealthy_after
        )

    def unhealthy(self, now: datetime, rules: HealthRules) -> bool:
        """Shown as a problem (banner, digest, doctor): parked, or failing long enough."""
        return bool(self.parked) or (
            self.failing_since is not None and now - self.failing_since >= rules.unhealthy_after
        )


HEALTHY = Health()


def gap(failures: int, rules: HealthRules) -> timedelta:
    """The wait after the ``failures``-th failure in a row: doubling, capped."""
    if failures <= 0:
        return timedelta(0)
    doubled: timedelta = rules.first_gap * (2 ** min(failures - 1, 20))
    return min(doubled, rules.max_gap)


def after_failure(
    health: Health,
    failure: Failure,
    now: datetime,
    rules: HealthRules,
    retry_after: float | None = None,
) -> Health:
    """The health after one more failed try at ``now``."""
    failures = health.failures + 1
    refused = health.refused + 1 if failure is Failure.CREDENTIALS else 0
    since = health.failing_since or now
    if refused >= rules.refused_tries:
        return replace(health, failing_since=since, failures=failures, refused=refused,
                       next_try_at=None, parked=failure.value)  # fmt: skip
    wait = gap(failures, rules)
    if retry_after is not None:
        wait = max(wait, timedelta(seconds=retry_after))
    return replace(health, failing_since=since, failures=failures, refused=refused,
                   next_try_at=now + wait, parked="")  # fmt: skip


def parked_failure(health: Health) -> Failure | None:
    if not health.parked:
        return None
    try:
        return Failure(health.parked)
    except ValueError:
        return Failure.OTHER


# ------------------------------------------------------------------------- messages

Lang = Literal["en", "ru"]

WHAT: dict[str, dict[Failure, str]] = {
    "en": {
        Failure.CREDENTIALS: "the provider refuses its password or sign-in",
        Failure.RATE_LIMITED: "the provider keeps asking us to slow down",
        Failure.UNREACHABLE: "the server cannot be reached or answers with errors",
        Failure.NOT_FOUND: "the calendar or mailbox is not found at its address",
        Failure.INVALID: "the provider's answers cannot be read",
        Failure.OTHER: "its sync fails",
    },
    "ru": {
        Failure.CREDENTIALS: "провайдер не принимает пароль или вход",
        Failure.RATE_LIMITED: "провайдер постоянно просит снизить частоту запросов",
        Failure.UNREACHABLE: "сервер недоступен или отвечает ошибками",
        Failure.NOT_FOUND: "календарь или почтовый ящик не найден по своему адресу",
        Failure.INVALID: "ответы провайдера не удаётся прочитать",
        Failure.OTHER: "синхронизация не проходит",
    },
}

FIX: dict[str, dict[Failure, str]] = {
    "en": {
        Failure.CREDENTIALS: (
            "Enter the new password, or sign in again, on the Accounts page (Reconnect). "
            "The service has stopped trying, so that the provider does not lock the account; "
            "it tries again as soon as the credentials change."
        ),
        Failure.RATE_LIMITED: "Nothing to do unless it lasts: the service waits and tries again.",
        Failure.UNREACHABLE: (
            "Check the server's address and that the server is up; the service keeps trying "
            "with growing gaps."
        ),
        Failure.NOT_FOUND: (
            "Check the account's address on the Accounts page: the calendar or mailbox may "
            "have been renamed or removed."
        ),
        Failure.INVALID: "Ask the administrator to look at the service's log for this account.",
        Failure.OTHER: "Ask the administrator to look at the service's log for this account.",
    },
    "ru": {
        Failure.CREDENTIALS: (
            "Введите новый пароль или войдите заново на странице «Учётные записи» "
            "(«Переподключить»). Сервис перестал пытаться, чтобы провайдер не заблокировал "
            "учётную запись, и попробует снова, как только данные для входа изменятся."
        ),
        Failure.RATE_LIMITED: (
            "Ничего делать не нужно, если это не затянется: сервис подождёт и попробует снова."
        ),
        Failure.UNREACHABLE: (
            "Проверьте адрес сервера и что сервер работает; сервис продолжает попытки "
            "с растущими интервалами."
        ),
        Failure.NOT_FOUND: (
            "Проверьте адрес на странице «Учётные записи»: календарь или ящик могли "
            "переименовать или удалить."
        ),
        Failure.INVALID: "Попросите администратора посмотреть журнал сервиса по этой записи.",
        Failure.OTHER: "Попросите администратора посмотреть журнал сервиса по этой записи.",
    },
}

SUBJECTS: dict[str, dict[str, str]] = {
    "en": {
        "alert": "Not synced since {since}: {account}",
        "recovered": "Working again: {account}",
    },
    "ru": {
        "alert": "Нет синхронизации с {since}: {account}",
        "recovered": "Снова работает: {account}",
    },
}


@dataclass(frozen=True, slots=True)
class AccountTrouble:
    """What a message about one account says (times already written for the reader)."""

    account: str  # its name
    provider: str
    kind: str  # calendar | mail
    failure: Failure
    error: str  # the last error, redacted (no credentials)
    since: str  # when it started failing, in the reader's zone
    tries: int
    parked: bool
    next_try: str = ""  # when it is tried again ("" when parked or unknown)


def describe(failure: Failure, lang: str) -> tuple[str, str]:
    """What broke and how to fix it, in ``lang`` (en when not known)."""
    lg = lang if lang in WHAT else "en"
    return WHAT[lg][failure], FIX[lg][failure]


def render_health_message(
    trouble: AccountTrouble,
    *,
    stage: Literal["alert", "recovered"],
    audience: Literal["assistant", "manager"],
    lang: str,
) -> RenderedMessage:
    """The one message that an account fails (``alert``) or works again (``recovered``)."""
    lg = lang if lang in WHAT else "en"
    what, fix = describe(trouble.failure, lg)
    context = {
        "stage": stage,
        "audience": audience,
        "account": one_line(trouble.account),
        "provider": trouble.provider,
        "kind": trouble.kind,
        "what": what,
        "fix": fix,
        "error": one_line(trouble.error)[:300],
        "since": trouble.since,
        "tries": trouble.tries,
        "parked": trouble.parked,
        "next_try": trouble.next_try,
    }
    text = template_env().get_template(f"health/health.{lg}.txt.j2").render(context)
    subject = SUBJECTS[lg][stage].format(account=context["account"], since=trouble.since)
    return RenderedMessage(subject=one_line(subject), text=text, html="")

"""The chat channel: outbox entries as chat messages through apprise.

Any apprise URL works (``tgram://``, ``slack://``, ``msteams://``, ``matrix://``,
``json://``...). The destination is in the URL, so the entry's recipient is not used;
an assistant's chat is one more channel name (``notify_channels``) bound to their URLs.

What is sent: the subject as the title (on one line) and the plain-text body, trimmed
to what each service accepts (its ``body_maxlen``, less the title where the service
puts the title into the body), ending in ``…`` when cut. HTML is not sent.

Validation happens once, at construction: every URL apprise refuses (unknown service,
malformed, a missing token) is reported together in a ``ConfigError`` naming the
URL's position and service, never the URL itself (it holds tokens).

Delivery: apprise says only whether a service took the message, so every failure is
temporary (the outbox retries, then gives up after its maximum attempts). With several
URLs, a retry skips the URLs that already took this entry in this process; after a
restart, or on another worker, they would get it again. Bind one URL per channel
name where a duplicate chat message matters. Services' own time-outs apply (apprise's
``cto``/``rto`` URL arguments, 4 s by default) and their own throttling (Slack:
one message per 1.2 s per URL).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from urllib.parse import parse_qs, unquote, urlsplit

import apprise
from apprise.manager_plugins import NotificationManager
from apprise.plugins.base import NotifyBase

from assistant.domain.text import one_line
from assistant.services.outbox import DeliveryError, OutboxMessage
from config.settings import ConfigError

ELLIPSIS = "\n…"
MEMO_SIZE = 10_000
MAX_REASON_CHARS = 160


class AppriseChannel:
    """Sends outbox entries to one or more apprise URLs (see the module docstring)."""

    def __init__(self, urls: Sequence[str], config_key: str = "chat.urls") -> None:
        if isinstance(urls, str):
            urls = [urls]
        if not urls:
            raise ConfigError([(config_key, "give at least one apprise URL")])
        asset = apprise.AppriseAsset(secure_logging=True)
        problems: list[tuple[str, str]] = []
        self._targets: list[tuple[apprise.Apprise, NotifyBase, list[str]]] = []
        for i, url in enumerate(urls):
            plugin, problem = _instantiate(url, asset)
            if plugin is None:
                problems.append((f"{config_key}[{i}]", problem))
                continue
            if "overflow" not in parse_qs(urlsplit(url).query):
                # a safety net behind our own trimming: never send more than the service takes
                plugin.overflow_mode = apprise.OverflowMode.TRUNCATE
            notifier = apprise.Apprise(asset=asset)
            notifier.add(plugin)
            self._targets.append((notifier, plugin, _secrets_in(url)))
        if problems:
            raise ConfigError(problems)
        self._lock = threading.Lock()
        self._delivered: OrderedDict[tuple[str, int], None] = OrderedDict()

    def __repr__(self) -> str:
        return f"AppriseChannel({', '.join(self.describe())})"

    def describe(self) -> list[str]:
        """The URLs as apprise shows them with their secrets masked."""
        return [_public_url(plugin) for _, plugin, _ in self._targets]

    def send(self, message: OutboxMessage) -> None:
        failures = []
        for i, (notifier, plugin, secrets) in enumerate(self._targets):
            if self._already_delivered(message.key, i):
                continue
            title, body = fit(plugin, message.subject, message.body_text)
            result = notifier.notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT)
            try:
                if result:
                    self._remember(message.key, i)
                    continue
                reasons = [
                    e.message for e in result.logs() if e.level in ("WARNING", "ERROR", "CRITICAL")
                ]
            finally:
                result.close()
            reason = _scrub(reasons[-1] if reasons else result.status.name.lower(), secrets)
            failures.append(f"{_public_url(plugin)}: {reason[:MAX_REASON_CHARS]}")
        if failures:
            raise DeliveryError("apprise: " + "; ".join(failures))

    def _already_delivered(self, key: str, index: int) -> bool:
        with self._lock:
            return (key, index) in self._delivered

    def _remember(self, key: str, index: int) -> None:
        if len(self._targets) < 2:
            return  # nothing to skip on a retry
        with self._lock:
            self._delivered[(key, index)] = None
            while len(self._delivered) > MEMO_SIZE:
                self._delivered.popitem(last=False)


def fit(plugin: NotifyBase, subject: str, text: str) -> tuple[str, str]:
    """The title and body to give ``plugin``: one-line title, body within its limits."""
    title = one_line(subject)
    title_max = int(plugin.title_maxlen)
    body_max = int(plugin.body_maxlen)
    buffer = int(plugin.overflow_buffer)
    merged = title_max <= 0 or bool(plugin.overflow_amalgamate_title)
    if title_max > 0:
        title = _cut(title, title_max, "…")
    if body_max > 0:
        budget = body_max - buffer - (len(title) + 2 if merged and title else 0)
        text = _cut(text, max(budget, 0), ELLIPSIS, at_line=True)
    max_lines = int(plugin.body_max_line_count)
    lines = text.splitlines()
    if max_lines > 0 and len(lines) > max_lines - (1 if merged and title else 0):
        keep = max(max_lines - (2 if merged and title else 1), 0)
        text = "\n".join([*lines[:keep], "…"])
    return title, text


def _cut(text: str, limit: int, marker: str, at_line: bool = False) -> str:
    if len(text) <= limit:
        return text
    if limit <= len(marker):
        return text[:limit]
    cut = text[: limit - len(marker)]
    if at_line and cut.rfind("\n") > limit // 2:
        cut = cut[: cut.rfind("\n")]
    return cut.rstrip() + marker


def _instantiate(url: str, asset: apprise.AppriseAsset) -> tuple[NotifyBase | None, str]:
    scheme = url.partition("://")[0].strip().lower() if "://" in url else ""
    if not scheme:
        return None, "not an apprise URL (expected service://...)"
    if scheme not in NotificationManager():  # type: ignore[no-untyped-call]
        return None, f"{scheme}:// is not a service apprise knows"
    plugin = apprise.Apprise.instantiate(url, asset=asset)
    if plugin is None:
        return None, (
            f"apprise refuses this {scheme}:// URL (malformed, a token or target missing, "
            "or the service disabled here); the URL is not shown as it may hold secrets"
        )
    return plugin, ""


def _public_url(plugin: NotifyBase) -> str:
    """The plugin's URL with secrets masked, without its (long) query string."""
    url = str(plugin.url(privacy=True))  # type: ignore[no-untyped-call]
    return url.partition("?")[0]


def _secrets_in(url: str) -> list[str]:
    """Pieces of ``url`` that may be secret: the user, password or bot token before the
    host, path segments and query values (host names, with their dots, are kept)."""
    parts = urlsplit(url)
    pieces = [p for p in re.split(r"[@:]", parts.netloc) if "." not in p]
    pieces += parts.path.split("/")
    pieces += [v for values in parse_qs(parts.query).values() for v in values]
    found = {q for p in pieces for q in (p, unquote(p)) if len(q) >= 6}
    return sorted(found, key=len, reverse=True)


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return " ".join(text.split())

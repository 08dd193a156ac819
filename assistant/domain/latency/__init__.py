"""Threading and reply latency between a manager and an assistant (pure, no I/O).

- ``threads``: which messages are one (copies), which form a thread, who writes to whom;
- ``measure``: a ``LatencyRecord`` per message that waits for an answer (``reply_latencies``);
- ``summary``: figures over records (``summarize``, ``weekly_trend``, ``percentile``);
- ``index``: ``LatencyIndex``, the same records kept up to date batch by batch.

Every public name is importable from ``assistant.domain.latency``.
"""

from assistant.domain.latency.index import LatencyIndex
from assistant.domain.latency.measure import LatencyRecord, reply_latencies
from assistant.domain.latency.summary import (
    LatencySummary,
    percentile,
    summarize,
    weekly_trend,
)
from assistant.domain.latency.threads import (
    DEFAULT_WINDOW,
    Direction,
    classifier,
    classify,
    normalize_subject,
    thread_messages,
)

__all__ = [
    "DEFAULT_WINDOW",
    "Direction",
    "LatencyIndex",
    "LatencyRecord",
    "LatencySummary",
    "classifier",
    "classify",
    "normalize_subject",
    "percentile",
    "reply_latencies",
    "summarize",
    "thread_messages",
    "weekly_trend",
]

"""What one run of the inbox did: counted while its messages are handled, then frozen."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True, slots=True)
class InboxReport:
    """What one run of the inbox did."""

    read: int = 0
    answers: tuple[int, ...] = ()  # TaskFeedback ids
    tasks: tuple[int, ...] = ()  # DelegatedTask ids, new
    outbox_ids: tuple[int, ...] = ()
    ignored: int = 0
    duplicates: int = 0
    busy: bool = False  # another run held the lock; nothing done

    def to_dict(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(slots=True)
class InboxTally:
    """The run's counts as its messages are handled; ``report()`` freezes them."""

    read: int = 0
    answers: list[int] = field(default_factory=list)
    tasks: list[int] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)
    ignored: int = 0
    duplicates: int = 0

    def report(self) -> InboxReport:
        return InboxReport(self.read, tuple(self.answers), tuple(self.tasks),
                           tuple(self.outbox_ids), self.ignored, self.duplicates)  # fmt: skip

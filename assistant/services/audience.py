"""Who a message to a pair is written for, built in one place from the pair's row.

The change notifications and the daily digest render through ``domain.notify`` and
``domain.digest`` for an ``Audience``: the pair's language, the manager's and the
assistant's time zones, the manager's name and addresses, and whether the assistant may
see the details of private events.
"""

from __future__ import annotations

from assistant.domain.notify import Audience
from assistant.store.tables import Pair


def audience_for(pair: Pair) -> Audience:
    """The pair's audience (a pair without a zone is in UTC)."""
    zone = pair.timezone or "UTC"
    return Audience(
        locale=pair.locale,
        manager_zone=zone,
        assistant_zone=pair.assistant_timezone or zone,
        manager_name=pair.manager_name,
        manager_emails=frozenset({pair.manager_email.lower()}),
        share_private_details=pair.share_private_details,
    )

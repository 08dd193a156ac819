"""The Message-ID of every mail the service sends, made from the outbox idempotency key.

The same key always gives the same Message-ID, whichever channel delivers it (SMTP or the
pair's connected account), so a resend after a crash is one message to mail clients and a
reply's ``In-Reply-To`` / ``References`` lead back to what was sent.
"""

from __future__ import annotations

import hashlib

MESSAGE_ID_DOMAIN = "exec-assistant"


def message_id_for(key: str) -> str:
    """The Message-ID of the mail for an outbox idempotency key."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@{MESSAGE_ID_DOMAIN}>"

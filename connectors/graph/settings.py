"""The settings of a Microsoft 365 account through Graph: a calendar (``graph``) or a
mailbox (``graph-mail``).

``user`` (an id or user principal name), ``tenant``, ``client_id``; app-only access with
the secret ``client_secret``, delegated access with the secret ``refresh_token`` (and
``client_secret`` for a confidential app). ``graph_url`` and ``authority_host`` point
elsewhere than Microsoft's cloud (tests, national clouds); ``verify`` is true, false or a
CA bundle file. ``connectors.graph.client.open_graph`` opens any Graph connector from it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationInfo, field_validator

from connectors.settings import AccountSettings, Secret, Text, Url, adding

GRAPH_URL = "https://graph.microsoft.com/v1.0"
AUTHORITY_HOST = "https://login.microsoftonline.com"


class GraphSettings(AccountSettings):
    user: Text
    tenant: Text
    client_id: Text
    client_secret: Secret = None
    refresh_token: Secret = None
    graph_url: Url = GRAPH_URL
    authority_host: Url = AUTHORITY_HOST
    verify: bool | Path = True
    identity: str = ""  # who signed in (the web app's connect flow)
    send_mail: bool = False  # the pair's mail to the assistant leaves through this account

    @field_validator("verify")
    @classmethod
    def _ca_file(cls, value: bool | Path, info: ValidationInfo) -> bool | Path:
        if isinstance(value, bool):
            return value
        context = adding(info)
        if context is not None:
            if context.by_user:
                raise ValueError("only accounts added with the CLI choose their CA file")
            if not value.expanduser().is_file():
                raise ValueError("no such file")
        return value

    @property
    def tls(self) -> bool | str:
        """What the connectors' ``verify`` takes: a flag or the CA file's path."""
        return self.verify if isinstance(self.verify, bool) else str(self.verify)


class GraphMailSettings(GraphSettings):
    """``header_senders``: the addresses whose Inbox mail gets its headers read."""

    header_senders: tuple[str, ...] = ()

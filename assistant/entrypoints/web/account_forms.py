"""What the account forms show: each provider's fields, and what a provider's sign-in
lacks (its Connect button is greyed and says so)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from assistant.services.accounts import FORM_PROVIDERS

if TYPE_CHECKING:
    from starlette.requests import Request

    from assistant.bootstrap import Service

FLOWS = ("google", "microsoft")
LOOPBACK = ("localhost", "127.0.0.1", "::1")

# The form fields of a provider's settings: key -> (UI string of its label, input type).
FIELDS: dict[str, tuple[str, str]] = {
    "host": ("host", "text"),
    "port": ("port", "text"),
    "security": ("security", "select"),
    "url": ("server_url", "text"),
    "location": ("location", "text"),
    "mailbox": ("mailbox", "email"),
    "service_endpoint": ("service_endpoint", "text"),
    "username": ("username", "text"),
    "password": ("password", "password"),
}


def fields_of(provider: str) -> list[tuple[str, str, str]]:
    """(key, label, input type) of the fields the add and edit forms show for ``provider``."""
    return [(key, *FIELDS[key]) for key in FORM_PROVIDERS.get(provider, ())]


def redirect_uri(svc: Service, request: Request, flow: str) -> str:
    """Where the provider sends the browser back after its sign-in page."""
    base = svc.settings.web.public_url or str(request.base_url)
    return f"{base.rstrip('/')}/oauth/{flow}/callback"


def sign_in_missing(svc: Service, request: Request, flow: str) -> list[str]:
    """What a provider's sign-in lacks, as UI string keys ([] when it can start): its
    OAuth client, and an https address to come back to (Google and Microsoft accept
    http only for the machine itself)."""
    conf = svc.settings.oauth.google if flow == "google" else svc.settings.oauth.microsoft
    missing = [] if conf.client_id else [f"missing_{flow}"]
    back = urlsplit(redirect_uri(svc, request, flow))
    if back.scheme != "https" and (back.hostname or "") not in LOOPBACK:
        missing.append("missing_https")
    return missing

"""What Google's API test servers share: a threaded HTTP server on 127.0.0.1 and the
OAuth 2.0 token endpoint (``/token``) with its clients, tokens and service accounts.

``OAuthServer`` is the base of ``GoogleCalendarServer`` and ``GmailServer``; a subclass
gives ``handle(method, target, headers, body) -> (status, headers, body)`` (calling
``_token(body)`` for ``POST /token``), the scopes of its API (``api_scopes``: a service
account's JWT must ask for one of them) and the scopes a refresh token holds when none
are named (``default_scopes``).

* ``refresh_token`` grant (installed apps): client id and secret checked, the token must
  be one ``issue_refresh_token`` gave that client and not revoked; asking for a scope the
  token does not hold is ``invalid_scope``.
* JWT bearer grant of service accounts: RS256 signature checked against the registered
  key, audience, lifetime and scope checked; ``sub`` only for subjects the account is
  delegated.
* Access tokens (``ya29.``) expire after ``token_lifetime`` seconds;
  ``access_token_for(..., exempt=True)`` mints one whose requests faults never hit.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


@dataclass(slots=True)
class AccessToken:
    user: str
    expires_at: float
    scopes: frozenset[str]
    exempt: bool = False


@dataclass(slots=True)
class _ServiceAccount:
    public_key: Any
    subjects: frozenset[str]


def new_rsa_key() -> tuple[str, str]:
    """(private PEM, public PEM) of a fresh 2048-bit RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def b64decode(text: str) -> bytes:
    """base64url, padding optional."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class OAuthServer:
    """A threaded server; ``url`` is the root URL (``http://127.0.0.1:<port>/``)."""

    api_scopes: ClassVar[frozenset[str]] = frozenset()
    default_scopes: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, token_lifetime: int = 3600) -> None:
        self.token_lifetime = token_lifetime
        self._lock = threading.RLock()
        self._clients: dict[str, str] = {}
        # token -> (client id, user, scopes)
        self._refresh_tokens: dict[str, tuple[str, str, frozenset[str]]] = {}
        self._access: dict[str, AccessToken] = {}
        self._service_accounts: dict[str, _ServiceAccount] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        server = self

        class Handler(_Handler):
            app = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    @property
    def token_uri(self) -> str:
        return self.url + "token"

    # ------------------------------------------------------------ accounts, tokens

    def add_client(self, client_id: str = "", client_secret: str = "") -> tuple[str, str]:
        client_id = client_id or f"{secrets.token_hex(6)}.apps.googleusercontent.com"
        client_secret = client_secret or secrets.token_urlsafe(18)
        with self._lock:
            self._clients[client_id] = client_secret
        return client_id, client_secret

    def issue_refresh_token(
        self, user: str, client_id: str, scopes: Iterable[str] | None = None
    ) -> str:
        """A refresh token of ``client_id`` for ``user`` (``scopes``: ``default_scopes``)."""
        held = self.default_scopes if scopes is None else frozenset(scopes)
        token = "1//" + secrets.token_urlsafe(32)
        with self._lock:
            self._refresh_tokens[token] = (client_id, user, held)
        return token

    def revoke_refresh_token(self, token: str) -> None:
        with self._lock:
            self._refresh_tokens.pop(token, None)

    def add_service_account(
        self, email: str, public_key_pem: str, subjects: tuple[str, ...] = ()
    ) -> None:
        """Register a key; ``subjects``: users it may act as (domain-wide delegation)."""
        key = serialization.load_pem_public_key(public_key_pem.encode())
        with self._lock:
            self._service_accounts[email] = _ServiceAccount(key, frozenset(subjects))

    def new_service_account(self, email: str, subjects: tuple[str, ...] = ()) -> dict[str, str]:
        """Register a new service account (``subjects``: users it may act as); its key file."""
        private, public = new_rsa_key()
        self.add_service_account(email, public, subjects)
        return {
            "type": "service_account",
            "project_id": "exec-assistant-tests",
            "private_key_id": secrets.token_hex(20),
            "private_key": private,
            "client_email": email,
            "client_id": str(secrets.randbelow(10**20)),
            "token_uri": self.token_uri,
        }

    def access_token_for(
        self, user: str, *, exempt: bool = False, scopes: Iterable[str] | None = None
    ) -> str:
        """An access token minted directly (``exempt``: faults never hit its requests;
        ``scopes``: ``default_scopes``)."""
        held = self.default_scopes if scopes is None else frozenset(scopes)
        return self._mint(user, held, exempt)

    def expire_access_tokens(self) -> None:
        with self._lock:
            for token in self._access.values():
                token.expires_at = 0

    def _token_of(self, headers: Mapping[str, str]) -> AccessToken | None:
        """The access token a request's ``Authorization: Bearer`` header names, if known."""
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        with self._lock:
            return self._access.get(auth.removeprefix("Bearer ").strip()) if auth else None

    # --------------------------------------------------------------------- /token

    def _token(self, body: bytes) -> dict[str, Any]:
        """The reply of ``POST /token`` (raises ``OAuthError``)."""
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        grant = form.get("grant_type", "")
        if grant == "refresh_token":
            client_id = form.get("client_id", "")
            with self._lock:
                known = self._clients.get(client_id)
                holder = self._refresh_tokens.get(form.get("refresh_token", ""))
            if known is None or known != form.get("client_secret"):
                raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
            if holder is None or holder[0] != client_id:
                raise OAuthError(400, "invalid_grant", "Token has been expired or revoked.")
            return self._refreshed(holder[1], holder[2], frozenset(form.get("scope", "").split()))
        if grant == JWT_BEARER:
            claims = self._verify_assertion(form.get("assertion", ""))
            scopes = frozenset(str(claims.get("scope", "")).split())
            return self._grant(str(claims.get("sub") or claims["iss"]), " ".join(sorted(scopes)))
        return self._other_grant(grant, form)

    def _refreshed(
        self, user: str, held: frozenset[str], requested: frozenset[str]
    ) -> dict[str, Any]:
        """The reply to a valid refresh token: the scopes asked for (at most those held)."""
        if requested - held:
            raise OAuthError(400, "invalid_scope", "Bad Request")
        return self._grant(user, " ".join(sorted(requested or held)))

    def _other_grant(self, grant: str, form: dict[str, str]) -> dict[str, Any]:
        """A grant type other than refresh_token and the JWT bearer grant."""
        raise OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant}")

    def _grant(self, user: str, scope: str) -> dict[str, Any]:
        """An access token for ``user`` with the space-separated ``scope``, as /token gives."""
        return {
            "access_token": self._mint(user, frozenset(scope.split()), False),
            "expires_in": self.token_lifetime,
            "scope": scope,
            "token_type": "Bearer",
        }

    def _verify_assertion(self, assertion: str) -> dict[str, Any]:
        try:
            head_b64, claims_b64, sig_b64 = assertion.split(".")
            header = json.loads(b64decode(head_b64))
            claims: dict[str, Any] = json.loads(b64decode(claims_b64))
            signature = b64decode(sig_b64)
        except ValueError:
            raise OAuthError(400, "invalid_grant", "Invalid JWT: malformed") from None
        with self._lock:
            account = self._service_accounts.get(str(claims.get("iss")))
        if account is None or header.get("alg") != "RS256":
            raise OAuthError(400, "invalid_grant", "Invalid JWT Signature.")
        try:
            account.public_key.verify(signature, f"{head_b64}.{claims_b64}".encode(),
                                      padding.PKCS1v15(), hashes.SHA256())  # fmt: skip
        except InvalidSignature:
            raise OAuthError(400, "invalid_grant", "Invalid JWT Signature.") from None
        # google-auth always names Google's token endpoint as the audience, as Google wants
        if claims.get("aud") not in (self.token_uri, "https://oauth2.googleapis.com/token"):
            raise OAuthError(400, "invalid_grant", "Invalid JWT: audience")
        if not float(claims.get("iat", 0)) - 300 <= time.time() <= float(claims.get("exp", 0)):
            raise OAuthError(400, "invalid_grant", "Invalid JWT: Token must be a short-lived "
                             "token (60 minutes) and in a reasonable timeframe.")  # fmt: skip
        if not set(str(claims.get("scope", "")).split()) & self.api_scopes:
            raise OAuthError(400, "invalid_scope", "Invalid OAuth scope or ID token audience.")
        subject = claims.get("sub")
        if subject and subject != claims["iss"] and subject not in account.subjects:
            raise OAuthError(401, "unauthorized_client",
                             "Client is unauthorized to retrieve access tokens using this "
                             "method, or client not authorized for any of the scopes requested.")  # fmt: skip
        return claims

    def _mint(self, user: str, scopes: frozenset[str], exempt: bool) -> str:
        token = "ya29." + secrets.token_urlsafe(32)
        with self._lock:
            self._access[token] = AccessToken(
                user, time.time() + self.token_lifetime, scopes, exempt
            )
        return token


# ------------------------------------------------------------------------ HTTP


class _Handler(BaseHTTPRequestHandler):
    app: OAuthServer
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, data = self.app.handle(self.command, self.path, dict(self.headers), body)
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data and self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass

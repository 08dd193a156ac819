"""Connecting accounts: OAuth sign-in (Google, Microsoft 365), password forms, checks.

OAuth is the authorization code flow with PKCE (S256). Starting it (a POST with the
session's CSRF token, by a member who may edit the pair) redirects to the provider with
a signed, expiring ``state`` naming the provider, the pair, the login session, the
account being reconnected (if any) and a random nonce. The PKCE verifier is never sent
anywhere before the token request: it is an HMAC of the nonce under the app's secret, so
the server derives it again at the callback and nothing needs storing between the two
steps. The callback (same login session, pair still editable by this user) exchanges
the code at the token endpoint and stores the refresh token encrypted (``config.sealed``)
in a new account, or in the account being reconnected. Every failure ends on a plain
message and stores nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from assistant.domain.signing import ExpiredToken, TokenError, sign, verify
from assistant.entrypoints.web.account_forms import FIELDS, fields_of, redirect_uri
from assistant.entrypoints.web.guard import Ctx, HTTPProblem, resolve_access
from assistant.entrypoints.web.views import signs_in
from assistant.services import account_edits
from assistant.services import accounts as account_service
from assistant.services.feedback import secret_keys

if TYPE_CHECKING:
    from assistant.entrypoints.web.pages import Pages
    from assistant.services.pairs import AccountView

PURPOSE = "oauth-state"
GOOGLE_SCOPES = {
    "calendar": "https://www.googleapis.com/auth/calendar",
    "mail": "https://www.googleapis.com/auth/gmail.readonly",
}
MICROSOFT_SCOPES = {"calendar": "Calendars.ReadWrite", "mail": "Mail.Read"}
# account provider per sign-in provider and part
PROVIDERS = {
    "google": {"calendar": "google", "mail": "gmail"},
    "microsoft": {"calendar": "graph", "mail": "graph-mail"},
}
SIGN_IN_OF = {p: flow for flow, parts in PROVIDERS.items() for p in parts.values()}
class SignInFailed(Exception):
    def __init__(self, note: str) -> None:
        super().__init__(note)
        self.note = note


@dataclass(frozen=True, slots=True)
class Tokens:
    refresh_token: str
    claims: dict[str, Any]  # the ID token's claims (read, not verified: straight from TLS)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_verifier(keys: list[str], nonce: str) -> str:
    """43 characters of base64url: an HMAC of the flow's nonce under the app's secret."""
    mac = hmac.new(keys[0].encode(), b"exec-assistant/pkce\x00" + nonce.encode(), hashlib.sha256)
    return _b64(mac.digest())


def pkce_challenge(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


def _claims(id_token: object) -> dict[str, Any]:
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return {}
    body = id_token.split(".")[1]
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def exchange_code(token_url: str, form: dict[str, str], timeout: float) -> Tokens:
    """The authorization code grant. Raises SignInFailed with a note key."""
    try:
        reply = httpx.post(
            token_url, data=form, timeout=timeout, headers={"Accept": "application/json"}
        )
    except httpx.HTTPError:
        raise SignInFailed("n_unreachable") from None
    if reply.status_code >= 500:
        raise SignInFailed("n_unreachable")
    try:
        doc = reply.json()
    except ValueError:
        raise SignInFailed("n_refused") from None
    if reply.status_code != 200 or not isinstance(doc, dict) or "error" in doc:
        raise SignInFailed("n_refused")
    refresh = doc.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        raise SignInFailed("n_no_refresh")
    return Tokens(refresh, _claims(doc.get("id_token")))


class Connect:
    """The account pages' actions; rendering and guarding come from ``Pages``."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.svc = pages.svc

    def _back(self, pair_id: int, note: str) -> Response:
        return RedirectResponse(f"/pairs/{pair_id}/accounts?note={note}", status_code=303)

    # ----------------------------------------------------------------- starting

    def _client(self, flow: str) -> tuple[str, Any]:
        oauth = self.svc.settings.oauth
        conf = oauth.google if flow == "google" else oauth.microsoft
        return conf.client_id, conf

    def _start(
        self, request: Request, ctx: Ctx, flow: str, parts: list[str], account_id: int
    ) -> Response:
        client_id, conf = self._client(flow)
        if not client_id:
            return self._back(ctx.pair.pair_id, "not_configured")
        parts = [p for p in ("calendar", "mail") if p in parts] or ["calendar"]
        keys = secret_keys(self.svc.settings)
        nonce = secrets.token_urlsafe(16)
        minutes = self.svc.settings.oauth.state_minutes
        state = sign(
            keys,
            PURPOSE,
            {"f": flow, "p": ctx.pair.pair_id, "s": ctx.viewer.session_id, "a": account_id,
             "w": parts, "n": nonce},
            self.svc.now() + timedelta(minutes=minutes),
        )  # fmt: skip
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri(self.svc, request, flow),
            "state": state,
            "code_challenge": pkce_challenge(pkce_verifier(keys, nonce)),
            "code_challenge_method": "S256",
        }
        if flow == "google":
            scopes = ["openid", "email", *(GOOGLE_SCOPES[p] for p in parts)]
            params |= {"access_type": "offline", "prompt": "consent",
                       "include_granted_scopes": "true"}  # fmt: skip
        else:
            scopes = ["openid", "profile", "email", "offline_access",
                      *(MICROSOFT_SCOPES[p] for p in parts)]  # fmt: skip
            params |= {"response_mode": "query", "prompt": "select_account"}
        params["scope"] = " ".join(scopes)
        sep = "&" if "?" in conf.authorize_url else "?"
        return RedirectResponse(f"{conf.authorize_url}{sep}{urlencode(params)}", status_code=303)

    async def start_google(self, request: Request, ctx: Ctx) -> Response:
        assert ctx.form is not None
        return self._start(request, ctx, "google", [str(x) for x in ctx.form.getlist("part")], 0)

    async def start_microsoft(self, request: Request, ctx: Ctx) -> Response:
        assert ctx.form is not None
        parts = [str(x) for x in ctx.form.getlist("part")]
        return self._start(request, ctx, "microsoft", parts, 0)

    async def reconnect(self, request: Request, ctx: Ctx) -> Response:
        assert ctx.form is not None
        pair_id = ctx.pair.pair_id
        account = account_service.account_of_pair(
            self.svc, pair_id, int(request.path_params["account_id"])
        )
        flow = SIGN_IN_OF.get(account.provider)
        if flow is not None and signs_in(account):
            part = "calendar" if account.kind == "calendar" else "mail"
            return self._start(request, ctx, flow, [part], account.id)
        account_service.replace_password(
            self.svc, pair_id, account.id, str(ctx.form.get("password", ""))
        )
        return self._back(pair_id, "n_saved")

    # ----------------------------------------------------------------- finishing

    async def callback_google(self, request: Request, ctx: Ctx) -> Response:
        return await self._callback(request, ctx, "google")

    async def callback_microsoft(self, request: Request, ctx: Ctx) -> Response:
        return await self._callback(request, ctx, "microsoft")

    async def _callback(self, request: Request, ctx: Ctx, flow: str) -> Response:
        q = request.query_params
        keys = secret_keys(self.svc.settings)
        try:
            state = verify(keys, PURPOSE, q.get("state", ""), self.svc.now())
        except ExpiredToken:
            raise HTTPProblem(400, ctx.t("state_expired")) from None
        except TokenError:
            raise HTTPProblem(400, ctx.t("state_bad")) from None
        if state.get("f") != flow:
            raise HTTPProblem(400, ctx.t("state_bad"))
        if state.get("s") != ctx.viewer.session_id:
            raise HTTPProblem(400, ctx.t("state_session"))
        pair_id = int(state["p"])
        access = resolve_access(self.svc, ctx.viewer, pair_id)
        if access is None:
            raise HTTPProblem(404, ctx.t("not_found"))
        if not access.may_edit:
            raise HTTPProblem(403, ctx.t("forbidden"))
        if q.get("error") or not q.get("code"):
            denied = q.get("error") in ("access_denied", "consent_required", "")
            return self._back(pair_id, "n_denied" if denied else "n_refused")
        account_id = int(state.get("a") or 0) or None
        if account_id is not None:
            account_service.account_of_pair(self.svc, pair_id, account_id)  # still this pair's
        client_id, conf = self._client(flow)
        form = {
            "grant_type": "authorization_code",
            "code": q["code"],
            "redirect_uri": redirect_uri(self.svc, request, flow),
            "client_id": client_id,
            "code_verifier": pkce_verifier(keys, str(state.get("n", ""))),
        }
        if conf.client_secret is not None:
            form["client_secret"] = conf.client_secret.resolve().get_secret_value()
        timeout = min(self.svc.settings.sync.http_timeout_seconds, 30.0)
        try:
            tokens = await run_in_threadpool(exchange_code, conf.token_url, form, timeout)
            saved = self._save(flow, conf, pair_id, state, tokens, account_id)
        except SignInFailed as exc:
            return self._back(pair_id, exc.note)
        return self._back(pair_id, "n_reconnected" if account_id or saved else "n_connected")

    def _save(
        self, flow: str, conf: Any, pair_id: int, state: dict[str, Any], tokens: Tokens,
        account_id: int | None,
    ) -> bool:  # fmt: skip
        """Store the account(s); True when an existing account was updated."""
        claims = tokens.claims
        client: dict[str, Any] = {"client_id": conf.client_id}
        if conf.client_secret is not None:
            client["client_secret"] = conf.client_secret.model_dump(mode="json", exclude_none=True)
        if flow == "google":
            identity = str(claims.get("email") or "")
            common = {"auth": "oauth", **client, "token_uri": conf.token_url}
            settings = {
                "google": common | {"api_root": conf.calendar_api_root, "calendar_id": "primary"},
                "gmail": common | {"api_root": conf.gmail_api_root, "user_id": "me"},
            }
            names = {"google": f"Google calendar {identity}", "gmail": f"Gmail {identity}"}
        else:
            identity = str(claims.get("preferred_username") or claims.get("email") or "")
            if not identity:
                raise SignInFailed("n_refused")
            token_url = urlsplit(conf.token_url)
            segment = token_url.path.strip("/").split("/")[0]
            tenant = str(claims.get("tid") or segment)
            common = {
                "user": identity, "tenant": tenant, **client,
                "authority_host": f"{token_url.scheme}://{token_url.netloc}",
                "graph_url": conf.graph_url,
            }  # fmt: skip
            settings = {"graph": common, "graph-mail": dict(common)}
            names = {"graph": f"Microsoft 365 calendar {identity}",
                     "graph-mail": f"Microsoft 365 mail {identity}"}  # fmt: skip
        if account_id is not None:
            account = account_service.account_of_pair(self.svc, pair_id, account_id)
            known = str(account.settings.get("identity") or account.settings.get("user") or "")
            if known and identity and known.lower() != identity.lower():
                raise SignInFailed("n_other_user")
            targets = [account.provider]
        else:
            parts = [p for p in state.get("w", ["calendar"]) if p in PROVIDERS[flow]]
            targets = [PROVIDERS[flow][p] for p in parts]
        updated = False
        for provider in targets:
            existing = account_id or account_service.find_account_by_identity(
                self.svc, pair_id, provider, identity
            )
            updated = updated or existing is not None
            account_service.save_oauth_account(
                self.svc, pair_id, provider=provider, name=names[provider].strip(),
                identity=identity, settings=settings[provider],
                refresh_token=tokens.refresh_token, account_id=existing,
            )  # fmt: skip
        return updated

    # ------------------------------------------------------------ password forms

    async def add(self, request: Request, ctx: Ctx) -> Response:
        assert ctx.form is not None
        form = {k: str(v) for k, v in ctx.form.items()}
        pair_id = ctx.pair.pair_id
        try:
            account_service.save_form_account(self.svc, pair_id, form.get("provider", ""), form)
        except ValueError as exc:  # the form again, with what to fix; no secret is kept
            from connectors.netguard import split_url_credentials

            kept = {k: v for k, v in form.items() if k not in ("password", "csrf_token")}
            for key in ("url", "location", "service_endpoint"):  # without user:pw@, ?token=
                kept[key] = split_url_credentials(kept.get(key, "")).url
            return await self.pages.accounts(request, ctx, form_error=str(exc), form=kept)
        return self._back(ctx.pair.pair_id, "n_added")

    async def check(self, request: Request, ctx: Ctx) -> Response:
        pair_id = ctx.pair.pair_id
        account_id = int(request.path_params["account_id"])
        account_service.account_of_pair(self.svc, pair_id, account_id)
        result = await run_in_threadpool(
            account_service.check_account, self.svc, pair_id, account_id
        )
        return self._back(pair_id, result.note)

    # ------------------------------------------------- editing, disabling, removing

    def _edit_page(
        self, request: Request, ctx: Ctx, account: AccountView, values: dict[str, Any],
        error: str = "",
    ) -> Response:  # fmt: skip
        fields = self._fields(account)
        return self.pages.render(
            request, ctx.viewer, "account_edit.html", status=400 if error else 200, ctx=ctx,
            account=account, values=values, form_error=error, fields=fields,
            elsewhere=len(fields) < len(fields_of(account.provider)) or not fields,
            form_providers=list(account_service.FORM_PROVIDERS),
        )  # fmt: skip

    def _account(self, request: Request, ctx: Ctx) -> AccountView:
        account_id = int(request.path_params["account_id"])
        return account_service.account_of_pair(self.svc, ctx.pair.pair_id, account_id)

    async def edit_form(self, request: Request, ctx: Ctx) -> Response:
        from assistant.services.pairs import public_settings

        account = self._account(request, ctx)
        shown = public_settings(account.settings)
        values = {k: str(v) for k, v in shown.items() if k in FIELDS and k != "password"}
        return self._edit_page(request, ctx, account, values | {"name": account.name})

    async def edit(self, request: Request, ctx: Ctx) -> Response:
        """Save the edit form: the provider's fields, checked as when adding (an empty
        field is removed; an empty password keeps the stored one)."""
        from connectors.netguard import split_url_credentials
        from connectors.settings import InvalidSettings

        assert ctx.form is not None
        account = self._account(request, ctx)
        form = {k: str(v) for k, v in ctx.form.items()}
        keys = [key for key, _, _ in self._fields(account)]
        given = {k: form.get(k, "").strip() for k in keys if k != "password"}
        changes: dict[str, Any] = {k: v for k, v in given.items() if v}
        removed = [k for k, v in given.items() if not v]
        if account.provider == "ics" and changes.get("location", "").lower().startswith(
            "webcal://"
        ):
            changes["location"] = "https://" + changes["location"][len("webcal://") :]
        password = form.get("password", "")
        if password:
            changes["password"] = account_service.keyring_for(self.svc.settings).seal(password)
        try:
            account_edits.edit_account(
                self.svc, account.id, changes, removed=removed,
                name=form.get("name", "").strip()[:100], pair_id=ctx.pair.pair_id,
                guard=account_service.net_policy(self.svc.settings),
            )  # fmt: skip
        except InvalidSettings as exc:
            error = account_service.form_problems(exc.problems, account.provider, True)
        except ValueError as exc:
            error = str(exc)
        else:
            return self._back(ctx.pair.pair_id, "n_edited")
        kept = {k: v for k, v in form.items() if k not in ("password", "csrf_token")}
        for key in ("url", "location", "service_endpoint"):  # without user:pw@, ?token=
            if key in kept:
                kept[key] = split_url_credentials(kept[key]).url
        return self._edit_page(request, ctx, account, kept, error)

    def _fields(self, account: AccountView) -> list[tuple[str, str, str]]:
        """The fields a user may change: none for a sign-in account (Reconnect), only the
        password for one the operator added (it may reach what users' accounts may not)."""
        from connectors.netguard import OPERATOR_KEY

        if signs_in(account):
            return []
        fields = fields_of(account.provider)
        if account.settings.get(OPERATOR_KEY):
            return [f for f in fields if f[0] == "password"]
        return fields

    async def disable(self, request: Request, ctx: Ctx) -> Response:
        account = self._account(request, ctx)
        await run_in_threadpool(
            account_edits.set_disabled, self.svc, account.id, True, pair_id=ctx.pair.pair_id
        )
        return self._back(ctx.pair.pair_id, "n_disabled")

    async def enable(self, request: Request, ctx: Ctx) -> Response:
        account = self._account(request, ctx)
        account_edits.set_disabled(self.svc, account.id, False, pair_id=ctx.pair.pair_id)
        return self._back(ctx.pair.pair_id, "n_enabled")

    async def remove_form(self, request: Request, ctx: Ctx) -> Response:
        """The confirm step: what goes, and the checkpoints that would stay behind."""
        account = self._account(request, ctx)
        written = account_edits.written_checkpoints(self.svc, account.id)
        return self.pages.render(request, ctx.viewer, "account_remove.html", ctx=ctx,
                                 account=account, written=written)  # fmt: skip

    async def remove(self, request: Request, ctx: Ctx) -> Response:
        account = self._account(request, ctx)
        await run_in_threadpool(  # confirmed on the page that named the checkpoints
            account_edits.remove_account, self.svc, account.id,
            pair_id=ctx.pair.pair_id, force=True,
        )  # fmt: skip
        return self._back(ctx.pair.pair_id, "n_removed")

    # -------------------------------------------------------------------- routes

    def routes(self) -> list[BaseRoute]:
        g = self.pages.g
        p = "/pairs/{pair_id:int}/accounts"
        a = p + "/{account_id:int}"
        return [
            Route(p, g(self.add, edit=True), methods=["POST"]),
            Route(f"{p}/google/connect", g(self.start_google, edit=True), methods=["POST"]),
            Route(f"{p}/microsoft/connect", g(self.start_microsoft, edit=True), methods=["POST"]),
            Route(f"{a}/check", g(self.check), methods=["POST"]),
            Route(f"{a}/reconnect", g(self.reconnect, edit=True), methods=["POST"]),
            Route(f"{a}/edit", g(self.edit_form, edit=True), methods=["GET"]),
            Route(f"{a}/edit", g(self.edit, edit=True), methods=["POST"]),
            Route(f"{a}/disable", g(self.disable, edit=True), methods=["POST"]),
            Route(f"{a}/enable", g(self.enable, edit=True), methods=["POST"]),
            Route(f"{a}/remove", g(self.remove_form, edit=True), methods=["GET"]),
            Route(f"{a}/remove", g(self.remove, edit=True), methods=["POST"]),
            Route("/oauth/google/callback", g(self.callback_google, pair=False), methods=["GET"]),
            Route(
                "/oauth/microsoft/callback", g(self.callback_microsoft, pair=False), methods=["GET"]
            ),
        ]

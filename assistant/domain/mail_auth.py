"""Is a mail really from its From address? Read the receiving server's verdict.

Mail to the service's inbox can create tasks in the manager's calendar, so a forged From
must not be enough. The receiving mail server checks SPF, DKIM and DMARC and writes its
verdict into an ``Authentication-Results`` header (RFC 8601), naming itself with an
*authserv-id* (``mx.google.com``, ``mail.example.org``; Microsoft 365 writes none).

``authenticated(headers, from_addr, trusted)`` reads the topmost such header whose
authserv-id is trusted (headers are added on top, so a header the sender forged lies
below the receiving server's own; the server should also remove forged ones with its id,
as Gmail, Microsoft 365, rspamd and OpenDMARC do), and accepts the mail when it says:

* ``dmarc=pass`` (for the From domain, when it names one), or
* ``dkim=pass`` with a signing domain (``header.d``, or ``header.i``'s domain) aligned
  with the From domain, or
* ``spf=pass`` with an envelope domain (``smtp.mailfrom``) aligned with it.

An explicit ``dmarc=fail`` refuses the mail whatever else passed: the From domain's owner
asked for exactly that. Aligned is relaxed: the same domain, or one a subdomain of the
other. A property value is a quoted string or a mailbox whose local part may be quoted
(``smtp.mailfrom="alex@example.com"@evil.com`` is a mailbox at evil.com). Pure code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

_FOLD = re.compile(r"\r?\n[ \t]+")
# a value: quoted strings and plain characters run together ("local"@domain is one value)
_PROP = re.compile(r'([A-Za-z0-9_-]+)\.([A-Za-z0-9_.-]+)\s*=\s*((?:"(?:[^"\\]|\\.)*"|[^\s;"])+)')
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_RESULT = re.compile(r"\s*([A-Za-z0-9_-]+)(?:/[0-9]+)?\s*=\s*([A-Za-z0-9_-]+)")


@dataclass(frozen=True, slots=True)
class Result:
    method: str  # spf, dkim, dmarc, ...
    result: str  # pass, fail, none, ...
    props: dict[str, str] = field(default_factory=dict)  # "header.d" → "example.com"


@dataclass(frozen=True, slots=True)
class AuthenticationResults:
    authserv_id: str  # "" when the header names none (Microsoft 365)
    results: tuple[Result, ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    why: str


def _uncomment(text: str) -> str:
    """Drop (comments), nested ones too, outside quoted strings."""
    out, depth, quoted = [], 0, False
    for ch in text:
        if ch == '"' and depth == 0:
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
            continue
        elif not quoted and ch == ")" and depth:
            depth -= 1
            continue
        if depth == 0:
            out.append(ch)
    return "".join(out)


def _split(text: str) -> list[str]:
    """Split at semicolons outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    return [*parts, "".join(current)]


def parse(value: str) -> AuthenticationResults:
    """One ``Authentication-Results`` header value."""
    parts = [p.strip() for p in _split(_uncomment(_FOLD.sub(" ", value)))]
    authserv = ""
    if parts and "=" not in parts[0]:
        authserv = (parts.pop(0).split() or [""])[0].lower()
    results = []
    for part in parts:
        found = _RESULT.match(part)
        if not found:
            continue  # "none", or something unreadable: no result
        props = {
            f"{ptype.lower()}.{prop.lower()}": _unquote(v)
            for ptype, prop, v in _PROP.findall(part[found.end() :])
        }
        results.append(Result(found.group(1).lower(), found.group(2).lower(), props))
    return AuthenticationResults(authserv, tuple(results))


def _unquote(value: str) -> str:
    """A value that is one quoted string → its content; anything else as it stands."""
    whole = _QUOTED.fullmatch(value)
    return re.sub(r"\\(.)", r"\1", whole.group(1)) if whole else value


def _domain(value: str) -> str:
    """``alex@Example.com``, ``<alex@example.com>``, ``@example.com``, ``example.com`` →
    ``example.com``; ``"alex@example.com"@evil.com`` → ``evil.com`` (the @ inside the
    quoted local part is not the domain's)."""
    value = _QUOTED.sub('""', value.strip().strip("<>"))
    return value.rsplit("@", 1)[-1].strip().strip(".").lower()


def _aligned(a: str, b: str) -> bool:
    return bool(a and b) and (a == b or a.endswith("." + b) or b.endswith("." + a))


def authenticated(headers: Iterable[str], from_addr: str, trusted: Sequence[str]) -> Verdict:
    """Whether the topmost trusted ``Authentication-Results`` header vouches for From."""
    wanted = {t.strip().lower() for t in trusted}
    mine = next((h for h in map(parse, headers) if h.authserv_id in wanted), None)
    if mine is None:
        return Verdict(False, "no Authentication-Results from a trusted server")
    domain = _domain(from_addr)
    said = ", ".join(f"{r.method}={r.result}" for r in mine.results) or "nothing"
    refused = Verdict(False, f"{mine.authserv_id or 'the server'} says {said} for {domain}")
    if any(r.method == "dmarc" and r.result == "fail" for r in mine.results):
        return refused  # the domain's owner says no: no other pass overrides it
    for r in mine.results:
        if r.result != "pass":
            continue
        if r.method == "dmarc" and _domain(r.props.get("header.from", domain)) == domain:
            return Verdict(True, "dmarc=pass")
        if r.method == "dkim":
            signer = r.props.get("header.d") or _domain(r.props.get("header.i", ""))
            if _aligned(_domain(signer), domain):
                return Verdict(True, f"dkim=pass for {signer}")
        if r.method == "spf":
            envelope = r.props.get("smtp.mailfrom", "")
            if _aligned(_domain(envelope), domain):
                return Verdict(True, f"spf=pass for {_domain(envelope)}")
    return refused

"""``body_text`` reads a message from a compat32 parse and its own walk of the parts; it
must give what the stdlib way gave (a parse with the default policy, ``get_body``,
``get_content``), kept below as the reference (``reference_body_text``, the code it
replaced; ``html_to_text`` did not change and is the product's). Compared on every mail of ``../shared/evaldata``
(skipped when absent) and on generated MIME messages: multipart/alternative, related (with
and without a ``start`` root), mixed with attachments, nested, attached messages, odd and
unknown charsets, quoted-printable and base64 (broken too), folded and hostile headers,
HTML with quotes; with ``quotes`` off and on. Whatever the reference raises, the new code
raises too (same type)."""

from __future__ import annotations

import base64
import contextlib
import os
import quopri
from collections.abc import Callable
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.archive import text as text_module
from connectors.archive.text import MAX_TEXT_CHARS, body_text, html_to_text
from connectors.base import DEFAULT_LIMITS, InvalidData, ParseLimits
from connectors.mime import read_message

EVALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "evaldata"
MAILDIR = EVALDATA / "enron" / "maildir"
# Generated messages per property: quick by default, ``FUZZ_EXAMPLES=1500`` for a long run.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))

# ------------------------------------------------- the reference: the code body_text replaced


def _part_text(part: Message) -> str:
    content: object = None
    with contextlib.suppress(Exception):  # an unknown charset, a broken transfer encoding
        assert isinstance(part, EmailMessage)
        content = part.get_content()
    if isinstance(content, str):
        return content
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace")
        except (LookupError, UnicodeError):  # the one change: a codec that fails (idna)
            return payload.decode("utf-8", "replace")
    return ""


def reference_body_text(
    raw: bytes, limits: ParseLimits = DEFAULT_LIMITS, *, quotes: bool = False
) -> str:
    try:
        msg = read_message(raw, limits)
    except InvalidData:
        return ""
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
    except Exception:
        part = None
    if part is None:
        return ""
    text = _part_text(part)
    if part.get_content_subtype() == "html":
        text = html_to_text(text, quotes=quotes)
    return text.replace("\r\n", "\n")[:MAX_TEXT_CHARS]


# ------------------------------------------------------------------------------ comparing


def _outcome(read: Callable[..., str], raw: bytes, quotes: bool) -> tuple[str, str]:
    try:
        return "text", read(raw, quotes=quotes)
    except Exception as exc:  # the reference's failures are part of what it does
        return "raised", type(exc).__name__


def assert_same(raw: bytes) -> None:
    for quotes in (False, True):
        expected = _outcome(reference_body_text, raw, quotes)
        assert _outcome(body_text, raw, quotes) == expected, (quotes, raw[:2000])


def _fast(raw: bytes) -> bool:
    """Whether ``body_text`` reads ``raw`` without the default policy's parse."""
    try:
        text_module._compat32_body(raw)
    except text_module._NotSimple:
        return False
    except Exception:
        return True
    return True


# ---------------------------------------------------------------------------- real mail


@pytest.mark.evaldata
@pytest.mark.skipif(not MAILDIR.is_dir(), reason=f"evaldata not present at {MAILDIR}")
@pytest.mark.parametrize(
    "every", [pytest.param(1, marks=pytest.mark.long, id="all"), pytest.param(10, id="tenth")]
)
def test_every_mail_of_the_evaldata_reads_as_the_stdlib_read_it(every: int) -> None:
    """Every MIME message of the archives, and every ``every``-th plain one (``make test``
    reads a tenth of the plain ones; ``make test-long`` all of them)."""
    files = sorted(p for p in MAILDIR.rglob("*") if p.is_file())
    assert len(files) > 13_000
    multipart = 0
    for n, path in enumerate(files):
        raw = path.read_bytes()
        mime = b"multipart/" in raw.lower()
        if mime or n % every == 0:
            assert_same(raw)
        multipart += mime
    assert multipart > 20  # the archives' MIME mail was among them


# ------------------------------------------------------------------- generated messages

WORDS = ["lease", "contract", "Привет", "Grüße", "café", "€", "naïve", "board", "日本", "ok"]
LINES = st.lists(
    st.one_of(
        st.lists(st.sampled_from(WORDS), max_size=8).map(" ".join),
        st.sampled_from(["> quoted line", ">> deeper", "On Monday, Sam wrote:", "",
                         "-----Original Message-----", "From: sam@example.com", " ",
                         "trailing \r", "tab\there", "=3D not qp", "--b1", "--b1--"]),
    ),
    min_size=1,
    max_size=8,
).map("\n".join)
HTML_BITS = [
    "<p>", "</p>", "<br>", "<br/>", "<div class=x>", "</div>", "<blockquote>",
    "</blockquote>", '<BLOCKQUOTE type="cite">', "</BlockQuote >", "<script>var a;</script>",
    "<style>p{}</style>", "<!-- note -->", "<head><title>T</title></head>", "&amp;", "&nbsp;",
    "&#160;", "&lt;b&gt;", "&bogus;", "<tr><td>cell</td></tr>", "<li>item", "<h2>Head</h2>",
    "<", ">", "\u00a0", "\n", "\r\n", "  ", "<ul>", "</ol>", "<title>x", "<!--", "-->",
]
HTML = st.lists(st.one_of(st.sampled_from(HTML_BITS), st.sampled_from(WORDS)), max_size=30).map(
    "".join
)
# Each list: the usual values first, several times (most messages are read the fast way),
# then the odd ones (read the default policy's way, or failing as the reference fails).
CHARSETS = 3 * [None, "utf-8", "UTF-8", '"utf-8"', "iso-8859-1", "windows-1252", "koi8-r",
                "us-ascii"] + [
    "utf-16", "x-unknown", "", "<utf-8>", "base64", "idna", "utf-7", "utf-8'en'x", '"utf 8"',
    "=?utf-8?q?x?=",
]  # fmt: skip
CTES = 3 * [None, "7bit", "8bit", "quoted-printable", "base64"] + [
    "binary", "Base64", "BASE64 ", "x-uuencode", "bogus", "base64; x=y",
]  # fmt: skip
DISPOSITIONS = 8 * [None] + 2 * ["inline", "attachment", 'attachment; filename="a.pdf"'] + [
    "Attachment", "attachment; filename*=utf-8''%C3%A9.pdf", "attachment filename=x",
    "inline; filename=\"=?utf-8?q?caf=C3=A9?=\"", "attachment;\r\n\tsize=3",
    "\"attachment\"", "attachment (comment)", "attachm\xe9nt",
]  # fmt: skip
SEPARATORS = ["; ", ";", ";\r\n\t", ";\n ", " ; ", ";;"]
NEWLINES = ["\r\n", "\n"]


def _encoded(text: str, charset: str | None, cte: str | None, broken: int) -> bytes:
    name = (charset or "utf-8").strip('"<>')
    try:
        data = text.encode(name, "replace")
    except (LookupError, UnicodeError, TypeError):
        data = text.encode("utf-8")
    kind = (cte or "").strip().lower()
    if kind == "base64":
        data = base64.encodebytes(data)
    elif kind == "quoted-printable":
        data = quopri.encodestring(data)
    if broken == 1:
        data = data[: len(data) // 2 + 1]
    elif broken == 2:
        data = data[:3] + b"=Z!*\xff" + data[3:]
    return data


@st.composite
def leaf(draw: st.DrawFn) -> tuple[list[str], bytes]:
    kind = draw(st.sampled_from(3 * ["text/plain", "text/html", "application/pdf", None]
                                + ["TEXT/HTML", "Text/Plain", "text/enriched", "image/png",
                                   "text", "text/plain/x", "text /plain"]))  # fmt: skip
    charset = draw(st.sampled_from(CHARSETS))
    cte = draw(st.sampled_from(CTES))
    headers: list[str] = []
    if kind is not None:
        params = f'{draw(st.sampled_from(SEPARATORS))}charset={charset}' if charset else ""
        if draw(st.booleans()):
            params += f'{draw(st.sampled_from(SEPARATORS))}name="{draw(st.sampled_from(WORDS))}"'
        headers.append(f"Content-Type: {kind}{params}")
    if cte is not None:
        headers.append(f"Content-Transfer-Encoding: {cte}")
    if (disposition := draw(st.sampled_from(DISPOSITIONS))) is not None:
        headers.append(f"Content-Disposition: {disposition}")
    body = draw(st.sampled_from(WORDS)) + (draw(HTML) if kind and "html" in kind.lower()
                                           else draw(LINES))  # fmt: skip
    return headers, _encoded(body, charset, cte, draw(st.sampled_from(6 * [0] + [1, 2])))


def _joined(headers: list[str], body: bytes, nl: str) -> bytes:
    head = nl.join(headers).replace("\r\n", "\n").replace("\n", nl)
    return head.encode("utf-8", "surrogateescape") + (nl * 2).encode() + body


@st.composite
def multipart(draw: st.DrawFn, children: st.SearchStrategy[tuple[list[str], bytes]]
              ) -> tuple[list[str], bytes]:  # fmt: skip
    subtype = draw(st.sampled_from(3 * ["alternative", "related", "mixed"]
                                   + ["digest", "Alternative", "report", "signed"]))
    boundary = draw(st.sampled_from(3 * ["b", "----=_Part_0_1."] + ["b 2", "=?x?=", "b1--"]))
    if boundary != "b1--":  # a nested multipart mostly has a boundary of its own
        boundary += str(draw(st.integers(0, 2**20)))
    quoted = draw(st.booleans()) or " " in boundary
    value = f'"{boundary}"' if quoted else boundary
    params = f"{draw(st.sampled_from(SEPARATORS))}boundary={value}"
    if subtype == "related" and draw(st.booleans()):
        params += f"{draw(st.sampled_from(SEPARATORS))}start=\"<root@x>\""
    if draw(st.sampled_from(9 * [False] + [True])):
        params = ""  # a multipart without a boundary
    nl = draw(st.sampled_from(NEWLINES))
    parts = draw(st.lists(children, min_size=draw(st.sampled_from([0, 1, 1, 2])), max_size=4))
    out = b""
    if draw(st.booleans()):
        out += f"a preamble{nl}".encode()
    for headers, body in parts:
        if draw(st.sampled_from(5 * [False] + [True])):
            headers = [*headers, "Content-ID: <root@x>"]
        out += f"--{boundary}{nl}".encode() + _joined(headers, body, nl) + nl.encode()
    ending = draw(st.sampled_from(["close", "close", "none", "ws"]))
    if ending == "close":
        out += f"--{boundary}--{nl}".encode()
    elif ending == "ws":
        out += f"--{boundary}-- \t{nl}epilogue{nl}".encode()
    return [f"Content-Type: multipart/{subtype}{params}"], out


def _attached(child: tuple[list[str], bytes]) -> tuple[list[str], bytes]:
    headers, body = child
    return ["Content-Type: message/rfc822"], _joined(["Subject: inner", *headers], body, "\r\n")


PARTS = st.recursive(
    leaf(),
    lambda inner: st.one_of(*4 * [multipart(inner)], inner.map(_attached)),
    max_leaves=8,
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    headers, body = draw(st.one_of(multipart(PARTS), multipart(PARTS), leaf(), PARTS))
    top = ["From: sam@example.com", "To: alex@example.com", "Subject: hello", *headers]
    if draw(st.booleans()):
        top.append("MIME-Version: 1.0")
    if draw(st.sampled_from(4 * [False] + [True])):  # a header folded, or one without its blank line
        top = [h.replace("; ", ";\r\n ", 1) for h in top]
    return _joined(top, body, draw(st.sampled_from(NEWLINES)))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(messages())
def test_generated_messages_read_as_the_stdlib_read_them(raw: bytes) -> None:
    assert_same(raw)


TYPICAL = st.builds(
    lambda plain, markup, attach, nested: _typical(plain, markup, attach, nested),
    LINES, HTML, st.booleans(), st.booleans(),
)


def _typical(plain: str, markup: str, attach: bool, nested: bool) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "sam@example.com", "alex@example.com", "Lease"
    if plain:
        msg.set_content(plain)
    if markup or not plain:
        if plain:
            msg.add_alternative(markup, subtype="html")
        else:
            msg.set_content(markup, subtype="html", cte="quoted-printable")
    if nested and markup:
        page = msg.get_body(("html",))
        assert isinstance(page, EmailMessage)
        page.add_related(b"\x89PNG", maintype="image", subtype="png", cid="<img@x>")
    if attach:
        msg.add_attachment(b"%PDF" * 100, maintype="application", subtype="pdf",
                           filename="deck.pdf")  # fmt: skip
    for n, part in enumerate(msg.walk()):
        if part.is_multipart():
            part.set_boundary(f"----=_Part_{n}_1.2")  # not a random one
    return msg.as_bytes()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(TYPICAL)
def test_mail_as_mail_programs_send_it_is_read_without_the_default_policy(raw: bytes) -> None:
    assert_same(raw)
    assert _fast(raw)


def test_what_the_fast_read_leaves_to_the_stdlib_is_still_read_as_before() -> None:
    raw = (
        b"Content-Type: multipart/related; boundary=b; start=\"<r@x>\"\r\n\r\n"
        b"--b\r\nContent-Type: image/png\r\n\r\nPNG\r\n"
        b"--b\r\nContent-ID: <r@x>\r\nContent-Type: text/plain\r\n\r\nroot text\r\n--b--\r\n"
    )
    assert not _fast(raw)
    assert body_text(raw) == reference_body_text(raw) == "root text"
    encoded = (
        b"Content-Type: text/plain; charset*=utf-8''utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes("café".encode())
    )
    assert not _fast(encoded)
    assert body_text(encoded) == reference_body_text(encoded)


def test_a_related_part_that_is_no_multipart_fails_as_get_body_fails() -> None:
    """``get_body`` takes the first character of such a part's text for its root part
    and fails: the text/plain after it is never reached ("" both ways)."""
    raw = (
        b"Content-Type: multipart/mixed; boundary=m\r\n\r\n"
        b"--m\r\nContent-Type: multipart/related\r\n\r\nno boundary here\r\n"
        b"--m\r\nContent-Type: text/plain\r\n\r\nthe text\r\n--m--\r\n"
    )
    assert _fast(raw)
    assert body_text(raw) == reference_body_text(raw) == ""
    alone = raw.replace(b"multipart/related", b"multipart/alternative")
    assert body_text(alone) == reference_body_text(alone) == "the text"


# --------------------------------------------- the header forms both policies read alike

_COMPAT32 = BytesParser(policy=policy.compat32)
_DEFAULT = BytesParser(policy=policy.default)
_HEADER_BITS = st.sampled_from(
    [*" \t;=\"'\\%*()<>@,:/?[]!#$&+.^_`{|}~-aZ09", "\r\n ", "\n\t", "\r ", "=?", "?=",
     "utf-8", "text", "plain", "attachment", "charset", "boundary", "start", "\x80", "\xe9"]
)  # fmt: skip
_STARTS = ["text/plain", "Text/HTML", "multipart/mixed", "attachment", "inline",
           "\r\n text/plain", "base64", "a'b/c%d"]  # fmt: skip
_PARAMETERS = st.tuples(
    st.sampled_from([*SEPARATORS, " "]),
    st.sampled_from(["charset", "Charset", "boundary", "start", "name", "x"]),
    st.sampled_from(["=", " = ", "=\r\n ", ""]),
    st.lists(_HEADER_BITS, max_size=6).map("".join),
).map("".join)
_HEADER_VALUES = st.one_of(
    st.lists(_HEADER_BITS, max_size=25).map("".join),
    st.tuples(st.sampled_from(_STARTS), st.lists(_PARAMETERS, max_size=3).map("".join)).map(
        "".join
    ),
)


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(_HEADER_VALUES)
def test_the_simple_header_forms_read_alike_in_both_policies(value: str) -> None:
    for name, form in text_module._SIMPLE.items():
        if not form.fullmatch(value):
            continue
        raw = f"{name}: {value}\r\n\r\nbody\r\n".encode("utf-8", "surrogateescape")
        old, new = _DEFAULT.parsebytes(raw), _COMPAT32.parsebytes(raw)
        assert new.get_content_type() == old.get_content_type()
        assert new.get_boundary() == old.get_boundary()
        assert new.get_content_charset() == old.get_content_charset()
        for param in ("charset", "boundary", "start", "name", "x"):
            assert new.get_param(param) == old.get_param(param)
            assert new.get_param(param, header=name) == old.get_param(param, header=name)
        assert (new.get_content_disposition() == "attachment") == old.is_attachment()
        if name == "content-transfer-encoding":  # what ``get_payload`` compares
            assert str(new.get(name)).lower() == str(old.get(name)).lower()

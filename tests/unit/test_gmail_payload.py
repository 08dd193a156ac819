"""The text of a Gmail ``format=full`` payload (``connectors.google.payload``): the part
``email``'s ``get_body`` would choose, decoded within bounds, and nothing fetched or
guessed for what Gmail did not send inline; hostile trees cost little."""

from __future__ import annotations

import base64
from typing import Any

from connectors.archive.text import MAX_TEXT_CHARS, body_text
from connectors.google.payload import MAX_PARTS, MAX_TEXT_BYTES, payload_text


def data(text: str | bytes, *, padded: bool = False) -> str:
    raw = text.encode() if isinstance(text, str) else text
    encoded = base64.urlsafe_b64encode(raw).decode()
    return encoded if padded else encoded.rstrip("=")


def part(mime: str, body: str | bytes | None = None, *, headers: dict[str, str] | None = None,
         parts: list[dict[str, Any]] | None = None, attachment: bool = False,
         filename: str = "") -> dict[str, Any]:  # fmt: skip
    node: dict[str, Any] = {"partId": "", "mimeType": mime, "filename": filename,
                            "headers": [{"name": k, "value": v} for k, v in (headers or {}).items()]}  # fmt: skip
    if parts is not None:
        node["parts"], node["body"] = parts, {"size": 0}
    elif attachment:
        node["body"] = {"attachmentId": "ANGjdJ-x", "size": 10}
    else:
        node["body"] = {"size": len(body or ""), "data": data(body or "")}
    return node


def test_the_plain_part_of_an_alternative_is_chosen_and_decoded_with_its_charset() -> None:
    tree = part("multipart/alternative", parts=[
        part("text/plain", "Grüße aus Köln\r\nzweite Zeile".encode("latin-1"),
             headers={"Content-Type": 'text/plain; charset="ISO-8859-1"'}),
        part("text/html", "<p>other</p>"),
    ])  # fmt: skip
    assert payload_text(tree) == "Grüße aus Köln\nzweite Zeile"


def test_html_only_is_read_as_text_and_attachments_are_skipped() -> None:
    tree = part("multipart/mixed", parts=[
        part("text/plain", attachment=True, filename="notes.txt"),
        part("multipart/related", parts=[
            part("text/html", "<html><body><p>See <b>the</b> deck</p></body></html>"),
            part("image/png", attachment=True, filename="logo.png"),
        ]),
        part("text/plain", "an attached text",
             headers={"Content-Disposition": "attachment; filename=x.txt"}),
    ])  # fmt: skip
    assert payload_text(tree) == "See the deck"


def test_the_same_text_as_an_archive_reads_from_the_whole_message() -> None:
    raw = (b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
           b"Caf=C3=A9 at nine,\r\nplease.\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--b--\r\n")  # fmt: skip
    tree = part("multipart/alternative", parts=[
        part("text/plain", "Café at nine,\r\nplease.".encode(),
             headers={"Content-Type": "text/plain; charset=utf-8"}),
        part("text/html", "<p>x</p>"),
    ])  # fmt: skip
    assert payload_text(tree) == body_text(raw)


def test_padding_either_way_and_nothing_claimed_for_what_was_not_sent() -> None:
    assert payload_text(part("text/plain", "ab")) == "ab"
    assert (
        payload_text({"mimeType": "text/plain", "body": {"data": data("ab", padded=True)}}) == "ab"
    )
    # The text part came as an attachment id (not inline): no text, not an empty one.
    assert payload_text(part("text/plain", attachment=True)) is None
    assert payload_text({"mimeType": "text/plain", "body": {"data": "not base64 ~~"}}) is None
    assert payload_text({"mimeType": "text/plain", "body": {"data": "ab€"}}) is None
    assert payload_text(part("image/png", attachment=True, filename="a.png")) == ""
    assert payload_text({"mimeType": "text/plain"}) is None
    unknown = part(
        "text/plain", "plain words", headers={"Content-Type": "text/plain; charset=x-nope"}
    )
    assert payload_text(unknown) == "plain words"
    failing = part(  # a codec that raises whatever the error handler
        "text/plain", "plain words", headers={"Content-Type": "text/plain; charset=idna"}
    )
    assert payload_text(failing) == "plain words"
    for junk in (None, [], "text", {"parts": "x", "mimeType": "multipart/mixed"}):
        assert payload_text(junk) == ""


def test_bounds_on_size_depth_and_parts() -> None:
    long = "word " * (MAX_TEXT_BYTES // 2)
    text = payload_text(part("text/plain", long))
    assert text is not None and len(text) == MAX_TEXT_CHARS
    deep = part("text/plain", "too deep")
    for _ in range(30):
        deep = part("multipart/mixed", parts=[deep])
    assert payload_text(deep) == ""
    wide = part("multipart/mixed", parts=[part("image/png", attachment=True)] * (MAX_PARTS + 5)
                + [part("text/plain", "past the last part looked at")])  # fmt: skip
    assert payload_text(wide) == ""

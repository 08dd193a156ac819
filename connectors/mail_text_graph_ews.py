"""The text keys of a message body read from Microsoft Graph or Exchange (EWS).

Both providers hand the body over as a string with its type (Graph ``body.contentType``
``text`` or ``html``; EWS ``BodyType`` ``Text`` or ``HTML``). Mail imported from archives
gets its keys from its text (``connectors.archive.mailbox``); a message read from Graph
or EWS gets the same keys (``assistant.domain.latency.quotes.text_keys``) from its body:
copies of one message then count once, and a reply's ``quote_keys`` say which message's
text it quotes (issue 14, points 2 and 3).

Bounds: at most ``MAX_MARKUP_CHARS`` of HTML are converted, and the first
``MAX_TEXT_CHARS`` (``connectors.archive.text``: 100,000) characters of text (with LF
line ends) are keyed, as for archived mail. The body itself is never kept, only the
short digests ``text_keys`` makes of its words.
"""

from __future__ import annotations

from assistant.domain.latency.quotes import text_keys
from connectors.archive.text import MAX_TEXT_CHARS, text_of

MAX_MARKUP_CHARS = 10 * MAX_TEXT_CHARS  # HTML taken for conversion: markup outweighs text


def body_text(content: object, content_type: object) -> str:
    """The text of a provider's body: text as it is, HTML crudely as text
    (``html_to_text``), bounded; "" for a body that is not a string."""
    if not isinstance(content, str):
        return ""
    if str(content_type or "").strip().lower() == "html":
        return text_of(content[:MAX_MARKUP_CHARS], True, quotes=True)
    # enough for MAX_TEXT_CHARS once CRLF line ends are LF
    return text_of(content[: 2 * MAX_TEXT_CHARS], False)


def body_keys(content: object, content_type: object) -> dict[str, str]:
    """``text_keys`` of the body (``body_text``), for ``MessageData.extra``; none when
    the reply carried no body (an empty body has keys, as an empty archived one has)."""
    if not isinstance(content, str):
        return {}
    return text_keys(body_text(content, content_type))

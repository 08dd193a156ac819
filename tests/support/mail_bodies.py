"""Message bodies as Exchange serves them, for the protocol-level Graph and EWS servers.

Exchange keeps a body as it was written (text or HTML) and converts it when a client asks
for the other form: HTML becomes text with block elements breaking lines, tags dropped and
entities decoded, quoted (``blockquote``) text kept; text becomes HTML in Exchange's
``<html><head>...<body><div>`` page with a ``<br>`` per line break.
"""

from __future__ import annotations

import html
import re

_HTML_PAGE = (
    '<html><head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
    "\r\n</head>\r\n<body>\r\n<div>{}</div>\r\n</body>\r\n</html>\r\n"
)
_BLOCK = re.compile(r"<br\s*/?>|</?(?:p|div|tr|li|h[1-6]|table|blockquote|hr)\b[^>]*>", re.I)
_DROPPED = re.compile(r"<(script|style|head|title)\b.*?</\1\s*>|<!--.*?-->", re.I | re.S)


def html_as_text(markup: str) -> str:
    """An HTML body as Exchange's text version of it (CRLF line ends)."""
    text = _BLOCK.sub("\r\n", _DROPPED.sub("", markup))
    text = html.unescape(re.sub(r"<[^>]+>", "", text)).replace("\u00a0", " ")
    return re.sub(r"(?:\r\n[ \t]*){3,}", "\r\n\r\n", text).strip()


def text_as_html(text: str) -> str:
    """A text body as Exchange's HTML version of it."""
    lines = "<br>\r\n".join(html.escape(line) for line in text.splitlines())
    return _HTML_PAGE.format(lines)


def as_text(body: str, html_body: bool) -> str:
    return html_as_text(body) if html_body else body


def as_html(body: str, html_body: bool) -> str:
    return body if html_body else text_as_html(body)

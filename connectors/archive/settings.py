"""The settings of a mail archive: a Maildir folder (``maildir``) or an mbox file
(``mbox``). Local files: only for accounts the operator adds with the CLI."""

from __future__ import annotations

from connectors.settings import AccountSettings, ExistingFile, ExistingFolder


class MaildirSettings(AccountSettings):
    """``path``: the Maildir; ``folders``: the sub-folders read (default: all)."""

    path: ExistingFolder
    folders: list[str] | None = None


class MboxSettings(AccountSettings):
    path: ExistingFile

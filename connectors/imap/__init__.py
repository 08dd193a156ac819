"""IMAP mailboxes."""

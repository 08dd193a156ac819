"""Shared fixtures live in tests/support/ and are registered here."""

pytest_plugins = [
    "tests.support.databases",
    "tests.support.smtp",
    "tests.support.radicale",
    "tests.support.queue",
    "tests.support.xandikos",
    "tests.support.dovecot",
    "tests.support.browser",  # one browser for the session, whichever module asks first
]

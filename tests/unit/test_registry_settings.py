"""Each provider's typed settings model: what it takes, what it refuses and how it says so.

The registry opens every connector through these models; the CLI and the web form add
accounts with them (``Adding``). A refusal names the field and the reason, never a value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from config.settings import SecretRef
from connectors.archive.settings import MaildirSettings, MboxSettings
from connectors.base import ConnectorError
from connectors.caldav.settings import CalDavSettings, IcsSettings
from connectors.ews.settings import EwsCalendarSettings, EwsMailSettings
from connectors.google.settings import GmailSettings, GoogleCalendarSettings
from connectors.graph.settings import GraphMailSettings, GraphSettings
from connectors.imap.settings import ImapSettings
from connectors.netguard import NetPolicy
from connectors.registry import (
    SETTINGS,
    UnknownProvider,
    open_calendar,
    open_calendar_writer,
    open_mailbox,
    read_settings,
)
from connectors.settings import Adding, InvalidSettings

SECRET = "hunter2-do-not-show"  # a value that must never appear in an error
USER = Adding(NetPolicy())  # an account a user adds from the web app
OPERATOR = Adding()  # an account the operator adds with the CLI


def refused(provider: str, data: dict[str, Any], check: Adding | None = None) -> dict[str, str]:
    """The fields refused and why (and no refusal ever shows the secret)."""
    with pytest.raises(InvalidSettings) as caught:
        read_settings(provider, data, check)
    error = caught.value
    assert SECRET not in str(error)
    assert isinstance(error, ConnectorError) and isinstance(error, ValueError)
    return dict(error.problems)


# -------------------------------------------------------------------- every provider


VALID: dict[str, dict[str, Any]] = {
    "ics": {"location": "https://example.com/cal.ics", "password": {"env": "X"}},
    "caldav": {"url": "https://dav.example.com/cal/", "username": "a", "password": {"env": "X"}},
    "ews": {"mailbox": "a@example.com", "service_endpoint": "https://mail.example.com/EWS/Exchange.asmx",
            "username": "a", "password": {"encrypted": "token"}, "zone": "Europe/Berlin"},
    "ews-mail": {"mailbox": "a@example.com", "autodiscover": True, "folders": ["inbox"]},
    "graph": {"user": "a@example.com", "tenant": "t", "client_id": "c",
              "client_secret": {"env": "S"}},
    "graph-mail": {"user": "a@example.com", "tenant": "t", "client_id": "c",
                   "refresh_token": {"encrypted": "x"}, "header_senders": ["b@example.com"]},
    "google": {"auth": "oauth", "client_id": "c", "refresh_token": {"env": "R"}},
    "gmail": {"auth": "service_account", "service_account_key": {"file": "/k.json"},
              "subject": "a@example.com", "labels": ["INBOX"]},
    "imap": {"host": "imap.example.com", "port": 993, "username": "a", "password": {"env": "P"}},
    "maildir": {"path": "/var/mail/a"},
    "mbox": {"path": "/var/mail/a.mbox"},
}  # fmt: skip


def test_every_provider_has_a_model() -> None:
    assert set(SETTINGS) == set(VALID)


@pytest.mark.parametrize("provider", sorted(VALID))
def test_valid_settings_are_read_and_stored_as_given(provider: str) -> None:
    conf = read_settings(provider, VALID[provider])
    assert conf.stored() == VALID[provider]
    assert read_settings(provider, conf.stored()) == conf  # what is stored reads back


@pytest.mark.parametrize("provider", sorted(VALID))
def test_an_unknown_key_is_refused_by_name(provider: str) -> None:
    assert refused(provider, {**VALID[provider], "pasword": {"env": "X"}}) == {
        "pasword": "not a setting of this provider"
    }


@pytest.mark.parametrize("provider", sorted(VALID))
def test_the_models_are_frozen(provider: str) -> None:
    conf = read_settings(provider, VALID[provider])
    with pytest.raises(ValueError, match="frozen"):
        conf.added_by_operator = True  # type: ignore[misc]


def test_an_unknown_provider() -> None:
    with pytest.raises(UnknownProvider, match="unknown provider 'outlook'"):
        read_settings("outlook", {})


# ------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("provider", "key"),
    [("caldav", "password"), ("ews", "client_secret"), ("graph", "refresh_token"),
     ("google", "client_secret"), ("imap", "password"), ("ics", "url_secret")],
)  # fmt: skip
def test_a_secret_given_as_its_value_is_refused_without_showing_it(provider: str, key: str) -> None:
    problems = refused(provider, {**VALID[provider], key: SECRET})
    assert problems == {key: "must be a reference (env, file, command or encrypted), not a value"}


def test_a_secret_reference_names_exactly_one_source() -> None:
    problems = refused("caldav", {**VALID["caldav"], "password": {"env": "A", "file": SECRET}})
    assert list(problems) == ["password"] and "exactly one" in problems["password"]


def test_every_kind_of_reference_is_kept() -> None:
    for ref in ({"env": "A"}, {"file": "/run/secrets/a"}, {"command": "pass show a"},
                {"encrypted": "v1.abc"}):  # fmt: skip
        conf = read_settings("caldav", {**VALID["caldav"], "password": ref})
        assert isinstance(conf, CalDavSettings) and isinstance(conf.password, SecretRef)
        assert conf.stored()["password"] == ref


def test_the_operator_mark_must_be_a_real_true() -> None:
    conf = read_settings("ics", {**VALID["ics"], "added_by_operator": True})
    assert conf.added_by_operator is True
    assert "added_by_operator" in refused("ics", {**VALID["ics"], "added_by_operator": "true"})


# --------------------------------------------------------------------------- ports


def test_a_port_given_as_text_becomes_a_number() -> None:
    conf = read_settings("imap", {**VALID["imap"], "port": "143"})
    assert isinstance(conf, ImapSettings) and conf.port == 143
    assert conf.stored()["port"] == 143


@pytest.mark.parametrize(
    ("port", "reason"),
    [("abc", "valid integer"), ("99999", "less than or equal to 65535"),
     (0, "greater than or equal to 1"), ("9.5", "valid integer")],
)  # fmt: skip
def test_a_port_is_a_whole_number_in_range(port: Any, reason: str) -> None:
    problems = refused("imap", {**VALID["imap"], "port": port})
    assert list(problems) == ["port"] and reason in problems["port"]


@pytest.mark.parametrize(
    "host", ["imap://imap.example.com", "imap.example.com:993", "a b", ".example.com", ""]
)
def test_an_imap_host_is_a_host_name_only(host: str) -> None:
    assert list(refused("imap", {**VALID["imap"], "host": host})) == ["host"]


def test_imap_security_is_one_of_three() -> None:
    problems = refused("imap", {**VALID["imap"], "security": "tls"})
    assert problems == {"security": "Input should be 'ssl', 'starttls' or 'none'"}


# ---------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    "url", ["dav.example.com/cal", "ftp://dav.example.com/", "https://", "https://host:port/",
            "javascript:alert(1)", ""],
)  # fmt: skip
def test_a_caldav_url_is_an_http_url(url: str) -> None:
    problems = refused("caldav", {**VALID["caldav"], "url": url})
    assert problems["url"] in ("not an http(s) URL (https://host/...)", "not a valid URL")


def test_a_url_with_credentials_is_refused_without_showing_them() -> None:
    problems = refused("caldav", {**VALID["caldav"], "url": f"ftp://a:{SECRET}@example.com/"})
    assert list(problems) == ["url"]


@pytest.mark.parametrize(
    ("provider", "key"),
    [("ews", "service_endpoint"), ("graph", "graph_url"), ("graph", "authority_host"),
     ("google", "api_root"), ("gmail", "token_uri")],
)  # fmt: skip
def test_every_address_setting_is_a_url(provider: str, key: str) -> None:
    problems = refused(provider, {**VALID[provider], key: "not a url"})
    assert list(problems) == [key] and "http(s) URL" in problems[key]


def test_a_user_gets_https_and_public_addresses_only() -> None:
    http = {**VALID["caldav"], "url": "http://dav.example.com/cal/"}
    assert read_settings("caldav", http, OPERATOR).stored()["url"] == http["url"]
    assert "only https://" in refused("caldav", http, USER)["url"]
    allowed = Adding(NetPolicy(allow_http=True))
    assert read_settings("caldav", http, allowed).stored()["url"] == http["url"]
    private = {**VALID["caldav"], "url": "https://10.1.2.3/cal/"}
    assert refused("caldav", private, USER) == {"url": "10.1.2.3 is not a public address"}
    listed = Adding(NetPolicy(allowed_hosts=("10.0.0.0/8",)))
    assert read_settings("caldav", private, listed).stored()["url"] == private["url"]
    imap = {**VALID["imap"], "host": "127.0.0.1"}
    assert refused("imap", imap, USER) == {"host": "127.0.0.1 is not a public address"}
    plain = {**VALID["imap"], "security": "none"}
    assert "without TLS" in refused("imap", plain, USER)["security"]
    assert "autodiscover" in refused("ews-mail", VALID["ews-mail"], USER)["autodiscover"]


def test_ics_reads_http_webcal_or_the_operators_files(tmp_path: Path) -> None:
    feed = tmp_path / "cal.ics"
    feed.write_text("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
    for location in ("https://example.com/a.ics", "webcal://example.com/a.ics", str(feed)):
        conf = read_settings("ics", {"location": location}, OPERATOR)
        assert isinstance(conf, IcsSettings) and conf.location == location
    assert refused("ics", {"location": str(tmp_path / "gone.ics")}, OPERATOR) == {
        "location": "no such file"
    }
    assert (
        "only for accounts added with the CLI"
        in refused("ics", {"location": str(feed)}, USER)["location"]
    )
    assert list(refused("ics", {"location": "file:///etc/passwd"})) == ["location"]
    assert refused("ics", {"location": "webcal://127.0.0.1/a.ics"}, USER) == {
        "location": "127.0.0.1 is not a public address"
    }


# --------------------------------------------------------------------------- files


def test_archive_paths_must_exist_when_added(tmp_path: Path) -> None:
    (tmp_path / "Maildir").mkdir()
    (tmp_path / "a.mbox").write_text("")
    assert isinstance(
        read_settings("maildir", {"path": str(tmp_path / "Maildir")}, OPERATOR), MaildirSettings
    )
    assert isinstance(read_settings("mbox", {"path": str(tmp_path / "a.mbox")}, OPERATOR),
                      MboxSettings)  # fmt: skip
    assert refused("maildir", {"path": str(tmp_path / "a.mbox")}, OPERATOR) == {
        "path": "no such folder"
    }
    assert refused("mbox", {"path": str(tmp_path / "none.mbox")}, OPERATOR) == {
        "path": "no such file"
    }
    assert refused("maildir", {"path": str(tmp_path)}, USER) == {
        "path": "local files and folders are only for accounts added with the CLI"
    }
    # a stored account whose file went away still reads: its sync says what is missing
    assert read_settings("mbox", {"path": str(tmp_path / "none.mbox")}).stored()


def test_a_graph_ca_file_must_exist(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    conf = read_settings("graph", {**VALID["graph"], "verify": str(ca)}, OPERATOR)
    assert isinstance(conf, GraphSettings) and conf.tls == str(ca)
    assert read_settings("graph", {**VALID["graph"], "verify": "false"}).stored()["verify"] is False
    missing = {**VALID["graph"], "verify": str(tmp_path / "none.pem")}
    assert refused("graph", missing, OPERATOR) == {"verify": "no such file"}


# ----------------------------------------------------------------- required fields


@pytest.mark.parametrize(
    ("provider", "data", "missing"),
    [
        ("caldav", {"username": "a"}, ["url"]),
        ("ics", {}, ["location"]),
        ("ics", {"location": "  "}, ["location"]),
        ("imap", {"port": 993}, ["host", "username"]),
        ("ews", {"username": "a"}, ["mailbox", "service_endpoint"]),
        ("graph", {"user": "a"}, ["tenant", "client_id"]),
        ("graph-mail", {"tenant": "t", "client_id": "c", "user": " "}, ["user"]),
        ("google", {"refresh_token": {"env": "R"}}, ["client_id"]),
        ("gmail", {"auth": "service_account"}, ["service_account_key", "subject"]),
        ("maildir", {}, ["path"]),
    ],
)  # fmt: skip
def test_required_fields_are_named(provider: str, data: dict[str, Any], missing: list[str]) -> None:
    with pytest.raises(InvalidSettings) as caught:
        read_settings(provider, data)
    assert caught.value.missing == missing
    assert str(caught.value).startswith(f"settings of the {provider} account: {missing[0]}: ")


def test_choices_are_checked() -> None:
    assert refused("google", {"auth": "password"}) == {
        "auth": "unknown Google auth (oauth or service_account)"
    }
    assert list(refused("ews", {**VALID["ews"], "auth": "kerberos"})) == ["auth"]
    assert list(refused("ews", {**VALID["ews"], "access": "root"})) == ["access"]
    assert list(refused("ews", {**VALID["ews"], "mailbox": "not-an-address"})) == ["mailbox"]
    assert list(refused("ews", {**VALID["ews"], "zone": "Mars/Olympus"})) == ["zone"]
    assert list(refused("ews-mail", {**VALID["ews-mail"], "folders": ["drafts"]})) == ["folders.0"]
    assert list(refused("gmail", {**VALID["gmail"], "labels": "INBOX"})) == ["labels"]


def test_models_per_provider_kind() -> None:
    assert isinstance(read_settings("ews", VALID["ews"]), EwsCalendarSettings)
    assert isinstance(read_settings("ews-mail", VALID["ews-mail"]), EwsMailSettings)
    assert isinstance(read_settings("graph-mail", VALID["graph-mail"]), GraphMailSettings)
    assert isinstance(read_settings("google", VALID["google"]), GoogleCalendarSettings)
    assert isinstance(read_settings("gmail", VALID["gmail"]), GmailSettings)


# -------------------------------------------------------------- opening connectors


@pytest.mark.parametrize(
    ("opener", "provider", "data", "field"),
    [
        (open_calendar, "caldav", {"url": "https://dav.example.com/", "port": 1}, "port"),
        (open_calendar, "ics", {"url": "https://example.com/a.ics"}, "location"),
        (open_calendar_writer, "graph", {"user": "a", "tenant": "t"}, "client_id"),
        (open_calendar, "ews", {"mailbox": "a@example.com"}, "service_endpoint"),
        (open_calendar, "google", {"auth": "oauth", "client_secret": SECRET}, "client_id"),
        (open_mailbox, "imap", {"host": "h", "username": "u", "port": "x"}, "port"),
        (open_mailbox, "gmail", {"auth": "service_account", "subject": "s"},
         "service_account_key"),
        (open_mailbox, "graph-mail", {"user": "a", "tenant": "t", "client_id": "c",
                                      "header_senders": "b@x"}, "header_senders"),
        (open_mailbox, "maildir", {"folder": "/tmp"}, "path"),
    ],
)  # fmt: skip
def test_a_stored_account_the_model_refuses_is_a_connector_error(
    opener: Any, provider: str, data: dict[str, Any], field: str
) -> None:
    """What the sync records on the account (``record_failure``), instead of a KeyError."""
    with pytest.raises(InvalidSettings) as caught:
        opener(provider, data)
    assert field in dict(caught.value.problems)
    assert SECRET not in str(caught.value)
